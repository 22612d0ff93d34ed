"""One style for the whole package, its tests and lab.py (pyproject.toml's [tool.ruff]):
double quotes, lines of at most 115 characters, no unused imports or names; and one shape:
no import cycle, no module longer than one sitting, few long functions."""

import ast
import os
import pathlib
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_code_keeps_the_one_style():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache",
                             "hftlab", "tests", "lab.py", "conftest.py"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


# -- the package's shape: each module reads in one sitting ---------------------------------

PACKAGE = pathlib.Path(ROOT) / "hftlab"
LONGEST_MODULE = 500                 # lines; the protocol package's parts are held to it too
LONG_FUNCTION, MOST_LONG_FUNCTIONS = 40, 10


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def _imports(name, path) -> set:
    """The hftlab modules that module `name` imports, anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found |= {base} | {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m.startswith("hftlab")}


def test_no_import_cycle_between_the_packages_modules():
    modules = dict(_modules())
    graph = {name: {m for m in _imports(name, path) if m in modules and m != name}
             for name, path in modules.items()}
    # A package's face imports its parts; a part that imports its own package is not a cycle of ideas.
    graph = {name: {m for m in deps if not name.startswith(m + ".")} for name, deps in graph.items()}
    cycles, state = [], {}

    def visit(node, trail):
        state[node] = "on the trail"
        for dep in graph[node]:
            if state.get(dep) == "on the trail":
                cycles.append(trail[trail.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, trail + [dep])
        state[node] = "done"

    for name in graph:
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_module_is_longer_than_one_sitting():
    long = {str(p.relative_to(PACKAGE.parent)): n for _, p in _modules()
            if (n := p.read_text().count("\n")) > LONGEST_MODULE}
    assert not long, f"modules over {LONGEST_MODULE} lines: {long}"


def test_few_functions_are_long():
    long = sorted((node.end_lineno - node.lineno + 1, f"{p.relative_to(PACKAGE.parent)}:{node.name}")
                  for _, p in _modules() for node in ast.walk(ast.parse(p.read_text()))
                  if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.end_lineno - node.lineno + 1 > LONG_FUNCTION)
    assert len(long) <= MOST_LONG_FUNCTIONS, f"{len(long)} functions over {LONG_FUNCTION} lines: {long}"
