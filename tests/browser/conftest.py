"""Real-browser fixtures: one JupyterLab (127.0.0.1, token on) and one Chromium per test session.

The harness itself is in labharness.py (shared with bench/bench_widget.py). Every browser
request that is not for 127.0.0.1 is aborted and recorded (`lab.blocked`).

Screenshots of each step are kept as test artefacts: taken into a pytest temporary folder and
copied to tests/browser/artifacts/ (git-ignored) at the end of the session; ALWIDGET_SCREENSHOTS
names another folder ("1": bench/results/screenshots/).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from labharness import REPO, Lab, LabServer, Screenshots, launch_chromium, local_only


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def lab_root(tmp_path_factory) -> Path:
    """The JupyterLab root dir: notebooks, images and store files of the browser tests."""
    return tmp_path_factory.mktemp("labroot")


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory, lab_root):
    base = tmp_path_factory.mktemp("jupyter")
    # ALWIDGET_CACHE_DIR comes from tests/conftest.py: the demo embeddings are shared with the
    # other tests of this run. The notebooks read ALWIDGET_NOTEBOOK_FAST to stay small.
    extra = {"ALWIDGET_NOTEBOOK_FAST": "1"}
    server = LabServer(lab_root, base, extra)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory):
    shots = Screenshots(tmp_path_factory.mktemp("screenshots"))
    yield shots
    target = os.environ.get("ALWIDGET_SCREENSHOTS")
    dest = (REPO / "bench" / "results" / "screenshots" if target in ("1", "true", "yes")
            else Path(target) if target else REPO / "tests" / "browser" / "artifacts")
    if shots.paths:
        if dest.exists():  # this run's screenshots only
            for old in dest.glob("*.png"):
                old.unlink()
        dest.mkdir(parents=True, exist_ok=True)
        for p in shots.paths:
            shutil.copy2(p, dest / p.name)
    print(f"\nbrowser screenshots: {dest}")


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = launch_chromium(pw)
        yield b
        b.close()


@pytest.fixture(scope="session")
def lab(lab_server, browser, screenshots):
    """JupyterLab + Chromium, with every non-local request aborted and recorded."""
    blocked: list[str] = []
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(60_000)
    local_only(context, blocked)
    yield Lab(lab_server, context, screenshots, blocked)
    context.close()
