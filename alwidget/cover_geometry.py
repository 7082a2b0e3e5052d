"""ProbCover's geometry: range search, the purity rule's delta, the delta-ball graph, coverage.

Split from :mod:`alwidget.geometry` (which keeps the per-feature-set cache, kNN and k-means):
this module builds on it and caches its results on the same :class:`~alwidget.geometry.Geometry`
(``geo.scratch``), so every result is still computed once per feature set. Imports flow one
way: geometry never imports this module; :mod:`alwidget.strategies._cover` (the budget rule and
the sampled coverage universe) and ProbCover use it.

Graphs are CSR: ``indptr`` (N+1,) and int32 ``indices``; ball graphs are symmetric with
self-loops (balls are open: j is in row i iff ||x_i - x_j|| < delta). Distances are Euclidean
on the normalised rows ``geo.X``.
"""
from __future__ import annotations

import numpy as np

from .geometry import _resolve, _rows_per_tile, _sq_dists, _to_torch

__all__ = ["MAX_EDGES", "ball_at", "ball_from_pairs", "ball_graph", "cover_rows", "coverage", "csr_gather",
           "probcover_delta", "probcover_info", "purity_rank", "range_pairs", "symmetric_pairs"]

# Points whose exact nearest-other-pseudo-label distance is computed to bound delta from above.
_DELTA_SAMPLE = 1000
# Refuse to build a ball graph with more edges than this (12 bytes per edge while building).
MAX_EDGES = 400_000_000


# --------------------------------------------------------------------------- range search

def range_pairs(X, radius: float, backend=None, device=None):
    """All ordered pairs (i, j) with ||x_i - x_j|| < radius, grouped by i (exact).

    Returns ``(indptr (N+1,) int64, indices (E,) int32, sq (E,) float32 squared distances)``.
    Row i contains i itself whenever radius > 0 (up to rounding of its zero distance).
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    n = X.shape[0]
    r2 = float(radius) ** 2
    counts = np.zeros(n, np.int64)
    parts_i, parts_d = [], []
    kind, dev = _resolve(backend, device)
    if kind == "faiss":
        import faiss

        index = faiss.IndexFlatL2(X.shape[1])
        index.add(X)
        step = 8192
        for a in range(0, n, step):
            lims, dd, ii = index.range_search(X[a:a + step], r2)
            counts[a:a + step] = np.diff(lims)
            parts_i.append(ii.astype(np.int32))
            parts_d.append(dd.astype(np.float32))
    else:
        import torch

        xt = _to_torch(X, dev)
        x_sq = (xt * xt).sum(1)
        rows = _rows_per_tile(n)
        with torch.no_grad():
            for a in range(0, n, rows):
                d = _sq_dists(xt[a:a + rows], xt, x_sq)
                rr, cc = torch.nonzero(d < r2, as_tuple=True)  # row-major: grouped by row
                counts[a:a + d.shape[0]] = torch.bincount(rr, minlength=d.shape[0]).cpu().numpy()
                parts_i.append(cc.to(torch.int32).cpu().numpy())
                parts_d.append(d[rr, cc].cpu().numpy())
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    indices = np.concatenate(parts_i) if parts_i else np.zeros(0, np.int32)
    sq = np.concatenate(parts_d) if parts_d else np.zeros(0, np.float32)
    return indptr, indices, sq


def _torch_rows(X, backend, device):
    """(X on the torch device, squared norms, device): faiss users get the CPU."""
    import torch

    kind, dev = _resolve(backend, device)
    dev = dev if kind == "torch" else torch.device("cpu")
    xt = _to_torch(X, dev)
    return xt, (xt * xt).sum(1), dev


def nearest_other_sq(X, pseudo, rows, backend=None, device=None) -> np.ndarray:
    """Exact squared distance from each X[rows] to the nearest row with another pseudo-label."""
    import torch

    xt, x_sq, dev = _torch_rows(X, backend, device)
    lab = torch.from_numpy(pseudo).to(dev)
    out = np.empty(len(rows), np.float32)
    step = _rows_per_tile(X.shape[0])
    with torch.no_grad():
        for a in range(0, len(rows), step):
            r = torch.from_numpy(np.asarray(rows[a:a + step])).to(dev)
            d = _sq_dists(xt[r], xt, x_sq)
            d[lab[r][:, None] == lab[None, :]] = float("inf")
            out[a:a + step] = d.min(1).values.cpu().numpy()
    return out


def count_within_sq(X, rows, r2, backend=None, device=None) -> np.ndarray:
    """Number of rows of X with squared distance < r2 from each X[rows]."""
    import torch

    xt, x_sq, dev = _torch_rows(X, backend, device)
    out = np.empty(len(rows), np.int64)
    step = _rows_per_tile(X.shape[0])
    with torch.no_grad():
        for a in range(0, len(rows), step):
            r = torch.from_numpy(np.asarray(rows[a:a + step])).to(dev)
            out[a:a + step] = (_sq_dists(xt[r], xt, x_sq) < r2).sum(1).cpu().numpy()
    return out


def purity_rank(n: int, purity: float) -> int:
    """1-based rank r (ascending) of delta among the N nearest-other distances.

    delta = d_(r) with r = N - ceil(purity * N) + 1: then at least ceil(purity * N) points have
    d >= delta, and any larger value leaves at most ceil(purity * N) - 1 of them.
    """
    m = int(np.ceil(purity * n - 1e-9))
    m = min(max(m, 1), n)
    return n - m + 1


# --------------------------------------------------------------------------- CSR helpers

def csr_gather(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Concatenated neighbour lists of ``rows`` (vectorised)."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        return np.zeros(0, indices.dtype)
    starts = indptr[rows].astype(np.int64)
    lens = indptr[rows + 1].astype(np.int64) - starts
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, indices.dtype)
    offs = np.repeat(starts - np.concatenate(([0], np.cumsum(lens)[:-1])), lens)
    return indices[offs + np.arange(total)]


def cover_rows(indptr, indices, rows, covered: np.ndarray, gain: np.ndarray) -> int:
    """Mark the balls of ``rows`` covered, updating gains in place; returns newly covered count.

    Each point is covered once and then removes itself from the gain of every ball holding it
    (its own neighbour list, the graph being symmetric): O(E) over a whole selection.
    """
    nb = csr_gather(indptr, indices, rows)
    if nb.size == 0:
        return 0
    fresh = np.unique(nb[~covered[nb]])
    if fresh.size == 0:
        return 0
    covered[fresh] = True
    ws = csr_gather(indptr, indices, fresh)
    gain -= np.bincount(ws, minlength=gain.size)
    return int(fresh.size)


def ball_from_pairs(n, indptr, indices, sq, d2, rows):
    """Symmetric CSR (indptr, int32 indices) of the pairs with sq < d2, self-loops added."""
    import scipy.sparse as sp

    keep = (sq < d2) & (indices != rows)
    m = sp.csr_matrix((np.ones(int(keep.sum()), bool), (rows[keep], indices[keep])), shape=(n, n))
    m = (m + m.T + sp.identity(n, dtype=bool, format="csr")).tocsr()
    m.sort_indices()
    ip = m.indptr.astype(np.int32 if m.nnz < 2**31 else np.int64)
    return ip, m.indices.astype(np.int32)


def symmetric_pairs(n, indptr, indices, sq, rows):
    """The pairs of a range search closed under symmetry, once, for :func:`ball_at` at any smaller radius.

    Returns CSR ``(indptr (N+1,) int64, indices int32, w float32)`` holding every (i, j) with (i, j)
    or (j, i) among the pairs, i != j, weighted by the smaller of the two squared distances (the
    other being absent counts as infinite), plus each row's self-loop with w = -inf. Each row is
    sorted by w (ties in any order), so the ball at any radius is a prefix of its row.
    """
    import scipy.sparse as sp

    keep = indices != rows
    # Order-preserving int64 code of the float32 distances (larger = nearer, never 0), so the sparse
    # element-wise maximum is the exact minimum distance and an absent transpose loses.
    top = np.int64(1) << 32
    code = top - sq[keep].astype(np.float32).view(np.int32).astype(np.int64)
    m = sp.csr_matrix((code, (rows[keep], indices[keep])), shape=(n, n))
    m = m.maximum(m.T.tocsr()).tocsr() + sp.identity(n, dtype=np.int64, format="csr")
    r = np.repeat(np.arange(n, dtype=np.int64), np.diff(m.indptr))
    self_loop = m.indices == r
    w = (top - m.data).astype(np.int32).view(np.float32)
    w[self_loop] = -np.inf
    # Sort each row by distance: row-major int64 keys, the distance as its order-preserving bits
    # (non-negative float32 bits are ordered as int32; self-loops first).
    bits = np.where(self_loop, 0, np.maximum(w, 0).view(np.int32).astype(np.int64) + 1)
    order = np.argsort((r << 32) + bits)
    return m.indptr.astype(np.int64), m.indices[order].astype(np.int32), w[order]


def ball_at(sym, d2):
    """:func:`ball_from_pairs` at squared radius d2 from :func:`symmetric_pairs`: the same rows as sets
    (each row in distance order), a prefix of each row: a compiled bisection per row for its count,
    then the prefixes joined (:func:`alwidget._cover_kernels.row_prefixes`)."""
    from ._cover_kernels import row_prefixes

    ip, ind, w = sym
    out, joined = row_prefixes(np.asarray(ip, np.int64), np.ascontiguousarray(ind, np.int32),
                               np.ascontiguousarray(w, np.float32), np.float32(d2))
    return out.astype(np.int32 if int(out[-1]) < 2**31 else np.int64), joined


# --------------------------------------------------------------------------- the purity rule

def _search_radius(geo, pseudo, r, seed) -> float | None:
    """A squared radius that contains delta with high probability (None: one pseudo-label)."""
    n = geo.n_samples
    rng = np.random.default_rng([int(seed), 7])
    sample = np.arange(n) if n <= _DELTA_SAMPLE else np.sort(rng.choice(n, _DELTA_SAMPLE, replace=False))
    ds = np.sort(nearest_other_sq(geo.X, pseudo, sample, geo.backend, geo.device))
    if not np.isfinite(ds[0]):  # one pseudo-label everywhere: no point is ever impure
        return None
    s = sample.size
    if s == n:
        j = r - 1
    else:  # a quantile well above the target share, so R >= delta with high probability
        f = r / n
        j = int(np.ceil(s * f + 4.0 * np.sqrt(s * f * (1 - f)))) + 1
    j = min(j, s - 1)
    finite = ds[np.isfinite(ds)]
    r2 = (float(ds[j]) if np.isfinite(ds[j]) else float(finite[-1])) * 1.02 + 1e-9
    # Expected edges from the sample, before committing memory to them.
    probe_rows = sample[:: max(1, s // 200)]  # spread over the (sorted) sample
    est = float(count_within_sq(geo.X, probe_rows, r2, geo.backend, geo.device).mean()) * n
    if est > MAX_EDGES:
        raise ValueError(f"ProbCover's ball graph would hold about {est:.2e} edges with these "
                         f"pseudo-classes; pass a larger n_classes or a lower purity")
    return r2


def probcover_delta(geo, n_classes: int, seed: int = 0, purity: float = 0.95) -> float:
    """ProbCover's delta (the paper's rule): the largest delta with purity(delta) >= ``purity``.

    Pseudo-labels come from k-means with K = ``n_classes`` (at least 2). With d_i the distance
    from point i to the nearest point of another pseudo-label, a point is pure iff d_i >= delta,
    so delta is exactly the order statistic d_(r) of :func:`purity_rank`: no grid, no bisection.
    The d_i are read off one exact range search at a radius R that contains delta (a high
    quantile of the exact d_i of a seeded sample; quadrupled in the rare case fewer than r
    points have d_i < R). The ball graph for delta comes from the same search and is cached
    (:func:`ball_graph`). Returns inf when every point has one pseudo-label.
    """
    if not 0 < purity <= 1:
        raise ValueError(f"purity must be in (0, 1], got {purity!r}")
    K = int(min(max(2, int(n_classes)), geo.n_samples))
    key = (K, int(seed), float(purity))
    with geo.lock:
        memo = geo.scratch("cover_delta")
        if key in memo:
            return memo[key]["delta"]
        n = geo.n_samples
        pseudo = geo.kmeans(K, seed)[0] if K >= 2 else np.zeros(n, np.int64)
        r = purity_rank(n, purity)
        r2 = _search_radius(geo, pseudo, r, seed)
        if r2 is None:
            memo[key] = {"delta": float("inf"), "purity": 1.0, "n_pseudo": K}
            return float("inf")
        max_r2 = 4.0 * float(np.max(np.einsum("ij,ij->i", geo.X, geo.X))) + 1e-6
        while True:
            indptr, indices, sq = range_pairs(geo.X, np.sqrt(r2), geo.backend, geo.device)
            rows = np.repeat(np.arange(n), np.diff(indptr))
            other = np.where(pseudo[rows] != pseudo[indices], sq, np.inf).astype(np.float32)
            dmin = np.full(n, np.inf, np.float32)
            nonempty = np.diff(indptr) > 0
            if other.size:
                dmin[nonempty] = np.minimum.reduceat(other, indptr[:-1][nonempty])
            if np.count_nonzero(dmin < r2) >= r or r2 >= max_r2:
                break
            r2 = min(r2 * 4.0, max_r2)  # doubles the radius
        d2 = np.partition(dmin, r - 1)[r - 1]
        delta = float(np.sqrt(d2)) if np.isfinite(d2) else float("inf")
        memo[key] = {"delta": delta, "purity": float(np.count_nonzero(dmin >= d2)) / n, "n_pseudo": K}
        if np.isfinite(d2):
            geo.scratch("cover_ball")[delta] = ball_from_pairs(n, indptr, indices, sq, d2, rows)
        return delta


def probcover_info(geo, n_classes: int, seed: int = 0, purity: float = 0.95) -> dict:
    """{'delta', 'purity' (achieved share of pure points), 'n_pseudo' (K used)}."""
    probcover_delta(geo, n_classes, seed, purity)
    K = int(min(max(2, int(n_classes)), geo.n_samples))
    return dict(geo.scratch("cover_delta")[(K, int(seed), float(purity))])


def cached_ball_graph(geo, delta: float):
    """The whole-pool ball graph at delta when one was built already (the purity rule's), else None."""
    with geo.lock:
        return geo.scratch("cover_ball").get(float(delta))


def ball_graph(geo, delta: float):
    """Symmetric delta-ball graph of the whole pool as CSR ``(indptr, indices)`` (int32 indices,
    self-loops included): j is in row i iff ||x_i - x_j|| < delta. Exact; cached per delta."""
    delta = float(delta)
    with geo.lock:
        memo = geo.scratch("cover_ball")
        hit = memo.get(delta)
        if hit is None:
            indptr, indices, sq = range_pairs(geo.X, delta, geo.backend, geo.device)
            rows = np.repeat(np.arange(geo.n_samples), np.diff(indptr))
            hit = ball_from_pairs(geo.n_samples, indptr, indices, sq, np.float32(delta) ** 2, rows)
            memo[delta] = hit
        return hit


def coverage(geo, delta: float, labelled: np.ndarray):
    """(covered (N,) bool, gain (N,) int64) for the ball graph at ``delta`` given labelled rows.

    covered: inside the ball of a labelled row; gain[v]: not-yet-covered rows in v's ball.
    The last state is kept and updated incrementally when labels were only added.
    """
    indptr, indices = ball_graph(geo, delta)
    labelled = np.unique(np.asarray(labelled, dtype=np.int64))
    with geo.lock:
        memo = geo.scratch("cover_coverage")
        st = memo.get("last")
        if (st is not None and st[0] == delta and st[1].size <= labelled.size
                and np.isin(st[1], labelled, assume_unique=True).all()):
            covered, gain = st[2].copy(), st[3].copy()
            new = np.setdiff1d(labelled, st[1], assume_unique=True)
        else:
            covered = np.zeros(geo.n_samples, bool)
            gain = np.diff(indptr).astype(np.int64)
            new = labelled
        cover_rows(indptr, indices, new, covered, gain)
        memo["last"] = (delta, labelled, covered.copy(), gain.copy())
        return covered, gain
