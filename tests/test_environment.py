"""The conda environment and the pip project install the same pinned packages."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _normalise(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).lower().replace("_", "-")


def _pyproject_requirements() -> set[str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return {_normalise(r) for r in tomllib.load(f)["project"]["dependencies"]}


def _environment_requirements() -> set[str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    reqs = set()
    for line in lines[start + 1:]:
        item = line.strip()
        if not item.startswith("- "):
            break
        value = item[2:].strip()
        if value != "-e .":
            reqs.add(_normalise(value))
    return reqs


def test_environment_yml_matches_pyproject():
    assert _environment_requirements() == _pyproject_requirements()


def test_required_pins_are_present():
    reqs = _pyproject_requirements()
    for pin in ("torch==2.14.1", "torchvision==0.29.1", "nbgrader==0.9.6"):
        assert pin in reqs, f"{pin} is missing from pyproject.toml"
    assert any(r.startswith("jupyterlab>=4") for r in reqs)
    assert "python=3.11" in (ROOT / "environment.yml").read_text()


def test_installed_versions_match_the_pins():
    import nbgrader
    import torch
    import torchvision
    assert torch.__version__.split("+")[0] == "2.14.1"
    assert torchvision.__version__.split("+")[0] == "0.29.1"
    assert nbgrader.__version__ == "0.9.6"
