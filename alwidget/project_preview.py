"""The map's canvas and its instant preview: PCA to 2-D on ``[-1, 1]^2``.

Split from :mod:`alwidget.project` (which re-exports ``preview`` and ``to_canvas``): the lowest
layer of the maps, numpy/scipy only; the UMAP layout starts from this preview.
"""
from __future__ import annotations

import numpy as np

from ._util import check_features

__all__ = ["PREVIEW_FIT_ROWS", "preview", "to_canvas"]

#: Rows the preview's PCA is fitted on (all rows are then projected).
PREVIEW_FIT_ROWS = 20_000
METRICS = ("cosine", "euclidean")


def to_canvas(coords) -> np.ndarray:
    """Map ``(n, 2)`` coordinates onto the common canvas ``[-1, 1]^2``.

    Centre on the bounding-box midpoint, divide by half the longer side. A
    single point (or all points equal) maps to the origin.
    """
    coords = np.asarray(coords, dtype=np.float64)
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    half = float((hi - lo).max()) / 2.0
    out = coords - (lo + hi) / 2.0
    if half > 0:
        out /= half
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def row_scale(X: np.ndarray, metric: str) -> np.ndarray:
    """(N,) factors that L2-normalise rows for cosine (zero rows stay zero), ones otherwise."""
    if metric == "euclidean":
        return np.ones(X.shape[0], dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", X, X))
    with np.errstate(divide="ignore"):
        return np.where(norms > 0, 1.0 / norms, 0.0).astype(np.float32)


def raw_preview(X: np.ndarray, seed: int, metric: str) -> np.ndarray:
    """PCA to 2-D fitted on at most PREVIEW_FIT_ROWS rows; trusts X. Returns raw coords (N, 2)."""
    import scipy.linalg
    from threadpoolctl import threadpool_limits

    n, d = X.shape
    scale = row_scale(X, metric)
    rows = np.arange(n)
    if n > PREVIEW_FIT_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(n, PREVIEW_FIT_ROWS, replace=False))
    S = X[rows] * scale[rows, None]
    mean = S.mean(axis=0, dtype=np.float64)
    S -= mean.astype(np.float32)
    # One BLAS thread: on two busy cores a spinning pool makes this 3-10x slower
    # (measured), and these matrices are small. (threadpoolctl, not
    # _util.limit_threads: no torch import on this numpy-only path.)
    with threadpool_limits(1):
        if d <= S.shape[0]:
            cov = (S.T @ S).astype(np.float64)
            top = min(2, d)
            _, vecs = scipy.linalg.eigh(cov, subset_by_index=[d - top, d - 1])  # ascending
            comps = vecs[:, ::-1]
        else:
            comps = np.linalg.svd(S.astype(np.float64), full_matrices=False)[2][:2].T
    if comps.shape[1] < 2:  # one feature (or one row): the second axis is constant
        comps = np.hstack([comps, np.zeros((d, 2 - comps.shape[1]))])
    # Eigenvectors have no sign; fix it so the map never flips between runs.
    flip = np.sign(comps[np.abs(comps).argmax(axis=0), [0, 1]])
    comps *= np.where(flip == 0, 1.0, flip)
    comps32 = np.ascontiguousarray(comps, dtype=np.float32)
    # (x * s - mean) @ V == s * (x @ V) - mean @ V: no normalised copy of X.
    with threadpool_limits(1):
        return (X @ comps32) * scale[:, None] - (mean @ comps).astype(np.float32)


def check_metric(metric) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return metric


def check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be a non-negative integer (reproducible maps need a fixed seed), got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    return int(seed)


def preview(X, seed: int = 0, *, metric: str = "cosine") -> np.ndarray:
    """Instant 2-D map: the first two principal components, on the common canvas.

    Parameters
    ----------
    X : array (n_samples, n_features)
    seed : int
        Chooses the rows PCA is fitted on when ``n_samples > PREVIEW_FIT_ROWS``.
    metric : "cosine" (rows L2-normalised first) or "euclidean"

    Returns
    -------
    (n_samples, 2) float32 in ``[-1, 1]`` (see :func:`to_canvas`). Takes about a
    second per million 512-d rows: one pass over X after a small fit.
    """
    X = check_features(X, "X")
    return to_canvas(raw_preview(X, check_seed(seed), check_metric(metric)))
