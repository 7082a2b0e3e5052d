"""Intents from the front end: validation and handling (the kernel half of js/src/protocol.js).

Every message the browser sends goes through `Intents.handle`, which never raises: a malformed
or impossible request becomes a sentence in the widget's status (and in the `ack` of a message
that carried a `request` id, so the front end can show which of its requests failed). The
handlers act on a `host` (the Labeller) through a few methods: `session`, `classes`, `state`
(the MapState), `after_change(request)`, `send_full_state()`, `emit()`, `point_name(i)`,
`thumbnail(i)`, `ask_fresh_batch()`, `set_error()`, `refresh_status()`, `check_model(on)` and
`_trust` (the `alwidget.widget_trust.TrustView`, for `recheck`).
"""
from __future__ import annotations

import numpy as np

from . import _serialize
from .store import StoreError, check_class_name

__all__ = ["Intent", "Intents", "MAX_THUMBS_PER_REQUEST"]

MAX_THUMBS_PER_REQUEST = 64


class Intent(ValueError):
    """A malformed or impossible request from the front end (shown in the status line)."""


# ---------------------------------------------------------------------- validation
def check_indices(raw, n: int) -> np.ndarray:
    """Unique int64 point indices from a JSON list; Intent with a sentence when they are not."""
    if not isinstance(raw, list):
        raise Intent(f"'indices' must be a list of point indices, got {type(raw).__name__}")
    if not raw:
        raise Intent("no point indices given")
    for v in raw:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise Intent(f"point indices must be integers, got {v!r}")
    bad = next((int(v) for v in raw if not 0 <= int(v) < n), None)  # Python ints: no int64 overflow
    if bad is not None:
        raise Intent(f"point index {bad} is out of range (the map has {n} points)")
    return np.unique(np.asarray(raw, dtype=np.int64))


def indices_from_buffer(buf, n: int) -> np.ndarray:
    if not isinstance(buf, (bytes, bytearray, memoryview)):
        raise Intent(f"the index buffer must be binary data, got {type(buf).__name__}")
    try:
        arr = _serialize.array_from_json({"buffer": buf, "dtype": "int32", "shape": None})
    except ValueError as exc:
        raise Intent(f"bad index buffer: {exc}") from None
    return check_indices(arr.tolist(), n)


def indices_from(content: dict, buffers: list, n: int, what: str = "label") -> np.ndarray:
    """Indices from content['indices'] or, for big selections, an int32 buffer."""
    if content.get("indices") is not None:
        return check_indices(content["indices"], n)
    if buffers:
        return indices_from_buffer(buffers[0], n)
    raise Intent(f"{what} needs 'indices' (or an int32 index buffer)")


def class_from(value, classes: list) -> int:
    """Class id from a name or an id; Intent when unknown."""
    if isinstance(value, bool) or value is None:
        raise Intent(f"'class' must be a class name or id, got {value!r}")
    if isinstance(value, (int, np.integer)):
        if not 0 <= value < len(classes):
            raise Intent(f"class id {value} is out of range ({len(classes)} classes)")
        return int(value)
    if isinstance(value, str):
        if value not in classes:
            raise Intent(f"unknown class {value!r}; add it first (known: {', '.join(classes) or 'none'})")
        return classes.index(value)
    raise Intent(f"'class' must be a class name or id, got {type(value).__name__}")


# ---------------------------------------------------------------------- handlers
class Intents:
    """Dispatches front-end messages to handlers acting on `host` (see the module doc)."""

    def __init__(self, host, extra=None):
        self.host = host
        self.handlers = {**self.HANDLERS, **(extra or {})}  # extra: other modules' intents (widget_find)

    def handle(self, content, buffers=()) -> None:
        request = content.get("request") if isinstance(content, dict) else None
        error = ""
        try:
            if not isinstance(content, dict):
                raise Intent(f"a message must be a JSON object, got {type(content).__name__}")
            kind = content.get("type")
            handler = self.handlers.get(kind) if isinstance(kind, str) else None
            if handler is None:
                raise Intent(f"unknown message type {kind!r}; expected one of {sorted(self.handlers)}")
            if self.host.closed_reason and kind not in ("hello", "ping", "thumbs"):
                raise Intent(f"{self.host.closed_reason}; this view no longer saves labels: use the newer widget")
            handler(self, content, list(buffers or ()))
        except (Intent, StoreError) as exc:  # StoreError: disk full, store taken over...: its own sentence
            error = str(exc)
        except Exception as exc:  # the kernel stays alive whatever the front end sends
            what = content.get("type") if isinstance(content, dict) else None
            error = f"the widget could not handle that {what!r} request ({exc}); nothing was changed"
        if error:
            self.host.set_error(error)
        if request is not None and content.get("type") not in ("thumbs", "propose_batch", "recheck"):
            self.host.emit({"type": "ack", "request": request, "ok": not error, "error": error}, [])

    @property
    def n(self) -> int:
        return self.host.state.n

    def _begin(self):
        self.host.set_error("", update=False)

    def hello(self, content, buffers):
        self.host.send_full_state()

    def ping(self, content, buffers):
        pass  # the ack is the answer

    def label(self, content, buffers):
        idx = indices_from(content, buffers, self.n)
        cid = class_from(content.get("class"), list(self.host.classes))
        self._begin()
        s = self.host.session
        if idx.size == 1:
            s.label(int(idx[0]), self.host.classes[cid])
        else:
            s.label_many(idx.tolist(), self.host.classes[cid])
        self.host.after_change(content.get("request"))

    def label_groups(self, content, buffers):
        """Several classes at once (a reviewed grid): one store action per class."""
        groups = content.get("groups")
        if not isinstance(groups, list) or not groups:
            raise Intent("label_groups needs 'groups': a list of {class, indices}")
        classes = list(self.host.classes)
        todo, seen = [], set()
        for g in groups:
            if not isinstance(g, dict):
                raise Intent("each group must be an object {class, indices}")
            cid = class_from(g.get("class"), classes)
            if "buffer" in g:
                b = g["buffer"]
                if isinstance(b, bool) or not isinstance(b, int) or not 0 <= b < len(buffers):
                    raise Intent(f"group buffer {b!r} does not name one of the {len(buffers)} buffers sent")
                idx = indices_from_buffer(buffers[b], self.n)
            else:
                idx = check_indices(g.get("indices"), self.n)
            if seen & set(idx.tolist()):
                raise Intent("a point appears in two groups; each point gets one class")
            seen |= set(idx.tolist())
            todo.append((idx, classes[cid]))
        self._begin()
        for idx, name in todo:  # validated first, so either every group is written or none
            self.host.session.label_many(idx.tolist(), name)
        self.host.after_change(content.get("request"))

    def undo(self, content, buffers):
        self._begin()
        done = self.host.session.undo()
        if done is None or done is False:
            raise Intent("nothing to undo")
        self.host.after_change(content.get("request"))

    def skip(self, content, buffers):
        idx = indices_from(content, buffers, self.n, "skip")
        self._begin()
        self.host.session.skip(idx.tolist())
        self.host.after_change(content.get("request"))

    def unsure(self, content, buffers):
        idx = indices_from(content, buffers, self.n, "unsure")
        self._begin()
        self.host.session.mark_unsure(idx.tolist())
        self.host.after_change(content.get("request"))

    def next_batch(self, content, buffers):
        self._begin()
        self.host.ask_fresh_batch()

    def set_strategy(self, content, buffers):
        name = content.get("name")
        if not isinstance(name, str) or name not in self.host.strategies:
            raise Intent(f"unknown strategy {name!r}; choose one of {', '.join(self.host.strategies)}")
        self._begin()
        self.host.session.strategy = name  # the worker reselects; the subscriber pushes the batch
        self.host.refresh_status()

    def add_class(self, content, buffers):
        name = content.get("name")
        if not isinstance(name, str) or not name.strip():
            raise Intent("add_class needs a non-empty class name")
        name = name.strip()
        try:
            check_class_name(name)
        except (TypeError, ValueError) as exc:
            raise Intent(str(exc)) from None
        if len(name) > 200:
            raise Intent("class names are limited to 200 characters")
        if name in self.host.classes:
            raise Intent(f"class {name!r} already exists")
        self._begin()
        self.host.session.add_class(name)
        self.host.classes = list(self.host.session.classes)
        self.host.refresh_status()

    def _item(self, i: int, classes: list) -> dict:
        st = self.host.state
        label, pred = int(st.label[i]), int(st.pred[i])
        return {
            "index": i,
            "name": self.host.point_name(i),
            "label": classes[label] if 0 <= label < len(classes) else None,
            "unsure": bool(st.flags[i] & 1),
            "pred": classes[pred] if 0 <= pred < len(classes) else None,
            "conf": float(st.conf[i]) if pred >= 0 else None,
        }

    def thumbs(self, content, buffers):
        raw = content.get("indices")
        if not isinstance(raw, list):
            raise Intent("thumbs needs 'indices': a list of point indices")
        indices = check_indices(raw[:MAX_THUMBS_PER_REQUEST], self.n)
        classes = list(self.host.classes)
        items, blobs = [], []
        for i in indices.tolist():
            item = dict(self._item(i, classes), image=False)
            try:
                blob = self.host.thumbnail(i)
                if blob is not None:
                    blobs.append(blob)
                    item.update(image=True, mime="image/jpeg")
            except Exception as exc:  # one unreadable image must not break the gallery
                item["error"] = f"{type(exc).__name__}: {exc}"
            items.append(item)
        self.host.emit({"type": "thumbs", "request": content.get("request"), "items": items}, blobs)

    def propose_batch(self, content, buffers):
        """The open batch items with their predictions, for the review grid (nothing is labelled)."""
        st, status = self.host.state, self.host.status
        reply = {"type": "proposal", "request": content.get("request"), "items": []}
        if not status.get("can_accept"):
            reply["error"] = status.get("accept_reason") or "accepting predictions is not available now"
        else:
            classes = list(self.host.classes)
            test = self.host.session.trust.is_test(st.batch)  # a test answered by the model would measure nothing
            reply["items"] = [self._item(int(i), classes) for i, t in zip(st.batch, test)
                              if st.label[i] < 0 and not st.flags[i] and st.pred[i] >= 0 and not t]
        self.host.emit(reply, [])

    def check_model(self, content, buffers):
        """The "Check my model" toggle: {on: bool}."""
        on = content.get("on")
        if not isinstance(on, bool):
            raise Intent(f"check_model needs 'on': true or false, got {on!r}")
        self._begin()
        try:
            self.host.check_model(on)
        except ValueError as exc:  # e.g. every item is labelled: nothing to check the model on
            raise Intent(str(exc)) from None

    def recheck(self, content, buffers):
        """Labels worth a second look: answered by a `recheck` message (nothing is relabelled)."""
        from .widget_trust import RECHECK_DEFAULT, RECHECK_MAX

        k = content.get("k", RECHECK_DEFAULT)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= RECHECK_MAX:
            raise Intent(f"recheck needs 'k': an integer from 1 to {RECHECK_MAX}, got {k!r}")
        self._begin()
        self.host._trust.recheck(k, content.get("request"))

    HANDLERS = {
        "hello": hello, "ping": ping, "label": label, "label_groups": label_groups, "undo": undo,
        "skip": skip, "unsure": unsure, "next_batch": next_batch, "set_strategy": set_strategy,
        "add_class": add_class, "thumbs": thumbs, "propose_batch": propose_batch,
        "check_model": check_model, "recheck": recheck,
    }
