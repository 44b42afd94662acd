"""release/ is exactly what nbgrader generates from source/, and leaks nothing."""
import json
import shutil
from pathlib import Path

import nbformat
import pytest

from utils.instructor.course import REPO_ROOT, assignments, generate_release

LEAK_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION", "### BEGIN HIDDEN TESTS", "hidden=True")


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("course")
    shutil.copytree(REPO_ROOT / "source", root / "source")
    shutil.copy(REPO_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    generate_release(root)
    return root


def _cells(path: Path):
    nb = json.loads(path.read_text())
    return [(c["cell_type"], "".join(c["source"]) if isinstance(c["source"], list) else c["source"],
             c["metadata"].get("nbgrader")) for c in nb["cells"]]


@pytest.mark.parametrize("assignment", assignments())
def test_release_is_in_sync_with_source(regenerated, assignment):
    fresh = sorted(p.relative_to(regenerated / "release") for p in (regenerated / "release" / assignment).rglob("*")
                   if p.is_file())
    committed = sorted(p.relative_to(REPO_ROOT / "release") for p in (REPO_ROOT / "release" / assignment).rglob("*")
                       if p.is_file() and ".ipynb_checkpoints" not in p.parts)
    assert committed == fresh, "release/ lists other files than nbgrader generates: run `make release`"
    for rel in fresh:
        if rel.suffix == ".ipynb":
            assert _cells(REPO_ROOT / "release" / rel) == _cells(regenerated / "release" / rel), \
                f"release/{rel} is out of date with source/: run `make release`"


@pytest.mark.parametrize("assignment", assignments())
def test_release_has_no_solution_or_hidden_tests(assignment):
    for path in (REPO_ROOT / "release" / assignment).rglob("*.ipynb"):
        text = path.read_text()
        for marker in LEAK_MARKERS:
            assert marker not in text, f"{path.name} contains {marker!r}"
        nb = nbformat.read(path, as_version=4)
        stubs = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"]
        assert stubs and all("raise NotImplementedError()" in c.source for c in stubs)


@pytest.mark.parametrize("assignment", assignments())
def test_source_folder_holds_only_notebooks(assignment):
    # nbgrader copies every other file of source/<assignment>/ to the students.
    others = [p.name for p in (REPO_ROOT / "source" / assignment).rglob("*")
              if p.is_file() and p.suffix != ".ipynb" and ".ipynb_checkpoints" not in p.parts]
    assert others == [], f"instructor files would be released to students: {others}"


@pytest.mark.parametrize("assignment", assignments())
def test_every_graded_test_cell_has_points_and_visible_check(assignment):
    for path in (REPO_ROOT / "source" / assignment).glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        graded = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
        assert graded, f"{path.name} has no graded cell"
        for cell in graded:
            assert cell.metadata["nbgrader"].get("points", 0) > 0
            if cell.cell_type == "code" and not cell.metadata["nbgrader"].get("solution"):
                visible = cell.source.split("### BEGIN HIDDEN TESTS")[0]
                assert "check_" in visible, f"{cell.metadata['nbgrader']['grade_id']} has no visible check"
