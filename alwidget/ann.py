"""Approximate nearest neighbours for large pools: an HNSW kNN graph and an IVF index for queries.

Exact neighbour searches cost O(N^2 D) for a whole kNN graph (128 s at N = 100k, D = 512 on
one core, ``bench/results/bench_search.md``). Two faiss indexes, each where it was faster here:

- the whole kNN graph (near-duplicates, outliers): ``IndexHNSWFlat`` (M = 16, efConstruction 40,
  efSearch :data:`EF_SEARCH`); on 60k Fashion-MNIST pixel rows (784-d) 17 s with recall 0.98,
  where an IVF graph at the same recall took 47 s (its cells are unbalanced on real data);
- a few hundred queries against a big pool (AnchorAL's retrieval): an IVF index, one
  O(N D sqrt N) build, then each query scans only its ``nprobe`` nearest cells. The rows in the
  cells are kept as float32, fp16, or 4-bit product codes ("pq4", faiss fast scan, d / 4 bytes a
  row). AnchorAL uses "pq4" and re-ranks 8 candidates per neighbour exactly: at 1M rows (D = 512,
  one thread) 10 queries cost 9.6 instead of 29.6 ms with fp16 rows, whose scan is compute-bound
  in faiss (8-bit scalar codes: 25.6 ms), at the same recall against exact (recall@50 and @114
  within 0.01 of fp16 on synthetic, Fashion-MNIST pixel and EfficientNet pools); the build takes
  20.5 instead of 11.6 s, the codes 122 instead of 977 MB (``bench/bench_ivf_codecs.py``,
  BENCHMARKS.md section 7).

The graph's distances are exact for the rows found (the IVF index's values carry its codec's
rounding; AnchorAL re-scores them); what is missed is measured, never assumed
(tests, ``bench/bench_selection.py --knn``). faiss is optional (the ``faiss`` extra): without it
:func:`available` is False and callers (``Geometry.knn``, AnchorAL) stay exact.
Shapes: ``X`` (N, D) float32.
"""
from __future__ import annotations

import contextlib
import os

import numpy as np

__all__ = ["APPROX_KNN_MIN", "CODECS", "EF_SEARCH", "NPROBE", "OVERSAMPLE", "IVFIndex", "available", "cached_ivf",
           "inner_products", "knn_graph", "recall"]

#: From this many rows Geometry.knn builds the approximate graph (when faiss is installed and the
#: search runs on the CPU). Below it the exact search is at most a few seconds (bench_search.md:
#: 3.0 s at 20k), above it grows as N^2.
APPROX_KNN_MIN = 50_000
#: IVF cells searched per query (AnchorAL's retrieval).
NPROBE = 16
#: HNSW candidate list per query for the kNN graph: recall and time in BENCHMARKS.md, section 6.
EF_SEARCH = 64
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 40
# Training rows per cell for the coarse k-means (faiss warns below 39).
_TRAIN_PER_CELL = 40
_QUERY_BLOCK = 8192


def available() -> bool:
    """Whether faiss can be imported (the approximate paths need it)."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def default_nlist(n: int) -> int:
    """Cells for n rows: about 4 sqrt(n) (faiss's guideline), at least 1, at most n // 39."""
    return int(max(1, min(int(4 * np.sqrt(n)), n // 39)))


#: IVF codecs: rows kept as float32, half precision, or 4-bit product codes (fast scan).
CODECS = ("flat", "fp16", "pq4")
#: Candidates per wanted neighbour a caller re-ranks exactly (:attr:`IVFIndex.oversample`): "pq4"
#: values are coarse (a 16-level code per 2 dims), so the true k nearest are found among more:
#: with 8, recall@50 and @114 stayed within 0.01 of "fp16" on the three pools of
#: bench_ivf_codecs (4 lost 0.026 @114 on the synthetic pool, 0.014 @20 on digits).
OVERSAMPLE = {"flat": 1, "fp16": 1, "pq4": 8}
# Dimensions per sub-quantiser of "pq4" (2: 2 bits per dimension; 4 lost recall on the synthetic pool).
_PQ_DSUB = 2
_PQ_LEVELS = 16  # 4-bit codes
# faiss fast-scan search implementation, pinned: 11 = one query at a time with a reservoir of
# candidates, so a query's result never depends on the queries searched with it (auto picks by
# the batch's shape).
_PQ_IMPLEM = 11
# What IVFIndex.save writes: a file of another format (or another faiss) is rebuilt, never misread.
_FILE_FORMAT = 1
#: Index files :func:`cached_ivf` keeps in its folder (the most recently used).
INDEX_FILES_KEPT = 4


class IVFIndex:
    """A faiss IVF index over the rows of X (metric "l2" or "inner"), trained with a seed.

    ``codec`` (:data:`CODECS`): "flat" (float32 rows, IndexIVFFlat); "fp16"
    (IndexIVFScalarQuantizer with half-precision rows, half the memory of "flat"); "pq4"
    (IndexIVFPQFastScan: residuals to the cell centre in 4-bit product codes, one code per 2
    dimensions, d / 4 bytes per row, an eighth of "fp16"; scanned with SIMD table look-ups).
    The scan of the probed cells costs per row about as much for "fp16" as for 8-bit scalar
    codes (both compute-bound in faiss on this CPU); "pq4" with 8x candidates re-ranked is about 3x
    cheaper at 1M rows (``bench/bench_ivf_codecs.py``). "fp16" values carry fp16 rounding,
    "pq4" values are coarse: callers that need exact values or order re-score the rows found,
    taking ``k * oversample`` candidates (:data:`OVERSAMPLE`) to keep the recall of "fp16".

    ``search(Q, k, nprobe)`` -> ``(values (M, k) float32, idx (M, k) int64)``: squared Euclidean
    distances ascending ("l2") or inner products descending ("inner"); -1 where fewer than k rows
    were found in the probed cells. A query's result does not depend on the others searched with
    it while fewer than 20 are searched at once (faiss's coarse search switches to a BLAS product
    from 20 queries, another rounding).
    """

    def __init__(self, X, *, metric: str = "l2", nlist: int | None = None, seed: int = 0, codec: str = "flat"):
        import faiss

        if metric not in ("l2", "inner"):
            raise ValueError(f"metric must be 'l2' or 'inner', got {metric!r}")
        if codec not in CODECS:
            raise ValueError(f"codec must be one of {', '.join(map(repr, CODECS))}, got {codec!r}")
        X = np.ascontiguousarray(X, dtype=np.float32)
        n, d = X.shape
        if codec == "pq4" and n < _PQ_LEVELS:
            raise ValueError(f"codec 'pq4' needs at least {_PQ_LEVELS} rows (its codes' levels are trained on them), got {n}")
        self.nlist = default_nlist(n) if nlist is None else int(max(1, min(int(nlist), n)))
        self.metric, self.codec, self.oversample = metric, codec, OVERSAMPLE[codec]
        # "pq4" needs d divisible by its sub-vector length: zero columns change no distance.
        self._pad = (-d) % _PQ_DSUB if codec == "pq4" else 0
        X = self._padded(X)
        index, quant = _make_ivf(faiss, X.shape[1], self.nlist, metric, codec)
        index.cp.seed = int(seed) % 2**31
        index.cp.min_points_per_centroid = 1
        m = min(n, _TRAIN_PER_CELL * self.nlist)
        train = X if m == n else X[np.sort(np.random.default_rng([int(seed), 31]).choice(n, m, replace=False))]
        index.train(train)
        index.add(X)
        self._quant, self.index, self.n_samples = quant, index, n

    def _padded(self, X):
        return np.pad(X, ((0, 0), (0, self._pad))) if self._pad else X

    def _meta(self) -> dict:
        return _file_meta(self.metric, self.codec, self.nlist, self.n_samples, self.index.d - self._pad)

    def save(self, path) -> None:
        """Write the built index to ``path`` (an .npz: faiss's serialised index and what it was built
        with), atomically: a reader finds the old file, none, or the whole new one."""
        import json

        import faiss

        from ._util import atomic_write

        blob = faiss.serialize_index(self.index)
        atomic_write(path, lambda f: np.savez(f, index=blob, meta=np.asarray(json.dumps(self._meta()))))

    @classmethod
    def load(cls, path, *, n_samples: int, n_features: int, metric: str, codec: str, nlist: int) -> "IVFIndex":
        """The index :meth:`save` wrote to ``path``, checked to be the one asked for (rows, features,
        metric, codec, cells, this faiss version and file format); ValueError when it is not, or
        when the file cannot be read, so that the caller rebuilds it."""
        import json

        import faiss

        try:
            with np.load(path, allow_pickle=False) as z:
                meta, blob = json.loads(str(z["meta"])), z["index"]
        except Exception as exc:  # truncated, garbage, not an npz
            raise ValueError(f"unreadable index file: {exc}") from exc
        want = _file_meta(metric, codec, nlist, n_samples, n_features)
        if meta != want:
            diff = sorted(k for k in set(want) | set(meta) if meta.get(k) != want.get(k))
            raise ValueError(f"the index file was built for another setting ({', '.join(diff)})")
        self = cls.__new__(cls)
        self.metric, self.codec, self.nlist, self.n_samples = metric, codec, int(nlist), int(n_samples)
        self.oversample, self._pad = OVERSAMPLE[codec], (-n_features) % _PQ_DSUB if codec == "pq4" else 0
        self.index, self._quant = faiss.deserialize_index(blob), None  # the index owns its quantiser
        if self.index.ntotal != n_samples or self.index.d != n_features + self._pad:
            raise ValueError(f"the index file holds {self.index.ntotal} rows of {self.index.d} values")
        if codec == "pq4":
            self.index.implem = _PQ_IMPLEM
        return self

    def search(self, Q, k: int, nprobe: int = NPROBE):
        Q = self._padded(np.ascontiguousarray(np.atleast_2d(Q), dtype=np.float32))
        self.index.nprobe = int(max(1, min(int(nprobe), self.nlist)))
        vals, idx = self.index.search(Q, int(k))
        return vals.astype(np.float32, copy=False), idx.astype(np.int64, copy=False)


def _file_meta(metric: str, codec: str, nlist: int, n_samples: int, n_features: int) -> dict:
    """What an index file records of its index, and what a load must find there."""
    import faiss

    return {"format": _FILE_FORMAT, "faiss": faiss.__version__, "metric": metric, "codec": codec,
            "nlist": int(nlist), "n_samples": int(n_samples), "n_features": int(n_features)}


def cached_ivf(X, key: str, *, metric: str, nlist: int, codec: str, seed: int = 0, folder=None) -> IVFIndex:
    """An :class:`IVFIndex` over X, read from ``folder`` when a file for ``key`` (the content
    fingerprint of X) and these settings is there, else built and written there (``folder`` None:
    built only). A file that cannot be used is reported and rebuilt; a folder that cannot be
    written only costs the next process the build."""
    import hashlib
    import json
    import warnings
    from pathlib import Path

    path = None
    if folder is not None:
        setting = json.dumps({"features": key, "metric": metric, "codec": codec, "nlist": int(nlist),
                              "seed": int(seed)}, sort_keys=True)
        path = Path(folder) / f"ivf-{hashlib.blake2b(setting.encode(), digest_size=16).hexdigest()}.npz"
    if path is not None and path.exists():
        try:
            index = IVFIndex.load(path, n_samples=X.shape[0], n_features=X.shape[1], metric=metric, codec=codec,
                                  nlist=nlist)
            with contextlib.suppress(OSError):
                os.utime(path)  # last used: what _prune keeps
            return index
        except ValueError as exc:
            warnings.warn(f"ignoring the search index file {path} ({exc}); rebuilding it", RuntimeWarning,
                          stacklevel=2)
    index = IVFIndex(X, metric=metric, nlist=nlist, seed=seed, codec=codec)
    if path is not None:
        try:
            index.save(path)
        except OSError as exc:
            warnings.warn(f"could not keep the search index in {path.parent} ({exc}); the next process "
                          "rebuilds it", RuntimeWarning, stacklevel=2)
        else:
            _prune(path)
    return index


def _prune(kept) -> None:
    """Delete all but the :data:`INDEX_FILES_KEPT` most recently used index files beside ``kept``
    (never ``kept`` itself): a pool that changes (a folder gaining images) gets a new file each
    time, 134 MB at 1M rows, and the old ones would pile up."""
    def used(f):
        try:
            return f.stat().st_mtime
        except OSError:  # gone meanwhile (another process pruned it)
            return float("-inf")

    files = sorted((f for f in kept.parent.glob("ivf-*.npz") if f != kept), key=used, reverse=True)
    for f in files[INDEX_FILES_KEPT - 1:]:
        with contextlib.suppress(OSError):
            f.unlink()


def _make_ivf(faiss, d: int, nlist: int, metric: str, codec: str):
    """(untrained faiss IVF index, its coarse quantiser) for one codec."""
    mt = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    quant = faiss.IndexFlatL2(d) if metric == "l2" else faiss.IndexFlatIP(d)
    if codec == "flat":
        return faiss.IndexIVFFlat(quant, d, nlist, mt), quant
    if codec == "fp16":
        return faiss.IndexIVFScalarQuantizer(quant, d, nlist, faiss.ScalarQuantizer.QT_fp16, mt), quant
    index = faiss.IndexIVFPQFastScan(quant, d, nlist, d // _PQ_DSUB, 4, mt)
    index.implem = _PQ_IMPLEM
    return index, quant


def inner_products(X, q, ids) -> np.ndarray:
    """The exact inner products of query rows with rows ``ids`` of X, float32: q (D,) and ids (m,)
    give (m,); q (B, D) and ids (B, m) give (B, m), row b against its own ids (one call for a block
    of queries). faiss's by-index kernel reads the rows in place, no gathered copy (0.24 instead of
    0.37 ms for 912 rows of a 1M x 512 pool); each product is the same whichever other rows are asked."""
    import faiss

    q = np.asarray(q, dtype=np.float32)
    ids = np.asarray(ids, dtype=np.int64)
    if q.ndim == 2 and (ids.ndim != 2 or ids.shape[0] != q.shape[0]):
        raise ValueError(f"ids must be (B, m) for queries q (B, D), got {ids.shape} for {q.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= X.shape[0]):
        raise ValueError(f"ids must be in [0, {X.shape[0]}), got {ids.min()}..{ids.max()}")
    if not (isinstance(X, np.ndarray) and X.dtype == np.float32 and X.flags.c_contiguous):
        if q.ndim == 2:
            return np.asarray(np.einsum("bmd,bd->bm", X[ids], q), dtype=np.float32)
        return np.asarray(X[ids] @ q, dtype=np.float32)
    nq = q.shape[0] if q.ndim == 2 else 1
    q, ids = np.ascontiguousarray(q), np.ascontiguousarray(ids)
    out = np.empty(ids.shape, np.float32)
    faiss.fvec_inner_products_by_idx(faiss.swig_ptr(out), faiss.swig_ptr(q), faiss.swig_ptr(X),
                                     faiss.swig_ptr(ids), X.shape[1], nq, ids.size // max(nq, 1))
    return out


def knn_graph(X, k: int, *, exclude_self: bool = True, ef_search: int = EF_SEARCH, progress=None):
    """Approximate k nearest neighbours of every row of X (Euclidean), like :func:`geometry.knn`.

    An HNSW graph (faiss ``IndexHNSWFlat``; its insertion order is the row order, so the result
    is built on one thread: deterministic). Returns ``(dist (N, k) float32 ascending, idx (N, k)
    int64)``. A row never lists itself with ``exclude_self``. Rows for which fewer than k others
    were found are searched exactly, so every entry is a real neighbour. ``progress(done, n)``
    after each block of query rows.
    """
    import faiss

    X = np.ascontiguousarray(X, dtype=np.float32)
    n = X.shape[0]
    k = int(min(k, n - 1 if exclude_self else n))
    if k <= 0:
        return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
    index = faiss.IndexHNSWFlat(X.shape[1], HNSW_M)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    old = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # parallel insertion makes the graph depend on thread timing
    try:
        index.add(X)
    finally:
        faiss.omp_set_num_threads(old)
    index.hnsw.efSearch = int(max(ef_search, k + 1))
    kq = k + 1 if exclude_self else k
    sq, idx = search_blocks(index, X, kq, progress)
    if exclude_self:
        # Self to the end (wherever ties put it; when it was not found, the last column goes).
        is_self = idx == np.arange(n)[:, None]
        is_self[~is_self.any(1), -1] = True
        order = np.argsort(is_self, axis=1, kind="stable")[:, :k]
        sq, idx = np.take_along_axis(sq, order, 1), np.take_along_axis(idx, order, 1)
    short = np.flatnonzero((idx < 0).any(1))
    if short.size:
        _exact_rows(X, short, k, exclude_self, sq, idx)
    return np.sqrt(np.maximum(sq, 0.0)).astype(np.float32), np.ascontiguousarray(idx, dtype=np.int64)


def _exact_rows(X, rows, k, exclude_self, sq, idx) -> None:
    """Exact neighbours for the given rows, written into sq/idx in place (the rare short rows)."""
    x_sq = np.einsum("ij,ij->i", X, X)
    for a in range(0, rows.size, 256):
        r = rows[a:a + 256]
        d = x_sq[r, None] - 2.0 * (X[r] @ X.T) + x_sq[None, :]
        if exclude_self:
            d[np.arange(r.size), r] = np.inf
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
        dv = np.take_along_axis(d, part, 1)
        o = np.argsort(dv, axis=1, kind="stable")
        idx[r], sq[r] = np.take_along_axis(part, o, 1), np.maximum(np.take_along_axis(dv, o, 1), 0.0)


def recall(approx_idx, exact_idx) -> float:
    """Share of the exact k nearest neighbours (per row) that the approximate graph found."""
    a = np.asarray(approx_idx)
    e = np.asarray(exact_idx)
    if e.size == 0:
        return 1.0
    hits = sum(np.intersect1d(a[i], e[i]).size for i in range(e.shape[0]))
    return float(hits) / float(e.size)


def search_blocks(index, X, kq: int, progress=None):
    """(squared distances (n, kq) float32, indices (n, kq) int64) of every row of X in a faiss
    index, searched in blocks of _QUERY_BLOCK rows (bounded memory, progress per block)."""
    n = X.shape[0]
    sq = np.empty((n, kq), np.float32)
    idx = np.empty((n, kq), np.int64)
    for a in range(0, n, _QUERY_BLOCK):
        sq[a:a + _QUERY_BLOCK], idx[a:a + _QUERY_BLOCK] = index.search(X[a:a + _QUERY_BLOCK], kq)
        if progress is not None:
            progress(min(n, a + _QUERY_BLOCK), n)
    return sq, idx
