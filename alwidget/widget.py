"""`Labeller`: the labelling map in a notebook (an anywidget over `alwidget.Session`).

The widget is a thin shell: the Session owns labels (durable in its store), the probe and the
strategy. `alwidget.mapstate.MapState` holds what the map shows and turns each change into
messages; `alwidget.widget_intents` validates and runs what the browser asks for;
`alwidget.widget_status` words the status line. Small state travels as traitlets, per-point
arrays as binary custom messages (docs/widget-protocol.md).
"""
from __future__ import annotations

import threading
import warnings
from pathlib import Path

import anywidget
import numpy as np
import traitlets

from . import widget_sources
from ._coalesce import Coalescer
from ._util import check_features
from .items import row_items, user_items
from .mapstate import FLAG_SKIPPED, FLAG_TEST, FLAG_UNSURE
from .session import SKIP_COOLDOWN, Session
from .store import StoreMismatchError
from .storefile import default_store_path
from .widget_find import FIND_HANDLERS, Finder, FindMixin
from .widget_intents import Intents
from .widget_status import status_dict
from .widget_projection import ProjectionMixin
from .widget_trust import TrustMixin, TrustView

__all__ = ["Labeller", "default_store_path"]

_BUNDLE = Path(__file__).parent / "static" / "widget.js"
# Shown instead of the map when the front end was never built (a source checkout without npm).
_MISSING_BUNDLE = """
export default { render({ el }) {
  const p = document.createElement("pre");
  p.textContent = "alwidget: the front end bundle (alwidget/static/widget.js) is missing. " +
    "Reinstall alwidget, or build it: npm --prefix js ci && npm --prefix js run build";
  el.appendChild(p);
} };
"""
COLOR_MODES = ("label", "prediction", "uncertainty")
THUMB_SIZE = 96


def _open_session(X, items, store, name, **kw) -> Session:
    """The widget's Session: on the given store, or on the default store file for these items.

    A default file whose rows hold other data (bare arrays matched by row number) is passed
    over for the next candidate, so two different arrays never fight over one file.
    """
    if store is not None:
        if str(store) != ":memory:":
            store = str(Path(store).expanduser())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            session = Session(X, store=store, items=items, **kw)
        for line in session.notices:
            print(f"alwidget: {line}")
        return session
    for attempt in range(20):
        path = default_store_path(items, name, attempt)
        try:
            with warnings.catch_warnings():  # the notices are printed below, once
                warnings.simplefilter("ignore", UserWarning)
                session = Session(X, store=str(path), items=items, **kw)
        except StoreMismatchError:
            if not items.tolerant:
                raise
            continue
        print(f"alwidget: labels are saved in {path} ({len(session.labels)} labelled so far)")
        for line in session.notices:
            print(f"alwidget: {line}")
        return session
    raise StoreMismatchError("no default label store fits these features; pass store= a new path")


def _items_for(X, images, image_index, keys, name):
    """The item identities of the rows: user keys, the images' own identities, or row numbers."""
    source = f"features:{name}" if name else "features"
    if keys is not None:
        return user_items(keys, X.shape[0], source=source)
    if images is not None:
        return images.items().subset(image_index)
    return row_items(X, source=source)


def _check_inputs(n: int, images, coords, projection, image_index):
    """Validated (image_index int64 (n,), coords float64 (n, 2) or None)."""
    if projection not in ("umap", "preview"):
        raise ValueError(f"projection must be 'umap' or 'preview', got {projection!r}")
    image_index = np.arange(n, dtype=np.int64) if image_index is None else np.asarray(image_index, np.int64)
    if image_index.shape != (n,):
        raise ValueError(f"image_index must have shape ({n},) to match features, got {image_index.shape}")
    if images is not None:
        if not hasattr(images, "thumbnail") or not hasattr(images, "names"):
            raise TypeError("images must be an alwidget.images.ImageSet (or None), got "
                            f"{type(images).__name__}; build one with ImageSet.from_folder/from_paths/from_arrays")
        if image_index.size and (image_index.min() < 0 or image_index.max() >= len(images)):
            raise ValueError(f"images holds {len(images)} images but features has {n} rows; pass images aligned "
                             "with features, or image_index mapping each row to its image")
    if coords is not None:
        coords = np.asarray(coords, dtype=np.float64)
        if coords.shape != (n, 2) or not np.isfinite(coords).all():
            raise ValueError(f"coords must be a finite array of shape ({n}, 2) matching features, "
                             f"got shape {coords.shape}")
    return image_index, coords


def _label_state(session):
    """(label int16, flags uint8) for the map from the Session's store: unsure/skipped/test as bits."""
    st = session.store.state()
    label = np.where(st.unsure, -1, st.cls).astype(np.int16)
    skipped = (st.skip_age >= 0) & (st.skip_age < SKIP_COOLDOWN)  # set aside, not yet back
    flags = (st.unsure * FLAG_UNSURE) | (skipped * FLAG_SKIPPED) | (st.test * FLAG_TEST)
    return label, flags.astype(np.uint8)


class Labeller(FindMixin, TrustMixin, ProjectionMixin, anywidget.AnyWidget):
    """Label a set of images (or any feature vectors) on an interactive map with active learning.

    Parameters
    ----------
    features : array-like (n_samples, n_features): embeddings of the points, one per row.
    images : alwidget.images.ImageSet or None: images aligned with `features` (or `image_index`)
        for thumbnails, the gallery and names; None shows point numbers.
    coords : array-like (n_samples, 2) or None: map coordinates; None: a fast preview now and
        UMAP from a background thread (zoom and pan are kept), see `projection`.
    classes : list of str or None: class names (more can be added in the widget).
    store : str, Path or None: the SQLite file keeping every label (durable before the map shows
        it); None: a file under the alwidget cache derived from the images' identity (printed and
        shown in the widget); ":memory:" keeps labels in memory only.
    strategy, batch_size, seed, device: passed to `alwidget.Session`.
    name : str or None: data set name (default store file). projection : "umap" or "preview".
    image_index : row of `images` per feature row. height : map height in px.
    keys : list of str or None: a stable id per row for bare features (labels follow keys across
        runs and encoders); with `images`, the images' own identities are used.
    text_encoder : the OpenCLIP spec that made `features` (text search, the zero-shot start);
        `from_folder`/`from_dataset` set it for OpenCLIP encoders. text_prior : True (start from
        the class names: the map shows their zero-shot guess before any label) or a (C, D) array.
        Finding images: `search`, `similar`, `filter`, `duplicates`, `open_group`, `outliers`.
    """

    _esm = _BUNDLE if _BUNDLE.exists() else _MISSING_BUNDLE

    classes = traitlets.List(traitlets.Unicode()).tag(sync=True)
    status = traitlets.Dict().tag(sync=True)
    color_by = traitlets.Unicode("prediction").tag(sync=True)
    strategies = traitlets.List(traitlets.Unicode()).tag(sync=True)
    height = traitlets.Int(520).tag(sync=True)
    recent = traitlets.List(traitlets.Dict()).tag(sync=True)  # the last 10 answers, newest first
    find_state = traitlets.Dict().tag(sync=True)  # search box and filter line (widget_find)

    def __init__(self, features, images=None, coords=None, classes=None, store=None, strategy: str = "auto",
                 batch_size: int = 10, seed: int = 0, *, name: str | None = None, projection: str = "umap",
                 image_index=None, device: str = "auto", height: int = 520, keys=None, text_encoder=None,
                 text_prior=None, **kwargs):
        X = check_features(features)
        image_index, coords = _check_inputs(X.shape[0], images, coords, projection, image_index)
        items = _items_for(X, images, image_index, keys, name)
        self._closed = True  # close() and __del__ look at it, also on a half-built widget
        super().__init__(height=int(height), **kwargs)
        self._closed = False
        self._features, self._images = X, images
        self._lookup = widget_sources.ImageLookup(images, image_index)
        self._send_lock, self._push = threading.RLock(), Coalescer(self._push_update, lambda: not self._closed)
        self._error, self._closed_reason, self._passed = "", None, set()
        self._umap_running, self._umap_progress, self._projection, self.state = False, 0.0, None, None
        self._umap_early, self._trust = None, None
        self.session = _open_session(X, items, store, name, classes=classes, strategy=strategy, seed=seed,
                                     device=device, batch_size=batch_size, text_encoder=text_encoder,
                                     text_prior=text_prior)
        self._finder = Finder(self)
        self.find_state = self._finder.state()
        self._store_path = str(self.session.status.get("store") or "").replace(":memory:", "")
        self.classes = list(self.session.classes)
        from . import strategies as strategies_mod

        self.strategies = list(strategies_mod.available())
        self._start_map(X, coords, projection, seed)
        self._intents = Intents(self, FIND_HANDLERS)
        self._trust = TrustView(self)
        self._read_labels()
        self.on_msg(lambda _w, content, buffers: self.handle_message(content, buffers))
        self.session.subscribe(self._on_session_update)  # before the first pull: no result is missed
        with self._push.held():  # a worker result arriving meanwhile is pushed on exit
            self._refresh_model_outputs()
        self._update_recent()
        self.refresh_status()

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_folder(cls, path, classes=None, encoder=None, store=None, **kwargs) -> "Labeller":
        """Embed the images in a folder (recursively) and open them on the map.

        Unreadable files are skipped and reported. `encoder`: an `alwidget.embed` spec (None:
        `embed.DEFAULT_ENCODER`, OpenCLIP ViT-B-32). Other keyword arguments go to `Labeller`
        (and `cache_dir`, `progress`, `embed_batch_size` to `alwidget.embed.embed_images`).
        """
        return widget_sources.open_folder(cls, path, classes, encoder, store, kwargs)

    @classmethod
    def from_dataset(cls, dataset_or_name="demo", classes=None, encoder=None, store=None, **kwargs) -> "Labeller":
        """Open a bundled data set ("demo", "digits", "fashion_mnist") or an `alwidget.datasets.Dataset`.

        Its own labels are not given to the widget (you label); its class names are the classes
        unless `classes` is given. `encoder` defaults to `embed.DEMO_ENCODER` (offline).
        """
        return widget_sources.open_dataset(cls, dataset_or_name, classes, encoder, store, kwargs)

    # ------------------------------------------------------------------ user API
    @property
    def labels(self) -> dict:
        """The current labels: {point index: class name} (read from the Session's store)."""
        return dict(self.session.labels)

    @property
    def batch(self) -> np.ndarray:
        """Indices of the batch shown on the map (stable order), int64."""
        return self.state.batch.copy()

    @property
    def store_path(self) -> str:
        """Path of the store file ("" when labels are kept in memory)."""
        return self._store_path

    @property
    def closed_reason(self) -> str | None:
        """Why this widget stopped working (a newer widget took over its store), or None."""
        return self._closed_reason

    def to_dataframe(self):
        """One row per point: index, name, label, prediction, confidence (a pandas DataFrame)."""
        return self.state.dataframe(list(self.classes), [self.point_name(i) for i in range(self.state.n)])

    def export(self, path) -> Path:
        """Write `to_dataframe()` to `path` (.csv or .parquet); returns the path.

        Refuses (and leaves the file alone) when nothing is labelled and `path` already holds data.
        """
        from .store_view import export_dataframe

        df = self.to_dataframe()
        return export_dataframe(df if df["label"].notna().any() else df.iloc[:0], path)

    def close(self):
        """Close the widget and its Session (the store already holds every label)."""
        if not getattr(self, "_closed", True):
            self._closed = True
            if getattr(self, "_trust", None) is not None:
                self._trust.close()
            if getattr(self, "_projection", None) is not None:
                self._projection.cancel()
            session = getattr(self, "session", None)  # None when the constructor failed
            if session is not None:
                session.unsubscribe(self._on_session_update)
                session.close()
        super().close()

    def handle_message(self, content, buffers=()) -> None:
        """Run one front-end message (the handler the browser's messages reach); never raises."""
        self._intents.handle(content, buffers)

    # ------------------------------------------------------------------ host of the intents
    def emit(self, content: dict, buffers: list):
        """The one place messages leave for the browser (tests replace it to record them)."""
        if self.comm is not None:
            self.send(content, buffers)

    def emit_all(self, messages):
        for content, buffers in messages:
            self.emit(content, buffers)

    def send_full_state(self):
        with self._send_lock:
            self.emit_all(self.state.full_message())
            self._finder.resend()

    def _read_labels(self) -> np.ndarray:
        """Pull labels and flags from the store into the map state; the indices that changed."""
        label, flags = _label_state(self.session)
        if self.classes != list(self.session.classes):
            self.classes = list(self.session.classes)
        return self.state.set_labels(label, flags)

    def after_change(self, request=None):
        """After a store write: label deltas to the browser (before any retraining)."""
        with self._send_lock:
            self._passed.clear()  # passed-over suggestions may come back once something is answered
            self.emit_all(self.state.labels_message(self._read_labels(), request))
        self._finder.on_change()
        self._update_recent()
        self.refresh_status()

    def ask_fresh_batch(self):
        """Pass over the shown batch: the slots empty now, the worker's next picks fill them."""
        with self._send_lock:
            self._passed |= set(self.state.batch.tolist())
            self.state.batch = np.zeros(0, np.int64)
            self.emit_all(self.state.arrays_message(["batch"]))
        self.session.next_batch(refresh=True, wait=False)
        self.refresh_status()

    def point_name(self, i: int) -> str:
        return self._lookup.name(i)

    def thumbnail(self, i: int):  # JPEG bytes or None
        return self._lookup.thumbnail(i, THUMB_SIZE)

    def set_error(self, text: str, update: bool = True):
        self._error = text
        if update:
            self.refresh_status()

    def _update_recent(self):
        try:
            self.recent = [dict(d, name=self.point_name(d["index"]), time=float(d.get("time") or 0))
                           for d in self.session.recent(10)]
        except Exception as exc:  # a closed store: keep the strip as it was
            self._error = self._error or f"recent labels unavailable: {exc}"

    def refresh_status(self, busy: bool | None = None):
        try:
            st = dict(self.session.status)
        except Exception as exc:  # status must never take the widget down
            st = {"error": f"{type(exc).__name__}: {exc}"}
        status = status_dict(
            st, self.state, list(self.classes), coords=self._coords_kind, umap_running=self._umap_running,
            umap_progress=self._umap_progress,
            error=self._closed_reason or self._error or str(st.get("error") or ""),
            store=self._store_path, closed_reason=self._closed_reason, busy=busy)
        self.status = self._trust.status(status) if self._trust is not None else status  # + the model check

    # ------------------------------------------------------------------ background updates
    def _refresh_model_outputs(self):
        """Pull predictions and the suggested batch from the Session and push what changed."""
        train = self.session.label_array()
        two_classes = np.unique(train[train >= 0]).size >= 2  # one class: every prediction is that class
        guess = self.session.prior is not None  # a text prior: the zero-shot guess colours the map at once
        # Huge pools publish the batch before the scores: skip re-reading (and copying) unchanged ones.
        model = (self.session.proba_version, two_classes or guess)
        fresh = model != self.state.model_key
        proba = self.session.predict_proba() if fresh and model[1] else None
        suggested = [int(i) for i in self.session.next_batch(wait=False) if int(i) not in self._passed]
        with self._send_lock:
            names = []
            changed = self._read_labels()
            if changed.size:
                self.emit_all(self.state.labels_message(changed))
            if fresh:
                self.state.model_key = model
            if fresh and self.state.set_model(proba):
                names += ["pred", "uncert"]
            if self.state.set_batch(suggested, self.session.batch_size):
                names.append("batch")
            if names:
                self.emit_all(self.state.arrays_message(names))

    def _on_session_update(self, *args):
        """Called from the Session's worker after each rescore (and once when it is closed)."""
        if getattr(self.session, "closed", False):
            self._closed_reason = self.session.closed_reason or "the session was closed"
            self.refresh_status(busy=False)
        else:
            self._push.request()  # bursts of rescores coalesce into one push

    def _push_update(self):
        try:
            self._refresh_model_outputs()
            self._finder.on_change()
            self.refresh_status(busy=False)  # the Session still counts itself busy while it calls us
        except Exception as exc:
            self.set_error(f"updating the map failed: {type(exc).__name__}: {exc}")

    @traitlets.validate("color_by")
    def _valid_color_by(self, proposal):
        if proposal["value"] not in COLOR_MODES:
            raise traitlets.TraitError(f"color_by must be one of {COLOR_MODES}, got {proposal['value']!r}")
        return proposal["value"]

    def __repr__(self):
        return (f"Labeller({self.state.n} points, {len(self.classes)} classes, "
                f"{int((self.state.label >= 0).sum())} labelled, store={self._store_path or ':memory:'!r})")
