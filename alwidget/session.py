"""Session: the labelling loop — labels in a durable store, a background learner, undo.

``label`` writes to the store (committed) and returns at once. One background thread then
retrains the probe, rescores the pool and selects the next batch; bursts of labels coalesce
(the worker always starts from the latest labels and skips the versions it missed), and an
error in the worker is reported in ``status["error"]`` instead of killing the session.

Class ids are positions in ``Session.classes`` (order of first appearance in the store);
class names are what the store keeps and what ``labels`` returns.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np

from ._util import check_features, check_k, fingerprint, limit_threads
from .monitor import TrustMonitor, state_path
from .probe import LinearProbe, remember_fingerprint
from .store import LabelStore, StoreMismatchError, check_class_name, export_dataframe

__all__ = ["Session"]


def default_threads() -> int:
    """Threads for background learning: leave a core to the kernel and the browser (1..4)."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def _select_accepts_exclude() -> bool:
    import inspect

    from . import strategies

    return "exclude" in inspect.signature(strategies.select).parameters


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
    """

    def __init__(self, features, classes=None, store=None, strategy: str = "auto", seed: int = 0,
                 device="auto", batch_size: int = 10, n_threads: int | None = None, probe_params=None):
        from . import strategies

        self._strategies = strategies
        self.features = check_features(features, "features")
        n = self.features.shape[0]
        self._strategy = self._check_strategy(strategy)
        self._batch_size = check_k(batch_size, "batch_size")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an int, got {seed!r}")
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

        self._own_store = not isinstance(store, LabelStore)
        if isinstance(store, LabelStore):
            if store.n_samples != n or (store.fingerprint and store.fingerprint != self.fingerprint):
                raise StoreMismatchError(
                    f"the LabelStore {store.path} was made for other features (n_samples={store.n_samples}, "
                    f"these have {n}); open a store made for these features or use a new one")
            self.store = store
        elif store is None or isinstance(store, (str, os.PathLike)):
            path = ":memory:" if store is None else store
            if path != ":memory:":
                path = Path(path).expanduser()
            self.store = LabelStore(path, n_samples=n, fingerprint=self.fingerprint)
        else:
            raise TypeError(f"store must be a file path, a LabelStore, ':memory:' or None, got {type(store).__name__}")
        for c in classes or []:
            self.store.add_class(c)
        # Accuracy estimate, stop hint, suspect labels (alwidget.monitor); E persists next to the store.
        self._trust = TrustMonitor(self.features, seed=self.seed, probe_params=probe_params, device=self.probe.device,
                                   path=state_path(self.store), fingerprint=self.fingerprint)

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
        self._worker = threading.Thread(target=self._run, name="alwidget-session", daemon=True)
        self._worker.start()
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
        in the background.
        """
        self._change(self.store.label_many, np.array([self._check_index(i)]), self._class_name(cls))

    def label_many(self, indices, cls) -> None:
        """Label several samples with one class, as one undoable action."""
        self._change(self.store.label_many, self._check_indices(indices), self._class_name(cls))

    def unlabel(self, indices) -> None:
        """Remove the labels of some samples (one undoable action)."""
        self._change(self.store.unlabel, self._check_indices(np.atleast_1d(indices)))

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
        """(n_samples,) int64 training labels: class ids, -1 for unlabelled and test items (a copy)."""
        return self._trust.training_labels(self.store.current_ids())

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
            labels = self.store.current_ids()
            batch = self._batch[labels[self._batch] < 0]
            current = self._done == (self._version, self._round)
            strategy, round_ = self._strategy, self._round
        if len(batch) >= k or not wait or self._in_worker() or not current:
            return batch[:k].copy()
        if (labels < 0).sum() <= len(batch):
            return batch.copy()
        # More than the background batch: select now with the current model.
        with self._model_lock, limit_threads(self.n_threads):
            idx, _ = self._select(self._trust.training_labels(labels), k, strategy, round_)
        return idx

    def predict_proba(self):
        """(n_samples, n_classes) float32 probabilities from the latest probe, or None before one exists.

        Classes that appeared after the last retrain get zero columns.
        """
        with self._cond:
            proba = self._proba
            c = len(self.store.classes)
        if proba is None:
            return None
        if proba.shape[1] < c:
            proba = np.concatenate([proba, np.zeros((proba.shape[0], c - proba.shape[1]), np.float32)], 1)
        return proba.copy()

    @property
    def status(self) -> dict:
        """A snapshot: label counts, the active strategy and why, timings, the last error."""
        with self._cond:
            labels = self.store.current_ids()
            classes = list(self.store.classes)
            counts = np.bincount(labels[labels >= 0], minlength=len(classes))
            info = {k: v for k, v in self._info.items() if k not in ("strategy", "reason")}
            return {
                "n_samples": int(self.features.shape[0]),
                "n_labels": int((labels >= 0).sum()),
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
                "store": self.store.path,
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

        The first start reserves an evaluation population E (a seeded random quarter of the
        unlabelled pool, at most 20,000, remembered next to the store file) that strategies never
        propose. Test items are labelled like any other item; their labels never train the probe.
        """
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 0:
            raise ValueError(f"every must be an integer >= 0 (training labels per test request), got {every!r}")
        with self._cond:
            self._check_open()
            self._trust.set_on(bool(on), self.store.current_ids(), every=int(every))
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
            train = self._trust.training_labels(self.store.current_ids())
            classes = list(self.store.classes)
        counts = np.bincount(train[train >= 0], minlength=len(classes))
        return self._trust.stopping(counts, classes, threshold)

    def suspect_labels(self, k: int = 20):
        """The k training labels most worth a second look: DataFrame index, label, suggested, score, ...

        Scores come from cross-validated probabilities (ActiveLab, lower first); nothing is relabelled.
        """
        k = check_k(k, "k")
        self.wait()
        with self._cond:
            train = self._trust.training_labels(self.store.current_ids())
            classes, proba = list(self.store.classes), self._proba
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
                labels = self.store.current_ids()
                train = self._trust.training_labels(labels)  # test labels never reach the probe
                n_classes = len(self.store.classes)
                k = self._batch_size + len(self._skipped)
                skipped = np.asarray(self._skipped, dtype=np.int64)
                strategy, batch_size, round_ = self._strategy, self._batch_size, self._round
                self._busy = True
            error, proba, batch, info, timings = None, None, None, None, {}
            try:
                with self._model_lock, limit_threads(self.n_threads):
                    t0 = time.perf_counter()
                    if (train >= 0).any():
                        self.probe.fit(self.features, train, n_classes=max(n_classes, int(train.max()) + 1))
                        proba = self.probe.predict_proba()
                    t1 = time.perf_counter()
                    batch, info = self._select(train, k, strategy, round_)
                    t2 = time.perf_counter()
                    if skipped.size:
                        batch = batch[~np.isin(batch, skipped)]
                    batch = self._trust.update(labels, train, proba, batch[:batch_size], n_classes, batch_size)
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

    def _select(self, labels: np.ndarray, k: int, strategy: str, round_: int):
        """(indices, info) from the strategy for these labels; empty when nothing is unlabelled.

        The probe must have been fitted on these labels (the caller holds the model lock).
        """
        exclude = self._trust.excluded()  # the evaluation population of the accuracy estimate
        n_free = int((labels < 0).sum()) - int((labels[exclude] < 0).sum())
        if n_free == 0:
            return np.zeros(0, dtype=np.int64), {"strategy": strategy, "reason": "every sample is labelled"}
        probe = self.probe if self.probe.is_fitted and (labels >= 0).any() else None
        params, want = {}, min(k, n_free)
        n_ask = want
        if exclude.size and _select_accepts_exclude():
            params["exclude"] = exclude
        elif exclude.size:  # until strategies.select takes exclude=: ask for more, drop E
            n_ask = min(int((labels < 0).sum()), int(np.ceil(want * (1 + exclude.size / n_free))) + 2)
        n_classes = len(self.store.classes)
        if n_classes >= 2 and strategy_accepts(strategy, "n_classes"):
            params["n_classes"] = n_classes  # declared classes shape ProbCover's pseudo-labels, auto's switch
        while True:
            idx, info = self._strategies.select(strategy, self.features, labels, n_ask, seed=self.seed + round_,
                                                probe=probe, return_info=True, n_threads=self.n_threads, **params)
            idx = np.asarray(idx, dtype=np.int64)
            idx = idx[~np.isin(idx, exclude)]
            if idx.size >= want or n_ask >= (labels < 0).sum():
                return idx[:want], dict(info)
            n_ask = min(int((labels < 0).sum()), 2 * n_ask)

    # ------------------------------------------------------------------ lifetime
    def _check_open(self):
        if self._closed:
            raise RuntimeError("this Session is closed; open a new one on the same store to continue")

    def close(self) -> None:
        """Stop the worker and close the store the session opened (labels are already saved)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        if not self._in_worker():
            self._worker.join(timeout=30)
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
