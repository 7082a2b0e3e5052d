"""Feature-only geometry: normalisation, kNN, k-means, typicality, coreset distances.

Everything here depends only on the features, which never change during a session, so
:meth:`Geometry.of` keeps one :class:`Geometry` per feature set (keyed by content
fingerprint) and every expensive result on it is computed once and reused across rounds.
ProbCover's range search, delta and ball graph live in :mod:`alwidget.cover_geometry`, which
caches them on the same object (:meth:`Geometry.scratch`).

Backends. Exact neighbour searches and k-means run through faiss when it is importable and
the work stays on the CPU, otherwise through torch in row blocks (``block x N`` distance
tiles, never an ``N x N`` matrix) on CUDA when available, else on the CPU. Force one with
the ``backend`` argument or the module flag :data:`BACKEND` (``"auto" | "faiss" | "torch"``).

All distances are Euclidean. Shapes: ``X`` is ``(n_samples, n_features)``.
"""
from __future__ import annotations

import contextlib
import sys
import threading
import weakref
from collections import OrderedDict

import numpy as np

from . import ann
from ._kmeans import _TILE_BYTES, _assign_torch, _cluster_sums, _kmeans_torch, _rows_per_tile, _sq_dists, _to_torch  # noqa: F401
from ._kmeans import _mean_k_smallest, _positions, pca_project
from ._query import knn_query  # noqa: F401 (the package's exact query search, imported from here)
from ._util import check_features, default_threads, fingerprint, limit_threads, resolve_device

__all__ = ["BACKEND", "Geometry", "default_threads", "kmeans", "knn", "normalize", "threads"]

#: Default backend: "auto" (faiss on CPU when importable, torch otherwise), "faiss" or "torch".
BACKEND = "auto"
# Up to this many rows, kNN runs as one numpy product (no index set-up cost): TypiClust's
# per-cluster neighbour searches are mostly this small.
SMALL_N = 2048
# TypiClust: clusters above this size get a shortlist before exact typicality (see
# Geometry.typicality_order): exact costs O(s^2 D), e.g. ~25 s at N = 100k, K = 10, 1 thread.
TYPICALITY_EXACT_MAX = 2048
TYPICALITY_SAMPLE = 1024
TYPICALITY_SHORTLIST = 256
# k-means trains on at most this many rows (a seeded sample). At N = 100k, K = 224 (TypiClust
# after 124 labels) faiss's default 256 per centroid meant 57k rows and 3.8 s; 32k rows took
# 1.5 s with 0.3 % more inertia (bench/bench_selection.py, issue 12). Pools up to this size
# are clustered exactly as before.
KMEANS_TRAIN_MAX = 32_768
# From this many rows a pool of unit rows is used as its own normalised features (no copy;
# Geometry._unit_rows); the size of strategies._subsample.SUBSAMPLE_MIN and anchoral.SUBPOOL_MIN.
SHARE_UNIT_MIN = 200_000


# --------------------------------------------------------------------------- threads
# default_threads (re-exported): the package's policy, alwidget._util.default_threads.


@contextlib.contextmanager
def threads(n: int | None = None):
    """Cap BLAS/OpenMP/torch threads and faiss's OpenMP pool to ``n`` inside the block."""
    n = default_threads() if n is None else int(n)
    with limit_threads(n):
        faiss = sys.modules.get("faiss")
        if faiss is None:
            yield
            return
        old = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(n)
        try:
            yield
        finally:
            faiss.omp_set_num_threads(old)


# --------------------------------------------------------------------------- backends

def _has_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _resolve(backend=None, device=None):
    """-> ("faiss", None) or ("torch", torch.device)."""
    backend = BACKEND if backend is None else backend
    if backend not in ("auto", "faiss", "torch"):
        raise ValueError(f"backend must be 'auto', 'faiss' or 'torch', got {backend!r}")
    if backend == "faiss":
        if not _has_faiss():
            raise ValueError("backend='faiss' was asked for but faiss is not installed; "
                             "pip install faiss-cpu, or use backend='auto'")
        return "faiss", None
    dev = resolve_device("auto" if device is None else device)
    if backend == "auto" and dev.type == "cpu" and _has_faiss():
        return "faiss", None
    return "torch", dev


# --------------------------------------------------------------------------- public functions

def _known(features):
    """(fingerprint, array) of a pool the Session validated and hashed already (it tells the
    probe's pool cache, :func:`alwidget._pool.remember_fingerprint`), else (None, None): at 1M rows
    hashing and validating again took 6 s of the first batch."""
    from ._pool import validated_fingerprint

    fp = validated_fingerprint(features)
    return (fp, features) if fp is not None else (None, None)


def _unit_rows(arr: np.ndarray) -> np.ndarray:
    """:func:`normalize` of a validated pool; from :data:`SHARE_UNIT_MIN` rows, a pool whose rows are
    unit length already (embeddings usually are) is shared as it is: no 2 GB copy at 1M x 512
    (7 s of the first batch on two busy cores). Rows within 1e-6 of unit length: distances differ
    by at most that relative amount from those of the divided rows."""
    if arr.shape[0] >= SHARE_UNIT_MIN:
        norms = np.sqrt(np.einsum("ij,ij->i", arr, arr, dtype=np.float64))
        if np.all(np.abs(norms - 1.0) <= 1e-6):
            return arr
    return normalize(arr)


def normalize(X) -> np.ndarray:
    """L2-normalised rows as float32 (N, D); all-zero rows stay zero."""
    X = np.asarray(X, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64)).astype(np.float32)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(X / norms[:, None], dtype=np.float32)


def knn(X, k: int, *, exclude_self: bool = True, backend=None, device=None, progress=None):
    """Exact k nearest neighbours of every row of X among the rows of X.

    Returns ``(dist, idx)``: (N, k) float32 Euclidean distances, ascending, and (N, k) int64
    indices. With ``exclude_self`` a row never lists itself (an identical duplicate row still
    counts as a neighbour at distance 0). ``k`` is capped at the number of other rows.
    ``progress(done, n)``, when given, is called after each block of query rows.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    n = X.shape[0]
    k = int(min(k, n - 1 if exclude_self else n))
    if k <= 0:
        return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
    kq = k + 1 if exclude_self else k
    kind, dev = _resolve(backend, device)
    if n <= SMALL_N:
        x_sq = np.einsum("ij,ij->i", X, X)
        d = x_sq[:, None] - 2.0 * (X @ X.T) + x_sq[None, :]
        part = np.argpartition(d, kq - 1, axis=1)[:, :kq] if kq < n else np.tile(np.arange(n), (n, 1))
        dv = np.take_along_axis(d, part, 1)
        order = np.lexsort((part, dv), axis=-1)
        idx, sq = np.take_along_axis(part, order, 1), np.take_along_axis(dv, order, 1)
        if progress is not None:
            progress(n, n)
    elif kind == "faiss":
        import faiss

        index = faiss.IndexFlatL2(X.shape[1])
        index.add(X)
        sq, idx = ann.search_blocks(index, X, kq, progress)
    else:
        import torch

        xt = _to_torch(X, dev)
        x_sq = (xt * xt).sum(1)
        rows = _rows_per_tile(n)
        sq = np.empty((n, kq), np.float32)
        idx = np.empty((n, kq), np.int64)
        with torch.no_grad():
            for a in range(0, n, rows):
                v, i = torch.topk(_sq_dists(xt[a:a + rows], xt, x_sq), kq, dim=1, largest=False, sorted=True)
                sq[a:a + rows], idx[a:a + rows] = v.cpu().numpy(), i.cpu().numpy()
                if progress is not None:
                    progress(min(n, a + rows), n)
    if exclude_self:
        # Move the row itself (wherever ties put it) to the end, then drop the last column.
        is_self = idx == np.arange(n)[:, None]
        order = np.argsort(is_self, axis=1, kind="stable")[:, :k]
        sq, idx = np.take_along_axis(sq, order, 1), np.take_along_axis(idx, order, 1)
    return np.sqrt(np.maximum(sq, 0.0)).astype(np.float32), np.ascontiguousarray(idx)


def kmeans(X, n_clusters: int, *, seed: int = 0, n_iter: int = 20, backend=None, device=None,
           max_points_per_centroid: int = 256, assign: bool = True):
    """Seeded k-means (Lloyd) on the rows of X.

    Returns ``(assign, centroids)``: (N,) int64 cluster ids in ``0..K-1`` (None with ``assign=False``:
    no last pass over X) and (K, D) float32 centroids, ``K = min(n_clusters, N)``. Training uses at most
    ``max_points_per_centroid * K`` rows and at most :data:`KMEANS_TRAIN_MAX` (but >= 39 per centroid):
    a seeded subsample, as faiss does; every row is then assigned to its nearest centroid. Clusters
    may come out empty when X has fewer distinct rows than K."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    n, d = X.shape
    K = int(max(1, min(int(n_clusters), n)))
    max_points_per_centroid = int(min(int(max_points_per_centroid), max(39, KMEANS_TRAIN_MAX // K)))
    kind, dev = _resolve(backend, device)
    if kind == "faiss":
        import faiss

        if not np.isfinite(X).all():  # numpy's scan, not faiss's (0.4 ms for 1.3k x 512)
            raise ValueError("k-means input contains NaN or inf")
        km = faiss.Kmeans(d, K, niter=int(n_iter), seed=int(seed) % 2**31, verbose=False, check_input_data_for_NaNs=False,
                          max_points_per_centroid=int(max_points_per_centroid), min_points_per_centroid=1)
        km.train(X)
        return (km.index.search(X, 1)[1][:, 0].astype(np.int64) if assign else None), km.centroids.astype(np.float32)
    ids, cent = _kmeans_torch(X, K, seed, n_iter, dev, max_points_per_centroid)
    return (ids if assign else None), cent


# --------------------------------------------------------------------------- the cache

class Geometry:
    """Everything that depends only on one feature set, computed lazily and cached.

    Use :meth:`Geometry.of` rather than the constructor: it returns the cached instance for
    a feature set seen before (by identity without re-hashing, else by content fingerprint).
    Features must not be modified in place after they were first used.

    Attributes
    ----------
    X : (N, D) float32, L2-normalised rows.
    fingerprint : str, content hash of the raw features.
    """

    _cache: "OrderedDict[tuple, Geometry]" = OrderedDict()
    _ids: dict = {}  # id(array) -> (weakref, fingerprint)
    _lock = threading.Lock()
    _building: dict = {}  # key -> the lock of the one thread building that Geometry
    cache_size = 4

    def __init__(self, features: np.ndarray, fp: str | None = None, backend=None, device=None, X=None):
        self.raw = features
        self.fingerprint = fp or fingerprint(features)
        self.X = normalize(features) if X is None else X
        self.n_samples, self.n_features = self.X.shape
        self.backend, self.device = backend, device
        self._lock = threading.RLock()
        self._kmeans: dict = {}
        self._knn: dict = {}  # approximate? -> (dist, idx)
        self._typ: dict = {}
        self._members: dict = {}
        self._sqn = None  # (N,) squared row norms
        self._mind = None  # coreset: (centres (sorted int64), min squared distance (N,))
        self._scratch: dict = {}  # name -> OrderedDict: caches a strategy module keeps itself

    @property
    def lock(self):
        """The re-entrant lock guarding this feature set's caches."""
        return self._lock

    def scratch(self, name: str) -> OrderedDict:
        """A cache owned by one strategy module, kept with this feature set (hold :attr:`lock`)."""
        with self._lock:
            return self._scratch.setdefault(name, OrderedDict())

    # -- construction ------------------------------------------------------------------
    @classmethod
    def of(cls, features, backend=None, device=None) -> "Geometry":
        """The cached Geometry of ``features`` (validated with ``check_features`` on first sight)."""
        _resolve(backend, "cpu")  # reject an unknown backend before any work
        fp = None
        with cls._lock:
            hit = cls._ids.get(id(features))
            if hit is not None and hit[0]() is features:
                fp = hit[1]
        arr = None
        if fp is None:
            fp, arr = _known(features)
        if fp is None:
            arr = check_features(features)
            fp = fingerprint(arr)
            try:
                with cls._lock:
                    cls._ids[id(features)] = (weakref.ref(features), fp)
                    if len(cls._ids) > 64:
                        for key in [k for k, (r, _) in cls._ids.items() if r() is None]:
                            del cls._ids[key]
            except TypeError:  # no weak references (lists): hashed on every call
                pass
        key = (fp, BACKEND if backend is None else backend, None if device is None else str(device))
        with cls._lock:
            geo = cls._cached(key)
            if geo is not None:
                return geo
            building = cls._building.setdefault(key, threading.Lock())
        # One builder per key: a Session's first round and its background index build ask at once,
        # and two Geometries would each cache their own work (the 20 s index at 1M built into the one
        # the cache then dropped, and built again by the first subpool round).
        with building:
            with cls._lock:
                geo = cls._cached(key)
            if geo is None:
                arr = check_features(features) if arr is None else arr
                geo = cls(arr, fp, backend, device, X=_unit_rows(arr))
                with cls._lock:
                    cls._cache[key] = geo
                    while len(cls._cache) > cls.cache_size:
                        cls._cache.popitem(last=False)
            with cls._lock:
                cls._building.pop(key, None)
        return geo

    @classmethod
    def _cached(cls, key):
        """The cached Geometry under ``key``, marked most recent, or None (hold ``_lock``)."""
        geo = cls._cache.get(key)
        if geo is not None:
            cls._cache.move_to_end(key)
        return geo

    @classmethod
    def adopt(cls, features, X: np.ndarray, fp: str, backend=None, device=None) -> "Geometry":
        """Cache a Geometry for ``features`` whose unit rows ``X`` and a unique key ``fp`` are
        known (rows of a feature set seen before: AnchorAL's subpool), so that :meth:`of` finds it
        by identity without validating, hashing or normalising ``features`` again."""
        geo = cls(features, fp, backend, device, X=X)
        key = (fp, BACKEND if backend is None else backend, None if device is None else str(device))
        with cls._lock:
            cls._ids[id(features)] = (weakref.ref(features), fp)
            for k in [k for k, (r, _) in cls._ids.items() if r() is None] if len(cls._ids) > 64 else ():
                del cls._ids[k]
            cls._cache[key] = geo
            while len(cls._cache) > cls.cache_size:
                cls._cache.popitem(last=False)
        return geo

    @classmethod
    def clear_cache(cls) -> None:
        """Forget every cached feature set."""
        with cls._lock:
            cls._cache.clear()
            cls._ids.clear()

    def rows(self, idx) -> np.ndarray:
        """The unit rows at ``idx`` (a copy, ``X[idx]``); AnchorAL's subpool Geometry reads them
        from its pool's rows without gathering the whole subpool first."""
        return self.X[np.asarray(idx, dtype=np.int64)]

    # -- k-means and kNN ---------------------------------------------------------------
    def _km_key(self, n_clusters, seed, dims):
        """Cache key of a clustering; ``dims`` only when it reduces the features."""
        key = (int(min(n_clusters, self.n_samples)), int(seed))
        return key if dims is None or int(dims) >= self.n_features else (*key, int(dims))

    def reduced(self, dims: int) -> np.ndarray:
        """Cached (N, dims) PCA coordinates of the normalised features (:func:`pca_project`, seed 0)."""
        with self._lock:
            memo = self.scratch("pca")
            if int(dims) not in memo:
                memo[int(dims)] = pca_project(self.X, int(dims))
            return memo[int(dims)]

    def kmeans(self, n_clusters: int, seed: int = 0, dims: int | None = None):
        """Cached :func:`kmeans` of the normalised features: (assign (N,), centroids (K, D)).

        ``dims`` (< D): cluster the top-``dims`` PCA coordinates instead (:meth:`reduced`;
        centroids in that space): k-means costs O(N K D) per iteration, and on 1280-d
        EfficientNet features 128 PCA dims gave the same full-space inertia 8x faster."""
        key = self._km_key(n_clusters, seed, dims)
        with self._lock:
            if key not in self._kmeans:
                X = self.X if len(key) == 2 else self.reduced(key[2])
                self._kmeans[key] = kmeans(X, key[0], seed=key[1], backend=self.backend, device=self.device)
            return self._kmeans[key]

    def knn(self, k: int, approx=None):
        """Cached kNN graph of the normalised features (self excluded); a larger k is reused.

        Exact (:func:`knn`) unless ``approx``: None = approximate from :data:`ann.APPROX_KNN_MIN`
        rows when faiss is installed and the search would run on the CPU (an HNSW graph,
        :func:`alwidget.ann.knn_graph`; recall measured in BENCHMARKS.md section 6).
        :meth:`knn_is_approximate` says which one a call gets."""
        k = int(min(k, self.n_samples - 1))
        use = self.knn_is_approximate() if approx is None else bool(approx)
        with self._lock:
            hit = self._knn.get(use)
            if hit is None or hit[0].shape[1] < k:
                if use:
                    hit = ann.knn_graph(self.X, k)
                else:
                    hit = knn(self.X, k, backend=self.backend, device=self.device)
                self._knn[use] = hit
            return hit[0][:, :k], hit[1][:, :k]

    def has_knn(self, k: int, approx=None) -> bool:
        """Whether :meth:`knn` with these arguments returns a cached graph (no search)."""
        k = int(min(k, self.n_samples - 1))
        hit = self._knn.get(self.knn_is_approximate() if approx is None else bool(approx))
        return hit is not None and hit[0].shape[1] >= k

    def knn_is_approximate(self) -> bool:
        """Whether :meth:`knn` with ``approx=None`` builds the approximate graph for this feature set."""
        return (self.n_samples >= ann.APPROX_KNN_MIN and ann.available()
                and _resolve(self.backend, self.device)[0] == "faiss")

    def members(self, n_clusters: int, seed: int = 0, dims: int | None = None):
        """Rows of each k-means cluster: (order (N,), starts (K+1,)); cluster c is order[starts[c]:starts[c+1]]."""
        key = self._km_key(n_clusters, seed, dims)
        with self._lock:
            if key not in self._members:
                assign, _ = self.kmeans(*key)
                order = np.argsort(assign, kind="stable")
                starts = np.zeros(key[0] + 1, np.int64)
                np.cumsum(np.bincount(assign, minlength=key[0]), out=starts[1:])
                self._members[key] = (order, starts)
            return self._members[key]

    def typicality_order(self, n_clusters: int, seed: int, cluster: int, n_neighbors: int = 20,
                         exact_max: int | None = None, dims: int | None = None):
        """Members of one cluster sorted by typicality, most typical first, and their typicality.

        Typicality = 1 / (mean distance to the k nearest other members), k = min(n_neighbors,
        size // 2), in the full normalised features (the clusters are :meth:`kmeans`'s with the same
        ``dims``); a size-1 cluster gets typicality 0. Computed once per cluster and cached;
        ties keep index order. Returns ``(rows, typicality (float64))``, both sorted.

        Exact for clusters of at most ``exact_max`` points (default :data:`TYPICALITY_EXACT_MAX`;
        pass ``exact_max=N`` to force exact values everywhere). Larger clusters cost
        O(s^2 D) exactly, so they are shortlisted first: every member's mean distance to its
        nearest neighbours within a seeded subsample of :data:`TYPICALITY_SAMPLE` members (the
        k scaled by the sampling rate, so the density scale stays the same) ranks them, and the
        exact typicality is computed for the :data:`TYPICALITY_SHORTLIST` best only; then
        ``rows`` holds just that shortlist (callers that exhaust it ask again with a larger
        ``exact_max``).
        """
        exact_max = TYPICALITY_EXACT_MAX if exact_max is None else int(exact_max)
        km = self._km_key(n_clusters, seed, dims)
        key = (*km, int(cluster), int(n_neighbors))
        with self._lock:
            hit = self._typ.get(key)
            order, starts = self.members(*km)
            rows = order[starts[cluster]:starts[cluster + 1]]
            if hit is not None and (hit[0].size == rows.size or rows.size > exact_max):
                return hit
            k = min(int(n_neighbors), rows.size // 2)
            if k < 1:
                typ = np.zeros(rows.size)
            elif rows.size <= exact_max:
                dist, _ = knn(self.X[rows], k, backend=self.backend, device=self.device)
                # Identical rows have mean distance 0: keep typicality finite and largest.
                typ = 1.0 / (dist.astype(np.float64).mean(1) + 1e-12)
            else:
                Xc = self.X[rows]
                s = rows.size
                sub = np.sort(np.random.default_rng([int(seed), int(cluster), 11]).choice(
                    s, TYPICALITY_SAMPLE, replace=False))
                ks = max(1, int(round(k * TYPICALITY_SAMPLE / s)))
                proxy = _mean_k_smallest(Xc, Xc[sub], ks, self_col=_positions(s, sub))
                short = np.sort(np.argsort(proxy, kind="stable")[:TYPICALITY_SHORTLIST])
                exact = _mean_k_smallest(Xc[short], Xc, k, self_col=short)
                rows, typ = rows[short], 1.0 / (exact + 1e-12)
            o = np.lexsort((rows, -typ))
            self._typ[key] = (rows[o], typ[o])
            return self._typ[key]

    # -- Coreset -------------------------------------------------------------------
    def min_sq_dist(self, centres: np.ndarray) -> np.ndarray:
        """(N,) float32 squared distance from every row to its nearest row in ``centres``
        (inf when there are none). The last result is kept: a superset of the previous centres
        (one more label) only costs the new centres."""
        centres = np.unique(np.asarray(centres, dtype=np.int64))
        with self._lock:
            base = None
            if self._mind is not None:
                old, dist = self._mind
                if old.size <= centres.size and np.isin(old, centres, assume_unique=True).all():
                    base = dist.copy()
                    centres_new = np.setdiff1d(centres, old, assume_unique=True)
            if base is None:
                base = np.full(self.n_samples, np.inf, np.float32)
                centres_new = centres
            for a in range(0, centres_new.size, 256):
                base = np.minimum(base, self.sq_dist_to(centres_new[a:a + 256]).min(1))
            self._mind = (centres, base)
            return base.copy()

    def sq_dist_to(self, rows, among=None) -> np.ndarray:
        """(N, len(rows)) float32 squared distances from every row (or the rows ``among``) to the given rows, >= 0."""
        rows = np.asarray(rows, dtype=np.int64)
        if self._sqn is None:
            self._sqn = np.einsum("ij,ij->i", self.X, self.X)
        a = slice(None) if among is None else np.asarray(among, dtype=np.int64)
        d = self._sqn[a, None] - 2.0 * (self.X[a] @ self.X[rows].T) + self._sqn[rows][None, :]
        return np.maximum(d, 0.0, out=d).astype(np.float32, copy=False)
