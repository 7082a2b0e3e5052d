"""auto: a cold-start strategy while labels are scarce, DropQuery once the probe can be trusted.

Rule: with L labels over C classes (``n_classes`` when the caller declared them, else the
classes labelled so far), run ``cold_start`` (TypiClust by default, or ProbCover) while fewer
than 2 classes are labelled or L / C < ``min_per_class``; run DropQuery from then on.
``info["strategy"]`` names the strategy that ran and ``info["reason"]`` says why, e.g.
``"typiclust: 6 labels, 0.6 per class < 1, cold start"``.

Default switch point: 1 label per class (with undeclared classes that means: as soon as
two classes are labelled, i.e. cold start only for the first batch). Measured with
``bench/bench_auto_switch.py`` on sklearn digits (pixels, rows L2-normalised; 70/30
stratified split; batches of 10 from zero labels; LinearProbe refitted each round;
test accuracy, mean of 5 seeds):

    labels                   10     20     30     50    100    200   mean(10 budgets)
    random                0.438  0.600  0.734  0.804  0.892  0.929   0.779
    margin                0.664  0.734  0.817  0.861  0.917  0.953   0.851
    typiclust, t=1        0.664  0.817  0.843  0.883  0.909  0.937   0.863  <- default
    typiclust, t=2        0.664  0.784  0.843  0.881  0.910  0.930   0.859
    typiclust, t=3        0.664  0.784  0.832  0.880  0.911  0.930   0.858
    typiclust, t=6        0.664  0.784  0.832  0.880  0.917  0.936   0.860
    typiclust only        0.664  0.784  0.832  0.880  0.909  0.939   0.859
    probcover, t=1        0.483  0.769  0.833  0.888  0.907  0.937   0.840
    probcover, t=3        0.483  0.626  0.724  0.869  0.918  0.930   0.809
    probcover only        0.483  0.626  0.721  0.823  0.899  0.937   0.793

(t = 0 gave exactly the t = 1 curves.) The later the switch, the lower the curve at 20-30
labels; past 50 labels the policies are within noise of each other. ProbCover's purity-0.95
balls are tiny on raw digit pixels (mean degree 3-4), so it is a weak cold start there.
"""
from __future__ import annotations

from ._common import REGISTRY, Context, call, register

#: Labels per class from which auto leaves cold start for DropQuery; measured, see below.
MIN_LABELS_PER_CLASS = 1.0


@register("auto", summary="cold start (TypiClust/ProbCover) while labels are scarce, then DropQuery")
def auto(ctx: Context, k: int, *, cold_start: str = "typiclust", min_per_class: float = MIN_LABELS_PER_CLASS,
         n_classes=None, **params):
    """Pick cold start or DropQuery from the labels so far; see the module docstring."""
    if cold_start not in ("typiclust", "probcover"):
        raise ValueError(f"cold_start must be 'typiclust' or 'probcover', got {cold_start!r}")
    if not min_per_class >= 0:  # inf is allowed: cold start only
        raise ValueError(f"min_per_class must be a number >= 0, got {min_per_class!r}")
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
