"""Find what you need in the widget: text search, more like this, filters, duplicates, outliers.

The engine is `alwidget.search`; this module is its widget half. `Finder` keeps what the map
shows of a search (the result rows, highlighted) and of a filter (a mask: what is filtered out
is dimmed), answers the browser's `search`, `similar`, `filter`, `duplicate_group` and
`clear_find` intents, and sends `found` and `filter` messages (docs/widget-protocol.md).
`FindMixin` gives `Labeller` its Python API (`search`, `similar`, `filter`, `duplicates`,
`outliers`, `open_group`, `clear_find`). Results open in the review grid for labelling; nothing
is labelled here.
"""
from __future__ import annotations

import threading

import numpy as np

from . import search as engine
from .widget_intents import Intent, check_indices, class_from, indices_from

__all__ = ["FIND_HANDLERS", "FindMixin", "Finder", "text_encoder_for"]

SOURCES = ("search", "similar", "duplicates", "outliers")
#: From this many rows, a filter or group that must first build the kNN graph (a minute at 100k on
#: 2 cores) is answered from a thread, so the kernel keeps taking labels meanwhile.
BACKGROUND_GRAPH_MIN = 20_000
MAX_K = 5000  # the grid is virtualised, but a result list is for looking at


def text_encoder_for(encoder_id: str | None):
    """The text encoder to pass on for embeddings made by ``encoder_id`` (its own spec when it
    has a text tower, e.g. OpenCLIP), or None (EfficientNet: text search stays off, and says why)."""
    if not encoder_id:
        return None
    from . import embed

    try:
        return encoder_id if embed.get_encoder(encoder_id, device="cpu", load=False).has_text else None
    except (TypeError, ValueError):
        return None


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= MAX_K:
        raise Intent(f"k must be a whole number of results from 1 to {MAX_K}, got {k!r}")
    return int(k)


def _check_range(value):
    if value is None:
        return None
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)):
        raise Intent(f"uncertainty must be [low, high] with numbers in 0..1, got {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if not 0.0 <= lo <= hi <= 1.0:
        raise Intent(f"the uncertainty range needs 0 <= low <= high <= 1, got {lo:g}..{hi:g}")
    return lo, hi


class Finder:
    """The find state of one Labeller (`host`): results shown, the filter, duplicate groups."""

    def __init__(self, host):
        self.host = host
        self.spec: dict = {}  # the filter as asked (validated); {} = no filter
        self.mask: np.ndarray | None = None  # (N,) bool, rows the filter keeps; None = all
        self.filter_message = ""
        self.results: engine.SearchResult | None = None
        self.source = ""
        self._dups: engine.Duplicates | None = None
        self._lock = threading.RLock()  # the filter changes from the comm and from the Session's pushes
        self.available, self.reason = engine.text_search_status(host.session)

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        """The `find_state` traitlet: what the search box and the filter line show."""
        r = self.results
        return {"text_search": bool(self.available), "text_reason": self.reason,
                "filter": self.filter_message, "filter_active": self.mask is not None,
                "results": None if r is None else {"source": self.source, "query": r.query, "message": r.message,
                                                   "count": len(r)},
                "duplicates": None if self._dups is None else self._dups.message}

    def _publish(self):
        self.host.find_state = self.state()

    def _emit(self, content, buffers):
        with self.host._send_lock:
            self.host.emit(content, buffers)

    # ------------------------------------------------------------------ results
    def show(self, result: engine.SearchResult, source: str, request=None, *, open_grid: bool = True):
        """Send the ranked rows to the browser: highlighted on the map, opened in the review grid."""
        self.results, self.source = result, source
        idx = np.ascontiguousarray(result.indices, np.int32)
        scores = np.ascontiguousarray(result.scores, np.float32)
        content = {"type": "found", "source": source, "query": result.query, "message": result.message,
                   "count": int(idx.size), "open": bool(open_grid)}
        if request is not None:
            content["request"] = request
        self._emit(content, [memoryview(idx).cast("B"), memoryview(scores).cast("B")])
        self._publish()
        return result

    def _exclude(self, unlabelled_only: bool):
        """Rows a search leaves out: those the filter dims, and labelled ones when asked."""
        drop = np.zeros(self.host.state.n, bool)
        if self.mask is not None:
            drop |= ~self.mask
        if unlabelled_only:
            drop |= self.host.session.label_array() >= 0
        return np.flatnonzero(drop) if drop.any() else None

    def search(self, text, k=engine.DEFAULT_K, *, unlabelled_only=False):
        if not self.available:
            raise engine.TextSearchUnavailable(self.reason)
        s = self.host.session
        return engine.search_text(s.features, text, s.text_encoder, k=k, exclude=self._exclude(unlabelled_only))

    def similar(self, rows, k=engine.DEFAULT_K, *, unlabelled_only=False):
        rows = np.atleast_1d(np.asarray(rows))
        drop = self._exclude(unlabelled_only)
        if drop is not None:  # the query rows themselves may be dimmed: they are still the query
            drop = np.setdiff1d(drop, rows.astype(np.int64))
        return engine.more_like_this(self.host.session.features, rows, k, exclude=drop)

    def duplicates(self, threshold=engine.DUPLICATE_THRESHOLD) -> engine.Duplicates:
        if self._dups is None or self._dups.threshold != float(threshold):
            self._dups = engine.near_duplicates(self.host.session.features, threshold)
            self._publish()
        return self._dups

    def group(self, g: int, threshold=engine.DUPLICATE_THRESHOLD) -> engine.SearchResult:
        """Near-duplicate group ``g`` (0 = the largest) as a result list."""
        d = self.duplicates(threshold)
        if not d.groups:
            raise ValueError(d.message)
        if isinstance(g, bool) or not isinstance(g, (int, np.integer)) or not 0 <= int(g) < len(d.groups):
            raise ValueError(f"group must be 0..{len(d.groups) - 1} ({len(d.groups)} near-duplicate groups), got {g!r}")
        rows = d.groups[int(g)]
        msg = (f"Near-duplicate group {int(g) + 1} of {len(d.groups)}: {rows.size} images "
               f"(cosine >= {d.threshold:g}); label them at once.")
        return engine.SearchResult(rows.astype(np.int64), np.ones(rows.size, np.float32), msg)

    # ------------------------------------------------------------------ filter
    def _names(self) -> list:
        if getattr(self, "_name_list", None) is None:  # names never change for a widget's rows
            self._name_list = [self.host.point_name(i) for i in range(self.host.state.n)]
        return self._name_list

    def compute_filter(self, spec: dict):
        """(mask or None, sentence) for a validated filter spec (see `check_filter`)."""
        s, n = self.host.session, self.host.state.n
        if not spec:
            return None, ""
        if (spec.get("predicted") is not None or spec.get("uncertainty") is not None) and not (self.host.state.pred >= 0).any():
            raise ValueError("the map shows no predictions yet: label images of 2 classes first "
                             "(or start from the class names with text_prior=True)")
        names = self._names() if spec.get("name") else None
        mask, sentence = engine.filter_session(s, predicted=spec.get("predicted"), uncertainty_range=spec.get("uncertainty"),
                                               labelled=spec.get("labelled"), name=spec.get("name"), names=names)
        parts = [sentence.rstrip(".").split(": ", 1)[1]] if ": " in sentence else []
        if spec.get("duplicates"):
            d = self.duplicates(spec.get("threshold", engine.DUPLICATE_THRESHOLD))
            mask &= d.mask()
            parts.append(f"near-duplicates (cosine >= {d.threshold:g})")
        if spec.get("outliers"):
            out = engine.outliers(s.features, min(int(spec["outliers"]), n))
            mask &= engine.mask_rows(n, out.indices)
            parts.append(f"the {len(out)} most isolated")
        return mask, f"{int(mask.sum()):,} of {n:,} items shown" + (": " + ", ".join(parts) if parts else "") + "."

    def needs_graph_build(self, spec: dict | None = None) -> bool:
        """True when the request needs the kNN graph, it is not built yet and the pool is large
        enough for the build to take a while (it then runs off the kernel's thread)."""
        if spec is not None and not (spec.get("duplicates") or spec.get("outliers")):
            return False
        features = self.host.session.features
        return features.shape[0] >= BACKGROUND_GRAPH_MIN and not engine.graph_ready(features)

    def in_background(self, what: str, work, request=None):
        """Run ``work()`` in a thread, saying meanwhile on the find bar that the graph is being built;
        a refusal (ValueError, Intent) or failure becomes the bar's sentence."""
        n = self.host.session.features.shape[0]
        progress = (f"Looking for {what} among {n:,} images: building their similarity graph "
                    f"first (about a minute per 100,000 images on 2 cores)...")
        with self._lock:
            before, self.filter_message = self.filter_message, progress
            self.send_filter(request)

        def run():
            try:
                work()
                message = before
            except Exception as exc:  # shown, never raised into a thread nobody joins
                message = f"{what.capitalize()} not found: {exc}"
            with self._lock:
                if self.filter_message == progress:  # a new filter brings its own sentence
                    self.filter_message = message
                    self.send_filter()

        threading.Thread(target=run, name="alwidget-find-graph", daemon=True).start()

    def set_filter(self, spec: dict, request=None):
        with self._lock:
            mask, sentence = self.compute_filter(spec)
            self.spec, self.mask, self.filter_message = dict(spec), mask, sentence
            self.send_filter(request)
        return (np.ones(self.host.state.n, bool) if mask is None else mask.copy()), sentence

    def send_filter(self, request=None):
        n = self.host.state.n
        keep = np.ones(n, bool) if self.mask is None else self.mask
        bits = np.packbits(keep, bitorder="little")
        content = {"type": "filter", "n_points": n, "active": self.mask is not None,
                   "message": self.filter_message, "count": int(keep.sum())}
        if request is not None:
            content["request"] = request
        self._emit(content, [memoryview(bits).cast("B")])
        self._publish()

    def on_change(self):
        """Labels or predictions changed: a filter on them follows (the map dims what left it)."""
        with self._lock:
            self._follow()

    def _follow(self):
        if not self.spec or not any(self.spec.get(k) is not None for k in ("predicted", "uncertainty", "labelled")):
            return
        try:
            mask, sentence = self.compute_filter(self.spec)
        except ValueError as exc:  # e.g. predictions went away after an undo
            mask, sentence = None, f"Filter off: {exc}"
            self.spec = {}
        if (mask is None) != (self.mask is None) or (mask is not None and not np.array_equal(mask, self.mask)) \
                or sentence != self.filter_message:
            self.mask, self.filter_message = mask, sentence
            self.send_filter()

    def clear(self, request=None):
        with self._lock:
            self.results, self.source = None, ""
            self.spec, self.mask, self.filter_message = {}, None, ""
            self.send_filter(request)

    def resend(self):
        """A view opened later (`hello`): the filter and the highlighted results, grid closed."""
        if self.mask is not None:
            self.send_filter()
        if self.results is not None:
            self.show(self.results, self.source, open_grid=False)


# ---------------------------------------------------------------------- browser intents
def check_filter(content: dict, classes: list) -> dict:
    """The filter spec from a `filter` intent, validated (Intent with a sentence otherwise)."""
    spec = {}
    pred = content.get("predicted")
    if pred is not None:
        pred = pred if isinstance(pred, list) else [pred]
        spec["predicted"] = [class_from(p, classes) for p in pred] or None
    spec["uncertainty"] = _check_range(content.get("uncertainty"))
    lab = content.get("labelled")
    if lab is not None and not isinstance(lab, bool):
        raise Intent(f"labelled must be true, false or null, got {lab!r}")
    spec["labelled"] = lab
    name = content.get("name")
    if name is not None and not isinstance(name, str):
        raise Intent(f"name must be a text, got {type(name).__name__}")
    spec["name"] = name.strip() if name and name.strip() else None
    spec["duplicates"] = bool(content.get("duplicates"))
    out = content.get("outliers")
    if out not in (None, False, 0):
        spec["outliers"] = _check_k(out)
    return {k: v for k, v in spec.items() if v is not None and (k == "labelled" or v is not False)}


def _rows(content, buffers, n):
    return indices_from(content, buffers, n, "similar")


def _run(fn):
    """Engine errors (bad query, text search off, no groups) become the request's sentence."""
    try:
        return fn()
    except (ValueError, TypeError, engine.TextSearchUnavailable) as exc:
        raise Intent(str(exc)) from None


def on_search(intents, content, buffers):
    finder, text = intents.host._finder, content.get("text")
    if not isinstance(text, str) or not text.strip():
        raise Intent("type something to search for")
    k = _check_k(content.get("k", engine.DEFAULT_K))
    res = _run(lambda: finder.search(text, k, unlabelled_only=bool(content.get("unlabelled_only"))))
    finder.show(res, "search", content.get("request"))


def on_similar(intents, content, buffers):
    finder = intents.host._finder
    rows = _rows(content, buffers, intents.n)
    k = _check_k(content.get("k", engine.DEFAULT_K))
    res = _run(lambda: finder.similar(rows, k, unlabelled_only=bool(content.get("unlabelled_only"))))
    finder.show(res, "similar", content.get("request"))


def on_filter(intents, content, buffers):
    spec = check_filter(content, list(intents.host.classes))
    finder = intents.host._finder
    if finder.needs_graph_build(spec):
        what = "near-duplicates" if spec.get("duplicates") else "outliers"
        finder.in_background(what, lambda: finder.set_filter(spec), content.get("request"))
        return
    _run(lambda: finder.set_filter(spec, content.get("request")))


def on_duplicate_group(intents, content, buffers):
    """The near-duplicate group of point `index`, or group number `group` (0 = largest)."""
    finder = intents.host._finder
    if finder.needs_graph_build():
        finder.in_background("near-duplicates", lambda: _show_group(intents, content), content.get("request"))
        return
    _show_group(intents, content)


def _show_group(intents, content):
    finder = intents.host._finder
    if content.get("index") is not None:
        i = int(check_indices([content.get("index")], intents.n)[0])
        d = _run(finder.duplicates)
        g = int(d.group_of[i])
        if g < 0:
            raise Intent(f"{intents.host.point_name(i)} has no near-duplicate (cosine >= {d.threshold:g}); "
                         f"{d.message}")
    else:
        g = content.get("group", 0)
    finder.show(_run(lambda: finder.group(g)), "duplicates", content.get("request"))


def on_clear_find(intents, content, buffers):
    intents.host._finder.clear(content.get("request"))


FIND_HANDLERS = {"search": on_search, "similar": on_similar, "filter": on_filter,
                 "duplicate_group": on_duplicate_group, "clear_find": on_clear_find}


# ---------------------------------------------------------------------- the Labeller's API
class FindMixin:
    """`Labeller`'s find methods (the widget shows each result; see docs/internals.md, widget)."""

    def search(self, text: str, k: int = engine.DEFAULT_K, *, unlabelled_only: bool = False,
               show: bool = True) -> engine.SearchResult:
        """The k images closest to the text ``text`` (OpenCLIP's text tower), best first.

        Needs ``text_encoder=`` (set by ``from_folder``/``from_dataset`` with an OpenCLIP encoder);
        otherwise raises `alwidget.search.TextSearchUnavailable` saying why. With a filter on, only
        the images it keeps are searched. ``show``: highlight them on the map and open them in the
        review grid. Returns a SearchResult (``indices``, ``scores``, ``message``).
        """
        res = self._finder.search(text, k, unlabelled_only=unlabelled_only)
        return self._finder.show(res, "search") if show else res

    def similar(self, rows, k: int = engine.DEFAULT_K, *, unlabelled_only: bool = False,
                show: bool = True) -> engine.SearchResult:
        """More like this: the k images nearest the mean normalised embedding of ``rows`` (one index
        or several); the rows themselves are left out. Works with every encoder."""
        res = self._finder.similar(rows, k, unlabelled_only=unlabelled_only)
        return self._finder.show(res, "similar") if show else res

    def filter(self, *, predicted=None, uncertainty=None, labelled=None, name=None, duplicates=False,
               outliers=None):
        """Dim what is filtered out on the map; returns ((N,) bool mask kept, sentence).

        predicted: class name(s); uncertainty: (low, high) in 0..1 (1 - margin of the top two);
        labelled: True/False; name: a substring of the file name; duplicates: only near-duplicate
        groups; outliers: only the n most isolated. No argument = no filter.
        """
        content = {"predicted": predicted if predicted is None or isinstance(predicted, (list, str, int))
                   else list(predicted), "uncertainty": None if uncertainty is None else list(uncertainty),
                   "labelled": labelled, "name": name, "duplicates": duplicates, "outliers": outliers}
        try:
            spec = check_filter(content, list(self.classes))
        except Intent as exc:
            raise ValueError(str(exc)) from None
        return self._finder.set_filter(spec)

    def duplicates(self, threshold: float = engine.DUPLICATE_THRESHOLD) -> engine.Duplicates:
        """Near-duplicate groups (cosine >= threshold), largest first; `open_group(g)` labels one."""
        return self._finder.duplicates(threshold)

    def open_group(self, g: int = 0, threshold: float = engine.DUPLICATE_THRESHOLD) -> engine.SearchResult:
        """Open near-duplicate group ``g`` (0 = the largest) in the review grid, to label it at once."""
        return self._finder.show(self._finder.group(g, threshold), "duplicates")

    def outliers(self, n: int = engine.DEFAULT_K, *, show: bool = True) -> engine.SearchResult:
        """The n most isolated images (mean cosine distance to their nearest neighbours)."""
        res = engine.outliers(self.session.features, n)
        return self._finder.show(res, "outliers") if show else res

    def clear_find(self):
        """Drop the filter and the highlighted results (every point drawn as usual)."""
        self._finder.clear()
