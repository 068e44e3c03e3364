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
    deps = [l.strip()[2:] for l in lines if l.strip().startswith("- ")]
    names = {_name(d) for d in deps} - {"conda-forge", "python", "pip"}
    return {CONDA_NAMES.get(n, n) for n in names}


def test_environment_yml_matches_pyproject():
    assert _conda_packages() == _pyproject_packages()


def test_torch_is_never_required_newer_than_the_local_wheels():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"torch>=2.3,<=2.14.1"' in text and '"torchvision>=0.18,<=0.29.1"' in text


def test_repo_layout_is_the_one_the_user_fixed():
    for name in ("notebooks", "brainlib", "data", "outputs", "environment.yml", "README.md", "tests", ".ci/run"):
        assert (ROOT / name).exists(), name
    ignored = (ROOT / ".gitignore").read_text()
    assert "/data/*" in ignored and "/outputs/*" in ignored
