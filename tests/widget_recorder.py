"""Stands in for the widget's comm in the tests without a browser: keeps every message the
Labeller sends and decodes the binary ones (arrays, label deltas, search results, filters)."""
from __future__ import annotations

import numpy as np


class Recorder:
    def __init__(self):
        self.messages = []  # (content, [bytes of each buffer])

    def __call__(self, content, buffers):
        self.messages.append((content, [bytes(b) for b in buffers]))

    def of(self, kind):
        """(content, buffers) of every message of this type, in order."""
        return [(c, b) for c, b in self.messages if c.get("type") == kind]

    def contents(self, kind):
        return [c for c, _ in self.of(kind)]

    def arrays(self):
        """Every array as last sent (later commits override earlier ones): (last commit, name -> ndarray)."""
        commits = self.of("commit")
        assert commits, "no commit message was sent"
        out = {}
        for content, (buf,) in self.of("array"):
            arr = out.get(content["name"])
            if arr is None or arr.size != content["total"] or content["offset"] == 0:
                arr = out[content["name"]] = np.zeros(content["total"], dtype=content["dtype"])
            part = np.frombuffer(buf, dtype=content["dtype"])
            arr[content["offset"] : content["offset"] + part.size] = part
        return commits[-1][0], out

    def label_deltas(self):
        """All label changes sent, in order: list of (indices, class ids, flags)."""
        return [tuple(np.frombuffer(b, dtype=t) for b, t in zip(bufs, (np.int32, np.int16, np.uint8)))
                for _, bufs in self.of("labels")]

    def acks(self):
        return {c["request"]: c for c, _ in self.of("ack")}

    def ack(self, request):
        return next(c for c, _ in self.of("ack") if c["request"] == request)

    def last_found(self):
        content, (idx, scores) = self.of("found")[-1]
        return content, np.frombuffer(idx, np.int32), np.frombuffer(scores, np.float32)

    def last_filter(self):
        content, (bits,) = self.of("filter")[-1]
        keep = np.unpackbits(np.frombuffer(bits, np.uint8), bitorder="little")[: content["n_points"]].astype(bool)
        return content, keep
