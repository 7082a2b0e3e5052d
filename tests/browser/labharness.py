"""JupyterLab on 127.0.0.1 driven by Debian's Chromium via Playwright (no pytest in here).

Used by the browser tests (tests/browser/conftest.py) and by bench/bench_widget.py. The server
runs with token auth on, a given root directory and isolated Jupyter config/data/runtime/
settings/workspace directories, so nothing from the developer's own Jupyter setup leaks in.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_START_TIMEOUT = 120  # s; JupyterLab on two loaded cores can take a while


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def isolated_jupyter_env(base: Path, extra: dict | None = None) -> dict:
    """Environment for a JupyterLab server and its kernels that ignores the user's Jupyter setup.

    Config, data, runtime, lab settings and workspaces live under `base`; the venv's
    share/jupyter (kernelspec, anywidget and plotly lab extensions) is still found through
    sys.prefix. News fetching and update checks are turned off (no outbound requests, no toast
    over the notebook).
    """
    dirs = {name: base / name for name in ("config", "data", "runtime", "settings", "workspaces", "ipython", "cache")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    (dirs["config"] / "jupyter_server_config.json").write_text(json.dumps({
        "LabApp": {
            "news_url": None,
            "check_for_updates_class": "jupyterlab.handlers.announcements.NeverCheckForUpdate",
        },
    }))
    notif = dirs["settings"] / "@jupyterlab" / "apputils-extension"
    notif.mkdir(parents=True, exist_ok=True)
    (notif / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "JPY_"))}
    env.update({
        "JUPYTER_CONFIG_DIR": str(dirs["config"]),
        "JUPYTER_DATA_DIR": str(dirs["data"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
        "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
        "JUPYTERLAB_WORKSPACES_DIR": str(dirs["workspaces"]),
        "IPYTHONDIR": str(dirs["ipython"]),
        "JUPYTER_PLATFORM_DIRS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        # small, fixed thread pools: a browser, a server and a kernel share two cores
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    })
    env.update(extra or {})
    return env


class LabServer:
    """A running JupyterLab: `url`, `token`, `root` (its notebook directory), `env` (of its kernels)."""

    def __init__(self, root: Path, base: Path, env_extra: dict | None = None):
        self.root = root
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = isolated_jupyter_env(base, env_extra)
        self.log_path = base / "jupyterlab.log"
        cmd = [
            sys.executable, "-m", "jupyterlab",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            "--ServerApp.open_browser=False",
            "--LabApp.expose_app_in_browser=True",
            "--JupyterNotebookApp.expose_app_in_browser=True",
            f"--ServerApp.root_dir={root}",
            "--ServerApp.terminals_enabled=False",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
            cmd.append("--allow-root")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=root, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def api(self, path: str):
        """GET a Jupyter REST endpoint (token in the header) and return the decoded JSON."""
        req = urllib.request.Request(f"{self.url}{path}", headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def _wait_ready(self):
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.proc.returncode}:\n{self.log()}")
            try:
                self.api("/api/status")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        raise RuntimeError(f"JupyterLab did not answer within {SERVER_START_TIMEOUT} s:\n{self.log()}")

    def log(self) -> str:
        """The server's log so far (for failure messages)."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-8000:]

    def notebook_url(self, name: str, ui: str = "lab") -> str:
        """The notebook's page in JupyterLab (ui="lab") or Notebook 7 (ui="notebook")."""
        if ui == "notebook":
            return f"{self.url}/notebooks/{urllib.parse.quote(name)}?token={self.token}"
        return f"{self.url}/lab/tree/{urllib.parse.quote(name)}?reset&token={self.token}"

    def stop(self):
        # Ask politely (shuts kernels down), then insist.
        try:
            req = urllib.request.Request(f"{self.url}/api/shutdown", method="POST",
                                         headers={"Authorization": f"token {self.token}"})
            urllib.request.urlopen(req, timeout=10).close()
            self.proc.wait(timeout=20)
        except Exception:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


class Screenshots:
    """Numbered PNG screenshots of each step, kept in a temp folder (optionally copied out)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.count = 0
        self.paths: list[Path] = []

    def take(self, page, name: str, locator=None) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}_{name}.png"
        (locator or page).screenshot(path=str(path))
        self.paths.append(path)
        return path


# --------------------------------------------------------------------------- notebook driving
JS_PANEL = "window.jupyterapp.shell.currentWidget"


def wait_notebook_ready(page, timeout_s: float = 120):
    """Wait until JupyterLab shows a notebook whose kernel is connected and idle."""
    page.wait_for_function(
        f"""() => {{
            const app = window.jupyterapp; if (!app || !app.shell) return false;
            const w = {JS_PANEL}; if (!w || !w.sessionContext || !w.content) return false;
            const s = w.sessionContext;
            const k = s.session && s.session.kernel;
            return s.isReady && k && k.status === 'idle' && k.connectionStatus === 'connected';
        }}""",
        timeout=timeout_s * 1000, polling=250,
    )


def run_all_cells(page, timeout_s: float = 300):
    """Run every cell of the current notebook and wait for all of them to finish.

    Raises AssertionError with the tracebacks when a cell errored.
    """
    page.evaluate(
        """() => {
            window.__runAll = 'running';
            window.jupyterapp.commands.execute('notebook:run-all-cells').then(
                ok => { window.__runAll = ok === false ? 'failed' : 'done'; },
                err => { window.__runAll = 'error: ' + err; });
        }"""
    )
    page.wait_for_function("() => window.__runAll !== 'running'", timeout=timeout_s * 1000, polling=250)
    wait_notebook_ready(page, timeout_s)
    errors = cell_errors(page)
    state = page.evaluate("() => window.__runAll")
    assert not errors and state == "done", f"run-all finished as {state!r}; cell errors:\n" + "\n\n".join(errors)


def cell_errors(page) -> list[str]:
    """Error outputs of the current notebook, as 'ename: evalue' + traceback text."""
    return page.evaluate(
        f"""() => {{
            const out = [];
            const nb = {JS_PANEL}.content;
            for (const cell of nb.widgets) {{
                if (cell.model.type !== 'code') continue;
                const outs = cell.model.outputs.toJSON();
                for (const o of outs) if (o.output_type === 'error')
                    out.push(o.ename + ': ' + o.evalue + '\\n' + (o.traceback || []).join('\\n')
                             .replace(/\\x1b\\[[0-9;]*m/g, ''));
            }}
            return out;
        }}"""
    )


def cell_texts(page) -> list[str]:
    """Plain-text outputs (stream + text/plain) of each code cell of the current notebook."""
    return page.evaluate(
        f"""() => {{
            const nb = {JS_PANEL}.content;
            return nb.widgets.filter(c => c.model.type === 'code').map(cell => {{
                let t = '';
                for (const o of cell.model.outputs.toJSON()) {{
                    if (o.output_type === 'stream') t += [].concat(o.text).join('');
                    else if (o.data && o.data['text/plain']) t += [].concat(o.data['text/plain']).join('') + '\\n';
                }}
                return t;
            }});
        }}"""
    )


def run_cell(page, k: int, timeout_s: float = 300):
    """Run cell k of the current notebook (JupyterLab or Notebook 7) and wait for it to finish."""
    page.evaluate(
        f"""(k) => {{
            const panel = {JS_PANEL};
            panel.content.activeCellIndex = k;
            window.__cellDone = false;
            window.jupyterapp.commands.execute('notebook:run-cell').then(
                () => {{ window.__cellDone = true; }}, err => {{ window.__cellDone = 'error: ' + err; }});
        }}""",
        k,
    )
    page.wait_for_function("() => window.__cellDone !== false", timeout=timeout_s * 1000, polling=100)
    wait_notebook_ready(page, timeout_s)
    errors = cell_errors(page)
    assert not errors, "cell errors:\n" + "\n\n".join(errors)


def kernel_status(page) -> str:
    return page.evaluate(
        f"() => {{ const k = {JS_PANEL}.sessionContext.session?.kernel; return k ? k.status : 'none'; }}"
    )


class Lab:
    """What tests get from the `lab` fixture: the server, the browser context and helpers."""

    def __init__(self, server: LabServer, context, shots: Screenshots, blocked: list[str]):
        self.server = server
        self.context = context
        self.shots = shots
        self.blocked = blocked
        self.console: list[str] = []
        self.dialogs: list[str] = []

    @property
    def root(self) -> Path:
        return self.server.root

    def write_notebook(self, name: str, cells: list[str]) -> Path:
        """Write a notebook of code cells (python3 kernel) into the server's root."""
        import nbformat

        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
        path = self.root / name
        nbformat.write(nb, path)
        return path

    def open(self, name: str, timeout_s: float = 120, ui: str = "lab"):
        """Open a notebook in a fresh page (JupyterLab, or Notebook 7 with ui="notebook"), wait for
        its kernel; return the Playwright page."""
        page = self.context.new_page()
        page.on("console", lambda m: self.console.append(f"{ui} {m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"{ui} pageerror: {e}"))
        page.on("dialog", self._on_dialog)
        page.goto(self.server.notebook_url(name, ui))
        wait_notebook_ready(page, timeout_s)
        return page

    def _on_dialog(self, dialog):
        # A JS alert/confirm/prompt: record it (tests assert on it) and dismiss so nothing blocks.
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    run_all_cells = staticmethod(run_all_cells)
    run_cell = staticmethod(run_cell)
    wait_notebook_ready = staticmethod(wait_notebook_ready)
    cell_errors = staticmethod(cell_errors)
    cell_texts = staticmethod(cell_texts)
    kernel_status = staticmethod(kernel_status)




def launch_chromium(playwright):
    """Debian's Chromium, headless, with no background traffic (never `playwright install`)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def local_only(context, blocked: list):
    """Abort (and record in `blocked`) every request of `context` that is not for 127.0.0.1."""

    def guard(route):
        url = route.request.url
        host = urllib.parse.urlsplit(url).hostname
        if url.startswith(("data:", "blob:")) or host == "127.0.0.1":
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    context.route("**/*", guard)
