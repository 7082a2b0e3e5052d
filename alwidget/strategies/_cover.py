"""ProbCover's coverage geometry: a delta sized for the budget, a ball graph, the covered state.

delta for a budget. ``budget_delta(geo, b, target)`` is the smallest radius at which ``b``
greedy max-coverage balls cover ``target`` of the pool. It is found by bisection on a seeded
sample of :data:`COVER_SAMPLE` rows (coverage is a share of the pool, so a uniform sample
estimates it; ``b`` is capped at sample / 8 so that a ball still holds several sample points).
Each bisection step runs the greedy on the sample's boolean distance matrix with incremental
gains, O(S^2) per step.

Universe. The ball graph is built over at most :data:`COVER_UNIVERSE` rows (the whole pool
when it is smaller; else a seeded uniform sample), and fewer when the expected number of
edges (the share of pairs closer than delta, measured on a sample) would pass
:data:`MAX_COVER_EDGES`. Coverage is measured and maximised on the universe; labelled rows
outside it still cover the universe rows within delta of them. Picks come from the universe.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..cover_geometry import ball_from_pairs, cached_ball_graph, cover_rows, csr_gather, range_pairs

COVER_SAMPLE = 3000
COVER_UNIVERSE = 10_000
MAX_COVER_EDGES = 10_000_000
_BISECT_STEPS = 22
_GRAPHS_KEPT = 2


def sample_rows(n: int, size: int, seed: int, salt: int) -> np.ndarray:
    """All rows when n <= size, else a sorted seeded uniform sample of ``size`` rows."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng([int(seed), int(salt)]).choice(n, int(size), replace=False))


def _sq_dists(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    d = np.einsum("ij,ij->i", A, A)[:, None] - 2.0 * (A @ B.T) + np.einsum("ij,ij->i", B, B)[None, :]
    return np.maximum(d, 0.0, out=d)


def greedy_coverage(A: np.ndarray, b: int) -> float:
    """Share of the rows of a symmetric boolean adjacency A (self-loops set) covered by b greedy balls."""
    covered = np.zeros(A.shape[0], bool)
    gain = A.sum(1, dtype=np.int64)
    for _ in range(int(b)):
        v = int(gain.argmax())
        if gain[v] == 0:
            break
        new = A[v] & ~covered
        covered |= new
        gain -= A[new].sum(0, dtype=np.int64)  # symmetric: rows of the new points = their balls
    return float(covered.mean())


def sample_sq_dists(geo, seed: int = 0):
    """(rows, (S, S) float32 squared distances) of the seeded delta sample; cached (one per feature set)."""
    with geo.lock:
        memo = geo.scratch("probcover_sample")
        if seed not in memo:
            rows = sample_rows(geo.n_samples, COVER_SAMPLE, seed, 17)
            d2 = _sq_dists(geo.X[rows], geo.X[rows])
            np.fill_diagonal(d2, 0.0)
            memo.clear()
            memo[seed] = (rows, d2)
        return memo[seed]


def budget_delta(geo, budget: int, target: float, seed: int = 0) -> dict:
    """{'delta', 'budget' (the b used), 'sample', 'pair_fraction'}: the smallest delta whose b greedy
    balls cover ``target`` of the sample; ``pair_fraction`` is the share of sample pairs closer than it."""
    key = (int(budget), float(target), int(seed))
    with geo.lock:
        memo = geo.scratch("probcover_budget_delta")
        if key in memo:
            return memo[key]
        rows, d2 = sample_sq_dists(geo, seed)
        b = int(max(1, min(int(budget), rows.size // 8)))
        lo, hi = 0.0, float(np.sqrt(d2.max())) * 1.001 + 1e-6  # at hi one ball covers everything
        for _ in range(_BISECT_STEPS):
            mid = 0.5 * (lo + hi)
            if greedy_coverage(d2 < np.float32(mid * mid), b) >= target:
                hi = mid
            else:
                lo = mid
        memo[key] = {"delta": hi, "budget": b, "sample": int(rows.size),
                     "pair_fraction": float((d2 < np.float32(hi * hi)).mean())}
        return memo[key]


def pair_fraction(geo, delta: float, seed: int = 0) -> float:
    """Share of row pairs closer than delta, from a seeded sample of 500 rows against 2000."""
    a = sample_rows(geo.n_samples, 500, seed, 23)
    b = sample_rows(geo.n_samples, 2000, seed, 29)
    return float((_sq_dists(geo.X[a], geo.X[b]) < np.float32(delta) ** 2).mean())


@dataclass
class CoverGraph:
    """The delta-ball graph over ``rows`` (local CSR: symmetric, self-loops, int32 indices)."""

    rows: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    delta: float

    def local(self, pool_rows: np.ndarray) -> np.ndarray:
        """Position of each pool row in ``rows``, -1 when outside the universe."""
        pool_rows = np.asarray(pool_rows, dtype=np.int64)
        i = np.minimum(np.searchsorted(self.rows, pool_rows), self.rows.size - 1)
        return np.where(self.rows[i] == pool_rows, i, -1)


def universe_size(geo, delta: float, seed: int = 0, frac: float | None = None) -> int:
    """Rows of the coverage universe at this delta (see the module docstring); ``frac``: the share of
    pairs closer than delta when the caller knows it."""
    n = geo.n_samples
    size = min(n, COVER_UNIVERSE)
    if size * size <= MAX_COVER_EDGES:
        return int(size)
    if frac is None:
        frac = pair_fraction(geo, delta, seed) if np.isfinite(delta) else 1.0
    if frac * size * size > MAX_COVER_EDGES:
        size = max(min(n, 1000), int(np.sqrt(MAX_COVER_EDGES / frac)))
    return int(size)


def cover_graph(geo, delta: float, size: int, seed: int = 0) -> CoverGraph:
    """The ball graph over the universe (``size`` rows, seeded); the last two are cached.

    delta shrinks as labels accumulate, so the pairs of the widest range search so far are kept
    (with their distances) and a smaller delta only filters them: one search per session."""
    n = geo.n_samples
    full = size >= n
    key = (float(delta), n if full else int(size), -1 if full else int(seed))
    with geo.lock:
        memo = geo.scratch("probcover_graph")
        if key in memo:
            memo.move_to_end(key)
            return memo[key]
        rows = sample_rows(n, size, seed, 19)
        hit = cached_ball_graph(geo, delta) if full else None  # the purity rule's graph, when built
        if hit is None:
            ip, ind, sq, r = _pairs_within(geo, rows, key[1:], float(delta))
            hit = ball_from_pairs(rows.size, ip, ind, sq, np.float32(delta) ** 2, r)
        memo[key] = CoverGraph(rows, hit[0], hit[1], float(delta))
        while len(memo) > _GRAPHS_KEPT:
            memo.popitem(last=False)
        return memo[key]


def _pairs_within(geo, rows, ukey, delta):
    """(indptr, indices, sq, row of each pair) of the universe pairs closer than a radius >= delta."""
    memo = geo.scratch("probcover_pairs")
    hit = memo.get(ukey)
    if hit is None or hit[0] < delta:
        ip, ind, sq = range_pairs(geo.X[rows], delta, geo.backend, geo.device)
        hit = (delta, ip, ind, sq, np.repeat(np.arange(rows.size, dtype=np.int32), np.diff(ip)))
        memo.clear()
        memo[ukey] = hit
    return hit[1:]


def _mark(g: CoverGraph, fresh: np.ndarray, covered: np.ndarray, gain: np.ndarray) -> None:
    """Mark uncovered local rows ``fresh`` covered; each leaves the gain of every ball holding it."""
    covered[fresh] = True
    gain -= np.bincount(csr_gather(g.indptr, g.indices, fresh), minlength=gain.size)


def cover_by(geo, g: CoverGraph, centres: np.ndarray, covered: np.ndarray, gain: np.ndarray) -> None:
    """Cover the universe rows within delta of the pool rows ``centres`` (in place)."""
    centres = np.asarray(centres, dtype=np.int64)
    pos = g.local(centres)
    cover_rows(g.indptr, g.indices, pos[pos >= 0], covered, gain)
    out = centres[pos < 0]
    if out.size == 0:
        return
    Xu = geo.X[g.rows]
    hit = np.zeros(g.rows.size, bool)
    for a in range(0, out.size, 256):
        hit |= (_sq_dists(geo.X[out[a:a + 256]], Xu) < np.float32(g.delta) ** 2).any(0)
    _mark(g, np.flatnonzero(hit & ~covered), covered, gain)


def covered_state(geo, g: CoverGraph, labelled: np.ndarray):
    """(covered (M,) bool, gain (M,) int64) on ``g`` given the labelled pool rows.

    gain[v] counts the uncovered universe rows in v's ball. The last state is kept and
    extended when labels were only added (the session's usual round)."""
    labelled = np.unique(np.asarray(labelled, dtype=np.int64))
    with geo.lock:
        memo = geo.scratch("probcover_state")
        st = memo.get("last")
        if (st is not None and st[0] is g and st[1].size <= labelled.size
                and np.isin(st[1], labelled, assume_unique=True).all()):
            covered, gain = st[2].copy(), st[3].copy()
            new = np.setdiff1d(labelled, st[1], assume_unique=True)
        else:
            covered = np.zeros(g.rows.size, bool)
            gain = np.diff(g.indptr).astype(np.int64)
            new = labelled
        cover_by(geo, g, new, covered, gain)
        memo["last"] = (g, labelled, covered.copy(), gain.copy())
        return covered, gain
