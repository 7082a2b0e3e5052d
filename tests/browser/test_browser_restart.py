"""Labels come back after a kernel restart: a new user's path, from an empty cache.

Its own JupyterLab with a fresh ALWIDGET_CACHE_DIR (a warm shared cache hid this bug once):
run the quickstart, label through the map, restart the kernel, run all again, and the labels
are on the map (the re-run computes its embeddings from the cache: float bits differ).
"""
from __future__ import annotations

import shutil
import time

import pytest

from labharness import REPO, Lab, LabServer, local_only

pytestmark = pytest.mark.browser

ROOT = ".alw-root"


@pytest.fixture(scope="module")
def fresh_lab(tmp_path_factory, browser, screenshots):
    root = tmp_path_factory.mktemp("restart-root")
    base = tmp_path_factory.mktemp("restart-jupyter")
    cache = tmp_path_factory.mktemp("restart-cache")
    server = LabServer(root, base, {"ALWIDGET_CACHE_DIR": str(cache), "ALWIDGET_NOTEBOOK_FAST": "1"})
    blocked: list[str] = []
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(60_000)
    local_only(context, blocked)
    yield Lab(server, context, screenshots, blocked), cache
    context.close()
    server.stop()


def _map_labels(page):
    return page.evaluate(f"() => document.querySelector('{ROOT}').alw.state().labels")


def _wait(predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def _run_quickstart(lab, page):
    lab.run_all_cells(page, timeout_s=600)
    page.wait_for_selector(f'{ROOT}[data-alw-ready="1"]', timeout=120_000)
    page.locator(ROOT).scroll_into_view_if_needed()


def test_labels_are_on_the_map_after_a_kernel_restart(fresh_lab):
    lab, cache = fresh_lab
    assert not any(cache.iterdir()), "the cache must start empty"
    shutil.copyfile(REPO / "notebooks" / "quickstart.ipynb", lab.root / "quickstart.ipynb")
    page = lab.open("quickstart.ipynb")
    _run_quickstart(lab, page)
    lab.shots.take(page, "restart_first_run")
    labelled = {}
    for i, key in ((3, "1"), (17, "2"), (42, "2")):
        page.evaluate(f"() => document.querySelector('{ROOT}').alw.select([{i}])")
        page.locator(ROOT).focus()
        page.keyboard.press(key)
        labelled[i] = int(key) - 1
        _wait(lambda i=i: (_map_labels(page) or [])[i] == labelled[i], 30, f"point {i} labelled on the map")
    page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.restart()")
    lab.wait_notebook_ready(page, 120)
    _run_quickstart(lab, page)
    labels = _wait(lambda: (lambda got: got if got and all(got[i] == c for i, c in labelled.items()) else None)(
        _map_labels(page)), 60, "the labels of the first run on the new map")
    assert sum(1 for c in labels if c >= 0) == len(labelled)
    text = "\n".join(lab.cell_texts(page))
    assert "(3 labelled so far)" in text
    lab.shots.take(page, "restart_second_run")
    assert not lab.blocked
