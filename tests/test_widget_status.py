"""widget_status: the status line in plain words, the details for hover, accept availability."""
import time

import numpy as np

from alwidget.mapstate import FLAG_SKIPPED, FLAG_UNSURE, MapState
from alwidget.widget_status import STRATEGY_WORDS, accept_state, describe_strategy, status_dict

CLASSES = ["cat", "dog", "bird"]


def mapstate(labels, flags=None, batch=(), pred=False):
    n = len(labels)
    m = MapState(np.zeros(n, np.float32), np.zeros(n, np.float32))
    m.set_labels(np.asarray(labels, np.int16), None if flags is None else np.asarray(flags, np.uint8))
    if pred:
        m.set_model(np.full((n, 3), 1 / 3, np.float32))
    m.batch = np.asarray(batch, np.int64)
    return m


def words(st, m, **kw):
    args = dict(coords="umap", umap_running=False, umap_progress=0.0, error="", store="/tmp/l.sqlite",
                closed_reason=None)
    args.update(kw)
    return status_dict(st, m, CLASSES, **args)


def test_cold_start_in_plain_words_with_the_jargon_in_the_details():
    st = {"strategy": "auto", "active_strategy": "typiclust", "reason": "typiclust: 2 labels from 1 class, cold start",
          "busy": False, "last_update": time.time(), "last_update_ms": 120.0, "device": "cpu"}
    out = words(st, mapstate([0, 0, -1, -1], batch=[2, 3]))
    assert out["text"] == ("2 of 4 labelled · Picking typical images until every class has a few labels: "
                           "1 of 3 classes so far · predictions once 2 classes have labels")
    assert "typiclust: 2 labels from 1 class" in out["details"] and "0.12 s" in out["details"]
    assert "labels saved in /tmp/l.sqlite" in out["details"] and out["store"] == "/tmp/l.sqlite"
    assert out["strategy"] == "auto → typiclust" and out["strategy_name"] == "auto"


def test_every_strategy_has_words_and_auto_says_when_it_switched():
    from alwidget import strategies

    for name in strategies.available():
        if name != "auto":
            assert name in STRATEGY_WORDS, f"{name} needs plain words for the status line"
    assert "enough labels to guide" in describe_strategy("auto", "dropquery", 3, 3)
    assert describe_strategy("random", None, 0, 3) == "Picking images at random"


def test_accepting_needs_two_classes_a_model_and_open_images():
    ok, why = accept_state(1, False, 5, ["cat"])
    assert not ok and "at least 2 classes" in why and "cat" in why
    ok, why = accept_state(2, False, 5, ["cat", "dog"])
    assert not ok and "training" in why
    ok, why = accept_state(2, True, 0, ["cat", "dog"])
    assert not ok and "new batch" in why
    assert accept_state(2, True, 3, ["cat", "dog"])[0]


def test_counts_unsure_skipped_and_open_batch_come_from_the_map():
    m = mapstate([0, 1, -1, -1, -1], flags=[0, 0, FLAG_UNSURE, FLAG_SKIPPED, 0], batch=[1, 2, 4], pred=True)
    out = words({"strategy": "random", "busy": True}, m)
    assert out["counts"] == {"cat": 1, "dog": 1, "bird": 0} and out["n_labelled"] == 2
    assert out["n_unsure"] == 1 and out["n_skipped"] == 1
    assert out["can_accept"] and "1 open image" in out["accept_reason"]
    assert "1 unsure" in out["text"] and "updating the model…" in out["text"]
    assert "1 skipped" in out["details"]


def test_memory_store_preview_map_and_a_closed_view():
    out = words({"strategy": "random"}, mapstate([-1]), store="", coords="preview", umap_running=True,
                umap_progress=0.4, closed_reason="this session was closed: a newer session took over")
    assert out["store"] == ":memory:" and "memory only" in out["details"]
    assert "final map 40% ready" in out["text"]
    assert out["closed_reason"].startswith("this session was closed")
