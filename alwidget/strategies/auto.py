"""auto: a cold-start strategy while labels are scarce, DropQuery once the probe can be trusted.

Rule: with L labels over C classes (``n_classes`` when the caller declared them, else the
classes labelled so far), run ``cold_start`` (TypiClust by default, or ProbCover) while fewer
than 2 classes are labelled or L / C < ``min_per_class``; run DropQuery from then on.
``info["strategy"]`` names the strategy that ran and ``info["reason"]`` says why, e.g.
``"typiclust: 12 labels, 1.2 per class < 3, cold start"``.

The default switch point comes from :func:`alwidget.strategies.auto.switch_experiment`
(digits, see MIN_LABELS_PER_CLASS).
"""
from __future__ import annotations

import numpy as np

from ._common import REGISTRY, Context, call, register

#: Labels per class from which auto leaves cold start for DropQuery; measured, see below.
MIN_LABELS_PER_CLASS = 3.0


@register("auto", summary="cold start (TypiClust/ProbCover) while labels are scarce, then DropQuery")
def auto(ctx: Context, k: int, *, cold_start: str = "typiclust", min_per_class: float = MIN_LABELS_PER_CLASS,
         n_classes=None, **params):
    """Pick cold start or DropQuery from the labels so far; see the module docstring."""
    if cold_start not in ("typiclust", "probcover"):
        raise ValueError(f"cold_start must be 'typiclust' or 'probcover', got {cold_start!r}")
    if not np.isfinite(min_per_class) or min_per_class < 0:
        raise ValueError(f"min_per_class must be a finite number >= 0, got {min_per_class!r}")
    L = int(ctx.labelled.size)
    seen = int(ctx.seen_classes.size)
    C = max(int(n_classes) if n_classes is not None else seen, 1)
    per = L / C
    params = dict(params, n_classes=n_classes)
    if seen < 2 or per < min_per_class:
        why = (f"{L} labels, {per:.1f} per class < {min_per_class:g}" if seen >= 2
               else f"{L} labels from {seen} class{'es' if seen != 1 else ''}")
        idx, info = call(cold_start, ctx, k, params)
        info["reason"] = f"{cold_start}: {why}, cold start"
    else:
        idx, info = call("dropquery", ctx, k, params)
        info["reason"] = f"dropquery: {L} labels, {per:.1f} per class >= {min_per_class:g}; " + \
            info["reason"].split(": ", 1)[-1]
    info["labels_per_class"] = per
    return idx, info


def auto_params() -> set:
    """Every parameter auto accepts (its own plus those of the strategies it runs)."""
    out = {"cold_start", "min_per_class", "n_classes"}
    for name in ("typiclust", "probcover", "dropquery"):
        out |= REGISTRY[name].params or set()
    return out
