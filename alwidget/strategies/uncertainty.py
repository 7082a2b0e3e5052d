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

from ..probe import top_two
from ._common import Context, model_cold_start, register, top_k

_EPS = 1e-12


def least_confidence_score(p: np.ndarray) -> np.ndarray:
    """(N,) 1 - max probability."""
    return 1.0 - p.max(1).astype(np.float64)


def margin_score(p: np.ndarray) -> np.ndarray:
    """(N,) 1 - (top-1 minus top-2 probability); 1 = a tie between two classes."""
    if p.shape[1] < 2:
        return np.zeros(p.shape[0])
    m1, m2 = top_two(p)
    return 1.0 - (m1.astype(np.float64) - m2.astype(np.float64))


def entropy_score(p: np.ndarray) -> np.ndarray:
    """(N,) Shannon entropy in nats."""
    p = p.astype(np.float64)
    return -(p * np.log(np.clip(p, _EPS, 1.0))).sum(1)


def gumbel_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) standard Gumbel noise."""
    u = rng.random(n)
    return -np.log(-np.log(np.clip(u, _EPS, 1.0 - 1e-16)))


def _keys(score: np.ndarray, beta: float, noise: np.ndarray) -> np.ndarray:
    """beta * log(score) + noise: the top k are a sample without replacement, P ~ score ** beta."""
    return beta * np.log(np.maximum(score, _EPS)) + noise


def gumbel_top_k(score: np.ndarray, k: int, beta: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of a sample of k without replacement, P proportional to score ** beta."""
    return np.argsort(-_keys(score, beta, gumbel_noise(score.size, rng)), kind="stable")[:k]


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


#: Reduced-precision pool probabilities (LinearProbe.low_precision): the top SHORTLIST * k
#: candidates (at least SHORTLIST_MIN) by their approximate score are re-scored exactly, so the
#: batch is the float32 ranking's whenever its top k lie in that shortlist.
SHORTLIST = 20
SHORTLIST_MIN = 256


def _exact_shortlist(s, cand, k, exact_score):
    """Scores (len(cand),) with the shortlist re-scored by exact_score(rows) and -inf elsewhere."""
    m = min(s.size, max(SHORTLIST * k, SHORTLIST_MIN))
    short = np.argpartition(-s, m - 1)[:m] if m < s.size else np.arange(s.size)
    out = np.full(s.size, -np.inf)
    out[short] = exact_score(cand[short])
    return out


def _scores(scorer, ctx, k, n_classes, proba):
    """(candidates, scores): exact on the shortlist when the pool's probabilities were not."""
    cand = ctx.candidates
    p = _proba(ctx, n_classes, proba)
    # Row-wise scores: on the whole pool and then indexed when most rows are candidates (no copy of p).
    s = scorer(p)[cand] if 2 * cand.size >= p.shape[0] else scorer(p[cand])
    if proba is None and not ctx.proba_exact and 0 < k < cand.size:
        s = _exact_shortlist(s, cand, k, lambda rows: scorer(ctx.exact_proba(rows)))
    return cand, s


def _ranked(name, scorer, ctx, k, n_classes, cold_start, proba):
    if ctx.seen_classes.size < 2:
        return model_cold_start(ctx, k, name, cold_start, {"n_classes": n_classes})
    cand, s = _scores(scorer, ctx, k, n_classes, proba)
    idx = top_k(s, cand, k, ctx.rng(5))
    s = s[np.isfinite(s)]
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
    noise = gumbel_noise(s.size, ctx.rng(6))
    keys = _keys(s, float(beta), noise)
    if proba is None and not ctx.proba_exact and 0 < k < cand.size:  # exact keys on the shortlist
        keys = _exact_shortlist(keys, np.arange(cand.size), k,
                                lambda j: _keys(margin_score(ctx.exact_proba(cand[j])), float(beta), noise[j]))
    idx = cand[np.argsort(-keys, kind="stable")[:k]]
    return idx, {"beta": float(beta), "reason": WORDS["power_margin"],
                 "detail": f"power_margin: {k} of {cand.size} candidates sampled with P ~ margin-score^{beta:g}"}
