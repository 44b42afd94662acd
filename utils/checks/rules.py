"""Rules a notebook states about *how* a function behaves, beyond the value it returns.

An exercise's ``call`` enforces them while it calls the student's code:

* :func:`kept_unchanged` — the inputs, a model's parameters, buffers and mode, an optimizer's state: what
  the notebook says the function must leave as it found them ("do not modify ``x`` in place", "do not switch
  the caller's model to eval");
* :func:`require_dtype` — a dtype the notebook asks for (class indices are integers, the result is float64).

A broken rule raises :class:`RuleBroken`; the check loop turns it into feedback that quotes the rule.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np


class RuleBroken(Exception):
    """The student's code broke a rule the notebook states; ``rule`` quotes it, ``seen`` says what happened."""

    def __init__(self, rule: str, seen: str):
        super().__init__(f"{rule}: {seen}")
        self.rule, self.seen = rule, seen


def _is_tensor(value) -> bool:
    return hasattr(value, "detach") and hasattr(value, "clone")


class _TensorCopy:
    """A tensor's values and its ``requires_grad`` flag, as they were."""

    def __init__(self, tensor):
        self.values, self.requires_grad = tensor.detach().clone(), bool(tensor.requires_grad)


def _snapshot(value) -> Any:
    """A deep copy of what can be modified in place: arrays, tensors, modules, optimizers, dicts and lists."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if _is_tensor(value):
        return _TensorCopy(value)
    if hasattr(value, "state_dict") and hasattr(value, "training"):   # an nn.Module
        return {"training": {name: m.training for name, m in value.named_modules()},
                "state": {k: v.detach().clone() for k, v in value.state_dict().items()}}
    if hasattr(value, "state_dict") and hasattr(value, "param_groups"):   # an optimizer
        groups = [{k: v for k, v in g.items() if k != "params"} for g in value.param_groups]
        return {"groups": groups, "state": len(value.state)}
    if isinstance(value, Mapping):
        return {k: _snapshot(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_snapshot(v) for v in value) if isinstance(value, list) else tuple(_snapshot(v)
                                                                                              for v in value)
    return value


def _same_array(before, after) -> bool:
    if _is_tensor(after):
        after = after.detach()
        if tuple(before.shape) != tuple(after.shape) or before.dtype != after.dtype:
            return False
        import torch
        return bool(torch.equal(before, after)) or bool(torch.equal(before.isnan(), after.isnan()) and
                                                       torch.equal(before.nan_to_num(), after.nan_to_num()))
    return before.shape == after.shape and before.dtype == after.dtype and \
        bool(np.array_equal(before, after, equal_nan=before.dtype.kind == "f"))


def _changes(name: str, before, after) -> Iterator[str]:
    """What differs between a snapshot and the value now, in words ("x[0, 2] was changed in place")."""
    if isinstance(before, _TensorCopy):
        if not _same_array(before.values, after):
            yield f"{name} was changed in place"
        elif bool(getattr(after, "requires_grad", False)) != before.requires_grad:
            yield f"{name}.requires_grad was switched {'on' if before.requires_grad is False else 'off'}"
        return
    if isinstance(before, np.ndarray):
        if not _same_array(before, after):
            yield f"{name} was changed in place"
        return
    if hasattr(after, "state_dict") and hasattr(after, "training") and isinstance(before, dict):
        modes = {n: m.training for n, m in after.named_modules()}
        switched = [n or "the model" for n, was in before["training"].items() if modes.get(n) != was]
        if switched:
            now = "eval" if not after.training else "train"
            yield f"{name} was left in {now} mode (it was in {'train' if before['training'][''] else 'eval'} mode)"
        state = after.state_dict()
        changed = [k for k, v in before["state"].items() if k in state and not _same_array(v, state[k])]
        if changed:
            shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
            yield f"{name}'s {shown} changed"
        return
    if hasattr(after, "param_groups") and isinstance(before, dict) and "groups" in before:
        groups = [{k: v for k, v in g.items() if k != "params"} for g in after.param_groups]
        if groups != before["groups"]:
            yield f"{name}'s settings (learning rate, momentum, ...) changed"
        return
    if isinstance(before, dict) and isinstance(after, Mapping):
        for key, value in before.items():
            if key not in after:
                yield f"{name}[{key!r}] was removed"
            else:
                yield from _changes(f"{name}[{key!r}]", value, after[key])
        return
    if isinstance(before, (list, tuple)) and isinstance(after, (list, tuple)):
        if len(before) != len(after):
            yield f"{name} changed length ({len(before)} → {len(after)})"
            return
        for index, (b, a) in enumerate(zip(before, after, strict=True)):
            yield from _changes(f"{name}[{index}]", b, a)


@contextmanager
def kept_unchanged(values: Mapping[str, Any], rule: str):
    """Raise :class:`RuleBroken` if the block changes any of ``values`` (name -> object handed to the student).

    Arrays and tensors are compared element by element, a module by its parameters, buffers and
    train/eval mode (of every submodule), an optimizer by its settings.
    """
    before = {name: _snapshot(value) for name, value in values.items()}
    yield
    for name, value in values.items():
        seen = next(_changes(name, before[name], value), None)
        if seen is not None:
            raise RuleBroken(rule, seen)


_KINDS = {"integer": "iu", "floating": "f", "float64": "f", "bool": "b"}


def require_dtype(value, kind: str, what: str, rule: str):
    """``value`` itself if its dtype is of ``kind`` ("integer", "floating", "float64", "bool"), else
    :class:`RuleBroken` naming the dtype seen. Values that are not arrays pass through (the comparison
    names their type)."""
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        return value
    name = str(dtype).replace("torch.", "")
    kinds = _KINDS[kind]
    if _is_tensor(value):
        ok = (kind == "integer" and not value.is_floating_point() and not value.is_complex() and name != "bool") or \
             (kind in ("floating", "float64") and value.is_floating_point()) or (kind == "bool" and name == "bool")
    else:
        ok = np.dtype(dtype).kind in kinds
    if ok and kind == "float64":
        ok = name == "float64"
    if not ok:
        raise RuleBroken(rule, f"{what} has dtype {name}")
    return value


def require_shape(value, shape: tuple[int, ...], what: str, rule: str):
    """``value`` itself if it has ``shape``, else :class:`RuleBroken` ("dW has shape (4, 3), expected (3, 4)").

    For results made of several parts (dx, dW, db) that the check compares together: each part's shape is
    stated on its own, never as the shape of their concatenation. Values without a shape pass through.
    """
    seen = getattr(value, "shape", None)
    if seen is None:
        return value
    seen = tuple(int(n) for n in seen)
    if seen != tuple(shape):
        raise RuleBroken(rule, f"{what} has shape {seen}, expected {tuple(shape)}")
    return value


def is_integer(value) -> bool:
    """An int, a numpy integer, or an integer tensor or array (what `//` and `int()` give); never a bool."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    dtype = getattr(value, "dtype", None)
    if _is_tensor(value):
        return not value.is_floating_point() and not value.is_complex() and str(dtype) != "torch.bool"
    return dtype is not None and np.dtype(dtype).kind in "iu"


def int_answers(fn, settings: list[tuple], name: str, rule: str):
    """``fn(*setting)`` for each setting, as one float64 array, where the notebook says the function returns an
    int: a whole number of another type (``6.0``, a float tensor) breaks ``rule``. Answers that are not numbers,
    or fractions, are returned for the comparison to report."""
    from utils.checks.adapters import numbers
    values = [fn(*setting) for setting in settings]
    result = numbers(values)
    if not isinstance(result, np.ndarray) or np.any(result != np.round(result)):
        return result
    for setting, value in zip(settings, values, strict=True):
        if not is_integer(value):
            shown = value.item() if hasattr(value, "item") else value
            raise RuleBroken(rule, f"{name}({', '.join(map(str, setting))}) returned {shown!r}, "
                                   f"a {type(value).__name__}")
    return result
