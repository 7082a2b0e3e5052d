"""Random sampling: the baseline every other strategy has to beat."""
from __future__ import annotations

from ._common import Context, register


@register("random", summary="uniform random sample of the unlabelled pool")
def random_sampling(ctx: Context, k: int):
    """k candidates drawn uniformly without replacement (seeded per round)."""
    cand = ctx.candidates
    idx = ctx.rng(1).choice(cand, size=k, replace=False)
    return idx, {"reason": "Picking images at random: the baseline that other strategies have to beat",
                 "detail": f"random: uniform over {cand.size} candidates"}
