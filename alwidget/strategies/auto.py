"""auto: the default strategy, three phases by labels per class (rule measured, see below).

In plain words: auto first picks typical images of groups of look-alikes (TypiClust) until
every class has about {t1} labels; then it asks about the images the model is unsure of,
spread over the map (DropQuery), until every class has about {t2}; after that it asks about
the images the model finds hardest to tell between two classes (margin).

With L labels and C classes (``n_classes`` when the caller declared them, else the classes
labelled so far): ``cold_start`` while fewer than 2 classes have labels or L / C <
``min_per_class``; ``then`` (DropQuery) while L / C < ``late_per_class``; ``late`` (margin) from
there on. The phase depends only on the labels, so the same labels always give the same
phase; ``info["reason"]`` names what auto is doing and where it switched, ``info["phase"]``
is 0, 1 or 2, ``info["strategy"]`` the strategy that ran.

Measured with ``bench/bench_auto_switch.py`` (see BENCHMARKS.md, section "auto"): policies
with switch points from 1 to 20 labels per class on five feature sets (digits pixels;
EfficientNet-Lite0 features of a 10k Fashion-MNIST subset, of a 50:1 long-tailed pool drawn
from it and of 5k MNIST digits), 5 seeds, budgets 10 to 200, batches of 10. The defaults
minimise the largest shortfall from the best fixed strategy over all sets and budgets.
"""
from __future__ import annotations

from ._common import COLD_START_WORDS, REGISTRY, Context, call, check_cold_start, register

#: Labels per class from which auto leaves cold start for ``then``; measured (module docstring).
MIN_LABELS_PER_CLASS = 1.0
#: Labels per class from which auto runs ``late``; measured (module docstring).
LATE_LABELS_PER_CLASS = float("inf")

PHASES = ("cold start", "uncertainty with diversity", "hardest cases")
_WORDS = {"dropquery": "asking about images the model is unsure of, spread over the map",
          "margin": "asking about the images the model finds hardest to tell between two classes",
          "power_margin": "asking about images the model finds hard to tell apart, drawn in proportion to its doubt",
          "badge": "asking about images that would teach the model most, each of a different kind",
          "bald": "asking about images on which the model's plausible versions disagree most",
          "power_bald": "asking about images on which the model's plausible versions disagree, drawn in "
                        "proportion to the disagreement",
          "batchbald": "asking about a batch on which the model's plausible versions disagree most"}


def _check_threshold(name, v):
    if not v >= 0:  # inf allowed: never switch
        raise ValueError(f"{name} must be a number >= 0, got {v!r}")


@register("auto", summary="typical images first, then uncertain ones spread over the map, then the hardest cases")
def auto(ctx: Context, k: int, *, cold_start: str = "typiclust", min_per_class: float = MIN_LABELS_PER_CLASS,
         then: str = "dropquery", late: str = "margin", late_per_class: float = LATE_LABELS_PER_CLASS,
         n_classes=None, **params):
    """Pick the phase from the labels so far and run its strategy; see the module docstring."""
    if cold_start not in ("typiclust", "probcover"):
        raise ValueError(f"cold_start must be 'typiclust' or 'probcover', got {cold_start!r}")
    check_cold_start(cold_start)
    for name, v in (("then", then), ("late", late)):
        if v not in _WORDS:
            raise ValueError(f"{name} must be one of {', '.join(sorted(_WORDS))}, got {v!r}")
    _check_threshold("min_per_class", min_per_class)
    _check_threshold("late_per_class", late_per_class)
    L = int(ctx.labelled.size)
    seen = int(ctx.seen_classes.size)
    C = max(int(n_classes) if n_classes is not None else seen, 1)
    per = L / C
    params = dict(params, n_classes=n_classes)
    if seen < 2 or per < min_per_class:
        phase, name = 0, cold_start
    else:
        phase, name = (1, then) if per < late_per_class else (2, late)
    idx, info = call(name, ctx, k, params)
    info["detail"] = (f"auto phase {phase}, {PHASES[phase]} ({L} labels, {per:.1f} per class; switches at "
                      f"{min_per_class:g} and {late_per_class:g} per class): " + info.get("detail", name))
    info["reason"] = _reason(phase, name, cold_start, L, seen, C, n_classes, min_per_class, late_per_class)
    info["labels_per_class"] = per
    info["phase"] = phase
    return idx, info


def _reason(phase, name, cold_start, L, seen, C, n_classes, t1, t2) -> str:
    """One plain sentence: what auto does now, and when it switches (or switched)."""
    if phase == 0:
        what = COLD_START_WORDS[cold_start]
        if seen < 2:
            return f"Picking {what} until at least two classes have labels ({seen} so far)"
        need = f"about {t1:g} label{'s' if t1 != 1 else ''}"
        of = f"{seen} of {n_classes} classes have labels" if n_classes is not None else f"{L} labels so far"
        return f"Picking {what} until every class has {need}: {of}"
    base = _WORDS[name]
    base = base[0].upper() + base[1:]
    switched = f"switched from {cold_start} at {t1:g} label{'s' if t1 != 1 else ''} per class"
    if phase == 2:
        switched = f"switched at {t2:g} labels per class"
    nxt = ""
    if phase == 1 and t2 != float("inf"):
        nxt = f"; from {t2:g} per class auto asks about the hardest cases"
    return f"{base} ({switched}; {L / C:.1f} per class now{nxt})"


def auto_params() -> set:
    """Every parameter auto accepts (its own plus those of the strategies it runs)."""
    out = {"cold_start", "min_per_class", "then", "late", "late_per_class", "n_classes"}
    for name in ("typiclust", "probcover", *_WORDS):
        out |= REGISTRY[name].params or set()
    return out
