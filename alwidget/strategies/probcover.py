"""ProbCover (Yehuda et al., NeurIPS 2022): greedy maximum coverage of delta-balls.

The delta-ball graph has an edge x - y iff ||x - y|| < delta (normalised features,
symmetric, self-loops, int32 CSR, built once per feature set by
:meth:`alwidget.geometry.Geometry.probcover_delta`). delta is the largest value whose purity
is at least ``purity`` (0.95), purity being the share of points whose ball holds only their
own k-means pseudo-label; it is an exact order statistic of the distances to the nearest
point of another pseudo-label (see the geometry module), reported as ``info["delta"]``.

Pseudo-classes K: ``n_classes`` when the caller knows the classes; otherwise
``max(DEFAULT_PSEUDO_CLASSES, classes labelled so far)`` (10: the class count of the
bundled and benchmark data sets; a fixed default keeps the cached graph valid across rounds).

Greedy: points in the balls of labelled points start covered; each step takes the unlabelled
point whose ball holds the most uncovered points (ties: a seeded random order; when nothing is
left to cover, that order alone decides). Gains are updated incrementally: a newly covered
point decrements the gain of every ball holding it, once, so a batch costs O(E + B * N)
instead of rescanning the edge table per pick. The covered state of the labelled set is kept
in the geometry cache and extended when labels are only added.
"""
from __future__ import annotations

import numpy as np

from ..geometry import cover_rows
from ._common import Context, register

DEFAULT_PSEUDO_CLASSES = 10


def pseudo_classes(ctx: Context, n_classes) -> int:
    """K for the pseudo-labels (see module docstring)."""
    if n_classes is not None:
        if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
            raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
        return int(n_classes)
    return max(DEFAULT_PSEUDO_CLASSES, int(ctx.seen_classes.size))


def greedy_cover(indptr, indices, covered, gain, available, k, prio):
    """k greedy max-coverage picks among ``available`` (bool, N). Mutates the state arrays.

    prio: (N,) distinct ints, higher wins ties. Returns (picks (k,) int64, gains (k,) int64).
    """
    n = gain.size
    picks = np.empty(k, np.int64)
    gains = np.empty(k, np.int64)
    key = np.empty(n, np.int64)
    for t in range(k):
        np.multiply(gain, n, out=key)
        key += prio
        key[~available] = -1
        v = int(key.argmax())
        picks[t], gains[t] = v, gain[v]
        available[v] = False
        cover_rows(indptr, indices, [v], covered, gain)
    return picks, gains


@register("probcover", summary="greedy max coverage of purity-0.95 delta-balls (low budget)")
def probcover(ctx: Context, k: int, *, n_classes=None, purity: float = 0.95, delta=None):
    """ProbCover batch of k points; see the module docstring. ``delta`` overrides the purity rule."""
    geo = ctx.geometry
    n = ctx.n_samples
    K = pseudo_classes(ctx, n_classes)
    if delta is None:
        pc = geo.probcover_info(K, ctx.geometry_seed, purity)
        d = pc["delta"]
        info = {"delta": d, "purity": pc["purity"], "n_pseudo_classes": pc["n_pseudo"]}
        why = f"delta={d:.4g} (purity {pc['purity']:.3f} >= {purity} with {pc['n_pseudo']} pseudo-classes)"
    else:
        d = float(delta)
        if not d > 0:
            raise ValueError(f"delta must be a positive distance, got {delta!r}")
        info = {"delta": d}
        why = f"delta={d:.4g} (given)"
    prio = ctx.rng(3).permutation(n)
    available = ctx.labels < 0
    if not np.isfinite(d):  # one pseudo-label everywhere: every ball is the whole pool
        cand = np.flatnonzero(available)
        idx = cand[np.argsort(-prio[cand], kind="stable")[:k]]
        info["reason"] = f"probcover: {why}: every ball covers the pool, seeded random order"
        return idx, info
    indptr, indices = geo.ball_graph(d)
    covered, gain = geo.coverage(d, ctx.labelled)
    start = int(covered.sum())
    idx, gains = greedy_cover(indptr, indices, covered, gain, available, k, prio)
    info.update(n_edges=int(indices.size), covered_before=start / n, covered_after=float(covered.sum()) / n,
                zero_gain_picks=int((gains == 0).sum()))
    info["reason"] = (f"probcover: {why}; covers {start / n:.1%} -> {covered.sum() / n:.1%} of the pool")
    return idx, info
