"""Bayesian acquisition on the probe with consistent MC dropout: BALD, PowerBALD, BatchBALD.

The posterior is approximated by K = ``n_masks`` (20) input-dropout masks at rate ``p`` (0.5),
drawn once per round and shared by every item (:func:`alwidget.probe.mc_dropout_proba`), so
p_k(y | x) comes from the weights W_k = diag(m_k) W / (1 - p).

- ``bald``: the B candidates with the largest mutual information between label and weights,
  BALD(x) = H[mean_k p_k(x)] - mean_k H[p_k(x)] (>= 0; computed with ``xlogy`` in blocks, so
  the pool's N x K x C probabilities are never held at once).
- ``power_bald``: B candidates sampled without replacement with P ~ BALD ** beta (beta = 1):
  Gumbel-top-k on beta * log BALD (BALD floored at 1e-12, so a zero score is never -inf).
- ``batchbald`` (Kirsch et al., NeurIPS 2019): greedy on the top ``n_top`` (2,000) candidates
  by BALD; each step adds the x maximising H(y_A, y_x) - sum_{a in A + x} E_k H[p_k(a)].
  The joint entropy is exact while the configurations of y_A number at most ``num_draw``
  (1,000), then a Monte Carlo estimate over ``num_draw`` configurations drawn from
  p(y_A) = mean_k prod_a p_k(y_a), each extended by one draw when A grows. Two copies of one
  image carry the same information, so BatchBALD rarely picks both while top-B BALD does.
  Only for B <= ``max_batch`` (10): a larger batch runs PowerBALD and says so.
  BatchBALD uses 50 masks, not 20: K equally likely masks hold at most log K nats about the
  weights (3.0 for K = 20), which a batch of a few ~1-nat picks exhausts; after that every
  candidate's conditional information is near zero and the picks are noise (on digits x3 with
  20 masks, 7-9 distinct images per batch of 10; with 50, 9-10; top-10 BALD: 4).

A linear probe's input dropout is a crude posterior: its spread shrinks slowly with labels, and
each mask's prediction stays soft, so one label of an image leaves a copy of it informative.
With labels from fewer than 2 classes the ``cold_start`` strategy runs instead.
"""
from __future__ import annotations

import numpy as np

from ._common import Context, model_cold_start, register, top_k
from .uncertainty import gumbel_top_k

_EPS = 1e-12
REASON = "Asking about images on which the model's plausible versions disagree most"


def entropy_terms(P):
    """(H[mean_k P_k], mean_k H[P_k]) per row of P (K, n, C), torch or numpy, in nats."""
    import torch

    P = torch.as_tensor(P, dtype=torch.float64)
    mean = P.mean(0)
    return -torch.xlogy(mean, mean).sum(-1), -torch.xlogy(P, P).sum(-1).mean(0)


def bald_scores(ctx: Context, rows: np.ndarray, n_classes, n_masks, p, keep_top=0):
    """(BALD (len(rows),) float64, P of the ``keep_top`` best rows (K, m, C) float64, their positions)."""
    from ..probe import mc_dropout_proba

    probe = ctx.fitted_probe(n_classes)
    ctx.proba(n_classes)  # checks that the probe scores this pool
    out = np.empty(rows.size)
    for a, P in mc_dropout_proba(probe, rows, n_masks=n_masks, p=p, seed=ctx.seed):
        h_mean, mean_h = entropy_terms(P)
        out[a:a + P.shape[1]] = (h_mean - mean_h).clamp_min(0.0).cpu().numpy()
    if not keep_top:
        return out, None, None
    top = top_k(out, np.arange(rows.size), min(int(keep_top), rows.size), ctx.rng(13))  # bald's tie order
    (_, P), = mc_dropout_proba(probe, rows[top], n_masks=n_masks, p=p, seed=ctx.seed, block_bytes=1 << 40)
    return out, P.double().cpu().numpy(), top


def _check(n_masks, p):
    if isinstance(n_masks, bool) or not isinstance(n_masks, (int, np.integer)) or n_masks < 2:
        raise ValueError(f"n_masks must be an integer >= 2, got {n_masks!r}")
    if not 0 < p < 1:
        raise ValueError(f"p must be in (0, 1), got {p!r}")


@register("bald", needs_model=True, summary="largest mutual information between label and probe weights (MC dropout)")
def bald(ctx: Context, k: int, *, n_masks: int = 20, p: float = 0.5, n_classes=None, cold_start: str = "typiclust"):
    """BALD batch: the k highest scores; see the module docstring."""
    _check(n_masks, p)
    if ctx.seen_classes.size < 2:
        return model_cold_start(ctx, k, "bald", cold_start, {"n_classes": n_classes})
    cand = ctx.candidates
    s, _, _ = bald_scores(ctx, cand, n_classes, n_masks, p)
    idx = top_k(s, cand, k, ctx.rng(13))
    return idx, {"reason": REASON, "detail": f"bald: top {k} of {cand.size} candidates by BALD "
                                             f"({n_masks} consistent dropout masks, p={p:g}; max {s.max():.3g})"}


@register("power_bald", needs_model=True, summary="BALD scores sampled with Gumbel-top-k (diverse batches)")
def power_bald(ctx: Context, k: int, *, beta: float = 1.0, n_masks: int = 20, p: float = 0.5, n_classes=None,
               cold_start: str = "typiclust"):
    """PowerBALD batch: k sampled with P ~ BALD ** beta; see the module docstring."""
    _check(n_masks, p)
    if not (np.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    if ctx.seen_classes.size < 2:
        return model_cold_start(ctx, k, "power_bald", cold_start, {"n_classes": n_classes})
    cand = ctx.candidates
    s, _, _ = bald_scores(ctx, cand, n_classes, n_masks, p)
    idx = cand[gumbel_top_k(np.maximum(s, _EPS), k, float(beta), ctx.rng(14))]
    return idx, {"beta": float(beta), "reason": REASON + ", drawn at random in proportion to the disagreement",
                 "detail": f"power_bald: {k} of {cand.size} candidates sampled with P ~ BALD^{beta:g} "
                           f"({n_masks} consistent dropout masks, p={p:g})"}


def joint_entropy_gain(P: np.ndarray, Pa: np.ndarray, w: np.ndarray, chunk: int = 256) -> np.ndarray:
    """H(y_A, y_x) for every candidate x: P (K, M, C), Pa (K, S) config likelihoods, w (S,) weights."""
    K, M, C = P.shape
    out = np.empty(M)
    for a in range(0, M, chunk):
        J = (Pa.T @ P[:, a:a + chunk].reshape(K, -1)).reshape(Pa.shape[1], -1, C) / K  # (S, m, C)
        out[a:a + chunk] = -np.einsum("s,smc->m", w, J * np.log(np.maximum(J, 1e-300)))
    return out


def greedy_batchbald(P: np.ndarray, k: int, num_draw: int, rng: np.random.Generator, first: int | None = None,
                     groups: np.ndarray | None = None) -> list:
    """Greedy BatchBALD over the candidates of P (K, M, C); returns k positions into M.

    ``first``: the position of the top BALD candidate when the caller already ranked them.
    ``groups`` (M,): candidates with equal ids are copies of one image; once one is picked the
    others wait until no other candidate is left (under a soft MC-dropout posterior a copy's
    joint gain can still tie with fresh images, and nobody wants to label one image twice)."""
    K, M, C = P.shape
    h_mean, mean_h = (t.numpy() for t in entropy_terms(P))
    picks = [int(np.argmax(h_mean - mean_h)) if first is None else int(first)]
    blocked = np.zeros(M, dtype=bool)
    Pa = P[:, picks[0], :].copy()  # exact configurations of y_A: (K, C)
    ks = ys = None  # per-draw mask index and class of each sampled configuration, once sampling
    while len(picks) < k:
        if groups is not None:
            blocked |= groups == groups[picks[-1]]
        S = Pa.shape[1]
        w = np.ones(S) if ks is None else 1.0 / (S * np.maximum(Pa.mean(0), 1e-300))
        score = joint_entropy_gain(P, Pa, w) - mean_h
        score[picks] = -np.inf
        if not np.isinf(score[~blocked]).all():
            score[blocked] = -np.inf
        x = int(np.argmax(score))
        picks.append(x)
        if ks is None and S * C <= num_draw:  # stay exact: every configuration times every class of x
            Pa = (Pa[:, :, None] * P[:, x, None, :]).reshape(K, -1)
            continue
        if ks is None:  # switch to num_draw sampled configurations of y_A
            ks = rng.integers(0, K, num_draw)
            Pa = np.ones((K, num_draw))
            for a in picks:
                ys = _draw(P[ks, a, :], rng)
                Pa *= P[:, a, ys]
        else:
            ys = _draw(P[ks, x, :], rng)
            Pa *= P[:, x, ys]
    return picks


def _draw(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One class per row of probs (S, C), by inverse CDF."""
    cdf = np.cumsum(probs, 1)
    u = rng.random(probs.shape[0]) * cdf[:, -1]
    return np.minimum((cdf < u[:, None]).sum(1), probs.shape[1] - 1)


@register("batchbald", needs_model=True, summary="greedy joint BALD of the whole batch (B <= 10)")
def batchbald(ctx: Context, k: int, *, n_masks: int = 50, p: float = 0.5, n_top: int = 2000, num_draw: int = 1000,
              max_batch: int = 10, n_classes=None, cold_start: str = "typiclust"):
    """BatchBALD batch; see the module docstring."""
    _check(n_masks, p)
    if ctx.seen_classes.size < 2:
        return model_cold_start(ctx, k, "batchbald", cold_start, {"n_classes": n_classes})
    if k > max_batch:
        idx, info = power_bald(ctx, k, n_masks=n_masks, p=p, n_classes=n_classes)
        info.update(strategy="power_bald", requested="batchbald")
        info["detail"] += f" (BatchBALD only for batches of at most {max_batch}; asked for {k})"
        return idx, info
    cand = ctx.candidates
    _, P, top = bald_scores(ctx, cand, n_classes, n_masks, p, keep_top=n_top)
    rows = ctx.features[cand[top]]
    rows = np.ascontiguousarray(rows.detach().cpu().numpy() if hasattr(rows, "detach") else rows)
    groups = np.unique(rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel(),
                       return_inverse=True)[1]  # identical feature rows: one image
    picks = greedy_batchbald(P, min(k, top.size), int(num_draw), ctx.rng(15), first=0, groups=groups)
    return cand[top[picks]], {"reason": REASON + ", chosen together so that the batch does not repeat itself",
                              "detail": f"batchbald: greedy joint BALD over the top {top.size} of {cand.size} "
                                        f"candidates ({n_masks} consistent dropout masks, p={p:g}, "
                                        f"{num_draw} configurations)"}
