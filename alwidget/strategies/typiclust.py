"""TypiClust (Hacohen et al., ICML 2022): typical points of the least-covered clusters.

Cluster the whole pool (labelled and unlabelled) with k-means, K = min(L + B, max_clusters);
ignore clusters of at most ``min_cluster_size`` points (the reference code's 5) or, when the mean
cluster size N / K is small, of at most a quarter of it (:func:`min_size_floor`: on a small pool
with many clusters, clusters of a few points are ordinary ones); visit the clusters round-robin,
fewest labels first (labels picked in this batch count), then largest first, and from each
take the candidate (unlabelled, not excluded) with the highest typicality
``1 / mean distance to its k nearest neighbours inside the cluster``, k = min(20, size // 2).

Big clusters. Exact typicality costs O(size^2 D) per cluster, which at N = 100k and small K
(the first labels) means tens of seconds; clusters above ``exact_max`` (2048) points are
first shortlisted by a subsample density estimate and only the 256 best get their exact
typicality (see :meth:`alwidget.geometry.Geometry.typicality_order`). Pass
``exact_max=N`` for exact values everywhere.

Cheap repeated calls. The session asks for a batch after every label, so K is rounded up
to the next value of :data:`K_LADDER` (at most 25 % more clusters than L + B): one k-means
per ladder step serves every L in between from the geometry cache, and typicality is
computed lazily, once per cluster that is actually visited, and cached with the clustering.
Pass ``ladder=False`` for K = L + B exactly.

Fast clustering. When a Lloyd iteration would cost more than :data:`KMEANS_FULL_WORK`
multiply-adds (N K D) and there are more than :data:`KMEANS_DIMS` features, k-means runs on
the top :data:`KMEANS_DIMS` PCA coordinates (computed once per feature set); typicality stays
in the full features. On the 1280-d EfficientNet features of Fashion-MNIST (10k rows, K = 64)
that was 8x faster (457 -> 56 ms) with the same full-space inertia and cluster purity. Smaller
problems (the first rounds: K = 10 or 20 on a few thousand rows) keep the full features, where
k-means is cheap anyway. ``kmeans_dims=None`` always clusters the full features.

Huge pools. From :data:`alwidget.strategies._subsample.SUBSAMPLE_MIN` rows (200k) TypiClust runs on
a fixed, seeded random subsample of the pool (``geometry_seed``; the same every round), and labelled
rows outside it count in the cluster with the nearest members' mean (``info["cold_subsample"]``).

Avoided defects of the reference code: clustering is seeded; the kNN of a cluster is
computed once (not per pick); size-1 clusters get typicality 0 instead of NaN; exactly B
points are returned (when clusters run out, the rest is filled at random and reported).
"""
from __future__ import annotations

import heapq

import numpy as np

from . import _subsample
from ._common import Context, register

# Cluster counts tried in order: exact up to 8, then m * 2**e for m in 4..7 (steps <= 25 %).
K_LADDER = sorted({*range(1, 9), *(m << e for e in range(1, 20) for m in (4, 5, 6, 7))})
#: PCA dims k-means runs on when the features have more and the clustering is big (module docstring).
KMEANS_DIMS = 128
#: N * K * D from which k-means runs on the PCA coordinates (about 0.15 s of full-space k-means here).
KMEANS_FULL_WORK = 1 << 28
#: A cluster far below the mean size N / K is an outlier group; one near it is an ordinary cluster
#: (:func:`min_size_floor`). On digits at 200 labels (N / K = 5.6) the fixed floor of 5 skipped
#: 131 of 224 clusters, a third of the pool.
OUTLIER_SHARE = 0.25


def ladder_up(k: int) -> int:
    """Smallest ladder value >= k."""
    for v in K_LADDER:
        if v >= k:
            return v
    return int(k)


@register("typiclust", summary="typical points of the least-labelled k-means clusters (low budget)")
def typiclust(ctx: Context, k: int, *, max_clusters: int = 500, min_cluster_size: int = 5,
              n_neighbors: int = 20, ladder: bool = True, exact_max=None, kmeans_dims=KMEANS_DIMS):
    """TypiClust batch of k points; see the module docstring."""
    args = (max_clusters, min_cluster_size, n_neighbors, ladder, exact_max, kmeans_dims)
    cold = _subsample.cold_context(ctx)
    if cold is None:
        idx, info = _typiclust(ctx, k, *args)
        info["cold_subsample"] = False
        return idx, info
    # Huge pool: the fixed subsample (_subsample); the whole pool's random fill tops up a short batch.
    kk = min(k, int(np.count_nonzero(cold.ctx.available)))
    idx, info = _typiclust(cold.ctx, kk, *args, outside=cold.outside)
    info["cold_subsample"] = cold.info()
    info["detail"] += cold.detail()
    return cold.rows[idx], info


def _typiclust(ctx: Context, k: int, max_clusters, min_cluster_size, n_neighbors, ladder, exact_max, kmeans_dims,
               outside=None):
    """TypiClust on ``ctx``'s pool; ``outside``: unit rows of labelled images not in it, each counted
    in the cluster with the nearest members' mean."""
    geo = ctx.geometry
    n = ctx.n_samples
    labelled = ctx.labelled
    n_out = 0 if outside is None else int(outside.shape[0])
    want = min(labelled.size + n_out + k, int(max_clusters))
    K = min(ladder_up(want) if ladder else want, int(max_clusters), n)
    dims = _check_dims(kmeans_dims)
    if dims is not None and (dims >= geo.n_features or n * K * geo.n_features <= KMEANS_FULL_WORK):
        dims = None  # nothing to reduce, or cheap enough in full
    assign, _ = geo.kmeans(K, ctx.geometry_seed, dims)
    sizes = np.bincount(assign, minlength=K)
    held = np.bincount(assign[labelled], minlength=K)
    if n_out:
        held += np.bincount(nearest_cluster(geo, (K, ctx.geometry_seed, dims), outside), minlength=K)
    taken = ~ctx.available  # labelled or excluded: never proposed, still cluster members
    free = np.bincount(assign[~taken], minlength=K)
    floor = min_size_floor(min_cluster_size, n, K)
    heap = [(int(held[c]), -int(sizes[c]), int(c)) for c in range(K)
            if sizes[c] > floor and free[c] > 0]
    heapq.heapify(heap)
    picks: list[int] = []
    pointer: dict = {}
    while heap and len(picks) < k:
        cnt, neg_size, c = heapq.heappop(heap)
        p, rows = _next_free(geo, (K, ctx.geometry_seed, dims), c, n_neighbors, exact_max, taken,
                             pointer.get(c, 0), int(sizes[c]))
        if p is None:
            continue  # cluster exhausted: drop it
        picks.append(int(rows[p]))
        taken[rows[p]] = True
        pointer[c] = p + 1
        heapq.heappush(heap, (cnt + 1, neg_size, c))
    info = {"n_clusters": int(K), "n_clusters_wanted": int(want),
            "reason": "Picking the most typical image of each group of similar images, groups with "
                      "the fewest labels first"}
    space = "" if dims is None else f" (on {dims} PCA dims)"
    detail = (f"typiclust: {labelled.size + n_out} labels + {k} asked -> {K} k-means clusters{space}, "
              f"most typical point of the least-labelled clusters")
    short = k - len(picks)
    if short:
        rest = np.flatnonzero(~taken)
        picks.extend(ctx.rng(2).choice(rest, size=short, replace=False).tolist())
        info["filled_random"] = int(short)
        info["reason"] += f"; {short} more at random (the groups ran out)"
        detail += f"; {short} filled at random (clusters of > {floor:g} points ran out)"
    info["detail"] = detail
    return np.asarray(picks, dtype=np.int64), info


def nearest_cluster(geo, km, X) -> np.ndarray:
    """(len(X),) the cluster (of the clustering km = (K, seed, dims)) whose members' mean in the
    normalised features is nearest each row of X; the means are cached with the clustering."""
    K, seed, dims = km
    with geo.lock:
        memo = geo.scratch("typiclust_means")
        key = geo._km_key(K, seed, dims)
        if key not in memo:
            order, starts = geo.members(K, seed, dims)
            sums = np.add.reduceat(geo.rows(order), np.minimum(starts[:-1], order.size - 1), axis=0)
            sizes = np.diff(starts)
            # reduceat repeats a neighbour's row for an empty cluster: such a cluster is never nearest.
            memo[key] = ((sums / np.maximum(sizes, 1)[:, None]).astype(np.float32), sizes == 0)
        means, empty = memo[key]
    X = np.asarray(X, dtype=np.float32)
    d = (means * means).sum(1)[None, :] - 2.0 * (X @ means.T)
    d[:, empty] = np.inf
    return d.argmin(1)


def min_size_floor(min_cluster_size, n: int, K: int) -> float:
    """Clusters of at most this many points are skipped as outlier groups: ``min_cluster_size``
    (the reference code's 5), but never more than :data:`OUTLIER_SHARE` of the mean cluster size
    N / K, so that small pools with many clusters keep their ordinary small clusters."""
    return min(float(min_cluster_size), OUTLIER_SHARE * n / max(1, K))


def _check_dims(dims):
    if dims is None:
        return None
    if isinstance(dims, bool) or not isinstance(dims, (int, np.integer)) or dims < 1:
        raise ValueError(f"kmeans_dims must be a positive integer or None, got {dims!r}")
    return int(dims)


def _next_free(geo, km, c, n_neighbors, exact_max, taken, start, size):
    """(position, rows) of the most typical member of cluster c not yet taken, or (None, rows);
    km = (K, seed, dims) of the clustering."""
    K, seed, dims = km
    rows, _ = geo.typicality_order(K, seed, c, n_neighbors, exact_max, dims)
    p = start
    while p < rows.size and taken[rows[p]]:
        p += 1
    if p == rows.size and rows.size < size:  # a big cluster's shortlist ran out: exact order
        rows, _ = geo.typicality_order(K, seed, c, n_neighbors, exact_max=size, dims=dims)
        p = 0
        while p < rows.size and taken[rows[p]]:
            p += 1
    return (None, rows) if p == rows.size else (p, rows)
