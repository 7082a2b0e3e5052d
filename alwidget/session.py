"""Session: the labelling loop — labels in a durable store, a background learner, undo.

``label`` writes to the store (committed) and returns at once. One background thread then
retrains the probe, rescores the pool and selects the next batch; bursts of labels coalesce
(the worker always starts from the latest labels and skips the versions it missed), and an
error in the worker is reported in ``status["error"]`` instead of killing the session.

Class ids are positions in ``Session.classes`` (order of first appearance in the store);
class names are what the store keeps and what ``labels`` returns.
"""
from __future__ import annotations

import atexit
import inspect
import os
import threading
import time
import warnings
import weakref
from pathlib import Path

import numpy as np

from ._util import check_features, check_k, fingerprint, limit_threads
from .items import Items, row_items, user_items
from .monitor import TrustMonitor, state_path
from .prior import session_prior
from .probe import LinearProbe, remember_fingerprint
from .store import LabelStore, StoreClosedError, StoreMismatchError, check_class_name, export_dataframe
from .store_view import open_notices

__all__ = ["Session"]

#: Answers after which a skipped item may be suggested again.
SKIP_COOLDOWN = 20

_LIVE_SESSIONS: "weakref.WeakSet[Session]" = weakref.WeakSet()


def _close_all():
    """Stop every worker before the interpreter tears down (a busy torch thread aborts it otherwise)."""
    for s in list(_LIVE_SESSIONS):
        try:
            s.close()
        except Exception:
            pass


# threading's exit hook runs before atexit handlers, while torch and numpy are still intact.
try:
    threading._register_atexit(_close_all)
except (AttributeError, RuntimeError):  # pragma: no cover - other interpreters
    atexit.register(_close_all)


def default_threads() -> int:
    """Threads for background learning: the package's one policy (usable CPUs - 1, 1..4, at
    most $OMP_NUM_THREADS; see alwidget._util.default_threads)."""
    from ._util import default_threads as policy

    return policy()


def strategy_accepts(strategy: str, param: str) -> bool:
    """Whether ``strategies.select(strategy, ..., **{param: ...})`` accepts the parameter."""
    from . import strategies
    from .strategies import _common

    if strategy == "auto":
        return param in strategies.auto.auto_params()
    accepted = _common.REGISTRY[strategy].params
    return accepted is None or param in accepted


class Session:
    """Active-learning session over a fixed feature set.

    Parameters
    ----------
    features : array (n_samples, n_features)
        The pool (e.g. image embeddings); finite values only.
    classes : list of str, optional
        Class names known up front (more may appear with any label).
    store : str, Path, LabelStore, ":memory:" or None
        Where labels live. A path opens (or creates) a store file; reopening restores the labels
        and the undo history. None keeps labels in memory only.
    strategy : str
        A name from ``alwidget.strategies.available()``; "auto" switches from a cold-start
        strategy to DropQuery when the probe has enough labels per class.
    seed : int
        Seeds the probe and every selection.
    device : "auto", "cpu", "cuda"
        Where the probe trains and scores.
    batch_size : int
        Size of the suggested batch.
    n_threads : int, optional
        Torch/BLAS threads of the background worker (default: cores - 1, at most 4).
    probe_params : dict, optional
        Extra arguments for :class:`alwidget.probe.LinearProbe` (``l2``, ``input_dropout``...).
    keys : list of str, optional
        A stable id per row (file names, database ids): labels follow keys, so the same store
        reopens on re-computed, reordered, extended or re-encoded features. Without keys rows are
        matched by number, with a content check that tolerates float noise.
    items : alwidget.items.Items, optional
        Row identities built by an image source (``ImageSet.items()``); overrides ``keys``.
    text_prior : None, True, (C, D) array or alwidget.prior.TextPrior
        A zero-shot start from the class names (see alwidget.prior): True embeds ``classes`` with
        ``text_encoder``; an array gives one text embedding per name in ``classes``. Until labels
        arrive ``predict_proba()`` is the zero-shot guess (``status["guess"]``), the probe is anchored
        to the prior, and batches are class-balanced while classes are scarce.
    text_encoder : str, alwidget.embed.Encoder or callable, optional
        The OpenCLIP spec that made ``features`` (its text tower serves text search and the prior).
    """

    def __init__(self, features, classes=None, store=None, strategy: str = "auto", seed: int = 0,
                 device="auto", batch_size: int = 10, n_threads: int | None = None, probe_params=None,
                 *, keys=None, items: Items | None = None, text_prior=None, text_encoder=None):
        from . import strategies

        self._strategies = strategies
        self._closed = True  # close() on a half-built session does nothing
        self.features = check_features(features, "features")
        n = self.features.shape[0]
        self._strategy = self._check_strategy(strategy)
        self._batch_size = check_k(batch_size, "batch_size")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an int, got {seed!r}")
        if seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed}")
        self.seed = int(seed)
        self.n_threads = default_threads() if n_threads is None else check_k(n_threads, "n_threads")
        if classes is not None:
            if isinstance(classes, str) or not hasattr(classes, "__iter__"):
                raise TypeError(f"classes must be a list of class names, got {classes!r}")
            classes = [check_class_name(c) for c in classes]
            if len(set(classes)) != len(classes):
                raise ValueError(f"classes contains duplicates: {classes}")
        self.probe = LinearProbe(device=device, seed=self.seed, **(probe_params or {}))
        self.fingerprint = fingerprint(self.features)
        remember_fingerprint(self.features, self.fingerprint)  # the probe need not hash it again

        if items is None:
            items = row_items(self.features) if keys is None else user_items(keys, n)
        elif not isinstance(items, Items):
            raise TypeError(f"items must be an alwidget.items.Items, got {type(items).__name__}")
        if len(items) != n:
            raise ValueError(f"items has {len(items)} entries but features has {n} rows")
        self.items = items
        self._own_store = not isinstance(store, LabelStore)
        if isinstance(store, LabelStore):
            if store.n_samples != n:
                raise StoreMismatchError(
                    f"the LabelStore {store.path} is a view of {store.n_samples} items and these features have "
                    f"{n} rows; open the store with these rows' items, or pass a path")
            self.store = store
        elif store is None or isinstance(store, (str, os.PathLike)):
            path = ":memory:" if store is None or str(store) == ":memory:" else Path(store).expanduser()
            self.store = LabelStore(path, items)
        else:
            raise TypeError(f"store must be a file path, a LabelStore, ':memory:' or None, got {type(store).__name__}")
        try:
            for c in classes or []:
                self.store.add_class(c)
            self.text_encoder = text_encoder
            self.prior = session_prior(text_prior, text_encoder, classes or self.classes, self.features.shape[1])
            if self.prior is not None:  # the probe anchored to the class names (alwidget.prior)
                self.probe = self.prior.make_probe(lambda: self.classes, device=device, seed=self.seed,
                                                   **(probe_params or {}))
        except BaseException:
            if self._own_store:
                self.store.close()
            raise
        self.notices = open_notices(self.store)
        for line in self.notices:
            warnings.warn(line, UserWarning, stacklevel=2)
        self.closed_reason: str | None = None
        # Accuracy estimate, stop hint, suspect labels (alwidget.monitor); E persists next to the store.
        self._trust = TrustMonitor(self.features, keys=items.keys, seed=self.seed, probe_params=probe_params,
                                   device=self.probe.device, path=state_path(self.store))

        # Shared state: written under _cond by label()/undo() and by the worker.
        self._cond = threading.Condition(threading.RLock())
        self._model_lock = threading.Lock()  # held while the probe trains, scores and selects
        self._version = 0  # bumps on every label change or strategy/batch change
        self._round = 0  # bumps on next_batch(refresh=True)
        self._skipped: list[int] = []  # suggestions passed over by refresh since the last label
        self._done = None  # (version, round) the published results belong to
        self._busy = False
        self._proba = None
        self._batch = np.zeros(0, dtype=np.int64)
        self._info: dict = {}
        self._timings: dict = {}
        self._error: str | None = None
        self._last_update: float | None = None
        self._subscribers: list = []
        self._closed = False
        self.store.on_close(self._on_store_closed)
        self._worker = threading.Thread(target=self._run, name="alwidget-session", daemon=True)
        self._worker.start()
        _LIVE_SESSIONS.add(self)
        self._kick()

    # ------------------------------------------------------------------ validation
    def _check_strategy(self, name) -> str:
        if not isinstance(name, str):
            raise TypeError(f"strategy must be a name (str), got {type(name).__name__}")
        names = self._strategies.available()
        if name not in names:
            raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(names)}")
        return name

    def _check_index(self, i) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"index must be an int (a row of features), got {type(i).__name__} {i!r}")
        n = self.features.shape[0]
        if not 0 <= i < n:
            raise ValueError(f"index {i} is out of range for {n} samples (valid: 0..{n - 1})")
        return int(i)

    def _check_indices(self, indices) -> np.ndarray:
        if isinstance(indices, (str, bytes)) or not hasattr(indices, "__len__"):
            raise TypeError(f"indices must be a list or array of ints, got {type(indices).__name__}")
        arr = np.asarray(indices)
        if arr.ndim != 1:
            raise ValueError(f"indices must be 1-D, got shape {arr.shape}")
        if arr.size == 0:
            raise ValueError("indices is empty; pass at least one index")
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"indices must be integers, got dtype {arr.dtype}")
        n = self.features.shape[0]
        bad = arr[(arr < 0) | (arr >= n)]
        if bad.size:
            raise ValueError(f"index {int(bad[0])} is out of range for {n} samples (valid: 0..{n - 1})")
        return arr.astype(np.int64)

    def _class_name(self, cls) -> str:
        if isinstance(cls, bool):
            raise TypeError("cls must be a class name (str) or a class id (int), got a bool")
        if isinstance(cls, (int, np.integer)):
            classes = self.store.classes
            if not 0 <= cls < len(classes):
                raise ValueError(f"class id {int(cls)} is unknown ({len(classes)} classes: {classes}); "
                                 "pass a class name to create a new class")
            return classes[int(cls)]
        if isinstance(cls, str):
            return check_class_name(cls)
        raise TypeError(f"cls must be a class name (str) or a class id (int), got {type(cls).__name__} {cls!r}")

    # ------------------------------------------------------------------ labelling
    def label(self, i, cls) -> None:
        """Label sample ``i`` as ``cls`` (a name — new names create classes — or a class id).

        The label is committed to the store before this returns; retraining happens later
        in the background. A test request (``check_model``) is stored as a test label.
        """
        self._label_rows(np.array([self._check_index(i)]), self._class_name(cls))

    def label_many(self, indices, cls) -> None:
        """Label several samples with one class, as one undoable action (test requests among them: a second)."""
        self._label_rows(self._check_indices(indices), self._class_name(cls))

    def _label_rows(self, rows, name):
        test = self._trust.is_test(rows)  # requested test items keep the role "test": never trained on
        for part, role in ((rows[~test], "train"), (rows[test], "test")):
            if part.size:
                self._change(lambda r, n, role=role: self.store.label_many(r, n, role=role), part, name)

    def unlabel(self, indices) -> None:
        """Remove the labels of some samples (one undoable action)."""
        self._change(self.store.unlabel, self._check_indices(np.atleast_1d(indices)))

    def mark_unsure(self, indices) -> None:
        """Answer "unsure" (kept in the store and listed in ``unsure``, never trained on)."""
        self._change(self.store.mark_unsure, self._check_indices(np.atleast_1d(indices)))

    def skip(self, indices) -> None:
        """Set samples aside: not suggested again until ``SKIP_COOLDOWN`` more answers (undoable)."""
        self._change(self.store.skip, self._check_indices(np.atleast_1d(indices)))

    @property
    def unsure(self) -> list[int]:
        """Rows answered "unsure", in row order."""
        return np.flatnonzero(self.store.state().unsure).tolist()

    def recent(self, n: int = 10) -> list[dict]:
        """The newest ``n`` answers: [{index, label (name or None), unsure, test, time}], newest first."""
        return self.store.recent(check_k(n, "n"))

    def _change(self, write, *args):
        with self._cond:
            self._check_open()
            write(*args)  # durable first
            self._version += 1
            self._skipped = []
            self._cond.notify_all()

    def undo(self):
        """Revert the last label action. Returns {index: class name or None} it restored, or None."""
        with self._cond:
            self._check_open()
            changed = self.store.undo()
            if changed is not None:
                self._version += 1
                self._skipped = []
                self._cond.notify_all()
            return changed

    def add_class(self, name) -> int:
        """Register a class name without labelling anything; returns its class id."""
        with self._cond:
            self._check_open()
            return self.store.add_class(name)

    @property
    def classes(self) -> list[str]:
        """Class names; a class id is a position in this list."""
        return list(self.store.classes)

    @property
    def labels(self) -> dict[int, str]:
        """The current labels: {sample index: class name}."""
        return self.store.current()

    def label_array(self) -> np.ndarray:
        """(n_samples,) int64 training labels: class ids, -1 otherwise (unlabelled, unsure, test); a copy."""
        return self._training(self.store.state())

    def _training(self, st) -> np.ndarray:
        return np.where(st.test, -1, self._trust.training_labels(st.cls, st.unsure))

    def _skipped_rows(self, st) -> np.ndarray:
        return np.flatnonzero((st.skip_age >= 0) & (st.skip_age < SKIP_COOLDOWN))

    def _excluded(self, st) -> np.ndarray:
        """Rows a strategy must not suggest: unsure, recently skipped, test-labelled, the evaluation set E."""
        return np.union1d(np.flatnonzero(st.unsure | st.test), np.union1d(self._skipped_rows(st),
                                                                         self._trust.excluded()))

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ settings
    @property
    def strategy(self) -> str:
        return self._strategy

    @strategy.setter
    def strategy(self, name):
        name = self._check_strategy(name)
        with self._cond:
            if name != self._strategy:
                self._strategy = name
                self._version += 1
                self._cond.notify_all()

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @batch_size.setter
    def batch_size(self, k):
        k = check_k(k, "batch_size")
        with self._cond:
            if k != self._batch_size:
                self._batch_size = k
                self._version += 1
                self._cond.notify_all()

    # ------------------------------------------------------------------ results
    def _in_worker(self) -> bool:
        return threading.current_thread() is self._worker

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the background retrain/rescore/select reflects the latest labels.

        Returns True when caught up, False on timeout. Subscribers have been called by then.
        Returns at once when called from a subscriber (the worker thread).
        """
        if self._in_worker():
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._closed and (self._busy or self._done != (self._version, self._round)):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def next_batch(self, k: int | None = None, *, refresh: bool = False, wait: bool = True) -> np.ndarray:
        """Indices (int64) of the batch the strategy suggests labelling next.

        k : batch size (default ``batch_size``); a larger k than the background batch is
            selected on the spot.
        refresh : pass over the current suggestions and ask for different ones (they come back
            once something is labelled).
        wait : wait for the background worker first (default). With False (or when called from
            a subscriber) the latest batch is returned at once, minus samples labelled since.
        """
        k = self._batch_size if k is None else check_k(k, "k")
        if refresh:
            with self._cond:
                self._skipped = sorted(set(self._skipped) | set(self._batch.tolist()))
                self._round += 1
                self._cond.notify_all()
        if wait and not self._in_worker():
            self.wait()
        with self._cond:
            st = self.store.state()
            labels = self._training(st)
            free = (st.cls < 0) & ~st.unsure
            batch = self._batch[free[self._batch]]
            current = self._done == (self._version, self._round)
            strategy, round_ = self._strategy, self._round
        if len(batch) >= k or not wait or self._in_worker() or not current:
            return batch[:k].copy()
        if free.sum() <= len(batch):
            return batch.copy()
        # More than the background batch: select now with the current model.
        with self._model_lock, limit_threads(self.n_threads):
            idx, _ = self._select(labels, k, strategy, round_, self._excluded(st))
        return idx

    def predict_proba(self):
        """(n_samples, n_classes) float32 probabilities from the latest probe, or None before one exists.

        Classes that appeared after the last retrain get zero columns.
        """
        with self._cond:
            proba = self._proba
            c = len(self.store.classes)
        if proba is None and self.prior is not None:  # before any label: the zero-shot guess
            proba = self.prior.zero_shot(self.features, self.classes)
        if proba is None:
            return None
        if proba.shape[1] < c:
            proba = np.concatenate([proba, np.zeros((proba.shape[0], c - proba.shape[1]), np.float32)], 1)
        return proba.copy()

    @property
    def status(self) -> dict:
        """A snapshot: label counts, the active strategy and why, timings, the last error."""
        with self._cond:
            st = self.store.state()
            labels = np.where(st.test, -1, st.cls)
            classes = list(self.store.classes)
            counts = np.bincount(labels[labels >= 0], minlength=len(classes))
            info = {k: v for k, v in self._info.items() if k not in ("strategy", "reason")}
            return {
                "n_samples": int(self.features.shape[0]),
                "n_labels": int((labels >= 0).sum()),
                "n_unsure": int(st.unsure.sum()),
                "n_test": int(st.test.sum()),
                "counts": {c: int(counts[j]) for j, c in enumerate(classes)},
                "classes": classes,
                "strategy": self._strategy,
                "active_strategy": self._info.get("strategy"),
                "reason": self._info.get("reason"),
                "strategy_info": info,
                "batch_size": self._batch_size,
                "busy": self._busy or self._done != (self._version, self._round),
                "labels_version": self._version,
                "last_retrain_ms": self._timings.get("retrain_ms"),
                "last_select_ms": self._timings.get("select_ms"),
                "last_update_ms": self._timings.get("total_ms"),
                "last_update": self._last_update,
                "error": self._error,
                "can_undo": self.store.can_undo,
                "device": str(self.probe.device),
                "store": "" if self.store.path == ":memory:" else self.store.path,
                "closed_reason": self.closed_reason,
                "notices": list(self.notices),
                "guess": self.prior is not None and self.prior.is_guess(counts),
                "prior": None if self.prior is None else self.prior.status(self.probe, counts),
            }

    def subscribe(self, callback) -> None:
        """Call ``callback(session)`` from the worker thread after each retrain/rescore/select."""
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        with self._cond:
            self._subscribers.append(callback)

    def unsubscribe(self, callback) -> None:
        """Stop calling ``callback`` (no error if it was not subscribed)."""
        with self._cond:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

    # ------------------------------------------------------------------ know when you are done
    @property
    def trust(self) -> TrustMonitor:
        """The monitor behind the methods below (history, evaluation and test rows for a panel)."""
        return self._trust

    def check_model(self, on: bool = True, *, every: int = 5) -> None:
        """Start (or stop) interleaving test requests: 1 per ``every`` training labels (0: only tests).

        The first start reserves an evaluation set E (a seeded random quarter of the unlabelled
        items, at most 20,000, remembered next to the store file) that strategies never propose.
        Test items are labelled like any other; they are stored as test labels and never train.
        """
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 0:
            raise ValueError(f"every must be an integer >= 0 (training labels per test request), got {every!r}")
        with self._cond:
            self._check_open()
            st = self.store.state()
            self._trust.set_on(bool(on), st.cls, every=int(every), unsure=st.unsure)
            self._version += 1
            self._cond.notify_all()

    def accuracy_estimate(self) -> dict:
        """The current probe's estimated accuracy on E: {"estimate", "low", "high", "n_test", "method", ...}.

        LURE-weighted test labels with a 95 % interval (None below 10 test labels); also
        ``sentence`` (ready to display), ``on``, ``pending`` and ``restarts``.
        """
        self.wait()
        return self._trust.accuracy_estimate()

    def stopping(self, threshold: float = 0.99) -> dict:
        """Stop hint: {"stable", "kappa", "n_checkpoints", "threshold", "sentence"} (stabilising predictions)."""
        self.wait()
        with self._cond:
            train, classes = self._training(self.store.state()), list(self.store.classes)
        return self._trust.stopping(np.bincount(train[train >= 0], minlength=len(classes)), classes, threshold)

    def suspect_labels(self, k: int = 20):
        """The k training labels most worth a second look: DataFrame index, label, suggested, score, ...

        Scores come from cross-validated probabilities (ActiveLab, lower first); nothing is relabelled.
        """
        k = check_k(k, "k")
        self.wait()
        with self._cond:
            train, classes, proba = self._training(self.store.state()), list(self.store.classes), self._proba
        with limit_threads(self.n_threads):
            return self._trust.suspects(train, proba, classes, self._batch_size).head(k).reset_index(drop=True)

    # ------------------------------------------------------------------ export
    def to_dataframe(self, names=None):
        """Current labels: columns index, label, labelled_at [, name] (see LabelStore.to_dataframe)."""
        return self.store.to_dataframe(names)

    def export(self, path, names=None) -> Path:
        """Write the current labels to CSV or parquet, chosen by the suffix of ``path``."""
        return export_dataframe(self.to_dataframe(names), path)

    # ------------------------------------------------------------------ the worker
    def _kick(self):
        with self._cond:
            self._cond.notify_all()

    def _run(self):
        while True:
            with self._cond:
                while not self._closed and self._done == (self._version, self._round):
                    self._cond.wait()
                if self._closed:
                    return
                target = (self._version, self._round)
                st = self.store.state()
                labels = self._training(st)  # test labels never reach the probe
                exclude = self._excluded(st)
                n_classes = len(self.store.classes)
                k = self._batch_size + len(self._skipped)
                skipped = np.asarray(self._skipped, dtype=np.int64)
                strategy, batch_size, round_ = self._strategy, self._batch_size, self._round
                self._busy = True
            error, proba, batch, info, timings = None, None, None, None, {}
            try:
                with self._model_lock, limit_threads(self.n_threads):
                    t0 = time.perf_counter()
                    if (labels >= 0).any():
                        self.probe.fit(self.features, labels, n_classes=max(n_classes, int(labels.max()) + 1))
                        proba = self.probe.predict_proba()
                    t1 = time.perf_counter()
                    if self._closed:
                        return
                    batch, info = self._select(labels, k, strategy, round_, exclude)
                    t2 = time.perf_counter()
                    if skipped.size:
                        batch = batch[~np.isin(batch, skipped)]
                    batch = self._trust.update(st.cls, labels, proba, batch[:batch_size], n_classes, batch_size,
                                               hold=np.union1d(skipped, self._skipped_rows(st)))
                    t3 = time.perf_counter()
                timings = {"retrain_ms": 1e3 * (t1 - t0), "select_ms": 1e3 * (t2 - t1), "trust_ms": 1e3 * (t3 - t2),
                           "total_ms": 1e3 * (t3 - t0)}
            except Exception as exc:  # reported, never fatal
                error = f"{type(exc).__name__}: {exc}"
            with self._cond:
                if error is None:
                    self._proba = proba
                    self._batch = batch
                    self._info = info
                    self._timings = timings
                    self._last_update = time.time()
                self._error = error
                subscribers = list(self._subscribers)
            for cb in subscribers:
                try:
                    cb(self)
                except Exception as exc:
                    with self._cond:
                        self._error = f"subscriber {getattr(cb, '__name__', cb)!r} failed: {type(exc).__name__}: {exc}"
            with self._cond:
                self._done = target
                self._busy = False
                self._cond.notify_all()

    def _select(self, labels: np.ndarray, k: int, strategy: str, round_: int, exclude=None):
        """(indices, info) from the strategy for these labels; empty when nothing is unlabelled.

        The probe must have been fitted on these labels (the caller holds the model lock).
        ``exclude``: unlabelled rows never to return (unsure, skipped, test items).
        """
        exclude = np.zeros(0, dtype=np.int64) if exclude is None else np.asarray(exclude, dtype=np.int64)
        exclude = exclude[labels[exclude] < 0]
        n_free = int((labels < 0).sum())
        if n_free - exclude.size <= 0:
            exclude = np.zeros(0, dtype=np.int64)  # only set-aside items are left: offer them again
        if n_free == 0:
            return np.zeros(0, dtype=np.int64), {"strategy": strategy, "reason": "every sample is labelled"}
        probe = self.probe if self.probe.is_fitted and (labels >= 0).any() else None
        params = {}
        n_classes = len(self.store.classes)
        if n_classes >= 2 and strategy_accepts(strategy, "n_classes"):
            params["n_classes"] = n_classes  # declared classes shape ProbCover's pseudo-labels, auto's switch
        want = min(k, n_free - exclude.size)
        select = self._strategies.select
        if self.prior is not None:  # class-balanced (PCB) while classes are scarce
            select = self.prior.selector(select, labels, self.classes, self.features, probe)
        idx, info = select(strategy, self.features, labels, want, seed=self.seed, exclude=exclude,
                           probe=probe, return_info=True, n_threads=self.n_threads, **params)
        idx = np.asarray(idx, dtype=np.int64)
        if exclude.size:
            idx = idx[~np.isin(idx, exclude)]
        return idx[:k], dict(info)

    # ------------------------------------------------------------------ lifetime
    def _check_open(self):
        if self._closed:
            raise StoreClosedError(self.closed_reason or
                                   "this Session is closed; open a new one on the same store to continue")

    def _on_store_closed(self, reason):
        """The store was closed under us (a newer session took it over): stop, and tell subscribers."""
        if reason is None or self._closed:
            return
        self.closed_reason = f"this session was closed: {reason}"
        self._stop()
        for cb in list(self._subscribers):
            try:
                cb(self)
            except Exception:
                pass

    def _stop(self):
        with self._cond:
            if self._closed:
                return False
            self._closed = True
            self._cond.notify_all()
        _LIVE_SESSIONS.discard(self)
        if not self._in_worker():
            self._worker.join(timeout=60)
        return True

    def close(self) -> None:
        """Stop the worker and close the store the session opened (labels are already saved)."""
        if not getattr(self, "_cond", None):
            return
        self._stop()
        if self._own_store:
            self.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        n, d = self.features.shape
        return (f"Session(n_samples={n}, n_features={d}, labels={self.store.n_labelled}, "
                f"classes={len(self.store.classes)}, strategy={self._strategy!r}, store={self.store.path!r})")
