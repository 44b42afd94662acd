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
    PACKED,
    build_cases,
    calling,
    describe_parts,
    flatten,
    functional,
    not_sharing,
    part_regions,
    return_hint,
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
             ((7, 2, 2, 2), True, 0.1, 1e-4, ""), ((6, 3), True, 0.1, 1e-2, "comparable"),
             ((5, 2, 3, 3), True, 0.7, 1e-2, "comparable"), ((5, 2, 3, 4), False, 0.1, 1e-2, "small running")]

# (shape, eps, special)
BN_BACKWARD_SETTINGS = [((4, 3), 1e-5, "seed"), ((8, 5), 1e-5, ""), ((3, 4, 3, 3), 1e-5, ""), ((5, 2), 1e-3, "")]
BN_BACKWARD_HIDDEN = [((6, 2, 5, 4), 1e-5, ""), ((16, 3), 1e-4, ""), ((6, 3), 1e-2, "comparable"),
                      ((4, 2, 3, 3), 1e-3, "tiny")]


def _channel_variances(x) -> np.ndarray:
    axes = (0,) + tuple(range(2, np.ndim(x)))
    return np.var(x, axis=axes)


def _eps_comparable(case: Case) -> bool:
    """A channel whose batch variance is within a factor 3 of eps: where eps goes changes the output."""
    ratio = _channel_variances(case.inputs["x"]) / case.inputs["eps"]
    return bool(((ratio > 1 / 3) & (ratio < 3)).any())


def _eps_dominates(case: Case) -> bool:
    return bool((_channel_variances(case.inputs["x"]) < case.inputs["eps"] / 10).any())


BN_SHAPE_COVERS = {
    "an (N, C) input": lambda c: c.inputs["x"].ndim == 2,
    "an (N, C, H, W) input": lambda c: c.inputs["x"].ndim == 4,
    "a non-square spatial size": lambda c: c.inputs["x"].ndim == 4 and c.inputs["x"].shape[2] != c.inputs["x"].shape[3],
    "random γ (not 1)": lambda c: bool((c.inputs["gamma"] != 1).all()),
    "eps other than 1e-5": lambda c: c.inputs["eps"] != 1e-5,
    "eps comparable to a channel's batch variance": _eps_comparable,
    "eps far above a channel's batch variance": _eps_dominates,
}


def _bn_x(rng, shape, special: str) -> np.ndarray:
    if special == "seed":
        return SEED_BN_X.copy()
    x = rng.normal(loc=0.5, scale=2.0, size=shape)
    if special == "tiny":   # a channel whose variance is far below eps: shows where eps goes
        x[:, 1] = 0.5 + 1e-3 * rng.normal(size=x[:, 1].shape)
    if special == "comparable":   # a channel whose variance is about eps: eps changes its output by ~30 %
        x[:, 1] = 0.5 + 0.1 * rng.normal(size=x[:, 1].shape)
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
        mode = f"training mode, momentum={momentum}" if training else "eval mode"
        text = f"x of shape {shape}, {mode}, eps={eps:g}, random γ, β and running statistics".replace("e-0", "e-")
        if special == "tiny":
            text += "; channel 1 has a variance (1e-6) far below eps"
        elif special == "comparable":
            text += "; channel 1 has a variance about eps"
        elif special == "small running":
            rv = rng.uniform(0.5, 2.0, C) * eps
            text += "; running_var about eps"
    inputs = {"x": x, "gamma": gamma, "beta": beta, "running_mean": rm, "running_var": rv,
              "momentum": momentum, "eps": eps, "training": training}
    parts = [("out", shape), ("new_running_mean", (C,)), ("new_running_var", (C,))]
    return Case(text + f"; returns {shapes_text(parts)}", inputs, describe_parts(parts), regions=part_regions(parts))


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


GIVEN_ARRAYS_KEPT = ("do not modify the arrays you are given; in eval mode, return copies of the running statistics "
                     "(Task: `batchnorm_forward`)")
FORWARD_SHAPES = "batchnorm_forward returns out like x, new_running_mean (C,) and new_running_var (C,)"


def call_batchnorm_forward(fn, inputs: dict) -> np.ndarray:
    given = {k: inputs[k] for k in ("x", "gamma", "beta", "running_mean", "running_var")}
    result = calling(fn, given, inputs["x"], inputs["gamma"], inputs["beta"], inputs["running_mean"],
                     inputs["running_var"], inputs["momentum"], inputs["eps"], inputs["training"],
                     rule=GIVEN_ARRAYS_KEPT)
    C = inputs["x"].shape[1]
    packed = unpack_outputs(result, ("out", "new_running_mean", "new_running_var"), "batchnorm_forward",
                            (inputs["x"].shape, (C,), (C,)), FORWARD_SHAPES)
    for name, value in zip(("new_running_mean", "new_running_var"), result[1:], strict=True):
        not_sharing(value, given, name, GIVEN_ARRAYS_KEPT)
    return packed


FORWARD_COVERS = {
    **BN_SHAPE_COVERS,
    "training mode": lambda c: c.inputs["training"],
    "eval mode": lambda c: not c.inputs["training"],
    "eval mode on an (N, C, H, W) input": lambda c: not c.inputs["training"] and c.inputs["x"].ndim == 4,
    "momentum other than 0.1": lambda c: c.inputs["momentum"] != 0.1,
    "eval mode with running_var comparable to eps":
        lambda c: not c.inputs["training"] and bool((c.inputs["running_var"] < 3 * c.inputs["eps"]).any()),
    "running statistics other than 0 and 1":
        lambda c: bool((c.inputs["running_mean"] != 0).all() and (c.inputs["running_var"] != 1).all()),
    "β not 0": lambda c: bool((c.inputs["beta"] != 0).all()),
}


BN_FORWARD = Exercise(
    function="batchnorm_forward",
    forbidden=("torch.nn.functional.batch_norm", "torch.batch_norm", "torch.nn.BatchNorm2d"),
    reference_name="torch.nn.functional.batch_norm",
    make_cases=batchnorm_forward_cases,
    reference=batchnorm_reference,
    call=call_batchnorm_forward,
    mistakes=[
        Mistake("BN using unbiased variance (divided by m − 1) to normalise the batch",
                "the normalisation divides by m, the number of values per channel; only running_var stores the "
                "unbiased variance.", _forward_with(ddof=1)),
        Mistake("the momentum convention is reversed: momentum was used as the weight of the old running value",
                "in PyTorch, momentum is the weight of the new batch statistic (section 4, second bullet point).",
                _forward_with(reversed_momentum=True)),
        Mistake("running_var was updated with the biased batch variance",
                "PyTorch blends the unbiased batch variance into running_var, while the normalisation itself uses "
                "the biased one.", _forward_with(biased_running=True)),
        Mistake("eval mode normalised with the batch statistics",
                "in eval mode the output uses running_mean and running_var, whatever the batch holds.",
                _forward_with(batch_stats_in_eval=True)),
        Mistake("the running statistics were updated in eval mode",
                "only training mode updates them; eval mode returns copies, unchanged.",
                _forward_with(update_in_eval=True)),
        Mistake("eps was added outside the square root",
                "eps goes under the square root, next to the variance.", _forward_with(eps_outside=True)),
    ],
    hint="training mode: per-channel statistics over every axis but the channel axis, normalise, scale by γ, "
         "shift by β, and blend the running statistics as the section's bullet points say; eval mode: normalise "
         "with the running statistics and return copies of them.",
    exception_hints=return_hint("out", "new_running_mean", "new_running_var"),
    section="Task: `batchnorm_forward`",
    layout=PACKED,
    covers=FORWARD_COVERS,
)


# --------------------------------------------------------------------------- backward


def _backward_case(rng, setting, number: int) -> Case:
    shape, eps, special = setting
    C = shape[1]
    x = _bn_x(rng, shape, special)
    gamma = np.ones(C) if special == "seed" else rng.uniform(0.5, 2.0, C)
    dout = rng.normal(size=shape)
    text = ("the course-notes batch x = 1..12 as 4×3, γ = 1, random dout" if special == "seed"
            else f"x of shape {shape}, random γ and dout, eps={eps:g}".replace("e-0", "e-"))
    if special == "tiny":
        text += "; channel 1 has a variance far below eps"
    elif special == "comparable":
        text += "; channel 1 has a variance about eps"
    parts = [("dx", shape), ("dgamma", (C,)), ("dbeta", (C,))]
    return Case(text + f"; returns {shapes_text(parts)}", {"dout": dout, "x": x, "gamma": gamma, "eps": eps},
                describe_parts(parts), regions=part_regions(parts))


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


BACKWARD_SHAPES = "batchnorm_backward returns dx like x, dgamma (C,) and dbeta (C,)"


def call_batchnorm_backward(fn, inputs: dict) -> np.ndarray:
    result = calling(fn, {k: inputs[k] for k in ("dout", "x", "gamma")}, inputs["dout"], inputs["x"],
                     inputs["gamma"], inputs["eps"])
    C = inputs["x"].shape[1]
    return unpack_outputs(result, ("dx", "dgamma", "dbeta"), "batchnorm_backward", (inputs["x"].shape, (C,), (C,)),
                          BACKWARD_SHAPES)


BN_BACKWARD = Exercise(
    function="batchnorm_backward",
    reference_name="torch autograd through torch.nn.functional.batch_norm (training mode)",
    make_cases=batchnorm_backward_cases,
    reference=batchnorm_backward_reference,
    call=call_batchnorm_backward,
    mistakes=[
        Mistake("the batch mean and variance were treated as constants: the paths through them are missing",
                "every sample also moves its channel's mean and variance; the section's compact form collects the "
                "three paths of the chain rule.", _backward_with(constant_stats=True)),
        Mistake("dgamma was computed from x instead of the normalised x̂",
                "γ multiplies the normalised x̂, not x.", _backward_with(dgamma_from_x=True)),
        Mistake("the unbiased variance (divided by m − 1) was used: the forward pass normalises with the biased one",
                "recompute the batch variance exactly as the forward pass does in training mode.",
                _backward_with(ddof=1)),
    ],
    hint="recompute x̂ from x as the forward pass does; dbeta and dgamma sum over the batch axes; dx follows the "
         "three paths through x̂, the mean and the variance (the compact form of the section).",
    exception_hints=return_hint("dx", "dgamma", "dbeta"),
    section="Backward pass (training mode)",
    layout=PACKED,
    covers=BN_SHAPE_COVERS,
)


def check_batchnorm_forward(batchnorm_forward, hidden: bool = False) -> None:
    """Check ``batchnorm_forward(...) -> (out, new_running_mean, new_running_var)`` against ``F.batch_norm``."""
    show(run_check(BN_FORWARD, batchnorm_forward, hidden))


def check_batchnorm_backward(batchnorm_backward, hidden: bool = False) -> None:
    """Check ``batchnorm_backward(dout, x, gamma, eps) -> (dx, dgamma, dbeta)`` against torch autograd."""
    show(run_check(BN_BACKWARD, batchnorm_backward, hidden))
