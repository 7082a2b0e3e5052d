"""The widget in a real browser: JupyterLab on 127.0.0.1 + Debian's Chromium (see conftest.py).

The tests run in file order on one quickstart notebook (one kernel, one store file): each step
starts from the labels the previous steps left and asserts on the change it makes, reading the
SQLite store file from this process. Every step saves a screenshot (`lab.shots`).
"""
from __future__ import annotations

import functools
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
ROOT = ".alw-root"
EVIL_NAME = "<img src=x onerror=alert(1)>"
EVIL_CLASS = "<b onmouseover=alert(2)>bold</b>"


# --------------------------------------------------------------------------- helpers
def store_labels(path: str) -> dict[int, str]:
    """{index: class name} as committed in the store file (read by this process, not the kernel)."""
    from alwidget.store import LabelStore

    store = LabelStore.open_readonly(path, _demo_items())
    try:
        return {int(i): str(c) for i, c in store.current().items()}
    finally:
        store.close()


@functools.lru_cache(maxsize=1)
def _demo_items():
    """Identities of the quickstart's rows (the demo data set, every image embeds)."""
    from alwidget import datasets

    return datasets.demo().to_images().items()


def wait_for(predicate, timeout_s: float = 60, what: str = "condition"):
    """Poll `predicate()` until it returns a truthy value; return that value."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last value: {last!r})")


def wait_store(path, predicate, timeout_s=30, what="the store"):
    """Wait until the store's labels satisfy predicate(labels); return them."""
    box = {}

    def check():
        box["labels"] = store_labels(path)
        return predicate(box["labels"])

    wait_for(check, timeout_s, what)
    return box["labels"]


def root_data(page, key: str) -> str:
    return page.get_attribute(ROOT, f"data-alw-{key}") or ""


def batch_of(page) -> list[int]:
    text = root_data(page, "batch")
    return [int(v) for v in text.split(",") if v]


def screen_positions(page) -> np.ndarray:
    """(N, 2) viewport coordinates of every point (NaN where the widget returns null)."""
    pts = page.evaluate(
        f"""() => {{
            const r = document.querySelector('{ROOT}');
            const n = Number(r.dataset.alwNPoints);
            const out = [];
            for (let i = 0; i < n; i++) {{ const p = r.alw.screenPosition(i); out.push(p ? p : [NaN, NaN]); }}
            return out;
        }}"""
    )
    return np.asarray(pts, dtype=float)


def canvas_box(page) -> dict:
    return page.locator(".alw-canvas").first.bounding_box()


def focus_map(page):
    page.focus(ROOT)


def on_canvas(page, x: float, y: float) -> bool:
    """True when the map canvas itself (not the legend, gallery or a hover card) is at (x, y)."""
    return page.evaluate(
        "([x, y]) => { const e = document.elementFromPoint(x, y); return !!e && e.classList.contains('alw-canvas'); }",
        [float(x), float(y)],
    )


def click_point(page, i: int, positions: np.ndarray):
    """Click point i on the map, after moving off the map so that no hover card covers it."""
    box = canvas_box(page)
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] - 20)  # over the toolbar: hover card hides
    x, y = (float(v) for v in positions[i])
    wait_for(lambda: on_canvas(page, x, y), 5, f"point {i} to be uncovered")
    page.mouse.click(x, y)


def isolated_points(positions: np.ndarray, candidates, box, min_gap=8.0) -> list[int]:
    """Candidates inside the canvas whose nearest other point is at least min_gap px away."""
    ok = []
    for i in candidates:
        p = positions[i]
        if not np.isfinite(p).all():
            continue
        if not (box["x"] + 10 < p[0] < box["x"] + box["width"] - 10 and box["y"] + 10 < p[1] < box["y"] + box["height"] - 10):
            continue
        d = np.hypot(*(positions - p).T)
        d[i] = np.inf
        if np.nanmin(d) >= min_gap:
            ok.append(int(i))
    return ok


def paints(page) -> int:
    return int(root_data(page, "paints") or 0)


def settle(page, quiet_s: float = 1.5, timeout_s: float = 60):
    """Wait until the map has not received or drawn anything for `quiet_s` seconds."""
    deadline = time.monotonic() + timeout_s
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        now = (root_data(page, "version"), root_data(page, "paints"))
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.1)
    raise AssertionError(f"the map kept changing for {timeout_s} s")


# --------------------------------------------------------------------------- the quickstart page
@pytest.fixture(scope="module")
def quick(lab):
    """The quickstart notebook opened, run top to bottom, with its map drawn."""
    shutil.copyfile(REPO / "notebooks" / "quickstart.ipynb", lab.root / "quickstart.ipynb")
    page = lab.open("quickstart.ipynb")
    lab.run_all_cells(page, timeout_s=600)
    page.wait_for_selector(f'{ROOT}[data-alw-ready="1"]', timeout=120_000)
    out = "\n".join(lab.cell_texts(page))
    m = re.search(r"(\S+\.sqlite)", out)
    assert m, f"the quickstart did not print its store file:\n{out}"
    page.locator(ROOT).scroll_into_view_if_needed()
    lab.shots.take(page, "quickstart_preview_map")
    # The preview map is swapped for UMAP when it is ready; interact after that, so that points
    # do not move under the mouse.
    page.wait_for_selector(f'{ROOT}[data-alw-coords="umap"]', timeout=300_000)
    settle(page)  # the status says "umap" a moment before the new coordinates are drawn
    from alwidget import datasets

    return {"page": page, "store": m.group(1), "classes": list(datasets.demo().class_names)}


def test_quickstart_runs_and_draws_the_map(quick, lab):
    page = quick["page"]
    n = int(root_data(page, "n-points"))
    assert n >= 100, "the map should show the bundled data set"
    assert len(batch_of(page)) > 0, "no batch highlighted"
    assert page.locator(".alw-card").count() == len(batch_of(page)), "the gallery should show the batch"
    legend = page.locator("button.alw-class").all_inner_texts()
    assert len(legend) == len(quick["classes"]) and all(c in t for c, t in zip(quick["classes"], legend)), legend
    status = page.inner_text(".alw-status")
    assert "labelled" in status, status
    lab.shots.take(page, "quickstart_map")


def test_click_batch_point_and_number_key_labels_the_store(quick, lab):
    page, store = quick["page"], quick["store"]
    before = store_labels(store)
    settle(page)
    batch = [i for i in batch_of(page) if i not in before]
    positions = screen_positions(page)
    # batch points sit in dense clusters (they are the typical ones): any that no other point
    # covers to the pixel can be clicked unambiguously
    targets = [i for i in isolated_points(positions, batch, canvas_box(page), min_gap=1.5)
               if on_canvas(page, *positions[i])]  # not under the legend
    assert len(targets) >= 2, "need two batch points that can be clicked unambiguously"
    quick["first_batch"] = batch_of(page)
    quick["paints_before"] = paints(page)

    clicked = []
    for key in ("1", "2"):
        # a click on a batch point selects it; where another point covers it to the pixel the
        # click may pick that one: press Escape and take the next batch point
        for i in [t for t in targets if t not in clicked]:
            click_point(page, i, positions)
            wait_for(lambda: root_data(page, "selected") == "1", 10, "the click to select one point")
            if page.evaluate(f"() => document.querySelector('{ROOT}').alw.state().selected") == [i]:
                break
            page.keyboard.press("Escape")
        else:
            raise AssertionError("no batch point could be selected by clicking it")
        clicked.append(i)
        lab.shots.take(page, f"selected_{i}")
        page.keyboard.press(key)
        labels = wait_store(store, lambda got, i=i: i in got, what=f"point {i} in the store")
        assert labels[i] == quick["classes"][int(key) - 1]
    quick["clicked"] = clicked
    lab.shots.take(page, "labelled_two_points")


def test_map_recolours_after_retraining(quick, lab):
    page = quick["page"]
    # Two classes labelled: the probe retrains, the map gets predictions and a new batch.
    wait_for(lambda: batch_of(page) and batch_of(page) != quick["first_batch"], 120, "a new batch")
    assert paints(page) > quick["paints_before"], "the map was not redrawn"
    page.select_option("select.alw-color-by", "prediction")
    wait_for(lambda: root_data(page, "color-by") == "prediction", 10, "colour by prediction")
    lab.shots.take(page, "coloured_by_prediction")
    page.select_option("select.alw-color-by", "label")


def _lasso(page, polygon, step_px=6.0):
    """Draw a closed lasso through `polygon` (viewport coords) in the toolbar's lasso mode.

    regl-scatterplot keeps a lasso point only every >= 10 ms and >= 3 px, so the mouse moves in
    small, paced steps as a hand would. The stroke stops at the last vertex (the lasso closes
    itself): a release within 3 px of the press point would count as a click on a point.
    """
    page.click('button.alw-mode[data-mode="lasso"]')
    pts = list(polygon)
    page.mouse.move(*pts[0])
    page.mouse.down()
    for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
        steps = max(2, int(np.hypot(x1 - x0, y1 - y0) / step_px))
        for t in np.linspace(0, 1, steps + 1)[1:]:
            page.mouse.move(x0 + t * (x1 - x0), y0 + t * (y1 - y0))
            time.sleep(0.02)
    page.mouse.up()


def test_lasso_labels_every_selected_point(quick, lab):
    page, store = quick["page"], quick["store"]
    before = store_labels(store)
    quick["before_lasso"] = before
    settle(page)
    positions = screen_positions(page)
    box = canvas_box(page)
    # A square lasso around the densest unlabelled area, away from the canvas edge.
    inside = np.isfinite(positions).all(axis=1)
    xs, ys = positions[inside, 0], positions[inside, 1]
    cx, cy = float(np.median(xs)), float(np.median(ys))
    half = min(box["width"], box["height"]) * 0.08
    poly = [(cx - half, cy - half), (cx + half, cy - half), (cx + half, cy + half), (cx - half, cy + half)]
    margin = 3.0  # points this close to the lasso edge may fall either way
    dx, dy = np.abs(positions[:, 0] - cx), np.abs(positions[:, 1] - cy)
    surely_in = set(np.flatnonzero((dx < half - margin) & (dy < half - margin)).tolist())
    surely_out = set(np.flatnonzero(~((dx < half + margin) & (dy < half + margin))).tolist())
    assert len(surely_in) >= 5, "the lasso region should hold a few points"

    _lasso(page, poly)
    page.wait_for_selector(".alw-confirm", state="visible", timeout=10_000)
    lab.shots.take(page, "lasso_confirm")
    shown = int(re.sub(r"\D", "", page.inner_text(".alw-confirm-count")) or -1)
    selected = int(root_data(page, "selected"))
    assert shown == selected
    assert len(surely_in) <= selected <= len(positions) - len(surely_out), (shown, len(surely_in))

    cls3 = quick["classes"][2]
    assert cls3 not in before.values(), "no class-3 labels before the lasso"
    page.keyboard.press("3")
    after = wait_store(store, lambda labels: labels != before, what="the lasso labels")
    now3 = {i for i, c in after.items() if c == cls3}
    changed = {i for i in set(after) | set(before) if after.get(i) != before.get(i)}
    assert surely_in <= now3, f"{len(surely_in - now3)} points inside the lasso were not labelled"
    assert not (changed & surely_out), "points outside the lasso were labelled"
    assert len(now3) == selected, "the store holds a different number of points than the widget selected"
    quick["lassoed"] = selected
    page.click('button.alw-mode[data-mode="pan"]')
    lab.shots.take(page, "lasso_labelled")


def test_backspace_undoes_in_the_store(quick, lab):
    page, store = quick["page"], quick["store"]
    focus_map(page)
    page.keyboard.press("Backspace")
    after = wait_store(store, lambda labels: labels == quick["before_lasso"], what="the lasso to be undone")
    assert after == quick["before_lasso"]
    wait_for(lambda: int(root_data(page, "n-labelled")) == len(after), 30, "the map to show the undo")
    lab.shots.take(page, "after_undo")


def test_malformed_messages_show_an_error_and_the_kernel_lives(quick, lab):
    page, store = quick["page"], quick["store"]
    n = int(root_data(page, "n-points"))
    send = f"(msg) => document.querySelector('{ROOT}').alw.send(msg)"
    for msg, words in [
        ({"type": "label", "indices": [n + 5], "class": quick["classes"][0]}, "out of range"),
        ({"type": "label", "indices": [0], "class": "no-such-class"}, "unknown class"),
        ({"type": "label", "indices": "zero", "class": 0}, "indices"),
        ({"type": "no-such-intent"}, "unknown message type"),
    ]:
        page.evaluate(send, msg)
        wait_for(lambda: words in root_data(page, "error"), 30, f"error {words!r}")
        assert words in page.inner_text(".alw-error")
        assert lab.kernel_status(page) in ("idle", "busy")
    lab.shots.take(page, "malformed_message_error")
    # the kernel still answers: a valid message after the bad ones is labelled
    before = store_labels(store)
    i = next(k for k in range(n) if k not in before)
    page.evaluate(send, {"type": "label", "indices": [i], "class": 0})
    wait_store(store, lambda labels: i in labels, what="a valid label after the malformed ones")
    wait_for(lambda: root_data(page, "error") == "", 30, "the error to clear")
    quick["valid_after_bad"] = i


def test_reload_keeps_labels_on_the_map(quick, lab):
    page, store = quick["page"], quick["store"]
    expected = len(store_labels(store))
    assert expected >= 3
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    time.sleep(1)
    page.reload()
    lab.wait_notebook_ready(page)
    page.wait_for_selector(f'{ROOT}[data-alw-ready="1"]', timeout=120_000)
    wait_for(lambda: root_data(page, "n-labelled") == str(expected), 60, "labels after reload")
    page.locator(ROOT).scroll_into_view_if_needed()
    lab.shots.take(page, "after_reload")


# --------------------------------------------------------------------------- hostile file names
def test_html_in_file_and_class_names_is_shown_as_text(lab):
    from PIL import Image

    folder = lab.root / "evil"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    names = [f"{EVIL_NAME}.png", '"><svg onload=alert(3)>.png'] + [f"plain_{k}.png" for k in range(10)]
    for k, name in enumerate(names):
        arr = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
        arr[..., k % 3] = 40 * k % 255
        Image.fromarray(arr).save(folder / name)
    lab.write_notebook("evil.ipynb", [
        "from alwidget import Labeller\n"
        f"w = Labeller.from_folder('evil', classes=[{EVIL_CLASS!r}, 'plain'], encoder='efficientnet-lite0',\n"
        "                        batch_size=12, projection='preview', store=':memory:')\n"
        "w",
    ])
    dialogs_before = len(lab.dialogs)
    page = lab.open("evil.ipynb")
    lab.run_all_cells(page, timeout_s=300)
    page.wait_for_selector(f'{ROOT}[data-alw-ready="1"]', timeout=120_000)
    page.wait_for_selector(".alw-card-name", timeout=60_000)
    card_names = page.locator(".alw-card-name").all_inner_texts()
    assert any(EVIL_NAME in t for t in card_names), card_names
    legend = " ".join(page.locator("button.alw-class").all_inner_texts())
    assert EVIL_CLASS in legend, legend
    # hover the hostile point: the overlay shows the name as text too
    positions = screen_positions(page)
    evil_index = next(int(c.get_attribute("data-index")) for c in page.locator(".alw-card").all()
                      if EVIL_NAME in c.inner_text())
    page.mouse.move(*positions[evil_index])
    time.sleep(1.5)
    lab.shots.take(page, "html_names_as_text")
    assert page.locator('img[src="x"]').count() == 0
    assert page.locator("svg[onload]").count() == 0
    assert page.locator("b[onmouseover]").count() == 0
    assert len(lab.dialogs) == dialogs_before, lab.dialogs
    page.close()


def test_browser_made_no_outside_requests_and_no_page_errors(lab):
    assert lab.blocked == [], f"requests that tried to leave 127.0.0.1: {lab.blocked[:5]}"
    errors = [c for c in lab.console if c.startswith("pageerror")]
    assert errors == [], errors
