"""Compiled loops of ProbCover's delta search and ball graph (numba, which umap-learn already brings).

The bisection of :func:`alwidget.strategies._cover.budget_delta` runs a greedy max-coverage on the
3,000-row sample at each new radius: several hundred greedy steps per round. In numpy each step was a
dozen array calls on a few dozen points (about 0.1 ms; 66 of ProbCover's 80 ms round at 10k on a
two-core AMD EPYC); compiled, a step costs its own arithmetic. The loops make the same comparisons as
the numpy code they replace and the same first-index argmax, so deltas, graphs and picks are the same
to the bit. Compiled once per machine (``cache=True``, about 2 s), then loaded (about 0.2 s once numba
has started). Callers import this module lazily: importing numba takes about a second.
"""
from __future__ import annotations

import numba
import numpy as np


def _jit(fn):
    """``njit`` with numba's on-disk cache, or without it where numba finds no writable cache directory
    (it refuses to decorate then): the loops compile once per process instead (about 2 s)."""
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:
        return numba.njit(nogil=True)(fn)


@_jit
def _below(v, a, z, t):  # pragma: no cover - compiled (tests/test_cover_kernels.py)
    """The first index in [a, z) of the ascending v whose entry is not below t (z when all are)."""
    while a < z:  # entries before a are below t, entries from z on are not
        mid = (a + z) >> 1
        if v[mid] < t:
            a = mid + 1
        else:
            z = mid
    return a


@_jit
def counts_below(srt, t, lo, hi):  # pragma: no cover - compiled (tests/test_cover_kernels.py)
    """In place: lo[r] becomes the entries of sorted row r below t, searched within [lo[r], hi[r])."""
    for r in range(srt.shape[0]):
        lo[r] = _below(srt[r], lo[r], hi[r], t)


@_jit
def greedy_extend(order, cnt, covered, gain, counts, steps, n_cov, need, b):  # pragma: no cover - compiled
    """Greedy max-coverage steps from (steps, n_cov) until ``need`` rows are covered or b balls are placed.

    Row v's ball is ``order[v, :cnt[v]]``; ``gain[v]`` its uncovered rows. Each step takes the first
    largest gain, covers its ball and, for every newly covered row w, takes one off the gain of every
    ball in w's ball (the sample's balls are symmetric). ``counts[s]``: rows covered after s + 1 steps.
    Returns (steps, n_cov, state): 1 reached ``need``; 0 it cannot within b balls (each of the balls
    left adds at most the largest gain now); -1 no ball adds anything any more.
    """
    s = gain.size
    while n_cov < need:
        v = 0
        for i in range(1, s):
            if gain[i] > gain[v]:
                v = i
        if gain[v] == 0:
            return steps, n_cov, -1
        if steps >= b or n_cov + (b - steps) * gain[v] < need:
            return steps, n_cov, 0
        for j in range(cnt[v]):
            w = order[v, j]
            if not covered[w]:
                covered[w] = True
                n_cov += 1
                for k in range(cnt[w]):
                    gain[order[w, k]] -= 1
        counts[steps] = n_cov
        steps += 1
    return steps, n_cov, 1


@_jit
def row_prefixes(indptr, ind, w, d2):  # pragma: no cover - compiled (tests/test_cover_kernels.py)
    """CSR (indptr int64, indices int32) of each row's entries with w < d2, rows sorted by w: a bisection
    per row for its count, then the prefixes copied in row order."""
    n = indptr.size - 1
    out = np.zeros(n + 1, np.int64)
    for r in range(n):
        out[r + 1] = out[r] + _below(w, indptr[r], indptr[r + 1], d2) - indptr[r]
    joined = np.empty(out[n], np.int32)
    for r in range(n):
        joined[out[r]:out[r + 1]] = ind[indptr[r]:indptr[r] + out[r + 1] - out[r]]
    return out, joined
