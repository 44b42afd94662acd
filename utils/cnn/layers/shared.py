"""What the layer checks share: torch on first use, several outputs compared as one vector, and cases.

These modules are imported in the student's kernel, where the cnn_layers notebook blocks torch, and
in the grader. Nothing here imports torch when the module is imported: a reference gets it on
first use with :func:`functional` (or ``torch_module()``); case builders and ``Exercise.call``
functions use numpy only, so the grading kernel never needs torch.

A function returning several arrays, e.g. ``(dx, dw, db)``, is compared as one float64 vector (its
outputs flattened and concatenated in order); :func:`describe_parts` names an element of that vector
by its output and index, e.g. ``dw[1, 0, 2, 2]``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from utils.checks.adapters import to_numpy, torch_module
from utils.checks.characterise import Layout
from utils.checks.exercise import Case, visible_then_hidden
from utils.checks.rules import RuleBroken, kept_unchanged, require_shape
from utils.checks.seeding import case_rng

# The notebook's rule (its introduction, "Conventions used throughout"), enforced by every layer's check.
INPUTS_KEPT = ("a layer function does not change the arrays it is given (notebook introduction, "
               "“Conventions used throughout”)")

# How the generic diagnosis names a position of an output packed from several results.
PACKED = Layout(axes=("element",))


def functional():
    """``torch.nn.functional``, importing torch on first use."""
    return torch_module().nn.functional


class WrongReturnValue(Exception):
    """The student's function returned something of the wrong kind (not the documented tuple)."""


def return_hint(*names: str) -> dict[str, str]:
    """The hint for a result of the wrong kind: the tuple the docstring names."""
    return {"WrongReturnValue": f"return exactly what the docstring says: the tuple ({', '.join(names)})."}


RETURN_HINT = return_hint("dx", "dw", "db")


def flatten(*parts) -> np.ndarray:
    """Arrays or tensors as one float64 vector: each flattened, then concatenated in order."""
    return np.concatenate([np.asarray(p.detach() if hasattr(p, "detach") else p, dtype=np.float64).ravel()
                           for p in parts])


def unpack_outputs(result, names: tuple[str, ...], function: str, shapes: tuple | None = None,
                   rule: str = "") -> np.ndarray:
    """The student's tuple of outputs as one flat float vector (outputs in order).

    With ``shapes`` (one per output), each output must have its own shape (``require_shape``, quoting
    ``rule``): a wrong shape is reported for that output, never for the packed vector.
    """
    if not isinstance(result, (tuple, list)) or len(result) != len(names):
        got = type(result).__name__
        if isinstance(result, (tuple, list)):
            got += f" of length {len(result)}"
        raise WrongReturnValue(f"{function} must return a tuple ({', '.join(names)}); it returned a {got}.")
    parts = []
    for name, part in zip(names, result, strict=True):
        array = to_numpy(part)
        if array is None:
            raise WrongReturnValue(f"{name} is {'None' if part is None else type(part).__name__}, "
                                   "expected a numpy array (or a number).")
        if shapes is not None:
            require_shape(array, shapes[len(parts)], what=name, rule=rule)
        parts.append(np.asarray(array, dtype=np.float64).ravel())
    return np.concatenate(parts)


def describe_parts(parts: list[tuple[str, tuple]]) -> Callable[[tuple], str]:
    """Names an element of a vector packed from ``parts`` (name, shape): 'dw[1, 0, 2, 2]'."""
    def describe(index: tuple) -> str:
        i = index[0]
        for name, shape in parts:
            n = int(np.prod(shape, dtype=int))
            if i < n:
                if not shape:
                    return name
                return f"{name}[{', '.join(str(int(v)) for v in np.unravel_index(i, shape))}]"
            i -= n
        return f"element {index[0]}"
    return describe


def part_regions(parts: list[tuple[str, tuple]]) -> dict[str, np.ndarray]:
    """One region per output of a packed vector ("the values of dw" -> mask), so that a difference confined
    to one output is reported by its name."""
    sizes = [int(np.prod(shape, dtype=int)) for _, shape in parts]
    total, start, regions = sum(sizes), 0, {}
    for (name, _), n in zip(parts, sizes, strict=True):
        mask = np.zeros(total, dtype=bool)
        mask[start:start + n] = True
        regions[f"the values of {name}"] = mask
        start += n
    return regions


def calling(fn, arrays: dict, *args, rule: str = INPUTS_KEPT, **kwargs):
    """``fn(*args, **kwargs)``, raising :class:`RuleBroken` if it changes any of ``arrays`` in place."""
    with kept_unchanged(arrays, rule=rule):
        return fn(*args, **kwargs)


def not_sharing(value, given: dict, what: str, rule: str):
    """``value`` itself, or :class:`RuleBroken` if it shares memory with one of the ``given`` arrays."""
    array = value if isinstance(value, np.ndarray) else None
    for name, other in given.items():
        if array is not None and isinstance(other, np.ndarray) and np.shares_memory(array, other):
            raise RuleBroken(rule, f"{what} is the array {name} you were given (or a view of it), not a copy")
    return value


def describe_array(name: str, axes: str) -> Callable[[tuple], str]:
    """Names an element of one output array: 'out[0, 1, 2, 3] (n, c_out, h_out, w_out)'."""
    def describe(index: tuple) -> str:
        return f"{name}[{', '.join(map(str, index))}] ({axes})"
    return describe


def shapes_text(parts: list[tuple[str, tuple]]) -> str:
    """'dx (2, 3), dw (3, 4)' for the case description."""
    return ", ".join(f"{name} {tuple(shape)}" if len(shape) else f"{name} (a number)" for name, shape in parts)


def build_cases(function: str, visible: list, hidden_only: list, hidden: bool,
                build: Callable[[np.random.Generator, Any, int], Case]) -> list[Case]:
    """``build(rng, setting, number)`` for each setting, visible ones first.

    ``number`` is the case's position (1, 2, …) for a visible case and 0 for a hidden one, so that a
    builder can give case 1 the course notes' worked example; ``rng`` is the case's own generator.
    """
    chosen = visible_then_hidden(visible, hidden_only, hidden)
    return [build(case_rng(function, number, salt), setting, number if not salt else 0)
            for number, (setting, salt) in enumerate(chosen, start=1)]


def output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output side of a convolution or pooling: (size + 2·padding − kernel) // stride + 1."""
    return (size + 2 * padding - kernel) // stride + 1
