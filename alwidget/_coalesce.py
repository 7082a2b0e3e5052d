"""Coalescing a burst of update requests from several threads into as few runs as possible."""
from __future__ import annotations

import threading
from contextlib import contextmanager

__all__ = ["Coalescer"]


class Coalescer:
    """Run `fn` after each `request()`, never twice at once, merging requests that arrive meanwhile.

    A request made while `fn` runs only marks the work dirty; the running caller loops once more.
    So a burst of N requests costs at most two runs, and the last run starts after the last
    request. `alive()` stops the loop (e.g. once the widget is closed).
    """

    def __init__(self, fn, alive=lambda: True):
        self._fn, self._alive = fn, alive
        self._lock, self._dirty = threading.Lock(), threading.Event()

    def request(self) -> None:
        self._dirty.set()
        while self._alive():
            if not self._lock.acquire(blocking=False):
                return  # the running caller sees the dirty flag and runs again
            try:
                while self._dirty.is_set():
                    self._dirty.clear()
                    self._fn()
            finally:
                self._lock.release()
            if not self._dirty.is_set():
                return

    @contextmanager
    def held(self):
        """Run a first update by hand (requests meanwhile are kept and run on exit)."""
        with self._lock:
            self._dirty.clear()
            yield
        if self._dirty.is_set():
            self.request()
