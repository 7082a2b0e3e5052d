"""Small point sets and brute-force references shared by the geometry tests."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def blobs():
    """300 points in 8-D: 6 Gaussian blobs plus 5 exact duplicates of row 0."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((6, 8)) * 3
    X = centres[rng.integers(0, 6, 295)] + rng.standard_normal((295, 8))
    X = np.vstack([X, np.repeat(X[:1], 5, axis=0)])
    return X.astype(np.float32)


def brute_dist(X):
    X = np.asarray(X, dtype=np.float64)
    return np.sqrt(np.maximum(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1), 0))
