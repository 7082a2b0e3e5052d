"""AnchorAL (Lesci & Vlachos, NAACL 2024): run a strategy on a small subpool near the labels.

Each round, for pools of at least :data:`SUBPOOL_MIN` rows (a setting; ``min_pool=``):

1. Anchors: per labelled class, at most ``per_class`` (50) of its labelled items, chosen by
   k-means++ seeding on the class's unit embeddings (spread over the class), re-drawn every
   round from the round's seed, which keeps exploring. A class with fewer labels (a rare one)
   anchors all of them.
2. Each anchor retrieves its ``n_neighbors`` (50) nearest *unlabelled*, not excluded items by
   cosine similarity (exact below :data:`IVF_MIN` rows; above, a faiss IVF index of 4-bit codes
   (:data:`IVF_CODEC`) built once per feature set, :class:`alwidget.ann.IVFIndex`, when faiss is
   installed; 8x the candidates are re-scored exactly). Each anchor's list is searched once and
   filtered by later labels.
3. Score = 1 - mean cosine distance to the anchors that retrieved the item. The subpool holds
   ``size`` (10,000) of them: first each anchor class's ``size // classes`` best, so a rare
   class's neighbourhood is not crowded out by denser classes (whose neighbours score higher),
   then the best of the rest (``balanced=False``: the paper's plain top ``size``); plus ``tail``
   (1,000) unlabelled items drawn at random from the rest (our addition: regions far from every
   label can still surface).
4. The strategy runs on the subpool and the labelled items only. Its probe is the one fitted on
   the whole pool (pool statistics never come from the subpool), read on the subpool's rows; its
   features and Geometry are the pool's unit rows there (no new hash or normalisation per round).

Strategies without a model (TypiClust, ProbCover, random, Coreset: they need pool-level
densities and distances) and the cold start of the model-based ones (fewer than 2 labelled
classes, or auto's first phase) run on the whole pool as usual; so does every strategy below
``min_pool``. ``info["anchoral"]`` says what happened.
"""
from __future__ import annotations

import threading

import numpy as np

from . import ann
from .anchoral_probe import RowsProbe, _gather  # noqa: F401 (re-exported)
from .geometry import Geometry, knn_query

__all__ = ["IVF_MIN", "SUBPOOL_MIN", "RowsProbe", "anchors", "index_ready", "prefetch", "select", "subpool", "warm"]

#: Pools from this many rows get AnchorAL subpools by default (BENCHMARKS.md, section 6).
SUBPOOL_MIN = 200_000
#: From this many rows the anchors' neighbours come from an IVF index (faiss) instead of an
#: exact scan of the pool per anchor.
IVF_MIN = 200_000
#: The IVF index's codec (``ann.CODECS``); its candidates are re-ranked exactly either way.
IVF_CODEC = "pq4"
#: Keep the IVF index in alwidget's cache folder ("indexes"), keyed by the features' content: a
#: Session opened again on the same pool (a kernel restart) loads it instead of rebuilding it
#: (27-33 s at 1M on two cores, rounds meanwhile on the whole pool: BENCHMARKS.md, section 7).
INDEX_CACHE = True
PER_CLASS = 50
N_NEIGHBORS = 50
SIZE = 10_000
TAIL = 1_000


def anchors(X, labels, per_class: int = PER_CLASS, seed: int = 0, *, labelled=None) -> np.ndarray:
    """Sorted anchor rows: per labelled class, ``per_class`` of its labelled rows by k-means++
    seeding on the rows of X (unit rows: cosine); all of them when the class has fewer, so a
    rare class anchors as many neighbourhoods as it has labels, up to ``per_class``.
    ``labelled``: ``flatnonzero(labels >= 0)`` when the caller has it (no pass over the labels)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng([int(seed), 41])
    lab = np.flatnonzero(labels >= 0) if labelled is None else np.asarray(labelled, dtype=np.int64)
    out = []
    for c in np.unique(labels[lab]):
        rows = lab[labels[lab] == c]
        if rows.size <= per_class:
            out.append(rows)
            continue
        Xc = X[rows]
        chosen = [int(rng.integers(rows.size))]
        best = ((Xc - Xc[chosen[0]]) ** 2).sum(1)
        for _ in range(1, int(per_class)):
            tot = float(best.sum())
            nxt = int(rng.choice(rows.size, p=best / tot)) if tot > 0 else int(rng.integers(rows.size))
            chosen.append(nxt)
            best = np.minimum(best, ((Xc - Xc[nxt]) ** 2).sum(1))
        out.append(rows[np.asarray(chosen)])
    return np.sort(np.concatenate(out)) if out else np.zeros(0, np.int64)


# Neighbour lists are fetched this much longer than needed, so that labels added later (which
# are filtered out) rarely force a new search for the same anchor.
_MARGIN = 64
# Queries per search call. A list is cached and reused by later rounds (and searched ahead by
# prefetch), so it must not depend on the rows searched with it: faiss's coarse search switches
# to a BLAS product from 20 queries at once (another rounding), and an exact block is padded to
# this many rows, one matrix product of one shape per pool.
_QUERIES = 16
# Rows per search call of :func:`prefetch` on the IVF path, between two asks of ``should_stop``: a
# label waits for at most one call; one row per call paid faiss's fixed cost per call 10 times a batch.
_PREFETCH_ROWS = 5


def _exact_path(geo) -> bool:
    return geo.n_samples < IVF_MIN or not ann.available()


def _ivf(geo):
    """The feature set's IVF index, built on first use (17 s at 1M on two idle cores) or read from the
    cache folder (about 1 s; :data:`INDEX_CACHE`), under a lock of its own: a
    build ahead (:func:`warm`) never holds the Geometry's lock that other strategies need."""
    with geo.lock:
        memo = geo.scratch("anchoral_ivf")
        building = memo.setdefault("lock", threading.Lock())
    with building:
        if "index" not in memo:
            # sqrt(N) cells: a one-off build of seconds at 1M (4 sqrt(N) took minutes). 4-bit
            # product codes: the scan of the probed cells was most of the search; with 8x the
            # candidates re-ranked about 3x cheaper than fp16 rows at the same recall (BENCHMARKS.md, 7).
            memo["index"] = ann.cached_ivf(geo.X, geo.fingerprint, metric="inner", nlist=int(np.sqrt(geo.n_samples)),
                                           codec=IVF_CODEC, folder=_index_folder())
        return memo["index"]


def _index_folder():
    """Where the pools' indexes are kept (:data:`INDEX_CACHE`), or None."""
    from ._util import cache_dir

    if not INDEX_CACHE:
        return None
    try:
        return cache_dir("indexes")
    except OSError:  # no writable cache folder: build per process
        return None


def warm(features) -> bool:
    """Build the search index of a pool that subpools will search with one (from IVF_MIN rows,
    faiss installed), so that the first subpool round does not wait for it. True if it has one."""
    geo = Geometry.of(features)
    if _exact_path(geo):
        return False
    _ivf(geo)
    return True


def index_ready(features) -> bool:
    """Whether a subpool round on this pool can search at once: no index needed, or it is built."""
    geo = Geometry.of(features)
    if _exact_path(geo):
        return True
    with geo.lock:
        return "index" in geo.scratch("anchoral_ivf")


def _search(geo, rows, k):
    """(sims (A, k), idx (A, k), -1 = none) of the rows' nearest pool rows by inner product,
    best first (ties by index); sims exact: the IVF index's ``k * oversample`` candidates are
    re-scored from the pool's rows and the best k kept.
    Each row's result is the same whichever rows are searched with it (``_QUERIES``)."""
    X, rows = geo.X, np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    if _exact_path(geo):
        sims, idx = np.empty((rows.size, k), np.float32), np.empty((rows.size, k), np.int64)
        for a in range(0, rows.size, _QUERIES):
            r = rows[a:a + _QUERIES]
            q = np.concatenate([r, np.full(_QUERIES - r.size, r[-1])])  # one shape per pool
            v, j = knn_query(X, X[q], k, metric="inner")
            sims[a:a + r.size], idx[a:a + r.size] = v[:r.size], j[:r.size]
        return sims, idx
    index = _ivf(geo)
    kc = int(min(geo.n_samples, k * index.oversample))
    sims, idx = np.empty((rows.size, k), np.float32), np.empty((rows.size, k), np.int64)
    for a in range(0, rows.size, _QUERIES):
        r = rows[a:a + _QUERIES]
        sims[a:a + r.size], idx[a:a + r.size] = _rescored(X, r, index.search(X[r], kc)[1], k)
    return sims, idx


def _rescored(X, rows, cand, k: int):
    """(sims (B, k), idx (B, k)): per row of ``rows``, the best k of its candidate rows ``cand``
    (B, kc) by exact inner product, best first, ties by index, -1 (sim -inf) for missing candidates
    last. The rows of a block are re-scored in one call (their (B, kc) products, no (B, kc, D)
    gather) and each sorted by (-sim, index): the same k rows in the same order as row by row."""
    j = np.where(cand < 0, np.iinfo(np.int64).max, cand)  # missing ones sort last
    s = ann.inner_products(X, X[rows], np.maximum(cand, 0))
    s[cand < 0] = -np.inf
    order = np.lexsort((j, -s), axis=-1)[:, :k]
    j = np.take_along_axis(j, order, 1)
    return np.take_along_axis(s, order, 1), np.where(j == np.iinfo(np.int64).max, -1, j)


def _lists(geo, k: int) -> dict:
    """The feature set's cache of neighbour lists for ``k`` neighbours: row -> (sims, idx)."""
    with geo.lock:
        lists = geo.scratch("anchoral_lists")
        if lists.get("k") != k:
            lists.clear()
            lists["k"] = k
        return lists.setdefault("rows", {})


def _fill(geo, cache: dict, rows, length: int) -> dict:
    """Search the lists (``length`` long) of ``rows`` and store them in ``cache``; returns them."""
    v, j = _search(geo, rows, length)
    got = {int(r): (v[t], j[t]) for t, r in enumerate(np.asarray(rows).tolist())}
    with geo.lock:
        cache.update(got)
    return got


def _neighbours(geo, anchor_rows, taken, n_neighbors):
    """(sims (A, k) float32, idx (A, k) int64, -1 = none): each anchor's nearest rows not taken.

    Each anchor's list of its k + margin nearest rows is searched once (or ahead, by
    :func:`prefetch`) and kept with the feature set; a round filters out the rows taken since.
    The first k rows left are exactly the k nearest untaken ones (every row ranked above them is
    in the list); an anchor with fewer than k left is searched again with a longer list."""
    k = int(n_neighbors)
    cache = _lists(geo, k)
    with geo.lock:
        have = {a: cache[a] for a in anchor_rows.tolist() if a in cache}
    todo = [a for a in anchor_rows.tolist() if a not in have]
    fetch = k + _MARGIN
    for _ in range(8):  # a longer list each time an anchor runs short (labels piled up near it)
        if todo:
            have.update(_fill(geo, cache, np.asarray(todo, np.int64), min(geo.n_samples, fetch)))
        sims, idx, short = _untaken(have, anchor_rows, taken, k, geo.n_samples)
        if not short:
            break
        todo, fetch = short, fetch * 4
    return sims, idx


def _untaken(have, anchor_rows, taken, k: int, n: int):
    """(sims (A, k), idx (A, k), short): each anchor's first k untaken rows of its list ``have[a]``
    (-inf / -1 after its last one); ``short``: the anchors (in order) whose list of fewer than n
    rows ran out before k, left unfilled. Lists of one length are read together, not one by one."""
    sims = np.full((anchor_rows.size, k), -np.inf, np.float32)
    idx = np.full((anchor_rows.size, k), -1, np.int64)
    rows = anchor_rows.tolist()
    length = np.array([have[a][1].size for a in rows])
    short = []
    for size in np.unique(length).tolist():
        at = np.flatnonzero(length == size)
        v = np.stack([have[rows[i]][0] for i in at.tolist()])
        j = np.stack([have[rows[i]][1] for i in at.tolist()])
        ok = (j >= 0) & ~taken[np.maximum(j, 0)]
        rank = np.cumsum(ok, 1)  # 1-based place of each untaken row among its list's
        bad = (rank[:, -1] < k) & (size < n) & (j >= 0).all(1)
        short += at[bad].tolist()
        r, c = np.nonzero(ok & (rank <= k) & ~bad[:, None])
        sims[at[r], rank[r, c] - 1], idx[at[r], rank[r, c] - 1] = v[r, c], j[r, c]
    return sims, idx, [rows[i] for i in sorted(short)]


def prefetch(features, rows, *, n_neighbors: int = N_NEIGHBORS, should_stop=None) -> int:
    """Search ahead the neighbour lists of ``rows`` into the cache :func:`subpool` reads; returns
    how many lists were searched (rows already cached are skipped).

    Meant for the batch just shown: once labelled, its rows are the next round's new anchors,
    whose search is most of a round at 1M (BENCHMARKS.md, section 7); a Session runs this after
    publishing a batch. A list is a pure function of the features, the row and its length
    (``_QUERIES``), so the picks never depend on whether this ran; rows labelled later, or never,
    or relabelled need nothing else. ``should_stop()``, when given, is asked before each search
    (:data:`_PREFETCH_ROWS` rows at a time on the IVF path): True stops, leaving the rest to the round."""
    geo = Geometry.of(features)
    rows = np.asarray(rows)
    if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
        raise ValueError(f"rows must be a 1-d array of row indices, got {rows.dtype} with shape {rows.shape}")
    if rows.size and (rows.min() < 0 or rows.max() >= geo.n_samples):
        raise ValueError(f"rows must be in [0, {geo.n_samples}), got {rows.min()}..{rows.max()}")
    cache = _lists(geo, int(n_neighbors))
    with geo.lock:
        todo = [r for r in dict.fromkeys(rows.astype(np.int64).tolist()) if r not in cache]
    step = _QUERIES if _exact_path(geo) else _PREFETCH_ROWS
    done = 0
    for a in range(0, len(todo), step):
        if should_stop is not None and should_stop():
            break
        _fill(geo, cache, np.asarray(todo[a:a + step], np.int64), min(geo.n_samples, int(n_neighbors) + _MARGIN))
        done += len(todo[a:a + step])
    return done


def subpool(features, labels, *, exclude=None, per_class: int = PER_CLASS, n_neighbors: int = N_NEIGHBORS,
            size: int = SIZE, tail: int = TAIL, balanced: bool = True, seed: int = 0, labelled=None):
    """(rows, info): the round's subpool (sorted int64; never labelled or excluded rows).

    At most ``size`` retrieved rows plus ``tail`` random other candidates; with ``balanced``
    each labelled class first gets ``size // classes`` of its anchors' neighbours (best score
    first), the rest by score, so a rare class's neighbourhood is never crowded out by the
    denser classes' (whose neighbours score higher); else the ``size`` best scores (the paper).
    Deterministic for the same features, labels, exclusions and seed. ``info``: ``anchors``,
    ``retrieved`` (distinct rows the anchors found), ``subpool``, ``tail``, ``approximate``.
    ``labelled``: ``flatnonzero(labels >= 0)`` when the caller has it (each pass over a 1M-row
    label array is about half a millisecond of a round).
    """
    labels = np.asarray(labels)
    n = labels.shape[0]
    geo = Geometry.of(features)
    lab = np.flatnonzero(labels >= 0) if labelled is None else np.unique(np.asarray(labelled, dtype=np.int64))
    taken = np.zeros(n, bool)
    taken[lab] = True
    gone = lab  # what the tail never draws, with the retrieved rows
    if exclude is not None:
        ex = np.asarray(exclude)
        if ex.dtype == bool:
            taken = taken | ex
            gone = np.flatnonzero(taken)
        else:  # indices: no (N,) isin
            ex = ex.astype(np.int64)
            taken[ex] = True  # IndexError out of range; negative ones count from the end
            gone = np.union1d(lab, np.where(ex < 0, ex + n, ex))
    a = anchors(geo.X, labels, per_class, seed, labelled=lab)
    picked, found = np.zeros(0, np.int64), 0
    if a.size:
        sims, idx = _neighbours(geo, a, taken, int(n_neighbors))
        picked, found = _assemble(sims, idx, labels[a] if balanced else np.zeros(a.size, np.int64), int(size))
    extra = _tail(n, np.sort(np.concatenate([gone, picked])), int(tail), seed)  # disjoint: picked rows are untaken
    t = extra.size
    out = np.sort(np.concatenate([picked, extra]).astype(np.int64))
    info = {"anchors": int(a.size), "retrieved": int(found), "subpool": int(out.size), "tail": int(t),
            "approximate": bool(n >= IVF_MIN and ann.available())}
    return out, info


def _tail(n: int, gone, tail: int, seed: int) -> np.ndarray:
    """``tail`` rows drawn at random (seeded) from the rows of ``range(n)`` not in ``gone`` (sorted,
    unique, in range): the same rows as drawing from ``np.setdiff1d(np.arange(n), gone)``, whose i-th row is
    i plus the number of gone rows up to it, found without a pass over the n rows."""
    t = min(int(tail), n - gone.size)
    if t <= 0:
        return np.zeros(0, np.int64)
    i = np.random.default_rng([int(seed), 43]).choice(n - gone.size, t, replace=False)
    return i + np.searchsorted(gone - np.arange(gone.size), i, side="right")


def _best_first(score) -> np.ndarray:
    """``np.lexsort((np.arange(n), -score))``: positions by score, best first, ties by position.
    An unstable sort and a re-sort of the tied runs only (a stable sort of 11k floats: 0.6 ms)."""
    order = np.argsort(-score)
    s = score[order]
    tied = np.zeros(order.size, bool)
    eq = s[1:] == s[:-1]
    tied[1:] |= eq
    tied[:-1] |= eq
    if tied.any():  # the runs of equal scores keep their places; inside one, positions ascend
        order[tied] = order[tied][np.lexsort((order[tied], -s[tied]))]
    return order


def _assemble(sims, idx, group, size: int):
    """(rows, n_found): at most ``size`` of the rows the anchors retrieved (``idx`` (A, k), -1 =
    none). Score = mean similarity over the anchors that found a row; each anchor group (its
    class) first gets ``size // groups`` of its rows by score, then the best of the rest."""
    ok = idx >= 0
    g = np.broadcast_to(np.asarray(group)[:, None], idx.shape)[ok]
    rows, inv = np.unique(idx[ok], return_inverse=True)
    score = np.bincount(inv, weights=sims[ok], minlength=rows.size) / np.bincount(inv, minlength=rows.size)
    if rows.size <= size:
        return rows, rows.size
    order = _best_first(score)
    groups, gi = np.unique(g, return_inverse=True)
    quota = size // groups.size
    chosen = np.zeros(rows.size, bool)
    mine = np.zeros(rows.size, bool)
    for c in range(groups.size):
        mine[:] = False
        mine[inv[gi == c]] = True
        chosen[order[mine[order]][:quota]] = True  # this group's best rows
    fill = order[~chosen[order]][: size - int(chosen.sum())]
    chosen[fill] = True
    return rows[chosen], rows.size


#: Strategies that never read the subpool's feature array itself (only the probe, and rows
#: through its Geometry): their subpool's unit rows are gathered only where something reads
#: them (:class:`_GatheredOnRead`): margin and BADGE read none, DropQuery its candidates'.
LAZY_ROWS = frozenset({"margin", "entropy", "least_confidence", "power_margin", "dropquery", "badge"})


class _GatheredOnRead(Geometry):
    """A Geometry of some rows of a pool whose unit rows are gathered on the first read of ``X``
    (3-7 ms of a round at 1M; :meth:`rows` reads some rows straight from the pool). Until :attr:`_source` is set (right
    after it is adopted) ``X`` is the placeholder the Geometry was built with."""

    _source = None  # (the pool's unit rows, rows)

    @property
    def X(self):
        src = self._source
        if src is not None:
            self._x, self._source = src[0][src[1]], None
        return self._x

    @X.setter
    def X(self, value):
        self._x = value

    def rows(self, idx) -> np.ndarray:
        src = self._source
        if src is None:
            return self._x[np.asarray(idx, dtype=np.int64)]
        return src[0][src[1][np.asarray(idx, dtype=np.int64)]]  # the same values, fewer rows gathered


def _rows_of(features, rows, backend=None, lazy: bool = False) -> np.ndarray:
    """The subpool's features: the pool's unit rows at ``rows`` (one gather), with their Geometry
    cached for ``strategies.select`` so that a fresh array is not validated, hashed and normalised
    every round (about 20 ms at 1M). Strategies read features only through the Geometry and the
    probe (the subpool's probe answers for its rows by index), and BALD's duplicate check, for
    which identical unit rows are the same image. ``lazy`` (the :data:`LAZY_ROWS` strategies):
    the features handed on are a read-only zero-stride placeholder of the right shape and the
    Geometry gathers the real rows only when its ``X`` is read."""
    import hashlib

    geo = Geometry.of(features, backend=backend)
    key = hashlib.blake2b(rows.astype("<i8").tobytes(), digest_size=16, key=geo.fingerprint.encode()[:64])
    fp = "rows:" + key.hexdigest() + (":lazy" if lazy else "")
    if lazy:
        X = np.broadcast_to(np.zeros((1, geo.n_features), np.float32), (rows.size, geo.n_features))
        _GatheredOnRead.adopt(X, X, fp, backend=backend)._source = (geo.X, rows)
        return X
    X = geo.X[rows]
    Geometry.adopt(X, X, fp, backend=backend)
    return X


def _runs_on_subpool(name: str, labels, params: dict, lab) -> bool:
    """Whether the strategy that will run is model-based (not a cold start): only those use the subpool."""
    from .strategies import _common, auto as auto_mod

    seen = np.unique(labels[lab]).size
    if seen < 2:
        return False
    if name == "auto":
        n_classes = params.get("n_classes")
        C = max(int(n_classes) if n_classes is not None else seen, 1)
        per = lab.size / C
        return per >= params.get("min_per_class", auto_mod.MIN_LABELS_PER_CLASS)
    strat = _common.REGISTRY.get(name)
    return strat is not None and strat.needs_model


def _pool_cold_start(features, params: dict) -> dict:
    """auto's parameters with ``cold_start="auto"`` resolved on the whole pool: its later phases
    run on the subpool, yet the cold start they name is the pool's. Measured on each round's
    subpool instead, it cost 70 ms a round at 1M (a fresh Geometry each round, nothing cached)
    and could name a cold start that never ran; the pool's ratio is measured once and cached."""
    if params.get("cold_start", "auto") != "auto":
        return params
    from .strategies import _check_seed, auto as auto_mod

    geo = Geometry.of(features, backend=params.get("backend"))
    seed = _check_seed("geometry_seed", params.get("geometry_seed", 0))  # the error select would give
    start, _ = auto_mod.pool_cold_start(geo, seed, params.get("tight_ratio", auto_mod.TIGHT_RATIO))
    return dict(params, cold_start=start)


def select(name: str, features, labels, k: int, *, seed: int = 0, probe=None, exclude=None,
           return_info: bool = False, min_pool: int | None = None, subpool_params=None,
           wait_index: bool = True, **params):
    """``strategies.select`` with AnchorAL subpools from ``min_pool`` rows (module docstring).

    Same arguments and result as :func:`alwidget.strategies.select` (``probe``: fitted on the
    whole pool, or None to fit one here); ``min_pool`` (None: :data:`SUBPOOL_MIN`); ``subpool_params`` go to :func:`subpool`. With
    ``return_info``, ``info["anchoral"]`` holds the subpool's figures, or False when the
    whole pool was used. ``wait_index=False``: while another thread still builds the search
    index (:func:`warm`), run on the whole pool (about a second at 1M) instead of waiting for it
    (20-50 s); ``info["index_pending"]`` says so."""
    from . import strategies
    from .strategies import round_seed

    labels = np.asarray(labels)
    n = labels.shape[0]
    min_pool = SUBPOOL_MIN if min_pool is None else int(min_pool)
    lab = np.flatnonzero(labels >= 0)  # once: the rest reads the labelled rows, not the (N,) array
    whole = n < min_pool or not _runs_on_subpool(name, labels, params, lab)
    pending = not whole and not wait_index and not index_ready(features)
    if whole or pending:
        out = strategies.select(name, features, labels, k, seed=seed, probe=probe, exclude=exclude,
                                return_info=True, **params)
        out[1]["anchoral"] = False
        if pending:
            out[1]["index_pending"] = True
            out[1]["reason"] = out[1].get("reason", "") + " (on all the images while the index for faster rounds is built)"
        return out if return_info else out[0]
    if probe is None:
        from .probe import LinearProbe

        probe = LinearProbe(seed=seed).fit(features, labels, n_classes=params.get("n_classes"))
    if name == "auto":
        params = _pool_cold_start(features, params)
    rseed = round_seed(seed, labels, labelled=lab)
    sub, sinfo = subpool(features, labels, exclude=exclude, seed=rseed, labelled=lab, **(subpool_params or {}))
    rows = np.sort(np.concatenate([sub, lab]))  # = union1d: the subpool holds no labelled row
    X = _rows_of(features, rows, params.get("backend"), lazy=name in LAZY_ROWS)
    idx, info = strategies.select(name, X, labels[rows], k, seed=seed, probe=RowsProbe(probe, rows),
                                  return_info=True, **params)
    info = dict(info, anchoral=sinfo)
    info["reason"] = info.get("reason", "") + (f" (among the {sub.size:,} images nearest the labelled ones "
                                               f"and {sinfo['tail']:,} at random)")
    info["detail"] = info.get("detail", "") + (f"; AnchorAL subpool: {sinfo['anchors']} anchors, "
                                               f"{sinfo['retrieved']} retrieved, {sub.size} rows of {n}")
    out = rows[np.asarray(idx, dtype=np.int64)]
    return (out, info) if return_info else out
