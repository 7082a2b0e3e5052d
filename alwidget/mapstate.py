"""What the browser's map shows, as plain arrays, and the messages that carry each change.

`MapState` is pure: no comm, no threads, no Session. The widget feeds it the Session's
state (labels, predictions, the suggested batch) and emits the messages it returns; each
update returns only what changed (see docs/widget-protocol.md for the message format).
Tests drive it directly.
"""
from __future__ import annotations

import numpy as np

from . import _serialize

__all__ = ["FLAG_SKIPPED", "FLAG_TEST", "FLAG_UNSURE", "MapState", "fit_square", "merge_batch", "model_arrays"]

#: Bits of the per-point `flags` array.
FLAG_UNSURE, FLAG_SKIPPED, FLAG_TEST = 1, 2, 4

Message = tuple  # (content dict, list of buffers)


def fit_square(xy, margin: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Scale (N, 2) coordinates into [-margin, margin] keeping the aspect ratio (float32 x, y)."""
    xy = np.asarray(xy, dtype=np.float64)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    centre = (lo + hi) / 2
    span = float((hi - lo).max()) or 1.0
    scaled = (xy - centre) * (2 * margin / span)
    return scaled[:, 0].astype(np.float32), scaled[:, 1].astype(np.float32)


def model_arrays(proba, n: int):
    """(pred int16, conf float32, uncert uint8) from (N, C) probabilities, or the "no model" arrays.

    Uncertainty shown = 1 - margin between the two most likely classes, quantised to 0..255.
    """
    if proba is None or not len(proba):
        return np.full(n, -1, np.int16), np.zeros(n, np.float32), np.zeros(n, np.uint8)
    proba = np.asarray(proba, dtype=np.float32)
    if proba.shape[1] > 1:
        top2 = np.partition(proba, proba.shape[1] - 2, axis=1)[:, -2:]
        top2.sort(axis=1)
    else:
        top2 = np.concatenate([np.zeros_like(proba), proba], axis=1)
    pred = proba.argmax(axis=1).astype(np.int16)
    uncert = np.clip(np.rint((1.0 - (top2[:, 1] - top2[:, 0])) * 255), 0, 255).astype(np.uint8)
    return pred, top2[:, 1].copy(), uncert


def merge_batch(shown, suggested, done, size: int) -> np.ndarray:
    """The batch to show: cards not done keep their place, new suggestions fill the freed slots.

    shown : (B,) the batch on screen now; suggested : the strategy's latest picks (best first);
    done : (N,) bool, points that left the batch (labelled, unsure, skipped). Returns int64
    indices, at most `size`, no duplicates, none done.
    """
    done = np.asarray(done, dtype=bool)
    slots = [int(i) for i in shown if not done[int(i)]]
    freed = [pos for pos, i in enumerate(shown) if done[int(i)]]
    seen = set(slots)
    fresh = []
    for i in (int(v) for v in suggested):
        if not done[i] and i not in seen:
            seen.add(i)
            fresh.append(i)
    out = [int(i) for i in shown]
    for pos in freed:
        out[pos] = fresh.pop(0) if fresh else -1
    out = [i for i in out if i >= 0]
    out.extend(fresh[: max(0, size - len(out))])
    return np.asarray(out[:size], dtype=np.int64)


class MapState:
    """Per-point arrays of the map (as the browser sees them) and a message version counter.

    x, y float32 (N,) in [-1, 1]; label int16 (-1 none); flags uint8 (FLAG_* bits);
    pred int16 (-1 before a model with two classes); conf float32; uncert uint8; batch int64.
    """

    def __init__(self, x, y):
        self.x = np.asarray(x, dtype=np.float32)
        self.y = np.asarray(y, dtype=np.float32)
        n = self.n = int(self.x.shape[0])
        self.label = np.full(n, -1, np.int16)
        self.flags = np.zeros(n, np.uint8)
        self.pred, self.conf, self.uncert = model_arrays(None, n)
        self.batch = np.zeros(0, np.int64)
        self.version = 0
        self.model_key = None  # what the model arrays were made from (the widget's business)

    # ------------------------------------------------------------------ updates (pure state)
    def set_labels(self, label, flags=None) -> np.ndarray:
        """Take new label ids (and flags); returns the indices whose label or flags changed."""
        label = np.asarray(label, dtype=np.int16)
        flags = np.zeros(self.n, np.uint8) if flags is None else np.asarray(flags, dtype=np.uint8)
        changed = np.flatnonzero((label != self.label) | (flags != self.flags))
        self.label, self.flags = label.copy(), flags.copy()
        return changed

    def set_model(self, proba) -> bool:
        """Take the probe's probabilities (None: no model to show); True when anything changed."""
        pred, conf, uncert = model_arrays(proba, self.n)
        same = np.array_equal(pred, self.pred) and np.array_equal(uncert, self.uncert)
        self.pred, self.conf, self.uncert = pred, conf, uncert
        return not same  # confidences travel with thumbnails, not with the map

    def set_batch(self, suggested, size: int, fresh: bool = False) -> bool:
        """Merge the strategy's suggestions into the shown batch (stable order); True if it changed.

        fresh=True replaces the whole batch (the user asked for a new one).
        """
        done = (self.label >= 0) | (self.flags != 0)
        shown = np.zeros(0, np.int64) if fresh else self.batch
        new = merge_batch(shown, np.asarray(suggested, dtype=np.int64).reshape(-1), done, size)
        if np.array_equal(new, self.batch):
            return False
        self.batch = new
        return True

    def set_coords(self, x, y):
        self.x = np.asarray(x, dtype=np.float32)
        self.y = np.asarray(y, dtype=np.float32)

    def dataframe(self, classes: list, names: list):
        """One row per point: index, name, label, prediction, confidence (pandas)."""
        import pandas as pd

        def name_of(ids):
            return [classes[c] if 0 <= c < len(classes) else None for c in ids]

        return pd.DataFrame({"index": np.arange(self.n), "name": names, "label": name_of(self.label),
                             "prediction": name_of(self.pred),
                             "confidence": np.where(self.pred >= 0, self.conf, np.nan)})

    # ------------------------------------------------------------------ messages
    def arrays_message(self, names, reset: bool = False) -> list[Message]:
        """Chunked `array` messages for `names` and their `commit` (one new version)."""
        self.version += 1
        out = []
        for name in names:
            arr = getattr(self, name)
            if name == "batch":
                arr = arr.astype(np.int32)
            out.extend(_serialize.chunk_messages(name, arr, self.version))
        out.append(({"type": "commit", "version": self.version, "names": list(names), "n_points": self.n,
                     "reset": bool(reset)}, []))
        return out

    def full_message(self) -> list[Message]:
        """The whole state (answer to `hello`)."""
        return self.arrays_message(["x", "y", "label", "flags", "pred", "uncert", "batch"], reset=True)

    def labels_message(self, changed, request=None) -> list[Message]:
        """`labels` deltas for the changed indices (chunked so no message outgrows CHUNK_BYTES)."""
        changed = np.asarray(changed, dtype=np.int64)
        if not changed.size:
            return []
        self.version += 1
        idx = _serialize.to_wire(changed.astype(np.int32))
        cls = _serialize.to_wire(self.label[changed])
        flg = _serialize.to_wire(self.flags[changed])
        per = max(1, _serialize.CHUNK_BYTES // 7)  # 4 + 2 + 1 bytes per changed point
        out = []
        for s in range(0, idx.size, per):
            content = {"type": "labels", "version": self.version}
            if request is not None:
                content["request"] = request
            bufs = [memoryview(a[s : s + per]).cast("B") for a in (idx, cls, flg)]
            out.append((content, bufs))
        return out
