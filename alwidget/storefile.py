"""The label store's file: opening with clear messages, schema, migration, one writer at a time.

Everything here is about the SQLite file itself, not about labels: why a file cannot be opened
(empty, damaged, not a store, read-only), the schema and its migration from version 1, the lock
that keeps a second process from writing the same store, and recovery when the file is deleted
or replaced while open.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import time
import weakref
from pathlib import Path

__all__ = [
    "SCHEMA_VERSION", "StoreError", "StoreMismatchError", "StoreLockedError", "StoreDamagedError",
    "StoreWriteError", "StoreClosedError", "connect", "StoreLock",
]

SCHEMA_VERSION = 2
_SQLITE_MAGIC = b"SQLite format 3\x00"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, content TEXT, size INTEGER,
    created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS classes (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('label', 'unsure', 'unlabel', 'skip', 'undo')),
    role TEXT NOT NULL DEFAULT 'train' CHECK (role IN ('train', 'test')),
    time REAL NOT NULL, undoes INTEGER REFERENCES actions(id));
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY, action INTEGER NOT NULL REFERENCES actions(id),
    item INTEGER NOT NULL REFERENCES items(id), class_id INTEGER REFERENCES classes(id));
CREATE INDEX IF NOT EXISTS events_action ON events(action);
CREATE TABLE IF NOT EXISTS renames (
    item INTEGER NOT NULL REFERENCES items(id), old_key TEXT NOT NULL, new_key TEXT NOT NULL,
    time REAL NOT NULL);
"""


class StoreError(RuntimeError):
    """A label store that cannot be opened or written; the message says what to do."""


class StoreMismatchError(ValueError):
    """The store holds labels for other items than the ones given (no key in common)."""


class StoreLockedError(StoreError):
    """Another process has the store open for writing."""


class StoreDamagedError(StoreError):
    """The store file is empty or damaged (not merely some other kind of file)."""


class StoreWriteError(StoreError):
    """A write failed (disk full, read-only, file deleted or replaced); nothing was acknowledged."""


class StoreClosedError(StoreError):
    """The store (or the session on it) was closed, e.g. taken over by a newer one."""


# ----------------------------------------------------------------------------- opening
def check_existing_file(p: Path) -> None:
    """Refuse files that are not usable stores, with a sentence saying what happened."""
    if p.is_dir():
        raise ValueError(f"store path {p} is a folder; pass a file path such as {p / 'labels.sqlite'}")
    size = p.stat().st_size
    if size == 0:
        raise StoreDamagedError(
            f"the label store {p} is empty (0 bytes): it holds no labels. If it held labels before, it was "
            "truncated (a full disk or an interrupted copy); restore it from a backup. To start a new store "
            "there, delete the empty file.")
    with open(p, "rb") as f:
        head = f.read(16)
    if head != _SQLITE_MAGIC:
        raise ValueError(f"{p} is not an alwidget label store (not an SQLite file); pass another store path")


def connect(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    """An SQLite connection in autocommit mode, WAL + synchronous=FULL for writers."""
    memory = path == ":memory:"
    uri = f"file:{Path(path).resolve()}?mode=ro" if readonly and not memory else path
    db = sqlite3.connect(uri, uri=readonly and not memory, isolation_level=None,
                         check_same_thread=False, timeout=30)
    try:
        if not memory and not readonly:
            db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db


def check_integrity(db: sqlite3.Connection, path: str) -> set:
    """The table names of a healthy file; StoreDamagedError for a damaged one."""
    try:
        verdict = db.execute("PRAGMA quick_check").fetchone()[0]
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        verdict, tables = str(exc), None
    if verdict != "ok" or tables is None:
        raise StoreDamagedError(
            f"the label store {path} is damaged (SQLite: {verdict}). Move it aside and keep it: "
            f"`sqlite3 {path} .recover` can often rescue its labels into a new file. Then open a new store.")
    return tables


def check_writable(p: Path) -> None:
    folder = p.parent
    if p.exists() and not os.access(p, os.W_OK):
        raise StoreWriteError(
            f"the label store {p} is read-only: labels could not be saved. Make it writable "
            f"(chmod u+w {p}), or pass store= a path you can write; LabelStore.open_readonly reads it.")
    if not os.access(folder, os.W_OK):
        raise StoreWriteError(
            f"the folder {folder} is read-only: the label store {p.name} cannot be written there "
            "(SQLite also writes -wal and -shm files beside it). Pass store= a path in a writable folder.")


def create_schema(db: sqlite3.Connection, source: str) -> None:
    for stmt in SCHEMA.strip().split(";"):
        if stmt.strip():
            db.execute(stmt)
    db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", [
        ("schema_version", str(SCHEMA_VERSION)), ("created_at", repr(time.time())), ("source", source or ""),
    ])


def schema_version(db: sqlite3.Connection, path: str) -> int:
    meta = dict(db.execute("SELECT key, value FROM meta"))
    version = int(meta.get("schema_version", "0") or 0)
    if version > SCHEMA_VERSION or version < 1:
        raise ValueError(f"{path} has store schema version {version}; this alwidget reads versions 1 to "
                         f"{SCHEMA_VERSION}. Upgrade alwidget, or export the labels with the newer version.")
    return version


# ----------------------------------------------------------------------------- migration
def migrate_v1(db: sqlite3.Connection, path: str, keys, *, backup: bool = True) -> str | None:
    """Rewrite a version-1 store (labels by row index) as version 2 (labels by item key), in place.

    Version 1 stored row numbers of the feature set it was made for; ``keys`` are this set's
    keys in row order, which must have as many rows. A copy of the old file is kept beside it
    (returned path) before anything changes.
    """
    meta = dict(db.execute("SELECT key, value FROM meta"))
    n_old = int(meta.get("n_samples", "0"))
    if len(keys) != n_old:
        raise StoreMismatchError(
            f"{path} was written by an older alwidget for a set of {n_old} items; this set has {len(keys)}. "
            f"Its labels are stored by row number, so open it once with the set it was made for (before "
            "images were added or removed) to convert it; after that, labels follow the images.")
    copy = None
    if backup and path != ":memory:":
        copy = f"{path}.v1-backup"
        target = sqlite3.connect(copy)
        db.backup(target)
        target.close()
    now = time.time()
    db.execute("PRAGMA foreign_keys=OFF")
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("ALTER TABLE actions RENAME TO actions_v1")
        db.execute("ALTER TABLE events RENAME TO events_v1")
        db.execute("DROP INDEX IF EXISTS events_action")
        create_schema(db, meta.get("source", ""))
        samples = [r[0] for r in db.execute("SELECT DISTINCT sample FROM events_v1 ORDER BY sample")]
        db.executemany("INSERT INTO items(id, key, created_at) VALUES (?, ?, ?)",
                       [(s + 1, keys[s], now) for s in samples])
        db.execute("INSERT INTO actions(id, kind, role, time, undoes) "
                   "SELECT id, kind, 'train', time, undoes FROM actions_v1")
        db.execute("INSERT INTO events(seq, action, item, class_id) "
                   "SELECT seq, action, sample + 1, class_id FROM events_v1")
        db.execute("DROP TABLE events_v1")
        db.execute("DROP TABLE actions_v1")
        db.execute("DELETE FROM meta WHERE key IN ('n_samples', 'fingerprint')")
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('migrated_from', '1')")
        db.execute("COMMIT")
    except Exception:
        db.execute("ROLLBACK")
        raise
    finally:
        db.execute("PRAGMA foreign_keys=ON")
    return copy


# ----------------------------------------------------------------------------- one writer
_LIVE: dict = {}  # resolved path -> weakref to the LabelStore writing it in this process


class StoreLock:
    """An exclusive lock on ``<store>.lock`` (flock), held while a store is open for writing.

    The kernel drops a flock when its process dies, so a lock left by a crashed process is
    simply taken; the file's text (pid, host, time) only serves the message of a refusal.
    """

    def __init__(self, db_path: str):
        self.path = f"{db_path}.lock"
        self._fd = None

    def acquire(self, store_path: str) -> None:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            raise StoreLockedError(
                f"the label store {store_path} is open in another process ({holder}). One writer at a time "
                "keeps every label safe: close that session (or stop its kernel) and try again, or use "
                "LabelStore.open_readonly to read it.") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        since = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(info["since"])))
        return f"pid {info['pid']} on {info['host']}, since {since}"
    except Exception:
        return "a process that is still running"


def take_over(path: str, store, reason: str) -> None:
    """Close the store of this process that writes ``path`` (a re-run cell) and register ``store``."""
    key = os.path.realpath(path)
    ref = _LIVE.get(key)
    old = ref() if ref is not None else None
    if old is not None and old is not store:
        old.close(reason=reason)
    _LIVE[key] = weakref.ref(store)


def forget(path: str, store) -> None:
    key = os.path.realpath(path)
    ref = _LIVE.get(key)
    if ref is not None and ref() in (store, None):
        _LIVE.pop(key, None)


# ----------------------------------------------------------------------------- file changes
def file_identity(path: str):
    st = os.stat(path)
    return st.st_dev, st.st_ino


def recover_copy(db: sqlite3.Connection, path: str) -> str:
    """Copy the open database (still readable through its connection) to a new file beside ``path``."""
    target = f"{path}.recovered-{time.strftime('%Y%m%d-%H%M%S')}"
    out = sqlite3.connect(target)
    try:
        db.backup(out)
    finally:
        out.close()
    return target


def check_file(db: sqlite3.Connection, path: str, opened, n_labelled: int):
    """(connection, file identity) after checking that ``path`` is still the file opened.

    Deleted: it is written again from the open connection (which still reads the deleted file)
    and a warning says so. Replaced by another file: the write is refused, with a copy of this
    session's store beside it.
    """
    try:
        now = file_identity(path)
    except FileNotFoundError:
        return _recreate(db, path, n_labelled)
    if now != opened:
        copy = recover_copy(db, path)
        raise StoreWriteError(
            f"the label store {path} was replaced by another file while this session had it open: this label "
            f"was NOT saved. Every label of this session so far was copied to {copy}; open that file "
            "(store=...) to continue.")
    return db, opened


def _recreate(db: sqlite3.Connection, path: str, n_labelled: int):
    import warnings

    tmp = f"{path}.tmp-recreate"
    out = sqlite3.connect(tmp)
    try:
        db.backup(out)
    finally:
        out.close()
    db.close()  # removes the old -wal/-shm files, which belong to the deleted file
    os.replace(tmp, path)
    warnings.warn(f"the label store {path} was deleted while open; it was written again from this session "
                  f"({n_labelled} labels in this view)", RuntimeWarning, stacklevel=5)
    return connect(path), file_identity(path)


def write_error(exc: sqlite3.Error, path: str) -> StoreWriteError:
    """A sentence for a failed write; the caller raises it (the label was not saved)."""
    text = str(exc).lower()
    if "full" in text:
        what = f"the disk holding {path} is full"
        todo = "Free some space, then label again"
    elif "readonly" in text or "read-only" in text:
        what = f"{path} became read-only"
        todo = f"Make it writable again (chmod u+w {path}), then label again"
    else:
        what = f"writing {path} failed (SQLite: {exc})"
        todo = "Check the disk, then label again"
    return StoreWriteError(f"{what}: this label was NOT saved; every label saved before is safe. {todo}.")


# ----------------------------------------------------------------------------- default location
def default_store_path(items, name: str | None = None, attempt: int = 0) -> Path:
    """Where a widget keeps labels when no store is given: ``<cache>/labels/<name>-<hash>.sqlite``.

    Derived from the item set's source (the folder's absolute path, the data set's name, or
    for bare arrays the number of rows), never from feature values, so re-embedding, another
    encoder, or images added to the folder reopen the same file. ``attempt`` > 0 gives the
    next candidate, for bare arrays whose rows turned out to hold other data.
    """
    import hashlib
    import re

    from ._util import cache_dir

    ident = items.source if not items.tolerant else f"{items.source}:{len(items)}"
    if attempt:
        ident += f"#{attempt}"
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name or items.source.split(":")[-1].rstrip("/").split("/")[-1]
                  or "labels").strip("-.") or "labels"
    digest = hashlib.blake2b(ident.encode("utf-8", "surrogateescape"), digest_size=6).hexdigest()
    return cache_dir("labels") / f"{slug[:60]}-{digest}.sqlite"


@contextlib.contextmanager
def transaction(db):
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (the connection is in autocommit mode)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")  # a failed COMMIT (disk full) is rolled back too: no half-open transaction
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise


def replay(db, *, answers, unsure: int) -> dict:
    """A schema-2 store's derived state, from its actions and events (LabelStore attributes).

    Live actions are those no undo has undone; per item, a stack of (action, class position, -1
    for unlabel, or ``unsure``), newest last; per item its newest live skip; per action the number
    of answers (kinds in ``answers``) given before it, which dates skips.
    """
    out = {"classes": [r[0] for r in db.execute("SELECT name FROM classes ORDER BY id")],
           "_db_class_ids": [r[0] for r in db.execute("SELECT id FROM classes ORDER BY id")]}
    out["_class_ids"] = {n: i for i, n in enumerate(out["classes"])}
    to_pos = {cid: i for i, cid in enumerate(out["_db_class_ids"])}
    rows = db.execute("SELECT id, kind, role, undoes FROM actions ORDER BY id").fetchall()
    undone = {u for _, kind, _, u in rows if kind == "undo"}
    live = [(a, kind, role) for a, kind, role, _ in rows if kind != "undo" and a not in undone]
    kinds = {a: k for a, k, _ in live}
    before, count = {}, 0
    for a, kind, _ in live:
        before[a] = count
        count += kind in answers
    stacks, skips, action_items = {}, {}, {}
    for action, item, cid in db.execute("SELECT action, item, class_id FROM events ORDER BY seq"):
        kind = kinds.get(action)
        if kind is None:
            continue
        action_items.setdefault(action, []).append(item)
        if kind == "skip":
            skips[item] = action
        else:
            state = unsure if kind == "unsure" else (-1 if cid is None else to_pos[cid])
            stacks.setdefault(item, []).append((action, state))
    out.update(_undo_stack=[a for a, _, _ in live], _action_kind=kinds, _action_role={a: r for a, _, r in live},
               _answers_before=before, _n_answers=count, _stacks=stacks, _skips=skips, _action_items=action_items,
               _keys=dict(db.execute("SELECT key, id FROM items")), version=len(rows))
    return out
