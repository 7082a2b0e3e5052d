"""Coreset / k-centre greedy (Sener & Savarese, ICLR 2018) on the normalised features.

Each pick is the unlabelled point farthest from every labelled or already picked point. The
(N,) min-distance vector for the labelled set is cached in the geometry and extended when
labels are only added; within a batch it is updated lazily (:func:`k_center_greedy`): only
the farthest candidates get distances to the new picks, never an N x N matrix. With no labels at all the first centre is a seeded random point.
Ties (e.g. identical rows) go to the lowest index.
"""
from __future__ import annotations

import numpy as np

from ._common import Context, register


#: Rows re-scored at once when the best bound is stale (the farthest candidates).
REFRESH_BLOCK = 64


def k_center_greedy(geo, min_sq: np.ndarray, available: np.ndarray, k: int) -> np.ndarray:
    """k farthest-first picks among ``available`` given the running min squared distances.

    Lazy: a pick only lowers distances, so each row's last computed value bounds its true
    one from above. A step takes the row with the largest bound once that bound is up to date
    (then no other row can beat it; ties: the lowest index); otherwise the
    :data:`REFRESH_BLOCK` largest bounds are brought up to date against the picks made since,
    with one small product. Picks far from the new centres need no new distances, so a
    step costs a few hundred distances instead of N."""
    picks = np.empty(k, np.int64)
    score = np.where(available, min_sq, -1.0).astype(np.float32)
    seen = np.zeros(score.size, np.int64)  # picks folded into each row's score
    for t in range(k):
        while True:
            v = int(score.argmax())
            if seen[v] == t or score[v] < 0:
                break
            m = min(REFRESH_BLOCK, score.size)
            top = np.argpartition(-score, m - 1)[:m]
            top = top[(seen[top] < t) & (score[top] >= 0) & (top != v)]
            top = np.append(top, v)  # v itself, whatever ties put in the block
            lo = int(seen[top].min())
            score[top] = np.minimum(score[top], geo.sq_dist_to(picks[lo:t], among=top).min(1))
            seen[top] = t
        picks[t] = v
        score[v] = -1.0
    return picks


@register("coreset", summary="k-centre greedy: farthest point from everything labelled")
def coreset(ctx: Context, k: int):
    """Coreset batch of k points; see the module docstring."""
    geo = ctx.geometry
    available = ctx.available
    labelled = ctx.labelled
    if labelled.size:
        min_sq = geo.min_sq_dist(labelled)
        picks = k_center_greedy(geo, min_sq, available, k)
        why = f"farthest from {labelled.size} labelled points"
    else:
        first = int(ctx.rng(4).choice(np.flatnonzero(available)))
        available[first] = False
        rest = k_center_greedy(geo, geo.sq_dist_to([first])[:, 0], available, k - 1)
        picks = np.concatenate(([first], rest))
        why = "no labels: seeded random first centre"
    return picks, {"reason": "Picking the images least like anything labelled so far, to reach every corner of the map",
                   "detail": f"coreset: k-centre greedy, {why}"}
