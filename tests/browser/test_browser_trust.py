"""Know when you are done, in a real browser (JupyterLab): the Check my model toggle, an oracle
labelling through the test requests until the estimate shows in the status line, and the
Re-check grid (nothing changes unless the user relabels). Asserts on the store file."""
from __future__ import annotations

import re
import time

import pytest

from widgetpage import ROOT, api, batch_of, root_data, root_sel, settle, state, store_labels, store_state, wait_for

pytestmark = pytest.mark.browser

FIRST = root_sel(0)
CELL = """import os
from alwidget import Labeller
STORE = os.path.abspath({store!r})
w = Labeller.from_dataset("demo", projection="preview", store=STORE, batch_size=8)
print("STORE", STORE)
w"""
ESTIMATE = re.compile(r"The model is right on about (\d+) % of unlabelled images \(95 % interval (\d+)–(\d+) %\), "
                      r"from (\d+) test labels")


def key_of(c: int) -> str:
    return "0" if c == 9 else str(c + 1)


def test_check_my_model_until_the_estimate_shows_then_recheck(lab):
    from alwidget import datasets

    y = datasets.demo().labels
    lab.write_notebook("trust.ipynb", [CELL.format(store="trust.sqlite")])
    page = lab.open("trust.ipynb")
    lab.run_cell(page, 0, timeout_s=600)
    page.wait_for_selector(f'{ROOT}[data-alw-ready="1"]', timeout=180_000)
    out = "\n".join(lab.cell_texts(page))
    store = re.search(r"STORE (\S+)", out).group(1)
    page.locator(FIRST).scroll_into_view_if_needed()
    settle(page)
    toggle = page.locator(f"{FIRST} >> button.alw-check-model")
    toggle.click()
    wait_for(lambda: toggle.get_attribute("aria-pressed") == "true", 30, "the toggle to show the check is on")
    status = page.locator(f"{FIRST} >> .alw-status")
    wait_for(lambda: "never train" in status.inner_text(), 30, "the status line to say what tests are")
    seen_tests, marked = set(), False
    deadline = time.monotonic() + 600
    while not ESTIMATE.search(status.inner_text()):
        assert time.monotonic() < deadline, f"no estimate after {len(store_labels(store))} labels"
        settle(page, quiet_s=1.0)
        tests = {int(v) for v in page.locator(f"{FIRST} >> .alw-card.alw-test").evaluate_all(
            "els => els.map(e => e.dataset.index)")}
        if tests and not marked:
            card = page.locator(f"{FIRST} >> .alw-card.alw-test").first
            assert card.locator(".alw-test-badge").inner_text() == "test"
            assert "never train" in card.get_attribute("title")
            assert "predicted" not in card.inner_text(), "a test request does not show the model's guess"
            lab.shots.take(page, "trust_test_request")
            marked = True
        seen_tests |= tests
        s = state(page)
        todo = [i for i in batch_of(page) if s["labels"][i] < 0 and not s["flags"][i]]
        for i in todo:
            api(page, "a.select(arg)", [i])
            page.focus(FIRST)
            page.keyboard.press(key_of(int(y[i])))
        wait_for(lambda: root_data(page, "pending") == "0", 30, "the answers to be saved")
    m = ESTIMATE.search(status.inner_text())
    low, est, high, n_test = int(m.group(2)), int(m.group(1)), int(m.group(3)), int(m.group(4))
    assert low <= est <= high and n_test >= 10
    assert seen_tests, "test requests were marked on the cards"
    st = store_state(store)
    assert int(st.test.sum()) >= n_test, "the test answers are stored as tests"
    assert seen_tests & set(st.test.nonzero()[0].tolist())
    lab.shots.take(page, "trust_estimate")

    recheck = page.locator(f"{FIRST} >> button.alw-recheck")
    assert recheck.is_enabled()
    before = store_labels(store)
    recheck.click()
    wait_for(lambda: root_data(page, "review"), 120, "the Re-check grid to open")
    review = state(page)["review"]
    assert review["source"] == "recheck" and review["count"] >= 1
    notes = page.locator(f"{FIRST} >> .alw-review-note")
    wait_for(lambda: notes.count() > 0, 10, "the cards to be drawn")
    assert "Worth a second look" in page.inner_text(f"{FIRST} >> .alw-review-title")
    assert notes.first.inner_text().startswith("suggested: ")
    first_card = page.locator(f"{FIRST} >> .alw-review-card").first
    i = int(first_card.get_attribute("data-index"))
    assert first_card.locator(".alw-review-class").inner_text() == f"label: {before[i]}"
    assert "Nothing relabelled" in page.inner_text(f"{FIRST} >> .alw-review-summary")
    lab.shots.take(page, "trust_recheck")
    assert store_labels(store) == before, "opening the queue relabels nothing"
    classes = list(datasets.demo().class_names)
    other = next(k for k, c in enumerate(classes) if c != before[i])
    page.focus(FIRST)
    page.keyboard.press("ArrowRight")  # focus the first card
    page.keyboard.press(key_of(other))
    assert "Relabel 1 image(s)" in page.inner_text(f"{FIRST} >> .alw-review-summary")
    page.keyboard.press("Enter")
    after = wait_for(lambda: (lambda d: d if d.get(i) == classes[other] else None)(store_labels(store)), 30,
                     "the relabel to reach the store")
    assert {k: v for k, v in after.items() if k != i} == {k: v for k, v in before.items() if k != i}
