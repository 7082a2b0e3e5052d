"""Binding a session's rows to the items of a label store, and the store's tables for export.

Binding is where identity rules apply (see :mod:`alwidget.items`): stored keys found among the
rows are mapped to them; labelled items whose key is gone are matched to new rows by content
(a rename or move) or reported as gone; labelled files whose content changed are reported; bare
feature rows whose content check fails are refused; a store that shares no labelled item with
the rows is refused with a message naming both.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ._util import atomic_write
from .items import Items, sketches_match
from .storefile import StoreMismatchError

__all__ = ["bind_view", "labels_dataframe", "export_dataframe", "open_notices", "recent_answers", "history_dataframe"]


def bind_view(store, view: Items) -> None:
    """Set ``store._row_item`` / ``_item_row`` for ``view`` and fill ``store.report``."""
    n = len(view)
    key_row = {k: r for r, k in enumerate(view.keys)}
    store._row_item = np.zeros(n, dtype=np.int64)
    store._item_row = {}
    for key, item in store._keys.items():
        r = key_row.get(key)
        if r is not None:
            _link(store, r, item)
    answered = {i for i in set(store._stacks) | set(store._skips) if _answered(store, i)}
    absent = answered - set(store._item_row)
    renamed = _match_renames(store, view, absent) if absent and view.content and not view.tolerant else []
    absent -= {item for item, _, _ in renamed}
    present = answered & set(store._item_row)
    if answered and not present:
        _refuse_disjoint(store, view, answered)
    changed = _check_contents(store, view, present)
    _write_identity(store, view, renamed, changed)
    store.report.update({
        "absent": _describe(store, absent),
        "renamed": [(old, new) for _, old, new in renamed],
        "changed": sorted(store._item_row[i] for i, _ in changed),
    })


def _link(store, row: int, item: int) -> None:
    store._row_item[row] = item
    store._item_row[item] = row


def _answered(store, item: int) -> bool:
    cls, unsure, _, _ = store._item_state(item)
    return cls >= 0 or unsure


def _stored(store, items) -> dict:
    """{item: (key, content, size)} for some item ids."""
    out = {}
    ids = sorted(items)
    for start in range(0, len(ids), 500):
        part = ids[start:start + 500]
        q = f"SELECT id, key, content, size FROM items WHERE id IN ({','.join('?' * len(part))})"
        for item, key, content, size in store._db.execute(q, part):
            out[item] = (key, content, size)
    return out


def _match_renames(store, view: Items, absent: set) -> list:
    """[(item, old key, new row's key)] for gone items whose content reappears under a new path."""
    info = {i: v for i, v in _stored(store, absent).items() if v[1]}
    if not info:
        return []
    free = np.flatnonzero(store._row_item == 0)
    if view.sizes is not None:
        sizes = {v[2] for v in info.values() if v[2] is not None}
        free = free[np.isin(view.sizes[free], list(sizes))] if sizes else free
    if free.size == 0:
        return []
    by_content: dict = {}
    for r, c in zip(free.tolist(), view.contents(free)):
        if c is not None:
            by_content.setdefault(c, []).append(r)
    out = []
    for item in sorted(info, key=lambda i: info[i][0]):  # one-to-one, in key order
        rows = by_content.get(info[item][1])
        if rows:
            r = rows.pop(0)
            _link(store, r, item)
            out.append((item, info[item][0], view.keys[r]))
    return out


def _check_contents(store, view: Items, present: set) -> list:
    """[(item, new content)] of present answered items whose content changed (or was unknown)."""
    if view.content is None or not present:
        return []
    stored = _stored(store, present)
    items = sorted(present)
    rows = np.array([store._item_row[i] for i in items], dtype=np.int64)
    now = view.contents(rows)
    out, bad = [], []
    for item, r, c in zip(items, rows.tolist(), now):
        old = stored[item][1]
        if c is None or c == old:
            continue
        if old is None:
            out.append((item, c))  # backfill: labelled before content was recorded
        elif view.tolerant:
            if not sketches_match(old, c):
                bad.append((r, old, c))
        else:
            out.append((item, c))
    if bad:
        _refuse_rows(store, bad)
    return out


def _refuse_rows(store, bad) -> None:
    r, old, new = bad[0]
    d_old, d_new = old.split(":")[1], new.split(":")[1]
    why = (f"they were labelled on {d_old}-dimensional features and these have {d_new}" if d_old != d_new
           else f"{len(bad)} labelled row(s) now hold different data (first: row {r})")
    raise StoreMismatchError(
        f"the label store {store.path} matches labels to rows by number, and {why}. Pass keys= (one "
        "stable id per row, e.g. file names) so that labels follow items across runs, encoders and "
        "reorderings; or use another store path.")


def _refuse_disjoint(store, view: Items, answered: set) -> None:
    stored = _stored(store, list(answered)[:3])
    theirs = ", ".join(repr(v[0]) for v in stored.values())
    ours = ", ".join(repr(k) for k in view.keys[:3])
    source = dict(store._db.execute("SELECT key, value FROM meta")).get("source") or "another item set"
    raise StoreMismatchError(
        f"the label store {store.path} holds labels for {len(answered)} items of {source} (keys such as "
        f"{theirs}), and none of them is among these {len(view)} items of {view.source} (keys such as {ours}). "
        "Use another store path for these items, or open this store with the items it was made for.")


def _write_identity(store, view: Items, renamed, changed) -> None:
    if store.readonly:
        return
    meta_source = dict(store._db.execute("SELECT key, value FROM meta")).get("source")
    if not (renamed or changed or not meta_source):
        return
    now = time.time()
    with store._transaction() as db:
        for item, old, new in renamed:
            db.execute("UPDATE items SET key = ? WHERE id = ?", (new, item))
            db.execute("INSERT INTO renames(item, old_key, new_key, time) VALUES (?, ?, ?, ?)", (item, old, new, now))
        db.executemany("UPDATE items SET content = ? WHERE id = ?", [(c, i) for i, c in changed])
        if not meta_source:
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('source', ?)", (view.source,))
    for item, old, new in renamed:
        store._keys.pop(old, None)
        store._keys[new] = item


def _describe(store, items) -> list:
    """[(key, answer)] of some items, in key order."""
    out = []
    for item, (key, _, _) in _stored(store, items).items():
        cls, unsure, _, _ = store._item_state(item)
        out.append((key, "unsure" if unsure else store.classes[cls]))
    return sorted(out)


def labels_dataframe(store, names=None):
    """Every answered item of the store (present or not), one row each; see LabelStore.to_dataframe."""
    import pandas as pd

    answered = sorted(i for i in set(store._stacks) if _answered(store, i))
    info = _stored(store, answered)
    times = dict(store._db.execute("SELECT id, time FROM actions")) if answered else {}
    recs = []
    for item in answered:
        cls, unsure, test, _ = store._item_state(item)
        action = store._stacks[item][-1][0]
        recs.append((store._item_row.get(item), info[item][0], None if unsure else store.classes[cls],
                     "unsure" if unsure else ("test" if test else "train"), item in store._item_row,
                     times[action]))
    recs.sort(key=lambda t: (t[0] is None, t[0] if t[0] is not None else 0, t[1]))
    df = pd.DataFrame({
        "index": pd.array([t[0] for t in recs], dtype="Int64"),
        "key": pd.Series([t[1] for t in recs], dtype=object),
        "label": pd.Series([t[2] for t in recs], dtype=object),
        "kind": pd.Series([t[3] for t in recs], dtype=object),
        "present": np.array([t[4] for t in recs], dtype=bool),
        "labelled_at": pd.to_datetime([t[5] for t in recs], unit="s", utc=True),
    })
    if names is not None:
        if len(names) != store.n_samples:
            raise ValueError(f"names must have one entry per row ({store.n_samples}), got {len(names)}")
        df.insert(2, "name", [str(names[int(i)]) if i is not pd.NA else None for i in df["index"]])
    return df


def export_dataframe(df, path) -> Path:
    """Write a DataFrame to .csv or .parquet (by suffix), atomically.

    An export never silently replaces a non-empty file with an empty table: with no rows to
    write and a non-empty file at ``path``, it raises and leaves the file as it is.
    """
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"export path must end in .csv or .parquet, got {path.name!r}")
    if len(df) == 0 and path.is_file() and path.stat().st_size > 0:
        raise ValueError(f"nothing to export (no labels yet), and {path} already holds data: it was left "
                         "unchanged. Label something first, or export to a new file name.")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        atomic_write(path, lambda f: df.to_csv(f, index=False))
    else:
        try:
            import pyarrow  # noqa: F401
        except ImportError as exc:
            raise ImportError(f"parquet export needs pyarrow: pip install 'alwidget[parquet]' ({exc})") from None
        atomic_write(path, lambda f: df.to_parquet(f, index=False))
    return path


def open_notices(store) -> list:
    """Plain sentences about what opening the store found (items gone, renamed, changed, converted)."""
    rep, out = store.report, []

    def some(seq):
        shown = ", ".join(repr(x) for x in seq[:3])
        return shown + (f" and {len(seq) - 3} more" if len(seq) > 3 else "")

    if rep.get("migrated_backup"):
        out.append(f"converted {store.path} to the new store format (labels by item); the old file is kept "
                   f"as {rep['migrated_backup']}")
    absent = rep.get("absent") or []
    if absent:
        out.append(f"{len(absent)} labelled item(s) are no longer in this set ({some([k for k, _ in absent])}); "
                   "their labels stay in the store and are exported with present=False")
    renamed = rep.get("renamed") or []
    if renamed:
        out.append(f"{len(renamed)} labelled file(s) were renamed or moved "
                   f"({some([f'{a} -> {b}' for a, b in renamed])}); their labels followed them")
    changed = rep.get("changed") or []
    if changed:
        names = [store.items.keys[r] for r in changed]
        out.append(f"{len(changed)} labelled file(s) changed since they were labelled ({some(names)}); "
                   "their labels were kept: worth a second look")
    return out


def recent_answers(store, n: int) -> list:
    """The newest ``n`` answers on rows of the view, newest first (see LabelStore.recent)."""
    out, seen, times = [], set(), None
    for action in reversed(store._undo_stack):
        if store._action_kind[action] not in ("label", "unsure"):
            continue
        for item in store._action_items[action]:
            r = store._item_row.get(item)
            if r is None or r in seen:
                continue
            seen.add(r)
            if times is None:
                times = dict(store._db.execute("SELECT id, time FROM actions"))
            cls = store._cls[r]
            out.append({"index": int(r), "label": store.classes[cls] if cls >= 0 else None,
                        "unsure": bool(store._unsure[r]), "test": bool(store._test[r]), "time": times[action]})
            if len(out) >= n:
                return out
    return out


def history_dataframe(store):
    """Every event of the store as a DataFrame (see LabelStore.history)."""
    import pandas as pd

    rows = store._db.execute(
        "SELECT a.id, a.kind, a.role, a.time, a.undoes, i.key, i.id, c.name FROM actions a "
        "LEFT JOIN events e ON e.action = a.id LEFT JOIN items i ON i.id = e.item "
        "LEFT JOIN classes c ON c.id = e.class_id ORDER BY a.id, e.seq").fetchall()
    df = pd.DataFrame(rows, columns=["action", "kind", "role", "time", "undoes", "key", "item", "label"])
    df["time"] = pd.to_datetime(df["time"], unit="s", utc=True)
    df["undoes"] = df["undoes"].astype("Int64")
    df.insert(6, "index", pd.array([store._item_row.get(i) if i == i and i is not None else None
                                    for i in df.pop("item")], dtype="Int64"))
    return df
