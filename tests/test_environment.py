"""The conda environment and the pip project install the same pinned packages, grouped by role."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _normalise(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).lower().replace("_", "-")


def _project() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def _pyproject_requirements() -> set[str]:
    project = _project()
    groups = project.get("optional-dependencies", {})
    return {_normalise(r) for r in project["dependencies"] + [r for g in groups.values() for r in g]}


def _environment_pip_items() -> list[str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    items = []
    for line in lines[start + 1:]:
        item = line.strip()
        if item.startswith("#") or not item:
            continue
        if not item.startswith("- "):
            break
        items.append(item[2:].strip())
    return items


def test_environment_yml_matches_pyproject():
    reqs = {_normalise(item) for item in _environment_pip_items() if not item.startswith("-e ")}
    assert reqs == _pyproject_requirements()


def test_environment_yml_installs_the_course_with_every_group():
    groups = sorted(_project()["optional-dependencies"])
    installs = [item for item in _environment_pip_items() if item.startswith("-e ")]
    assert installs == [f"-e .[{','.join(groups)}]"]


def test_a_student_install_leaves_out_grading_and_test_tools():
    student = {_normalise(r).split("==")[0].split("[")[0] for r in _project()["dependencies"]}
    for tool in ("pytest", "nbval", "playwright", "dask", "psycopg2-binary", "ruff"):
        assert tool not in student, f"{tool} belongs to an optional group, not to the student's install"
    groups = _project()["optional-dependencies"]
    assert any(r.startswith("dask") for r in groups["grading"])
    assert any(r.startswith("pytest") for r in groups["test"])


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
