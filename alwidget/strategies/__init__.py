"""Active-learning strategies: pure selection functions behind one registry.

    >>> from alwidget import strategies
    >>> strategies.available()
    >>> idx, info = strategies.select("typiclust", X, labels, 10, seed=0, return_info=True)

``labels`` is an (N,) int array with class ids ``0..C-1`` and ``-1`` for unlabelled. Every
strategy returns exactly ``min(k, n_unlabelled)`` distinct unlabelled indices, the same for
the same seed. Model-based strategies (uncertainty, DropQuery, BADGE) use ``probe`` (a
:class:`alwidget.probe.LinearProbe` fitted on these features and labels) or train one; with
labels from fewer than 2 classes they run a cold-start strategy and say so in
``info["reason"]``. Geometry (normalised features, k-means, kNN, ProbCover's graph) is
cached per feature set, so repeated calls on the same features are cheap.

One module per family: random, typiclust, probcover, dropquery, uncertainty (least
confidence, margin, entropy, power_margin), coreset, badge, auto.
"""
from __future__ import annotations

import numpy as np

from .._util import check_k, check_labels
from ..geometry import Geometry, threads
from . import auto as _auto
from . import badge, coreset, dropquery, probcover, random, typiclust, uncertainty  # noqa: F401  (registers)
from ._common import REGISTRY, Context, call

__all__ = ["available", "describe", "select"]


def available() -> list[str]:
    """Names accepted by :func:`select`."""
    return sorted(REGISTRY)


def describe() -> dict:
    """{name: one-line summary} of every strategy."""
    return {n: REGISTRY[n].summary for n in available()}


def select(name: str, features, labels, k: int, *, seed: int = 0, probe=None, return_info: bool = False,
           geometry_seed: int = 0, backend=None, device=None, n_threads=None, **params):
    """Indices of the next batch to label.

    Parameters
    ----------
    name : str
        One of :func:`available`.
    features : (N, D) float array (numpy or torch); validated (NaN/inf, shape).
    labels : (N,) int array, class ids 0..C-1, -1 for unlabelled.
    k : int > 0
        Batch size; ``min(k, n_unlabelled)`` indices come back.
    seed : int
        Same seed, same inputs -> same indices. Drives the per-call choices (tie-breaks,
        random fills, dropout masks, DropQuery's k-means).
    geometry_seed : int
        Seeds the cached feature-only clusterings (TypiClust's k-means, ProbCover's
        pseudo-labels and delta). Kept apart from ``seed`` so that a caller varying ``seed``
        per round still reuses the cached geometry; pass the run's seed to vary clusterings
        between independent runs (simulations).
    probe : alwidget.probe.LinearProbe fitted on (features, labels), optional
        Model-based strategies train one when None.
    return_info : bool
        Also return ``info``: ``strategy`` (the one that ran, e.g. auto's choice or a cold
        start), ``reason`` (a short sentence) and strategy-specific entries (``delta``, ...).
    backend : "auto" | "faiss" | "torch", optional
        Geometry backend (default :data:`alwidget.geometry.BACKEND`).
    device : probe device when one is trained here ("auto": CUDA when available).
    n_threads : int, optional
        CPU threads for BLAS/OpenMP/faiss/torch during the call (default
        :func:`alwidget.geometry.default_threads`: usable CPUs - 1, at most 4).
    **params : strategy parameters (e.g. ``n_classes``, ``cold_start``, ``purity``, ``beta``).

    Returns
    -------
    indices : (min(k, n_unlabelled),) int64, or ``(indices, info)`` with ``return_info``.
    """
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(f"unknown strategy {name!r}; choose one of: {', '.join(available())}")
    k = check_k(k)
    strat = REGISTRY[name]
    allowed = _auto.auto_params() if name == "auto" else strat.params
    if allowed is not None:
        bad = sorted(set(params) - allowed)
        if bad:
            raise TypeError(f"strategy {name!r} got unknown parameter(s) {', '.join(bad)}; "
                            f"it accepts: {', '.join(sorted(allowed)) or 'none'}")
    geo = Geometry.of(features, backend=backend)  # validates features on first sight
    labels = check_labels(labels, geo.n_samples)
    n_threads = None if n_threads is None else check_k(n_threads, "n_threads")
    for arg, v in (("seed", seed), ("geometry_seed", geometry_seed)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{arg} must be an integer >= 0, got {v!r}")
        if v < 0:
            raise ValueError(f"{arg} must be an integer >= 0, got {v}")
    ctx = Context(features=features, labels=labels, seed=int(seed), geometry_seed=int(geometry_seed),
                  probe=probe, backend=backend,
                  device=device, _geometry=geo)
    n_unl = int(np.count_nonzero(labels < 0))
    kk = min(k, n_unl)
    if kk == 0:
        idx, info = np.zeros(0, np.int64), {"strategy": name, "reason": f"{name}: every point is labelled"}
    else:
        with threads(n_threads):
            idx, info = call(name, ctx, kk, params)
        idx = _finish(idx, labels, kk, ctx, info)
    if k > n_unl:
        info["reason"] += f" (asked for {k}, only {n_unl} unlabelled left)"
    return (idx, info) if return_info else idx


def _finish(idx: np.ndarray, labels: np.ndarray, k: int, ctx: Context, info: dict) -> np.ndarray:
    """Enforce the contract: k distinct unlabelled indices (a shortfall is filled at random)."""
    idx = np.asarray(idx, dtype=np.int64).ravel()
    if idx.size and (idx.min() < 0 or idx.max() >= labels.size or np.unique(idx).size != idx.size
                     or (labels[idx] >= 0).any() or idx.size > k):
        raise RuntimeError(f"strategy {info.get('strategy')!r} returned invalid indices "
                           "(duplicate, labelled or out of range); please report this bug")
    if idx.size < k:
        pool = np.setdiff1d(np.flatnonzero(labels < 0), idx, assume_unique=True)
        extra = ctx.rng(99).choice(pool, size=k - idx.size, replace=False)
        info["filled_random"] = info.get("filled_random", 0) + int(extra.size)
        info["reason"] += f"; {extra.size} filled at random"
        idx = np.concatenate([idx, extra])
    return idx
