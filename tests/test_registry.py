"""``utils.check_*`` finds every check, and the trusted grader knows every check a notebook calls."""
import importlib
import json

import pytest

import utils
from utils.instructor.course import REPO_ROOT
from utils.checks.registry import CHECK_MODULES, MODULE_OF_CHECK
from utils.grading.trusted import checks_in


@pytest.mark.parametrize("module_name", sorted(CHECK_MODULES))
def test_registry_lists_exactly_the_exercises_of_each_module(module_name):
    module = importlib.import_module(module_name)
    assert tuple(module.EXERCISES) == CHECK_MODULES[module_name]
    for name in module.EXERCISES:
        assert getattr(utils, f"check_{name}") is getattr(module, f"check_{name}")


def test_every_check_a_source_notebook_calls_is_registered():
    called = set()
    for path in sorted((REPO_ROOT / "source").glob("*/*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            meta = cell["metadata"].get("nbgrader", {})
            if cell["cell_type"] == "code" and meta.get("grade") and not meta.get("solution"):
                found = checks_in("".join(cell["source"]))
                assert found, f"{path.name}: test cell {meta['grade_id']} calls no registered check"
                called.update(name for name, _ in found)
    assert called <= set(MODULE_OF_CHECK)
    assert len(called) >= 20


def test_an_unknown_check_is_an_attribute_error():
    with pytest.raises(AttributeError, match="check_nonexistent"):
        utils.check_nonexistent
