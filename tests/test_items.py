"""Labels belong to items: folders that change, other encoders, re-runs in new processes.

Real files, real encoders (EfficientNet-Lite0 with its shipped weights at small input sizes),
real store files; each test starts from an empty cache of its own.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alwidget import Session
from alwidget.items import Items, row_items, sketch_rows, sketches_match, user_items
from alwidget.store import StoreMismatchError
from alwidget.widget import Labeller

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ALWIDGET_CACHE_DIR", str(cache))
    return cache


def write_images(folder: Path, start: int, n: int):
    """n real digit images (8x8 scaled up) as PNG files named by number."""
    from sklearn.datasets import load_digits

    imgs = load_digits().images
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        a = (imgs[i] * 15).astype(np.uint8)
        Image.fromarray(np.kron(a, np.ones((4, 4), np.uint8))).save(folder / f"img{i:03d}.png")


def open_folder(folder, encoder="efficientnet-lite0@32"):
    return Labeller.from_folder(folder, encoder=encoder, projection="preview", progress=False)


def test_keys_sketches_and_validation():
    X = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
    a, b = sketch_rows(X), sketch_rows(X + 1e-6)
    assert all(sketches_match(x, y) for x, y in zip(a, b))
    assert not sketches_match(a[0], a[1])
    assert sketches_match(a[0], sketch_rows(np.hstack([X, X]))[0]) is None  # other D: not comparable
    assert row_items(X).keys[:2] == ["row:0", "row:1"]
    assert user_items(np.array([10, 11, 12, 13, 14]), 5).keys == ["10", "11", "12", "13", "14"]
    with pytest.raises(ValueError, match="unique.*'a'"):
        Items(["a", "b", "a"], "x")
    with pytest.raises(ValueError, match="one key per row"):
        user_items(["a"], 5)
    with pytest.raises(ValueError, match="non-empty"):
        Items(["a", ""], "x")


def test_a_folder_that_gains_loses_and_renames_images_keeps_its_labels(tmp_path, fresh_cache, capsys):
    folder = tmp_path / "photos"
    write_images(folder, 0, 30)
    w = open_folder(folder)
    names = list(w.to_dataframe()["name"])
    given = {i: ("even" if i % 2 == 0 else "odd") for i in range(10)}
    for i, c in given.items():
        w.session.label(i, c)
    w.session.wait()
    w.close()
    # Add 5, remove 2 labelled (img000, img001), rename 1 labelled (img002 -> renamed/two.png).
    write_images(folder, 30, 5)
    (folder / "img000.png").unlink()
    (folder / "img001.png").unlink()
    (folder / "renamed").mkdir()
    os.rename(folder / "img002.png", folder / "renamed" / "two.png")
    # Edit a labelled file in place (same path, other pixels): the label stays, reported.
    Image.fromarray(np.full((32, 32), 200, np.uint8)).save(folder / "img009.png")
    capsys.readouterr()
    again = open_folder(folder)
    out = capsys.readouterr().out
    shown = list(again.to_dataframe()["name"])
    now = {shown[i]: c for i, c in again.labels.items()}
    expected = {names[i]: c for i, c in given.items() if i >= 3}
    expected["renamed/two.png"] = given[2]
    assert now == expected and len(now) == 8
    assert "2 labelled item(s) are no longer in this set ('img000.png', 'img001.png')" in out
    assert "img002.png -> renamed/two.png" in out
    assert "changed since they were labelled ('img009.png')" in out
    df = again.session.to_dataframe()
    gone = df[~df["present"]]
    assert sorted(gone["key"]) == ["img000.png", "img001.png"] and gone["index"].isna().all()
    again.session.wait()
    again.close()


def test_another_encoder_opens_with_the_first_encoders_labels(tmp_path, fresh_cache):
    folder = tmp_path / "photos"
    write_images(folder, 0, 24)
    w = open_folder(folder, "efficientnet-lite0@32")
    w.session.label_many([1, 2, 3], "a")
    w.session.label(7, "b")
    w.close()
    other = open_folder(folder, "efficientnet-lite0@64")
    assert other._features.shape[1] == 1280
    assert other.labels == {1: "a", 2: "a", 3: "a", 7: "b"}
    assert other.store_path == w.store_path  # one default store per folder, whatever the encoder
    other.close()


def test_bare_arrays_match_rows_by_number_or_by_keys(tmp_path):
    X = np.random.default_rng(1).standard_normal((40, 8)).astype(np.float32)
    path = tmp_path / "l.sqlite"
    with Session(X, store=path, keys=[f"id{i}" for i in range(40)], device="cpu") as s:
        s.label_many([0, 5], "a")
    order = np.random.default_rng(2).permutation(40)
    with Session(np.hstack([X, X])[order], store=path, keys=[f"id{i}" for i in order], device="cpu") as s:
        assert {int(order[i]): c for i, c in s.labels.items()} == {0: "a", 5: "a"}
    with pytest.raises(StoreMismatchError, match="none of them is among"):
        Session(X, store=path, keys=[f"other{i}" for i in range(40)])


_FIRST = """
import sys
from alwidget import Labeller
w = Labeller.from_dataset("demo", projection="preview", progress=False)
for c, rows in enumerate([range(0, 10), range(10, 20)]):
    w.session.label_many(list(rows), w.classes[c])
print("STORE", w.store_path)
"""  # exits without close(), the worker busy retraining

_SECOND = """
from alwidget import Labeller
w = Labeller.from_dataset("demo", projection="preview", progress=False)
print("STORE", w.store_path)
print("LABELS", sorted(w.labels.items()))
print("CACHED", w._features.shape)
w.close()
"""


def _run(code, env):
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


@pytest.mark.slow
def test_labels_come_back_in_a_new_process_from_a_fresh_cache(tmp_path):
    env = dict(os.environ, ALWIDGET_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(REPO))
    first = _run(_FIRST, env)
    second = _run(_SECOND, env)
    store = [line for line in first.splitlines() if line.startswith("STORE")]
    assert store and store == [line for line in second.splitlines() if line.startswith("STORE")]
    labels = eval(next(line for line in second.splitlines() if line.startswith("LABELS"))[7:])
    from alwidget import datasets

    names = datasets.demo().class_names
    assert labels == [(i, names[0]) for i in range(10)] + [(i, names[1]) for i in range(10, 20)]
    # The second run read its features from the cache: float bits differ, labels did not.
    assert any(p.name.endswith(".keys.npy") for p in (tmp_path / "cache").rglob("*.keys.npy"))
