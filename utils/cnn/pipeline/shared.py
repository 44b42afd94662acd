"""What the pipeline checks share: torch's global state kept as it was while the student's code runs,
and the names of mistakes made with several settings.

* :func:`seeded` — torch's global generator seeded locally inside a block, restored after it;
* :func:`one_thread` — torch on one CPU thread inside a block (a check's tensors are tiny);
* :func:`check_on_one_thread` — a check run on one thread, its result shown;
* :func:`variant_name` — the name of one setting of a mistake made with several settings.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from utils.checks.exercise import Exercise, run_check
from utils.checks.feedback import show


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Torch's global generator seeded with ``seed`` inside the block, and as it was after it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one CPU thread inside the block (extra threads only add overhead), as it was after it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def check_on_one_thread(exercise: Exercise, fn: Callable, hidden: bool) -> None:
    """Check ``fn`` on one CPU thread and show the result; a failure is raised as the check's feedback."""
    with one_thread():
        result = run_check(exercise, fn, hidden)
    show(result)


VARIANT_OF = " (your output matches "


def variant_name(mistake: str, setting: str) -> str:
    """The name of a mistake made with one of several settings (a dropout probability, a learning rate):
    each setting is its own catalogued mistake, and the feedback says which one the output matches."""
    return f"{mistake}{VARIANT_OF}{setting})"
