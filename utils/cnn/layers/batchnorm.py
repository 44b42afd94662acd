"""Batch normalization, forward and backward.

* ``batchnorm_forward(x, gamma, beta, running_mean, running_var, momentum, eps, training)
  -> (out, new_running_mean, new_running_var)`` for x (N, C) or (N, C, H, W), statistics per channel C,
  PyTorch's conventions: normalise with the biased batch variance; running = (1 − momentum)·running
  + momentum·batch, with the *unbiased* batch variance for running_var; eval mode uses the running
  statistics and leaves them unchanged;
* ``batchnorm_backward(dout, x, gamma, eps) -> (dx, dgamma, dbeta)`` (training mode).
"""
from __future__ import annotations

import numpy as np

from utils.checks.adapters import float64_tensor
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check
from utils.checks.feedback import show
from utils.cnn.layers.shared import (
    RETURN_HINT,
    build_cases,
    describe_parts,
    flatten,
    functional,
    shapes_text,
    unpack_outputs,
)

# The course notes' worked example: 4 samples of 3 features.
SEED_BN_X = np.arange(1, 13, dtype=np.float64).reshape(4, 3)

# (shape, training, momentum, eps, special)
BN_SETTINGS = [
    ((4, 3), True, 0.1, 1e-5, "seed"),
    ((8, 5), True, 0.1, 1e-5, ""),
    ((4, 3, 5, 5), True, 0.3, 1e-5, ""),
    ((6, 4), False, 0.1, 1e-5, ""),
    ((3, 2, 4, 3), False, 0.1, 1e-5, ""),
    ((6, 3), True, 0.1, 1e-3, "tiny"),
]
BN_HIDDEN = [((10, 6), True, 0.05, 1e-5, ""), ((2, 3, 3, 3), False, 0.2, 1e-5, ""),
             ((7, 2, 2, 2), True, 0.1, 1e-4, "")]

# (shape, eps, special)
BN_BACKWARD_SETTINGS = [((4, 3), 1e-5, "seed"), ((8, 5), 1e-5, ""), ((3, 4, 3, 3), 1e-5, ""), ((5, 2), 1e-3, "")]
BN_BACKWARD_HIDDEN = [((6, 2, 5, 4), 1e-5, ""), ((16, 3), 1e-4, "")]


def _bn_x(rng, shape, special: str) -> np.ndarray:
    if special == "seed":
        return SEED_BN_X.copy()
    x = rng.normal(loc=0.5, scale=2.0, size=shape)
    if special == "tiny":   # a channel whose variance is far below eps: shows where eps goes
        x[:, 1] = 0.5 + 1e-3 * rng.normal(size=shape[0])
    return x


# --------------------------------------------------------------------------- forward


def _forward_case(rng, setting, number: int) -> Case:
    shape, training, momentum, eps, special = setting
    C = shape[1]
    x = _bn_x(rng, shape, special)
    if special == "seed":
        gamma, beta, rm, rv = np.ones(C), np.zeros(C), np.zeros(C), np.ones(C)
        text = ("the course-notes batch x = 1..12 as 4×3, γ = 1, β = 0, running_mean = 0, running_var = 1, "
                "training, momentum=0.1, eps=1e-5")
    else:
        gamma, beta = rng.uniform(0.5, 2.0, C), rng.normal(size=C)
        rm, rv = rng.normal(size=C), rng.uniform(0.5, 3.0, C)
        text = (f"x of shape {shape}, {'training' if training else 'eval'} mode, momentum={momentum}, eps={eps:g}, "
                "random γ, β and running statistics")
        if special == "tiny":
            text += "; channel 1 has a variance (1e-6) far below eps"
    inputs = {"x": x, "gamma": gamma, "beta": beta, "running_mean": rm, "running_var": rv,
              "momentum": momentum, "eps": eps, "training": training}
    parts = [("out", shape), ("new_running_mean", (C,)), ("new_running_var", (C,))]
    return Case(text + f"; returns {shapes_text(parts)}", inputs, describe_parts(parts))


def batchnorm_forward_cases(hidden: bool) -> list[Case]:
    return build_cases("batchnorm_forward", BN_SETTINGS, BN_HIDDEN, hidden, _forward_case)


def batchnorm_reference(inputs: dict) -> np.ndarray:
    """``F.batch_norm`` in float64: out, then the running statistics it updated in place."""
    running_mean, running_var = float64_tensor(inputs["running_mean"]), float64_tensor(inputs["running_var"])
    out = functional().batch_norm(float64_tensor(inputs["x"]), running_mean, running_var,
                                  float64_tensor(inputs["gamma"]), float64_tensor(inputs["beta"]),
                                  training=inputs["training"], momentum=inputs["momentum"], eps=inputs["eps"])
    return flatten(out, running_mean, running_var)


def _forward_with(**switches):
    """A known mistake: batch norm in NumPy (:mod:`~utils.cnn.layers.computations`) with ``switches`` on,
    imported where it is computed (never in the kernel that grades this notebook)."""
    def compute(inputs: dict) -> np.ndarray:
        from utils.cnn.layers.computations import batchnorm_numpy

        return batchnorm_numpy(**inputs, **switches)
    return compute


def call_batchnorm_forward(fn, inputs: dict) -> np.ndarray:
    result = fn(inputs["x"], inputs["gamma"], inputs["beta"], inputs["running_mean"], inputs["running_var"],
                inputs["momentum"], inputs["eps"], inputs["training"])
    return unpack_outputs(result, ("out", "new_running_mean", "new_running_var"), "batchnorm_forward")


BN_FORWARD = Exercise(
    function="batchnorm_forward",
    forbidden=("torch.nn.functional.batch_norm", "torch.batch_norm", "torch.nn.BatchNorm2d"),
    reference_name="torch.nn.functional.batch_norm",
    make_cases=batchnorm_forward_cases,
    reference=batchnorm_reference,
    call=call_batchnorm_forward,
    mistakes=[
        Mistake("BN using unbiased variance (ddof=1) to normalise: the batch is normalised with the biased variance",
                "var = x.var(axis=axes) (divide by m, not m − 1) inside the normalisation.",
                _forward_with(ddof=1)),
        Mistake("BN running stats updated with the wrong momentum convention: PyTorch keeps (1 − momentum) of the "
                "old value", "new_running = (1 − momentum)·running + momentum·batch_statistic.",
                _forward_with(reversed_momentum=True)),
        Mistake("BN running_var updated with the biased batch variance: PyTorch stores the unbiased one",
                "new_running_var = (1 − momentum)·running_var + momentum·var·m/(m − 1), m = values per channel.",
                _forward_with(biased_running=True)),
        Mistake("BN using batch statistics in eval mode: eval must normalise with running_mean and running_var",
                "if not training: use the running statistics and return them unchanged.",
                _forward_with(batch_stats_in_eval=True)),
        Mistake("BN running statistics updated in eval mode: they must come back unchanged",
                "only training mode updates running_mean and running_var.", _forward_with(update_in_eval=True)),
        Mistake("eps added outside the square root: divide by sqrt(var + eps)",
                "x_hat = (x − mean) / np.sqrt(var + eps).", _forward_with(eps_outside=True)),
    ],
    hint="training: mean, var (biased) over every axis but 1; out = γ·(x − mean)/sqrt(var + eps) + β; "
         "running = (1 − momentum)·running + momentum·(mean, unbiased var). eval: use the running statistics.",
    exception_hints=RETURN_HINT,
)


# --------------------------------------------------------------------------- backward


def _backward_case(rng, setting, number: int) -> Case:
    shape, eps, special = setting
    C = shape[1]
    x = _bn_x(rng, shape, special)
    gamma = np.ones(C) if special == "seed" else rng.uniform(0.5, 2.0, C)
    dout = rng.normal(size=shape)
    text = ("the course-notes batch x = 1..12 as 4×3, γ = 1, random dout" if special == "seed"
            else f"x of shape {shape}, random γ and dout, eps={eps:g}")
    parts = [("dx", shape), ("dgamma", (C,)), ("dbeta", (C,))]
    return Case(text + f"; returns {shapes_text(parts)}", {"dout": dout, "x": x, "gamma": gamma, "eps": eps},
                describe_parts(parts))


def batchnorm_backward_cases(hidden: bool) -> list[Case]:
    return build_cases("batchnorm_backward", BN_BACKWARD_SETTINGS, BN_BACKWARD_HIDDEN, hidden, _backward_case)


def batchnorm_backward_reference(inputs: dict) -> np.ndarray:
    """(dx, dgamma, dbeta) of ``F.batch_norm`` in training mode, from autograd, flattened."""
    x, gamma = float64_tensor(inputs["x"], True), float64_tensor(inputs["gamma"], True)
    beta = float64_tensor(np.zeros(len(inputs["gamma"])), True)
    out = functional().batch_norm(x, None, None, gamma, beta, training=True, eps=inputs["eps"])
    out.backward(float64_tensor(inputs["dout"]))
    return flatten(x.grad, gamma.grad, beta.grad)


def _backward_with(**switches):
    """A known mistake: the batch-norm backward formula in NumPy with ``switches`` on (see _forward_with)."""
    def compute(inputs: dict) -> np.ndarray:
        from utils.cnn.layers.computations import batchnorm_backward_numpy

        return batchnorm_backward_numpy(**inputs, **switches)
    return compute


def call_batchnorm_backward(fn, inputs: dict) -> np.ndarray:
    result = fn(inputs["dout"], inputs["x"], inputs["gamma"], inputs["eps"])
    return unpack_outputs(result, ("dx", "dgamma", "dbeta"), "batchnorm_backward")


BN_BACKWARD = Exercise(
    function="batchnorm_backward",
    reference_name="torch autograd through torch.nn.functional.batch_norm (training mode)",
    make_cases=batchnorm_backward_cases,
    reference=batchnorm_backward_reference,
    call=call_batchnorm_backward,
    mistakes=[
        Mistake("BN backward treats the batch mean and variance as constants: dx = dout·γ/sqrt(var + eps) misses "
                "the paths through mean and var",
                "dx = (dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)) / sqrt(var + eps), dx̂ = dout·γ, means over the batch axes.",
                _backward_with(constant_stats=True)),
        Mistake("dgamma computed with x instead of the normalised x̂", "dgamma = Σ dout · x̂ over the batch axes.",
                _backward_with(dgamma_from_x=True)),
        Mistake("BN using unbiased variance (ddof=1): the forward pass normalises with the biased variance",
                "var = x.var(axis=axes), dividing by m.", _backward_with(ddof=1)),
    ],
    hint="x̂ = (x − mean)/sqrt(var + eps); dbeta = Σ dout; dgamma = Σ dout·x̂; "
         "dx = (dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)) / sqrt(var + eps) with dx̂ = dout·γ (sums/means over axes 0, 2, 3).",
    exception_hints=RETURN_HINT,
)


def check_batchnorm_forward(batchnorm_forward, hidden: bool = False) -> None:
    """Check ``batchnorm_forward(...) -> (out, new_running_mean, new_running_var)`` against ``F.batch_norm``."""
    show(run_check(BN_FORWARD, batchnorm_forward, hidden))


def check_batchnorm_backward(batchnorm_backward, hidden: bool = False) -> None:
    """Check ``batchnorm_backward(dout, x, gamma, eps) -> (dx, dgamma, dbeta)`` against torch autograd."""
    show(run_check(BN_BACKWARD, batchnorm_backward, hidden))
