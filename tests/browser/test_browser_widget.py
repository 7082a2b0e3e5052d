"""The widget in a real browser: JupyterLab on 127.0.0.1 + Debian's Chromium (see conftest.py).

The tests run in file order on one quickstart notebook (one kernel, one store file): each step
starts from the labels the previous steps left and asserts on the change it makes, reading the
SQLite store file from this process. Every step saves a screenshot (`lab.shots`).
"""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from widgetpage import (
    ROOT, batch_of, canvas_box, dense_spot, drag_path, inside_square, map_report, move_off_map, on_canvas, paints,
    root_data, screen_positions, settle, show_map, square_around, stable_positions, state, store_labels, wait_for,
    wait_store,
)

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
EVIL_NAME = "<img src=x onerror=alert(1)>"
EVIL_CLASS = "<b onmouseover=alert(2)>bold</b>"


# --------------------------------------------------------------------------- helpers
def click_point(page, i: int, positions: np.ndarray):
    """Click point i on the map, after moving off the map so that no hover card covers it."""
    move_off_map(page)
    x, y = (float(v) for v in positions[i])
    wait_for(lambda: on_canvas(page, x, y), 5, f"point {i} to be uncovered")
    page.mouse.click(x, y)


def focus_map(page):
    page.focus(ROOT)


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
    show_map(page)
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


# A pointer that jumps onto the map and presses before the next frame (a tap; a quick hand on a
# busy machine): events dispatched in one task, so that no frame can fall between them.
PRESS_AFTER_JUMP = """([x0, y0, x1, y1]) => new Promise((done) => {
  const root = document.querySelector('.alw-root');
  const canvas = root.querySelector('.alw-canvas');
  const frames = (k, fn) => (k ? requestAnimationFrame(() => frames(k - 1, fn)) : fn());
  const ev = (Kind, type, x, y, buttons) => canvas.dispatchEvent(new Kind(type, {
    clientX: x, clientY: y, buttons, button: 0, bubbles: true, cancelable: true, view: window,
    pointerId: 1, isPrimary: true, pointerType: 'mouse' }));
  ev(MouseEvent, 'mousemove', x0, y0, 0);
  frames(2, () => {
    const before = root.alw.camera();
    ev(PointerEvent, 'pointermove', x1, y1, 0);
    ev(MouseEvent, 'mousemove', x1, y1, 0);
    ev(PointerEvent, 'pointerdown', x1, y1, 1);
    ev(MouseEvent, 'mousedown', x1, y1, 1);
    frames(3, () => {
      const held = root.alw.camera();
      ev(PointerEvent, 'pointerup', x1, y1, 0);
      ev(MouseEvent, 'mouseup', x1, y1, 0);
      done({ before, held });
    });
  });
})"""


def test_a_press_right_after_a_jump_does_not_pan_the_map(quick, lab):
    page = quick["page"]
    settle(page)
    stable_positions(page)
    box = canvas_box(page)
    x0, y0 = box["x"] + 0.2 * box["width"], box["y"] + 0.2 * box["height"]
    x1, y1 = box["x"] + 0.6 * box["width"], box["y"] + 0.7 * box["height"]
    got = page.evaluate(PRESS_AFTER_JUMP, [x0, y0, x1, y1])
    before, held = got["before"], got["held"]
    moved = np.abs(np.subtract(held["target"], before["target"])).max()
    assert moved < 1e-9 and held["distance"] == pytest.approx(before["distance"], abs=1e-12), \
        f"the press panned the map: camera {before} -> {held}"
    assert state(page)["selected"] == [], "a press without a click selects nothing"


def test_click_batch_point_and_number_key_labels_the_store(quick, lab):
    page, store = quick["page"], quick["store"]
    before = store_labels(store)
    settle(page)
    positions = stable_positions(page)
    box = canvas_box(page)
    targets = [i for i in batch_of(page) if i not in before and on_canvas(page, *positions[i])
               and box["x"] + 10 < positions[i][0] < box["x"] + box["width"] - 10]
    assert len(targets) >= 2, "need two batch points on the canvas"
    quick["first_batch"] = batch_of(page)
    quick["paints_before"] = paints(page)
    clicked = []
    for key, i in zip(("1", "2"), targets):
        # a click on a ringed point selects it, whatever neighbours are drawn under the cursor
        click_point(page, i, positions)
        wait_for(lambda i=i: state(page)["selected"] == [i], 10,
                 lambda i=i: f"point {i} at {positions[i].round(1).tolist()} to be selected; the map: {map_report(page)}")
        lab.shots.take(page, f"selected_{i}")
        page.keyboard.press(key)
        labels = wait_store(store, lambda got, i=i: i in got, what=f"point {i} in the store")
        assert labels[i] == quick["classes"][int(key) - 1]
        clicked.append(i)
        settle(page)
        positions = screen_positions(page)
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


def test_lasso_tool_opens_the_grid_and_labels_every_point_kept(quick, lab):
    page, store = quick["page"], quick["store"]
    before = store_labels(store)
    quick["before_lasso"] = before
    page.click('button.alw-mode[data-mode="lasso"]')  # the toolbar's lasso: a plain drag (may scroll)
    show_map(page)  # clicking the toolbar scrolled it into view, and the map's foot out of it
    settle(page)
    positions = stable_positions(page)
    box = canvas_box(page)
    half = min(box["width"], box["height"]) * 0.08
    cx, cy = dense_spot(positions, box, half)
    surely_in, surely_out = inside_square(positions, cx, cy, half)
    assert len(surely_in) >= 5, f"the lasso region should hold a few points; the map: {map_report(page)}"
    move_off_map(page)
    drag_path(page, square_around(cx, cy, half))
    wait_for(lambda: root_data(page, "review"), 10, "the review grid")
    lab.shots.take(page, "lasso_grid")
    selected = set(state(page)["review"]["indices"])
    assert surely_in <= selected and not (selected & surely_out)
    assert page.locator(".alw-review").get_attribute("data-count") == str(len(selected))
    cls3 = quick["classes"][2]
    assert cls3 not in before.values(), "no class-3 labels before the lasso"
    page.keyboard.press("3")
    page.keyboard.press("Enter")
    after = wait_store(store, lambda labels: labels != before, what="the lasso labels")
    now3 = {i for i, c in after.items() if c == cls3}
    changed = {i for i in set(after) | set(before) if after.get(i) != before.get(i)}
    assert now3 == selected and changed == selected, "the store holds other points than the grid showed"
    quick["lassoed"] = len(selected)
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
    show_map(page)
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
    try:  # names travel on demand: a card shows "#row" until its name arrives
        page.wait_for_function("(n) => [...document.querySelectorAll('.alw-card-name')]"
                               ".some((e) => e.innerText.includes(n))", arg=EVIL_NAME, timeout=60_000)
    except Exception:
        pass  # the assertion below says what the cards show
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
    errors = [c for c in lab.console if c.startswith("lab pageerror")]
    assert errors == [], errors
