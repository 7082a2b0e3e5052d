"""The Session's background learner: one worker thread that retrains, rescores and selects.

``Learner`` is mixed into :class:`alwidget.session.Session`; it owns the worker thread, the
published results (probabilities, batch, reason, timings) and the condition everyone waits on.
Bursts of labels coalesce: the worker always starts from the latest labels and skips the
versions it missed. An error in a round is reported in ``status["error"]``, never fatal.

On pools of ``anchoral.SUBPOOL_MIN`` rows or more a round publishes twice: the batch first (the
fit, the subpool's selection and the trust monitor need no pool-wide scores; the monitor reads its
rows through :class:`ByRow`), then, after the look-ahead of the batch's neighbour lists, the whole
pool's probabilities for the map, which on a CPU cost most of the round (250 of 290 ms at 1M) and
which a newer label stops between blocks of rows. Subscribers are called after each publication;
``next_batch()`` waits for the first, ``wait()`` for both. A second thread builds the probe's
standardised pool and the subpools' search index (:func:`alwidget.anchoral.warm`) at the start,
while the cold start's batches are labelled.

The Session provides: ``features``, ``probe``, ``store``, ``prior``, ``seed``, ``n_threads``,
``_strategies``, ``_trust``, ``classes``, ``_training(st)``, ``_excluded(st)``,
``_skipped_rows(st)`` and ``_subscribers``.
"""
from __future__ import annotations

import atexit
import functools
import threading
import time
import weakref

import numpy as np

from ._util import limit_threads

__all__ = ["Learner", "select_next", "strategy_accepts"]

_LIVE: "weakref.WeakSet" = weakref.WeakSet()


def _close_all():
    """Stop every worker before the interpreter tears down (a busy torch thread aborts it otherwise)."""
    for s in list(_LIVE):
        try:
            s.close()
        except Exception:
            pass


# threading's exit hook runs before atexit handlers, while torch and numpy are still intact.
try:
    threading._register_atexit(_close_all)
except (AttributeError, RuntimeError):  # pragma: no cover - other interpreters
    atexit.register(_close_all)


def strategy_accepts(strategy: str, param: str) -> bool:
    """Whether ``strategies.select(strategy, ..., **{param: ...})`` accepts the parameter."""
    from . import strategies
    from .strategies import _common

    if strategy == "auto":
        return param in strategies.auto.auto_params()
    accepted = _common.REGISTRY[strategy].params
    return accepted is None or param in accepted


def _anchoral():
    from . import anchoral

    return anchoral


_LATER = object()  # a round's probabilities that the second publication brings (early batch)


class ByRow:
    """A fitted probe's probabilities read by row: ``scores[rows]`` is the exact float32 pass on
    those rows alone, ``scores.shape`` the pool's. Stands in for the (N, C) array where a round
    publishes its batch before the whole pool is scored (the trust monitor reads a few thousand rows)."""

    def __init__(self, probe, n_rows: int):
        self._probe = probe
        self.shape = (int(n_rows), probe.n_classes)

    def __getitem__(self, rows):
        return self._probe.exact_proba(np.asarray(rows, dtype=np.int64).reshape(-1))


def select_next(strategies, features, labels: np.ndarray, k: int, strategy: str, *, exclude=None, probe=None,
                seed: int = 0, geometry_seed: int = 0, n_threads: int = 1, n_classes: int = 0, prior=None,
                classes=()):
    """(indices, info): the strategy's next k rows for these labels; empty when nothing is unlabelled.

    ``seed``, ``geometry_seed``: as in :func:`alwidget.strategies.select` (the Session passes its
    seed as both). ``probe`` must have been fitted on these labels. ``exclude``: unlabelled rows never to return
    (unsure, skipped, test items); when only those are left they are offered again. ``prior``
    (alwidget.prior.TextPrior) balances the batch by class while classes are scarce (PCB).
    """
    exclude = np.zeros(0, dtype=np.int64) if exclude is None else np.asarray(exclude, dtype=np.int64)
    exclude = exclude[labels[exclude] < 0]
    n_free = int((labels < 0).sum())
    if n_free - exclude.size <= 0:
        exclude = np.zeros(0, dtype=np.int64)
    if n_free == 0:
        return np.zeros(0, dtype=np.int64), {"strategy": strategy, "reason": "every sample is labelled"}
    if probe is not None and not (probe.is_fitted and (labels >= 0).any()):
        probe = None
    params = {}
    if n_classes >= 2 and strategy_accepts(strategy, "n_classes"):
        params["n_classes"] = n_classes  # declared classes shape ProbCover's pseudo-labels, auto's switch
    select = strategies.select
    if labels.shape[0] >= _anchoral().SUBPOOL_MIN:  # huge pools: AnchorAL subpools (issue 12)
        # A round never waits for the index the second thread builds: the whole pool until then.
        select = functools.partial(_anchoral().select, wait_index=False)
    if prior is not None:
        select = prior.selector(select, labels, list(classes), features, probe)
    idx, info = select(strategy, features, labels, min(k, n_free - exclude.size), seed=seed,
                       geometry_seed=geometry_seed, exclude=exclude, probe=probe, return_info=True,
                       n_threads=n_threads, **params)
    idx = np.asarray(idx, dtype=np.int64)
    if exclude.size:  # a strategy that ignores exclude= must still never return those rows
        idx = idx[~np.isin(idx, exclude)]
    return idx[:k], dict(info)


class Learner:
    """The worker thread and the results it publishes (see the module docstring)."""

    def _start_learner(self):
        # Shared state: written under _cond by label()/undo() and by the worker.
        self._cond = threading.Condition(threading.RLock())
        self._model_lock = threading.Lock()  # held while the probe trains, scores and selects
        self._version = 0  # bumps on every label change or strategy/batch change
        self._round = 0  # bumps on next_batch(refresh=True)
        self._skipped: list[int] = []  # suggestions passed over by refresh since the last label
        self._done = None  # (version, round) the published results belong to
        self._batch_done = None  # (version, round) of the published batch (ahead of _done: early batch)
        self._busy = False
        self._proba = None
        self._proba_version = 0  # bumps with every publication of probabilities
        self._batch = np.zeros(0, dtype=np.int64)
        self._info: dict = {}
        self._timings: dict = {}
        self._error: str | None = None
        self._last_update: float | None = None
        self._closed = False
        self._prefetched: dict | None = None  # the last prefetch: target, rows searched, ms
        self._worker = threading.Thread(target=self._run, name="alwidget-session", daemon=True)
        self._worker.start()
        self._indexer = None
        if self._early_batch():  # huge pools: what the first labelled round needs, built while the user starts
            self._indexer = threading.Thread(target=self._warm_up, name="alwidget-index", daemon=True)
            self._indexer.start()
        _LIVE.add(self)
        self._kick()

    def _warm_up(self):
        """Build the probe's standardised pool (6 s at 1M) and AnchorAL's search index (20 s) ahead,
        while the cold start's batches are labelled, so the first labelled round waits for neither.
        On failure that round builds them."""
        from ._pool import _get_pool

        try:
            _get_pool(self.features, self.probe.device)
            _anchoral().warm(self.features)
        except Exception as exc:  # reported, never fatal
            with self._cond:
                self._error = f"preparing the pool: {type(exc).__name__}: {exc}"

    def _in_worker(self) -> bool:
        return threading.current_thread() is self._worker

    def _kick(self):
        with self._cond:
            self._cond.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the background retrain/rescore/select reflects the latest labels.

        Returns True when caught up, False on timeout. Subscribers have been called by then.
        Returns at once when called from a subscriber (the worker thread).
        """
        return self._wait_for(lambda: not self._busy and self._done == (self._version, self._round), timeout)

    def _wait_batch(self, timeout: float | None = None) -> bool:
        """Like wait(), but only until the batch is published (on huge pools, before the map's scores)."""
        return self._wait_for(lambda: self._batch_done == (self._version, self._round), timeout)

    def _wait_for(self, caught_up, timeout):
        if self._in_worker():
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._closed and not caught_up():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def _select(self, labels, k, strategy, exclude=None):
        """select_next with this session's features, probe, prior and settings (model lock held).
        The seed seeds the cached clusterings too (geometry_seed), as in the benchmarked runs
        (alwidget.simulate); every round of one Session uses the same ones."""
        return select_next(self._strategies, self.features, labels, k, strategy, exclude=exclude,
                           probe=self.probe, seed=self.seed, geometry_seed=self.seed, n_threads=self.n_threads,
                           n_classes=len(self.store.classes), prior=self.prior, classes=self.classes)

    def _snapshot(self):
        """What one round works from, read under the condition."""
        st = self.store.state()
        return dict(target=(self._version, self._round), st=st, labels=self._training(st),
                    exclude=self._excluded(st), n_classes=len(self.store.classes),
                    k=self._batch_size + len(self._skipped), skipped=np.asarray(self._skipped, dtype=np.int64),
                    strategy=self._strategy, batch_size=self._batch_size)

    def _early_batch(self) -> bool:
        """Whether rounds publish the batch before the whole pool's scores (see the module docstring)."""
        return self.features.shape[0] >= _anchoral().SUBPOOL_MIN

    def _stale(self, target) -> bool:
        return self._closed or (self._version, self._round) != target

    def _compute(self, s, early: bool = False):
        """(proba, batch, info, timings) for a snapshot, or None when the session closed meanwhile.

        early: leave the pool unscored (proba is _LATER, or None without labels); the monitor then
        reads its rows by row.
        """
        labels, st = s["labels"], s["st"]  # test labels never reach the probe
        proba = scores = None
        with self._model_lock, limit_threads(self.n_threads):
            t0 = time.perf_counter()
            if (labels >= 0).any():
                self.probe.fit(self.features, labels, n_classes=max(s["n_classes"], int(labels.max()) + 1))
                if early:
                    proba, scores = _LATER, ByRow(self.probe, labels.shape[0])
                else:
                    proba = scores = self.probe.pool_proba()  # read-only: Session.predict_proba() copies
            t1 = time.perf_counter()
            if self._closed:
                return None
            batch, info = self._select(labels, s["k"], s["strategy"], s["exclude"])
            t2 = time.perf_counter()
            if s["skipped"].size:
                batch = batch[~np.isin(batch, s["skipped"])]
            batch = self._trust.update(st.cls, labels, scores, batch[:s["batch_size"]], s["n_classes"],
                                       s["batch_size"], hold=np.union1d(s["skipped"], self._skipped_rows(st)))
            t3 = time.perf_counter()
        timings = {"retrain_ms": 1e3 * (t1 - t0), "select_ms": 1e3 * (t2 - t1), "trust_ms": 1e3 * (t3 - t2),
                   "total_ms": 1e3 * (t3 - t0)}
        return proba, batch, info, timings

    def _rescore(self, target):
        """(proba, ms) of the whole pool for the model that picked target's batch; None when newer
        labels or a refresh came before or during the pass (it stops between blocks of rows: the
        next round scores its own model) or on close."""
        with self._model_lock, limit_threads(self.n_threads):
            if self._stale(target):
                return None
            t0 = time.perf_counter()
            proba = self.probe.pool_proba(should_stop=lambda: self._stale(target))
            return None if proba is None else (proba, 1e3 * (time.perf_counter() - t0))

    def _run(self):
        while True:
            with self._cond:
                while not self._closed and self._done == (self._version, self._round):
                    self._cond.wait()
                if self._closed:
                    return
                s = self._snapshot()
                self._busy = True
            error, out, early = None, None, self._early_batch()
            try:
                out = self._compute(s, early)
                if out is None:
                    return
            except Exception as exc:  # reported, never fatal
                error = f"{type(exc).__name__}: {exc}"
            later = error is None and out[0] is _LATER
            self._publish(s["target"], out, error, final=not later)
            if error is None:  # first: a label soon after the batch then finds its rows searched
                self._prefetch(s["target"], out[1], out[2])
            if later:
                self._publish_scores(s["target"])

    def _publish(self, target, out, error, final: bool = True):
        with self._cond:
            if error is None:
                proba, self._batch, self._info, self._timings = out
                if proba is not _LATER:
                    self._proba = proba
                    self._proba_version += 1
                self._last_update = time.time()
            self._error = error
            subscribers = list(self._subscribers)
        self._notify(subscribers)
        with self._cond:
            self._batch_done = target
            if final:
                self._done = target
                self._busy = False
            self._cond.notify_all()

    def _publish_scores(self, target):
        """The second publication of an early-batch round: the pool's probabilities, then subscribers."""
        out = error = None
        try:
            out = self._rescore(target)
        except Exception as exc:  # reported, never fatal: the map keeps the previous colours
            error = f"rescoring the pool: {type(exc).__name__}: {exc}"
        with self._cond:
            if out is not None:
                self._proba, self._timings = out[0], {**self._timings, "rescore_ms": out[1]}
                self._proba_version += 1
                self._last_update = time.time()
            if error is not None:
                self._error = error
            subscribers = list(self._subscribers) if out is not None else []
        self._notify(subscribers)
        with self._cond:
            self._done = target
            self._busy = False
            self._cond.notify_all()

    def _notify(self, subscribers):
        for cb in subscribers:
            try:
                cb(self)
            except Exception as exc:
                with self._cond:
                    self._error = f"subscriber {getattr(cb, '__name__', cb)!r} failed: {type(exc).__name__}: {exc}"

    def _prefetch(self, target, batch, info):
        """AnchorAL: search the neighbour lists of the batch just published (the next round's new
        anchors once labelled) while the user looks at it. Runs after the batch reached the
        subscribers, on this thread, holding no lock a label needs; a newer label or close stops
        it between rows (the round searches what is left). Only when this round ran on a subpool."""
        if not (info or {}).get("anchoral") or len(batch) == 0:
            return

        t0 = time.perf_counter()
        try:
            with limit_threads(self.n_threads):
                n = _anchoral().prefetch(self.features, np.asarray(batch, dtype=np.int64),
                                         should_stop=lambda: self._stale(target))
        except Exception as exc:  # reported, never fatal: the next round searches for itself
            with self._cond:
                self._error = f"prefetch: {type(exc).__name__}: {exc}"
            return
        with self._cond:
            self._prefetched = {"target": target, "rows": int(n), "ms": 1e3 * (time.perf_counter() - t0)}
            self._cond.notify_all()

    def _stop(self):
        with self._cond:
            if self._closed:
                return False
            self._closed = True
            self._cond.notify_all()
        _LIVE.discard(self)
        if not self._in_worker():
            self._worker.join(timeout=60)
        if self._indexer is not None and threading.current_thread() is not self._indexer:
            self._indexer.join(timeout=60)  # faiss must not run while the interpreter tears down
        return True
