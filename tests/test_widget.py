"""Labeller without a browser: the messages the front end sends go through the same handler,
and the tests look at what reached the store and what the kernel sent back."""
import time

import numpy as np
import pytest
from sklearn.datasets import load_digits

from alwidget import _serialize
from alwidget.images import ImageSet
from alwidget.items import row_items
from alwidget.store import LabelStore
from alwidget.widget import Labeller, default_store_path

N = 240
CLASSES = ["zero", "one", "two"]


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    keep = np.flatnonzero(d.target < 3)[:N]
    return d.data[keep].astype(np.float32), d.target[keep], d.images[keep]


class Recorder:
    """Stands in for the comm: keeps every message the widget sends to the browser."""

    def __init__(self):
        self.messages = []

    def __call__(self, content, buffers):
        self.messages.append((content, [bytes(b) for b in buffers]))

    def of(self, kind):
        return [(c, b) for c, b in self.messages if c.get("type") == kind]

    def arrays(self):
        """Reassemble the chunked arrays of the last commit: name -> ndarray."""
        commits = self.of("commit")
        assert commits, "no commit message was sent"
        version = commits[-1][0]["version"]
        out = {}
        for content, (buf,) in self.of("array"):
            if content["version"] != version:
                continue
            arr = out.setdefault(content["name"], np.zeros(content["total"], dtype=content["dtype"]))
            part = np.frombuffer(buf, dtype=content["dtype"])
            arr[content["offset"] : content["offset"] + part.size] = part
        return commits[-1][0], out

    def label_deltas(self):
        """All label changes sent, in order: list of (indices, class ids)."""
        return [
            (np.frombuffer(b[0], dtype=np.int32), np.frombuffer(b[1], dtype=np.int16)) for _, b in self.of("labels")
        ]


def make(digits, tmp_path, **kw):
    X, _, _ = digits
    kw.setdefault("classes", CLASSES)
    kw.setdefault("store", tmp_path / "labels.sqlite")
    kw.setdefault("coords", X[:, :2] + X[:, 2:4])  # a cheap, deterministic map
    kw.setdefault("batch_size", 5)
    w = Labeller(X, **kw)
    rec = Recorder()
    w._emit = rec
    return w, rec


def stored(path):
    store = LabelStore.open_readonly(path)
    try:
        return store.current()
    finally:
        store.close()


def test_hello_sends_the_full_state_as_binary_arrays(digits, tmp_path):
    w, rec = make(digits, tmp_path)
    w.session.wait()  # the first batch comes from the Session's worker
    w.handle_message({"type": "hello"})
    commit, arrays = rec.arrays()
    assert commit["reset"] is True and commit["n_points"] == N
    assert set(arrays) == {"x", "y", "label", "pred", "uncert", "batch"}
    assert arrays["x"].dtype == np.float32 and arrays["x"].shape == (N,)
    assert np.abs(np.concatenate([arrays["x"], arrays["y"]])).max() <= 1.0
    assert arrays["label"].dtype == np.int16 and (arrays["label"] == -1).all()
    assert arrays["batch"].dtype == np.int32 and len(arrays["batch"]) == 5
    np.testing.assert_array_equal(arrays["batch"], w.batch)
    # Nothing traveled as a JSON list of per-point values.
    for content, _ in rec.messages:
        assert all(not isinstance(v, list) or len(v) < 10 for v in content.values())
    assert w.status["n_points"] == N and w.status["error"] == ""
    w.close()


def test_a_label_is_durable_before_the_map_hears_of_it(digits, tmp_path):
    w, rec = make(digits, tmp_path)
    w.session.wait()
    target = int(w.batch[0])
    w.handle_message({"type": "label", "indices": [target], "class": "one"})
    assert w.status["error"] == ""
    assert stored(tmp_path / "labels.sqlite") == {target: "one"}
    (idx, cls), = rec.label_deltas()
    assert idx.tolist() == [target] and cls.tolist() == [1]
    assert w.labels == {target: "one"}
    assert w.status["counts"] == {"zero": 0, "one": 1, "two": 0} and w.status["n_labelled"] == 1
    w.session.wait()
    w.close()


def test_lasso_labels_arrive_as_a_binary_buffer_and_undo_as_one_step(digits, tmp_path):
    w, rec = make(digits, tmp_path)
    chosen = np.arange(10, 40, dtype=np.int32)
    w.handle_message({"type": "label", "class": 2}, [memoryview(chosen).cast("B")])
    assert stored(tmp_path / "labels.sqlite") == {i: "two" for i in chosen.tolist()}
    w.session.wait()
    assert (rec.arrays()[1]["pred"] >= 0).all()  # a model exists now
    w.handle_message({"type": "undo"})
    assert stored(tmp_path / "labels.sqlite") == {}
    (idx1, cls1), (idx2, cls2) = rec.label_deltas()
    assert idx1.tolist() == idx2.tolist() == chosen.tolist()
    assert set(cls1.tolist()) == {2} and set(cls2.tolist()) == {-1}
    assert w.labels == {}
    w.session.wait()
    # With every label undone there is no model: no prediction is shown any more.
    _, arrays = rec.arrays()
    assert (arrays["pred"] == -1).all() and (arrays["uncert"] == 0).all()
    w.close()


MALFORMED = [
    ({"type": "label", "indices": [N + 5], "class": "one"}, "out of range"),
    ({"type": "label", "indices": [-1], "class": "one"}, "out of range"),
    ({"type": "label", "indices": ["3"], "class": "one"}, "integers"),
    ({"type": "label", "indices": [1.5], "class": "one"}, "integers"),
    ({"type": "label", "indices": [True], "class": "one"}, "integers"),
    ({"type": "label", "indices": 3, "class": "one"}, "list"),
    ({"type": "label", "indices": [], "class": "one"}, "no point"),
    ({"type": "label", "indices": [1], "class": "cat"}, "unknown class"),
    ({"type": "label", "indices": [1], "class": 7}, "out of range"),
    ({"type": "label", "indices": [1], "class": None}, "class"),
    ({"type": "label", "indices": [1], "class": [1]}, "class"),
    ({"type": "label", "class": "one"}, "indices"),
    ({"type": "explode"}, "unknown message type"),
    ({"no": "type"}, "unknown message type"),
    (["not", "a", "dict"], "JSON object"),
    ({"type": "thumbs", "indices": "all"}, "list"),
    ({"type": "thumbs", "indices": [10**12]}, "out of range"),
    ({"type": "add_class", "name": ""}, "non-empty"),
    ({"type": "add_class", "name": 5}, "non-empty"),
    ({"type": "set_strategy", "name": "oracle"}, "unknown strategy"),
    ({"type": "set_strategy"}, "unknown strategy"),
]


def test_malformed_messages_become_words_in_the_status(digits, tmp_path):
    w, rec = make(digits, tmp_path)
    for message, words in MALFORMED:
        w.handle_message(message)  # never raises
        assert words in w.status["error"], (message, w.status["error"])
        assert w.status["n_labelled"] == 0
    assert stored(tmp_path / "labels.sqlite") == {}
    # The kernel goes on: a good message works and clears the error.
    w.handle_message({"type": "label", "indices": [3], "class": "zero"})
    assert w.status["error"] == ""
    assert stored(tmp_path / "labels.sqlite") == {3: "zero"}
    # A wrong-sized index buffer from the browser is refused the same way.
    w.handle_message({"type": "label", "class": "one"}, [b"\x01\x02\x03"])
    assert "index buffer" in w.status["error"]
    assert stored(tmp_path / "labels.sqlite") == {3: "zero"}
    w.session.wait()
    w.close()


def test_retraining_pushes_new_colours_and_a_new_batch(digits, tmp_path):
    _, y, _ = digits
    w, rec = make(digits, tmp_path)
    w.session.wait()
    first = w.batch.copy()
    for i in first.tolist():
        w.handle_message({"type": "label", "indices": [i], "class": CLASSES[y[i]]})
    # Make sure two classes or more are present so the probe trains.
    for c in range(3):
        i = int(np.flatnonzero(y == c)[0])
        w.handle_message({"type": "label", "indices": [i], "class": CLASSES[c]})
    w.session.wait()
    commits = [c for c, _ in rec.of("commit") if not c["reset"]]
    assert commits and "pred" in commits[-1]["names"] and "batch" in commits[-1]["names"]
    _, arrays = rec.arrays()
    assert (arrays["pred"] >= 0).all() and arrays["pred"].max() < 3
    assert arrays["uncert"].dtype == np.uint8
    new = arrays["batch"]
    assert len(new) == 5 and not set(new.tolist()) & set(first.tolist())
    labelled = np.array(sorted(w.labels))
    assert not np.isin(new, labelled).any()
    # The probe separates digits 0/1/2 well: predictions mostly match the truth.
    assert (arrays["pred"] == y).mean() > 0.8
    assert w.status["last_retrain"] != ""
    w.close()


def test_accept_batch_labels_the_batch_as_predicted(digits, tmp_path):
    _, y, _ = digits
    w, rec = make(digits, tmp_path)
    w.session.wait()
    w.handle_message({"type": "accept_batch"})
    assert "no predictions" in w.status["error"]
    for c in range(3):
        idx = np.flatnonzero(y == c)[:3].tolist()
        w.handle_message({"type": "label", "indices": idx, "class": CLASSES[c]})
    w.session.wait()
    batch = w.batch.tolist()
    pred = {i: CLASSES[int(rec.arrays()[1]["pred"][i])] for i in batch}
    w.handle_message({"type": "accept_batch"})
    assert w.status["error"] == ""
    labels = stored(tmp_path / "labels.sqlite")
    assert {i: labels[i] for i in batch} == pred
    w.session.wait()
    w.close()


def test_add_class_from_the_widget(digits, tmp_path):
    w, rec = make(digits, tmp_path)
    w.handle_message({"type": "add_class", "name": "smudge"})
    assert w.classes == CLASSES + ["smudge"] and w.status["error"] == ""
    w.handle_message({"type": "label", "indices": [4], "class": "smudge"})
    assert stored(tmp_path / "labels.sqlite") == {4: "smudge"}
    assert rec.label_deltas()[-1][1].tolist() == [3]
    w.handle_message({"type": "add_class", "name": "smudge"})
    assert "already exists" in w.status["error"]
    w.session.wait()
    w.close()


def test_thumbnails_and_names_travel_on_demand(digits, tmp_path):
    X, _, images = digits
    pixels = (images * 255 / 16).astype(np.uint8)
    names = [f"<img src=x onerror=alert({i})>.png" for i in range(N)]
    imageset = ImageSet.from_arrays(pixels, names=names)
    w, rec = make(digits, tmp_path, images=imageset)
    w.handle_message({"type": "label", "indices": [2], "class": "zero"})
    w.handle_message({"type": "thumbs", "request": 7, "indices": [2, 5]})
    (content, blobs), = rec.of("thumbs")
    assert content["request"] == 7
    assert [it["index"] for it in content["items"]] == [2, 5]
    assert content["items"][0]["name"] == names[2]  # sent as text; the browser shows it with textContent
    assert content["items"][0]["label"] == "zero" and content["items"][1]["label"] is None
    assert len(blobs) == 2 and all(b[:2] == b"\xff\xd8" for b in blobs)  # JPEG
    df = w.to_dataframe()
    assert df.loc[2, "name"] == names[2] and df.loc[2, "label"] == "zero"
    w.session.wait()
    w.close()


def test_default_store_is_a_file_that_resumes(digits, capsys):
    X, _, _ = digits
    w = Labeller(X, classes=CLASSES, coords=X[:, :2], name="digits test")
    path = default_store_path(row_items(X, source="features:digits test"), "digits test")
    assert w.store_path == str(path) and path.name.startswith("digits-test-")
    assert str(path) in capsys.readouterr().out
    w._emit = Recorder()
    w.handle_message({"type": "label", "indices": [9], "class": "two"})
    w.session.wait()
    w.close()
    noisy = X + np.float32(1e-7)  # re-computed features: float noise must not lose the labels
    again = Labeller(noisy, coords=X[:, :2], name="digits test")
    assert again.store_path == str(path)
    assert again.labels == {9: "two"} and again.classes == CLASSES
    again.session.wait()
    again.close()
    other = Labeller(X[::-1].copy(), coords=X[:, :2], name="digits test")  # other rows, same size
    assert other.store_path != str(path) and other.labels == {}
    other.session.wait()
    other.close()
    mem = Labeller(X, classes=CLASSES, store=":memory:", coords=X[:, :2])
    assert mem.store_path == "" and mem.status["store"] == ":memory:"
    mem.session.wait()
    mem.close()


def test_export_and_dataframe(digits, tmp_path):
    w, rec = make(digits, tmp_path)
    w.handle_message({"type": "label", "indices": [0, 1], "class": "one"})
    w.session.wait()
    df = w.to_dataframe()
    assert len(df) == N and list(df.columns) == ["index", "name", "label", "prediction", "confidence"]
    assert df.loc[0, "label"] == "one" and df["label"].notna().sum() == 2
    out = w.export(tmp_path / "labels.csv")
    text = out.read_text()
    assert text.splitlines()[0] == "index,name,label,prediction,confidence" and ",one," in text
    pq = w.export(tmp_path / "labels.parquet")
    import pandas as pd

    assert pd.read_parquet(pq)["label"].notna().sum() == 2
    with pytest.raises(ValueError, match="csv or .parquet"):
        w.export(tmp_path / "labels.txt")
    w.close()


def test_new_coordinates_travel_without_a_reset(digits, tmp_path):
    X, _, _ = digits
    w, rec = make(digits, tmp_path, coords=np.c_[np.arange(N), np.zeros(N)])
    assert w.status["coords"] == "given"
    rng = np.random.default_rng(0)
    w.set_coords(rng.normal(size=(N, 2)), kind="umap")
    commit, arrays = rec.arrays()
    assert commit["reset"] is False and set(arrays) == {"x", "y"}
    assert w.status["coords"] == "umap"
    with pytest.raises(ValueError, match="shape"):
        w.set_coords(np.zeros((N, 3)))
    w.close()


def test_constructor_checks_its_arguments(digits, tmp_path):
    import alwidget

    assert alwidget.Labeller is Labeller  # the public name
    X, _, images = digits
    with pytest.raises(ValueError, match="coords"):
        Labeller(X, classes=CLASSES, store=":memory:", coords=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="projection"):
        Labeller(X, classes=CLASSES, store=":memory:", projection="tsne")
    small = ImageSet.from_arrays((images[:10] * 15).astype(np.uint8))
    with pytest.raises(ValueError, match="image_index"):
        Labeller(X, classes=CLASSES, store=":memory:", images=small, coords=X[:, :2])
    with pytest.raises(TypeError, match="ImageSet"):
        Labeller(X, classes=CLASSES, store=":memory:", images=["a.png"], coords=X[:, :2])
    w = Labeller(X, classes=CLASSES, store=":memory:", coords=X[:, :2])
    with pytest.raises(Exception, match="color_by"):
        w.color_by = "rainbow"
    w.color_by = "uncertainty"
    w.close()


def test_preview_first_then_umap_swapped_in(digits, tmp_path):
    X, _, _ = digits
    X = X * 1.5 + 0.25  # features no other test projects, so UMAP is not in the cache yet
    w = Labeller(X, classes=CLASSES, store=":memory:", batch_size=5)
    rec = Recorder()
    w._emit = rec
    preview = np.c_[w._x, w._y].copy()
    w.handle_message({"type": "hello"})
    assert rec.arrays()[0]["reset"] is True
    w._projection.wait(300)  # UMAP runs in its own thread; the map was usable meanwhile
    for _ in range(600):  # on_done runs just after the job reports itself finished
        if w.status["coords"] == "umap":
            break
        time.sleep(0.05)
    assert w.status["coords"] == "umap"
    commit, arrays = rec.arrays()
    assert commit["reset"] is False and set(arrays) == {"x", "y"}
    swapped = np.c_[arrays["x"], arrays["y"]]
    assert np.abs(swapped).max() <= 1.0 and not np.allclose(swapped, preview)
    w.session.wait()
    w.close()
    fixed = Labeller(X, classes=CLASSES, store=":memory:", projection="preview")
    assert fixed.status["coords"] == "preview" and fixed._projection is None
    np.testing.assert_allclose(np.c_[fixed._x, fixed._y], preview)
    fixed.close()


def test_from_folder_embeds_readable_images_and_reports_the_rest(digits, tmp_path, capsys):
    from PIL import Image

    _, y, images = digits
    folder = tmp_path / "photos"
    for sub in ("a", "b"):
        (folder / sub).mkdir(parents=True)
    names = []
    for i in range(8):
        name = f"{'ab'[i % 2]}/<img src=x onerror=alert({i})>.png" if i == 3 else f"{'ab'[i % 2]}/img{i}.png"
        Image.fromarray((images[i] * 15).astype(np.uint8)).resize((32, 32)).save(folder / name)
        names.append(name)
    (folder / "a" / "broken.png").write_bytes(b"not a png at all")
    w = Labeller.from_folder(
        folder, classes=["zero", "one"], encoder="efficientnet-lite0@112", store=tmp_path / "l.sqlite",
        projection="preview", cache_dir=tmp_path / "emb", progress=False,
    )
    assert "broken.png" in capsys.readouterr().out
    assert w.status["n_points"] == 8 and w.classes == ["zero", "one"]
    assert sorted(w.to_dataframe()["name"]) == sorted(names)
    rec = Recorder()
    w._emit = rec
    evil = w.to_dataframe()["name"].tolist().index(names[3])
    w.handle_message({"type": "thumbs", "request": 1, "indices": [evil]})
    (content, blobs), = rec.of("thumbs")
    assert content["items"][0]["name"] == names[3] and blobs[0][:2] == b"\xff\xd8"
    w.session.wait()
    w.close()


def test_from_dataset_uses_the_class_names_and_not_the_answers(digits, tmp_path):
    from alwidget.datasets import Dataset

    _, y, images = digits
    ds = Dataset(images=(images[:30] * 15).astype(np.uint8), labels=y[:30].astype(np.int64),
                 class_names=CLASSES, name="mini digits", licence="BSD")
    w = Labeller.from_dataset(ds, store=":memory:", projection="preview", cache_dir=tmp_path / "emb", progress=False)
    assert w.classes == CLASSES and w.labels == {} and w.status["n_points"] == 30
    assert w.to_dataframe()["name"].iloc[0].startswith("mini digits/")
    w.session.wait()
    w.close()
    with pytest.raises(ValueError, match="unknown data set"):
        Labeller.from_dataset("imagenet")


def test_switching_strategy_from_the_widget(digits, tmp_path):
    w, rec = make(digits, tmp_path)
    assert "random" in w.strategies and "auto" in w.strategies
    w.session.wait()
    w.handle_message({"type": "set_strategy", "name": "random"})
    assert w.session.strategy == "random" and w.status["error"] == ""
    w.session.wait()
    assert w.status["strategy"] == "random" and w.status["strategy_name"] == "random"
    commit, arrays = rec.arrays()
    assert "batch" in commit["names"] and len(arrays["batch"]) == 5
    w.close()


def test_from_folder_defaults_to_openclip_and_fails_fast_offline(tmp_path, monkeypatch):
    from PIL import Image

    from alwidget.embed import EncoderUnavailable

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(EncoderUnavailable, match="efficientnet-lite0") as err:
        Labeller.from_folder(tmp_path, cache_dir=tmp_path / "emb", progress=False, store=":memory:")
    assert "ViT-B-32" in str(err.value)


def test_malformed_requests_get_sentences_not_exception_text(digits):
    X, _, _ = digits
    w = Labeller(X, classes=CLASSES, coords=X[:, :2], store=":memory:")
    w._emit = Recorder()
    cases = [
        (({"type": "label", "class": "one"}, ["not bytes"]), "index buffer must be binary data"),
        (({"type": "label", "indices": [2**64], "class": "one"}, []), "point index 18446744073709551616 is out"),
        (({"type": "thumbs", "indices": [-2**70]}, []), "is out of range"),
        (({"type": "add_class", "name": "cat\udc80"}, []), "lone surrogate"),
    ]
    for (msg, bufs), expected in cases:
        w.handle_message(msg, bufs)
        assert expected in w.status["error"]
        assert "Error:" not in w.status["error"]  # no raw exception class names
    assert w.labels == {}
    w.session.wait()
    w.close()


def test_running_the_cell_twice_leaves_one_live_widget(digits, capsys):
    X, _, _ = digits
    first = Labeller(X, classes=CLASSES, coords=X[:, :2], name="twice")
    first._emit = Recorder()
    first.handle_message({"type": "label", "indices": [3], "class": "one"})
    second = Labeller(X, classes=CLASSES, coords=X[:, :2], name="twice")  # the cell, run again
    second._emit = Recorder()
    assert first.session.closed and first.status["closed"]
    assert "newer session" in first.status["error"]
    first.handle_message({"type": "label", "indices": [4], "class": "two"})  # typed into the old view
    assert "newer session" in first.status["error"] and 4 not in second.labels
    assert second.labels == {3: "one"}
    second.handle_message({"type": "label", "indices": [5], "class": "two"})
    assert second.labels == {3: "one", 5: "two"}
    second.session.wait()
    second.close()
    first.close()
    with LabelStore(second.store_path, second.session.items) as back:
        assert back.current() == {3: "one", 5: "two"}
