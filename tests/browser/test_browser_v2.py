"""Widget v2 in a real browser, in JupyterLab AND Notebook 7: no wrong label slips in silently.

One notebook per front end (the demo images, preview map, a store file); the tests run in file
order on it and each asserts on the store file, read from this process. Every step saves a
screenshot (`lab.shots`, see conftest.py).
"""
from __future__ import annotations

import os
import re
import signal
import time

import numpy as np
import pytest

from widgetpage import (
    ROOT, batch_of, canvas_box, dense_spot, dismiss_dialogs, drag_path, inside_square, move_off_map, on_canvas,
    root_data, root_sel, screen_positions, settle, show_map, square_around, stable_positions, state, store_labels, store_state,
    wait_for, wait_store,
)

pytestmark = pytest.mark.browser

FIRST = root_sel(0)
CELL = """import os
from alwidget import Labeller
STORE = os.path.abspath({store!r})
w = Labeller.from_dataset("demo", projection="preview", store=STORE, batch_size=8)
print("PID", os.getpid(), "STORE", STORE)
w"""
TAKEOVER = """w2 = Labeller.from_dataset("demo", projection="preview", store=STORE, batch_size=8)
w2"""


@pytest.fixture(scope="module", params=["lab", "notebook"])
def v2(request, lab):
    ui = request.param
    name = f"v2_{ui}.ipynb"
    lab.write_notebook(name, [CELL.format(store=f"v2-{ui}.sqlite"), TAKEOVER])
    page = lab.open(name, ui=ui)
    lab.run_cell(page, 0, timeout_s=600)
    page.wait_for_selector(f'{ROOT}[data-alw-ready="1"]', timeout=180_000)
    out = "\n".join(lab.cell_texts(page))
    m = re.search(r"PID (\d+) STORE (\S+)", out)
    assert m, out
    show_map(page)
    settle(page)
    from alwidget import datasets

    ctx = {"ui": ui, "page": page, "pid": int(m.group(1)), "store": m.group(2),
           "classes": list(datasets.demo().class_names)}
    yield ctx
    page.close()


def shot(lab, v2, name):
    lab.shots.take(v2["page"], f"{v2['ui']}_{name}")


def notice(page, nth=0):
    return root_data(page, "notice", nth)


def press(page, key):
    page.focus(FIRST)
    page.keyboard.press(key)


def click_card(page, pos):
    page.locator(f"{FIRST} >> .alw-card").nth(pos).click()
    wait_for(lambda: state(page)["focusPos"] == pos, 10, f"card {pos} to be selected")


def camera_distance(page) -> float:
    return float(state_camera(page)["distance"])


def state_camera(page):
    return page.evaluate("() => document.querySelectorAll('.alw-root')[0].alw.camera()")


def spans(page) -> tuple[float, float]:
    """The share of the canvas width and height the points span, and whether all are inside."""
    box = canvas_box(page)
    p = screen_positions(page)
    w = (p[:, 0].max() - p[:, 0].min()) / box["width"]
    h = (p[:, 1].max() - p[:, 1].min()) / box["height"]
    inside = ((p[:, 0] >= box["x"]) & (p[:, 0] <= box["x"] + box["width"]) &
              (p[:, 1] >= box["y"]) & (p[:, 1] <= box["y"] + box["height"])).all()
    return max(w, h), bool(inside)


# --------------------------------------------------------------------------- 6: fit at start, 9: words
def test_the_map_fits_the_canvas_and_says_what_it_does(v2, lab):
    page = v2["page"]
    # The fit follows the output area's last resize (the status lines settle after the first
    # batch), so give it that moment before measuring.
    try:
        wait_for(lambda: spans(page)[1] and spans(page)[0] > 0.8, 5, "the map to fit the canvas")
    except AssertionError:
        pass
    share, inside = spans(page)
    assert inside and share > 0.8, f"the points span {share:.0%} of the canvas at start"
    status = page.locator(f"{FIRST} >> .alw-status")
    assert "Picking typical images until every class has a few labels" in status.inner_text()
    assert "typiclust" in status.get_attribute("title"), "the details are on hover"
    assert v2["store"] in page.inner_text(f"{FIRST} >> .alw-store"), "the widget shows where labels are saved"
    # 7: every card of the batch is reachable (none clipped) and names are whole on hover
    gallery = page.locator(f"{FIRST} >> .alw-gallery").bounding_box()
    cards = page.locator(f"{FIRST} >> .alw-card")
    assert cards.count() == len(batch_of(page)) == 8
    for k in range(cards.count()):
        b = cards.nth(k).bounding_box()
        assert b["x"] >= gallery["x"] - 1 and b["x"] + b["width"] <= gallery["x"] + gallery["width"] + 1
        assert cards.nth(k).get_attribute("title").startswith("fashion-mnist-demo/")
    shot(lab, v2, "fitted_at_start")


# --------------------------------------------------------------------------- 3: precise picking
def test_a_click_near_a_ring_picks_the_ringed_image_and_a_key_alone_does_nothing(v2, lab):
    page, store = v2["page"], v2["store"]
    press(page, "1")  # nothing selected
    assert "Nothing selected" in notice(page)
    assert store_labels(store) == {}
    p = stable_positions(page)
    box = canvas_box(page)
    batch = batch_of(page)
    hits = 0
    for i in batch:
        x, y = p[i]
        rings = np.hypot(*(p[batch] - p[i]).T)
        rings[rings == 0] = np.inf
        if rings.min() < 14:  # two rings this close: the nearer one rightly wins, not a test of picking
            continue
        if not on_canvas(page, x + 4, y + 3) or not (box["x"] + 15 < x < box["x"] + box["width"] - 15):
            continue
        move_off_map(page)
        page.mouse.click(x + 4, y + 3)  # beside the ring's centre, where neighbours are drawn
        wait_for(lambda: root_data(page, "selected") == "1", 10, "a selection")
        assert state(page)["selected"] == [i], f"the click took a neighbour of ringed point {i}"
        hits += 1
        if hits == 3:
            break
        press(page, "Escape")  # the selected image's card would cover the next ring
    assert hits >= 2, "need ringed points to click"
    click_card(page, 0)
    assert page.locator(f"{FIRST} >> .alw-rings .alw-ring-selected").count() == 1, "the selection is ringed"
    assert page.locator(f"{FIRST} >> .alw-hover").is_visible(), "the selected image's card is shown"
    shot(lab, v2, "picked_ringed_point")
    press(page, "Escape")


# --------------------------------------------------------------------------- 1, 5: one class
def test_accept_is_unavailable_with_one_class_and_the_map_says_why(v2, lab):
    page, store, classes = v2["page"], v2["store"], v2["classes"]
    click_card(page, 0)
    i = batch_of(page)[0]
    press(page, "1")
    wait_store(store, lambda got: got.get(i) == classes[0], what="the first label")
    settle(page)
    assert state(page)["focusPos"] == 1, "the next card is selected after a label"
    press(page, "a")
    assert "at least 2 classes" in notice(page) and classes[0] in notice(page)
    assert root_data(page, "review") == "", "no grid opens"
    button = page.locator(f"{FIRST} >> button.alw-accept")
    assert button.is_disabled() and "at least 2 classes" in button.get_attribute("title")
    assert store_labels(store) == {i: classes[0]}
    # 5: colour by prediction waits for two classes, and the legend says so
    assert root_data(page, "color-by") == "prediction" and root_data(page, "color-shown") == "label"
    assert "once two classes have labels" in page.inner_text(f"{FIRST} >> .alw-colorkey")
    shot(lab, v2, "accept_unavailable_one_class")


# --------------------------------------------------------------------------- 2, 1: lasso -> grid
def test_shift_drag_lassoes_and_the_grid_commits_all_but_the_two_left_out(v2, lab):
    page, store, classes = v2["page"], v2["store"], v2["classes"]
    before = store_labels(store)
    press(page, "Escape")
    p = stable_positions(page)
    box = canvas_box(page)
    half = min(box["width"], box["height"]) * 0.07
    cx, cy = dense_spot(p, box, half)
    surely_in, surely_out = inside_square(p, cx, cy, half)
    assert len(surely_in) >= 5
    move_off_map(page)
    drag_path(page, square_around(cx, cy, half), shift=True)  # the gesture the notebook used to swallow
    wait_for(lambda: root_data(page, "review"), 10, "the review grid")
    review = state(page)["review"]
    got = set(review["indices"])
    assert surely_in <= got and not (got & surely_out), "the lasso selected other points"
    n = len(got)
    shot(lab, v2, "lasso_grid")
    cards = page.locator(f"{FIRST} >> .alw-review-card")
    left_out = [int(cards.nth(k).get_attribute("data-index")) for k in (0, 1)]
    cards.nth(0).click()
    cards.nth(1).click()
    assert page.locator(f"{FIRST} >> .alw-review-card.alw-excluded").count() == 2
    press(page, "3")
    assert f"Label {n - 2} of {n} image(s) as {classes[2]}" in page.inner_text(f"{FIRST} >> .alw-review-summary")
    shot(lab, v2, "grid_two_left_out")
    press(page, "Enter")
    after = wait_store(store, lambda got_: len(got_) > len(before), what="the grid's labels")
    new = {i: c for i, c in after.items() if before.get(i) != c}
    assert len(new) == n - 2 and set(new.values()) == {classes[2]}
    assert not set(left_out) & set(new), "an image left out was labelled"
    assert root_data(page, "review") == ""
    # two classes now: predictions colour the map once the model is back
    wait_for(lambda: root_data(page, "color-shown") == "prediction", 120, "colour by prediction")
    shot(lab, v2, "after_grid_commit")


def test_with_two_classes_accept_shows_each_prediction_and_escape_labels_nothing(v2, lab):
    page, store = v2["page"], v2["store"]
    settle(page)
    before = store_labels(store)
    wait_for(lambda: not page.locator(f"{FIRST} >> button.alw-accept").is_disabled(), 60, "accept to be available")
    press(page, "a")
    wait_for(lambda: root_data(page, "review"), 20, "the grid of predictions")
    review = state(page)["review"]
    assert review["source"] == "accept" and review["count"] >= 1
    first = page.locator(f"{FIRST} >> .alw-review-card").first.inner_text()
    assert re.search(r"\d+%", first), f"the card shows the prediction's confidence: {first!r}"
    assert "Label" in page.inner_text(f"{FIRST} >> .alw-review-summary")
    shot(lab, v2, "accept_grid")
    press(page, "Escape")
    assert root_data(page, "review") == ""
    time.sleep(1)
    assert store_labels(store) == before, "a cancelled grid labels nothing"


# --------------------------------------------------------------------------- 8: skip, unsure, recent
def test_skip_and_unsure_are_stored_and_the_last_answers_can_be_fixed(v2, lab):
    page, store, classes = v2["page"], v2["store"], v2["classes"]
    settle(page)
    click_card(page, 2)
    unsure = batch_of(page)[2]
    press(page, "u")
    wait_for(lambda: bool(store_state(store).unsure[unsure]), 30, "the unsure answer in the store")
    settle(page)
    click_card(page, 3)
    skipped = batch_of(page)[3]
    press(page, " ")
    wait_for(lambda: store_state(store).skip_age[skipped] >= 0, 30, "the skip in the store")
    st = store_state(store)
    assert st.cls[unsure] == -1 and st.cls[skipped] == -1
    settle(page)
    assert "1 unsure" in page.inner_text(f"{FIRST} >> .alw-status")
    assert page.inner_text(f"{FIRST} >> button.alw-review-unsure") == "Unsure (1)", "unsure images are listed"
    # the strip of last answers: the newest first; a click selects the image, a key relabels it
    items = page.locator(f"{FIRST} >> .alw-recent-item")
    assert items.count() >= 2 and int(items.nth(0).get_attribute("data-index")) == unsure
    items.nth(0).click()
    assert state(page)["selected"] == [unsure]
    press(page, "2")
    wait_store(store, lambda got: got.get(unsure) == classes[1], what="the fixed label")
    assert not store_state(store).unsure[unsure]
    shot(lab, v2, "skip_unsure_recent")


# --------------------------------------------------------------------------- 6: fit view, 5, 9: legend, keys
def test_fit_view_brings_a_lost_map_back(v2, lab):
    page = v2["page"]
    box = canvas_box(page)
    move_off_map(page)
    start = (box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    drag_path(page, [start, (box["x"] + box["width"] * 1.3, start[1])], step_px=20)  # pan far right
    page.mouse.wheel(0, -600)
    wait_for(lambda: spans(page)[1] is False, 10, "the map to leave the canvas")
    shot(lab, v2, "panned_away")
    press(page, "f")
    wait_for(lambda: spans(page)[1] and spans(page)[0] > 0.8, 10, "the map to fit again (key f)")
    drag_path(page, [start, (box["x"] + box["width"] * 0.9, start[1])], step_px=20)
    page.click(f"{FIRST} >> button.alw-fit")
    wait_for(lambda: spans(page)[1] and spans(page)[0] > 0.8, 10, "the map to fit again (button)")
    shot(lab, v2, "fitted_again")
    click_card(page, 0)  # zoom to the selection: the camera moves in
    far = camera_distance(page)
    press(page, "z")
    wait_for(lambda: camera_distance(page) < far * 0.7, 10, "the zoom to the selection")
    press(page, "f")


def test_every_colour_mode_has_a_key_and_question_mark_lists_the_keys(v2, lab):
    page = v2["page"]
    for _ in range(3):
        if root_data(page, "color-shown") == "uncertainty":
            break
        press(page, "c")
    assert root_data(page, "color-shown") == "uncertainty"
    assert page.locator(f"{FIRST} >> .alw-colorbar").is_visible()
    shot(lab, v2, "uncertainty_colour_bar")
    press(page, "c")
    press(page, "?")
    keys = page.locator(f"{FIRST} >> .alw-keys")
    assert keys.is_visible()
    text = keys.inner_text()
    for k in ("1 … 9, 0", "Space", "Shift + drag", "Backspace", "← →", "?", "Enter", "u", "n", "f", "z", "c"):
        assert k in text
    shot(lab, v2, "key_list")
    press(page, "Escape")
    assert not keys.is_visible()


# --------------------------------------------------------------------------- takeover, 4: disconnect
def test_running_the_cell_again_greys_the_old_view_with_the_reason(v2, lab):
    page, store = v2["page"], v2["store"]
    lab.run_cell(page, 1, timeout_s=300)
    wait_for(lambda: page.locator(ROOT).count() == 2 and root_data(page, "ready", 1) == "1", 120, "the new view")
    wait_for(lambda: root_data(page, "connection") == "closed", 30, "the old view to close")
    banner = page.locator(f"{FIRST} >> .alw-banner")
    assert banner.is_visible() and "newer session" in banner.inner_text()
    before = store_labels(store)
    press(page, "4")
    wait_for(lambda: "Not sent" in notice(page), 10, "the refusal")
    assert store_labels(store) == before
    page.locator(FIRST).scroll_into_view_if_needed()
    shot(lab, v2, "old_view_closed")


def test_a_dead_kernel_greys_the_widget_and_refuses_keys_visibly(v2, lab):
    page, store = v2["page"], v2["store"]
    live = root_sel(1)
    page.locator(live).scroll_into_view_if_needed()
    before = store_labels(store)
    os.kill(v2["pid"], signal.SIGKILL)
    wait_for(lambda: root_data(page, "connection", 1) == "disconnected", 60, "the view to notice")
    time.sleep(1)
    dismiss_dialogs(page)  # JupyterLab's "Kernel Restarting" dialog takes the focus
    banner = page.locator(f"{live} >> .alw-banner")
    assert banner.is_visible() and "disconnected — run the cell again" in banner.inner_text()
    assert "alw-disconnected" in page.get_attribute(live, "class")
    page.focus(live)
    page.keyboard.press("ArrowRight")
    page.keyboard.press("2")
    wait_for(lambda: "Not sent: disconnected" in notice(page, 1), 10, "the refusal")
    assert "Not sent" in banner.inner_text(), "the refusal is shown where the user looks"
    assert store_labels(store) == before
    shot(lab, v2, "kernel_dead")
