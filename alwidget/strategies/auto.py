"""auto: the default strategy; a cold start chosen from the pool's shape, then margin (rule measured, see below).

In plain words: auto first looks at how close look-alike images are. Where an image's nearest
neighbour is much nearer than a typical other image (tight groups, e.g. digits), it picks
images that stand for as many look-alikes as possible (ProbCover); elsewhere it picks typical
images of groups of look-alikes (TypiClust); once there are 2 labels per class, if some class
the user declared still has no label, it switches to the covering images (ProbCover), which
reach the parts of the map that typical images leave out (rare classes). It does so until there
are about 5 labels per class, and from then on asks about the images the model finds hardest to
tell between two classes (margin). The status line says which phase runs and why.

With L labels and C classes (``n_classes`` when the caller declared them, else the classes
labelled so far): ``cold_start`` while fewer than 2 classes have labels or L / C <
``min_per_class`` (5); ``then`` (DropQuery) while L / C < ``late_per_class`` (5: by default
this phase is empty); ``late`` (margin) from there on. ``cold_start="auto"`` (the default) is
ProbCover when :func:`neighbour_ratio` (median distance to the nearest other image over the
median distance between two images, from a seeded sample of 400 rows against the pool) is
below ``tight_ratio`` (0.45), else TypiClust; ``"typiclust"`` or ``"probcover"`` force one. A
TypiClust cold start runs ProbCover instead from ``explore_from`` (2) labels per class while
some of the ``n_classes`` declared classes has no label (``info["exploring"]``; ``inf`` turns
this off; without declared classes it never applies). The
phase and the cold start depend only on the labels and the features, so the same labels always
give the same phase; ``info["reason"]`` names what auto is doing, why this cold start, and where
it switched; ``info["phase"]`` is 0, 1 or 2, ``info["strategy"]`` the strategy that ran,
``info["neighbour_ratio"]`` the ratio when it chose.

Measured with ``bench/bench_auto_switch.py`` (BENCHMARKS.md, "auto"): TypiClust or ProbCover
cold starts with (t1, t2) in (3, 3), (5, 5), (5, 10) against the best fixed strategy (TypiClust,
ProbCover, DropQuery, margin, BADGE) on four feature sets (digits pixels, ratio 0.33;
EfficientNet-Lite0 features of 5k MNIST digits, 0.42, of a 10k Fashion-MNIST subset, 0.49, and
of a 50:1 long-tailed pool drawn from it, 0.51), 5 seeds, budgets 10 to 200, batches of 10,
LogisticRegression(C=100) on the picks. The ratio rule at 0.45 with (5, 5) fell short of the
best fixed strategy by at most 2.2 points (mean 0.5 over 20 set x budget cells); the rule
before it (TypiClust to 5 per class, DropQuery to 10, then margin) by at most 3.7 (mean 1.1):
ProbCover leads at 10-50 labels on the tight sets and TypiClust on the loose ones, and margin
from 5 per class beat DropQuery from 5 to 10. Chosen without one of the sets, the same rule was
picked in three of four cases. Then the hand-over to ProbCover while a declared class has no
label (``bench/bench_auto_variants.py``; from 1 label per class it cost 2.5 points on the
long-tailed pool at 20 labels, from 2 it gained 1.2 there at 50 and found 9.2 of 10 classes
instead of 8.2): over five sets (the four plus Fashion-MNIST sorted by class) x 5 budgets the
worst shortfall went from 2.1 to 1.4 points, the mean from 0.49 to 0.43. Those shortfalls are
against the best of about ten 5-seed means, which overstates the best strategy (the winner's
curse): with each cell's best chosen on those seeds and compared on 20 fresh ones
(``bench/bench_auto_heldout.py``), auto is within 1 point in all 25 cells, worst −0.9 ± 0.3
(digits at 100 labels, where ProbCover keeps its lead after auto has moved to margin).
"""
from __future__ import annotations

import numpy as np

from . import _subsample
from ._common import COLD_START_WORDS, REGISTRY, Context, call, check_cold_start, register

#: Labels per class from which auto leaves cold start for ``then``; measured (module docstring).
MIN_LABELS_PER_CLASS = 5.0
#: Labels per class from which auto runs ``late`` (equal to the above: no ``then`` phase); measured.
LATE_LABELS_PER_CLASS = 5.0

#: From this many labels per class a TypiClust cold start gives way to ProbCover while a declared
#: class has no label (long-tailed pools: ProbCover's coverage reaches the rare classes); measured.
EXPLORE_FROM = 2.0
#: cold_start="auto": ProbCover when the pool's neighbour ratio is below this, else TypiClust; measured.
TIGHT_RATIO = 0.45
#: Rows whose distances to the whole pool give the ratio's two medians.
_RATIO_SAMPLE = 400
#: Pool rows searched per block, and rows whose distances to the sample give the pair median.
_RATIO_BLOCK, _PAIR_SAMPLE = 16_384, 4_096

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
    no structure. A seeded sample of rows is searched against the whole pool in blocks (memory
    stays O(block x sample) at 1M rows); the pair median comes from a second seeded sample of at
    most _PAIR_SAMPLE rows (the whole pool below that). Cached per pool and seed."""
    with geo.lock:
        memo = geo.scratch("auto_neighbour_ratio")
        if seed not in memo:
            n = geo.n_samples
            rng = np.random.default_rng([int(seed), 31])
            rows = _sample(rng, n, _RATIO_SAMPLE)
            nn2 = np.full(rows.size, np.inf, dtype=np.float32)
            for start in range(0, n, _RATIO_BLOCK):
                block = np.arange(start, min(n, start + _RATIO_BLOCK))
                nn2 = np.minimum(nn2, _without_self(geo.sq_dist_to(rows, among=block), block, rows).min(0))
            other = _sample(rng, n, _PAIR_SAMPLE)
            pair = _without_self(geo.sq_dist_to(rows, among=other), other, rows)
            pair = np.sqrt(pair[np.isfinite(pair)])
            memo[seed] = float(np.median(np.sqrt(nn2)) / max(float(np.median(pair)), 1e-12))
        return memo[seed]


def _sample(rng, n: int, m: int) -> np.ndarray:
    return np.arange(n) if n <= m else np.sort(rng.choice(n, m, replace=False))


def _without_self(d2, among, rows):
    """d2 (len(among), len(rows)) with the entries of a row against itself set to inf."""
    i, j = np.nonzero(among[:, None] == rows[None, :])
    d2[i, j] = np.inf
    return d2


def pick_cold_start(ctx: Context, cold_start: str, tight_ratio: float):
    """(cold start strategy, the ratio or None): 'auto' picks ProbCover on tight pools, else TypiClust."""
    if cold_start != "auto":
        return cold_start, None
    return pool_cold_start(ctx.geometry, ctx.geometry_seed, tight_ratio)


def pool_cold_start(geo, geometry_seed: int = 0, tight_ratio: float = TIGHT_RATIO):
    """(cold start, neighbour ratio) that ``cold_start="auto"`` picks on the pool of Geometry ``geo``
    (on huge pools measured on the seeded subsample); cached with the ratio."""
    r = neighbour_ratio(_subsample.density_geometry(geo, geometry_seed), geometry_seed)
    return ("probcover" if r < float(tight_ratio) else "typiclust"), r


def _check_threshold(name, v):
    if not v >= 0:  # inf allowed: never switch
        raise ValueError(f"{name} must be a number >= 0, got {v!r}")


@register("auto", summary="images that stand for their look-alikes first (ProbCover or TypiClust, by the pool's "
                          "shape), then the hardest cases")
def auto(ctx: Context, k: int, *, cold_start: str = "auto", min_per_class: float = MIN_LABELS_PER_CLASS,
         then: str = "dropquery", late: str = "margin", late_per_class: float = LATE_LABELS_PER_CLASS,
         n_classes=None, tight_ratio: float = TIGHT_RATIO, explore_from: float = EXPLORE_FROM, **params):
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
    _check_threshold("explore_from", explore_from)
    L = int(ctx.labelled.size)
    seen = int(ctx.seen_classes.size)
    C = max(int(n_classes) if n_classes is not None else seen, 1)
    per = L / C
    params = dict(params, n_classes=n_classes)
    explore = False
    if seen < 2 or per < min_per_class:
        explore = _explores(cold_start, per, seen, n_classes, explore_from)
        phase, name = 0, ("probcover" if explore else cold_start)
    else:
        phase, name = (1, then) if per < late_per_class else (2, late)
    idx, info = call(name, ctx, k, params)
    info["detail"] = (f"auto phase {phase}, {PHASES[phase]} ({L} labels, {per:.1f} per class; switches at "
                      f"{min_per_class:g} and {late_per_class:g} per class): " + info.get("detail", name))
    info["reason"] = _reason(phase, name, cold_start, L, seen, C, n_classes, min_per_class, late_per_class)
    if explore:
        info["reason"] = _explore_words(seen, C, min_per_class)
        info["detail"] += (f"; ProbCover in place of {cold_start}: {C - seen} of {C} declared classes have no "
                           f"label at {per:.1f} per class (from {explore_from:g})")
    elif ratio is not None and phase == 0:
        info["reason"] += _ratio_words(cold_start, ratio)
        info["detail"] += f"; cold start {cold_start}: neighbour ratio {ratio:.2f} vs {float(tight_ratio):g}"
        if _subsample.applies(ctx.n_samples):
            info["detail"] += f" (measured on a {_subsample.SUBSAMPLE_SIZE}-row subsample)"
    info["labels_per_class"] = per
    if ratio is not None:
        info["neighbour_ratio"] = ratio
    info["phase"] = phase
    info["exploring"] = explore
    return idx, info


def _explores(cold_start, per, seen, n_classes, explore_from) -> bool:
    """TypiClust's cold start hands over to ProbCover while declared classes have no label yet."""
    return cold_start == "typiclust" and n_classes is not None and per >= explore_from and seen < n_classes


def _explore_words(seen, C, t1) -> str:
    return (f"Picking {COLD_START_WORDS['probcover']}, which reaches parts of the map the typical images left "
            f"out: {C - seen} of {C} classes have no label yet (until there are about {t1:g} labels per class)")


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
    if t2 <= t1:
        return (f"{base} (auto switched from {_NAMES[cold_start]} to {_NAMES[name]} at {t2:g} labels per class; "
                f"{L / C:.1f} now)")
    return f"{base} (auto switched to {_NAMES[name]} at {t2:g} labels per class; {L / C:.1f} now)"


def _ratio_words(cold_start, ratio) -> str:
    """Why this cold start, in plain words, from the pool's neighbour ratio."""
    how = "close" if cold_start == "probcover" else "loose"
    return (f" ({_NAMES[cold_start]}: look-alikes are {how} here, an image's nearest neighbour is at "
            f"{ratio:.2f} of the typical distance between two images)")


def auto_params() -> set:
    """Every parameter auto accepts (its own plus those of the strategies it runs)."""
    out = {"cold_start", "min_per_class", "then", "late", "late_per_class", "n_classes", "tight_ratio",
           "explore_from"}
    for name in ("typiclust", "probcover", *_WORDS):
        out |= REGISTRY[name].params or set()
    return out
