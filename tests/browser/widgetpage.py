"""Helpers for driving the widget on a page and reading its store file (shared by the browser tests)."""
from __future__ import annotations

import time

import numpy as np

ROOT = ".alw-root"


def root_sel(nth: int = 0) -> str:
    """Playwright selector of the nth widget on the page (0: the first)."""
    return f"{ROOT} >> nth={nth}"


_DEMO_ITEMS = []


def demo_items():
    """The item identities of the bundled demo images, in the widget's row order."""
    if not _DEMO_ITEMS:
        from alwidget import datasets

        _DEMO_ITEMS.append(datasets.demo().to_images().items())
    return _DEMO_ITEMS[0]


def store_labels(path: str, items=None) -> dict[int, str]:
    """{row: class name} as committed in the store file (read by this process, not the kernel).

    Rows are those of `items` (default: the demo images, as the notebooks under test show them).
    """
    from alwidget.store import LabelStore

    store = LabelStore.open_readonly(path, demo_items() if items is None else items)
    try:
        return {int(i): str(c) for i, c in store.current().items()}
    finally:
        store.close()


def store_state(path: str, items=None):
    """The store's per-row arrays (cls, unsure, test, skip_age) for the rows of `items` (demo)."""
    from alwidget.store import LabelStore

    store = LabelStore.open_readonly(path, demo_items() if items is None else items)
    try:
        return store.state()
    finally:
        store.close()


def wait_for(predicate, timeout_s: float = 60, what: str = "condition"):
    """Poll `predicate()` until it returns a truthy value; return that value.

    `what` names the condition in the timeout's message (a callable: called then, e.g. to report
    the page's state at that moment)."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.2)
    what = what() if callable(what) else what
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last value: {last!r})")


def wait_store(path, predicate, timeout_s=30, what="the store"):
    """Wait until the store's labels satisfy predicate(labels); return them."""
    box = {}

    def check():
        box["labels"] = store_labels(path)
        return predicate(box["labels"])

    wait_for(check, timeout_s, what)
    return box["labels"]


def root_data(page, key: str, nth: int = 0) -> str:
    return page.get_attribute(root_sel(nth), f"data-alw-{key}") or ""


def batch_of(page, nth: int = 0) -> list[int]:
    return [int(v) for v in root_data(page, "batch", nth).split(",") if v]


def api(page, expr: str, arg=None, nth: int = 0):
    """Evaluate `expr` with `a` bound to the nth widget's root.alw API (and `arg`)."""
    return page.evaluate(
        f"(arg) => {{ const a = document.querySelectorAll('{ROOT}')[{nth}].alw; return {expr}; }}", arg)


def state(page, nth: int = 0) -> dict:
    return api(page, "a.state()", nth=nth)


def screen_positions(page, nth: int = 0) -> np.ndarray:
    """(N, 2) viewport coordinates of every point."""
    flat = api(page, "a.screenPositions()", nth=nth)
    return np.asarray(flat, dtype=float).reshape(-1, 2)


def stable_positions(page, nth: int = 0, timeout_s: float = 15) -> np.ndarray:
    """Screen positions once they stop changing (a resize, a refit or a scroll moves every point),
    with the map scrolled into view first (points to click must be on screen)."""
    show_map(page, nth)
    last = screen_positions(page, nth)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(0.4)
        now = screen_positions(page, nth)
        if now.shape == last.shape and np.allclose(now, last, atol=0.01):
            return now
        last = now
    raise AssertionError("the points kept moving on screen")


def canvas_box(page, nth: int = 0) -> dict:
    return page.locator(f"{root_sel(nth)} >> .alw-canvas").first.bounding_box()


def on_canvas(page, x: float, y: float) -> bool:
    """True when the map canvas itself (not the legend, gallery or a hover card) is at (x, y)."""
    return page.evaluate(
        "([x, y]) => { const e = document.elementFromPoint(x, y); return !!e && e.classList.contains('alw-canvas'); }",
        [float(x), float(y)],
    )


def move_off_map(page, nth: int = 0):
    box = canvas_box(page, nth)
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] - 25)  # over the toolbar: the hover card hides


def paints(page) -> int:
    return int(root_data(page, "paints") or 0)


def settle(page, quiet_s: float = 1.5, timeout_s: float = 60):
    """Wait until the map has not received or drawn anything for `quiet_s` seconds."""
    deadline = time.monotonic() + timeout_s
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        now = (root_data(page, "version"), root_data(page, "paints"), root_data(page, "pending"))
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s and now[2] == "0":
            return
        time.sleep(0.1)
    raise AssertionError(f"the map kept changing for {timeout_s} s")


def drag_path(page, polygon, step_px: float = 6.0, shift: bool = False):
    """Drag the mouse through `polygon` (viewport coords) in small, paced steps, as a hand would.

    regl-scatterplot keeps a lasso point only every >= 10 ms and >= 3 px. The stroke stops at the
    last vertex (a lasso closes itself).
    """
    pts = list(polygon)
    if shift:
        page.keyboard.down("Shift")
    page.mouse.move(*pts[0])
    page.mouse.down()
    for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
        steps = max(2, int(np.hypot(x1 - x0, y1 - y0) / step_px))
        for t in np.linspace(0, 1, steps + 1)[1:]:
            page.mouse.move(x0 + t * (x1 - x0), y0 + t * (y1 - y0))
            time.sleep(0.02)
    page.mouse.up()
    if shift:
        page.keyboard.up("Shift")


def square_around(cx, cy, half):
    return [(cx - half, cy - half), (cx + half, cy - half), (cx + half, cy + half), (cx - half, cy + half)]


def inside_square(positions, cx, cy, half, margin=6.0):
    """(surely inside, surely outside) index sets of a square lasso (points near the edge excluded:
    the lasso records its first vertex a few pixels into the drag, which shaves the closing edge)."""
    dx, dy = np.abs(positions[:, 0] - cx), np.abs(positions[:, 1] - cy)
    surely_in = set(np.flatnonzero((dx < half - margin) & (dy < half - margin)).tolist())
    surely_out = set(np.flatnonzero(~((dx < half + margin) & (dy < half + margin))).tolist())
    return surely_in, surely_out


def dense_spot(positions, box, half):
    """A lasso centre inside the canvas where a square of `half` holds the most points."""
    best, best_n = None, -1
    for fx in np.linspace(0.25, 0.75, 6):
        for fy in np.linspace(0.25, 0.75, 6):
            cx, cy = box["x"] + fx * box["width"], box["y"] + fy * box["height"]
            n = len(inside_square(positions, cx, cy, half)[0])
            if n > best_n:
                best, best_n = (cx, cy), n
    return best


def dismiss_dialogs(page):
    """Close JupyterLab/Notebook dialogs (e.g. "Kernel Restarting") that take the keyboard focus."""
    for _ in range(3):
        buttons = page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
        if not buttons.count():
            return
        buttons.first.click()
        time.sleep(0.3)


def show_map(page, nth: int = 0):
    """Scroll the map canvas into view: the whole widget (toolbar, find bar, map, gallery, status)
    can be taller than the window, and scrolling to the widget's bottom leaves the map's top hidden."""
    page.locator(f"{root_sel(nth)} >> .alw-canvas").first.scroll_into_view_if_needed()


def map_report(page, nth: int = 0) -> dict:
    """What the map shows, for an assertion message: the camera, the canvas, where the points are
    (their bounding box on screen and how many fall on the canvas), the root's state attributes."""
    pos = screen_positions(page, nth)
    box = canvas_box(page, nth)
    finite = np.isfinite(pos).all(axis=1)
    on = finite & (pos[:, 0] >= box["x"]) & (pos[:, 0] <= box["x"] + box["width"]) \
        & (pos[:, 1] >= box["y"]) & (pos[:, 1] <= box["y"] + box["height"])
    keys = ("ready", "version", "coords", "paints", "pending", "notice", "error", "review", "selected")
    return {
        "camera": api(page, "a.camera()", nth=nth),
        "canvas": box,
        "points": {"n": len(pos), "finite": int(finite.sum()), "on_canvas": int(on.sum()),
                   "box": pos[finite].min(axis=0).round(1).tolist() + pos[finite].max(axis=0).round(1).tolist()
                   if finite.any() else None},
        "data": {k: root_data(page, k, nth) for k in keys},
    }
