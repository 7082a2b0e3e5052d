"""ProbCover (Yehuda et al., NeurIPS 2022): greedy maximum coverage of delta-balls.

The delta-ball graph has an edge x - y iff ||x - y|| < delta (normalised features,
symmetric, self-loops, int32 CSR). Greedy: points in the balls of labelled points start
covered; each step takes the candidate whose ball holds the most uncovered points (ties: a
seeded random order; when nothing is left to cover, that order alone decides). Gains are
updated incrementally: a newly covered point decrements the gain of every ball holding it,
once, so a batch costs O(E + B * N) instead of rescanning the edge table per pick.

delta, the default rule: sized for the budget. With b = L + B labels after this batch
(rounded up on TypiClust's ladder, so delta changes only every few rounds and each graph is
reused), delta is the smallest radius at which b greedy balls cover a target share of the
pool (:func:`alwidget.strategies._cover.budget_delta`): ``coverage`` (0.5) up to b = 20; from
there the uncovered share shrinks as (20 / b) ** ``growth`` (0.75), so the target is 77 % at
b = 56 (50 labels), 86 % at 112 and 92 % at 224 (:func:`coverage_target`, at most 95 %).
In plain words: the first labels go to the middles of the densest groups; as the budget grows,
the balls keep enough radius to reach the sparse rest of the pool, where small classes live.

Why the target grows. A constant 0.5 keeps shrinking delta so that L + B balls cover half of the
pool: the balls stay in the dense head of a long-tailed pool and the five rarest classes of a
50:1 pool (20-80 images each) are covered last (7.4 of 10 classes by 50 labels). A constant
0.7-0.8 finds them (9.0) but costs 4-8 points at 10 labels, where half of the pool is what ten
balls can usefully cover. Growing from 0.5 at 20 labels keeps the first rounds and found 9.0
classes by 50 labels; over four feature sets it raised the mean accuracy at 50 / 100 / 200
labels by 1.4 / 1.2 / 1.9 points (``bench/bench_probcover.py``, BENCHMARKS.md).

Why not the paper's rule. The paper takes the largest delta whose balls are 95 % pure with
respect to k-means pseudo-labels (K = number of classes). That works on self-supervised
features trained on the pool itself (SimCLR on CIFAR-10), where classes form tight, separated
clusters. On supervised ImageNet features of other images (EfficientNet-Lite0 on
Fashion-MNIST or MNIST, on digits pixels) the nearest other-cluster point is about as close as
the nearest neighbour: the purity rule gives delta = 0.54 on Fashion-MNIST where the median
distance to a point's nearest neighbour is 0.57, most balls hold only their own point, 10
picks cover 5 % of the pool and ProbCover is barely better than random. Over four feature
sets, the accuracy-optimal fixed delta at each budget made b balls cover 40-80 % of the
pool, and the budget rule with 50 % was best on average at 10-20 labels (``bench/bench_probcover.py``;
figures in BENCHMARKS.md).
The paper's rule stays available: ``purity=0.95`` (with ``n_classes`` pseudo-labels, default
``max(10, classes labelled)``), computed exactly by
:func:`alwidget.cover_geometry.probcover_delta`. ``delta=`` fixes the radius.

Large pools: coverage is measured and maximised on a seeded sample of at most 10,000 rows
(fewer when the graph would pass 10 million edges), see :mod:`alwidget.strategies._cover`.
"""
from __future__ import annotations

import numpy as np

from .. import cover_geometry
from ..cover_geometry import cover_rows
from . import _cover
from ._common import Context, register
from .typiclust import ladder_up

DEFAULT_PSEUDO_CLASSES = 10
#: Share of the pool that L + B balls must cover up to GROW_FROM labels (the budget rule's target); measured.
COVERAGE = 0.5
#: Budget from which the target grows, the exponent of its growth, and its ceiling; measured.
GROW_FROM = 20
GROWTH = 0.75
MAX_TARGET = 0.95
#: A range search for a widened delta goes this much further (the next rounds then only filter).
REACH = 1.15


def pseudo_classes(ctx: Context, n_classes) -> int:
    """K for the pseudo-labels of the purity rule."""
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


def choose_delta(ctx: Context, k: int, coverage, purity, n_classes, delta, growth=GROWTH):
    """(delta, info entries, technical why) by the rule the parameters ask for."""
    geo = ctx.geometry
    if delta is not None:
        d = float(delta)
        if not d > 0:
            raise ValueError(f"delta must be a positive distance, got {delta!r}")
        return d, {"delta": d, "delta_rule": "given"}, f"delta={d:.4g} (given)"
    if purity is not None:
        K = pseudo_classes(ctx, n_classes)
        pc = cover_geometry.probcover_info(geo, K, ctx.geometry_seed, purity)
        d = pc["delta"]
        return d, {"delta": d, "delta_rule": "purity", "purity": pc["purity"], "n_pseudo_classes": pc["n_pseudo"]}, \
            f"delta={d:.4g} (purity {pc['purity']:.3f} >= {purity} with {pc['n_pseudo']} pseudo-classes)"
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must be a share in (0, 1), got {coverage!r}")
    b = ladder_up(ctx.labelled.size + k)
    target = coverage_target(b, float(coverage), growth)
    bd = _cover.budget_delta(geo, b, target, ctx.geometry_seed)
    d = bd["delta"]
    return d, {"delta": d, "delta_rule": "budget", "budget": bd["budget"], "coverage_target": target,
               "pair_fraction": bd["pair_fraction"]}, \
        f"delta={d:.4g} ({bd['budget']} greedy balls cover {target:.0%} of a {bd['sample']}-row sample)"


def _reach(info: dict, growth: float):
    """How far a new range search goes when the growing target has widened delta: REACH x delta,
    so the next rounds' wider deltas only filter the same pairs (one search per ~15 % of delta)."""
    if info.get("delta_rule") != "budget" or not growth > 0:
        return None
    return REACH * info["delta"]


def coverage_target(b: int, coverage: float, growth: float) -> float:
    """The share of the pool that b greedy balls must cover: ``coverage`` up to :data:`GROW_FROM`
    balls; beyond, the uncovered share shrinks as (GROW_FROM / b) ** ``growth``, at most
    :data:`MAX_TARGET` covered (measured, module docstring)."""
    if not growth >= 0:
        raise ValueError(f"growth must be a number >= 0, got {growth!r}")
    left = (1.0 - coverage) * min(1.0, GROW_FROM / max(int(b), 1)) ** float(growth)
    return float(max(coverage, min(MAX_TARGET, 1.0 - left)))


@register("probcover", summary="greedy max coverage of delta-balls sized for the budget (low budget)")
def probcover(ctx: Context, k: int, *, coverage: float = COVERAGE, growth: float = GROWTH, purity=None,
              n_classes=None, delta=None):
    """ProbCover batch of k points; see the module docstring."""
    d, info, why = choose_delta(ctx, k, coverage, purity, n_classes, delta, growth)
    info["reason"] = "Picking images that stand for as many unlabelled look-alikes as possible"
    if not np.isfinite(d):  # one pseudo-label everywhere: every ball is the whole pool
        cand = ctx.candidates
        prio = ctx.rng(3).permutation(ctx.n_samples)
        info["detail"] = f"probcover: {why}: every ball covers the pool, seeded random order"
        return cand[np.argsort(-prio[cand], kind="stable")[:k]], info
    geo = ctx.geometry
    size = _cover.universe_size(geo, d, ctx.geometry_seed, info.get("pair_fraction"))
    g = _cover.cover_graph(geo, d, size, ctx.geometry_seed, _reach(info, growth))
    covered, gain = _cover.covered_state(geo, g, ctx.labelled)
    available = ctx.available[g.rows]
    m = g.rows.size
    start = float(covered.mean())
    kk = int(min(k, available.sum()))
    picks, gains = greedy_cover(g.indptr, g.indices, covered, gain, available, kk, ctx.rng(3).permutation(m))
    after = float(covered.mean())
    info.update(n_edges=int(g.indices.size), universe=int(m), covered_before=start, covered_after=after,
                zero_gain_picks=int((gains == 0).sum()))
    info["reason"] += f": with this batch the labels cover {after:.0%} of the images (before: {start:.0%})"
    info["detail"] = (f"probcover: {why}; covers {start:.1%} -> {after:.1%} of "
                      f"{'the pool' if m == ctx.n_samples else f'a {m}-row sample of the pool'}")
    return g.rows[picks], info
