"""auto: the default strategy, three phases by labels per class (rule measured, see below).

In plain words: auto first picks typical images of groups of look-alikes (TypiClust) until it
has about 5 labels per class; then it asks about images the model is unsure of, spread over
the map (DropQuery), until about 10 per class; after that it asks about the images the model
finds hardest to tell between two classes (margin). The status line says which phase runs.

With L labels and C classes (``n_classes`` when the caller declared them, else the classes
labelled so far): ``cold_start`` while fewer than 2 classes have labels or L / C <
``min_per_class`` (5); ``then`` (DropQuery) while L / C < ``late_per_class`` (10); ``late``
(margin) from there on. The phase depends only on the labels, so the same labels always give
the same phase; ``info["reason"]`` names what auto is doing and where it switched,
``info["phase"]`` is 0, 1 or 2, ``info["strategy"]`` the strategy that ran.

Measured with ``bench/bench_auto_switch.py`` (BENCHMARKS.md, "auto"): 14 policies (TypiClust
or ProbCover cold start; t1 in 1, 2, 3, 5 and t2 in 5, 10, never) on four feature sets
(digits pixels; EfficientNet-Lite0 features of a 10k Fashion-MNIST subset, of a 50:1
long-tailed pool drawn from it, of 5k MNIST digits), 5 seeds, budgets 10 to 200, batches of
10, LogisticRegression(C=100) on the picks. (5, 10) had the smallest mean shortfall from the
best fixed strategy (0.8 points over 32 set x budget cells; the old rule, DropQuery from 1
label per class: 1.4). Chosen without one of the sets, the rule ((5, 10) or (3, 5)) fell short
on the held-out set by at most 0.4-0.7 points more than the best policy of the grid did there
(2.2 on digits, where only a ProbCover start does better). No policy is within 1 point
everywhere: at 10-20 labels on digits ProbCover is 2-4 points ahead of every TypiClust start,
and a ProbCover start is 7 points behind on Fashion-MNIST.
"""
from __future__ import annotations

import numpy as np

from ._common import COLD_START_WORDS, REGISTRY, Context, call, check_cold_start, register

#: Labels per class from which auto leaves cold start for ``then``; measured (module docstring).
MIN_LABELS_PER_CLASS = 5.0
#: Labels per class from which auto runs ``late``; measured (module docstring).
LATE_LABELS_PER_CLASS = 10.0

#: cold_start="auto": ProbCover when the pool's neighbour ratio is below this, else TypiClust; measured.
TIGHT_RATIO = 0.45
#: Rows whose distances to the whole pool give the ratio's two medians.
_RATIO_SAMPLE = 400

PHASES = ("cold start", "uncertainty with diversity", "hardest cases")
_WORDS = {"dropquery": "asking about images the model is unsure of, spread over the map",
          "margin": "asking about the images the model finds hardest to tell between two classes",
          "power_margin": "asking about images the model finds hard to tell apart, drawn in proportion to its doubt",
          "badge": "asking about images that would teach the model most, each of a different kind",
          "bald": "asking about images on which the model's plausible versions disagree most",
          "power_bald": "asking about images on which the model's plausible versions disagree, drawn in "
                        "proportion to the disagreement",
          "batchbald": "asking about a batch on which the model's plausible versions disagree most"}


def neighbour_ratio(geo, seed: int = 0) -> float:
    """Median distance to the nearest other row over the median distance between two random rows.

    Near 0: tight groups of look-alikes (ProbCover's balls hold many images of one kind); near 1:
    no structure. Measured from a seeded sample of rows against the whole pool; cached per pool."""
    with geo.lock:
        memo = geo.scratch("auto_neighbour_ratio")
        if seed not in memo:
            n = geo.n_samples
            rows = np.arange(n) if n <= _RATIO_SAMPLE else \
                np.sort(np.random.default_rng([int(seed), 31]).choice(n, _RATIO_SAMPLE, replace=False))
            d2 = geo.sq_dist_to(rows)  # (N, m)
            d2[rows, np.arange(rows.size)] = np.inf  # a row is not its own neighbour
            nn = np.sqrt(d2.min(0))
            pair = np.sqrt(d2[np.isfinite(d2)])
            memo[seed] = float(np.median(nn) / max(float(np.median(pair)), 1e-12))
        return memo[seed]


def pick_cold_start(ctx: Context, cold_start: str, tight_ratio: float):
    """(cold start strategy, the ratio or None): 'auto' picks ProbCover on tight pools, else TypiClust."""
    if cold_start != "auto":
        return cold_start, None
    r = neighbour_ratio(ctx.geometry, ctx.geometry_seed)
    return ("probcover" if r < tight_ratio else "typiclust"), r


def _check_threshold(name, v):
    if not v >= 0:  # inf allowed: never switch
        raise ValueError(f"{name} must be a number >= 0, got {v!r}")


@register("auto", summary="typical images first, then uncertain ones spread over the map, then the hardest cases")
def auto(ctx: Context, k: int, *, cold_start: str = "typiclust", min_per_class: float = MIN_LABELS_PER_CLASS,
         then: str = "dropquery", late: str = "margin", late_per_class: float = LATE_LABELS_PER_CLASS,
         n_classes=None, tight_ratio: float = TIGHT_RATIO, **params):
    """Pick the phase from the labels so far and run its strategy; see the module docstring."""
    if cold_start not in ("typiclust", "probcover", "auto"):
        raise ValueError(f"cold_start must be 'typiclust', 'probcover' or 'auto', got {cold_start!r}")
    cold_start, ratio = pick_cold_start(ctx, cold_start, float(tight_ratio))
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
    if ratio is not None and phase == 0:
        info["reason"] += _ratio_words(cold_start, ratio)
        info["detail"] += f"; cold start {cold_start}: neighbour ratio {ratio:.2f} vs {float(tight_ratio):g}"
    info["labels_per_class"] = per
    if ratio is not None:
        info["neighbour_ratio"] = ratio
    info["phase"] = phase
    return idx, info


_NAMES = {"typiclust": "TypiClust", "probcover": "ProbCover", "dropquery": "DropQuery", "margin": "margin sampling",
          "power_margin": "power margin", "badge": "BADGE", "bald": "BALD", "power_bald": "PowerBALD",
          "batchbald": "BatchBALD"}


def _reason(phase, name, cold_start, L, seen, C, n_classes, t1, t2) -> str:
    """One plain sentence: what auto does now, and where it switches (or switched)."""
    if phase == 0:
        what = COLD_START_WORDS[cold_start]
        if seen < 2:
            return f"Picking {what} until at least two classes have labels ({seen} so far)"
        of = f", {seen} of them with labels" if n_classes is not None else ""
        return (f"Picking {what} until there are about {t1:g} labels per class: {L} so far "
                f"for {C} classes{of}")
    base = _WORDS[name][0].upper() + _WORDS[name][1:]
    if phase == 1:
        nxt = f"; the hardest cases from {t2:g}" if t2 != float("inf") else ""
        return (f"{base} (auto switched from {_NAMES[cold_start]} to {_NAMES[name]} at {t1:g} labels per "
                f"class; {L / C:.1f} now{nxt})")
    return f"{base} (auto switched to {_NAMES[name]} at {t2:g} labels per class; {L / C:.1f} now)"


def _ratio_words(cold_start, ratio) -> str:
    """Why this cold start, in plain words, from the pool's neighbour ratio."""
    how = "close" if cold_start == "probcover" else "loose"
    return (f" ({_NAMES[cold_start]}: look-alikes are {how} here, an image's nearest neighbour is at "
            f"{ratio:.2f} of the typical distance between two images)")


def auto_params() -> set:
    """Every parameter auto accepts (its own plus those of the strategies it runs)."""
    out = {"cold_start", "min_per_class", "then", "late", "late_per_class", "n_classes", "tight_ratio"}
    for name in ("typiclust", "probcover", *_WORDS):
        out |= REGISTRY[name].params or set()
    return out
