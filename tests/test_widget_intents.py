"""widget_intents: validation of what the browser sends, and dispatch against a stand-in host."""
import numpy as np
import pytest

from alwidget.mapstate import MapState
from alwidget.widget_intents import Intent, Intents, check_indices, class_from, indices_from


class Host:
    """The few things the handlers use from a Labeller, recorded."""

    def __init__(self, n=10):
        self.state = MapState(np.zeros(n, np.float32), np.zeros(n, np.float32))
        self.classes = ["a", "b"]
        self.strategies = ["random", "auto"]
        self.status = {"can_accept": False, "accept_reason": "needs 2 classes"}
        self.closed_reason = None
        self.sent, self.errors, self.calls = [], [], []
        self.session = self

    # session stand-in
    def label_many(self, idx, name):
        self.calls.append(("label_many", list(idx), name))

    def label(self, i, name):
        self.calls.append(("label", i, name))

    def undo(self):
        return None

    # host
    def emit(self, content, buffers):
        self.sent.append(content)

    def set_error(self, text, update=True):
        self.errors.append(text)

    def after_change(self, request=None):
        self.calls.append(("after_change", request))

    def point_name(self, i):
        return f"#{i}"

    def thumbnail(self, i):
        raise OSError("unreadable file")


def test_indices_are_checked_and_deduplicated():
    assert check_indices([3, 1, 3], 5).tolist() == [1, 3]
    for bad, words in [([5], "out of range"), ([True], "integers"), (["1"], "integers"), ([], "no point"),
                       ("1,2", "list")]:
        with pytest.raises(Intent, match=words):
            check_indices(bad, 5)
    buf = memoryview(np.array([4, 0], np.int32)).cast("B")
    assert indices_from({}, [buf], 5).tolist() == [0, 4]
    with pytest.raises(Intent, match="index buffer"):
        indices_from({}, [b"\x00\x01"], 5)
    with pytest.raises(Intent, match="needs 'indices'"):
        indices_from({}, [], 5, "skip")


def test_classes_by_name_or_id():
    assert class_from("b", ["a", "b"]) == 1 and class_from(0, ["a", "b"]) == 0
    for bad, words in [("c", "unknown class"), (2, "out of range"), (True, "class name or id"), (1.0, "float")]:
        with pytest.raises(Intent, match=words):
            class_from(bad, ["a", "b"])


def test_every_intent_with_a_request_is_acknowledged_once():
    h = Host()
    Intents(h).handle({"type": "label", "indices": [2], "class": "a", "request": 4})
    assert h.calls == [("label", 2, "a"), ("after_change", 4)]
    assert h.sent == [{"type": "ack", "request": 4, "ok": True, "error": ""}]
    Intents(h).handle({"type": "undo", "request": 5})
    assert h.sent[-1] == {"type": "ack", "request": 5, "ok": False, "error": "nothing to undo"}
    assert h.errors[-1] == "nothing to undo"


def test_an_unexpected_error_in_a_handler_is_reported_not_raised():
    h = Host()
    Intents(h).handle({"type": "thumbs", "request": 1, "indices": [3]})
    (reply,) = h.sent
    assert reply["type"] == "thumbs" and reply["items"][0]["error"] == "OSError: unreadable file"


def test_a_proposal_is_refused_with_the_reason_when_accepting_is_unavailable():
    h = Host()
    Intents(h).handle({"type": "propose_batch", "request": 2})
    assert h.sent == [{"type": "proposal", "request": 2, "items": [], "error": "needs 2 classes"}]


def test_a_closed_view_refuses_changes_but_still_draws():
    h = Host()
    h.closed_reason = "this session was closed: a newer session took over"
    Intents(h).handle({"type": "label", "indices": [1], "class": "a", "request": 1})
    assert h.calls == [] and "newer widget" in h.sent[-1]["error"]
    sent = []
    h.send_full_state = lambda: sent.append("full")
    Intents(h).handle({"type": "hello"})
    assert sent == ["full"]
