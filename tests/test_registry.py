"""``utils.check_*`` finds every check. (That the notebooks call exactly the registered checks is part of
tests/test_contract.py.)"""
import importlib

import pytest

import utils
from utils.checks.registry import CHECK_MODULES


@pytest.mark.parametrize("module_name", sorted(CHECK_MODULES))
def test_registry_lists_exactly_the_exercises_of_each_module(module_name):
    module = importlib.import_module(module_name)
    assert tuple(module.EXERCISES) == CHECK_MODULES[module_name].exercises
    for name in module.EXERCISES:
        assert getattr(utils, f"check_{name}") is getattr(module, f"check_{name}")


def test_an_unknown_check_is_an_attribute_error():
    with pytest.raises(AttributeError, match="check_nonexistent"):
        _ = utils.check_nonexistent
