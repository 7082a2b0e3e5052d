"""Every bundled notebook runs top to bottom, offline, in a fresh kernel (nbclient).

ALWIDGET_NOTEBOOK_FAST=1 makes the notebooks use small settings (fewer seeds/images, the offline
encoder instead of OpenCLIP); HF_HUB_OFFLINE=1 makes any hub access fail fast instead.
Each notebook runs in a temporary copy of the folder with a fresh cache, so the files it writes
stay out of the repo and nothing computed by another test is reused.
"""
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PLOTLY = "application/vnd.plotly.v1+json"

pytestmark = pytest.mark.slow


def run_notebook(name: str, workdir: Path, monkeypatch) -> nbformat.NotebookNode:
    monkeypatch.setenv("ALWIDGET_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # quiet debugger warning on stderr
    # A fresh cache, as for a new user: a warm shared cache hid the labels-do-not-come-back bug.
    monkeypatch.setenv("ALWIDGET_CACHE_DIR", str(workdir / "cache"))
    path = workdir / name
    shutil.copyfile(NOTEBOOKS / name, path)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}})
    client.execute()  # raises CellExecutionError (with the traceback) if any cell fails
    return nb


def outputs(nb, cell_type="code"):
    return [o for c in nb.cells if c.cell_type == cell_type for o in c.get("outputs", [])]


def mimetypes(nb) -> set:
    return {m for o in outputs(nb) for m in o.get("data", {})}


def text(nb) -> str:
    parts = []
    for o in outputs(nb):
        if o.output_type == "stream":
            parts.append(o.text)
        elif "text/plain" in o.get("data", {}):
            parts.append(o.data["text/plain"])
    return "\n".join(parts)


def test_quickstart(tmp_path, monkeypatch):
    nb = run_notebook("quickstart.ipynb", tmp_path, monkeypatch)
    assert WIDGET_VIEW in mimetypes(nb), "the Labeller was not displayed"
    assert (tmp_path / "fashion_labels.csv").is_file()


def test_teaching(tmp_path, monkeypatch):
    nb = run_notebook("teaching.ipynb", tmp_path, monkeypatch)
    assert PLOTLY in mimetypes(nb), "no plotly learning-curve figure"
    assert WIDGET_VIEW in mimetypes(nb), "the auto-labelling widget was not displayed"
    out = text(nb)
    assert "round 3:" in out, "the auto-labelling rounds did not run"
    assert "probe accuracy" in out
    assert "The model is right on about" in out, "the widget's model check did not reach its estimate"


def test_your_images(tmp_path, monkeypatch):
    nb = run_notebook("your_images.ipynb", tmp_path, monkeypatch)
    assert WIDGET_VIEW in mimetypes(nb)
    written = list((tmp_path / "my_images").glob("*.png"))
    assert len(written) == 60
    assert (tmp_path / "my_labels.csv").is_file()
