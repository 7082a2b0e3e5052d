"""Exact k-nearest-row queries against a pool (numpy or a torch tensor on its device), in query
blocks: the search behind text search and AnchorAL's exact neighbour lists. Re-exported by
:mod:`alwidget.geometry`, whose :func:`~alwidget.geometry.knn` is the pool's own kNN graph."""
from __future__ import annotations

import numpy as np

from ._kmeans import _rows_per_tile

__all__ = ["knn_query"]


def knn_query(X, Q, k: int, *, metric: str = "euclidean", exclude=None):
    """Exact k nearest rows of X for each query row of Q, in query blocks.

    ``X`` (N, D) is a numpy array (searched with numpy's BLAS and ``argpartition``: on the CPU
    that was faster than torch's matrix-vector product and ``topk``, bench_search.py) or a torch
    tensor (searched with torch on its own device, without a copy: callers that query one pool
    often keep it on the GPU); ``Q`` is (M, D) or (D,). ``metric``: "euclidean" (distances,
    ascending) or "inner" (inner products, descending: cosine similarity for unit rows).
    ``exclude``: rows of X never returned. Returns ``(values (M, k) float32, idx (M, k) int64)``,
    k capped at the rows left; ties inside the result keep the lower index first.

    Unlike :func:`knn` this never builds a faiss index: a flat faiss index copies the whole pool
    and was measured no faster than one matrix product for a few queries.
    """
    if metric not in ("euclidean", "inner"):
        raise ValueError(f"metric must be 'euclidean' or 'inner', got {metric!r}")
    n, d = X.shape
    q = np.asarray(Q, dtype=np.float32).reshape(-1, d)
    excl = None if exclude is None else np.unique(np.asarray(exclude, dtype=np.int64))
    k = int(min(k, n - (0 if excl is None else excl.size)))
    vals = np.empty((q.shape[0], max(k, 0)), np.float32)
    idx = np.empty((q.shape[0], max(k, 0)), np.int64)
    if k <= 0:
        return vals, idx
    scores = _query_scores_torch if _is_tensor(X) else _query_scores_numpy
    rows = _rows_per_tile(n)
    for a in range(0, q.shape[0], rows):
        s = scores(X, q[a:a + rows], metric == "euclidean")  # (m, N) numpy; larger = nearer
        if excl is not None:
            s[:, excl] = -np.inf
        part = np.argpartition(-s, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (s.shape[0], 1))
        v = np.take_along_axis(s, part, 1)
        order = np.lexsort((part, -v), axis=-1)
        v, i = np.take_along_axis(v, order, 1), np.take_along_axis(part, order, 1)
        vals[a:a + rows] = v if metric == "inner" else np.sqrt(np.maximum(-v, 0.0))
        idx[a:a + rows] = i
    return vals, idx


def _is_tensor(X) -> bool:
    return type(X).__module__.startswith("torch")


def _query_scores_numpy(X, q, euclidean: bool):
    """(m, N) inner products q . x (or -squared distances) with numpy."""
    s = q @ X.T  # for m = 1 one matrix-vector product over the pool
    if euclidean:
        s = 2.0 * s - np.einsum("ij,ij->i", X, X)[None, :] - np.einsum("ij,ij->i", q, q)[:, None]
    return s


def _query_scores_torch(X, q, euclidean: bool):
    """(m, N) inner products (or -squared distances) with torch on X's device, returned as numpy."""
    import torch

    qt = torch.from_numpy(q).to(X.device)
    with torch.no_grad():
        s = qt @ X.T
        if euclidean:
            s = 2.0 * s - (X * X).sum(1)[None, :] - (qt * qt).sum(1, keepdim=True)
    return s.cpu().numpy()
