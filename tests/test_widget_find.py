"""The widget's find tools without a browser: the browser's `search`, `similar`, `filter`,
`duplicate_group` and `clear_find` messages go through the Labeller's handler; the tests check
what the kernel sent back (`found`, `filter`, `ack`) against the engine, and what reached the store."""
from __future__ import annotations

import os

import numpy as np
import pytest
from widget_recorder import Recorder
from sklearn.datasets import load_digits

from alwidget import datasets, embed
from alwidget.images import ImageSet
from alwidget.search import (
    TextSearchUnavailable,
    more_like_this,
    near_duplicates,
    search_text,
)
from alwidget.widget import Labeller

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CLASSES = ["zero", "one", "two"]


@pytest.fixture(scope="module")
def digits():
    """Digits 0-2 with 6 planted near-copies (rows 200..205 copy rows 0..5 plus a little noise)."""
    d = load_digits()
    keep = np.flatnonzero(d.target < 3)[:200]
    X, y = d.data[keep].astype(np.float32), d.target[keep]
    rng = np.random.default_rng(0)
    copies = X[:6] + rng.normal(0, 0.05, (6, X.shape[1])).astype(np.float32)
    return np.vstack([X, copies]), np.concatenate([y, y[:6]])


def make(X, **kw):
    kw.setdefault("classes", CLASSES)
    kw.setdefault("store", ":memory:")
    kw.setdefault("coords", np.c_[np.arange(len(X)), np.arange(len(X)) % 7].astype(float))
    kw.setdefault("batch_size", 5)
    w = Labeller(X, **kw)
    rec = Recorder()
    w.emit = rec
    return w, rec


@pytest.fixture(scope="module")
def clip_demo(tiny_clip):
    """300 of the shipped demo images, embedded with the tiny OpenCLIP."""
    ds = datasets.demo()
    images = ImageSet.from_arrays(ds.images[:300])
    X = embed.embed_images(images, tiny_clip, device="cpu", progress=False).features
    return X, images, list(ds.class_names)


# ------------------------------------------------------------------------------ text search
def test_the_search_box_round_trips_and_its_results_label_at_once(tiny_clip, clip_demo):
    X, images, names = clip_demo
    w, rec = make(X, images=images, classes=names, text_encoder=tiny_clip)
    try:
        assert w.find_state["text_search"] is True
        w.handle_message({"type": "search", "text": "a photo of a bag", "k": 12, "request": 7})
        content, idx, scores = rec.last_found()
        assert rec.ack(7)["ok"] and content["request"] == 7 and content["source"] == "search"
        assert content["open"] is True and content["count"] == 12 and "a photo of a bag" in content["message"]
        want = search_text(X, "a photo of a bag", tiny_clip, k=12)
        np.testing.assert_array_equal(idx, want.indices)
        assert np.all(np.diff(scores) <= 1e-6)  # ranked by cosine, best first
        assert w.find_state["results"]["count"] == 12
        # the grid commits the results as one group
        w.handle_message({"type": "label_groups", "source": "search", "request": 8,
                          "groups": [{"class": "Bag", "indices": idx.tolist()}]})
        assert rec.ack(8)["ok"]
        assert {i: c for i, c in w.labels.items()} == {int(i): "Bag" for i in idx}
        # the Python API gives the same ranking and leaves labelled images out when asked
        res = w.search("a photo of a bag", k=12, show=False)
        np.testing.assert_array_equal(res.indices, want.indices)
        assert not set(w.search("a photo of a bag", k=12, unlabelled_only=True).indices) & set(idx.tolist())
    finally:
        w.close()


def test_the_search_box_is_off_with_a_sentence_without_a_text_tower(digits):
    X, _ = digits
    w, rec = make(X)
    try:
        st = w.find_state
        assert st["text_search"] is False and "text_encoder=" in st["text_reason"]
        w.handle_message({"type": "search", "text": "a zero", "request": 1})
        ack = rec.ack(1)
        assert not ack["ok"] and ack["error"] == st["text_reason"] and not rec.of("found")
        with pytest.raises(TextSearchUnavailable, match="More like this"):
            w.search("a zero")
    finally:
        w.close()
    w, rec = make(X, text_encoder="efficientnet-lite0@96")  # an encoder without a text tower
    try:
        assert w.find_state["text_search"] is False and "no text tower" in w.find_state["text_reason"]
    finally:
        w.close()


# ------------------------------------------------------------------------------ more like this
def test_more_like_this_from_a_point_or_a_selection(digits):
    X, y = digits
    w, rec = make(X)
    try:
        w.handle_message({"type": "similar", "indices": [10], "k": 8, "request": 3})
        content, idx, _ = rec.last_found()
        assert rec.ack(3)["ok"] and content["source"] == "similar" and 10 not in idx
        np.testing.assert_array_equal(idx, more_like_this(X, [10], 8).indices)
        sel = np.flatnonzero(y == 2)[:5]
        res = w.similar(sel, k=20)
        np.testing.assert_array_equal(res.indices, more_like_this(X, sel, 20).indices)
        assert np.mean(y[res.indices] == 2) > 0.8  # the nearest to a few twos are twos
        assert rec.last_found()[0]["source"] == "similar"
    finally:
        w.close()


# ------------------------------------------------------------------------------ filters
def test_filters_dim_the_map_and_follow_the_labels(digits):
    X, y = digits
    w, rec = make(X)
    try:
        w.handle_message({"type": "filter", "labelled": False, "request": 4})
        content, keep = rec.last_filter()
        assert rec.ack(4)["ok"] and content["active"] and keep.all() and content["count"] == len(X)
        assert content["message"] == f"{len(X)} of {len(X)} items shown: unlabelled."
        w.handle_message({"type": "label", "indices": [0, 1, 2], "class": "zero", "request": 5})
        content, keep = rec.last_filter()  # the labelled images left the filter
        assert not keep[[0, 1, 2]].any() and keep.sum() == len(X) - 3
        assert w.find_state["filter"].startswith(f"{len(X) - 3} of {len(X)}")
        # a search within the filter finds only what it keeps
        res = w.similar([0], k=10)
        assert not set(res.indices.tolist()) & {1, 2}
        # predictions: refused until the map shows some, then by class and uncertainty
        w.handle_message({"type": "filter", "predicted": ["one"], "request": 6})
        assert "no predictions" in rec.ack(6)["error"]
        w.handle_message({"type": "label", "indices": np.flatnonzero(y == 1)[:3].tolist(), "class": "one"})
        w.session.wait()
        w._push_update()
        mask, sentence = w.filter(predicted="one", uncertainty=(0.0, 1.0))
        np.testing.assert_array_equal(mask, w.state.pred == 1)
        assert "predicted one" in sentence and "uncertainty 0-1" in sentence
        w.clear_find()
        content, keep = rec.last_filter()
        assert not content["active"] and keep.all() and w.find_state["filter_active"] is False
    finally:
        w.close()


def test_filter_by_file_name_and_refusals(digits):
    X, _ = digits
    names = [f"{'odd' if i % 2 else 'even'}_{i}.png" for i in range(len(X))]
    images = ImageSet.from_arrays(np.zeros((len(X), 8, 8), np.uint8), names=names)
    w, rec = make(X, images=images)
    try:
        mask, sentence = w.filter(name="ODD")
        np.testing.assert_array_equal(mask, np.arange(len(X)) % 2 == 1)
        assert 'name contains "ODD"' in sentence
        for req, msg, err in [(11, {"uncertainty": [0.8, 0.2]}, "low <= high"),
                              (12, {"labelled": "yes"}, "true, false or null"),
                              (13, {"predicted": ["nine"]}, "unknown class"),
                              (14, {"outliers": 0.5}, "whole number")]:
            w.handle_message({"type": "filter", "request": req, **msg})
            assert err in rec.ack(req)["error"], (msg, rec.ack(req))
        w.handle_message({"type": "similar", "indices": [], "request": 15})
        assert "no point indices" in rec.ack(15)["error"]
        w.handle_message({"type": "search", "text": "x", "k": 0, "request": 16})
        assert "k must be" in rec.ack(16)["error"]
    finally:
        w.close()


# ------------------------------------------------------------------------------ duplicates, outliers
def test_a_near_duplicate_group_opens_in_the_grid_and_labels_at_once(digits):
    X, _ = digits
    w, rec = make(X)
    try:
        dups = w.duplicates()
        want = near_duplicates(X)
        assert [g.tolist() for g in dups.groups] == [g.tolist() for g in want.groups]
        assert all({k, k + 200} <= set(np.concatenate(dups.groups).tolist()) for k in range(6))
        w.handle_message({"type": "duplicate_group", "index": 203, "request": 20})
        content, idx, _ = rec.last_found()
        assert rec.ack(20)["ok"] and content["source"] == "duplicates" and {3, 203} <= set(idx.tolist())
        np.testing.assert_array_equal(idx, dups.groups[dups.group_of[203]])
        w.handle_message({"type": "label_groups", "groups": [{"class": "two", "indices": idx.tolist()}]})
        assert all(w.labels[int(i)] == "two" for i in idx)
        lonely = int(np.flatnonzero(dups.group_of < 0)[0])
        w.handle_message({"type": "duplicate_group", "index": lonely, "request": 21})
        assert "no near-duplicate" in rec.ack(21)["error"]
        mask, sentence = w.filter(duplicates=True)
        np.testing.assert_array_equal(mask, dups.group_of >= 0)
        assert "near-duplicates" in sentence
        w.open_group(0)
        assert rec.last_found()[0]["message"].startswith(f"Near-duplicate group 1 of {len(dups.groups)}")
        out = w.outliers(7)
        content, idx, _ = rec.last_found()
        assert content["source"] == "outliers" and idx.tolist() == out.indices.tolist() and len(out) == 7
        mask, sentence = w.filter(duplicates=False, outliers=7)
        assert set(np.flatnonzero(mask).tolist()) == set(out.indices.tolist()) and "7 most isolated" in sentence
    finally:
        w.close()


def test_a_view_opened_later_gets_the_filter_and_the_highlight_back(digits):
    X, _ = digits
    w, rec = make(X)
    try:
        w.filter(labelled=False)
        w.similar([5], k=4)
        rec.messages.clear()
        w.handle_message({"type": "hello"})
        assert rec.of("commit")[-1][0]["reset"]
        assert rec.last_filter()[0]["active"]
        content, idx, _ = rec.last_found()
        assert content["open"] is False and idx.size == 4  # highlighted, the grid stays closed
    finally:
        w.close()


# ------------------------------------------------------------------------------ zero-shot start
def test_the_map_shows_the_zero_shot_guess_before_any_label(tiny_clip, clip_demo):
    X, images, names = clip_demo
    w, _ = make(X, images=images, classes=names, text_encoder=tiny_clip, text_prior=True)
    try:
        assert (w.state.pred >= 0).all()
        np.testing.assert_array_equal(w.state.pred, w.session.prior.zero_shot(X, names).argmax(1))
        st = w.status
        assert st["guess"] and st["has_model"] and not st["can_accept"]
        assert "zero-shot guess" in st["text"]
        mask, sentence = w.filter(predicted=names[int(w.state.pred[0])])
        assert mask[0] and sentence.startswith(f"{int(mask.sum())} of {len(X)}")
    finally:
        w.close()
    w, _ = make(X, images=images, classes=names, text_encoder=tiny_clip)  # no prior: no colours yet
    try:
        assert (w.state.pred < 0).all() and not w.status["guess"]
    finally:
        w.close()


def test_a_graph_to_build_is_built_off_the_kernel_thread(digits, monkeypatch):
    """Large pools: the first duplicates/outliers request says it is building the graph, returns,
    and the filter (or group) follows from a thread; the answers equal the synchronous ones."""
    import time

    import alwidget.widget_find as wf

    monkeypatch.setattr(wf, "BACKGROUND_GRAPH_MIN", 0)
    # Other features than the other tests' (geometry is cached by content): no graph built yet.
    X = digits[0] + np.random.default_rng(1).normal(0, 1e-3, digits[0].shape).astype(np.float32)
    w, rec = make(X)
    try:
        w.handle_message({"type": "filter", "duplicates": True, "request": 30})
        first = rec.of("filter")[0][0]  # the thread may have answered already: look at the first one
        assert "building their similarity graph" in first["message"] and rec.ack(30)["ok"]
        deadline = time.monotonic() + 60
        while "near-duplicates (cosine" not in rec.last_filter()[0]["message"] and time.monotonic() < deadline:
            time.sleep(0.05)
        content, keep = rec.last_filter()
        assert content["active"] and "near-duplicates (cosine" in content["message"]
        np.testing.assert_array_equal(keep, near_duplicates(X).group_of >= 0)
        w.handle_message({"type": "duplicate_group", "index": 203, "request": 31})
        assert rec.of("found"), "the graph is cached now: the group is answered at once"
        assert {3, 203} <= set(rec.last_found()[1].tolist())
        assert "similarity graph" not in rec.last_filter()[0]["message"], "the progress sentence went away"
    finally:
        w.close()


def test_a_refusal_in_the_background_is_said_on_the_find_bar(digits, monkeypatch):
    import time

    import alwidget.widget_find as wf

    monkeypatch.setattr(wf, "BACKGROUND_GRAPH_MIN", 0)
    X = digits[0] + np.random.default_rng(2).normal(0, 1e-3, digits[0].shape).astype(np.float32)
    w, rec = make(X)
    try:
        U = X / np.linalg.norm(X, axis=1, keepdims=True)
        cos = U @ U.T
        np.fill_diagonal(cos, -1)
        lonely = int(np.argmin(cos.max(1)))  # no other row anywhere near it
        w.handle_message({"type": "duplicate_group", "index": lonely, "request": 32})
        deadline = time.monotonic() + 60
        while "not found" not in rec.last_filter()[0]["message"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "no near-duplicate" in rec.last_filter()[0]["message"]
    finally:
        w.close()
