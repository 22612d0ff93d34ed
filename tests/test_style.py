"""One style for the whole package, its tests and lab.py (pyproject.toml's [tool.ruff]):
double quotes, lines of at most 115 characters, no unused imports or names."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_code_keeps_the_one_style():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache",
                             "hftlab", "tests", "lab.py", "conftest.py"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
