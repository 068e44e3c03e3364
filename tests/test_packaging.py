"""The conda environment and pyproject.toml list the same packages."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge name -> PyPI name


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement.strip(), maxsplit=1)[0].lower()


def _pyproject_packages() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {_name(r) for r in reqs}


def _conda_packages() -> set[str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    deps = [line.strip()[2:] for line in lines if line.strip().startswith("- ")]
    names = {_name(d) for d in deps} - {"conda-forge", "python", "pip"}
    return {CONDA_NAMES.get(n, n) for n in names}


def test_environment_yml_matches_pyproject():
    assert _conda_packages() == _pyproject_packages()


def _bounds(requirement: str) -> str:
    return requirement.strip().split(" ")[0][len(_name(requirement)):]


def test_torch_has_lower_bounds_only_and_the_same_in_both_files():
    """A newer torch than today's must install: no upper cap, and conda asks for what pip asks for."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip = {_name(r): _bounds(r) for r in project["dependencies"]}
    conda = {CONDA_NAMES.get(_name(d), _name(d)): _bounds(d)
             for d in (line.strip()[2:] for line in (ROOT / "environment.yml").read_text().splitlines()
                       if line.strip().startswith("- "))}
    for name in ("torch", "torchvision"):
        assert pip[name].startswith(">=") and not re.search(r"<|==|~=|,", pip[name]), pip[name]
        assert conda[name] == pip[name]
    assert pip["torch"] == ">=2.3" and pip["torchvision"] == ">=0.18"


def test_repo_layout_is_the_one_the_user_fixed():
    for name in ("notebooks", "brainlib", "data", "outputs", "environment.yml", "README.md", "tests", ".ci/run"):
        assert (ROOT / name).exists(), name
    ignored = (ROOT / ".gitignore").read_text()
    assert "/data/*" in ignored and "/outputs/*" in ignored
