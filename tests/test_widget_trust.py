"""The widget's "know when you are done" (alwidget.widget_trust) without a browser: the toggle,
test requests in the batch, the estimate and stop hint in the status line, the Re-check answer
and the plotly panel, on real digits features, driven through the front end's messages."""
import time

import numpy as np
import pytest
from widget_recorder import Recorder
from sklearn.datasets import load_digits

from alwidget.mapstate import FLAG_TEST
from alwidget.store import LabelStore
from alwidget.widget import Labeller
from alwidget.widget_trust import estimate_words, recheck_state, stop_words, training_counts

N = 300
CLASSES = ["zero", "one", "two"]


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    keep = np.flatnonzero(d.target < 3)[:N]
    return d.data[keep].astype(np.float32), d.target[keep]


def make(digits, tmp_path, **kw):
    X, _ = digits
    kw.setdefault("store", tmp_path / "labels.sqlite")
    w = Labeller(X, classes=CLASSES, coords=X[:, :2] + X[:, 2:4], batch_size=5, **kw)
    rec = Recorder()
    w.emit = rec
    return w, rec


def answer_batch(w, y):
    """The oracle answers every open card of the shown batch (test requests like any other)."""
    w.session.wait()
    tests = set(w.status["trust"]["tests"])
    for i in w.batch.tolist():
        w.handle_message({"type": "label", "indices": [i], "class": int(y[i])})
    return tests


# ---------------------------------------------------------------------- words (pure)
def test_the_estimate_gives_both_interval_ends_and_hides_below_ten_test_labels():
    est = {"estimate": 0.842, "low": 0.781, "high": 0.889, "n_test": 32}
    assert estimate_words(est, on=True) == ("The model is right on about 84 % of unlabelled images "
                                            "(95 % interval 78–89 %), from 32 test labels")
    assert estimate_words(est, on=False).startswith("The model is right on about 84 %")  # still about this model
    few = {"estimate": 0.9, "low": None, "high": None, "n_test": 4}
    assert estimate_words(few, on=True) == "Checking the model: 4 test labels so far, 6 more before the estimate shows"
    assert "90" not in estimate_words(few, on=True), "no number before the interval can be shown"
    assert "never train" in estimate_words({"estimate": None, "n_test": 0}, on=True)
    assert estimate_words({"estimate": None, "n_test": 0}, on=False) == ""


def test_the_stop_hint_is_one_sentence_only_when_predictions_are_stable():
    cps = [{"n_labels": n, "kappa": k} for n, k in [(10, None), (20, 0.995), (30, 0.999), (40, 1.0)]]
    assert stop_words({"stable": True}, cps, on=False) == (
        "Predictions stopped changing over the last 30 labels; check the model to confirm")
    assert "30 labels" in stop_words({"stable": True}, cps, on=True)
    assert stop_words({"stable": False}, cps, on=False) == ""


def test_recheck_needs_two_labels_in_two_classes():
    ok, why = recheck_state([2, 1, 0], CLASSES)
    assert not ok and "zero" in why and "2 labels in each of 2 classes" in why
    ok, why = recheck_state([2, 3, 0], CLASSES)
    assert ok and "Nothing changes unless you relabel" in why


# ---------------------------------------------------------------------- the widget
def test_check_my_model_marks_test_requests_and_the_estimate_reaches_the_status_line(digits, tmp_path):
    X, y = digits
    w, rec = make(digits, tmp_path)
    w.session.wait()
    assert w.status["trust"]["on"] is False and "right on about" not in w.status["text"]
    w.handle_message({"type": "check_model", "on": True, "request": 3})
    assert [a for a in rec.contents("ack") if a["request"] == 3][0]["ok"] is True
    w.session.wait()
    t = w.status["trust"]
    assert t["on"] is True and "never train" in w.status["text"]
    eval_rows = set(w.session.trust.eval_rows().tolist())
    assert not (set(w.batch.tolist()) - set(t["tests"])) & eval_rows, "no untested card of E stays in the batch"
    asked = set()
    for _ in range(40):
        tests = answer_batch(w, y)
        assert tests <= set(w.session.trust.test_rows().tolist())
        asked |= tests
        w.session.wait()
        if w.status["trust"]["n_test"] >= 10:
            break
        if 0 < w.status["trust"]["n_test"] < 10:
            assert f"{10 - w.status['trust']['n_test']} more before the estimate shows" in w.status["text"]
    t = w.status["trust"]
    assert t["n_test"] >= 10 and asked, "the oracle never saw a test request"
    est = w.session.accuracy_estimate()
    assert f"about {round(100 * est['estimate'])} %" in w.status["text"]
    assert f"interval {round(100 * est['low'])}–{round(100 * est['high'])} %" in w.status["text"]
    assert f"from {est['n_test']} test labels" in w.status["text"]
    # the test labels are stored as tests, flagged on the map and never trained on
    tested = w.session.trust.test_rows()[: t["n_test"]]
    assert (w.state.flags[tested] & FLAG_TEST).all()
    assert (w.session.label_array()[tested] == -1).all()
    store = LabelStore.open_readonly(tmp_path / "labels.sqlite")
    try:
        assert store.state().test[tested].all()
    finally:
        store.close()
    counts = training_counts(w.state, len(CLASSES))
    assert counts.sum() == (w.session.label_array() >= 0).sum()
    w.handle_message({"type": "check_model", "on": False})
    assert w.status["trust"]["on"] is False and "right on about" in w.status["text"], "the estimate stays"
    w.close()


def test_accepting_the_batch_as_predicted_never_answers_a_test_request(digits, tmp_path):
    X, y = digits
    w, rec = make(digits, tmp_path)
    w.check_model(on=True, every=1)
    for _ in range(6):
        answer_batch(w, y)
    w.session.wait()
    tests = set(w.status["trust"]["tests"])
    assert tests, "a test request is open in the batch"
    n_open = int(((w.state.label[w.state.batch] < 0) & (w.state.flags[w.state.batch] == 0)).sum())
    assert w.status["n_open"] == n_open - len(tests)  # the accept button's count leaves them out too
    assert f"the {n_open - len(tests)} open image(s)" in w.status["accept_reason"]
    w.handle_message({"type": "propose_batch", "request": 9})
    reply = rec.contents("proposal")[-1]
    assert reply["items"] and not {it["index"] for it in reply["items"]} & tests
    w.close()


def test_recheck_answers_with_current_and_suggested_labels_and_relabelling_is_a_normal_label(digits, tmp_path):
    X, y = digits
    w, rec = make(digits, tmp_path)
    rows = np.concatenate([np.flatnonzero(y == c)[:12] for c in range(3)])
    noisy = y[rows].copy()
    noisy[[0, 13]] = [2, 0]  # two wrong labels
    for i, c in zip(rows, noisy):
        w.handle_message({"type": "label", "indices": [int(i)], "class": int(c)})
    w.session.wait()
    assert w.status["trust"]["can_recheck"] is True
    before = dict(w.labels)
    w.handle_message({"type": "recheck", "k": 8, "request": 5})
    deadline = time.monotonic() + 60
    while not rec.contents("recheck") and time.monotonic() < deadline:
        time.sleep(0.05)
    (reply,) = rec.contents("recheck")
    assert reply["request"] == 5 and "error" not in reply
    assert not [a for a in rec.contents("ack") if a["request"] == 5], "answered by its own message"
    expected = w.session.suspect_labels(8)
    assert [it["index"] for it in reply["items"]] == expected["index"].tolist()
    assert {it["index"] for it in reply["items"][:4]} >= {int(rows[0]), int(rows[13])}, "the wrong labels come first"
    first = reply["items"][0]
    assert first["label"] == CLASSES[noisy[list(rows).index(first["index"])]] and first["suggested"] in CLASSES
    assert before == w.labels, "asking never relabels"
    w.handle_message({"type": "label_groups", "source": "recheck", "request": 6,
                      "groups": [{"class": CLASSES[y[first["index"]]], "indices": [first["index"]]}]})
    assert w.labels[first["index"]] == CLASSES[y[first["index"]]]
    assert {k: v for k, v in w.labels.items() if k != first["index"]} == {
        k: v for k, v in before.items() if k != first["index"]}
    w.close()


def test_bad_trust_messages_get_a_sentence_and_change_nothing(digits, tmp_path):
    w, rec = make(digits, tmp_path)
    w.handle_message({"type": "check_model", "on": "yes", "request": 1})
    assert "check_model needs 'on': true or false" in rec.contents("ack")[-1]["error"]
    assert w.session.trust.on is False
    w.handle_message({"type": "recheck", "k": 0, "request": 2})
    assert "recheck needs 'k': an integer from 1 to 200" in w.status["error"]
    w.handle_message({"type": "recheck", "request": 3})  # too few labels: the answer says why
    deadline = time.monotonic() + 30
    while not rec.contents("recheck") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "at least 2 labels in each of 2 classes" in rec.contents("recheck")[-1]["error"]
    w.close()


def test_check_model_with_nothing_left_to_check_says_so(tmp_path):
    X = load_digits().data[:6].astype(np.float32)
    w = Labeller(X, classes=["a", "b"], coords=X[:, :2], store=":memory:")
    rec = Recorder()
    w.emit = rec
    w.session.label_many(range(6), "a")
    w.handle_message({"type": "check_model", "on": True, "request": 1})
    assert "nothing left to check the model on" in rec.contents("ack")[-1]["error"]
    w.close()


def test_the_panel_follows_the_session(digits, tmp_path):
    X, y = digits
    w, _ = make(digits, tmp_path, store=":memory:")
    fig = w.trust_panel()
    import plotly.graph_objects as go

    assert isinstance(fig, go.FigureWidget) and len(fig.data) == 5
    assert list(fig.data[4].x) == CLASSES and list(fig.data[4].y) == [0, 0, 0]
    w.check_model(on=True, every=1)
    for _ in range(8):
        answer_batch(w, y)
    w.session.wait()
    deadline = time.monotonic() + 10  # the panel redraws at most once a second
    want = w._trust.panel_data()
    while time.monotonic() < deadline and list(fig.data[4].y) != want["counts"]:
        time.sleep(0.1)
        want = w._trust.panel_data()
    assert list(fig.data[4].y) == want["counts"] and sum(want["counts"]) > 0
    hist = w.session.trust.history()
    shown = [e for e in hist["estimates"] if e.get("low") is not None]  # none without its interval
    assert len([e for e in fig.data[2].y if e is not None]) == len(shown)
    assert shown and list(fig.data[2].y)[-1] == pytest.approx(shown[-1]["estimate"])
    assert list(fig.data[3].y) == [c["kappa"] for c in hist["checkpoints"] if c["kappa"] is not None]
    assert all(lo is None or lo <= e <= hi for lo, e, hi in zip(fig.data[0].y, fig.data[2].y, fig.data[1].y)
               if e is not None)
    w.close()
    assert not w.session._subscribers, "closing the widget unsubscribes its panels"
