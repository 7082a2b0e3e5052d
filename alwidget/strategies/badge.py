"""BADGE (Ash et al., ICLR 2020): k-means++ seeding on last-layer gradient embeddings.

For the linear probe the gradient of the cross-entropy at the predicted label y_hat is
g_i = a_i (x) b_i with a_i = p_i - onehot(y_hat_i) (C values) and b_i = [x~_i, 1] the
pool-standardised features plus the bias input (D + 1 values). The N x (D * C) matrix of
the g_i is never built: with the outer-product structure

    ||g_i - g_j||^2 = ||a_i||^2 ||b_i||^2 + ||a_j||^2 ||b_j||^2 - 2 (a_i . a_j)(b_i . b_j)

so one k-means++ step costs O(N (C + D)). The first centre is the point with the
largest gradient norm among the candidates; each next one is drawn (seeded) with probability proportional to its
squared distance to the nearest chosen centre. Labels from fewer than 2 classes: the
``cold_start`` strategy runs instead.
"""
from __future__ import annotations

import numpy as np

from ._common import Context, model_cold_start, register


def gradient_factors(proba: np.ndarray, feats: np.ndarray):
    """Factors (a (N, C) float64, x (N, D) float32) of g_i = outer(a_i, [x_i, 1])."""
    a = np.asarray(proba, dtype=np.float64).copy()
    a[np.arange(a.shape[0]), a.argmax(1)] -= 1.0
    return a, np.ascontiguousarray(feats, dtype=np.float32)


def gradient_sq_norms(a, x) -> np.ndarray:
    """(N,) ||g_i||^2 = ||a_i||^2 (||x_i||^2 + 1)."""
    return np.einsum("ij,ij->i", a, a) * (np.einsum("ij,ij->i", x, x, dtype=np.float64) + 1.0)


def gradient_sq_dist(a, x, sq_norms, j: int) -> np.ndarray:
    """(N,) ||g_i - g_j||^2 = ||g_i||^2 + ||g_j||^2 - 2 (a_i . a_j)(b_i . b_j), b = [x, 1]."""
    d = sq_norms + sq_norms[j] - 2.0 * (a @ a[j]) * ((x @ x[j]).astype(np.float64) + 1.0)
    return np.maximum(d, 0.0)


def kmeanspp_factorised(a, x, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding of the gradient embeddings given by their factors (a, x)."""
    n = a.shape[0]
    norms = gradient_sq_norms(a, x)
    picks = [int(np.argmax(norms))]
    best = gradient_sq_dist(a, x, norms, picks[0])
    best[picks[0]] = 0.0
    alive = np.ones(n, bool)
    alive[picks[0]] = False
    for _ in range(1, k):
        w = np.where(alive, best, 0.0)
        tot = w.sum()
        j = int(rng.choice(n, p=w / tot)) if tot > 0 else int(rng.choice(np.flatnonzero(alive)))
        picks.append(j)
        alive[j] = False
        np.minimum(best, gradient_sq_dist(a, x, norms, j), out=best)
    return np.asarray(picks, dtype=np.int64)


@register("badge", needs_model=True, summary="k-means++ on gradient embeddings (uncertainty + diversity)")
def badge(ctx: Context, k: int, *, n_classes=None, cold_start: str = "typiclust"):
    """BADGE batch of k points; see the module docstring."""
    if ctx.seen_classes.size < 2:
        return model_cold_start(ctx, k, "badge", cold_start, {"n_classes": n_classes})
    probe = ctx.fitted_probe(n_classes)
    cand = ctx.candidates
    feats = probe.transform(None)
    feats = feats.detach().cpu().numpy() if hasattr(feats, "detach") else np.asarray(feats)
    a, x = gradient_factors(ctx.proba(n_classes)[cand], feats[cand])
    picks = kmeanspp_factorised(a, x, k, ctx.rng(8))
    return cand[picks], {"reason": "Asking about images that would teach the model most, each of a different kind",
                         "detail": f"badge: k-means++ on gradient embeddings of {cand.size} candidates"}
