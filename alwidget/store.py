"""LabelStore: labels on SQLite, durable before acknowledged.

Every change is an append-only event; the current labels and the undo history are derived
from the events, so reopening a store file restores both. The file remembers the number of
samples and the content fingerprint of the features it was made for and refuses others.

Schema (version 1)::

    meta(key TEXT PRIMARY KEY, value TEXT)        schema_version, n_samples, fingerprint, created_at
    classes(id INTEGER PRIMARY KEY, name TEXT UNIQUE, created_at REAL)
    actions(id INTEGER PRIMARY KEY, kind TEXT, time REAL, undoes INTEGER)
        kind: 'label' (one or many samples), 'unlabel', or 'undo' (undoes = the action undone)
    events(seq INTEGER PRIMARY KEY, action INTEGER, sample INTEGER, class_id INTEGER)
        one row per sample of a label/unlabel action; class_id NULL removes the label

Undo is last-in-first-out over the label/unlabel actions that are not undone yet.
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

__all__ = ["LabelStore", "StoreMismatchError", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS classes (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('label', 'unlabel', 'undo')),
    time REAL NOT NULL, undoes INTEGER REFERENCES actions(id));
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY, action INTEGER NOT NULL REFERENCES actions(id),
    sample INTEGER NOT NULL, class_id INTEGER REFERENCES classes(id));
CREATE INDEX IF NOT EXISTS events_action ON events(action);
"""


class StoreMismatchError(ValueError):
    """The store file was made for other features (different N or content fingerprint)."""


def check_class_name(name) -> str:
    """A class name: a non-empty string (numpy strings accepted)."""
    if isinstance(name, (bytes, bytearray)):
        raise TypeError(f"class names must be str, got bytes {name!r}; decode them first")
    if not isinstance(name, str):
        raise TypeError(f"class names must be str, got {type(name).__name__} {name!r}")
    name = str(name)
    if not name.strip():
        raise ValueError("class names must be non-empty strings")
    return name


class LabelStore:
    """Durable, append-only label events on SQLite.

    Parameters
    ----------
    path : str, Path or ":memory:"
        The SQLite file (created with its folder if missing) or ":memory:" (nothing persists).
    n_samples : int
        Number of samples of the feature set; required to create a file, checked on reopen.
    fingerprint : str, optional
        Content fingerprint of the features (``alwidget._util.fingerprint``); checked on reopen.
    readonly : bool
        Open an existing file without changing it (export, inspection).

    Every write is committed (WAL, ``synchronous=FULL``) before the method returns.
    """

    def __init__(self, path=":memory:", n_samples: int | None = None, fingerprint: str | None = None,
                 *, readonly: bool = False):
        if path is None:
            path = ":memory:"
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a file path or ':memory:', got {type(path).__name__}")
        if n_samples is not None and (isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer))
                                      or n_samples < 1):
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        self.path = str(path)
        self.readonly = readonly
        memory = self.path == ":memory:"
        self._lock = threading.RLock()
        if not memory:
            p = Path(self.path)
            if readonly and not p.exists():
                raise FileNotFoundError(f"store file {p} does not exist")
            if p.is_dir():
                raise ValueError(f"store path {p} is a folder; pass a file path such as {p / 'labels.sqlite'}")
            p.parent.mkdir(parents=True, exist_ok=True)
        uri = f"file:{Path(self.path).resolve()}?mode=ro" if readonly and not memory else self.path
        try:
            self._db = sqlite3.connect(uri, uri=readonly and not memory, isolation_level=None,
                                       check_same_thread=False, timeout=30)
            if not memory and not readonly:
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"{self.path} is not an alwidget label store (SQLite said: {exc})") from None
        if tables and "meta" not in tables:
            self._db.close()
            raise ValueError(f"{self.path} is an SQLite file but not an alwidget label store")
        if not tables:
            if readonly:
                self._db.close()
                raise ValueError(f"{self.path} is empty, not an alwidget label store")
            if n_samples is None:
                self._db.close()
                raise ValueError("n_samples is required to create a new label store")
            self._create(int(n_samples), fingerprint)
        self._check_meta(n_samples, fingerprint)
        self._load()

    # -- opening -----------------------------------------------------------------
    @classmethod
    def open_readonly(cls, path) -> "LabelStore":
        """Open an existing store file for reading (export, inspection); it is not modified."""
        return cls(path, readonly=True)

    def _create(self, n_samples: int, fingerprint: str | None):
        with self._transaction() as db:
            for stmt in _SCHEMA.strip().split(";"):
                if stmt.strip():
                    db.execute(stmt)
            db.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", [
                ("schema_version", str(SCHEMA_VERSION)),
                ("n_samples", str(n_samples)),
                ("fingerprint", fingerprint or ""),
                ("created_at", repr(time.time())),
            ])

    def _check_meta(self, n_samples, fingerprint):
        meta = dict(self._db.execute("SELECT key, value FROM meta"))
        version = int(meta.get("schema_version", "0"))
        if version > SCHEMA_VERSION or version < 1:
            self._db.close()
            raise ValueError(f"{self.path} has store schema version {version}; this alwidget reads version "
                             f"{SCHEMA_VERSION}. Upgrade alwidget or export the labels with the newer version.")
        self.n_samples = int(meta["n_samples"])
        self.fingerprint = meta["fingerprint"] or None
        if n_samples is not None and int(n_samples) != self.n_samples:
            self._db.close()
            raise StoreMismatchError(
                f"store {self.path} was made for {self.n_samples} samples but these features have {n_samples}; "
                "open it with the features it was made for, or use a new store path")
        if fingerprint and self.fingerprint and fingerprint != self.fingerprint:
            self._db.close()
            raise StoreMismatchError(
                f"store {self.path} was made for different features (fingerprint {self.fingerprint[:12]}..., "
                f"these are {fingerprint[:12]}...); open it with the features it was made for, "
                "or use a new store path")
        if fingerprint and not self.fingerprint and not self.readonly:
            with self._transaction() as db:
                db.execute("UPDATE meta SET value=? WHERE key='fingerprint'", (fingerprint,))
            self.fingerprint = fingerprint

    def _load(self):
        """Replay the events: class list, per-sample label stacks and the undo stack."""
        self.classes: list[str] = [r[0] for r in self._db.execute("SELECT name FROM classes ORDER BY id")]
        self._class_ids = {n: i for i, n in enumerate(self.classes)}
        db_ids = [r[0] for r in self._db.execute("SELECT id FROM classes ORDER BY id")]
        to_pos = {cid: i for i, cid in enumerate(db_ids)}
        self._db_class_ids = db_ids  # position -> row id (ids are 1-based in SQLite)
        actions = self._db.execute("SELECT id, kind, undoes FROM actions ORDER BY id").fetchall()
        undone = {u for _, kind, u in actions if kind == "undo"}
        self._undo_stack: list[int] = [a for a, kind, _ in actions if kind != "undo" and a not in undone]
        self._stacks: dict[int, list[tuple[int, int]]] = {}  # sample -> [(action, class pos)], newest last
        self._action_samples: dict[int, list[int]] = {}  # live action -> its samples
        live = set(self._undo_stack)
        for action, sample, cid in self._db.execute("SELECT action, sample, class_id FROM events ORDER BY seq"):
            if action in live:
                self._stacks.setdefault(sample, []).append((action, -1 if cid is None else to_pos[cid]))
                self._action_samples.setdefault(action, []).append(sample)
        self._labels = np.full(self.n_samples, -1, dtype=np.int64)
        for sample, stack in self._stacks.items():
            self._labels[sample] = stack[-1][1]
        self.version = len(actions)

    class _Tx:
        def __init__(self, store):
            self.store = store

        def __enter__(self):
            self.store._db.execute("BEGIN IMMEDIATE")
            return self.store._db

        def __exit__(self, exc_type, exc, tb):
            if exc_type is None:
                self.store._db.execute("COMMIT")
            else:
                self.store._db.execute("ROLLBACK")
            return False

    def _transaction(self):
        return LabelStore._Tx(self)

    def _writable(self):
        if self.readonly:
            raise RuntimeError(f"store {self.path} was opened read-only")
        if self._db is None:
            raise RuntimeError("the label store is closed")

    # -- classes -----------------------------------------------------------------
    def add_class(self, name) -> int:
        """Register a class name (no-op when known); return its id (0-based, in order of appearance)."""
        name = check_class_name(name)
        with self._lock:
            if name in self._class_ids:
                return self._class_ids[name]
            self._writable()
            with self._transaction() as db:
                cur = db.execute("INSERT INTO classes(name, created_at) VALUES (?, ?)", (name, time.time()))
            self._db_class_ids.append(cur.lastrowid)
            self._class_ids[name] = len(self.classes)
            self.classes.append(name)
            return self._class_ids[name]

    # -- changes -----------------------------------------------------------------
    def _check_indices(self, indices) -> np.ndarray:
        arr = np.asarray(indices)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        if arr.ndim != 1:
            raise ValueError(f"indices must be a 1-D list of sample indices, got shape {arr.shape}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"indices must be integers, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= self.n_samples):
            bad = arr[(arr < 0) | (arr >= self.n_samples)]
            raise IndexError(f"sample index {int(bad[0])} is out of range for {self.n_samples} samples "
                             f"(valid: 0..{self.n_samples - 1})")
        _, first = np.unique(arr, return_index=True)
        return arr[np.sort(first)]  # drop repeats, keep order

    def _append(self, kind: str, samples: np.ndarray, class_pos: int) -> int:
        with self._lock:
            self._writable()
            cid = None if class_pos < 0 else self._db_class_ids[class_pos]
            with self._transaction() as db:
                action = db.execute("INSERT INTO actions(kind, time) VALUES (?, ?)", (kind, time.time())).lastrowid
                db.executemany("INSERT INTO events(action, sample, class_id) VALUES (?, ?, ?)",
                               [(action, int(s), cid) for s in samples])
            # Committed: now the in-memory view may change.
            for s in samples.tolist():
                self._stacks.setdefault(s, []).append((action, class_pos))
            self._action_samples[action] = samples.tolist()
            self._undo_stack.append(action)
            self._labels[samples] = class_pos
            self.version += 1
            return action

    def label(self, index, name) -> int:
        """Label one sample; returns the action id. Committed before returning."""
        return self.label_many([index], name)

    def label_many(self, indices, name) -> int:
        """Label several samples with one class as ONE action (one undo reverts all of them)."""
        samples = self._check_indices(indices)
        if samples.size == 0:
            raise ValueError("label_many needs at least one index")
        pos = self.add_class(name)
        return self._append("label", samples, pos)

    def unlabel(self, indices) -> int:
        """Remove the labels of some samples as one undoable action."""
        samples = self._check_indices(indices)
        if samples.size == 0:
            raise ValueError("unlabel needs at least one index")
        return self._append("unlabel", samples, -1)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo_stack)

    def undo(self) -> dict | None:
        """Revert the most recent label/unlabel action not undone yet.

        Returns {index: class name or None} for the samples it changed back, or None when
        there is nothing to undo. The undo itself is an event, so it survives reopening.
        """
        with self._lock:
            self._writable()
            if not self._undo_stack:
                return None
            target = self._undo_stack[-1]
            with self._transaction() as db:
                db.execute("INSERT INTO actions(kind, time, undoes) VALUES ('undo', ?, ?)", (time.time(), target))
            self._undo_stack.pop()
            changed = {}
            for s in self._action_samples.pop(target):
                stack = self._stacks[s]
                while stack and stack[-1][0] == target:
                    stack.pop()
                pos = stack[-1][1] if stack else -1
                self._labels[s] = pos
                changed[s] = None if pos < 0 else self.classes[pos]
            self.version += 1
            return changed

    # -- reading -----------------------------------------------------------------
    def current(self) -> dict[int, str]:
        """The current labels, {sample index: class name}, in index order."""
        with self._lock:
            idx = np.flatnonzero(self._labels >= 0)
            return {int(i): self.classes[self._labels[i]] for i in idx}

    def current_ids(self) -> np.ndarray:
        """(n_samples,) int64 class ids (positions in ``classes``), -1 for unlabelled; a copy."""
        with self._lock:
            return self._labels.copy()

    @property
    def n_labelled(self) -> int:
        return int((self._labels >= 0).sum())

    def history(self):
        """Every event as a DataFrame: action, kind, time, undoes, sample, label (None = removed)."""
        import pandas as pd

        with self._lock:
            rows = self._db.execute(
                "SELECT a.id, a.kind, a.time, a.undoes, e.sample, c.name FROM actions a "
                "LEFT JOIN events e ON e.action = a.id LEFT JOIN classes c ON c.id = e.class_id "
                "ORDER BY a.id, e.seq").fetchall()
        df = pd.DataFrame(rows, columns=["action", "kind", "time", "undoes", "sample", "label"])
        df["time"] = pd.to_datetime(df["time"], unit="s", utc=True)
        df["undoes"] = df["undoes"].astype("Int64")
        df["sample"] = df["sample"].astype("Int64")
        return df

    def to_dataframe(self, names=None):
        """Current labels as a DataFrame: index, label, labelled_at (UTC) [, name].

        names : optional sequence of length n_samples (file names, ids) added as a column.
        """
        import pandas as pd

        with self._lock:
            cur = self.current()
            times = dict(self._db.execute("SELECT id, time FROM actions")) if cur else {}
            when = {s: times[self._stacks[s][-1][0]] for s in cur}
        idx = np.fromiter(cur.keys(), dtype=np.int64, count=len(cur))
        df = pd.DataFrame({
            "index": idx,
            "label": pd.Series(list(cur.values()), dtype=object),
            "labelled_at": pd.to_datetime([when[int(i)] for i in idx], unit="s", utc=True),
        })
        if names is not None:
            if len(names) != self.n_samples:
                raise ValueError(f"names must have one entry per sample ({self.n_samples}), got {len(names)}")
            df.insert(1, "name", [str(names[i]) for i in idx])
        return df

    def export(self, path, names=None) -> Path:
        """Write the current labels to CSV or parquet (chosen by the file suffix)."""
        return export_dataframe(self.to_dataframe(names), path)

    # -- lifetime ----------------------------------------------------------------
    def close(self):
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return (f"LabelStore({self.path!r}, n_samples={self.n_samples}, labelled={self.n_labelled}, "
                f"classes={len(self.classes)})")


def export_dataframe(df, path) -> Path:
    """Write a DataFrame to .csv or .parquet (by suffix); a clear error for anything else."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"export path must end in .csv or .parquet, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        try:
            df.to_parquet(path, index=False)
        except ImportError as exc:
            raise ImportError(f"parquet export needs pyarrow: pip install 'alwidget[parquet]' ({exc})") from None
    return path
