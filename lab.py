#!/usr/bin/env python3
"""Set up hftlab and open the lab, or run every test. Needs only Python 3.10+.

    python3 lab.py          set up (first time only) and open JupyterLab on the first lesson
    python3 lab.py test     set up (first time only) and run the whole test suite
    python3 lab.py matrix   run tests/ on every supported Python found (3.10, 3.12, 3.13),
                            each in its own .venv-3.X (python3 lab.py matrix 3.12: just one)

Anything after `lab` goes to JupyterLab (e.g. `python3 lab.py --no-browser`), anything
after `test` to pytest (e.g. `python3 lab.py test -x tests/test_book.py`), anything after
`matrix --` to each matrix run's pytest.

"Set up" means: a virtual environment in .venv with hftlab and everything it needs,
installed again only when pyproject.toml changes. Nothing outside this folder is touched.
HFTLAB_VENV=DIR uses another virtual environment (the matrix's tests use it to start the lab
from their own one).
"""

import hashlib
import os
import shutil
import signal
import subprocess
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
VENV = os.environ.get("HFTLAB_VENV") or os.path.join(ROOT, ".venv")
STAMP_NAME = ".hftlab-installed"  # in a venv: the hash of the pyproject.toml it was installed from
FIRST_LESSON = os.path.join("notebooks", "00_start_here.ipynb")
# The Pythons besides the default that CI tests (README and requires-python promise 3.10+).
MATRIX = ("3.10", "3.12", "3.13")
# On the other Pythons, everything but five files that run on the default Python only, to keep
# CI well under 40 minutes: the real-browser test (it tests the page, not the interpreter), the
# conformance suite (about 3 minutes of learners' scripts and our processes driven again), the
# alternatives comparison (ZeroMQ and multiprocessing, not our code paths), and the two big
# matches (16 strategies; a recording replayed three times), whose code test_match.py runs on
# every Python.
MATRIX_PYTEST = ["tests", "-q", "--ignore=tests/test_browser.py", "--ignore=tests/test_conform.py",
                 "--ignore=tests/test_alternatives.py", "--ignore=tests/test_crowd.py",
                 "--ignore=tests/test_match_replay.py"]


def say(text):
    print(f"lab.py: {text}", flush=True)


def venv_python(venv=None):
    return os.path.join(venv or VENV, "bin", "python")


def setup(venv=None, base_python=None):
    """Make `venv` (default .venv) with `base_python` (default this one) and install hftlab.

    Installs again only when pyproject.toml changed since the last install. Returns the
    venv's python."""
    venv, base_python = venv or VENV, base_python or sys.executable
    if base_python == sys.executable and sys.version_info < (3, 10):
        sys.exit(f"lab.py: hftlab needs Python 3.10 or newer; this is {sys.version.split()[0]}. "
                 "Run it with a newer python3.")
    python, stamp = venv_python(venv), os.path.join(venv, STAMP_NAME)
    if not os.path.exists(python):
        say(f"creating the virtual environment {os.path.relpath(venv, ROOT)} (once)")
        if subprocess.run([base_python, "-m", "venv", venv]).returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)  # half made: the next run starts afresh
            sys.exit(f"lab.py: could not create {venv} because this Python has no pip/ensurepip. "
                     "On Debian or Ubuntu: sudo apt install python3-venv, then run this again.")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        wanted = hashlib.sha256(f.read()).hexdigest()
    try:
        with open(stamp) as f:
            installed = f.read().strip()
    except FileNotFoundError:
        installed = None
    if installed != wanted:
        say(f"installing hftlab and its dependencies into {os.path.relpath(venv, ROOT)} "
            "(a few minutes the first time)")
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "-e", ".[test]"], cwd=ROOT, check=True)
        with open(stamp, "w") as f:
            f.write(wanted)
    return python


def test(extra):
    env = dict(os.environ, HFTLAB_HEADLESS="1")  # live widget loops run a bounded number of frames
    cmd = [venv_python(), "-m", "pytest", "tests", "notebooks", "--nbval", "--nbval-current-env",
           "--nbval-cell-timeout=300", "--nbval-sanitize-with", os.path.join("notebooks", "sanitize.cfg"),
           *extra]
    say(" ".join(cmd[2:]))
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


def find_python(version):
    """The path of a python `version` ("3.12") installed on this machine, or None.

    Looks in pyenv's versions (the newest patch release), then for python3.X on PATH."""
    candidates = []
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    versions = os.path.join(pyenv_root, "versions")
    if os.path.isdir(versions):
        def patch(name):
            tail = name[len(version) + 1:]
            return int(tail) if tail.isdigit() else -1
        found = sorted((n for n in os.listdir(versions) if n.startswith(version + ".")
                        and patch(n) >= 0), key=patch, reverse=True)
        candidates += [os.path.join(versions, n, "bin", "python" + version) for n in found]
    on_path = shutil.which("python" + version)
    if on_path:
        candidates.append(on_path)
    for path in candidates:
        try:
            out = subprocess.run([path, "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip() == version:
            return path
    return None


def matrix(argv):
    """Run tests/ on each Python of the matrix in its own .venv-3.X; 0 if every run passed."""
    versions, extra = argv, []
    if "--" in argv:
        cut = argv.index("--")
        versions, extra = argv[:cut], argv[cut + 1:]
    results = {}
    for version in versions or MATRIX:
        base = find_python(version)
        if base is None:
            say(f"Python {version}: not installed on this machine (pyenv or python{version} on PATH); skipped")
            continue
        venv = os.path.join(ROOT, f".venv-{version}")
        try:
            python = setup(venv, base)
        except (subprocess.CalledProcessError, SystemExit) as exc:
            say(f"Python {version}: setting up .venv-{version} failed ({exc}); the lines above say why")
            results[version] = 1
            continue
        # The tests that start `python3 lab.py` use this venv too, not .venv.
        env = dict(os.environ, HFTLAB_HEADLESS="1", HFTLAB_VENV=venv)
        cmd = [python, "-m", "pytest", *MATRIX_PYTEST, *extra]
        say(f"Python {version} ({base}): pytest {' '.join(cmd[3:])}")
        results[version] = subprocess.run(cmd, cwd=ROOT, env=env).returncode
    for version, code in results.items():
        say(f"Python {version}: {'passed' if code == 0 else f'FAILED (pytest exit status {code})'}")
    return 1 if any(results.values()) else 0


def lab(extra):
    cmd = [venv_python(), "-m", "jupyterlab", "--ServerApp.ip=127.0.0.1"]
    if os.geteuid() == 0:
        # Containers and course servers often log in as root; JupyterLab refuses root unless told.
        say("running as root (common in containers): passing --ServerApp.allow_root=True, "
            "which JupyterLab asks for before it serves root")
        cmd.append("--ServerApp.allow_root=True")
    cmd += [*extra, FIRST_LESSON]
    say("opening JupyterLab on the first lesson; Ctrl-C here stops it")
    # JupyterLab starts with SIGINT ignored: on Ctrl-C, lab.py stops it with SIGTERM (below).
    # In a terminal it installs its own Ctrl-C handler anyway; without one it would keep
    # Python's default, and the group's Ctrl-C, raised inside one of its callbacks, printed
    # a traceback ("Exception ignored in ... KeyboardInterrupt") on its way out.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    server = subprocess.Popen(cmd, cwd=ROOT)
    # Ctrl-C stops the lab even when SIGINT was inherited ignored, as it is in a shell
    # script's background job (POSIX); the lab's processes decide the same (hftlab.process).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    interrupted = False
    while True:
        try:
            code = server.wait()
            return 0 if interrupted else code
        except KeyboardInterrupt:
            # Ctrl-C: the terminal sent SIGINT to JupyterLab too, which may be asking
            # "Shut down this Jupyter server?"; SIGTERM stops it without asking, cleanly
            # (its kernels shut down, and their labs with them). Never kill it mid-way.
            interrupted = True
            if server.poll() is None:
                server.terminate()


def main(argv):
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["lab", *argv]  # flags alone go to JupyterLab
    command = argv[0]
    if command not in ("lab", "test", "matrix"):
        print(__doc__)
        return 0 if command in ("-h", "--help") else 2
    if command == "matrix":
        return matrix(argv[1:])  # sets up each Python's own venv
    try:
        setup()
    except subprocess.CalledProcessError:
        say("installing failed; the lines above say why (no network to the package index?)")
        return 1
    return test(argv[1:]) if command == "test" else lab(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
