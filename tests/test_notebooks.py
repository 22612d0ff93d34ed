"""The lessons are committed executed, are collected by the nbval run, and lean on the
sanitize file rather than on broad ignores.

nbval re-runs every notebook and compares its outputs with the committed ones; that
comparison means something only if the committed notebook was executed, if `lab.py test`
really hands the notebooks folder to nbval, and if outputs are not simply switched off.
"""

import configparser
import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SANITIZE = ROOT / "notebooks" / "sanitize.cfg"
MAX_IGNORED_CELLS = 3   # per notebook: only truly volatile output (live prices, timings)


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def code_cells(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def joined(text):
    return "".join(text) if isinstance(text, list) else text


def source(cell):
    return joined(cell["source"])


def test_there_are_lessons():
    names = [p.name for p in NOTEBOOKS]
    for lesson in ("03_shared_memory.ipynb", "04_orderbook.ipynb", "05_strategy.ipynb",
                   "06_order_manager.ipynb"):
        assert lesson in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_executed(path):
    nb = load(path)
    cells = code_cells(nb)
    assert cells, f"{path.name} has no code"
    unexecuted = [i for i, c in enumerate(cells) if source(c).strip() and c.get("execution_count") is None]
    assert not unexecuted, (f"{path.name}: code cells {unexecuted} were never run; execute the "
                            "notebook (nbconvert --execute --inplace) before committing")
    counts = [c["execution_count"] for c in cells if source(c).strip()]
    assert counts == sorted(set(counts)), \
        f"{path.name} was not run top to bottom (execution counts {counts})"
    assert sum(len(c.get("outputs", [])) for c in cells) > 0, f"{path.name} has no outputs"
    errors = [c for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name} was committed with an error output"
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_uses_few_ignores_and_no_skips(path):
    cells = code_cells(load(path))
    markers = [re.findall(r"#\s*(NBVAL_\w+)", source(c)) for c in cells]
    flat = [m for ms in markers for m in ms]
    assert "NBVAL_SKIP" not in flat, f"{path.name} skips a cell: make it run, or move it out"
    assert "NBVAL_RAISES_EXCEPTION" not in flat
    ignored = flat.count("NBVAL_IGNORE_OUTPUT")
    assert ignored <= MAX_IGNORED_CELLS, (
        f"{path.name} ignores the output of {ignored} cells (at most {MAX_IGNORED_CELLS}): "
        "sanitize volatile values in notebooks/sanitize.cfg instead")
    for i, ms in enumerate(markers):
        if "NBVAL_IGNORE_OUTPUT" in ms:
            # what must hold is asserted in the ignored cell, or in the cell that measured
            nearby = source(cells[i]) + (source(cells[i - 1]) if i else "")
            assert re.search(r"\bassert\b", nearby), (
                f"{path.name}: a cell whose output is ignored (or the one before it) must still "
                "assert something:\n" + source(cells[i])[:200])


def test_lesson_exercises_are_checked():
    """Each lesson has 1 to 3 exercises, each followed by its check cell (an exercise may
    be checked twice: 04 checks count_gaps on scripted cases, then on the live feed)."""
    for name in ("03_shared_memory", "04_orderbook", "05_strategy", "06_order_manager"):
        cells = code_cells(load(ROOT / "notebooks" / f"{name}.ipynb"))
        checks = [source(c) for c in cells if "checks.check_" in source(c)]
        stubs = [source(c) for c in cells if 'raise NotImplementedError("your code here")' in source(c)]
        assert 1 <= len(stubs) <= len(checks) <= 3, name
        for cell in cells:
            out = "".join(joined(o.get("text", "")) for o in cell.get("outputs", []))
            if "checks.check_" in source(cell):
                assert out.startswith("not done yet: "), f"{name}: {out!r}"


def test_sanitize_file_is_well_formed():
    parser = configparser.ConfigParser()
    parser.read(SANITIZE)
    assert parser.sections()
    for section in parser.sections():
        regex = parser[section]["regex"]
        re.compile(regex)
        assert "replace" in parser[section]
        assert regex not in (".*", ".+", r"[\s\S]*"), f"[{section}] would hide everything"


def test_lab_test_runs_nbval_over_the_notebooks_with_the_sanitize_file(monkeypatch):
    """`python3 lab.py test` is what CI runs: it must hand notebooks/ to nbval."""
    spec = importlib.util.spec_from_file_location("lab_script", ROOT / "lab.py")
    lab = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lab)
    ran = []

    class Done:
        returncode = 0

    monkeypatch.setattr(lab.subprocess, "run", lambda cmd, **kw: ran.append((cmd, kw)) or Done())
    assert lab.test([]) == 0
    (cmd, kw), = ran
    assert kw["cwd"] == lab.ROOT and kw["env"]["HFTLAB_HEADLESS"] == "1"
    assert "notebooks" in cmd and "--nbval" in cmd
    sanitize = cmd[cmd.index("--sanitize-with") + 1] if "--sanitize-with" in cmd \
        else cmd[cmd.index("--nbval-sanitize-with") + 1]
    assert (Path(lab.ROOT) / sanitize).resolve() == SANITIZE
    assert "--nbval-lax" not in cmd
    for path in NOTEBOOKS:       # pytest collects *.ipynb from notebooks/, not hidden dirs
        assert path.parent == ROOT / "notebooks" and not path.name.startswith(".")
