"""Session: the labelling loop — labels in a durable store, a background learner, undo.

``label`` writes to the store (committed) and returns at once. One background thread then
retrains the probe, rescores the pool and selects the next batch (``alwidget.learner``): bursts
of labels coalesce, and an error in the worker is reported in ``status["error"]`` instead of
killing the session.

Class ids are positions in ``Session.classes`` (order of first appearance in the store);
class names are what the store keeps and what ``labels`` returns.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

# default_threads: the package's one thread policy for background learning, re-exported here.
from ._util import (BackgroundFingerprint, check_features, check_index, check_indices, check_k,  # noqa: F401
                    check_seed, default_threads, limit_threads)
from .items import Items, pool_items
from .learner import Learner, strategy_accepts
from .monitor import TrustMonitor, state_path
from .prior import session_prior
from .probe import LinearProbe, remember_fingerprint
from .store import LabelStore, StoreClosedError, StoreMismatchError, check_class_name, export_dataframe
from .store_args import check_class_names
from .store_view import open_notices

__all__ = ["Session", "strategy_accepts"]

#: Answers after which a skipped item may be suggested again.
SKIP_COOLDOWN = 20


def _open_store(store, items: Items) -> LabelStore:
    """The LabelStore a Session was given, or the one its path (None: in memory) opens for these items."""
    n = len(items)
    if isinstance(store, LabelStore):
        if store.n_samples != n:
            raise StoreMismatchError(
                f"the LabelStore {store.path} is a view of {store.n_samples} items and these features have "
                f"{n} rows; open the store with these rows' items, or pass a path")
        return store
    if store is None or isinstance(store, (str, os.PathLike)):
        path = ":memory:" if store is None or str(store) == ":memory:" else Path(store).expanduser()
        return LabelStore(path, items)
    raise TypeError(f"store must be a file path, a LabelStore, ':memory:' or None, got {type(store).__name__}")


class Session(Learner):
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
        A name from ``alwidget.strategies.available()``; "auto" starts with ProbCover or
        TypiClust (chosen from the pool's shape) and switches to margin at 5 labels per class.
    seed : int
        Seeds everything random in the session, so the same seed and labels give the same
        batches: the probe (initialisation, input dropout); each round's choices (tie-breaks,
        random fills, dropout masks, DropQuery's k-means: ``strategies.round_seed(seed, labels)``);
        the clusterings kept for the whole session (``geometry_seed``: TypiClust's k-means,
        ProbCover's pseudo-labels and delta, auto's choice of cold start, the cold start's
        subsample of huge pools), as in the benchmarked runs (``alwidget.simulate``); and the
        accuracy check's test set and draws. Another seed gives other clusterings, so other
        first batches.
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
        self._strategy = self._check_strategy(strategy)
        self._batch_size = check_k(batch_size, "batch_size")
        self.seed = check_seed(seed)
        self.n_threads = default_threads() if n_threads is None else check_k(n_threads, "n_threads")
        classes = check_class_names(classes)
        # The content hash (one sequential pass, 3 s at 1M x 512) runs in a second thread while the
        # probe (torch's import), the 1M item keys and the store are built (Session() 4.9 -> 2.9 s at 1M).
        hashing = BackgroundFingerprint(self.features)
        try:
            self.probe = LinearProbe(device=device, seed=self.seed, **(probe_params or {}))
            self.items = items = pool_items(self.features, keys, items)
            self._own_store = not isinstance(store, LabelStore)
            self.store = _open_store(store, items)
        except BaseException:
            hashing.cancel()
            raise
        try:
            self.fingerprint = hashing.result()
            remember_fingerprint(self.features, self.fingerprint)  # the probe need not hash it again
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

        self._subscribers: list = []
        self.store.on_close(self._on_store_closed)
        self._start_learner()

    # ------------------------------------------------------------------ validation
    def _check_strategy(self, name) -> str:
        if not isinstance(name, str):
            raise TypeError(f"strategy must be a name (str), got {type(name).__name__}")
        names = self._strategies.available()
        if name not in names:
            raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(names)}")
        return name

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
        self._label_rows(np.array([check_index(i, self.features.shape[0])]), self._class_name(cls))

    def label_many(self, indices, cls) -> None:
        """Label several samples with one class, as one undoable action (test requests among them: a second)."""
        self._label_rows(check_indices(indices, self.features.shape[0]), self._class_name(cls))

    def _label_rows(self, rows, name):
        test = self._trust.is_test(rows)  # requested test items keep the role "test": never trained on
        for part, role in ((rows[~test], "train"), (rows[test], "test")):
            if part.size:
                self._change(lambda r, n, role=role: self.store.label_many(r, n, role=role), part, name)

    def unlabel(self, indices) -> None:
        """Remove the labels of some samples (one undoable action)."""
        self._change(self.store.unlabel, check_indices(np.atleast_1d(indices), self.features.shape[0]))

    def mark_unsure(self, indices) -> None:
        """Answer "unsure" (kept in the store and listed in ``unsure``, never trained on)."""
        self._change(self.store.mark_unsure, check_indices(np.atleast_1d(indices), self.features.shape[0]))

    def skip(self, indices) -> None:
        """Set samples aside: not suggested again until ``SKIP_COOLDOWN`` more answers (undoable)."""
        self._change(self.store.skip, check_indices(np.atleast_1d(indices), self.features.shape[0]))

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
            self._wait_batch()  # on huge pools the batch comes before the map's scores
        with self._cond:
            st = self.store.state()
            rows = self._batch
            batch = rows[(st.cls[rows] < 0) & ~st.unsure[rows]]  # minus rows answered since
            current = self._batch_done == (self._version, self._round)
            strategy = self._strategy
        if len(batch) >= k or not wait or self._in_worker() or not current:
            return batch[:k].copy()
        if ((st.cls < 0) & ~st.unsure).sum() <= len(batch):
            return batch.copy()
        # More than the background batch: select now with the current model.
        with self._model_lock, limit_threads(self.n_threads):
            idx, _ = self._select(self._training(st), k, strategy, self._excluded(st))
        return idx

    def predict_proba(self):
        """(n_samples, n_classes) float32 probabilities from the latest probe, or None before one exists.

        Classes that appeared after the last retrain get zero columns. On pools of
        ``anchoral.SUBPOOL_MIN`` rows or more they arrive after the batch: ``wait()`` first.
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
    def proba_version(self) -> int:
        """Bumps whenever new probabilities are published: compare it before pulling predict_proba()."""
        return self._proba_version

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
                "last_rescore_ms": self._timings.get("rescore_ms"),  # huge pools: the pool's scores after the batch
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
