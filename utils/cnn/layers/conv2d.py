"""The convolution layer, forward and backward.

* ``conv2d_forward(x, w, b, stride=1, padding=0) -> out``: x (N, C_in, H, W), w (C_out, C_in, K_h, K_w),
  b (C_out,) -> out (N, C_out, H_out, W_out), a cross-correlation as ``torch.nn.functional.conv2d``;
* ``conv2d_backward(dout, x, w, stride=1, padding=0) -> (dx, dw, db)``: dout (N, C_out, H_out, W_out)
  -> dx like x, dw like w, db (C_out,).
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
    describe_array,
    describe_parts,
    flatten,
    functional,
    output_size,
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
    return fn(inputs["x"], inputs["w"], inputs["b"], stride=inputs["stride"], padding=inputs["padding"])


CONV_FORWARD = Exercise(
    function="conv2d_forward",
    forbidden=FORBIDDEN,
    reference_name="torch.nn.functional.conv2d",
    make_cases=conv2d_forward_cases,
    reference=conv2d_reference,
    call=call_conv2d_forward,
    mistakes=[
        Mistake("conv stride ignored: your output is the stride-1 convolution",
                "output (h_out, w_out) reads the window whose top-left corner is (h_out·stride, w_out·stride) "
                "of the padded input, and H_out = (H + 2·padding − K_h) // stride + 1.",
                conv2d_stride_ignored),
        Mistake("padding ignored: the input was not zero-padded",
                "pad x with `padding` zeros on each side of both spatial axes first (np.pad).",
                conv2d_padding_ignored),
        Mistake("kernel flipped in the forward pass: deep-learning 'convolution' is a cross-correlation",
                "out[n, f, i, j] = Σ_c Σ_a Σ_b x_pad[n, c, i·s + a, j·s + b] · w[f, c, a, b], no flip.",
                conv2d_kernel_flipped),
        Mistake("bias missing: b[c_out] must be added to every output of channel c_out",
                "add b[None, :, None, None] to the output.", conv2d_without_bias),
    ],
    hint="pad x, then out[n, f, i, j] = Σ_{c,a,b} x_pad[n, c, i·stride + a, j·stride + b] · w[f, c, a, b] + b[f], "
         "with H_out = (H + 2·padding − K_h) // stride + 1.",
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
    return Case(f"{text}; returns {shapes_text(parts)}", inputs, describe_parts(parts))


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


def conv2d_dx_padding_kept(inputs: dict) -> np.ndarray:
    """dx of the padded input (its padding not cut off)."""
    p = inputs["padding"]
    x_pad = np.pad(inputs["x"], ((0, 0), (0, 0), (p, p), (p, p)))
    return flatten(*torch_conv2d_grads(x_pad, inputs["w"], inputs["dout"], inputs["stride"], 0))


def conv2d_dw_db_averaged(inputs: dict) -> np.ndarray:
    """dw and db divided by the batch size N."""
    dx, dw, db = _grads(inputs)
    N = inputs["x"].shape[0]
    return flatten(dx, dw / N, db / N)


def call_conv2d_backward(fn, inputs: dict) -> np.ndarray:
    result = fn(inputs["dout"], inputs["x"], inputs["w"], stride=inputs["stride"], padding=inputs["padding"])
    return unpack_outputs(result, ("dx", "dw", "db"), "conv2d_backward")


CONV_BACKWARD = Exercise(
    function="conv2d_backward",
    forbidden=FORBIDDEN,
    reference_name="torch autograd through torch.nn.functional.conv2d",
    make_cases=conv2d_backward_cases,
    reference=conv2d_backward_reference,
    call=call_conv2d_backward,
    mistakes=[
        Mistake("conv backward with unflipped kernel (for dX): dx must be the full convolution of dout with "
                "the kernel rotated by 180°",
                "every output (i, j) sends dout[n, f, i, j] · w[f, c, a, b] back to x_pad[n, c, i·s + a, j·s + b]: "
                "the same (a, b) as in the forward pass.", conv2d_dx_unflipped_kernel),
        Mistake("padding not removed from dX: dx has the shape of the padded input",
                "compute dx_pad on the padded input, then return dx_pad[:, :, p:p + H, p:p + W].",
                conv2d_dx_padding_kept),
        Mistake("dw and db are divided by the batch size: the loss already carries any averaging, "
                "the layer's backward must not average again",
                "dw = Σ_n Σ_{i,j} dout[n, f, i, j] · window, db = dout.sum(axis=(0, 2, 3)), no division.",
                conv2d_dw_db_averaged),
    ],
    hint="db = Σ over n, i, j of dout; dw[f, c, a, b] = Σ_{n,i,j} dout[n, f, i, j] · x_pad[n, c, i·s + a, j·s + b]; "
         "dx_pad[n, c, i·s + a, j·s + b] += dout[n, f, i, j] · w[f, c, a, b], then remove the padding.",
    exception_hints=RETURN_HINT,
)


def check_conv2d_forward(conv2d_forward, hidden: bool = False) -> None:
    """Check ``conv2d_forward(x, w, b, stride, padding)`` against ``torch.nn.functional.conv2d``."""
    show(run_check(CONV_FORWARD, conv2d_forward, hidden))


def check_conv2d_backward(conv2d_backward, hidden: bool = False) -> None:
    """Check ``conv2d_backward(dout, x, w, stride, padding) -> (dx, dw, db)`` against torch autograd."""
    show(run_check(CONV_BACKWARD, conv2d_backward, hidden))
