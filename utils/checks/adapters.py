"""Adapters between what a student returns and what the core compares, and float64 tensors for references.

* :func:`to_numpy` — a student's array-like (numpy, torch, nested lists) as a numpy array, or None;
* :func:`numbers` — the scalars a student returned for several settings, as one float64 array;
* :func:`float64_tensor` / :func:`float64_array` — the float64 torch tensors references are computed
  with, and back. torch is imported on first use: a NumPy-only notebook never loads it.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def torch_module():
    """``torch``, imported on first use (importing it costs seconds, and from-scratch notebooks block it)."""
    import torch
    return torch


def to_numpy(value) -> np.ndarray | None:
    """The student's return value as a numpy array, or None if it is not array-like."""
    if value is None:
        return None
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except Exception:
        return None
    if array.dtype == object:
        return None
    return array


class NotANumber:
    """Stands for a returned value that is not one number, so the comparison can name its type."""

    def __init__(self, value: Any):
        array = None if isinstance(value, str) else to_numpy(value)
        if array is not None and array.size != 1:
            self.type_name = f"{type(value).__name__} of shape {array.shape}"
        else:
            self.type_name = type(value).__name__


def numbers(values) -> np.ndarray | Any:
    """The numbers a student returned (one per setting) as a float64 array.

    The first value that is not a single int or float (None, a string, a bool, an array of several
    values) is returned instead — ``None`` as itself, anything else as :class:`NotANumber` — so the
    comparison reports "expected a number, got …" rather than a wrong value.
    """
    out = []
    for value in values:
        if value is None:
            return None
        if isinstance(value, (bool, np.bool_)):
            return NotANumber(value)
        array = to_numpy(value)
        if array is None or array.size != 1 or array.dtype.kind not in "iuf":
            return NotANumber(value)
        out.append(float(array.reshape(())))
    return np.array(out, dtype=np.float64)


def float64_tensor(value, requires_grad: bool = False):
    """A new float64 torch tensor holding ``value`` (array-like or tensor); never a view of the caller's data."""
    torch = torch_module()
    if isinstance(value, torch.Tensor):
        tensor = value.detach().to(torch.float64).clone()
    else:
        tensor = torch.tensor(np.array(value, dtype=np.float64))
    return tensor.requires_grad_(requires_grad)


def float64_array(value) -> np.ndarray:
    """A float64 numpy copy of a tensor or array-like."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.array(value, dtype=np.float64)


def returned_array(value):
    """What the student returned, as a numpy array when it is array-like (a tensor is detached and moved
    to the CPU); anything else (None, a string, a list of tensors) unchanged, for the comparison to report."""
    array = to_numpy(value)
    return value if array is None else array
