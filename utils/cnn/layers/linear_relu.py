"""The ReLU activation and the linear (fully connected) layer, forward and backward.

* ``relu_forward(x) -> out``; ``relu_backward(dout, x) -> dx`` (x is the forward input; any shape);
* ``linear_forward(x, W, b) -> out``: x (N, D_in), W (D_in, D_out), b (D_out,) -> out = x @ W + b (N, D_out);
  ``linear_backward(dout, x, W) -> (dx, dW, db)``.
"""
from __future__ import annotations

import numpy as np

from utils.checks.adapters import float64_tensor
from utils.checks.characterise import Layout
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check
from utils.checks.feedback import show
from utils.cnn.layers.shared import (
    PACKED,
    build_cases,
    calling,
    describe_array,
    describe_parts,
    flatten,
    functional,
    part_regions,
    return_hint,
    shapes_text,
    unpack_outputs,
)

# --------------------------------------------------------------------------- ReLU

RELU_SHAPES = [(6,), (2, 3, 4, 4), (5, 7)]
RELU_HIDDEN = [(2, 2, 3, 3, 2), (40,), (3, 8)]   # the last: a third of x exactly 0

RELU_COVERS = {
    "a 1-D input": lambda c: c.inputs["x"].ndim == 1,
    "a 4-D input (N, C, H, W)": lambda c: c.inputs["x"].ndim == 4,
    "a 5-D input": lambda c: c.inputs["x"].ndim == 5,
    "negative and positive values": lambda c: bool((c.inputs["x"] < 0).any() and (c.inputs["x"] > 0).any()),
    "small negative values (|x| < 0.01)": lambda c: bool(((c.inputs["x"] < 0) & (c.inputs["x"] > -0.01)).any()),
}


def _relu_case(rng, shape, number: int, backward: bool) -> Case:
    if number == 1:
        x = np.array([-2.0, -0.5, 0.25, 1.0, 3.0, -1e-3])
        text = "x = [−2, −0.5, 0.25, 1, 3, −0.001]"
    else:
        x = rng.normal(size=shape)
        text = f"x of shape {shape}, about half of it negative"
        if shape == (3, 8):   # x == 0 exactly: relu's gradient there is 0, as (x > 0) says
            x[:, ::3] = 0.0
            text += ", a third of it exactly 0"
    inputs = {"x": x}
    regions = {"positions where x < 0": x < 0, "positions where x > 0": x > 0, "positions where x is exactly 0": x == 0}
    if backward:
        inputs["dout"] = rng.normal(size=x.shape)
        return Case(text + ", random dout", inputs, describe_array("dx", "index"), regions=regions)
    return Case(text, inputs, describe_array("out", "index"), regions=regions)


def _relu_forward_case(rng, shape, number: int) -> Case:
    return _relu_case(rng, shape, number, backward=False)


def _relu_backward_case(rng, shape, number: int) -> Case:
    return _relu_case(rng, shape, number, backward=True)


def relu_forward_cases(hidden: bool) -> list[Case]:
    return build_cases("relu_forward", RELU_SHAPES, RELU_HIDDEN, hidden, _relu_forward_case)


def relu_backward_cases(hidden: bool) -> list[Case]:
    return build_cases("relu_backward", RELU_SHAPES, RELU_HIDDEN, hidden, _relu_backward_case)


def relu_reference(inputs: dict) -> np.ndarray:
    return functional().relu(float64_tensor(inputs["x"])).numpy()


def relu_mask(inputs: dict) -> np.ndarray:
    """(x > 0) as floats."""
    return (inputs["x"] > 0).astype(np.float64)


def relu_min(inputs: dict) -> np.ndarray:
    return np.minimum(inputs["x"], 0)


def relu_backward_reference(inputs: dict) -> np.ndarray:
    xt = float64_tensor(inputs["x"], True)
    functional().relu(xt).backward(float64_tensor(inputs["dout"]))
    return xt.grad.numpy()


def relu_backward_dout_everywhere(inputs: dict) -> np.ndarray:
    return np.array(inputs["dout"], dtype=np.float64)


def relu_backward_dout_times_relu(inputs: dict) -> np.ndarray:
    """dout · relu(x): x taken as the local derivative."""
    return inputs["dout"] * np.maximum(inputs["x"], 0)


def call_relu_forward(fn, inputs: dict):
    return calling(fn, {"x": inputs["x"]}, inputs["x"])


def call_relu_backward(fn, inputs: dict):
    return calling(fn, {"dout": inputs["dout"], "x": inputs["x"]}, inputs["dout"], inputs["x"])


RELU_FORWARD = Exercise(
    function="relu_forward",
    reference_name="torch.nn.functional.relu",
    make_cases=relu_forward_cases,
    reference=relu_reference,
    call=call_relu_forward,
    mistakes=[
        Mistake("the output is the 0/1 mask of the positive inputs, not the activation",
                "relu returns values, not a 0/1 mask: a positive input comes out unchanged.", relu_mask),
        Mistake("negative inputs pass through and positive ones are zeroed (min instead of max)",
                "relu keeps the positive values and sets the negative ones to 0.", relu_min),
    ],
    hint="relu is defined at the top of section 3; it works element by element on an array of any shape and "
         "returns a new array.",
    section="3. ReLU and the linear layer",
    covers=RELU_COVERS,
)

RELU_BACKWARD = Exercise(
    function="relu_backward",
    reference_name="torch autograd through torch.nn.functional.relu",
    make_cases=relu_backward_cases,
    reference=relu_backward_reference,
    call=call_relu_backward,
    mistakes=[
        Mistake("dout passed through everywhere, also where x < 0",
                "relu is flat where its input is negative, so no gradient passes there.",
                relu_backward_dout_everywhere),
        Mistake("dout was not multiplied in: dx is only relu's local derivative",
                "chain rule: the local derivative (1 or 0) multiplies the upstream gradient dout.", relu_mask),
        Mistake("dout was multiplied by the positive part of x: relu's slope is 1 or 0, not x",
                "where x > 0 the slope of relu is 1, whatever the size of x.", relu_backward_dout_times_relu),
    ],
    hint="apply the chain rule with relu's slope at the forward input x, also at x = 0, as section 3 defines "
         "it.",
    section="3. ReLU and the linear layer",
    covers={**RELU_COVERS, "inputs exactly 0": lambda c: bool((c.inputs["x"] == 0).any())},
)

# --------------------------------------------------------------------------- linear layer

LINEAR_SETTINGS = [(2, 2, 2), (4, 3, 3), (5, 4, 6), (3, 8, 2)]   # (N, D_in, D_out); square ones first
LINEAR_HIDDEN = [(6, 5, 5), (2, 10, 7), (1, 3, 4)]

LINEAR_COVERS = {
    "a batch of 2 or more": lambda c: c.inputs["x"].shape[0] >= 2,
    "a batch of 1": lambda c: c.inputs["x"].shape[0] == 1,
    "D_in different from D_out": lambda c: c.inputs["W"].shape[0] != c.inputs["W"].shape[1],
    "N different from D_in and D_out": lambda c: c.inputs["x"].shape[0] not in c.inputs["W"].shape,
}


def _linear_case(rng, setting, number: int, backward: bool) -> Case:
    N, D_in, D_out = setting
    if number == 1:
        x, W, b = np.array([[1.0, 2.0], [3.0, -1.0]]), np.array([[1.0, 2.0], [0.0, -1.0]]), np.array([0.5, -0.5])
        text = "x = [[1, 2], [3, −1]], W = [[1, 2], [0, −1]], b = [0.5, −0.5]"
    else:
        x, W, b = rng.normal(size=(N, D_in)), rng.normal(size=(D_in, D_out)), rng.normal(size=D_out)
        text = f"N={N}, D_in={D_in}, D_out={D_out}"
    if backward:
        dout = np.array([[1.0, 0.0], [2.0, -1.0]]) if number == 1 else rng.normal(size=(N, D_out))
        parts = [("dx", x.shape), ("dW", W.shape), ("db", b.shape)]
        text += (", dout = [[1, 0], [2, −1]]" if number == 1 else ", random dout") + f"; returns {shapes_text(parts)}"
        return Case(text, {"dout": dout, "x": x, "W": W}, describe_parts(parts), regions=part_regions(parts))
    return Case(text, {"x": x, "W": W, "b": b}, describe_array("out", "n, d_out"))


def _linear_forward_case(rng, setting, number: int) -> Case:
    return _linear_case(rng, setting, number, backward=False)


def _linear_backward_case(rng, setting, number: int) -> Case:
    return _linear_case(rng, setting, number, backward=True)


def linear_forward_cases(hidden: bool) -> list[Case]:
    return build_cases("linear_forward", LINEAR_SETTINGS, LINEAR_HIDDEN, hidden, _linear_forward_case)


def linear_backward_cases(hidden: bool) -> list[Case]:
    return build_cases("linear_backward", LINEAR_SETTINGS, LINEAR_HIDDEN, hidden, _linear_backward_case)


def torch_linear(x, W, b) -> np.ndarray:
    """x @ W + b by ``F.linear`` (whose weight is W.T) in float64; ``b=None`` for no bias."""
    bias = None if b is None else float64_tensor(b)
    return functional().linear(float64_tensor(x), float64_tensor(W).T, bias).numpy()


def linear_reference(inputs: dict) -> np.ndarray:
    return torch_linear(inputs["x"], inputs["W"], inputs["b"])


def linear_without_bias(inputs: dict) -> np.ndarray:
    return torch_linear(inputs["x"], inputs["W"], None)


def linear_with_W_transposed(inputs: dict) -> np.ndarray:
    """x @ W.T + b."""
    return torch_linear(inputs["x"], inputs["W"].T, inputs["b"])


def torch_linear_grads(dout, x, W) -> tuple:
    """(dx, dW, db) of x @ W + b from autograd, as float64 tensors."""
    xt, Wt, bt = float64_tensor(x, True), float64_tensor(W, True), float64_tensor(np.zeros(W.shape[1]), True)
    functional().linear(xt, Wt.T, bt).backward(float64_tensor(dout))
    return xt.grad, Wt.grad, bt.grad


def _grads(inputs: dict) -> tuple:
    return torch_linear_grads(inputs["dout"], inputs["x"], inputs["W"])


def linear_backward_reference(inputs: dict) -> np.ndarray:
    return flatten(*_grads(inputs))


def linear_backward_dx_with_W(inputs: dict) -> np.ndarray:
    """dx = dout @ W instead of dout @ W.T."""
    _, dW, db = _grads(inputs)
    return flatten(float64_tensor(inputs["dout"]) @ float64_tensor(inputs["W"]), dW, db)


def linear_backward_dW_transposed(inputs: dict) -> np.ndarray:
    dx, dW, db = _grads(inputs)
    return flatten(dx, dW.T, db)


def linear_backward_db_averaged(inputs: dict) -> np.ndarray:
    dx, dW, db = _grads(inputs)
    return flatten(dx, dW, db / inputs["x"].shape[0])


def call_linear_forward(fn, inputs: dict):
    return calling(fn, {k: inputs[k] for k in ("x", "W", "b")}, inputs["x"], inputs["W"], inputs["b"])


LINEAR_SHAPES = ("linear_backward returns dx (N, D_in), dW (D_in, D_out) and db (D_out,): each gradient has the "
                 "shape of what it is the gradient of (section 3)")


def call_linear_backward(fn, inputs: dict) -> np.ndarray:
    x, W = inputs["x"], inputs["W"]
    result = calling(fn, {k: inputs[k] for k in ("dout", "x", "W")}, inputs["dout"], x, W)
    return unpack_outputs(result, ("dx", "dW", "db"), "linear_backward", (x.shape, W.shape, (W.shape[1],)),
                          LINEAR_SHAPES)


LINEAR_FORWARD = Exercise(
    function="linear_forward",
    reference_name="torch.nn.functional.linear (with weight W.T)",
    make_cases=linear_forward_cases,
    reference=linear_reference,
    call=call_linear_forward,
    mistakes=[
        Mistake("the bias b was not added", "every output unit j has its bias b[j], added for every sample.",
                linear_without_bias),
        Mistake("W was used transposed: here W has shape (D_in, D_out), the transpose of torch.nn.Linear's weight",
                "W[i, j] connects input i to output j.", linear_with_W_transposed),
    ],
    hint="W has shape (D_in, D_out) here, the transpose of torch.nn.Linear's weight: the shapes leave one way to "
         "combine x with W, and b is added for every sample (section 3).",
    section="3. ReLU and the linear layer",
    layout=Layout(axes=("sample n", "output unit")),
    covers=LINEAR_COVERS,
)

LINEAR_BACKWARD = Exercise(
    function="linear_backward",
    reference_name="torch autograd through x @ W + b",
    make_cases=linear_backward_cases,
    reference=linear_backward_reference,
    call=call_linear_backward,
    mistakes=[
        Mistake("dx used W where its transpose is needed",
                "dx has the shape of x, (N, D_in): only one orientation of W gives it.", linear_backward_dx_with_W),
        Mistake("dW is transposed: the product was taken in the other order",
                "dW has the shape of W, (D_in, D_out).", linear_backward_dW_transposed),
        Mistake("db was averaged over the batch instead of summed",
                "each sample adds its dout to db; any averaging is already in dout.", linear_backward_db_averaged),
    ],
    hint="check the shapes: dx (N, D_in), dW (D_in, D_out) and db (D_out,) leave one way to combine dout with W "
         "and with x; db adds up the batch's dout rows (section 3 gives the three products).",
    exception_hints=return_hint("dx", "dW", "db"),
    section="3. ReLU and the linear layer",
    layout=PACKED,
    covers=LINEAR_COVERS,
)


def check_relu_forward(relu_forward, hidden: bool = False) -> None:
    """Check ``relu_forward(x)`` against ``F.relu``."""
    show(run_check(RELU_FORWARD, relu_forward, hidden))


def check_relu_backward(relu_backward, hidden: bool = False) -> None:
    """Check ``relu_backward(dout, x) -> dx`` against torch autograd."""
    show(run_check(RELU_BACKWARD, relu_backward, hidden))


def check_linear_forward(linear_forward, hidden: bool = False) -> None:
    """Check ``linear_forward(x, W, b) = x @ W + b``."""
    show(run_check(LINEAR_FORWARD, linear_forward, hidden))


def check_linear_backward(linear_backward, hidden: bool = False) -> None:
    """Check ``linear_backward(dout, x, W) -> (dx, dW, db)`` against torch autograd."""
    show(run_check(LINEAR_BACKWARD, linear_backward, hidden))
