"""environment.yml and pyproject.toml must ask for the same packages, at the same versions."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pyproject_requirements():
    text = (ROOT / "pyproject.toml").read_text()
    reqs = []
    for block in ("dependencies", "test"):
        body = re.search(rf"^{block} = \[(.*?)^\]", text, re.S | re.M).group(1)
        reqs += re.findall(r'"([^"]+)"', body)
    return {normalise(r) for r in reqs}


def environment_requirements():
    reqs = set()
    text = (ROOT / "environment.yml").read_text()
    for line in text[text.index("dependencies:"):].splitlines():
        m = re.match(r"^\s+- ([A-Za-z][\w.-]*\s*[<>=!~]*[^\s#]*)\s*$", line)
        if m and not m.group(1).startswith(("python", "pip")) and m.group(1) != "pip:":
            reqs.add(normalise(m.group(1)))
    return reqs


def normalise(requirement):
    name, spec = re.match(r"([A-Za-z][\w.-]*)\s*(.*)", requirement).groups()
    return name.lower().replace("_", "-"), spec.replace(" ", "")


def test_environment_yml_and_pyproject_agree():
    assert environment_requirements() == pyproject_requirements()


def test_environment_installs_this_package_in_development_mode():
    assert re.search(r"^\s+- -e \.\s*$", (ROOT / "environment.yml").read_text(), re.M)


def test_the_python_floor_agrees():
    py = re.search(r'requires-python = ">=([\d.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    env = re.search(r"^\s+- python>=([\d.]+)", (ROOT / "environment.yml").read_text(), re.M).group(1)
    assert py == env == "3.10"


def test_the_sample_tick_file_is_package_data():
    """hftlab.replay.SAMPLE must be installed with the package, not only in a clone."""
    import fnmatch

    from hftlab import replay

    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^\[tool\.setuptools\.package-data\]\n(.*?)(?=^\[|\Z)", text, re.S | re.M).group(1)
    globs = re.findall(r'"([^"]+)"', re.search(r"^hftlab = \[(.*?)\]", block, re.M).group(1))
    sample = Path(replay.SAMPLE).resolve().relative_to(ROOT / "hftlab").as_posix()
    assert any(fnmatch.fnmatch(sample, g) for g in globs), (sample, globs)


def test_every_subpackage_is_installed():
    """A package folder missing from [tool.setuptools] packages works in a clone (the
    editable install) but is left out of a wheel."""
    listed = set(re.findall(r'"([^"]+)"', re.search(r"^packages = \[(.*?)\]",
                                                    (ROOT / "pyproject.toml").read_text(), re.M).group(1)))
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "hftlab").rglob("__init__.py")}
    assert found == listed
