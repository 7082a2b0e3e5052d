"""Coreset / k-centre greedy (Sener & Savarese, ICLR 2018) on the normalised features.

Each pick is the unlabelled point farthest from every labelled or already picked point. A
running (N,) min-distance vector is updated with one row of distances per pick, never an
N x N matrix; the vector for the labelled set is cached in the geometry and extended when
labels are only added. With no labels at all the first centre is a seeded random point.
Ties (e.g. identical rows) go to the lowest index.
"""
from __future__ import annotations

import numpy as np

from ._common import Context, register


def k_center_greedy(geo, min_sq: np.ndarray, available: np.ndarray, k: int) -> np.ndarray:
    """k farthest-first picks among ``available`` given the running min squared distances."""
    picks = np.empty(k, np.int64)
    score = np.where(available, min_sq, -1.0)
    for t in range(k):
        v = int(score.argmax())
        picks[t] = v
        score[v] = -1.0
        np.minimum(score, geo.sq_dist_to([v])[:, 0], out=score, where=score >= 0)
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
