"""LabelStore: labels on SQLite, keyed by item identity, durable before acknowledged.

Every change is an append-only event on an *item* (a stable key such as a file's relative path,
see :mod:`alwidget.items`); the current labels and the undo history are derived from the events,
so reopening a store file restores both. A store is opened as a *view* for the rows of a session
(one key per row): items still present keep their labels and undo history, new items start
unlabelled, and labels of items that are gone stay in the file (exported with ``present=False``).
Renamed files are recognised by content; see :mod:`alwidget.items` for the rules.

Schema (version 2, :mod:`alwidget.storefile`)::

    meta(key, value)                 schema_version, created_at, source
    items(id, key UNIQUE, content, size, created_at)    only items that ever had an event
    classes(id, name UNIQUE, created_at)
    actions(id, kind, role, time, undoes)
        kind: 'label' | 'unsure' | 'unlabel' | 'skip' | 'undo' (undoes = the action undone)
        role: 'train' | 'test' (test labels estimate accuracy and never reach training)
    events(seq, action, item, class_id)      one row per item of an action
    renames(item, old_key, new_key, time)

Answers per item: a class, or *unsure* (kept, excluded from training). A *skip* sets an item
aside; it comes back after a number of answers the caller chooses (``StoreState.skip_age``).
Undo is last-in-first-out over the live actions that touch an item of this view.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import storefile as sf
from .items import Items
from .store_args import as_items, check_class_name, check_rows, stored_view
from .storefile import (SCHEMA_VERSION, StoreClosedError, StoreDamagedError, StoreError, StoreLockedError,
                        StoreMismatchError, StoreWriteError)
from .store_view import bind_view, export_dataframe, history_dataframe, labels_dataframe, recent_answers

__all__ = ["LabelStore", "StoreState", "SCHEMA_VERSION", "StoreError", "StoreMismatchError", "StoreLockedError",
           "StoreDamagedError", "StoreWriteError", "StoreClosedError", "export_dataframe", "check_class_name"]

UNSURE = -2  # the answer "unsure" in a label stack (classes are >= 0, -1 = no label)
_ANSWERS = ("label", "unsure")


class StoreState(NamedTuple):
    """Per-row state of a view: (N,) arrays."""

    cls: np.ndarray  # int64 class id of a label (train or test), -1 none
    unsure: np.ndarray  # bool: answered "unsure"
    test: np.ndarray  # bool: the label is a test label (never trained on)
    skip_age: np.ndarray  # int64 answers given since the item was skipped; -1 not skipped


class LabelStore:
    """Durable, append-only label events on SQLite, viewed through the rows of one session.

    Parameters
    ----------
    path : str, Path or ":memory:"
        The SQLite file (created with its folder if missing) or ":memory:" (nothing persists).
    items : alwidget.items.Items or list of keys, optional
        Identity of this session's rows. Required to write; without it (read-only use) the
        view is every item the store holds, in the order they were first labelled.
    n_samples : int, optional
        Shorthand for rows keyed ``"row:<i>"`` (no content check).
    readonly : bool
        Open an existing file without changing it (export, inspection).

    Every write is committed (WAL, ``synchronous=FULL``) before the method returns; a second
    process is refused (:class:`StoreLockedError`), a second store on the same file in this
    process takes over and closes the first (``closed_reason`` says so).
    """

    _state: StoreState | None = None  # state()'s snapshot, dropped whenever the rows change

    def __init__(self, path=":memory:", items=None, *, n_samples=None, keys=None, readonly: bool = False):
        self.path = str(Path(path).expanduser()) if str(path) != ":memory:" else ":memory:"
        self.readonly = readonly
        self.closed_reason: str | None = None
        self.report: dict = {}
        self._lock = threading.RLock()
        self._on_close: list = []
        self._file_id = None
        self._db = None
        self._lockfile = None
        view = as_items(items, n_samples, keys)
        if view is None and not readonly:
            raise ValueError("a writable LabelStore needs items (keys of the rows) or n_samples")
        try:
            self._open_file()
            self._load()
            self._bind(view)
        except BaseException:
            self._release()
            raise

    @classmethod
    def open_readonly(cls, path, items=None) -> "LabelStore":
        """Open an existing store file for reading (export, inspection); it is not modified."""
        return cls(path, items, readonly=True)

    # -- the file ------------------------------------------------------------------
    def _open_file(self):
        memory = self.path == ":memory:"
        p = Path(self.path)
        if not memory:
            if p.exists():
                sf.check_existing_file(p)
            elif self.readonly:
                raise FileNotFoundError(f"store file {p} does not exist")
            if not self.readonly:
                p.parent.mkdir(parents=True, exist_ok=True)
                sf.check_writable(p)
                self._lockfile = sf.StoreLock(self.path)
                sf.take_over(self.path, self, "a newer session opened the same label store (the cell was "
                                              "run again); use the newest widget or session")
                self._lockfile.acquire(self.path)
        try:
            self._db = sf.connect(self.path, readonly=self.readonly)
            tables = sf.check_integrity(self._db, self.path) if not memory else set()
        except sqlite3.DatabaseError as exc:
            raise StoreDamagedError(f"the label store {self.path} could not be opened (SQLite: {exc})") from None
        if tables and "meta" not in tables:
            raise ValueError(f"{self.path} is an SQLite file but not an alwidget label store; pass another path")
        if not tables:
            if self.readonly:
                raise ValueError(f"{self.path} is empty, not an alwidget label store")
            with self._transaction() as db:
                sf.create_schema(db, "")
        self._version = sf.schema_version(self._db, self.path)
        if not memory:
            self._file_id = sf.file_identity(self.path)

    def _release(self):
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lockfile is not None:
            self._lockfile.release()
            self._lockfile = None
            sf.forget(self.path, self)

    def _transaction(self):
        return sf.transaction(self._db)

    def _writable(self):
        if self._db is None:
            raise StoreClosedError(self.closed_reason or "the label store is closed")
        if self.readonly:
            raise RuntimeError(f"store {self.path} was opened read-only")
        self._check_file()

    def _check_file(self):
        """Detect a store file deleted (write it again) or replaced (refuse) before writing to it."""
        if self._file_id is not None:
            self._db, self._file_id = sf.check_file(self._db, self.path, self._file_id, self.n_labelled)

    # -- replaying the events ---------------------------------------------------------
    def _load(self):
        """Classes, per-item answer stacks, skips and the undo stack, from the events."""
        self._v1_pending = self._version == 1
        if self._v1_pending:
            self._action_kind, self._action_role = {}, {}
            return
        for name, value in sf.replay(self._db, answers=_ANSWERS, unsure=UNSURE).items():
            setattr(self, name, value)

    def _bind(self, view: Items | None):
        """Map this session's rows to stored items (renames, edits, migration, refusal)."""
        if self._v1_pending:
            if view is None:
                raise ValueError(f"{self.path} was written by an older alwidget; open it with its images "
                                 "(or keys) once to convert it")
            if self.readonly:  # convert a copy in memory; the file stays as it is
                mem = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
                self._db.backup(mem)
                self._db.close()
                self._db = mem
            backup = sf.migrate_v1(self._db, self.path if not self.readonly else ":memory:", view.keys,
                                   backup=not self.readonly)
            self._version = SCHEMA_VERSION
            self._load()
            self.report["migrated_backup"] = backup
        if view is None:
            view = stored_view(self._keys)
        self.items = view
        self.n_samples = len(view)
        bind_view(self, view)
        self._rebuild_rows()

    def _item_state(self, item: int):
        """(class pos or -1, unsure, test, skip action or 0) of one item."""
        stack = self._stacks.get(item)
        top_action, state = stack[-1] if stack else (0, -1)
        skip = self._skips.get(item, 0)
        if skip and skip < top_action:
            skip = 0
        test = state >= 0 and self._action_role.get(top_action) == "test"
        return (state if state >= 0 else -1), state == UNSURE, test, skip

    def _rebuild_rows(self, rows=None):
        self._state = None  # the rows change: state() builds a new snapshot
        n = self.n_samples
        if rows is None:
            self._cls = np.full(n, -1, dtype=np.int64)
            self._unsure = np.zeros(n, dtype=bool)
            self._test = np.zeros(n, dtype=bool)
            self._skip_at = np.full(n, -1, dtype=np.int64)
            rows = [self._item_row[i] for i in self._item_row]
        for r in rows:
            item = int(self._row_item[r])
            cls, unsure, test, skip = self._item_state(item) if item else (-1, False, False, 0)
            self._cls[r], self._unsure[r], self._test[r] = cls, unsure, test
            self._skip_at[r] = self._answers_before[skip] if skip else -1

    # -- classes -----------------------------------------------------------------
    def add_class(self, name) -> int:
        """Register a class name (no-op when known); return its id (0-based, in order of appearance)."""
        name = check_class_name(name)
        with self._lock:
            if name in self._class_ids:
                return self._class_ids[name]
            self._writable()
            try:
                with self._transaction() as db:
                    cur = db.execute("INSERT INTO classes(name, created_at) VALUES (?, ?)", (name, time.time()))
            except sqlite3.Error as exc:
                raise sf.write_error(exc, self.path) from None
            self._db_class_ids.append(cur.lastrowid)
            self._class_ids[name] = len(self.classes)
            self.classes.append(name)
            return self._class_ids[name]

    # -- changes -----------------------------------------------------------------
    def _ensure_items(self, db, rows: np.ndarray, contents) -> list:
        """Item ids of rows, inserting the rows' keys the first time they get an event."""
        ids, now = [], time.time()
        sizes = self.items.sizes
        for r, content in zip(rows.tolist(), contents):
            item = int(self._row_item[r])
            if not item:
                size = None if sizes is None else int(sizes[r])
                item = db.execute("INSERT INTO items(key, content, size, created_at) VALUES (?, ?, ?, ?)",
                                  (self.items.keys[r], content, size, now)).lastrowid
            ids.append(item)
        return ids

    def _append(self, kind: str, rows: np.ndarray, class_pos: int = -1, role: str = "train") -> int:
        with self._lock:
            self._writable()
            new = rows[self._row_item[rows] == 0]
            contents = dict(zip(new.tolist(), self.items.contents(new))) if kind != "skip" else {}
            cid = None if class_pos < 0 else self._db_class_ids[class_pos]
            try:
                with self._transaction() as db:
                    ids = self._ensure_items(db, rows, [contents.get(r) for r in rows.tolist()])
                    action = db.execute("INSERT INTO actions(kind, role, time) VALUES (?, ?, ?)",
                                        (kind, role, time.time())).lastrowid
                    db.executemany("INSERT INTO events(action, item, class_id) VALUES (?, ?, ?)",
                                   [(action, i, cid) for i in ids])
            except sqlite3.Error as exc:
                raise sf.write_error(exc, self.path) from None
            # Committed: now the in-memory view may change.
            self._remember(action, kind, role, rows, ids, class_pos)
            return action

    def _remember(self, action, kind, role, rows, ids, class_pos):
        for r, item in zip(rows.tolist(), ids):
            if not self._row_item[r]:
                self._row_item[r] = item
                self._item_row[item] = r
                self._keys[self.items.keys[r]] = item
            if kind == "skip":
                self._skips[item] = action
            else:
                state = UNSURE if kind == "unsure" else class_pos
                self._stacks.setdefault(item, []).append((action, state))
        self._action_items[action] = list(ids)
        self._action_kind[action], self._action_role[action] = kind, role
        self._answers_before[action] = self._n_answers
        self._n_answers += kind in _ANSWERS
        self._undo_stack.append(action)
        self.version += 1
        self._rebuild_rows(rows.tolist())

    def label(self, index, name, *, role: str = "train") -> int:
        """Label one row; returns the action id. Committed before returning."""
        return self.label_many([index], name, role=role)

    def label_many(self, indices, name, *, role: str = "train") -> int:
        """Label several rows with one class as ONE action (one undo reverts all of them)."""
        if role not in ("train", "test"):
            raise ValueError(f"role must be 'train' or 'test', got {role!r}")
        rows = check_rows(indices, self.n_samples)
        pos = self.add_class(name)
        return self._append("label", rows, pos, role)

    def mark_unsure(self, indices) -> int:
        """Answer "unsure" for rows (kept and listed for review, never trained on); one action."""
        return self._append("unsure", check_rows(indices, self.n_samples))

    def skip(self, indices) -> int:
        """Set rows aside for now (they come back later); one undoable action."""
        return self._append("skip", check_rows(indices, self.n_samples))

    def unlabel(self, indices) -> int:
        """Remove the answers of some rows as one undoable action."""
        return self._append("unlabel", check_rows(indices, self.n_samples))

    @property
    def can_undo(self) -> bool:
        return self._undoable() is not None

    def _undoable(self):
        for action in reversed(self._undo_stack):
            if any(i in self._item_row for i in self._action_items.get(action, ())):
                return action
        return None

    def undo(self) -> dict | None:
        """Revert the newest live action that touches a row of this view.

        Returns {row: class name or None} for the rows it changed back, or None when there is
        nothing to undo. The undo itself is an event, so it survives reopening.
        """
        with self._lock:
            self._writable()
            target = self._undoable()
            if target is None:
                return None
            try:
                with self._transaction() as db:
                    db.execute("INSERT INTO actions(kind, role, time, undoes) VALUES ('undo', 'train', ?, ?)",
                               (time.time(), target))
            except sqlite3.Error as exc:
                raise sf.write_error(exc, self.path) from None
            self._undo_stack.remove(target)
            kind = self._action_kind.pop(target)
            self._n_answers -= kind in _ANSWERS
            items = self._action_items.pop(target)
            for item in items:
                if kind == "skip":
                    if self._skips.get(item) == target:
                        del self._skips[item]
                else:
                    self._stacks[item] = [(a, s) for a, s in self._stacks[item] if a != target]
            self._renumber_answers()
            self.version += 1
            rows = [self._item_row[i] for i in items if i in self._item_row]
            self._rebuild_rows(rows)
            return {r: (self.classes[self._cls[r]] if self._cls[r] >= 0 else None) for r in rows}

    def _renumber_answers(self):
        self._state = None
        count = 0
        for a in self._undo_stack:
            self._answers_before[a] = count
            count += self._action_kind[a] in _ANSWERS
        self._skip_at = np.full(self.n_samples, -1, dtype=np.int64)
        for item, a in self._skips.items():
            r = self._item_row.get(item)
            if r is not None and self._item_state(item)[3]:
                self._skip_at[r] = self._answers_before[a]

    # -- reading -----------------------------------------------------------------
    def current(self) -> dict[int, str]:
        """The current labels of this view's rows (train and test), {row: class name}, in row order."""
        with self._lock:
            idx = np.flatnonzero(self._cls >= 0)
            return {int(i): self.classes[self._cls[i]] for i in idx}

    def current_ids(self) -> np.ndarray:
        """(n_samples,) int64 class ids of the labels (train and test), -1 otherwise; a copy."""
        with self._lock:
            return self._cls.copy()

    def state(self) -> StoreState:
        """Read-only copies of the per-row arrays: class ids, unsure, test, answers since a skip.

        One snapshot is shared until the rows change (on a million rows a label's round reads it
        several times, 5 ms per copy here).
        """
        with self._lock:
            if self._state is None:
                age = np.where(self._skip_at >= 0, self._n_answers - self._skip_at, -1)
                st = StoreState(self._cls.copy(), self._unsure.copy(), self._test.copy(), age)
                for a in st:
                    a.setflags(write=False)
                self._state = st
            return self._state

    @property
    def n_labelled(self) -> int:
        return int((self._cls >= 0).sum())

    def recent(self, n: int = 10) -> list:
        """The newest ``n`` answers on rows of this view: [{index, label, unsure, test, time}], newest first."""
        with self._lock:
            return recent_answers(self, n)

    def history(self):
        """Every event as a DataFrame: action, kind, role, time, undoes, key, index (row or NA), label."""
        with self._lock:
            return history_dataframe(self)

    def to_dataframe(self, names=None):
        """Every answer in the store: index (row, NA when the item is gone), key, [name], label,
        kind ("train", "test" or "unsure"), present, labelled_at (UTC)."""
        with self._lock:
            return labels_dataframe(self, names)

    def export(self, path, names=None) -> Path:
        """Write every answer to CSV or parquet (chosen by the file suffix); see to_dataframe."""
        return export_dataframe(self.to_dataframe(names), path)

    # -- lifetime ----------------------------------------------------------------
    def on_close(self, callback) -> None:
        """Call ``callback(reason)`` when the store is closed (by its owner or by a takeover)."""
        self._on_close.append(callback)

    def close(self, reason: str | None = None):
        with self._lock:
            if self._db is None:
                return
            self.closed_reason = reason
            self._release()
            callbacks = list(self._on_close)
        for cb in callbacks:
            try:
                cb(reason)
            except Exception:
                pass

    @property
    def closed(self) -> bool:
        return self._db is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return (f"LabelStore({self.path!r}, n_samples={self.n_samples}, labelled={self.n_labelled}, "
                f"classes={len(self.classes)})")

