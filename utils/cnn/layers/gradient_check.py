"""The numerical gradient: centred finite differences, checked against autograd on known functions.

* ``numerical_gradient(f, x, h=1e-5) -> grad``: grad has the shape of x; x is restored afterwards.

Each case names one of the known functions below; the student's function is given its numpy version
(in the student's kernel, without torch) and compared with the torch version's autograd gradient.
Whether x comes back unchanged is part of the output: it is compared too.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from utils.checks.adapters import float64_tensor, to_numpy, torch_module
from utils.checks.characterise import Layout
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check
from utils.checks.feedback import show
from utils.checks.rules import require_dtype
from utils.cnn.layers.shared import WrongReturnValue, build_cases, describe_parts, flatten, part_regions

_A = np.array([[0.5, -1.0, 2.0], [1.5, 0.3, -0.7], [-0.2, 0.8, 1.1], [1.0, -1.3, 0.4]])


class KnownFunction(NamedTuple):
    numpy: Callable[[np.ndarray], float]   # what the student's numerical_gradient differentiates
    torch: Callable                        # the same function on a tensor, for the exact gradient
    description: str
    # The centred difference's exact error for this function, when the step is large enough to show it
    # (x, h) -> array like x; None: negligible at the cases' steps.
    centred_error: Callable | None = None


def _square_numpy(x):
    return float(np.sum(x ** 2))


def _square_torch(x):
    return torch_module().sum(x ** 2)


def _sin_numpy(x):
    return float(np.sum(np.sin(x) * x ** 2))


def _sin_torch(x):
    torch = torch_module()
    return torch.sum(torch.sin(x) * x ** 2)


def _tanh_layer_numpy(W):
    return float(np.sum(np.tanh(_A @ W)) + 0.5 * np.sum(W ** 2))


def _tanh_layer_torch(W):
    torch = torch_module()
    return torch.sum(torch.tanh(float64_tensor(_A) @ W)) + 0.5 * torch.sum(W ** 2)


def _logsumexp_numpy(x):
    return float(np.log(np.sum(np.exp(x))))


def _logsumexp_torch(x):
    return torch_module().logsumexp(x, dim=0)


def _cubic_numpy(x):
    return float(np.sum(x[0] * x[1:] ** 3))


def _cubic_torch(x):
    return torch_module().sum(x[0] * x[1:] ** 3)


def _cube_numpy(x):
    return float(np.sum(x ** 3))


def _cube_torch(x):
    return torch_module().sum(x ** 3)


KNOWN_FUNCTIONS = {
    "square": KnownFunction(_square_numpy, _square_torch, "f(x) = Σ x²"),
    "sin": KnownFunction(_sin_numpy, _sin_torch, "f(x) = Σ sin(x)·x²"),
    "tanh_layer": KnownFunction(_tanh_layer_numpy, _tanh_layer_torch,
                               "f(W) = Σ tanh(A @ W) + ½ Σ W² with a fixed 4×3 matrix A"),
    "logsumexp": KnownFunction(_logsumexp_numpy, _logsumexp_torch, "f(x) = log Σ exp(x)"),
    "cubic": KnownFunction(_cubic_numpy, _cubic_torch, "f(x) = Σ_i x[0]·x[i]³ (rows coupled)"),
    # ((x + h)³ − (x − h)³) / (2h) = 3x² + h² exactly: with a large h the step's own size is visible.
    "cube": KnownFunction(_cube_numpy, _cube_torch, "f(x) = Σ x³ (the centred difference is exactly 3x² + h²)",
                          lambda x, h: np.full(np.shape(x), h * h)),
}

# (known function, shape of x, h)
NG_SETTINGS = [("square", (3,), 1e-3), ("sin", (3, 4), 1e-3), ("tanh_layer", (3, 2), 1e-3), ("logsumexp", (5,), 1e-4)]
NG_HIDDEN = [("cubic", (3, 3), 1e-3), ("sin", (2, 2, 3), 1e-4), ("cube", (2, 3), 0.1)]

NG_COVERS = {
    "a 1-D x": lambda c: c.inputs["x"].ndim == 1,
    "a 2-D x": lambda c: c.inputs["x"].ndim == 2,
    "a 3-D x": lambda c: c.inputs["x"].ndim == 3,
    "entries coupled in f (one entry's change moves the others' terms)": lambda c: c.inputs["f"] in
        ("cubic", "tanh_layer", "logsumexp"),
    "two different steps h": lambda c: c.inputs["h"] != 1e-3,
    "a large step h whose size shows in the centred difference": lambda c: c.inputs["h"] >= 0.1 and
        KNOWN_FUNCTIONS[c.inputs["f"]].centred_error is not None,
}


def _case(rng, setting, number: int) -> Case:
    name, shape, h = setting
    x = np.array([1.0, -2.0, 3.0]) if number == 1 else rng.normal(size=shape)
    parts = [("grad", shape), ("x after your call", shape)]
    return Case(f"{KNOWN_FUNCTIONS[name].description}, x of shape {shape}, h={h:g}; "
                "your function must also leave x unchanged",
                {"f": name, "x": x, "h": h}, describe_parts(parts), regions=part_regions(parts))


def numerical_gradient_cases(hidden: bool) -> list[Case]:
    return build_cases("numerical_gradient", NG_SETTINGS, NG_HIDDEN, hidden, _case)


def call_numerical_gradient(fn, inputs: dict):
    """grad and x after the call, as one vector (x is the case's copy: the student may change it in place)."""
    x = inputs["x"]
    grad = fn(KNOWN_FUNCTIONS[inputs["f"]].numpy, x, inputs["h"])
    array = to_numpy(grad)
    if array is None:
        return grad
    if array.shape != x.shape:
        raise WrongReturnValue(f"grad has shape {array.shape}; it must have the shape of x, {x.shape}.")
    require_dtype(array, "float64", what="grad", rule="work in float64: grad is a float64 array (section 6)")
    return flatten(array, x)


def numerical_gradient_reference(inputs: dict) -> np.ndarray:
    """The exact gradient by autograd, and x unchanged."""
    known = KNOWN_FUNCTIONS[inputs["f"]]
    xt = float64_tensor(inputs["x"], True)
    known.torch(xt).backward()
    grad = xt.grad.numpy()
    if known.centred_error is not None:
        grad = grad + known.centred_error(inputs["x"], inputs["h"])
    return flatten(grad, inputs["x"])


def _differences(rule: str):
    """A known mistake: :func:`~utils.cnn.layers.computations.finite_differences` with ``rule``, imported where
    it is computed (never in the kernel that grades this notebook)."""
    def compute(inputs: dict) -> np.ndarray:
        from utils.cnn.layers.computations import finite_differences

        return finite_differences(KNOWN_FUNCTIONS[inputs["f"]].numpy, inputs["x"], inputs["h"], rule)
    return compute


NUMERICAL_GRADIENT = Exercise(
    function="numerical_gradient",
    reference_name="the exact gradient from torch autograd",
    make_cases=numerical_gradient_cases,
    reference=numerical_gradient_reference,
    call=call_numerical_gradient,
    mistakes=[
        Mistake("a one-sided (forward) difference was used: its error is O(h), the centred difference's O(h²)",
                "evaluate f on both sides of x, one step h above and one below.", _differences("forward")),
        Mistake("the centred difference was divided by h: every entry is twice the gradient",
                "the two evaluation points are 2h apart.", _differences("one_h")),
        Mistake("x is not restored after perturbing an entry: later entries are evaluated at a shifted point",
                "put each entry back to its saved value once both evaluations are done.",
                _differences("no_restore")),
    ],
    hint="check the three things the section asks for: a centred difference (f on both sides of each entry), "
         "the step h you are given, and x put back exactly as it was; work in float64.",
    exception_hints={"WrongReturnValue": "grad is one array with the shape of x."},
    section="6. Checking gradients numerically",
    layout=Layout(axes=("element",)),
    covers=NG_COVERS,
)


def check_numerical_gradient(numerical_gradient, hidden: bool = False) -> None:
    """Check ``numerical_gradient(f, x, h)`` against exact gradients (torch autograd) of known functions."""
    show(run_check(NUMERICAL_GRADIENT, numerical_gradient, hidden))
