"""Building blocks of alwidget.geometry: torch distance tiles, seeded Lloyd k-means, PCA coordinates
(TypiClust's reduced k-means) and the typicality helpers.

Split from :mod:`alwidget.geometry` (which re-exports these names) to keep modules small; the
torch paths run row blocks of ``block x N`` distance tiles, never an ``N x N`` matrix.
"""
from __future__ import annotations

import numpy as np

# Bytes of one distance tile in the torch paths (rows x N float32).
_TILE_BYTES = 1 << 26


def _rows_per_tile(n_cols: int) -> int:
    return max(1, _TILE_BYTES // (4 * max(1, n_cols)))


def _sq_dists(a, b, b_sq):
    """Squared distances between torch row blocks a (m, D) and b (n, D) -> (m, n), >= 0."""
    d = (a * a).sum(1, keepdim=True) - 2.0 * (a @ b.T) + b_sq[None, :]
    return d.clamp_min_(0.0)


def _to_torch(X, dev):
    import torch

    return torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).to(dev)


def _assign_torch(xt, cent):
    """Nearest centroid per row (torch): (ids (n,), squared distances (n,))."""
    import torch

    c_sq = (cent * cent).sum(1)
    rows = _rows_per_tile(cent.shape[0])
    ids = torch.empty(xt.shape[0], dtype=torch.int64, device=xt.device)
    best = torch.empty(xt.shape[0], dtype=torch.float32, device=xt.device)
    for a in range(0, xt.shape[0], rows):
        v, i = _sq_dists(xt[a:a + rows], cent, c_sq).min(1)
        ids[a:a + rows], best[a:a + rows] = i, v
    return ids, best


def _cluster_sums(xt, ids, K, blocked=None):
    """(K, D) per-cluster sums. On CUDA via one-hot products in fixed row blocks, because
    index_add_ there uses float atomics whose order (and so the result) varies run to run."""
    import torch

    if not (xt.is_cuda if blocked is None else blocked):
        return torch.zeros((K, xt.shape[1]), dtype=xt.dtype, device=xt.device).index_add_(0, ids, xt)
    sums = torch.zeros((K, xt.shape[1]), dtype=xt.dtype, device=xt.device)
    rows = _rows_per_tile(K)
    for a in range(0, xt.shape[0], rows):
        onehot = torch.nn.functional.one_hot(ids[a:a + rows], K).to(xt.dtype)
        sums += onehot.T @ xt[a:a + rows]
    return sums


def _kmeans_torch(X, K, seed, n_iter, dev, max_points_per_centroid):
    import torch

    rng = np.random.default_rng(seed)
    n = X.shape[0]
    train = np.sort(rng.choice(n, max_points_per_centroid * K, replace=False)) if n > max_points_per_centroid * K \
        else np.arange(n)
    with torch.no_grad():
        xt = _to_torch(X[train], dev)
        m = xt.shape[0]
        # k-means++ seeding (one candidate per step), seeded through numpy.
        chosen = [int(rng.integers(m))]
        best = _sq_dists(xt, xt[chosen], (xt[chosen] ** 2).sum(1))[:, 0]
        for _ in range(1, K):
            w = best.double().cpu().numpy()
            tot = w.sum()
            nxt = int(rng.choice(m, p=w / tot)) if tot > 0 else int(rng.integers(m))
            chosen.append(nxt)
            best = torch.minimum(best, _sq_dists(xt, xt[nxt:nxt + 1], (xt[nxt] ** 2).sum()[None])[:, 0])
        cent = xt[chosen].clone()
        for _ in range(int(n_iter)):
            ids, dist = _assign_torch(xt, cent)
            sums = _cluster_sums(xt, ids, K)
            cnt = torch.bincount(ids, minlength=K).to(xt.dtype)
            empty = torch.nonzero(cnt == 0).flatten()
            cent = torch.where(cnt[:, None] > 0, sums / cnt.clamp_min(1)[:, None], cent)
            if empty.numel():
                # Re-seed empty clusters at the points worst served by their centroid.
                far = torch.argsort(dist, descending=True, stable=True)[: empty.numel()]
                cent[empty] = xt[far]
        assign, _ = _assign_torch(_to_torch(X, dev), cent)
        return assign.cpu().numpy().astype(np.int64), cent.cpu().numpy().astype(np.float32)


def pca_project(X: np.ndarray, dims: int, seed: int = 0, fit_max: int = 20_000) -> np.ndarray:
    """(N, dims) float32 coordinates of the centred rows of X on their top ``dims`` principal axes.

    The axes come from the covariance of a seeded sample of at most ``fit_max`` rows (float64
    eigendecomposition, so the result is deterministic); each axis's sign is fixed (largest
    |loading| positive) so that the coordinates do not depend on the eigensolver's sign choice.
    """
    n, d = X.shape
    dims = int(min(dims, d))
    fit = X if n <= fit_max else X[np.sort(np.random.default_rng([int(seed), 31]).choice(n, fit_max, replace=False))]
    mean = fit.mean(0, dtype=np.float64)
    fc = (fit - mean).astype(np.float32)
    _, vecs = np.linalg.eigh((fc.T @ fc).astype(np.float64))
    axes = vecs[:, ::-1][:, :dims]
    axes *= np.where(axes[np.abs(axes).argmax(0), np.arange(dims)] < 0, -1.0, 1.0)
    out = np.empty((n, dims), np.float32)
    axes32, mean32 = axes.astype(np.float32), mean.astype(np.float32)
    for a in range(0, n, 65536):  # bounded temporaries on big pools
        out[a:a + 65536] = (X[a:a + 65536] - mean32) @ axes32
    return out


# Typicality helpers of alwidget.geometry (kept here to keep that module small).

def _positions(n: int, sub: np.ndarray) -> np.ndarray:
    """(n,) position of each row in ``sub`` or -1 (rows of A that are also columns of B)."""
    pos = np.full(n, -1, np.int64)
    pos[sub] = np.arange(sub.size)
    return pos


def _mean_k_smallest(A: np.ndarray, B: np.ndarray, k: int, self_col=None) -> np.ndarray:
    """(len(A),) float64 mean of the k smallest distances from each row of A to the rows of B.

    ``self_col[i]`` (or -1) is the column of B that is row i of A itself, left out."""
    a_sq = np.einsum("ij,ij->i", A, A)
    b_sq = np.einsum("ij,ij->i", B, B)
    out = np.empty(A.shape[0])
    step = _rows_per_tile(B.shape[0])
    for a in range(0, A.shape[0], step):
        d = a_sq[a:a + step, None] - 2.0 * (A[a:a + step] @ B.T) + b_sq[None, :]
        np.maximum(d, 0.0, out=d)
        if self_col is not None:
            sc = np.asarray(self_col[a:a + step])
            r = np.flatnonzero(sc >= 0)
            d[r, sc[r]] = np.inf
        part = np.partition(d, k - 1, axis=1)[:, :k]
        out[a:a + step] = np.sqrt(part.astype(np.float64)).mean(1)
    return out
