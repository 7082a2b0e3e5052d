"""The widget's side of "know when you are done": Check my model, the estimate and stop hint in
the status line, the Re-check queue and a small plotly panel.

The engine is `alwidget.monitor.TrustMonitor` (reached as `session.trust`); this module only
words its results, lists the test requests of the shown batch for the front end, answers the
browser's `recheck` request in the background and keeps plotly panels up to date. Nothing here
changes a label: relabelling from the Re-check grid is an ordinary `label_groups` message.

`TrustView(host)` acts on the Labeller through `session`, `state` (the MapState), `classes`,
`point_name(i)`, `emit()`, `ask_fresh_batch()` and `refresh_status()`.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from . import trust
from .mapstate import FLAG_TEST
from .monitor import TEST_EVERY
from .widget_status import accept_state

__all__ = ["RECHECK_DEFAULT", "RECHECK_MAX", "TrustMixin", "TrustView", "estimate_words", "recheck_state", "stop_words",
           "training_counts"]

RECHECK_DEFAULT = 20  # cards the Re-check button asks for
RECHECK_MAX = 200
PANEL_INTERVAL_S = 1.0  # a panel redraws at most this often (bursts of retrains coalesce)
TEST_WORDS = "test images measure the model and never train it"


def _pct(x: float) -> int:
    return int(round(100 * float(x)))


def estimate_words(est: dict, on: bool) -> str:
    """The accuracy sentence for the status line ("" when there is nothing to say).

    The estimate shows only with its interval, from `trust.MIN_TESTS_FOR_INTERVAL` test labels;
    below that the sentence says how many more are needed. An estimate stays shown after the
    check is turned off: it is still about the current model.
    """
    n = int(est.get("n_test") or 0)
    if est.get("estimate") is not None and est.get("low") is not None and n >= trust.MIN_TESTS_FOR_INTERVAL:
        return (f"The model is right on about {_pct(est['estimate'])} % of unlabelled images "
                f"(95 % interval {_pct(est['low'])}–{_pct(est['high'])} %), from {n} test labels")
    if not on:
        return ""
    if n == 0:
        return f"Checking the model: label the images marked “test” like any other ({TEST_WORDS})"
    more = trust.MIN_TESTS_FOR_INTERVAL - n
    return (f"Checking the model: {n} test label{'s' if n != 1 else ''} so far, {more} more before "
            "the estimate shows")


def stop_words(stop: dict, checkpoints: list, on: bool) -> str:
    """The stop hint sentence, only when predictions have stopped changing ("" otherwise)."""
    if not stop.get("stable"):
        return ""
    w = trust.STOP_WINDOW
    span = checkpoints[-1]["n_labels"] - checkpoints[-1 - w]["n_labels"] if len(checkpoints) > w else 0
    if on:
        return f"Predictions stopped changing over the last {span} labels; the estimate says if that is good enough"
    return f"Predictions stopped changing over the last {span} labels; check the model to confirm"


def training_counts(m, n_classes: int) -> np.ndarray:
    """Training labels per class id from a MapState (test labels are not training labels)."""
    train = m.label[(m.label >= 0) & ((m.flags & FLAG_TEST) == 0)]
    return np.bincount(train.astype(np.int64), minlength=n_classes)[:n_classes]


def recheck_state(counts, classes: list) -> tuple[bool, str]:
    """(available, why not / what it does) for the Re-check button."""
    ready = [c for c, k in zip(classes, counts) if k >= 2]
    if len(ready) < 2:
        return False, ("Re-check needs at least 2 labels in each of 2 classes "
                       f"(so far: {', '.join(ready) or 'none'}).")
    return True, ("Labels worth a second look: the ones a model trained without them finds least likely. "
                  "Nothing changes unless you relabel.")


class _Throttle:
    """Run `fn` at most every `interval` seconds; a call meanwhile runs once, when the time is up."""

    def __init__(self, fn, interval: float):
        self._fn, self._interval = fn, float(interval)
        self._lock, self._last, self._timer = threading.Lock(), 0.0, None

    def __call__(self):
        with self._lock:
            if self._timer is not None:
                return  # already scheduled: it will see the newest state
            wait = self._last + self._interval - time.monotonic()
            if wait > 0:
                self._timer = threading.Timer(wait, self._run)
                self._timer.daemon = True
                self._timer.start()
                return
            self._last = time.monotonic()
        self._fn()

    def _run(self):
        with self._lock:
            self._timer, self._last = None, time.monotonic()
        self._fn()

    def cancel(self):
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None


class TrustView:
    """Check my model, status words, Re-check and panels for one Labeller (`host`)."""

    def __init__(self, host):
        self.host = host
        self._panels: list = []  # (FigureWidget, throttle, subscriber)

    # ------------------------------------------------------------------ the switch
    def check_model(self, on: bool = True, every: int = TEST_EVERY) -> None:
        """Start (or stop) test requests; on start the batch is refreshed, so no card of the
        reserved evaluation set stays on screen (labelling one by browsing would restart the estimate)."""
        self.host.session.check_model(bool(on), every=every)
        if on:
            self.host.ask_fresh_batch()
        else:
            self.host.refresh_status()

    # ------------------------------------------------------------------ status
    def test_requests(self) -> list[int]:
        """Open test requests of the shown batch (rows), in batch order."""
        m = self.host.state
        batch = m.batch
        if not batch.size:
            return []
        is_test = self.host.session.trust.is_test(batch)
        open_ = (m.label[batch] < 0) & (m.flags[batch] == 0)
        return [int(i) for i in batch[is_test & open_]]

    def fields(self) -> dict:
        """The `status["trust"]` dict: switch, test requests, estimate, stop hint, Re-check."""
        mon = self.host.session.trust
        classes = list(self.host.classes)
        est = mon.accuracy_estimate()
        counts = training_counts(self.host.state, len(classes))
        stop = mon.stopping(counts, classes)
        cps = mon.history()["checkpoints"]
        can_recheck, recheck_reason = recheck_state(counts, classes)
        n = int(est.get("n_test") or 0)
        return {
            "on": bool(est.get("on")), "tests": self.test_requests(), "n_test": n,
            "needed": max(0, trust.MIN_TESTS_FOR_INTERVAL - n),
            "estimate": est.get("estimate"), "low": est.get("low"), "high": est.get("high"),
            "text": estimate_words(est, bool(est.get("on"))), "stable": bool(stop["stable"]),
            "kappa": stop["kappa"], "stop_text": stop_words(stop, cps, bool(est.get("on"))),
            "can_recheck": can_recheck, "recheck_reason": recheck_reason,
        }

    def status(self, status: dict) -> dict:
        """`status` with "trust" added and its sentences appended to the status line."""
        try:
            t = self.fields()
        except Exception as exc:  # the status line must never fail because of the check
            t = {"on": False, "tests": [], "text": "", "stop_text": "", "can_recheck": False,
                 "recheck_reason": f"model check unavailable: {type(exc).__name__}: {exc}"}
        words = [w for w in (t["text"], t["stop_text"]) if w]
        out = dict(status, trust=t)
        if t["tests"] and "n_open" in status:  # accepting predictions leaves the test requests out
            named = [c for c, k in status.get("counts", {}).items() if k]
            out["n_open"] = max(0, status["n_open"] - len(t["tests"]))
            out["can_accept"], out["accept_reason"] = accept_state(status["n_label_classes"], status["has_model"],
                                                                   out["n_open"], named)
        if words and not status.get("closed_reason"):
            out["text"] = " · ".join([status.get("text", "")] + words) if status.get("text") else " · ".join(words)
        return out

    # ------------------------------------------------------------------ Re-check
    def recheck_items(self, k: int) -> list[dict]:
        """The k labels most worth a second look, as the grid shows them (class names)."""
        df = self.host.session.suspect_labels(k)
        return [{"index": int(r.index), "name": self.host.point_name(int(r.index)), "label": str(r.label),
                 "suggested": str(r.suggested), "score": float(r.score), "flagged": bool(r.flagged)}
                for r in df.itertuples(index=False)]

    def recheck(self, k: int, request=None, background: bool = True):
        """Answer a `recheck` request with a `recheck` message (cross-validation runs off the kernel's thread)."""
        def run():
            reply = {"type": "recheck", "request": request, "items": []}
            try:
                reply["items"] = self.recheck_items(k)
                if not reply["items"]:
                    reply["error"] = "No label can be checked yet: it needs at least 2 labels in each of 2 classes."
            except Exception as exc:  # reported to the browser, never raised in a thread
                reply["error"] = f"Re-check failed: {type(exc).__name__}: {exc}"
            self.host.emit(reply, [])

        if not background:
            return run()
        threading.Thread(target=run, name="alwidget-recheck", daemon=True).start()

    # ------------------------------------------------------------------ the panel
    def panel_data(self) -> dict:
        """What the panel draws: estimates with their interval (from 10 test labels) over training
        labels, gaps at restarts; kappa per checkpoint; training labels per class."""
        hist = self.host.session.trust.history()
        x, est, low, high = [], [], [], []
        for e in hist["estimates"]:
            if e.get("restart"):  # a new draw sequence: the line breaks
                x.append(e["n_labels"]), est.append(None), low.append(None), high.append(None)
            elif e.get("low") is not None:  # as in the status line: no estimate without its interval
                x.append(e["n_labels"]), est.append(e["estimate"]), low.append(e["low"]), high.append(e["high"])
        cps = [c for c in hist["checkpoints"] if c["kappa"] is not None]
        classes = list(self.host.classes)
        return {"n_labels": x, "estimate": est, "low": low, "high": high,
                "kappa_x": [c["n_labels"] for c in cps], "kappa": [c["kappa"] for c in cps],
                "classes": classes, "counts": training_counts(self.host.state, len(classes)).tolist()}

    def panel(self):
        """A plotly FigureWidget (3 plots) that follows the session (redrawn at most once a second)."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        sub = make_subplots(rows=1, cols=3, column_widths=[0.45, 0.3, 0.25], horizontal_spacing=0.08,
                            subplot_titles=("Estimated accuracy (95 % interval)", "κ between checkpoints",
                                            "Training labels per class"))
        fig = go.FigureWidget(sub)
        band = {"mode": "lines", "line": {"width": 0}, "hoverinfo": "skip", "showlegend": False}
        fig.add_trace(go.Scatter(name="interval low", **band), row=1, col=1)
        fig.add_trace(go.Scatter(name="95 % interval", fill="tonexty", fillcolor="rgba(31,119,180,0.2)", **band),
                      row=1, col=1)
        fig.add_trace(go.Scatter(name="estimate", mode="lines+markers", line={"color": "#1f77b4"}), row=1, col=1)
        fig.add_trace(go.Scatter(name="κ", mode="lines+markers", line={"color": "#2ca02c"}), row=1, col=2)
        fig.add_trace(go.Bar(name="labels", marker={"color": "#7f7f7f"}), row=1, col=3)
        fig.update_yaxes(range=[0, 1], row=1, col=1)
        fig.update_xaxes(title_text="training labels", row=1, col=1)
        fig.update_xaxes(title_text="training labels", row=1, col=2)
        fig.add_hline(y=trust.STOP_THRESHOLD, line={"dash": "dot", "color": "#999"}, row=1, col=2)
        fig.update_layout(height=300, showlegend=False, template="plotly_white", margin={"l": 40, "r": 10, "t": 40,
                                                                                          "b": 40})
        self.fill_panel(fig)

        def redraw():
            if not self.host.session.closed:
                try:
                    self.fill_panel(fig)
                except Exception as exc:  # a panel must not break the session's worker
                    self.host.set_error(f"the model panel could not be updated: {type(exc).__name__}: {exc}")

        throttle = _Throttle(redraw, PANEL_INTERVAL_S)
        subscriber = lambda *_a: throttle()  # noqa: E731 (one per panel: unsubscribed on close)
        self.host.session.subscribe(subscriber)
        self._panels.append((fig, throttle, subscriber))
        return fig

    def fill_panel(self, fig) -> None:
        d = self.panel_data()
        with fig.batch_update():
            fig.data[0].update(x=d["n_labels"], y=d["low"])
            fig.data[1].update(x=d["n_labels"], y=d["high"])
            fig.data[2].update(x=d["n_labels"], y=d["estimate"])
            fig.data[3].update(x=d["kappa_x"], y=d["kappa"])
            fig.data[4].update(x=d["classes"], y=d["counts"])

    def close(self):
        for _fig, throttle, subscriber in self._panels:
            throttle.cancel()
            self.host.session.unsubscribe(subscriber)
        self._panels.clear()


class TrustMixin:
    """The Labeller's model-check API (uses its ``_trust``: a :class:`TrustView`)."""

    def check_model(self, on: bool = True, *, every: int = 5) -> None:
        """Start (or stop) checking the model: 1 test request per `every` training labels.

        Test requests come in the batch like any other image (marked "test"); their labels
        measure the model and never train it. The estimate shows in the status line from 10 test
        labels on (see `Session.check_model`, `Session.accuracy_estimate`).
        """
        self._trust.check_model(on, every)

    def trust_panel(self):
        """A plotly FigureWidget: estimated accuracy ± interval over labels, κ over checkpoints and
        training labels per class; it follows the session (redrawn at most once a second)."""
        return self._trust.panel()
