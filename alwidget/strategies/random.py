"""Random sampling: the baseline every other strategy has to beat."""
from __future__ import annotations

from ._common import Context, register


@register("random", summary="uniform random sample of the unlabelled pool")
def random_sampling(ctx: Context, k: int):
    """k unlabelled points drawn uniformly without replacement (seeded)."""
    unl = ctx.unlabelled
    idx = ctx.rng(1).choice(unl, size=k, replace=False)
    return idx, {"reason": f"random: uniform over {unl.size} unlabelled points"}
