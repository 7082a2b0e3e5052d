"""ProbCover's coverage geometry: a delta sized for the budget, a ball graph, the covered state.

delta for a budget. ``budget_delta(geo, b, target)`` is the smallest radius at which ``b``
greedy max-coverage balls cover ``target`` of the pool. It is found by bisection on a seeded
sample of :data:`COVER_SAMPLE` rows (coverage is a share of the pool, so a uniform sample
estimates it; ``b`` is capped at sample / 8 so that a ball still holds several sample points).
Each bisection step runs the greedy on the sample's distance rows sorted once (a ball is a row
prefix), with incremental gains, in O(sizes of the covered balls) per step instead of O(S^2), as
compiled loops (:mod:`alwidget._cover_kernels`: several hundred greedy steps per round). Greedy
picks depend on the balls alone (neither on the target nor on the budget), so each run is kept
per ball sizes and resumed: it answers the same balls at another radius (the bisection's last
steps), target or budget (the next rounds share the first radii), exactly.

Universe. The ball graph is built over at most :data:`COVER_UNIVERSE` rows (the whole pool
when it is smaller; else a seeded uniform sample), and fewer when the expected number of
edges (the share of pairs closer than delta, measured on a sample) would pass
:data:`MAX_COVER_EDGES`. Coverage is measured and maximised on the universe; labelled rows
outside it still cover the universe rows within delta of them. Picks come from the universe.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..cover_geometry import ball_at, cached_ball_graph, csr_gather, range_pairs, symmetric_pairs

COVER_SAMPLE = 3000
COVER_UNIVERSE = 10_000
MAX_COVER_EDGES = 10_000_000
_BISECT_STEPS = 22
_RUNS_KEPT = 128  # resumable greedy runs per feature set (about 60 KB each)
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
    """Share of the rows of a symmetric boolean adjacency A (self-loops set) covered by b greedy balls.

    The dense reference of :func:`budget_delta`'s greedy (which runs on sorted rows instead)."""
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
    """(rows, (S, S) float32 squared distances) of the seeded delta sample (diagonal 0); not cached."""
    rows = sample_rows(geo.n_samples, COVER_SAMPLE, seed, 17)
    d2 = _sq_dists(geo.X[rows], geo.X[rows])
    np.fill_diagonal(d2, 0.0)
    return rows, d2


def sample_sorted(geo, seed: int = 0):
    """(rows, srt, order): each row of the sample's squared distances sorted ascending (float32) and the
    columns in that order (int16 below 32k rows); cached, one per feature set. Row v's ball at a
    squared radius t is ``order[v, :count]``, count = the entries of ``srt[v]`` below t."""
    with geo.lock:
        memo = geo.scratch("probcover_sorted")
        if seed not in memo:
            rows, d2 = sample_sq_dists(geo, seed)
            order = np.argsort(d2, axis=1).astype(np.int16 if rows.size < 2**15 else np.int32)
            memo.clear()
            memo[seed] = (rows, np.take_along_axis(d2, order, 1), order)
        return memo[seed]


def _counts_below(srt: np.ndarray, t, lo=None, hi=None) -> np.ndarray:
    """(S,) int64 entries of each sorted row below t: a compiled bisection per row.

    ``lo`` / ``hi``: per-row brackets (the counts at a smaller and at a larger radius; default: the
    whole row), so that late bisection steps only search the few rows whose count can still move."""
    from .._cover_kernels import counts_below

    s, m = srt.shape
    out = np.zeros(s, np.int64) if lo is None else np.array(lo, np.int64)
    hi = np.full(s, m, np.int64) if hi is None else np.asarray(hi, np.int64)
    counts_below(np.ascontiguousarray(srt), np.float32(t), out, hi)
    return out


class _Run:
    """One greedy max-coverage run on the sample's balls of given sizes ``cnt`` (a radius): the
    covered count after each step so far and the state to resume from. Picks depend on the balls
    alone (the target and the budget only decide where to stop), so one run answers every
    (need, b) at every radius with these ball sizes, and resumes when asked further."""

    __slots__ = ("cnt", "counts", "covered", "done", "gain", "steps")

    def __init__(self, cnt: np.ndarray):
        self.cnt, self.covered, self.gain = cnt, np.zeros(cnt.size, bool), cnt.copy()
        self.counts = np.zeros(0, np.int64)  # covered rows after 1, 2, ... steps: counts[:steps]
        self.steps = 0
        self.done = False  # no ball adds anything any more

    def reaches(self, order, need: int, b: int) -> bool:
        """Whether b greedy balls cover ``need`` rows (the same answer as a dense greedy)."""
        if need <= 0:
            return True
        j = int(np.searchsorted(self.counts[:self.steps], need))  # the first step reaching need
        if j < self.steps:
            return j + 1 <= b
        if self.done or self.steps >= b:
            return False
        return self._extend(order, need, b)

    def _extend(self, order, need: int, b: int) -> bool:
        """Greedy steps from the state reached so far until ``need`` rows are covered, or b balls are
        placed, or it cannot get there (:func:`alwidget._cover_kernels.greedy_extend`): the same picks and
        counts as :func:`greedy_coverage` on ``d2 < t``, where a ball is a row's entries below t."""
        from .._cover_kernels import greedy_extend

        if self.counts.size < b:
            self.counts = np.concatenate([self.counts[:self.steps], np.zeros(b - self.steps, np.int64)])
        n_cov = int(self.counts[self.steps - 1]) if self.steps else 0
        self.steps, _, state = greedy_extend(order, self.cnt, self.covered, self.gain, self.counts,
                                             self.steps, n_cov, int(need), int(b))
        self.done = state < 0
        return state > 0


def _need(target: float, s: int) -> int:
    """The smallest count of s rows whose share is >= target, as covered.mean() compares."""
    need = int(np.ceil(target * s - 1e-9))
    while need / s < target:
        need += 1
    while need > 0 and (need - 1) / s >= target:
        need -= 1
    return need


def _covers(runs, seed: int, order, cnt: np.ndarray, need: int, b: int) -> bool:
    """Whether b greedy balls of sizes ``cnt`` cover ``need`` sample rows, from the run of these
    balls when one is kept (any earlier radius, target or budget with the same balls), else afresh."""
    key = (int(seed), cnt.astype(np.int32).tobytes())
    run = runs.get(key)
    if run is None:
        run = runs[key] = _Run(cnt)
        while len(runs) > _RUNS_KEPT:
            runs.popitem(last=False)
    runs.move_to_end(key)
    return run.reaches(order, need, b)


def budget_delta(geo, budget: int, target: float, seed: int = 0) -> dict:
    """{'delta', 'budget' (the b used), 'sample', 'pair_fraction'}: the smallest delta whose b greedy
    balls cover ``target`` of the sample; ``pair_fraction`` is the share of sample pairs closer than it.

    Bisection from [0, past the largest distance]; each step's ball sizes come from the sorted
    sample rows (:func:`sample_sorted`, searched within the sizes at lo and hi) and its greedy is
    remembered per ball sizes across radii, targets and budgets (:func:`_covers`): the same delta
    as a dense greedy per step, computed once. Late steps, once no distance lies between lo and
    hi but the deciding one, find the balls of lo or hi again and cost one search."""
    key = (int(budget), float(target), int(seed))
    with geo.lock:
        memo = geo.scratch("probcover_budget_delta")
        if key in memo:
            return memo[key]
        rows, srt, order = sample_sorted(geo, seed)
        b = int(max(1, min(int(budget), rows.size // 8)))
        need = _need(float(target), srt.shape[0])
        runs = geo.scratch("probcover_greedy_runs")  # (seed, ball sizes) -> _Run
        lo, hi = 0.0, float(np.sqrt(srt[:, -1].max())) * 1.001 + 1e-6  # at hi one ball covers everything
        c_lo = c_hi = None
        for _ in range(_BISECT_STEPS):
            mid = 0.5 * (lo + hi)
            c = _counts_below(srt, np.float32(mid * mid), c_lo, c_hi)
            if _covers(runs, seed, order, c, need, b):
                hi, c_hi = mid, c
            else:
                lo, c_lo = mid, c
        pairs = int((c_hi if c_hi is not None else _counts_below(srt, np.float32(hi * hi))).sum())
        memo[key] = {"delta": hi, "budget": b, "sample": int(rows.size),
                     "pair_fraction": pairs / float(srt.size)}
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


def cover_graph(geo, delta: float, size: int, seed: int = 0, reach: float | None = None) -> CoverGraph:
    """The ball graph over the universe (``size`` rows, seeded); the last two are cached.

    The pairs of the widest range search so far are kept (with their distances) and a smaller
    delta only filters them. ``reach`` (>= delta): the radius later rounds are expected to need
    (the growing coverage target widens delta as labels accumulate); a new search goes that far
    while its expected edges stay under :data:`MAX_COVER_EDGES`, so the next rounds only filter.
    The graph itself depends on delta alone."""
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
            hit = ball_at(_pairs_within(geo, rows, key[1:], float(delta), reach, seed), np.float32(delta) ** 2)
        memo[key] = CoverGraph(rows, hit[0], hit[1], float(delta))
        while len(memo) > _GRAPHS_KEPT:
            memo.popitem(last=False)
        return memo[key]


def _pairs_within(geo, rows, ukey, delta, reach=None, seed=0):
    """:func:`symmetric_pairs` of the universe pairs closer than a radius >= delta (the widest so far)."""
    memo = geo.scratch("probcover_pairs")
    hit = memo.get(ukey)
    if hit is None or hit[0] < delta:
        radius = _search_radius(geo, rows.size, delta, reach, seed)
        ip, ind, sq = range_pairs(geo.X[rows], radius, geo.backend, geo.device)
        r = np.repeat(np.arange(rows.size, dtype=np.int32), np.diff(ip))
        hit = (radius, symmetric_pairs(rows.size, ip, ind, sq, r))
        memo.clear()
        memo[ukey] = hit
    return hit[1]


def _search_radius(geo, m: int, delta: float, reach, seed) -> float:
    """reach when the universe's expected pairs within it stay under the edge cap, else delta."""
    if reach is None or not np.isfinite(reach) or reach <= delta:
        return float(delta)
    if m * m > MAX_COVER_EDGES and pair_fraction(geo, reach, seed) * m * m > MAX_COVER_EDGES:
        return float(delta)
    return float(reach)


def _mark(g: CoverGraph, fresh: np.ndarray, covered: np.ndarray, gain: np.ndarray) -> None:
    """Mark uncovered local rows ``fresh`` covered; each leaves the gain of every ball holding it.

    When fewer rows stay uncovered than were just covered, the gains are counted afresh from the
    uncovered rows instead (the graph is symmetric: row u's ball lists the balls holding u)."""
    covered[fresh] = True
    left = np.flatnonzero(~covered)
    if fresh.size <= left.size:
        gain -= np.bincount(csr_gather(g.indptr, g.indices, fresh), minlength=gain.size)
    else:
        gain[:] = np.bincount(csr_gather(g.indptr, g.indices, left), minlength=gain.size)


def _within(geo, g: CoverGraph, centres: np.ndarray) -> np.ndarray:
    """(M,) bool: the universe rows within delta of the pool rows ``centres``."""
    pos = g.local(centres)
    hit = np.zeros(g.rows.size, bool)
    hit[csr_gather(g.indptr, g.indices, pos[pos >= 0])] = True
    out = centres[pos < 0]
    if out.size:
        Xu = geo.X[g.rows]
        for a in range(0, out.size, 256):
            hit |= (_sq_dists(geo.X[out[a:a + 256]], Xu) < np.float32(g.delta) ** 2).any(0)
    return hit


def cover_by(geo, g: CoverGraph, centres: np.ndarray, covered: np.ndarray, gain: np.ndarray) -> None:
    """Cover the universe rows within delta of the pool rows ``centres`` (in place)."""
    centres = np.asarray(centres, dtype=np.int64)
    if centres.size:
        _mark(g, np.flatnonzero(_within(geo, g, centres) & ~covered), covered, gain)


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
