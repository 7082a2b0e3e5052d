"""The digits sample and label helpers shared by the strategy test files."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from sklearn.datasets import load_digits


@lru_cache(maxsize=1)
def _digits_sample():
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    keep = np.sort(rng.choice(len(y), 600, replace=False))
    X = X[keep].astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True), y[keep].astype(np.int64)


def digits_sample():
    """600 of sklearn's digits, (X (600, 64) float32 unit rows, y (600,) int64); fresh copies."""
    X, y = _digits_sample()
    return X.copy(), y.copy()


def some_labels(y, per_class, seed=0, classes=None):
    """Labels (N,) with ``per_class`` seeded rows of every class (or of ``classes``), -1 elsewhere."""
    rng = np.random.default_rng(seed)
    labels = np.full(len(y), -1, np.int64)
    for c in (np.unique(y) if classes is None else classes):
        idx = rng.choice(np.flatnonzero(y == c), per_class, replace=False)
        labels[idx] = c
    return labels


def check_batch(idx, labels, k):
    """A strategy's batch: int64, min(k, unlabelled) distinct unlabelled rows."""
    assert isinstance(idx, np.ndarray) and idx.dtype == np.int64
    assert idx.shape == (min(k, int((labels < 0).sum())),)
    assert np.unique(idx).size == idx.size
    assert np.all(labels[idx] == -1)
