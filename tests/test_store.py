import sqlite3

import numpy as np
import pandas as pd
import pytest

from alwidget.store import SCHEMA_VERSION, LabelStore, StoreMismatchError


def test_label_label_many_unlabel_and_undo_in_memory():
    s = LabelStore(":memory:", n_samples=10, fingerprint="abc")
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


def test_events_are_append_only():
    s = LabelStore(":memory:", n_samples=5)
    s.label(0, "a")
    s.label_many([1, 2], "b")
    s.undo()
    h = s.history()
    assert h["kind"].tolist() == ["label", "label", "label", "undo"]
    assert h["sample"].tolist()[:3] == [0, 1, 2]
    assert h["label"].tolist()[:3] == ["a", "b", "b"]
    assert int(h["undoes"].iloc[3]) == int(h["action"].iloc[1])


def test_reopen_restores_labels_and_undo_history(tmp_path):
    path = tmp_path / "sub" / "labels.sqlite"
    with LabelStore(path, n_samples=20, fingerprint="f1") as s:
        s.label(0, "a")
        s.label_many([4, 5, 6], "b")
        s.label(7, "c")
        s.label(0, "b")
        s.undo()  # undoes the relabel of 0
        s.unlabel([5])
    with LabelStore(path, n_samples=20, fingerprint="f1") as s:
        assert s.current() == {0: "a", 4: "b", 6: "b", 7: "c"}
        assert s.classes == ["a", "b", "c"]
        assert s.undo() == {5: "b"}  # the unlabel
        assert s.undo() == {7: None}
        assert s.undo() == {4: None, 5: None, 6: None}  # the relabel of 0 was undone before
        s.label(9, "d")
    with LabelStore(path, n_samples=20, fingerprint="f1") as s:
        assert s.current() == {0: "a", 9: "d"}
        assert s.undo() == {9: None}
        assert s.undo() == {0: None}
        assert s.undo() is None


def test_file_uses_wal_and_schema_version(tmp_path):
    path = tmp_path / "l.sqlite"
    LabelStore(path, n_samples=3).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    meta = dict(db.execute("SELECT key, value FROM meta"))
    assert meta["schema_version"] == str(SCHEMA_VERSION) and meta["n_samples"] == "3"
    db.close()


def test_refuses_other_features(tmp_path):
    path = tmp_path / "l.sqlite"
    with LabelStore(path, n_samples=10, fingerprint="aaaa") as s:
        s.label(1, "x")
    with pytest.raises(StoreMismatchError, match="made for 10 samples"):
        LabelStore(path, n_samples=11, fingerprint="aaaa")
    with pytest.raises(StoreMismatchError, match="different features"):
        LabelStore(path, n_samples=10, fingerprint="bbbb")
    with LabelStore(path, n_samples=10, fingerprint="aaaa") as s:  # still intact
        assert s.current() == {1: "x"}


def test_refuses_foreign_and_newer_files(tmp_path):
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
    with pytest.raises(ValueError, match="n_samples is required"):
        LabelStore(tmp_path / "new.sqlite")
    with pytest.raises(ValueError, match="folder"):
        LabelStore(tmp_path, n_samples=3)


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
    with pytest.raises(ValueError, match="at least one"):
        s.label_many([], "a")
    assert s.current() == {} and s.classes == []  # nothing half-written
    s.label(0, np.str_("numpy names work"))
    assert s.current() == {0: "numpy names work"}


def test_export_csv_and_parquet_and_readonly(tmp_path):
    path = tmp_path / "l.sqlite"
    with LabelStore(path, n_samples=6, fingerprint="f") as s:
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


def test_empty_store_exports_an_empty_frame():
    s = LabelStore(":memory:", n_samples=3)
    df = s.to_dataframe()
    assert len(df) == 0 and list(df.columns) == ["index", "label", "labelled_at"]
