"""alwidget.demo: notebooks copied without overwriting, JupyterLab on 127.0.0.1 with token auth."""
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from alwidget import demo


def test_bundled_notebooks_are_found():
    folder = demo.bundled_notebooks()
    names = {p.name for p in folder.glob("*.ipynb")}
    assert {"quickstart.ipynb", "teaching.ipynb", "your_images.ipynb"} <= names


def test_prepare_copies_once_and_keeps_user_edits(tmp_path):
    target = tmp_path / "work"
    folder = demo.prepare_notebooks(target)
    assert folder == target.resolve()
    quick = folder / "quickstart.ipynb"
    assert json.loads(quick.read_text())["cells"], "copied notebook is empty"
    quick.write_text('{"edited": true}')
    demo.prepare_notebooks(target)
    assert quick.read_text() == '{"edited": true}', "a user's edited notebook was overwritten"
    (folder / "teaching.ipynb").unlink()
    demo.prepare_notebooks(target)
    assert (folder / "teaching.ipynb").is_file(), "a missing notebook was not restored"


def test_prepare_rejects_a_file(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(ValueError, match="notebook_dir"):
        demo.prepare_notebooks(f)


@pytest.mark.parametrize("port", [0, 70000, "8888", True])
def test_bad_port_is_rejected(tmp_path, port):
    with pytest.raises(ValueError, match="port"):
        demo.lab_command(tmp_path, port=port)


def test_command_binds_localhost_and_keeps_token_auth(tmp_path):
    cmd = demo.lab_command(tmp_path, port=9999, open_browser=False)
    assert "--ServerApp.ip=127.0.0.1" in cmd
    assert "--ServerApp.open_browser=False" in cmd
    assert not any("token" in c.lower() or "password" in c.lower() for c in cmd), cmd


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.geturl()
    except urllib.error.HTTPError as e:
        return e.code, url


def test_demo_command_serves_quickstart_with_token(tmp_path):
    """`alwidget demo` really starts JupyterLab: 127.0.0.1 only, token required, quickstart first."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "JPY_"))}
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_SETTINGS_DIR"):
        env[name] = str(tmp_path / name.lower())
    log = tmp_path / "lab.log"
    work = tmp_path / "demo"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "alwidget.cli", "demo", "--no-browser", "--port", str(port), "--dir", str(work)],
            env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        token = None
        deadline = time.monotonic() + 90
        while token is None and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            m = re.search(rf"http://127\.0\.0\.1:{port}/lab/tree/quickstart\.ipynb\?token=(\w+)", log.read_text())
            token = m.group(1) if m else None
            time.sleep(0.5)
        assert token, f"no tokenised quickstart URL printed:\n{log.read_text()}"
        assert (work / "quickstart.ipynb").is_file()
        base = f"http://127.0.0.1:{port}"
        assert _get(f"{base}/api/contents/quickstart.ipynb")[0] == 403, "served without the token"
        status, _ = _get(f"{base}/api/contents/quickstart.ipynb?token={token}")
        assert status == 200
        # not reachable on another interface of this machine
        host_ip = socket.gethostbyname(socket.gethostname())
        if not host_ip.startswith("127."):
            with pytest.raises(OSError):
                socket.create_connection((host_ip, port), timeout=2).close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
