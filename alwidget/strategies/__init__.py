"""Active-learning strategies: pure selection functions behind one registry.

    >>> from alwidget import strategies
    >>> strategies.available()
    >>> idx, info = strategies.select("typiclust", X, labels, 10, seed=0, return_info=True)

``labels`` is an (N,) int array with class ids ``0..C-1`` and ``-1`` for unlabelled;
``exclude`` names unlabelled items that must not be proposed (unsure, skipped, held out for
evaluation). Every strategy returns exactly ``min(k, n_candidates)`` distinct candidates
(unlabelled, not excluded). Excluded items still count as pool points for the geometry.

Seeding. ``seed`` is the caller's seed; each call runs with :func:`round_seed` ``(seed,
labels)``, so successive rounds (more labels) draw fresh random choices and the same seed with
the same labels gives the same batch.

Model-based strategies (uncertainty, DropQuery, BADGE, BALD) use ``probe`` (a
:class:`alwidget.probe.LinearProbe` fitted on these features and labels) or train one; with
labels from fewer than 2 classes they run a cold-start strategy and say so. ``info["reason"]``
is one plain sentence for the person labelling; ``info["detail"]`` the technical one.
Geometry (normalised features, k-means, kNN, ProbCover's graph) is cached per feature set, so
repeated calls on the same features are cheap.

One module per family: random, typiclust, probcover, dropquery, uncertainty (least
confidence, margin, entropy, power_margin), coreset, badge, bald (bald, power_bald,
batchbald), auto.
"""
from __future__ import annotations

import numpy as np

from .._util import check_k, check_labels
from ..geometry import Geometry, threads
from . import auto as _auto
from . import bald, badge, coreset, dropquery, probcover, random, typiclust, uncertainty  # noqa: F401  (registers)
from . import _subsample
from ._common import REGISTRY, Context, call, round_seed

__all__ = ["available", "describe", "round_seed", "select"]


def available() -> list[str]:
    """Names accepted by :func:`select`."""
    return sorted(REGISTRY)


def describe() -> dict:
    """{name: one-line summary} of every strategy."""
    return {n: REGISTRY[n].summary for n in available()}


def select(name: str, features, labels, k: int, *, seed: int = 0, probe=None, return_info: bool = False,
           geometry_seed: int = 0, exclude=None, backend=None, device=None, n_threads=None, **params):
    """Indices of the next batch to label.

    Parameters
    ----------
    name : str
        One of :func:`available`.
    features : (N, D) float array (numpy or torch); validated (NaN/inf, shape).
    labels : (N,) int array, class ids 0..C-1, -1 for unlabelled.
    k : int > 0
        Batch size; ``min(k, n_candidates)`` indices come back.
    seed : int
        Same seed, same inputs -> same indices. The call runs with ``round_seed(seed, labels)``,
        which drives the per-round choices (tie-breaks, random fills, dropout masks,
        DropQuery's k-means), so a caller may keep one seed for a whole labelling run.
    geometry_seed : int
        Seeds the cached feature-only clusterings (TypiClust's k-means, ProbCover's
        pseudo-labels and delta). Kept apart from ``seed`` so that a caller varying ``seed``
        per round still reuses the cached geometry; pass the run's seed to vary clusterings
        between independent runs (simulations).
    probe : alwidget.probe.LinearProbe fitted on (features, labels), optional
        Model-based strategies train one when None.
    return_info : bool
        Also return ``info``: ``strategy`` (the one that ran, e.g. auto's choice or a cold
        start), ``reason`` (one plain sentence for the person labelling), ``detail`` (the
        technical sentence), ``round_seed`` and strategy-specific entries (``delta``, ...).
    exclude : indices or (N,) bool mask, optional
        Unlabelled items never to propose (unsure, skipped, evaluation items). They stay in the
        pool for the geometry (k-means, densities, coverage). Labelled entries are ignored.
    backend : "auto" | "faiss" | "torch", optional
        Geometry backend (default :data:`alwidget.geometry.BACKEND`).
    device : probe device when one is trained here ("auto": CUDA when available).
    n_threads : int, optional
        CPU threads for BLAS/OpenMP/faiss/torch during the call (default
        :func:`alwidget.geometry.default_threads`: usable CPUs - 1, at most 4).
    **params : strategy parameters (e.g. ``n_classes``, ``cold_start``, ``purity``, ``beta``).

    Returns
    -------
    indices : (min(k, n_candidates),) int64, or ``(indices, info)`` with ``return_info``.
    """
    k = _check_strategy(name, k, params)
    geo = Geometry.of(features, backend=backend)  # validates features on first sight
    labels = check_labels(labels, geo.n_samples)
    n_threads = None if n_threads is None else check_k(n_threads, "n_threads")
    ctx = _context(geo, features, labels, seed, geometry_seed, probe, backend, device, exclude)
    n_cand = int(np.count_nonzero(ctx.available))
    idx, info = _run(name, ctx, min(k, n_cand), params, n_threads)
    info["round_seed"] = ctx.seed
    if k > n_cand:
        _say_short(info, k, n_cand)
    return (idx, info) if return_info else idx


def _check_strategy(name, k, params: dict) -> int:
    """The batch size, once the strategy's name and parameters are known to be valid."""
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(f"unknown strategy {name!r}; choose one of: {', '.join(available())}")
    k = check_k(k)
    allowed = _auto.auto_params() if name == "auto" else REGISTRY[name].params
    if allowed is not None:
        bad = sorted(set(params) - allowed)
        if bad:
            raise TypeError(f"strategy {name!r} got unknown parameter(s) {', '.join(bad)}; "
                            f"it accepts: {', '.join(sorted(allowed)) or 'none'}")
    return k


def _check_seed(arg: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{arg} must be an integer >= 0, got {v!r}")
    if v < 0:
        raise ValueError(f"{arg} must be an integer >= 0, got {v}")
    return int(v)


def _context(geo, features, labels, seed, geometry_seed, probe, backend, device, exclude) -> Context:
    """The call's Context: checked seeds and exclusions, the round's seed, the cached Geometry."""
    seed, geometry_seed = _check_seed("seed", seed), _check_seed("geometry_seed", geometry_seed)
    excluded = check_exclude(exclude, labels.size)
    return Context(features=features, labels=labels, seed=round_seed(seed, labels), geometry_seed=geometry_seed,
                   probe=probe, backend=backend, device=device, excluded=excluded, _geometry=geo)


def _run(name: str, ctx: Context, k: int, params: dict, n_threads):
    """(indices, info) of k candidates (k <= the candidates left), the contract checked."""
    if k == 0:
        return np.zeros(0, np.int64), {
            "strategy": name, "reason": "Nothing left to ask about: every image is labelled or set aside",
            "detail": f"{name}: no candidates (unlabelled and not excluded)"}
    with threads(n_threads):
        idx, info = call(name, ctx, k, params)
    info["reason"] += _subsample.reason_words(info.get("cold_subsample"))  # after any wrapper's words
    return _finish(idx, k, ctx, info), info


def _say_short(info: dict, k: int, n_cand: int) -> None:
    """Tell the person (and the log) that fewer than k candidates were left."""
    info["reason"] += f" (only {n_cand} image{'s' if n_cand != 1 else ''} left to ask about)"
    info["detail"] += f" (asked for {k}, only {n_cand} candidates left)"


def check_exclude(exclude, n: int):
    """(N,) bool mask from indices or a mask; None stays None."""
    if exclude is None:
        return None
    arr = np.asarray(exclude)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ValueError(f"exclude as a mask must have shape ({n},), got {arr.shape}")
        return arr.copy()
    arr = arr.ravel()
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"exclude must be row indices or an (n_samples,) bool mask, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        raise ValueError(f"exclude holds indices outside 0..{n - 1}")
    mask = np.zeros(n, bool)
    mask[arr.astype(np.int64)] = True
    return mask


def _finish(idx: np.ndarray, k: int, ctx: Context, info: dict) -> np.ndarray:
    """Enforce the contract: k distinct candidates (a shortfall is filled at random)."""
    idx = np.asarray(idx, dtype=np.int64).ravel()
    ok = ctx.available
    if idx.size and (idx.min() < 0 or idx.max() >= ok.size or np.unique(idx).size != idx.size
                     or not ok[idx].all() or idx.size > k):
        raise RuntimeError(f"strategy {info.get('strategy')!r} returned invalid indices "
                           "(duplicate, labelled, excluded or out of range); please report this bug")
    if idx.size < k:
        ok[idx] = False
        extra = ctx.rng(99).choice(np.flatnonzero(ok), size=k - idx.size, replace=False)
        info["filled_random"] = info.get("filled_random", 0) + int(extra.size)
        info["reason"] += f"; {extra.size} more picked at random to fill the batch"
        info["detail"] += f"; {extra.size} filled at random"
        idx = np.concatenate([idx, extra])
    return idx
