"""`alwidget demo`: copy the bundled notebooks into a working folder and open JupyterLab on them.

JupyterLab is bound to 127.0.0.1 and keeps Jupyter's token authentication on; the quickstart
notebook labels the bundled Fashion-MNIST subset with the offline encoder, so the demo needs no
network.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

__all__ = ["bundled_notebooks", "prepare_notebooks", "lab_command", "run_demo"]

DEFAULT_DIR = "alwidget-demo"
START_NOTEBOOK = "quickstart.ipynb"


def bundled_notebooks() -> Path:
    """The folder holding the notebooks shipped with alwidget.

    A wheel carries them inside the package (`alwidget/notebooks`, see pyproject's
    force-include); an editable install or a source checkout has them at the repo root.
    """
    here = Path(__file__).resolve().parent
    for candidate in (here / "notebooks", here.parent / "notebooks"):
        if (candidate / START_NOTEBOOK).is_file():
            return candidate
    raise FileNotFoundError(
        f"the bundled notebooks were not found next to {here}; reinstall alwidget "
        "(pip install --force-reinstall alwidget)"
    )


def prepare_notebooks(notebook_dir=None) -> Path:
    """Copy every bundled notebook into `notebook_dir` unless a file of that name is already there.

    A user's edited copy is never overwritten. Returns the folder (created if needed);
    `None` means ./alwidget-demo.
    """
    folder = Path(notebook_dir if notebook_dir is not None else DEFAULT_DIR).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"notebook_dir={str(folder)!r} is a file; pass a folder (it is created if missing)")
    folder.mkdir(parents=True, exist_ok=True)
    for nb in sorted(bundled_notebooks().glob("*.ipynb")):
        target = folder / nb.name
        if not target.exists():
            shutil.copyfile(nb, target)
    return folder


def lab_command(notebook_dir: Path, port=None, open_browser=True) -> list[str]:
    """The JupyterLab command line of the demo (127.0.0.1 only; token auth untouched, i.e. on)."""
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
        raise ValueError(f"port must be an integer in 1..65535 or None (pick a free one), got {port!r}")
    cmd = [
        sys.executable, "-m", "jupyterlab",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.root_dir={notebook_dir}",
        f"--ServerApp.open_browser={bool(open_browser)}",
        f"--LabApp.default_url=/lab/tree/{START_NOTEBOOK}",
    ]
    if port is not None:
        cmd += [f"--ServerApp.port={port}", "--ServerApp.port_retries=0"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Jupyter refuses root without this flag (containers often run as root); the server
        # still listens on 127.0.0.1 only and still asks for the token.
        cmd.append("--allow-root")
    return cmd


def run_demo(port=None, open_browser=True, notebook_dir=None) -> int:
    """Start JupyterLab on the quickstart notebook; blocks until JupyterLab stops.

    Parameters
    ----------
    port : int or None
        Port on 127.0.0.1; None lets Jupyter pick a free one (8888 first).
    open_browser : bool
        Open the notebook in the default web browser (with the access token).
    notebook_dir : path or None
        Working folder for the notebooks and their outputs; default ./alwidget-demo.
        Bundled notebooks are copied in only when missing, so your edits are kept.

    Returns JupyterLab's exit status.
    """
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        raise RuntimeError(
            "alwidget demo needs JupyterLab; install it with: pip install 'alwidget[demo]'"
        ) from None
    folder = prepare_notebooks(notebook_dir)
    cmd = lab_command(folder, port=port, open_browser=open_browser)
    print(f"alwidget demo: notebooks in {folder}")
    print("JupyterLab listens on 127.0.0.1 only; open the URL with the token it prints below. "
          "Stop it with Ctrl+C.", flush=True)
    proc = subprocess.Popen(cmd, cwd=folder)
    previous = None
    if threading.current_thread() is threading.main_thread():
        # `kill` of this process must not orphan JupyterLab and its kernels
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return proc.wait()
    except KeyboardInterrupt:  # JupyterLab got the Ctrl+C too: let it shut its kernels down
        try:
            return proc.wait(timeout=30)
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            return 130
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)
