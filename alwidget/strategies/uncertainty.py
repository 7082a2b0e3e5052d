"""Uncertainty sampling from the probe's class probabilities.

- ``least_confidence``: 1 - max_c p_c
- ``margin``: 1 - (p_(1) - p_(2)), the gap between the two most probable classes
- ``entropy``: -sum_c p_c log p_c (log of probabilities clipped at 1e-12: never NaN)
- ``power_margin``: stochastic batch acquisition (Kirsch et al., TMLR 2023): sample B points
  without replacement with probability proportional to margin-score ** beta, done exactly by
  Gumbel-top-k on ``beta * log(score) + Gumbel noise``. Keeps batches diverse without any
  geometry; beta -> inf recovers ``margin``.

The top-B strategies break ties in a seeded random order. Probabilities come from ``proba``
(an (N, C) array) when given, else from ``probe`` (fitted on this pool), else from a fresh
:class:`alwidget.probe.LinearProbe`. With labels from fewer than 2 classes there is no
meaningful probe yet: the ``cold_start`` strategy (default ``typiclust``) runs instead and
``info["reason"]`` says so.
"""
from __future__ import annotations

import numpy as np

from ._common import Context, model_cold_start, register, top_k

_EPS = 1e-12


def least_confidence_score(p: np.ndarray) -> np.ndarray:
    """(N,) 1 - max probability."""
    return 1.0 - p.max(1).astype(np.float64)


def margin_score(p: np.ndarray) -> np.ndarray:
    """(N,) 1 - (top-1 minus top-2 probability); 1 = a tie between two classes."""
    if p.shape[1] < 2:
        return np.zeros(p.shape[0])
    two = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:].astype(np.float64)
    return 1.0 - (two[:, 1] - two[:, 0])


def entropy_score(p: np.ndarray) -> np.ndarray:
    """(N,) Shannon entropy in nats."""
    p = p.astype(np.float64)
    return -(p * np.log(np.clip(p, _EPS, 1.0))).sum(1)


def gumbel_top_k(score: np.ndarray, k: int, beta: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of a sample of k without replacement, P proportional to score ** beta."""
    u = rng.random(score.size)
    gumbel = -np.log(-np.log(np.clip(u, _EPS, 1.0 - 1e-16)))
    keys = beta * np.log(np.maximum(score, _EPS)) + gumbel
    return np.argsort(-keys, kind="stable")[:k]


def _proba(ctx: Context, n_classes, proba):
    if proba is None:
        return ctx.proba(n_classes)
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != ctx.n_samples or not np.isfinite(p).all():
        raise ValueError(f"proba must be a finite (n_samples={ctx.n_samples}, n_classes) array, "
                         f"got shape {p.shape}")
    return p


#: Plain words for what each score asks about (``info["reason"]``).
WORDS = {"least_confidence": "Asking about the images whose best guess the model is least sure of",
         "margin": "Asking about the images the model finds hardest to tell between two classes",
         "entropy": "Asking about the images whose class the model is most unsure of",
         "power_margin": "Asking about images the model finds hard to tell apart, drawn at random in "
                         "proportion to its doubt so that the batch stays varied"}


def _ranked(name, scorer, ctx, k, n_classes, cold_start, proba):
    if ctx.seen_classes.size < 2:
        return model_cold_start(ctx, k, name, cold_start, {"n_classes": n_classes})
    cand = ctx.candidates
    s = scorer(_proba(ctx, n_classes, proba)[cand])
    idx = top_k(s, cand, k, ctx.rng(5))
    return idx, {"reason": WORDS[name],
                 "detail": f"{name}: the {k} highest scores of {cand.size} candidates "
                           f"(score {s.max():.3f} .. {s.min():.3f})"}


@register("least_confidence", needs_model=True, summary="lowest top-class probability")
def least_confidence(ctx: Context, k: int, *, n_classes=None, cold_start: str = "typiclust", proba=None):
    """Least-confidence batch; see the module docstring."""
    return _ranked("least_confidence", least_confidence_score, ctx, k, n_classes, cold_start, proba)


@register("margin", needs_model=True, summary="smallest gap between the two most probable classes")
def margin(ctx: Context, k: int, *, n_classes=None, cold_start: str = "typiclust", proba=None):
    """Margin batch; see the module docstring."""
    return _ranked("margin", margin_score, ctx, k, n_classes, cold_start, proba)


@register("entropy", needs_model=True, summary="highest predictive entropy")
def entropy(ctx: Context, k: int, *, n_classes=None, cold_start: str = "typiclust", proba=None):
    """Entropy batch; see the module docstring."""
    return _ranked("entropy", entropy_score, ctx, k, n_classes, cold_start, proba)


@register("power_margin", needs_model=True, summary="margin scores sampled with Gumbel-top-k (diverse batches)")
def power_margin(ctx: Context, k: int, *, beta: float = 1.0, n_classes=None, cold_start: str = "typiclust",
                 proba=None):
    """Stochastic (power) margin batch; see the module docstring."""
    if not (np.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    if ctx.seen_classes.size < 2:
        return model_cold_start(ctx, k, "power_margin", cold_start, {"n_classes": n_classes})
    cand = ctx.candidates
    s = margin_score(_proba(ctx, n_classes, proba)[cand])
    idx = cand[gumbel_top_k(s, k, float(beta), ctx.rng(6))]
    return idx, {"beta": float(beta), "reason": WORDS["power_margin"],
                 "detail": f"power_margin: {k} of {cand.size} candidates sampled with P ~ margin-score^{beta:g}"}
