"""Find what you need: text search, more-like-this, near-duplicates, outliers and map filters.

Everything ranks by cosine similarity of L2-normalised embeddings. Searches are exact: one
matrix-vector product over the pool (searched in place on the CPU; kept once per feature set on
the GPU when there is one) and a top-k, through :func:`alwidget.geometry.knn_query`.

- Text search embeds the query with the text tower of the *same* OpenCLIP checkpoint as the
  images (``text_encoder=``: a spec string, an :class:`alwidget.embed.Encoder`, or any callable
  ``prompts -> (P, D)``; the towers are in :mod:`alwidget.text_tower`). Without one (EfficientNet
  embeddings, bare arrays) it raises :class:`TextSearchUnavailable`, whose message is the
  sentence a disabled search box shows.
- More like this: the mean of the normalised embeddings of one or more items -> its nearest rows.
- Near-duplicates: connected components of the kNN graph restricted to pairs above a cosine
  threshold. Outliers: mean distance to the k nearest neighbours. Both use the cached kNN graph
  of :class:`alwidget.geometry.Geometry` (exact below 50k rows; from there, with faiss installed
  and on the CPU, faiss' HNSW graph, :mod:`alwidget.ann`; ``Geometry.knn_is_approximate()`` says which).
- Filters are pure functions from arrays to boolean masks (combine them with ``&``).

The ``*_session`` functions are what the widget calls: they read the features, the text encoder,
labels and predictions from a :class:`alwidget.session.Session`.
"""
from __future__ import annotations

import dataclasses
import threading
import weakref
from collections import OrderedDict

import numpy as np

from ._util import check_features, check_k, limit_threads
from .geometry import Geometry, default_threads, knn_query, normalize
# the text towers live in text_tower.py; CLIP_SCALE and text_tower stay importable from here (prior.py)
from .text_tower import CLIP_SCALE, TextSearchUnavailable, no_tower_sentence, text_tower  # noqa: F401

__all__ = [
    "Duplicates", "SearchResult", "TextSearchUnavailable", "mask_labelled", "mask_name", "mask_predicted",
    "mask_rows", "mask_uncertainty", "more_like_this", "near_duplicates", "outlier_scores", "outliers",
    "search_session", "search_text", "search_vector", "similar_session", "filter_session",
    "text_search_status", "text_tower", "uncertainty", "unit_rows",
]

#: Results a search returns unless told otherwise.
DEFAULT_K = 100
#: Cosine similarity from which two items count as near-duplicates.
DUPLICATE_THRESHOLD = 0.95
#: Neighbours per item in the kNN graph behind duplicates and outliers.
GRAPH_K = 10


@dataclasses.dataclass
class SearchResult:
    """Ranked hits: ``indices`` (k,) int64 rows, best first; ``scores`` (k,) float32 cosine
    similarity (descending; for :func:`outliers` the outlier score); ``message`` one sentence."""

    indices: np.ndarray
    scores: np.ndarray
    message: str
    query: str | None = None

    def __len__(self) -> int:
        return int(self.indices.size)


# ------------------------------------------------------------------------------ the pool
_POOLS: OrderedDict = OrderedDict()  # (id(features), kind) -> (weakref, value)
_POOL_LOCK = threading.Lock()


def _cached(features, kind: str, make):
    """make() for this features object, kept while the object lives (identity, never hashed:
    features must not be modified in place, as everywhere in alwidget)."""
    key = (id(features), kind)
    with _POOL_LOCK:
        hit = _POOLS.get(key)
        if hit is not None and hit[0]() is features:
            _POOLS.move_to_end(key)
            return hit[1]
    value = make()
    try:
        ref = weakref.ref(features)
    except TypeError:  # lists and other objects without weak references: not cached
        return value
    with _POOL_LOCK:
        _POOLS[key] = (ref, value)
        while len(_POOLS) > 6:
            _POOLS.popitem(last=False)
    return value


def unit_rows(features) -> np.ndarray:
    """(N, D) float32 L2-normalised rows; the array itself when its rows already have unit
    norm (embeddings do), so a 1M x 512 pool is not copied. Validated once per object."""
    def make():
        X = check_features(features)
        norms = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64))
        return X if np.abs(norms - 1.0).max() <= 1e-4 else normalize(X)

    return _cached(features, "unit", make)


def _device_pool(features, device=None):
    """The unit rows where the search runs: the numpy array itself on the CPU, a cached torch
    tensor on a GPU."""
    from ._util import resolve_device

    dev = resolve_device("auto" if device is None else device)
    if dev.type == "cpu":
        return unit_rows(features)
    import torch

    return _cached(features, f"torch:{dev}", lambda: torch.from_numpy(unit_rows(features)).to(dev))


def _check_rows(rows, n: int, name: str = "rows") -> np.ndarray:
    arr = np.atleast_1d(np.asarray(rows))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be one index or a non-empty list of indices, got {rows!r}")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be integer row indices, got dtype {arr.dtype}")
    bad = arr[(arr < 0) | (arr >= n)]
    if bad.size:
        raise ValueError(f"{name}: index {int(bad[0])} is out of range for {n} items (valid: 0..{n - 1})")
    return np.unique(arr.astype(np.int64))


def _threads(n: int | None):
    """CPU threads (BLAS and torch) for one query: the project's policy (usable CPUs - 1, so 1 on
    a 2-core box, where 2 threads made a 20k-row query 5x slower than 1: measured) unless told."""
    return limit_threads(default_threads() if n is None else check_k(n, "n_threads"))


def search_vector(features, vector, k: int = DEFAULT_K, *, exclude=None, device=None, n_threads=None,
                  what: str = "the query") -> SearchResult:
    """The k rows most cosine-similar to ``vector`` (D,), never rows in ``exclude``.

    ``n_threads``: CPU threads for the product (default :func:`alwidget.geometry.default_threads`).
    """
    X = unit_rows(features)
    k = check_k(k, "k")
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    if v.size != X.shape[1]:
        raise ValueError(f"the query vector has {v.size} values but the features have {X.shape[1]} columns")
    if not np.isfinite(v).all() or not np.any(v):
        raise ValueError("the query vector must be finite and not all zero")
    v = v / np.linalg.norm(v)
    excl = None if exclude is None or len(exclude) == 0 else _check_rows(exclude, X.shape[0], "exclude")
    with _threads(n_threads):
        scores, idx = knn_query(_device_pool(features, device), v, k, metric="inner", exclude=excl)
    scores, idx = scores[0], idx[0]
    if idx.size == 0:
        return SearchResult(idx, scores, f"Nothing left to show for {what}: every item is excluded.")
    msg = (f"{idx.size} item{'s' if idx.size != 1 else ''} most similar to {what} "
           f"(cosine {scores[0]:.2f} to {scores[-1]:.2f}).")
    return SearchResult(idx, scores, msg)


def more_like_this(features, rows, k: int = DEFAULT_K, *, exclude=None, include_query: bool = False,
                   device=None, n_threads=None) -> SearchResult:
    """More like this: the k rows nearest the mean of the normalised embeddings of ``rows``.

    The query rows themselves are left out unless ``include_query``.
    """
    X = unit_rows(features)
    rows = _check_rows(rows, X.shape[0])
    centre = X[rows].astype(np.float64).mean(0)
    if np.linalg.norm(centre) < 1e-6:
        raise ValueError("the selected items cancel out (their mean embedding is zero); select fewer or other items")
    skip = [] if exclude is None else list(np.atleast_1d(exclude))
    if not include_query:
        skip += rows.tolist()
    what = f"item {int(rows[0])}" if rows.size == 1 else f"the {rows.size} selected items"
    return search_vector(features, centre, k, exclude=skip or None, device=device, n_threads=n_threads, what=what)


# ------------------------------------------------------------------------------ text
def search_text(features, query: str, text_encoder=None, *, k: int = DEFAULT_K, exclude=None,
                device=None, n_threads=None) -> SearchResult:
    """The k items whose embeddings are most cosine-similar to the text ``query``.

    ``text_encoder``: the OpenCLIP spec (or Encoder, or callable) that made ``features``.
    Raises :class:`TextSearchUnavailable` without one, ValueError for an empty query or a text
    tower of another width than the features.
    """
    if not isinstance(query, str) or not query.strip():
        raise ValueError(f"query must be a non-empty text, got {query!r}")
    query = query.strip()
    tower = text_tower(text_encoder)
    with _threads(n_threads):
        vec = tower([query])[0]
    d = unit_rows(features).shape[1]
    if vec.size != d:
        raise ValueError(f"the text encoder {tower.name} makes {vec.size}-d vectors but the features have {d} "
                         "columns; image and text embeddings must come from the same OpenCLIP checkpoint")
    res = search_vector(features, vec, k, exclude=exclude, device=device, n_threads=n_threads, what=f'"{query}"')
    res.query = query
    return res


# ------------------------------------------------------------------------------ duplicates, outliers
@dataclasses.dataclass
class Duplicates:
    """Near-duplicate groups: ``groups`` list of int64 row arrays (largest first, each sorted),
    ``group_of`` (N,) int64 group id per row (-1: none), ``threshold``, ``message``."""

    groups: list
    group_of: np.ndarray
    threshold: float
    message: str

    def mask(self) -> np.ndarray:
        """(N,) bool: rows that belong to a group."""
        return self.group_of >= 0


def _graph(features, k: int, backend=None):
    """Cached kNN graph of the unit rows: (cosine (N, k) float32 descending, idx (N, k))."""
    geo = Geometry.of(unit_rows(features), backend=backend)
    dist, idx = geo.knn(k)
    return 1.0 - 0.5 * dist.astype(np.float32) ** 2, idx  # unit rows: |a - b|^2 = 2 - 2 cos


def graph_ready(features, k: int = GRAPH_K, backend=None) -> bool:
    """Whether near_duplicates / outliers would answer at once (their kNN graph is cached)."""
    return Geometry.of(unit_rows(features), backend=backend).has_knn(k)


def near_duplicates(features, threshold: float = DUPLICATE_THRESHOLD, *, k: int = GRAPH_K,
                    backend=None) -> Duplicates:
    """Groups of items whose embeddings have cosine >= ``threshold`` with another member.

    Pairs come from each item's ``k`` nearest neighbours; groups are the connected components of
    those pairs, so a chain of near-copies is one group even when its ends are further apart.
    """
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    if not -1.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold is a cosine similarity in [-1, 1], got {threshold!r}")
    k = check_k(k, "k")
    cos, idx = _graph(features, k, backend)
    n = cos.shape[0]
    rows, cols = np.nonzero(cos >= threshold)
    a, b = rows.astype(np.int64), idx[rows, cols]
    g = sp.coo_matrix((np.ones(a.size, bool), (a, b)), shape=(n, n))
    _, comp = connected_components(g, directed=False)
    sizes = np.bincount(comp)
    multi = np.flatnonzero(sizes >= 2)
    # largest group first, then by first row
    first = np.full(sizes.size, n, np.int64)
    np.minimum.at(first, comp, np.arange(n))
    multi = multi[np.lexsort((first[multi], -sizes[multi]))]
    group_of = np.full(n, -1, np.int64)
    remap = np.full(sizes.size, -1, np.int64)
    remap[multi] = np.arange(multi.size)
    group_of = remap[comp]
    order = np.argsort(group_of, kind="stable")
    starts = np.searchsorted(group_of[order], np.arange(multi.size + 1))
    groups = [order[starts[g]:starts[g + 1]] for g in range(multi.size)]
    n_items = int(sum(len(g) for g in groups))
    msg = (f"{len(groups)} group{'s' if len(groups) != 1 else ''} of near-duplicates "
           f"(cosine >= {threshold:g}), {n_items} items in all." if groups
           else f"No near-duplicates at cosine >= {threshold:g}.")
    return Duplicates(groups, group_of, float(threshold), msg)


def outlier_scores(features, k: int = GRAPH_K, *, backend=None) -> np.ndarray:
    """(N,) float32: mean cosine distance (1 - cos) to the k nearest other items; larger = more isolated."""
    cos, _ = _graph(features, check_k(k, "k"), backend)
    return (1.0 - cos).mean(1).astype(np.float32)


def outliers(features, n: int = DEFAULT_K, *, k: int = GRAPH_K, backend=None) -> SearchResult:
    """The n most isolated items (highest :func:`outlier_scores`), most isolated first."""
    s = outlier_scores(features, k, backend=backend)
    n = min(check_k(n, "n"), s.size)
    idx = np.lexsort((np.arange(s.size), -s))[:n]
    msg = f"The {n} most isolated items (mean cosine distance to their {k} nearest neighbours)."
    return SearchResult(idx.astype(np.int64), s[idx], msg)


# ------------------------------------------------------------------------------ filters
def uncertainty(proba, measure: str = "margin") -> np.ndarray:
    """(N,) float32 uncertainty in [0, 1] from (N, C) probabilities.

    "margin": 1 - (p1 - p2); "entropy": H / log C; "least_confidence": (1 - p1) * C / (C - 1).
    """
    p = np.asarray(proba, dtype=np.float32)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"proba must be (n_samples, n_classes) with at least 2 classes, got shape {p.shape}")
    c = p.shape[1]
    if measure == "margin":
        top = -np.partition(-p, 1, axis=1)[:, :2]
        u = 1.0 - (top[:, 0] - top[:, 1])
    elif measure == "entropy":
        u = -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(1) / np.log(c)
    elif measure == "least_confidence":
        u = (1.0 - p.max(1)) * c / (c - 1)
    else:
        raise ValueError(f"measure must be 'margin', 'entropy' or 'least_confidence', got {measure!r}")
    return np.clip(u, 0.0, 1.0).astype(np.float32)


def mask_predicted(proba, classes) -> np.ndarray:
    """(N,) bool: rows whose most probable class is one of ``classes`` (class ids)."""
    if proba is None:
        raise ValueError("there are no predictions yet: label a few items (or give a text prior) first")
    want = np.atleast_1d(np.asarray(classes, dtype=np.int64))
    return np.isin(np.asarray(proba).argmax(1), want)


def mask_uncertainty(proba, low: float = 0.0, high: float = 1.0, *, measure: str = "margin") -> np.ndarray:
    """(N,) bool: rows with ``low <= uncertainty <= high`` (see :func:`uncertainty`)."""
    if proba is None:
        raise ValueError("there are no predictions yet: label a few items (or give a text prior) first")
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"need 0 <= low <= high <= 1, got low={low!r}, high={high!r}")
    u = uncertainty(proba, measure)
    return (u >= low) & (u <= high)


def mask_labelled(labels, labelled: bool = True) -> np.ndarray:
    """(N,) bool: labelled rows (labels >= 0), or the unlabelled ones with ``labelled=False``."""
    lab = np.asarray(labels)
    return (lab >= 0) if labelled else (lab < 0)


def mask_name(names, substring: str, *, case_sensitive: bool = False) -> np.ndarray:
    """(N,) bool: rows whose name (file name, key) contains ``substring``; None names never match."""
    if not isinstance(substring, str):
        raise TypeError(f"substring must be a text, got {type(substring).__name__}")
    s = substring if case_sensitive else substring.casefold()
    out = np.zeros(len(names), bool)
    for i, name in enumerate(names):
        if name is not None:
            out[i] = s in (str(name) if case_sensitive else str(name).casefold())
    return out


def mask_rows(n: int, rows) -> np.ndarray:
    """(n,) bool with ``rows`` set (search hits as a map highlight)."""
    out = np.zeros(int(n), bool)
    if rows is not None and len(rows):
        out[_check_rows(rows, int(n))] = True
    return out


# ------------------------------------------------------------------------------ the widget's entry points
def text_search_status(session) -> tuple[bool, str]:
    """(available, sentence) for the search box: why it is disabled, or what it searches with."""
    enc = getattr(session, "text_encoder", None)
    why = no_tower_sentence(enc)
    if why:
        return False, why
    name = enc if isinstance(enc, str) else getattr(enc, "id", getattr(enc, "__name__", "the given text encoder"))
    return True, f"Search the images by text with {name}."


def _unlabelled_exclude(session, unlabelled_only: bool):
    return np.flatnonzero(session.label_array() >= 0) if unlabelled_only else None


def search_session(session, text: str, k: int = DEFAULT_K, *, unlabelled_only: bool = False) -> SearchResult:
    """Text search over a Session's items (``Labeller.search``); raises TextSearchUnavailable."""
    return search_text(session.features, text, getattr(session, "text_encoder", None), k=k,
                       exclude=_unlabelled_exclude(session, unlabelled_only))


def similar_session(session, rows, k: int = DEFAULT_K, *, unlabelled_only: bool = False) -> SearchResult:
    """More like this over a Session's items, from one row or a selection."""
    return more_like_this(session.features, rows, k, exclude=_unlabelled_exclude(session, unlabelled_only))


def filter_session(session, *, predicted=None, uncertainty_range=None, labelled=None, name=None, names=None,
                   measure: str = "margin") -> tuple[np.ndarray, str]:
    """The map filter: ((N,) bool mask of items shown, a sentence saying what is shown).

    predicted: class names or ids; uncertainty_range: (low, high); labelled: True / False / None
    (all); name: a substring of ``names`` (the items' display names, from the Labeller).
    """
    n = session.features.shape[0]
    mask = np.ones(n, bool)
    parts = []
    if predicted is not None:
        classes = session.classes
        want = []
        for p in (predicted if isinstance(predicted, (list, tuple, np.ndarray)) else [predicted]):
            if isinstance(p, str) and p not in classes:
                raise ValueError(f"unknown class {p!r}; the classes are {classes}")
            want.append(classes.index(p) if isinstance(p, str) else int(p))
        mask &= mask_predicted(session.predict_proba(), want)
        parts.append("predicted " + ", ".join(classes[w] if 0 <= w < len(classes) else str(w) for w in want))
    if uncertainty_range is not None:
        lo, hi = uncertainty_range
        mask &= mask_uncertainty(session.predict_proba(), lo, hi, measure=measure)
        parts.append(f"{measure} uncertainty {lo:g}-{hi:g}")
    if labelled is not None:
        mask &= mask_labelled(session.label_array(), bool(labelled))
        parts.append("labelled" if labelled else "unlabelled")
    if name:
        if names is None or len(names) != n:
            raise ValueError(f"filtering by name needs one name per item ({n}); pass names=")
        mask &= mask_name(names, name)
        parts.append(f'name contains "{name}"')
    shown = int(mask.sum())
    return mask, f"{shown:,} of {n:,} items shown" + (": " + ", ".join(parts) if parts else "") + "."
