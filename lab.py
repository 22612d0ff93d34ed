#!/usr/bin/env python3
"""Set up hftlab and open the lab, or run every test. Needs only Python 3.10+.

    python3 lab.py          set up (first time only) and open JupyterLab on the first lesson
    python3 lab.py test     set up (first time only) and run the whole test suite

Anything after `lab` goes to JupyterLab (e.g. `python3 lab.py --no-browser`), anything
after `test` to pytest (e.g. `python3 lab.py test -x tests/test_book.py`).

"Set up" means: a virtual environment in .venv with hftlab and everything it needs,
installed again only when pyproject.toml changes. Nothing outside this folder is touched.
"""

import hashlib
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(ROOT, ".venv")
PYTHON = os.path.join(VENV, "bin", "python")
STAMP = os.path.join(VENV, ".hftlab-installed")
FIRST_LESSON = os.path.join("notebooks", "00_start_here.ipynb")


def say(text):
    print(f"lab.py: {text}", flush=True)


def setup():
    if sys.version_info < (3, 10):
        sys.exit(f"lab.py: hftlab needs Python 3.10 or newer; this is {sys.version.split()[0]}. "
                 "Run it with a newer python3.")
    if not os.path.exists(PYTHON):
        say("creating the virtual environment .venv (once)")
        import venv
        try:
            venv.create(VENV, with_pip=True)
        except subprocess.CalledProcessError:
            shutil.rmtree(VENV, ignore_errors=True)  # half made: the next run starts afresh
            sys.exit("lab.py: could not create .venv because this Python has no pip/ensurepip. "
                     "On Debian or Ubuntu: sudo apt install python3-venv, then run this again.")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        wanted = hashlib.sha256(f.read()).hexdigest()
    try:
        with open(STAMP) as f:
            installed = f.read().strip()
    except FileNotFoundError:
        installed = None
    if installed != wanted:
        say("installing hftlab and its dependencies into .venv (a few minutes the first time)")
        subprocess.run([PYTHON, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "-e", ".[test]"], cwd=ROOT, check=True)
        with open(STAMP, "w") as f:
            f.write(wanted)


def test(extra):
    env = dict(os.environ, HFTLAB_HEADLESS="1")  # live widget loops run a bounded number of frames
    cmd = [PYTHON, "-m", "pytest", "tests", "notebooks", "--nbval", "--nbval-current-env",
           "--nbval-cell-timeout=300", "--nbval-sanitize-with", os.path.join("notebooks", "sanitize.cfg"),
           *extra]
    say(" ".join(cmd[2:]))
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


def lab(extra):
    cmd = [PYTHON, "-m", "jupyterlab", "--ServerApp.ip=127.0.0.1", *extra, FIRST_LESSON]
    say("opening JupyterLab on the first lesson; Ctrl-C here stops it")
    try:
        return subprocess.run(cmd, cwd=ROOT).returncode
    except KeyboardInterrupt:
        return 0


def main(argv):
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["lab", *argv]  # flags alone go to JupyterLab
    command = argv[0]
    if command not in ("lab", "test"):
        print(__doc__)
        return 0 if command in ("-h", "--help") else 2
    try:
        setup()
    except subprocess.CalledProcessError:
        say("installing failed; the lines above say why (no network to the package index?)")
        return 1
    return test(argv[1:]) if command == "test" else lab(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
