"""DropQuery (Gupte et al., TMLR 2024): dropout disagreement, then k-means for diversity.

1. Predict the pool with the probe without dropout -> y_hat.
2. Run M = ``n_passes`` (3) more passes with input dropout p = ``p`` (0.75, inverted
   scaling, :meth:`alwidget.probe.LinearProbe.predict_dropout`) and count, per point, the
   passes whose prediction differs from y_hat.
3. Candidates: unlabelled, not excluded points flipped in more than floor(M / 2) passes; while there are
   fewer than ``candidate_factor`` * B (25 B) of them, lower that bar one pass at a time,
   down to "flipped at least once".
4. Fewer than B candidates: take them all and fill at random from the rest of the pool.
   Otherwise k-means with K = B on the candidates' (normalised) features and take the
   candidate nearest each centroid (the next nearest when two centroids share one).
   At large N the candidates can number hundreds of thousands; k-means is then fitted on a
   seeded uniform sample of ``kmeans_sample`` of them (default max(2000, 40 B)), which
   places the centroids almost where the full set would, and the nearest candidate to each
   centroid is still searched among all candidates. Measured on an H200 at N = 1M this
   took selection from ~0.8 s to a few tens of ms.

Large pools (issue 12). From :data:`SUBSET_MIN` candidates on, the dropout passes first run on
a seeded uniform sample of about ``subset`` pool rows (whole blocks of the pool, so the sample
is read without a scattered gather): the candidates found there are a uniform sample of the
candidates of the whole pool, which is what step 4 fits its k-means on anyway. When the sample
holds fewer than ``candidate_factor * B`` points over the bar, the passes run on the whole pool
instead, so scarce candidates are never missed. ``subset=None`` always runs the whole pool.

Labels from fewer than 2 classes: the ``cold_start`` strategy runs instead (default
``typiclust``; the paper starts from the points nearest k-means centroids, which TypiClust
refines with typicality).
"""
from __future__ import annotations

import numpy as np

from ..geometry import kmeans
from ._common import Context, model_cold_start, register

REASON = "Asking about images the model is unsure of, spread over the map"
#: From this many candidates on, dropout passes run on a sample of this many pool rows first (docstring).
SUBSET_MIN = 20_000


def nearest_distinct(X: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """For each centroid the nearest row of X not already taken by an earlier centroid.

    Requires len(X) >= len(centroids). Returns (K,) row indices into X.
    """
    # ||c||^2 is the same along a centroid's row, so it cannot change that row's argmin; einsum
    # gives the row norms without an (N, D) temporary.
    d = np.einsum("ij,ij->i", X, X)[None, :] - 2.0 * (centroids @ X.T)
    out = d.argmin(1)
    if np.unique(out).size == out.size:
        return out
    taken = np.zeros(X.shape[0], bool)
    for c in range(out.size):
        if taken[out[c]]:
            row = np.where(taken, np.inf, d[c])
            out[c] = int(row.argmin())
        taken[out[c]] = True
    return out


def _flips(probe, proba, unl, n_passes, p, seed, subset, need):
    """(flips per candidate (len(unl),), rows the passes ran on): passes whose prediction differs
    from the clean one. With ``subset``, on a seeded sample of whole pool blocks first; the whole
    pool when that sample holds fewer than ``need`` points flipped in more than half the passes."""
    from ..probe import DROPOUT_BLOCK

    n = proba.shape[0]  # y_hat only where it is compared: a row argmax over the pool took 4 ms at 100k
    if subset is not None and unl.size > int(subset):
        n_blocks = -(-n // DROPOUT_BLOCK)
        take = np.sort(np.random.default_rng([int(seed), 13]).choice(
            n_blocks, min(n_blocks, max(1, -(-int(subset) // DROPOUT_BLOCK))), replace=False))
        rows = (take[:, None] * DROPOUT_BLOCK + np.arange(DROPOUT_BLOCK)[None, :]).ravel()
        rows = rows[rows < n]  # the rows of the sampled blocks, in order
        drops = np.asarray(probe.predict_dropout(None, n_passes=n_passes, p=p, seed=seed, blocks=take))
        flips = np.zeros(n, np.int64)
        flips[rows] = (drops != proba[rows].argmax(1)[None, :]).sum(0)
        f = flips[unl]
        if np.count_nonzero(f > n_passes // 2) >= need:
            return f, rows.size
    drops = np.asarray(probe.predict_dropout(None, n_passes=n_passes, p=p, seed=seed))
    return (drops[:, unl] != proba[unl].argmax(1)[None, :]).sum(0), n


def _flips_of(ctx, probe, n_classes, unl, n_passes, p, subset, need):
    """:func:`_flips` of the probe's clean scores. A probe with ``proba_and_dropout`` (an AnchorAL
    subpool's, :class:`alwidget.anchoral.RowsProbe`) gives the clean scores and the passes over
    all its rows in one read of them, where :func:`_flips` would not sample blocks."""
    both = getattr(probe, "proba_and_dropout", None)
    if both is not None and (subset is None or unl.size <= int(subset)):
        proba, drops = both(n_passes=n_passes, p=p, seed=ctx.seed)
        return (np.asarray(drops)[:, unl] != proba.argmax(1)[unl][None, :]).sum(0), proba.shape[0]
    return _flips(probe, ctx.proba(n_classes), unl, n_passes, p, ctx.seed, subset, need)


@register("dropquery", needs_model=True, summary="dropout-disagreement candidates, k-means for diversity")
def dropquery(ctx: Context, k: int, *, n_passes: int = 3, p: float = 0.75, candidate_factor: int = 25,
              n_classes=None, cold_start: str = "typiclust", kmeans_sample: int | None = None,
              subset: int | None = SUBSET_MIN):
    """DropQuery batch of k points; see the module docstring."""
    if ctx.seen_classes.size < 2:
        return model_cold_start(ctx, k, "dropquery", cold_start, {"n_classes": n_classes})
    probe = ctx.fitted_probe(n_classes)
    unl = ctx.candidates
    f_unl, scored = _flips_of(ctx, probe, n_classes, unl, n_passes, p, subset, candidate_factor * k)
    bar = n_passes // 2  # candidates flip in more than `bar` passes
    while bar > 0 and np.count_nonzero(f_unl > bar) < candidate_factor * k:
        bar -= 1
    cand = unl[f_unl > bar]
    info = {"n_candidates": int(cand.size), "min_flips": int(bar + 1), "n_passes": int(n_passes), "p": float(p),
            "dropout_rows": int(scored), "reason": REASON}
    if cand.size < k:
        rest = np.setdiff1d(unl, cand, assume_unique=True)
        fill = ctx.rng(7).choice(rest, size=k - cand.size, replace=False)
        info["filled_random"] = int(k - cand.size)
        info["reason"] = (f"Asking about the {cand.size} images the model is unsure of, and "
                          f"{k - cand.size} at random (it is sure of everything else)")
        info["detail"] = (f"dropquery: only {cand.size} points flip under dropout (< {k}); "
                          f"took them all and {k - cand.size} at random")
        return np.concatenate([cand, fill]), info
    Xc = ctx.geometry.rows(cand)  # on an AnchorAL subpool: only these rows are gathered
    n_fit = max(2000, 40 * k) if kmeans_sample is None else int(kmeans_sample)
    fit = Xc if cand.size <= n_fit else Xc[np.sort(ctx.rng(11).choice(cand.size, size=n_fit, replace=False))]
    _, cent = kmeans(fit, k, seed=ctx.seed, backend=ctx.backend, assign=False)  # centroids only
    idx = cand[nearest_distinct(Xc, cent)]
    info["kmeans_fitted_on"] = int(fit.shape[0])
    info["detail"] = (f"dropquery: {cand.size} points flip in >= {bar + 1} of {n_passes} dropout passes; "
                      f"nearest to each of {k} k-means centroids")
    return idx, info
