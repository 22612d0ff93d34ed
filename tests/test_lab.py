"""The README's first command, `python3 lab.py`: it serves the first lesson and stops cleanly.

Started as a learner starts it (plus flags so it opens no browser, takes a free port and
throwaway Jupyter dirs), for root as well as for anyone else: as root, lab.py must pass
JupyterLab the allow-root setting it otherwise refuses to start without. Stopped with
SIGINT to its whole process group, which is what Ctrl-C in a terminal does.
"""

import json
import os
import secrets
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from conftest import MARKER, cmdline, free_port, marked_pids, wait_until_gone, with_sigint
from hftlab import children

ROOT = Path(__file__).resolve().parent.parent
LESSON = "00_start_here.ipynb"  # JupyterLab serves the folder of the file it was given
START_TIMEOUT = 60.0  # lab.py checks its venv, then JupyterLab starts: slow on a loaded machine


def test_python3_lab_py_serves_the_first_lesson_and_stops_on_ctrl_c(tmp_path):
    token, port = secrets.token_hex(8), free_port()
    env = dict(os.environ, **{
        MARKER: token,
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"), "IPYTHONDIR": str(tmp_path / "ipython"),
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
    # The venv this test runs in, if lab.py made it (the Python matrix's .venv-3.X), else .venv.
    if (Path(sys.prefix) / ".hftlab-installed").exists():
        env["HFTLAB_VENV"] = sys.prefix
    log_path = tmp_path / "lab.log"
    with open(log_path, "wb") as log:
        # Started as a shell script's background job starts it, with SIGINT inherited ignored:
        # the harder case (a terminal's is the default disposition); Ctrl-C must stop it anyway.
        lab = subprocess.Popen(
            with_sigint("inherited ignored", [
                sys.executable, "lab.py", "--no-browser", f"--ServerApp.port={port}",
                "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
                "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]),
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)  # its own process group, like a terminal's foreground job
    output = lambda: log_path.read_text(errors="replace")
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def get(path):
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                         headers={"Authorization": f"token {token}"})
        with no_proxy.open(request, timeout=5) as r:
            return r.status, r.read()

    def lesson_served():
        assert lab.poll() is None, f"lab.py exited with {lab.returncode}:\n{output()[-3000:]}"
        try:
            return get(f"/api/contents/{LESSON}?content=0")
        except OSError as exc:
            seen["error"] = exc
            return None

    seen = {}
    try:
        status, body = children.wait_for(lesson_served, START_TIMEOUT, "JupyterLab to serve the first lesson")
        assert status == 200 and json.loads(body)["name"] == LESSON
        status, page = get(f"/lab/tree/{LESSON}")
        assert status == 200 and b"JupyterLab" in page
        # With no terminal, JupyterLab ignores the group's Ctrl-C (lab.py stops it): Python's
        # default KeyboardInterrupt, landing in one of its callbacks, printed a traceback.
        (server,) = [pid for pid in marked_pids(token) if parent(pid) == lab.pid]
        assert "jupyterlab" in cmdline(server) and ignores_sigint(server)
        os.killpg(lab.pid, signal.SIGINT)  # Ctrl-C
        assert lab.wait(60) == 0, output()[-3000:]
    except TimeoutError as exc:
        pytest.fail(f"{exc}; the last request said {seen.get('error')}; lab.py's output:\n{output()[-3000:]}")
    finally:
        if lab.poll() is None:
            os.killpg(lab.pid, signal.SIGKILL)
            lab.wait()
        left = wait_until_gone(token)
    assert not left, "left running: " + "; ".join(f"{pid} {cmdline(pid)}" for pid in left)
    text = output()
    assert ("passing --ServerApp.allow_root=True" in text) == (os.geteuid() == 0), text
    assert "Running as root is not recommended" not in text
    assert "Traceback" not in text, text


def parent(pid: int) -> int:
    """The parent's pid, from /proc/PID/stat (its fourth field, after the command in brackets)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[1])


def ignores_sigint(pid: int) -> bool:
    """Whether SIGINT is in the process's ignored-signals mask (/proc/PID/status, Linux)."""
    with open(f"/proc/{pid}/status") as f:
        mask = next(line.split()[1] for line in f if line.startswith("SigIgn:"))
    return bool(int(mask, 16) >> (signal.SIGINT - 1) & 1)
