"""Shared test settings: offline, an isolated cache, few threads.

Set at import time so that subprocesses the tests start (kernels, JupyterLab,
killed writers) inherit the same environment.
"""
import os
import tempfile

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
