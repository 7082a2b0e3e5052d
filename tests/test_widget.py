"""Labeller without a browser: the messages the front end sends go through the same handler,
and the tests look at what reached the store and what the kernel sent back."""
import time

import numpy as np
import pytest
from widget_recorder import Recorder
from sklearn.datasets import load_digits

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


def make(digits, tmp_path, **kw):
    X, _, _ = digits
    kw.setdefault("classes", CLASSES)
    kw.setdefault("store", tmp_path / "labels.sqlite")
    kw.setdefault("coords", X[:, :2] + X[:, 2:4])  # a cheap, deterministic map
    kw.setdefault("batch_size", 5)
    w = Labeller(X, **kw)
    rec = Recorder()
    w.emit = rec
    return w, rec


def stored(path):
    store = LabelStore.open_readonly(path)
    try:
        return store.current()
    finally:
        store.close()


def label_two_classes(w, y):
    for c in (0, 1):
        w.handle_message({"type": "label", "indices": np.flatnonzero(y == c)[:3].tolist(), "class": CLASSES[c]})
    w.session.wait()


def test_hello_sends_the_full_state_as_binary_arrays(digits, tmp_path):
    w, rec = make(digits, tmp_path)
    w.session.wait()  # the first batch comes from the Session's worker
    w.handle_message({"type": "hello"})
    commit, arrays = rec.arrays()
    assert commit["reset"] is True and commit["n_points"] == N
    assert set(arrays) == {"x", "y", "label", "flags", "pred", "uncert", "batch"}
    assert arrays["x"].dtype == np.float32 and arrays["x"].shape == (N,)
    assert np.abs(np.concatenate([arrays["x"], arrays["y"]])).max() <= 1.0
    assert arrays["label"].dtype == np.int16 and (arrays["label"] == -1).all()
    assert arrays["flags"].dtype == np.uint8 and (arrays["flags"] == 0).all()
    assert arrays["batch"].dtype == np.int32 and len(arrays["batch"]) == 5
    np.testing.assert_array_equal(arrays["batch"], w.batch)
    for content, _ in rec.messages:  # nothing traveled as a JSON list of per-point values
        assert all(not isinstance(v, list) or len(v) < 10 for v in content.values())
    assert w.status["n_points"] == N and w.status["error"] == ""
    w.close()


def test_a_label_is_durable_before_the_map_hears_of_it_and_is_acknowledged(digits, tmp_path):
    w, rec = make(digits, tmp_path)
    w.session.wait()
    target = int(w.batch[0])
    w.handle_message({"type": "label", "indices": [target], "class": "one", "request": 5})
    assert w.status["error"] == ""
    assert stored(tmp_path / "labels.sqlite") == {target: "one"}
    (content, _), = rec.of("labels")
    assert content["request"] == 5
    (idx, cls, flags), = rec.label_deltas()
    assert idx.tolist() == [target] and cls.tolist() == [1] and flags.tolist() == [0]
    assert rec.acks()[5]["ok"] is True
    assert w.labels == {target: "one"}
    assert w.status["counts"] == {"zero": 0, "one": 1, "two": 0} and w.status["n_labelled"] == 1
    assert w.recent[0]["index"] == target and w.recent[0]["label"] == "one" and w.recent[0]["name"] == f"#{target}"
    w.session.wait()
    w.close()


def test_lasso_labels_arrive_as_a_binary_buffer_and_undo_as_one_step(digits, tmp_path):
    w, rec = make(digits, tmp_path)
    chosen = np.arange(10, 40, dtype=np.int32)
    w.handle_message({"type": "label", "class": 2}, [memoryview(chosen).cast("B")])
    assert stored(tmp_path / "labels.sqlite") == {i: "two" for i in chosen.tolist()}
    w.session.wait()
    w.handle_message({"type": "undo"})
    assert stored(tmp_path / "labels.sqlite") == {}
    (idx1, cls1, _), (idx2, cls2, _) = rec.label_deltas()
    assert idx1.tolist() == idx2.tolist() == chosen.tolist()
    assert set(cls1.tolist()) == {2} and set(cls2.tolist()) == {-1}
    assert w.labels == {}
    w.session.wait()
    w.close()


def test_a_reviewed_grid_labels_one_group_per_class(digits, tmp_path):
    w, rec = make(digits, tmp_path)
    big = np.arange(50, 170, dtype=np.int32)  # a big selection travels as a buffer
    msg = {"type": "label_groups", "request": 2,
           "groups": [{"class": "zero", "indices": [1, 2, 3]}, {"class": 2, "buffer": 0}]}
    w.handle_message(msg, [memoryview(big).cast("B")])
    assert rec.acks()[2]["ok"] is True
    labels = stored(tmp_path / "labels.sqlite")
    assert {i: labels[i] for i in (1, 2, 3)} == {1: "zero", 2: "zero", 3: "zero"}
    assert all(labels[i] == "two" for i in big.tolist()) and len(labels) == 3 + big.size
    w.handle_message({"type": "undo"})  # one group at a time
    assert stored(tmp_path / "labels.sqlite") == {1: "zero", 2: "zero", 3: "zero"}
    before = stored(tmp_path / "labels.sqlite")
    for bad, words in [
        ({"type": "label_groups", "groups": [{"class": "one", "indices": [5]}, {"class": "two", "indices": [5]}]},
         "two groups"),
        ({"type": "label_groups", "groups": [{"class": "one", "buffer": 3}]}, "does not name"),
        ({"type": "label_groups", "groups": [{"class": "one", "indices": [5]}, {"class": "cat", "indices": [6]}]},
         "unknown class"),
        ({"type": "label_groups", "groups": []}, "groups"),
    ]:
        w.handle_message(bad)
        assert words in w.status["error"], (bad, w.status["error"])
        assert stored(tmp_path / "labels.sqlite") == before, "a refused grid writes nothing"
    w.session.wait()
    w.close()


MALFORMED = [
    ({"type": "label", "indices": [N + 5], "class": "one"}, "out of range"),
    ({"type": "label", "indices": [-1], "class": "one"}, "out of range"),
    ({"type": "label", "indices": ["3"], "class": "one"}, "integers"),
    ({"type": "label", "indices": [1.5], "class": "one"}, "integers"),
    ({"type": "label", "indices": [True], "class": "one"}, "integers"),
    ({"type": "label", "indices": [None], "class": "one"}, "integers"),
    ({"type": "label", "indices": 3, "class": "one"}, "list"),
    ({"type": "label", "indices": [], "class": "one"}, "no point"),
    ({"type": "label", "indices": [1], "class": "cat"}, "unknown class"),
    ({"type": "label", "indices": [1], "class": 7}, "out of range"),
    ({"type": "label", "indices": [1], "class": None}, "class"),
    ({"type": "label", "indices": [1], "class": [1]}, "class"),
    ({"type": "label", "class": "one"}, "indices"),
    ({"type": "skip"}, "indices"),
    ({"type": "unsure", "indices": "all"}, "list"),
    ({"type": "explode"}, "unknown message type"),
    ({"no": "type"}, "unknown message type"),
    (["not", "a", "dict"], "JSON object"),
    ({"type": "thumbs", "indices": "all"}, "list"),
    ({"type": "thumbs", "indices": [10**12]}, "out of range"),
    ({"type": "add_class", "name": ""}, "non-empty"),
    ({"type": "add_class", "name": 5}, "non-empty"),
    ({"type": "set_strategy", "name": "oracle"}, "unknown strategy"),
    ({"type": "set_strategy"}, "unknown strategy"),
    ({"type": "accept_batch"}, "unknown message type"),  # accepting goes through the review grid
]


def test_malformed_messages_become_words_in_the_status_and_in_their_ack(digits, tmp_path):
    w, rec = make(digits, tmp_path)
    for k, (message, words) in enumerate(MALFORMED):
        if isinstance(message, dict):
            message = dict(message, request=100 + k)
        w.handle_message(message)  # never raises
        assert words in w.status["error"], (message, w.status["error"])
        assert w.status["n_labelled"] == 0
        if isinstance(message, dict) and message.get("type") != "thumbs":
            assert rec.acks()[100 + k]["ok"] is False and words in rec.acks()[100 + k]["error"]
    assert stored(tmp_path / "labels.sqlite") == {}
    w.handle_message({"type": "label", "indices": [3], "class": "zero"})  # the kernel goes on
    assert w.status["error"] == ""
    assert stored(tmp_path / "labels.sqlite") == {3: "zero"}
    w.handle_message({"type": "label", "class": "one"}, [b"\x01\x02\x03"])
    assert "index buffer" in w.status["error"]
    assert stored(tmp_path / "labels.sqlite") == {3: "zero"}
    w.session.wait()
    w.close()


def test_predictions_only_once_two_classes_are_labelled(digits, tmp_path):
    _, y, _ = digits
    w, rec = make(digits, tmp_path)
    w.handle_message({"type": "label", "indices": np.flatnonzero(y == 0)[:4].tolist(), "class": "zero"})
    w.session.wait()
    # one class: the probe would paint every point that class at 100 %; nothing is shown yet
    assert (w.state.pred == -1).all() and w.status["has_model"] is False
    assert w.status["can_accept"] is False and "at least 2 classes" in w.status["accept_reason"]
    assert "zero" in w.status["accept_reason"]
    w.handle_message({"type": "label", "indices": np.flatnonzero(y == 1)[:4].tolist(), "class": "one"})
    w.session.wait()
    _, arrays = rec.arrays()
    assert (arrays["pred"] >= 0).all() and arrays["uncert"].dtype == np.uint8
    assert w.status["has_model"] is True and w.status["n_label_classes"] == 2
    w.close()


def test_accept_goes_through_a_proposal_with_predictions_and_confidences(digits, tmp_path):
    _, y, _ = digits
    w, rec = make(digits, tmp_path)
    w.session.wait()
    w.handle_message({"type": "propose_batch", "request": 1})
    (refused, _), = rec.of("proposal")
    assert refused["items"] == [] and "at least 2 classes" in refused["error"]
    label_two_classes(w, y)
    w.handle_message({"type": "propose_batch", "request": 2})
    proposal = rec.of("proposal")[-1][0]
    assert proposal["request"] == 2 and "error" not in proposal
    items = proposal["items"]
    assert [it["index"] for it in items] == [i for i in w.batch.tolist() if i not in w.labels]
    assert all(it["pred"] in CLASSES and 0 < it["conf"] <= 1 for it in items)
    assert len(stored(tmp_path / "labels.sqlite")) == 6, "a proposal labels nothing"
    # the grid commits the reviewed predictions as groups
    groups = {}
    for it in items:
        groups.setdefault(it["pred"], []).append(it["index"])
    w.handle_message({"type": "label_groups", "groups": [{"class": c, "indices": v} for c, v in groups.items()]})
    labels = stored(tmp_path / "labels.sqlite")
    assert all(labels[it["index"]] == it["pred"] for it in items)
    w.session.wait()
    w.close()


def test_the_batch_keeps_its_order_and_new_suggestions_fill_freed_slots(digits, tmp_path):
    _, y, _ = digits
    w, rec = make(digits, tmp_path)
    w.session.wait()
    first = w.batch.tolist()
    w.handle_message({"type": "label", "indices": [first[1]], "class": CLASSES[y[first[1]]]})
    w.session.wait()
    after = w.batch.tolist()
    assert len(after) == len(first)
    for pos in (0, 2, 3, 4):
        assert after[pos] == first[pos], "an open card moved"
    assert after[1] != first[1] and after[1] not in first
    w.handle_message({"type": "next_batch"})  # a new batch on request: every slot changes
    assert w.batch.size == 0
    w.session.wait()
    assert w.batch.size == 5 and not set(w.batch.tolist()) & set(after)
    w.close()


def test_skip_and_unsure_are_stored_and_leave_the_batch(digits, tmp_path):
    w, rec = make(digits, tmp_path)
    w.session.wait()
    a, b = (int(i) for i in w.batch[:2])
    w.handle_message({"type": "unsure", "indices": [a], "request": 1})
    w.handle_message({"type": "skip", "indices": [b], "request": 2})
    assert rec.acks()[1]["ok"] and rec.acks()[2]["ok"]
    store = LabelStore.open_readonly(tmp_path / "labels.sqlite")
    try:
        st = store.state()
        assert bool(st.unsure[a]) and st.cls[a] == -1
        assert st.skip_age[b] >= 0
    finally:
        store.close()
    assert w.session.unsure == [a]
    assert w.session.label_array()[a] == -1, "unsure is never trained on"
    (ia, _, fa), (ib, _, fb) = rec.label_deltas()
    assert (ia.tolist(), fa.tolist()) == ([a], [1]) and (ib.tolist(), fb.tolist()) == ([b], [2])
    assert w.status["n_unsure"] == 1 and "1 unsure" in w.status["text"]
    assert w.recent[0]["index"] == a and w.recent[0]["unsure"] is True
    w.session.wait()
    assert a not in w.batch.tolist() and b not in w.batch.tolist()
    w.handle_message({"type": "undo"})  # the skip is undone first, then the unsure answer
    w.handle_message({"type": "undo"})
    assert w.session.unsure == [] and w.status["n_unsure"] == 0
    w.session.wait()
    w.close()


def test_status_in_plain_words_with_details_and_the_store_path(digits, tmp_path):
    w, rec = make(digits, tmp_path, strategy="auto")
    w.session.wait()
    st = w.status
    assert st["text"].startswith(f"0 of {N} labelled")
    # auto's cold start on digits pixels (tight groups of look-alikes) is ProbCover
    assert "Picking images that cover the whole map until every class has a few labels: 0 of 3 classes so far" \
        in st["text"]
    assert "probcover" not in st["text"], "jargon belongs in the details"
    assert "probcover" in st["details"] and str(tmp_path / "labels.sqlite") in st["details"]
    assert st["store"] == str(tmp_path / "labels.sqlite") and w.store_path == st["store"]
    w.close()


def test_a_newer_widget_on_the_same_store_closes_the_old_one_visibly(digits, tmp_path):
    old, rec = make(digits, tmp_path)
    old.session.wait()
    new, _ = make(digits, tmp_path)  # the cell was run again
    assert old.closed_reason and "newer" in old.closed_reason
    assert old.status["closed_reason"] == old.closed_reason
    old.handle_message({"type": "label", "indices": [1], "class": "one", "request": 9})
    assert rec.acks()[9]["ok"] is False and "newer widget" in rec.acks()[9]["error"]
    new.handle_message({"type": "label", "indices": [2], "class": "two"})
    assert stored(tmp_path / "labels.sqlite") == {2: "two"}
    old.handle_message({"type": "hello"})  # a closed view still draws its map (greyed)
    assert rec.of("commit")[-1][0]["reset"] is True
    new.session.wait()
    old.close()
    new.close()


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
    assert not rec.of("ack"), "thumbnails answer with their own message"
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
    w.emit = Recorder()
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
    import pandas as pd

    assert pd.read_parquet(w.export(tmp_path / "labels.parquet"))["label"].notna().sum() == 2
    with pytest.raises(ValueError, match="csv or .parquet"):
        w.export(tmp_path / "labels.txt")
    w.close()


def test_new_coordinates_travel_without_a_reset(digits, tmp_path):
    """alwidget.widget_projection (the Labeller's coordinates), like the preview/UMAP test below."""
    w, rec = make(digits, tmp_path, coords=np.c_[np.arange(N), np.zeros(N)])
    assert w.status["coords"] == "given"
    w.set_coords(np.random.default_rng(0).normal(size=(N, 2)), kind="umap")
    commit, _ = rec.arrays()
    assert commit["reset"] is False and commit["names"] == ["x", "y"]
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
    w.emit = rec
    preview = np.c_[w.state.x, w.state.y].copy()
    w.handle_message({"type": "hello"})
    assert rec.arrays()[0]["reset"] is True
    w._projection.wait(300)  # UMAP runs in its own thread; the map was usable meanwhile
    for _ in range(600):  # on_done runs just after the job reports itself finished
        if w.status["coords"] == "umap":
            break
        time.sleep(0.05)
    assert w.status["coords"] == "umap"
    commit, arrays = rec.arrays()
    assert commit["reset"] is False and commit["names"] == ["x", "y"]
    swapped = np.c_[arrays["x"], arrays["y"]]
    assert np.abs(swapped).max() <= 1.0 and not np.allclose(swapped, preview)
    w.session.wait()
    w.close()
    fixed = Labeller(X, classes=CLASSES, store=":memory:", projection="preview")
    assert fixed.status["coords"] == "preview" and fixed._projection is None
    np.testing.assert_allclose(np.c_[fixed.state.x, fixed.state.y], preview)
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
    w.emit = rec
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
    assert "at random" in w.status["text"]
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
    w.emit = Recorder()
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
    name = f"twice-{time.time_ns()}"  # the default store, new to this run (a reused cache folder keeps old ones)
    first = Labeller(X, classes=CLASSES, coords=X[:, :2], name=name)
    first.emit = Recorder()
    first.handle_message({"type": "label", "indices": [3], "class": "one"})
    second = Labeller(X, classes=CLASSES, coords=X[:, :2], name=name)  # the cell, run again
    second.emit = Recorder()
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


def test_on_a_huge_pool_the_map_gets_the_batch_first_and_pulls_the_scores_once(digits, tmp_path, monkeypatch):
    from alwidget import anchoral

    _, y, _ = digits
    monkeypatch.setattr(anchoral, "SUBPOOL_MIN", 100)  # 240 rows count as huge: batch, then scores
    w, rec = make(digits, tmp_path)
    label_two_classes(w, y)
    pulls = []
    real = w.session.predict_proba
    w.session.predict_proba = lambda: pulls.append(1) or real()
    rec.messages.clear()
    w.handle_message({"type": "label", "indices": [int(w.state.batch[0])], "class": "two"})
    w.session.wait()
    # the round published twice: the batch (old scores not re-read), then the new scores once
    assert len(pulls) == 1 and w.session.status["last_rescore_ms"] is not None
    names = [c["name"] for c in rec.contents("array")]
    assert "batch" in names and "pred" in names and names.index("batch") < names.index("pred")
    np.testing.assert_array_equal(w.state.pred, real().argmax(1))
    w.close()
