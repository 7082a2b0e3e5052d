import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from alwidget.items import Items
from alwidget.store import (SCHEMA_VERSION, LabelStore, StoreClosedError, StoreDamagedError, StoreLockedError,
                            StoreMismatchError, StoreWriteError)


def keys(n, prefix="img"):
    return Items([f"{prefix}{i:03d}.png" for i in range(n)], "test set")


def test_label_label_many_unlabel_and_undo_in_memory():
    s = LabelStore(":memory:", n_samples=10)
    s.label(3, "cat")
    s.label_many([1, 2, 2, 5], "dog")  # repeats are dropped
    assert s.current() == {1: "dog", 2: "dog", 3: "cat", 5: "dog"}
    assert s.classes == ["cat", "dog"]
    assert s.current_ids().tolist() == [-1, 1, 1, 0, -1, 1, -1, -1, -1, -1]
    s.label(3, "dog")  # relabel
    s.unlabel([1])
    assert s.current() == {2: "dog", 3: "dog", 5: "dog"}
    assert s.undo() == {1: "dog"}
    assert s.undo() == {3: "cat"}  # the relabel is reverted, the older label comes back
    assert s.undo() == {1: None, 2: None, 5: None}  # label_many is one action
    assert s.current() == {3: "cat"}
    assert s.undo() == {3: None}
    assert s.undo() is None and not s.can_undo
    assert s.current() == {} and s.n_labelled == 0
    assert s.classes == ["cat", "dog"]  # class names stay registered


def test_unsure_skip_and_test_answers():
    s = LabelStore(":memory:", keys(8))
    s.label(0, "a")
    s.mark_unsure([1, 2])
    s.skip([3])
    s.label(4, "b", role="test")
    st = s.state()
    assert st.cls.tolist() == [0, -1, -1, -1, 1, -1, -1, -1]
    assert st.unsure.tolist() == [False, True, True] + [False] * 5
    assert st.test.tolist() == [False] * 4 + [True] + [False] * 3
    assert st.skip_age[3] == 1 and (np.delete(st.skip_age, 3) == -1).all()  # one answer since the skip
    s.label(5, "a")
    assert s.state().skip_age[3] == 2
    assert [r["index"] for r in s.recent(3)] == [5, 4, 1]
    assert s.recent(10)[2]["unsure"] and s.recent(10)[1]["test"]
    s.label(3, "a")  # answering a skipped item ends the skip
    assert s.state().skip_age[3] == -1
    df = s.to_dataframe()
    assert dict(zip(df["key"], df["kind"])) == {"img000.png": "train", "img001.png": "unsure",
                                                "img002.png": "unsure", "img003.png": "train",
                                                "img004.png": "test", "img005.png": "train"}
    with pytest.raises(ValueError, match="role"):
        s.label(6, "a", role="eval")
    s.undo(), s.undo()  # the label of 3, the label of 5
    assert s.state().skip_age[3] == 1  # the skip is back, with its age recomputed


def test_state_is_one_read_only_snapshot_until_the_rows_change():
    s = LabelStore(":memory:", keys(6))
    s.label(0, "a")
    st = s.state()
    assert s.state() is st  # shared while nothing changes
    with pytest.raises(ValueError, match="read-only"):
        st.cls[1] = 0
    for change in (lambda: s.label(1, "b"), lambda: s.mark_unsure([2]), lambda: s.skip([3]),
                   lambda: s.label(4, "a", role="test"), s.undo, lambda: s.unlabel([0])):
        change()
        new = s.state()
        assert new is not st and st.cls[0] == 0  # a new snapshot; the old one stays as it was
        st = new
    assert st.cls.tolist() == [-1, 1, -1, -1, -1, -1] and st.unsure[2] and st.skip_age[3] == 0  # test label undone


def test_events_are_append_only():
    s = LabelStore(":memory:", n_samples=5)
    s.label(0, "a")
    s.label_many([1, 2], "b")
    s.undo()
    h = s.history()
    assert h["kind"].tolist() == ["label", "label", "label", "undo"]
    assert h["index"].tolist()[:3] == [0, 1, 2]
    assert h["key"].tolist()[:3] == ["row:0", "row:1", "row:2"]
    assert h["label"].tolist()[:3] == ["a", "b", "b"]
    assert int(h["undoes"].iloc[3]) == int(h["action"].iloc[1])


def test_reopen_restores_labels_and_undo_history(tmp_path):
    path = tmp_path / "sub" / "labels.sqlite"
    with LabelStore(path, keys(20)) as s:
        s.label(0, "a")
        s.label_many([4, 5, 6], "b")
        s.label(7, "c")
        s.label(0, "b")
        s.undo()  # undoes the relabel of 0
        s.unlabel([5])
    with LabelStore(path, keys(20)) as s:
        assert s.current() == {0: "a", 4: "b", 6: "b", 7: "c"}
        assert s.classes == ["a", "b", "c"]
        assert s.undo() == {5: "b"}  # the unlabel
        assert s.undo() == {7: None}
        assert s.undo() == {4: None, 5: None, 6: None}  # the relabel of 0 was undone before
        s.label(9, "d")
    with LabelStore(path, keys(20)) as s:
        assert s.current() == {0: "a", 9: "d"}
        assert s.undo() == {9: None}
        assert s.undo() == {0: None}
        assert s.undo() is None


def test_labels_follow_keys_when_rows_move_appear_and_vanish(tmp_path):
    path = tmp_path / "l.sqlite"
    with LabelStore(path, keys(10)) as s:
        s.label_many([2, 3], "cat")
        s.label(8, "dog")
    # Reordered, one new item first, img003 gone.
    view = Items(["new.png"] + [f"img{i:03d}.png" for i in (9, 8, 2, 1, 0)], "test set")
    with LabelStore(path, view) as s:
        assert s.current() == {2: "dog", 3: "cat"}
        assert s.report["absent"] == [("img003.png", "cat")]
        df = s.to_dataframe()
        assert df[["key", "present"]].values.tolist() == [["img008.png", True], ["img002.png", True],
                                                          ["img003.png", False]]
        assert df["index"].isna().tolist() == [False, False, True]
    with pytest.raises(StoreMismatchError, match=r"3 items of test set.*none of them is among these 3 items of "
                                                 r"other set"):
        LabelStore(path, Items(["x", "y", "z"], "other set"))
    with LabelStore(path, view) as s:
        assert s.undo() == {2: None}  # the dog label
        assert s.undo() == {3: None}  # the cat action also touched img003, which is gone
        assert s.undo() is None


def test_refuses_foreign_newer_empty_and_damaged_files(tmp_path):
    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(ValueError, match="not an alwidget label store"):
        LabelStore(other, n_samples=3)
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a database at all" * 50)
    with pytest.raises(ValueError, match="not an alwidget label store"):
        LabelStore(text, n_samples=3)
    newer = tmp_path / "newer.sqlite"
    LabelStore(newer, n_samples=3).close()
    db = sqlite3.connect(newer)
    db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    db.commit()
    db.close()
    with pytest.raises(ValueError, match="schema version 99"):
        LabelStore(newer, n_samples=3)
    with pytest.raises(ValueError, match="needs items"):
        LabelStore(tmp_path / "new.sqlite")
    with pytest.raises(ValueError, match="folder"):
        LabelStore(tmp_path, n_samples=3)
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    with pytest.raises(StoreDamagedError, match=r"empty \(0 bytes\).*backup"):
        LabelStore(empty, n_samples=3)
    assert empty.stat().st_size == 0  # left alone


def test_damaged_file_is_called_damaged(tmp_path):
    path = tmp_path / "l.sqlite"
    with LabelStore(path, keys(200)) as s:
        for i in range(200):
            s.label(i, f"class {i % 7}")
    raw = bytearray(path.read_bytes())
    page = 4096
    raw[2 * page + 8: 2 * page + 1000] = os.urandom(992)  # scribble over a b-tree page
    path.write_bytes(bytes(raw))
    with pytest.raises(StoreDamagedError, match=r"damaged.*\.recover"):
        LabelStore(path, keys(200))


def test_migrates_a_version_1_store_in_place_with_a_backup(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(textwrap.dedent("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE classes (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at REAL NOT NULL);
        CREATE TABLE actions (id INTEGER PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('label', 'unlabel', 'undo')),
            time REAL NOT NULL, undoes INTEGER REFERENCES actions(id));
        CREATE TABLE events (seq INTEGER PRIMARY KEY, action INTEGER NOT NULL REFERENCES actions(id),
            sample INTEGER NOT NULL, class_id INTEGER REFERENCES classes(id));
        INSERT INTO meta VALUES ('schema_version', '1'), ('n_samples', '5'), ('fingerprint', 'abc');
        INSERT INTO classes VALUES (1, 'cat', 0), (2, 'dog', 0);
        INSERT INTO actions VALUES (1, 'label', 1, NULL), (2, 'label', 2, NULL), (3, 'label', 3, NULL),
            (4, 'undo', 4, 3);
        INSERT INTO events VALUES (1, 1, 0, 1), (2, 2, 3, 2), (3, 2, 4, 2), (4, 3, 0, 2);
    """))
    db.commit()
    db.close()
    with pytest.raises(StoreMismatchError, match="5 items; this set has 6"):
        LabelStore(path, keys(6))
    with LabelStore(path, keys(5)) as s:
        assert s.current() == {0: "cat", 3: "dog", 4: "dog"}
        assert s.report["migrated_backup"] == f"{path}.v1-backup"
        assert s.undo() == {3: None, 4: None}
    assert sqlite3.connect(f"{path}.v1-backup").execute("SELECT value FROM meta WHERE key='schema_version'"
                                                        ).fetchone()[0] == "1"
    # Converted: now labels follow keys, so the set may change.
    with LabelStore(path, Items(["extra.png"] + keys(5).keys, "test set")) as s:
        assert s.current() == {1: "cat"}
        assert dict(sqlite3.connect(path).execute("SELECT key, value FROM meta"))["schema_version"] == str(
            SCHEMA_VERSION)


def test_export_csv_and_parquet_and_readonly(tmp_path):
    path = tmp_path / "l.sqlite"
    with LabelStore(path, n_samples=6) as s:
        s.label_many([2, 0], "cat, with comma")
        s.label(5, "dög")
    ro = LabelStore.open_readonly(path)
    df = ro.to_dataframe(names=[f"img{i}.png" for i in range(6)])
    assert df["index"].tolist() == [0, 2, 5]
    assert df["name"].tolist() == ["img0.png", "img2.png", "img5.png"]
    assert df["label"].tolist() == ["cat, with comma", "cat, with comma", "dög"]
    assert str(df["labelled_at"].dt.tz) == "UTC"
    with pytest.raises(RuntimeError, match="read-only"):
        ro.label(1, "x")
    csv = ro.export(tmp_path / "out.csv")
    back = pd.read_csv(csv)
    assert back["label"].tolist() == df["label"].tolist() and back["index"].tolist() == [0, 2, 5]
    pq = ro.export(tmp_path / "out.parquet")
    assert pd.read_parquet(pq)["label"].tolist() == df["label"].tolist()
    with pytest.raises(ValueError, match=r"\.csv or \.parquet"):
        ro.export(tmp_path / "out.xlsx")
    ro.close()
    with pytest.raises(FileNotFoundError):
        LabelStore.open_readonly(tmp_path / "missing.sqlite")


def test_an_empty_export_never_replaces_a_file_with_data(tmp_path):
    s = LabelStore(":memory:", n_samples=3)
    df = s.to_dataframe()
    assert len(df) == 0 and list(df.columns) == ["index", "key", "label", "kind", "present", "labelled_at"]
    out = tmp_path / "labels.csv"
    out.write_text("index,label\n1,cat\n")
    with pytest.raises(ValueError, match="nothing to export.*left unchanged"):
        s.export(out)
    assert out.read_text() == "index,label\n1,cat\n"
    s.export(tmp_path / "fresh.csv")  # an empty table to a new file is fine
    s.label(1, "cat")
    s.export(out)
    assert pd.read_csv(out)["label"].tolist() == ["cat"]


def test_bad_input_raises_clear_errors():
    s = LabelStore(":memory:", n_samples=4)
    with pytest.raises(IndexError, match="out of range"):
        s.label(4, "a")
    with pytest.raises(IndexError, match="out of range"):
        s.label_many([0, -1], "a")
    with pytest.raises(TypeError, match="integers"):
        s.label_many([0.5], "a")
    with pytest.raises(TypeError, match="class names must be str"):
        s.label(0, 3)
    with pytest.raises(ValueError, match="non-empty"):
        s.label(0, "  ")
    with pytest.raises(ValueError, match="lone surrogate"):
        s.label(0, "cat\udc80")
    with pytest.raises(ValueError, match="at least one"):
        s.label_many([], "a")
    assert s.current() == {} and s.classes == []  # nothing half-written
    s.label(0, np.str_("numpy names work"))
    assert s.current() == {0: "numpy names work"}


# ---------------------------------------------------------------------------- one writer
_HOLDER = """
import sys, time
from alwidget.store import LabelStore
s = LabelStore(sys.argv[1], n_samples=5)
s.label(0, "held")
print("ready", flush=True)
time.sleep(120)
"""


def _start_holder(path):
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_a_second_process_is_refused_and_a_crashed_ones_lock_is_taken(tmp_path):
    path = tmp_path / "l.sqlite"
    proc = _start_holder(path)
    try:
        with pytest.raises(StoreLockedError, match=rf"open in another process \(pid {proc.pid} on "):
            LabelStore(path, n_samples=5)
        ro = LabelStore.open_readonly(path)  # reading is always allowed
        assert ro.current() == {0: "held"}
        ro.close()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with LabelStore(path, n_samples=5) as s:  # the dead process's lock is free
        assert s.current() == {0: "held"}
        s.label(1, "mine")


def test_a_second_store_in_one_process_takes_over(tmp_path):
    path = tmp_path / "l.sqlite"
    first = LabelStore(path, n_samples=5)
    seen = []
    first.on_close(seen.append)
    first.label(0, "a")
    second = LabelStore(path, n_samples=5)
    assert first.closed and "newer session" in first.closed_reason and seen == [first.closed_reason]
    with pytest.raises(StoreClosedError, match="newer session"):
        first.label(1, "b")
    second.label(1, "b")
    assert second.current() == {0: "a", 1: "b"}
    second.close()


# ---------------------------------------------------------------------------- no silent loss
def test_deleted_store_is_written_again_from_the_session(tmp_path):
    path = tmp_path / "l.sqlite"
    s = LabelStore(path, keys(5))
    s.label(0, "a")
    s.label(1, "b")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{path}{suffix}"):
            os.remove(f"{path}{suffix}")
    with pytest.warns(RuntimeWarning, match="was deleted while open"):
        s.label(2, "c")
    s.close()
    with LabelStore(path, keys(5)) as back:
        assert back.current() == {0: "a", 1: "b", 2: "c"}


def test_replaced_store_refuses_the_write_and_keeps_a_copy(tmp_path):
    path = tmp_path / "l.sqlite"
    s = LabelStore(path, keys(5))
    s.label(0, "a")
    other = tmp_path / "other.sqlite"
    with LabelStore(other, keys(5)) as o:
        o.label(4, "theirs")
    os.replace(other, path)
    with pytest.raises(StoreWriteError, match=r"replaced by another file.*NOT saved.*copied to (\S+);") as err:
        s.label(1, "b")
    assert s.current() == {0: "a"}  # nothing acknowledged
    copy = str(err.value).split("copied to ")[1].split(";")[0]
    s.close()
    with LabelStore(copy, keys(5)) as rec:
        assert rec.current() == {0: "a"}


def _mount_tmpfs(folder, size):
    folder.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    return r.returncode == 0


def test_full_disk_refuses_the_label_with_a_sentence(tmp_path):
    folder = tmp_path / "small"
    mounted = _mount_tmpfs(folder, "160k")
    try:
        s = LabelStore(folder / "l.sqlite", keys(3000))
        if not mounted:  # no mount permission: a real SQLITE_FULL from a capped database instead
            s._db.execute("PRAGMA max_page_count = 40")
        with pytest.raises(StoreWriteError, match=r"is full: this label was NOT saved.*Free some space") as err:
            for i in range(3000):
                s.label(i, f"a class name long enough to fill pages quickly {i % 50}")
        n = s.n_labelled
        assert n > 0 and "label was NOT saved" in str(err.value)
        assert n == len(s.current())
        s.close()
        with LabelStore(folder / "l.sqlite", keys(3000), readonly=True) as back:
            assert back.n_labelled == n  # every acknowledged label is on disk, no more
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)])


def test_read_only_store_is_refused_at_open_with_a_sentence(tmp_path):
    path = tmp_path / "l.sqlite"
    with LabelStore(path, keys(5)) as s:
        s.label(0, "a")
    os.chmod(path, 0o444)
    undo = None
    if os.access(path, os.W_OK):  # root ignores modes: make the file immutable instead
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0:
            undo = ["chattr", "-i", str(path)]
    try:
        with pytest.raises(StoreWriteError, match=r"read-only: labels could not be saved.*chmod u\+w"):
            LabelStore(path, keys(5))
        with LabelStore(path, keys(5), readonly=True) as ro:
            assert ro.current() == {0: "a"}
    finally:
        if undo:
            subprocess.run(undo)
        os.chmod(path, 0o644)


def test_file_uses_wal_and_schema_version(tmp_path):
    path = tmp_path / "l.sqlite"
    LabelStore(path, n_samples=3).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    meta = dict(db.execute("SELECT key, value FROM meta"))
    assert meta["schema_version"] == str(SCHEMA_VERSION) == "2"
    db.close()
