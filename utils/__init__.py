"""Checks for the deep-learning architectures course.

Each ``check_<exercise>(your_function)`` runs your implementation on several
cases, compares it with a torch/torchvision reference computed in float64, and
either shows a ✓ line or raises :class:`CheckFailure` whose message says which
case failed, where, and the likely mistake.

``from utils import check_deform_conv2d`` imports only the module of that
assignment (torch itself is imported when a reference is first computed).

``ready("name", ...)`` opens a demo cell that uses answers; ``progress()`` shows every exercise of
the notebook with its points and its state (:mod:`utils.notebook`).
"""
from utils.checks.feedback import CheckFailure, CheckResult, NotImplementedYet
from utils.checks.registry import MODULE_OF_CHECK, check_function
from utils.notebook import progress, ready

__all__ = ["CheckFailure", "CheckResult", "NotImplementedYet", "progress", "ready", *sorted(MODULE_OF_CHECK)]


def __getattr__(name: str):
    if name in MODULE_OF_CHECK:
        return check_function(name)
    raise AttributeError(f"module 'utils' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(MODULE_OF_CHECK))
