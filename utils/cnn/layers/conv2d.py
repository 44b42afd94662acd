"""The convolution layer, forward and backward.

* ``conv2d_forward(x, w, b, stride=1, padding=0) -> out``: x (N, C_in, H, W), w (C_out, C_in, K_h, K_w),
  b (C_out,) -> out (N, C_out, H_out, W_out), a cross-correlation as ``torch.nn.functional.conv2d``;
* ``conv2d_backward(dout, x, w, stride=1, padding=0) -> (dx, dw, db)``: dout (N, C_out, H_out, W_out)
  -> dx like x, dw like w, db (C_out,).
"""
from __future__ import annotations

import numpy as np

from utils.checks.adapters import float64_tensor
from utils.checks.characterise import Layout
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check
from utils.checks.feedback import show
from utils.checks.rules import RuleBroken
from utils.cnn.layers.shared import (
    PACKED,
    RETURN_HINT,
    build_cases,
    calling,
    describe_array,
    describe_parts,
    flatten,
    functional,
    output_size,
    part_regions,
    shapes_text,
    unpack_outputs,
)

# The course notes' worked examples: small integers to check by hand.
SEED_CONV_X = np.array([[1, 2, 3, 0], [0, 1, 2, 3], [3, 0, 1, 2], [2, 3, 0, 1]], dtype=np.float64)
SEED_CONV_W = np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], dtype=np.float64)
SEED_BACK_X = np.arange(1, 10, dtype=np.float64).reshape(3, 3)
SEED_BACK_W = np.array([[1, 0], [0, 1]], dtype=np.float64)

# (N, C_in, C_out, H, W, K_h, K_w, stride, padding)
CONV_SETTINGS = [
    (1, 1, 1, 4, 4, 3, 3, 1, 0),
    (2, 3, 4, 5, 5, 3, 3, 1, 1),
    (2, 2, 3, 7, 6, 3, 3, 2, 1),
    (1, 3, 2, 6, 7, 2, 3, 2, 0),
    (2, 2, 2, 8, 8, 5, 5, 3, 2),
]
CONV_HIDDEN = [(3, 4, 5, 9, 7, 3, 2, 2, 2), (1, 1, 1, 5, 5, 1, 1, 1, 0), (2, 3, 2, 6, 6, 4, 4, 1, 3)]

FORBIDDEN = ("torch.nn.functional.conv2d", "torch.conv2d", "torch.nn.Conv2d")


def _shape(case: Case) -> tuple:
    """(N, C_in, C_out, H, W, K_h, K_w, stride, padding) of a case."""
    x, w = case.inputs["x"], case.inputs["w"]
    return (*x.shape[:2], w.shape[0], *x.shape[2:], *w.shape[2:], case.inputs["stride"], case.inputs["padding"])


def _rounds_down(case: Case) -> bool:
    _, _, _, H, W, K_h, K_w, s, p = _shape(case)
    return (H + 2 * p - K_h) % s != 0 or (W + 2 * p - K_w) % s != 0


# The input space the notebook allows (Task: conv2d_forward / conv2d_backward), shared by both checks.
CONV_COVERS = {
    "a batch of 2 or more": lambda c: _shape(c)[0] >= 2,
    "2 or more input channels": lambda c: _shape(c)[1] >= 2,
    "2 or more output channels": lambda c: _shape(c)[2] >= 2,
    "a non-square input": lambda c: _shape(c)[3] != _shape(c)[4],
    "a non-square kernel": lambda c: _shape(c)[5] != _shape(c)[6],
    "a 1×1 kernel": lambda c: _shape(c)[5:7] == (1, 1),
    "stride 2 or more": lambda c: _shape(c)[7] >= 2,
    "padding 1 or more": lambda c: _shape(c)[8] >= 1,
    "padding of at least half the kernel": lambda c: 2 * _shape(c)[8] >= _shape(c)[5] > 1,
    "an output size the stride rounds down": _rounds_down,
}


def _conv_inputs(rng, setting, number: int, backward: bool) -> dict:
    N, C_in, C_out, H, W, K_h, K_w, stride, padding = setting
    H_out, W_out = output_size(H, K_h, stride, padding), output_size(W, K_w, stride, padding)
    if number == 1 and not backward:   # the worked example of the course notes
        x, w, b = SEED_CONV_X.reshape(1, 1, 4, 4), SEED_CONV_W.reshape(1, 1, 3, 3), np.zeros(1)
    else:
        x = rng.normal(size=(N, C_in, H, W))
        w = rng.normal(size=(C_out, C_in, K_h, K_w))
        b = rng.normal(size=C_out)
    inputs = {"x": x, "w": w, "b": b, "stride": stride, "padding": padding}
    if backward:
        inputs.pop("b")
        inputs["dout"] = rng.normal(size=(N, C_out, H_out, W_out))
    return inputs


def _conv_description(setting, number: int, backward: bool) -> str:
    N, C_in, C_out, H, W, K_h, K_w, stride, padding = setting
    H_out, W_out = output_size(H, K_h, stride, padding), output_size(W, K_w, stride, padding)
    text = (f"N={N}, C_in={C_in}, C_out={C_out}, {H}×{W} input, {K_h}×{K_w} kernel, stride={stride}, "
            f"padding={padding} (output {H_out}×{W_out})")
    if number == 1 and not backward:
        text = "the course-notes example: 4×4 input, kernel [[1,0,−1]]×3, no bias, " + text
    return text


# --------------------------------------------------------------------------- forward


def _forward_case(rng, setting, number: int) -> Case:
    return Case(_conv_description(setting, number, False), _conv_inputs(rng, setting, number, False),
                describe_array("out", "n, c_out, h_out, w_out"))


def conv2d_forward_cases(hidden: bool) -> list[Case]:
    return build_cases("conv2d_forward", CONV_SETTINGS, CONV_HIDDEN, hidden, _forward_case)


def torch_conv2d(x, w, b, stride: int, padding: int) -> np.ndarray:
    """``F.conv2d`` in float64; ``b=None`` for no bias."""
    F = functional()
    bias = None if b is None else float64_tensor(b)
    return F.conv2d(float64_tensor(x), float64_tensor(w), bias, stride=stride, padding=padding).numpy()


def conv2d_reference(inputs: dict) -> np.ndarray:
    return torch_conv2d(inputs["x"], inputs["w"], inputs["b"], inputs["stride"], inputs["padding"])


def conv2d_stride_ignored(inputs: dict) -> np.ndarray:
    """The stride-1 convolution."""
    return torch_conv2d(inputs["x"], inputs["w"], inputs["b"], 1, inputs["padding"])


def conv2d_padding_ignored(inputs: dict) -> np.ndarray:
    """The convolution of the unpadded input."""
    return torch_conv2d(inputs["x"], inputs["w"], inputs["b"], inputs["stride"], 0)


def conv2d_kernel_flipped(inputs: dict) -> np.ndarray:
    """A true convolution: the kernel rotated by 180°."""
    return torch_conv2d(inputs["x"], inputs["w"][:, :, ::-1, ::-1], inputs["b"], inputs["stride"], inputs["padding"])


def conv2d_without_bias(inputs: dict) -> np.ndarray:
    return torch_conv2d(inputs["x"], inputs["w"], None, inputs["stride"], inputs["padding"])


def call_conv2d_forward(fn, inputs: dict):
    return calling(fn, {k: inputs[k] for k in ("x", "w", "b")}, inputs["x"], inputs["w"], inputs["b"],
                   stride=inputs["stride"], padding=inputs["padding"])


CONV_FORWARD = Exercise(
    function="conv2d_forward",
    forbidden=FORBIDDEN,
    reference_name="torch.nn.functional.conv2d",
    make_cases=conv2d_forward_cases,
    reference=conv2d_reference,
    call=call_conv2d_forward,
    mistakes=[
        Mistake("the windows moved one pixel at a time: stride was ignored",
                "consecutive output positions read windows `stride` pixels apart, and the output size of the "
                "section divides by the stride.",
                conv2d_stride_ignored),
        Mistake("the input was not zero-padded: padding was ignored",
                "add `padding` rows and columns of zeros on every side of x before sliding the windows.",
                conv2d_padding_ignored),
        Mistake("the kernel was rotated by 180° (a true convolution)",
                "deep learning's convolution is a cross-correlation: each kernel weight meets the window pixel in "
                "the same position, nothing is flipped.",
                conv2d_kernel_flipped),
        Mistake("the bias b was not added",
                "each output channel f has its own bias b[f], added at every position of that channel.",
                conv2d_without_bias),
    ],
    hint="check, in this order: the zero padding on every side, the window positions (`stride` apart), the sum "
         "over all input channels, and one bias per output channel — against the formula of section 1.",
    section="Task: `conv2d_forward`",
    layout=Layout(axes=("sample n", "output channel", "output row", "output column")),
    covers={**CONV_COVERS, "a different bias per output channel": lambda c: len(set(c.inputs["b"].tolist())) > 1},
)


# --------------------------------------------------------------------------- backward


def _backward_case(rng, setting, number: int) -> Case:
    if number == 1:   # the course-notes backward example: 3×3 input, identity-diagonal kernel, dY = 1
        inputs = {"x": SEED_BACK_X.reshape(1, 1, 3, 3), "w": SEED_BACK_W.reshape(1, 1, 2, 2),
                  "stride": 1, "padding": 0, "dout": np.ones((1, 1, 2, 2))}
        text = "the course-notes example: X = 1..9 as 3×3, W = [[1,0],[0,1]], dout = ones(2×2)"
    else:
        inputs = _conv_inputs(rng, setting, number, True)
        text = _conv_description(setting, number, True)
    parts = [("dx", inputs["x"].shape), ("dw", inputs["w"].shape), ("db", (inputs["w"].shape[0],))]
    return Case(f"{text}; returns {shapes_text(parts)}", inputs, describe_parts(parts), regions=part_regions(parts))


def conv2d_backward_cases(hidden: bool) -> list[Case]:
    return build_cases("conv2d_backward", CONV_SETTINGS, CONV_HIDDEN, hidden, _backward_case)


def torch_conv2d_grads(x, w, dout, stride: int, padding: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, dw, db) of ``F.conv2d`` (with a bias) from autograd, in float64."""
    F = functional()
    xt, wt, bt = float64_tensor(x, True), float64_tensor(w, True), float64_tensor(np.zeros(w.shape[0]), True)
    F.conv2d(xt, wt, bt, stride=stride, padding=padding).backward(float64_tensor(dout))
    return xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


def _grads(inputs: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return torch_conv2d_grads(inputs["x"], inputs["w"], inputs["dout"], inputs["stride"], inputs["padding"])


def conv2d_backward_reference(inputs: dict) -> np.ndarray:
    return flatten(*_grads(inputs))


def conv2d_dx_unflipped_kernel(inputs: dict) -> np.ndarray:
    """dx computed as the full convolution of dout with the kernel *not* rotated by 180°."""
    _, dw, db = _grads(inputs)
    dx, _, _ = torch_conv2d_grads(inputs["x"], inputs["w"][:, :, ::-1, ::-1], inputs["dout"],
                                  inputs["stride"], inputs["padding"])
    return flatten(dx, dw, db)


def conv2d_dw_db_averaged(inputs: dict) -> np.ndarray:
    """dw and db divided by the batch size N."""
    dx, dw, db = _grads(inputs)
    N = inputs["x"].shape[0]
    return flatten(dx, dw / N, db / N)


BACKWARD_SHAPES = ("conv2d_backward returns dx, dw and db with the shapes of x, w and (C_out,) "
                   "(Task: `conv2d_backward`); the padded border is not part of x")


def call_conv2d_backward(fn, inputs: dict) -> np.ndarray:
    result = calling(fn, {k: inputs[k] for k in ("dout", "x", "w")}, inputs["dout"], inputs["x"], inputs["w"],
                     stride=inputs["stride"], padding=inputs["padding"])
    x, w, p = inputs["x"], inputs["w"], inputs["padding"]
    padded = (*x.shape[:2], x.shape[2] + 2 * p, x.shape[3] + 2 * p)
    if p and isinstance(result, (tuple, list)) and result and tuple(getattr(result[0], "shape", ())) == padded:
        raise RuleBroken(BACKWARD_SHAPES, f"dx has shape {padded}, the shape of the padded input, expected "
                                          f"{x.shape}: padding not removed from dX")
    return unpack_outputs(result, ("dx", "dw", "db"), "conv2d_backward", (x.shape, w.shape, (w.shape[0],)),
                          BACKWARD_SHAPES)


CONV_BACKWARD = Exercise(
    function="conv2d_backward",
    forbidden=FORBIDDEN,
    reference_name="torch autograd through torch.nn.functional.conv2d",
    make_cases=conv2d_backward_cases,
    reference=conv2d_backward_reference,
    call=call_conv2d_backward,
    mistakes=[
        Mistake("dx used the kernel in the wrong orientation (rotated by 180° where it must not be, or not "
                "rotated in the full-convolution form)",
                "written as a scatter, each window sends dout back through the kernel exactly as the forward pass "
                "used it; only the gather (full convolution) form needs the 180° rotation.",
                conv2d_dx_unflipped_kernel),
        Mistake("dw and db were divided by the batch size N",
                "a layer's backward pass sums over the batch: any 1/N of a mean loss is already inside dout.",
                conv2d_dw_db_averaged),
    ],
    hint="check each gradient on its own (the lines above say which differ) against the three bullet points of "
         "the section; dx scatters through the same kernel taps as the forward pass and leaves out the padded "
         "border.",
    exception_hints=RETURN_HINT,
    section="Task: `conv2d_backward`",
    layout=PACKED,
    covers=CONV_COVERS,
)


def check_conv2d_forward(conv2d_forward, hidden: bool = False) -> None:
    """Check ``conv2d_forward(x, w, b, stride, padding)`` against ``torch.nn.functional.conv2d``."""
    show(run_check(CONV_FORWARD, conv2d_forward, hidden))


def check_conv2d_backward(conv2d_backward, hidden: bool = False) -> None:
    """Check ``conv2d_backward(dout, x, w, stride, padding) -> (dx, dw, db)`` against torch autograd."""
    show(run_check(CONV_BACKWARD, conv2d_backward, hidden))
