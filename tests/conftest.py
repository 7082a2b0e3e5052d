"""Shared test settings: offline, an isolated cache, few threads.

Set at import time so that subprocesses the tests start (kernels, JupyterLab,
killed writers) inherit the same environment.
"""
import os
import tempfile

import numpy as np
import pytest

# Fixtures shared by the embedding tests (encoders, cache, run, Ray engine) and the geometry tests.
pytest_plugins = ["embed_data", "geometry_data"]

# Never wait on a model hub: a failed fetch otherwise retries for ~47 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Keep test caches out of the user's ~/.cache; one dir per test run so the demo
# embedding computed by one test is reused by the next (notebooks, browser).
os.environ.setdefault("ALWIDGET_CACHE_DIR", tempfile.mkdtemp(prefix="alwidget-test-cache-"))
# Two cores shared by pytest, a kernel and a browser: no spin-waiting pools.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def digits():
    """sklearn's digits as (X (1797, 64) float32 with L2-normalised rows, y (1797,) int64).

    Test modules that need another cut of the data define their own `digits`.
    """
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), y.astype(np.int64)
