"""TrustMonitor: the stateful side of "know when you are done", composed by a Session.

It owns the evaluation population E (drawn once, remembered next to the store), the test
draws with the proposal probability each had, the surrogate probe that shapes the proposal,
the checkpoint history of the stop hint and a cache of the suspect-label table. The formulas
are in :mod:`alwidget.trust`; this module only keeps state and applies the rules that keep
the estimate honest:

- strategies never propose items of E (:meth:`TrustMonitor.excluded`);
- test labels never reach the probe (:meth:`TrustMonitor.training_labels` masks them);
- an item of E labelled by browsing moves to training and the estimate restarts: the old test
  items leave E and become training labels (no label is wasted), a new draw sequence starts.

A Session calls ``training_labels`` before each fit, ``update`` after it (the worker thread)
and the read-only methods from any thread; every method takes the monitor's lock.
"""
from __future__ import annotations

import json
import os
import threading
import warnings
from pathlib import Path

import numpy as np

from . import trust

__all__ = ["TrustMonitor", "state_path"]

EVAL_MAX = 20_000  # |E| = min(EVAL_MAX, EVAL_FRACTION * unlabelled pool)
EVAL_FRACTION = 0.25  # leaves 3/4 of a small pool to active learning
STOP_SET_SIZE = 5000
TEST_EVERY = 5  # training labels per test request
MAX_TESTS = 50
TARGET_HALF_WIDTH = 0.03
_STATE_VERSION = 2  # items by key


def state_path(store) -> Path | None:
    """Where the monitor remembers E and the draws for a store (None: in memory only).

    The one place that knows how E persists; today a JSON file next to the store file, with
    items named by their store keys (so reordered or re-embedded rows keep E).
    """
    path = getattr(store, "path", ":memory:")
    return None if path in (None, "", ":memory:") else Path(f"{path}.trust.json")


_ROW_LISTS = ("eval", "removed", "retired")


def _load(path: Path | None, keys) -> dict | None:
    """The saved state with rows for this session's keys; None when there is none.

    Items of E that left the session change the population: the draw sequence then restarts.
    """
    if path is None or not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
        if saved.get("version") != _STATE_VERSION:
            raise ValueError(f"version {saved.get('version')}")
    except (OSError, ValueError, AttributeError) as exc:
        aside = path.with_name(path.name + ".unreadable")
        os.replace(path, aside)
        warnings.warn(f"{path} could not be read ({exc}); moved it to {aside} and starting the model check "
                      "afresh (labels are in the store and are not affected)", RuntimeWarning, stacklevel=3)
        return None
    index = {k: i for i, k in enumerate(keys)}
    state = dict(saved)
    for name in _ROW_LISTS:
        if saved.get(name) is not None:
            state[name] = [index[k] for k in saved[name] if k in index]
    draws = [[index[k], q] for k, q in saved["draws"] if k in index]
    gone = saved["eval"] is not None and len(state["eval"]) < len(saved["eval"])
    if gone or len(draws) < len(saved["draws"]):
        state["retired"] += [r for r, _ in draws]
        draws, state["restarts"], state["drawn_at_on"] = [], state["restarts"] + (1 if saved["draws"] else 0), 0
        held = set(state["removed"]) | set(state["retired"])
        state["population"] = len([r for r in state["eval"] if r not in held])
    state["draws"] = draws
    return state


def _save(path: Path | None, state: dict, keys) -> None:
    if path is None:
        return
    out = dict(state)
    for name in _ROW_LISTS:
        if state.get(name) is not None:
            out[name] = [keys[r] for r in state[name]]
    out["draws"] = [[keys[r], q] for r, q in state["draws"]]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(out))
    os.replace(tmp, path)  # atomic: a crash leaves the old or the new file, never half of one


class TrustMonitor:
    """Accuracy estimate, stop hint and suspect labels for one pool of features.

    Parameters
    ----------
    features : (N, D) float32, already validated.
    keys : one store key per row: E and the draws persist by key (default "row:<i>").
    seed : seeds E, the stop set, the draws and the folds.
    probe_params, device : for the surrogate and the cross-validation probes (as the Session's probe).
    path : file that remembers E and the draws (see :func:`state_path`); None keeps them in memory.
    """

    def __init__(self, features, *, keys=None, seed: int = 0, probe_params=None, device="cpu", path=None,
                 tau: float = trust.TAU, draw_seed: int | None = None):
        self.features = features
        self.seed = int(seed)
        self.draw_seed = self.seed if draw_seed is None else int(draw_seed)  # E and S come from seed
        self.probe_params = dict(probe_params or {})
        self.device = device
        self.tau = float(tau)
        self.max_tests, self.target_half_width = MAX_TESTS, TARGET_HALF_WIDTH  # stop asking past either
        self._path = None if path is None else Path(path)
        self._lock = threading.RLock()
        n = features.shape[0]
        self._keys = [f"row:{i}" for i in range(n)] if keys is None else list(keys)
        if len(self._keys) != n:
            raise ValueError(f"keys has {len(self._keys)} entries but features has {n} rows")
        self._state = _load(self._path, self._keys) or {
            "version": _STATE_VERSION, "on": False, "every": TEST_EVERY, "eval": None, "removed": [],
            "retired": [], "restarts": 0, "population": 0, "draws": [], "drawn_at_on": 0, "train_at_on": 0}
        self._draw_rows = {int(r) for r, _ in self._state["draws"]}
        self._eval = None if self._state["eval"] is None else np.asarray(self._state["eval"], dtype=np.int64)
        self._stop_set = np.random.default_rng([self.seed, 7]).permutation(n)[:STOP_SET_SIZE]
        self._checkpoints: list[dict] = []  # {"n_labels", "kappa"} (kappa None at the first)
        self._last_pred = None
        self._stop_classes = None
        self._estimates: list[dict] = []
        self._current = trust.accuracy_estimate([], [], 1)
        self._surrogate = None
        self._surrogate_key = None
        self._z = self._z_rows = self._z_key = None  # E's standardised rows for the surrogate
        self._suspects = (None, None)  # (key, full table)

    # ------------------------------------------------------------------ state helpers
    def _population(self) -> np.ndarray:
        """Rows of E in the current draw sequence (E minus browsed rows and retired tests)."""
        if self._eval is None:
            return np.zeros(0, np.int64)
        gone = np.asarray(self._state["removed"] + self._state["retired"], dtype=np.int64)
        return self._eval[~np.isin(self._eval, gone)] if gone.size else self._eval

    def _save(self):
        _save(self._path, self._state, self._keys)

    @property
    def on(self) -> bool:
        return bool(self._state["on"])

    def eval_rows(self) -> np.ndarray:
        """Rows reserved for the accuracy estimate (empty before the first check)."""
        with self._lock:
            return self._population().copy()

    def test_rows(self) -> np.ndarray:
        """Rows drawn as test items in the current sequence, in draw order (labelled or not)."""
        return self.test_draws()[0]

    def test_draws(self):
        """(rows (M,) int64, q (M,) float64): the draws of the current sequence and their proposal probabilities."""
        with self._lock:
            d = self._state["draws"]
            return np.asarray([r for r, _ in d], dtype=np.int64), np.asarray([q for _, q in d], dtype=np.float64)

    @property
    def population_size(self) -> int:
        """N of the LURE weights: the size of E when the current draw sequence started."""
        return int(self._state["population"])

    # ------------------------------------------------------------------ switching on
    def set_on(self, on: bool, labels: np.ndarray, *, every: int = TEST_EVERY, unsure=None) -> None:
        """Start or stop test requests; the first start draws E from the unlabelled pool.

        labels: every label (train and test), -1 none; unsure: (N,) bool, never put in E.
        """
        with self._lock:
            if on and self._eval is None:
                free = np.flatnonzero((labels < 0) & (True if unsure is None else ~np.asarray(unsure, bool)))
                if free.size < 2:
                    raise ValueError("nothing left to check the model on: every item is labelled")
                size = min(EVAL_MAX, max(2, round(EVAL_FRACTION * free.size)))
                rng = np.random.default_rng([self.seed, 11])
                self._eval = np.sort(rng.choice(free, size, replace=False))
                self._state["eval"] = self._eval.tolist()
                self._state["population"] = int(size)
            if on:
                self._sync(labels, unsure)
                self._state["drawn_at_on"] = len(self._state["draws"])
                self._state["train_at_on"] = int((self.training_labels(labels) >= 0).sum())
            self._state["on"] = bool(on)
            self._state["every"] = int(every)
            self._save()

    # ------------------------------------------------------------------ labels
    def _sync(self, labels: np.ndarray, unsure=None) -> None:
        """Keep E honest after answers the monitor did not ask for.

        An item of E labelled without being drawn (browsing) moves to training: it leaves E and
        the draw sequence restarts. An item of E answered "unsure" (drawn or not) leaves E and
        its draw leaves the sequence; the later draws keep exact weights (their q was over the
        items left, without it), the earlier ones are off by one item in N (negligible).
        """
        pop = self._population()
        if pop.size == 0:
            return
        if unsure is not None and np.asarray(unsure)[pop].any():
            self._drop_unsure(pop[np.asarray(unsure)[pop]])
            pop = self._population()
        browsed = pop[(labels[pop] >= 0) & ~np.isin(pop, list(self._draw_rows))]
        if browsed.size == 0:
            return
        self._state["removed"] += browsed.tolist()
        if self._state["draws"]:  # the old tests become training labels; a new sequence starts
            self._state["retired"] += [int(r) for r, _ in self._state["draws"]]
            self._state["restarts"] += 1
            self._state["draws"] = []
            self._draw_rows = set()
            self._estimates.append({"n_labels": int((labels >= 0).sum()), "restart": True})
        self._state["population"] = int(self._population().size)
        self._state["drawn_at_on"] = 0
        self._state["train_at_on"] = int((self.training_labels(labels) >= 0).sum())
        self._current = trust.accuracy_estimate([], [], 1)
        self._save()

    def _drop_unsure(self, rows) -> None:
        rows = {int(r) for r in rows}
        self._state["removed"] += sorted(rows)
        self._state["draws"] = [d for d in self._state["draws"] if d[0] not in rows]
        self._state["population"] -= len(rows)
        self._draw_rows -= rows
        self._save()

    def training_labels(self, labels: np.ndarray, unsure=None) -> np.ndarray:
        """The labels the probe may train on: test items of the current sequence set to -1 (a copy).

        labels: every label (train and test); unsure: optional (N,) bool (see ``_sync``).
        """
        with self._lock:
            self._sync(labels, unsure)
            train = np.array(labels, dtype=np.int64, copy=True)
            if self._draw_rows:
                train[np.fromiter(self._draw_rows, np.int64)] = -1
            return train

    def is_test(self, rows) -> np.ndarray:
        """(len(rows),) bool: which rows are test requests of the current sequence (their labels are tests)."""
        with self._lock:
            return np.isin(np.asarray(rows, np.int64), np.fromiter(self._draw_rows, np.int64, len(self._draw_rows)))

    def excluded(self) -> np.ndarray:
        """Rows strategies must never propose: the whole current E (drawn or not)."""
        return self.eval_rows()

    # ------------------------------------------------------------------ the worker's hook
    def update(self, labels, train, proba, batch, n_classes: int, batch_size: int, hold=()) -> np.ndarray:
        """After a retrain: refresh the estimate, take a checkpoint if due, add test requests.

        labels: all labels (store ids); train: ``training_labels(labels)``; proba: the probe's
        (N, C) probabilities for ``train`` (None before a first fit); batch: the strategy's
        picks (no E rows); hold: rows not to show now (skipped: their test requests wait).
        Returns ``batch_size`` rows: each test request placed after the training items that
        must be labelled before it falls due (1 per ``every``).
        """
        with self._lock:
            self._refresh_estimate(labels, train, proba)
            self._checkpoint(labels, train, proba, n_classes)
            tests = self._requests(labels, train, proba, batch_size, hold) if self.on else []
        picks = np.asarray(batch, np.int64).tolist()
        out, used = [], 0
        for row, offset in tests:
            while used < min(offset, len(picks)) and len(out) < batch_size:
                out.append(picks[used])
                used += 1
            out.append(row)
        out += picks[used:]
        return np.asarray(out[:batch_size], np.int64)

    # ------------------------------------------------------------------ accuracy estimate
    def _prefix(self, labels):
        """(rows, q) of the draws answered so far, up to the first unanswered one."""
        rows, qs = [], []
        for r, q in self._state["draws"]:
            if labels[r] < 0:
                break
            rows.append(int(r))
            qs.append(float(q))
        return np.asarray(rows, np.int64), np.asarray(qs)

    def _refresh_estimate(self, labels, train, proba):
        rows, qs = self._prefix(labels)
        if proba is None or rows.size == 0:
            self._current = trust.accuracy_estimate([], [], 1)
            return
        correct = proba[rows].argmax(1) == labels[rows]
        self._current = trust.accuracy_estimate(correct, qs, self._state["population"])
        rec = {"n_labels": int((train >= 0).sum()), **{k: self._current[k] for k in ("estimate", "low", "high",
                                                                                    "n_test")}}
        if not self._estimates or self._estimates[-1] != rec:
            self._estimates.append(rec)

    def accuracy_estimate(self) -> dict:
        """{"estimate", "low", "high", "n_test", "method", "on", "pending", "restarts", "sentence"}."""
        with self._lock:
            out = dict(self._current)
            out.update(on=self.on, pending=len(self._state["draws"]) - out["n_test"],
                       restarts=int(self._state["restarts"]))
            out["sentence"] = trust.estimate_sentence(out, on=self.on)
            return out

    def _due(self, d: int) -> int:
        """Training-label count at which test number d of the sequence falls due."""
        every, j = self._state["every"], d - self._state["drawn_at_on"]
        return self._state["train_at_on"] + (max(0, j) * every if every > 0 else 0)

    def _requests(self, labels, train, proba, batch_size: int, hold=()) -> list[tuple[int, int]]:
        """Test rows for the next batch with how many training labels must come first.

        Pending (drawn, unanswered) tests come back until answered; new ones are drawn when
        they fall due within this batch, until ``max_tests`` or a half-width of ``target_half_width``.
        """
        n_train = int((train >= 0).sum())
        draws = self._state["draws"]
        held = set(np.asarray(hold, np.int64).tolist())
        pending = [(d, int(r)) for d, (r, _) in enumerate(draws) if labels[r] < 0 and int(r) not in held]
        cur = self._current
        precise = cur["low"] is not None and (cur["high"] - cur["low"]) / 2 <= self.target_half_width
        n_new = 0
        while (not precise and len(draws) + n_new < self.max_tests and len(pending) + n_new < batch_size
               and self._due(len(draws) + n_new) - n_train < batch_size - len(pending) - n_new):
            n_new += 1
        if n_new:
            first = len(draws)
            pending += list(enumerate(self._draw(n_new, labels, train, proba), start=first))
        return [(row, max(0, self._due(d) - n_train)) for d, row in pending]

    def _draw(self, k: int, labels, train, proba) -> list[int]:
        """Draw k new test rows from the rest of E; store each row with its proposal probability."""
        rest = self._population()
        if self._draw_rows:
            rest = rest[~np.isin(rest, np.fromiter(self._draw_rows, np.int64))]
        if rest.size == 0:
            return []
        g = self._expected_loss(rest, labels, train, proba)
        out = []
        for _ in range(min(k, rest.size)):
            q = trust.proposal(g, self.tau) if g is not None else np.full(rest.size, 1.0 / rest.size)
            rng = np.random.default_rng([self.draw_seed, 13, self._state["restarts"], len(self._state["draws"])])
            pos = trust.draw(q, rng)
            row = int(rest[pos])
            self._state["draws"].append([row, float(q[pos])])
            self._draw_rows.add(row)
            out.append(row)
            keep = np.arange(rest.size) != pos
            rest = rest[keep]
            g = None if g is None else g[keep]
        self._save()  # the draw and its q are durable before the user sees the item
        return out

    def _expected_loss(self, rows, labels, train, proba):
        """g for rows: the surrogate's chance that the probe is wrong (None: draw uniformly).

        The surrogate is a second, more strongly regularised probe (``trust.surrogate_params``)
        fitted on the training labels plus the answered test labels (allowed: each proposal is
        fixed before its own label is seen); it is refitted only when a draw needs it and those
        labels changed.
        """
        if proba is None:
            return None
        known = train.copy()
        tests = np.fromiter(self._draw_rows, np.int64) if self._draw_rows else np.zeros(0, np.int64)
        known[tests] = labels[tests]
        if not (known >= 0).any():
            return None
        key = known.tobytes()
        if key != self._surrogate_key:
            from .probe import LinearProbe

            if self._surrogate is None:
                self._surrogate = LinearProbe(device=self.device, seed=self.seed,
                                              **trust.surrogate_params(self.probe_params))
            self._surrogate.fit(self.features, known, n_classes=max(proba.shape[1], int(known.max()) + 1))
            self._surrogate_key = key
        return trust.expected_loss(self._surrogate_proba(rows), proba[rows].argmax(1))

    def _surrogate_proba(self, rows):
        """Surrogate probabilities for rows of E from E's standardised rows, gathered once per sequence.

        ``predict_proba(X)`` re-standardises its input in float64 (0.2 s for 20,000 x 512) and
        the pool path scores all N rows (80 ms at 100k); one (|E|, D) gather kept for the
        sequence plus one product per draw cost a few ms. Uses the probe's logit helper.
        """
        import torch

        s = self._surrogate
        pool, pop = s.transform(), self._population()
        key = (id(pool), pop.size, int(pop[0]), int(pop[-1]), self._state["restarts"])
        if self._z_key != key:
            self._z = pool[torch.from_numpy(pop).to(pool.device)]
            self._z_rows, self._z_key = pop, key
        with torch.no_grad():
            p = torch.log_softmax(s._logits(self._z), dim=1).exp().cpu().numpy()
        out = np.zeros((pop.size, s.n_classes), np.float32)
        out[:, np.flatnonzero(s.seen_classes)] = p
        return out[np.searchsorted(self._z_rows, rows)]

    # ------------------------------------------------------------------ stop hint
    def _checkpoint(self, labels, train, proba, n_classes: int) -> None:
        """Every max(10, C) new training labels: kappa between this and the last checkpoint on S.

        S is a fixed seeded sample of the pool; kappa uses its rows that are unlabelled now and
        not in E. The history starts over when a class is added or many labels are removed.
        """
        if proba is None:
            return
        n_train = int((train >= 0).sum())
        step = trust.checkpoint_interval(n_classes)
        last = self._checkpoints[-1]["n_labels"] if self._checkpoints else None
        if self._stop_classes != n_classes or (last is not None and n_train < last - step):
            self._checkpoints, self._last_pred, self._stop_classes, last = [], None, n_classes, None
        if last is not None and n_train - last < step:
            return
        pred = proba[self._stop_set].argmax(1)
        kappa = None
        if self._last_pred is not None:
            ok = labels[self._stop_set] < 0
            if self._eval is not None:
                ok &= ~np.isin(self._stop_set, self._eval)
            kappa = trust.cohen_kappa(pred[ok], self._last_pred[ok], max(n_classes, proba.shape[1]))
        self._checkpoints.append({"n_labels": n_train, "kappa": kappa})
        self._last_pred = pred

    def stopping(self, counts, class_names, threshold: float = trust.STOP_THRESHOLD) -> dict:
        """{"stable", "kappa", "n_checkpoints", "threshold", "sentence"} from the checkpoints so far.

        counts: training labels per class (in class-id order); class_names for the sentence.
        """
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
        with self._lock:
            cps = list(self._checkpoints)
        kappas = [c["kappa"] for c in cps[1:]]
        kappas = [np.nan if k is None else k for k in kappas]
        kbar = trust.mean_kappa(kappas)
        counts = np.asarray(counts)
        stable = trust.stop_decision(kappas, counts, threshold)
        w = trust.STOP_WINDOW
        span = cps[-1]["n_labels"] - cps[-1 - w]["n_labels"] if len(cps) > w else 0
        missing = [class_names[j] for j in np.flatnonzero(counts < trust.MIN_LABELS_PER_CLASS)]
        if counts.size < 2:
            missing = missing or ["a second class"]
        return {"stable": stable, "kappa": kbar, "n_checkpoints": len(cps), "threshold": float(threshold),
                "sentence": trust.stopping_sentence(stable, kbar, len(cps), span, missing)}

    def history(self) -> dict:
        """{"estimates": [{n_labels, estimate, low, high, n_test} or {n_labels, restart}], "checkpoints": [...]}."""
        with self._lock:
            return {"estimates": [dict(e) for e in self._estimates],
                    "checkpoints": [dict(c) for c in self._checkpoints]}

    # ------------------------------------------------------------------ suspect labels
    def suspects(self, train, proba, class_names, batch_size: int = 10):
        """Every scorable training label, most suspect first (``trust.suspect_table``), from
        5-fold cross-validated probabilities; cached until the training labels change."""
        key = (train.tobytes(), batch_size, len(class_names))
        with self._lock:
            if self._suspects[0] == key:
                return self._suspects[1].copy()
            exclude = self._population()
        c = max(len(class_names), int(train.max()) + 1 if (train >= 0).any() else 0)
        rows, oos = trust.out_of_sample_proba(self.features, train, c, seed=self.seed,
                                              probe_params=self.probe_params, device=self.device)
        free = train < 0
        free[exclude] = False  # new items the strategies could propose
        new = proba[free] if proba is not None else np.zeros((0, c))
        df = trust.suspect_table(rows, oos, train[rows], new, list(class_names), batch_size)
        with self._lock:
            self._suspects = (key, df)
        return df.copy()
