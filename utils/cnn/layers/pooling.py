"""Pooling layers, forward and backward: max pooling, average pooling, global average pooling.

* ``maxpool2d_forward(x, kernel_size, stride) -> out`` and ``maxpool2d_backward(dout, x, kernel_size, stride)
  -> dx``; ``avgpool2d_forward`` / ``avgpool2d_backward`` with the same signatures. x (N, C, H, W), square
  windows, no padding: out (N, C, H_out, W_out), H_out = (H − kernel_size) // stride + 1;
* ``global_avg_pool_forward(x) -> out``: (N, C, H, W) -> (N, C);
  ``global_avg_pool_backward(dout, x) -> dx``: dout (N, C) -> dx (N, C, H, W).
"""
from __future__ import annotations

import numpy as np

from utils.checks.adapters import float64_tensor
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check
from utils.checks.feedback import show
from utils.cnn.layers.shared import build_cases, describe_array, functional, output_size

# The course notes' worked example: a 4×4 input pooled by 2×2 windows, stride 2.
SEED_POOL_X = np.array([[1, 3, 2, 4], [5, 6, 7, 8], [9, 2, 3, 1], [4, 5, 6, 7]], dtype=np.float64)
SEED_POOL_DOUT = np.array([[1, 2], [3, 4]], dtype=np.float64)

# (N, C, H, W, kernel_size, stride)
POOL_SETTINGS = [(1, 1, 4, 4, 2, 2), (2, 3, 6, 6, 2, 2), (2, 2, 9, 7, 2, 3), (2, 2, 7, 7, 3, 2),
                 (1, 3, 5, 8, 3, 1)]
POOL_HIDDEN = [(3, 2, 10, 9, 3, 3), (2, 4, 8, 8, 4, 2), (2, 2, 6, 5, 2, 1)]


def _pool_case(rng, setting, number: int, backward: bool) -> Case:
    N, C, H, W, k, s = setting
    H_out, W_out = output_size(H, k, s, 0), output_size(W, k, s, 0)
    if number == 1:
        x = SEED_POOL_X.reshape(1, 1, 4, 4)
        text = "the course-notes 4×4 example, 2×2 windows, stride 2"
    else:
        x = rng.normal(size=(N, C, H, W))
        overlap = " (overlapping windows)" if s < k else (" (gaps between windows)" if s > k else "")
        text = f"N={N}, C={C}, {H}×{W} input, kernel_size={k}, stride={s}{overlap}"
    inputs = {"x": x, "kernel_size": k, "stride": s}
    if backward:
        inputs["dout"] = SEED_POOL_DOUT.reshape(1, 1, 2, 2) if number == 1 else rng.normal(size=(N, C, H_out, W_out))
        if number == 1:
            text += ", dout = [[1, 2], [3, 4]]"
        return Case(text, inputs, describe_array("dx", "n, c, h, w"))
    return Case(text + f" (output {H_out}×{W_out})", inputs, describe_array("out", "n, c, h_out, w_out"))


def _forward_case(rng, setting, number: int) -> Case:
    return _pool_case(rng, setting, number, backward=False)


def _backward_case(rng, setting, number: int) -> Case:
    return _pool_case(rng, setting, number, backward=True)


def maxpool2d_forward_cases(hidden: bool) -> list[Case]:
    return build_cases("maxpool2d_forward", POOL_SETTINGS, POOL_HIDDEN, hidden, _forward_case)


def maxpool2d_backward_cases(hidden: bool) -> list[Case]:
    return build_cases("maxpool2d_backward", POOL_SETTINGS, POOL_HIDDEN, hidden, _backward_case)


def avgpool2d_forward_cases(hidden: bool) -> list[Case]:
    return build_cases("avgpool2d_forward", POOL_SETTINGS, POOL_HIDDEN, hidden, _forward_case)


def avgpool2d_backward_cases(hidden: bool) -> list[Case]:
    return build_cases("avgpool2d_backward", POOL_SETTINGS, POOL_HIDDEN, hidden, _backward_case)


def torch_pool(kind: str, x, kernel_size: int, stride: int) -> np.ndarray:
    """``F.max_pool2d`` (kind "max") or ``F.avg_pool2d`` (kind "avg") in float64."""
    F = functional()
    pool = F.max_pool2d if kind == "max" else F.avg_pool2d
    return pool(float64_tensor(x), kernel_size, stride).numpy()


def torch_pool_grad(kind: str, x, dout, kernel_size: int, stride: int) -> np.ndarray:
    """dx of ``F.max_pool2d`` or ``F.avg_pool2d`` from autograd, in float64."""
    F = functional()
    pool = F.max_pool2d if kind == "max" else F.avg_pool2d
    xt = float64_tensor(x, True)
    pool(xt, kernel_size, stride).backward(float64_tensor(dout))
    return xt.grad.numpy()


def call_pool_forward(fn, inputs: dict):
    return fn(inputs["x"], inputs["kernel_size"], inputs["stride"])


def call_pool_backward(fn, inputs: dict):
    return fn(inputs["dout"], inputs["x"], inputs["kernel_size"], inputs["stride"])


def _backward_loops(mode: str, stride_is_kernel: bool = False, assign: bool = False):
    """A known mistake of a pooling backward pass: the loops of
    :func:`~utils.cnn.layers.computations.pool_backward_loops` (mode "max", "avg" or "all": dout to every
    position), imported where they are computed (never in the kernel that grades this notebook);
    ``stride_is_kernel`` moves the windows by kernel_size, ``assign`` writes with = instead of +=."""
    def compute(inputs: dict) -> np.ndarray:
        from utils.cnn.layers.computations import pool_backward_loops

        step = inputs["kernel_size"] if stride_is_kernel else inputs["stride"]
        return pool_backward_loops(inputs["x"], inputs["dout"], inputs["kernel_size"], step, mode, assign=assign)
    return compute


_STRIDE_IGNORED = ("stride ignored: the windows were moved by kernel_size instead of stride",
                   "window (i, j) starts at (i·stride, j·stride); H_out = (H − kernel_size) // stride + 1.")


# --------------------------------------------------------------------------- max pooling


def maxpool2d_reference(inputs: dict) -> np.ndarray:
    return torch_pool("max", inputs["x"], inputs["kernel_size"], inputs["stride"])


def maxpool2d_stride_is_kernel(inputs: dict) -> np.ndarray:
    return torch_pool("max", inputs["x"], inputs["kernel_size"], inputs["kernel_size"])


def maxpool2d_window_average(inputs: dict) -> np.ndarray:
    return torch_pool("avg", inputs["x"], inputs["kernel_size"], inputs["stride"])


def maxpool2d_backward_reference(inputs: dict) -> np.ndarray:
    return torch_pool_grad("max", inputs["x"], inputs["dout"], inputs["kernel_size"], inputs["stride"])


MAXPOOL_FORWARD = Exercise(
    function="maxpool2d_forward",
    forbidden=("torch.nn.functional.max_pool2d", "torch.max_pool2d", "torch.nn.MaxPool2d"),
    reference_name="torch.nn.functional.max_pool2d",
    make_cases=maxpool2d_forward_cases,
    reference=maxpool2d_reference,
    call=call_pool_forward,
    mistakes=[
        Mistake(*_STRIDE_IGNORED, maxpool2d_stride_is_kernel),
        Mistake("your output is the window average, not the window maximum", "take .max over each window.",
                maxpool2d_window_average),
    ],
    hint="out[n, c, i, j] = max of x[n, c, i·s : i·s + k, j·s : j·s + k].",
)

MAXPOOL_BACKWARD = Exercise(
    function="maxpool2d_backward",
    reference_name="torch autograd through torch.nn.functional.max_pool2d",
    make_cases=maxpool2d_backward_cases,
    reference=maxpool2d_backward_reference,
    call=call_pool_backward,
    mistakes=[
        Mistake("pooling gradient sent to all positions of the window instead of only the argmax",
                "only the input that was the maximum of its window receives dout[n, c, i, j]; the others get 0.",
                _backward_loops("all")),
        Mistake("the average-pool gradient (dout / window size) was used for max pooling",
                "max pooling routes the whole dout[n, c, i, j] to the argmax of its window.",
                _backward_loops("avg")),
        Mistake("overlapping windows overwrite each other: the gradient is assigned (=) instead of added (+=)",
                "an input that is the maximum of two windows receives the sum of both gradients: use +=.",
                _backward_loops("max", assign=True)),
        Mistake(*_STRIDE_IGNORED, _backward_loops("max", stride_is_kernel=True)),
    ],
    hint="dx = 0; for each window (i, j): dx[argmax position] += dout[n, c, i, j].",
)


# --------------------------------------------------------------------------- average pooling


def avgpool2d_reference(inputs: dict) -> np.ndarray:
    return torch_pool("avg", inputs["x"], inputs["kernel_size"], inputs["stride"])


def avgpool2d_stride_is_kernel(inputs: dict) -> np.ndarray:
    return torch_pool("avg", inputs["x"], inputs["kernel_size"], inputs["kernel_size"])


def avgpool2d_window_sum(inputs: dict) -> np.ndarray:
    return avgpool2d_reference(inputs) * inputs["kernel_size"] ** 2


def avgpool2d_backward_reference(inputs: dict) -> np.ndarray:
    return torch_pool_grad("avg", inputs["x"], inputs["dout"], inputs["kernel_size"], inputs["stride"])


AVGPOOL_FORWARD = Exercise(
    function="avgpool2d_forward",
    forbidden=("torch.nn.functional.avg_pool2d", "torch.nn.AvgPool2d"),
    reference_name="torch.nn.functional.avg_pool2d",
    make_cases=avgpool2d_forward_cases,
    reference=avgpool2d_reference,
    call=call_pool_forward,
    mistakes=[
        Mistake(*_STRIDE_IGNORED, avgpool2d_stride_is_kernel),
        Mistake("window sum instead of the window mean: not divided by the window size",
                "divide each window's sum by kernel_size².", avgpool2d_window_sum),
    ],
    hint="out[n, c, i, j] = mean of x[n, c, i·s : i·s + k, j·s : j·s + k].",
)

AVGPOOL_BACKWARD = Exercise(
    function="avgpool2d_backward",
    reference_name="torch autograd through torch.nn.functional.avg_pool2d",
    make_cases=avgpool2d_backward_cases,
    reference=avgpool2d_backward_reference,
    call=call_pool_backward,
    mistakes=[
        Mistake("average-pool gradient not divided by window size",
                "each of the kernel_size² inputs of a window contributed 1/kernel_size² of its output.",
                _backward_loops("all")),
        Mistake(*_STRIDE_IGNORED, _backward_loops("avg", stride_is_kernel=True)),
    ],
    hint="dx = 0; for each window (i, j): dx[window] += dout[n, c, i, j] / kernel_size² (+= for overlaps).",
)


# --------------------------------------------------------------------------- global average pooling

GAP_SETTINGS = [(1, 1, 4, 4), (2, 3, 5, 4), (3, 4, 7, 7), (2, 2, 1, 3)]   # (N, C, H, W)
GAP_HIDDEN = [(4, 5, 3, 6), (1, 8, 2, 2)]


def _gap_case(rng, setting, number: int, backward: bool) -> Case:
    N, C, H, W = setting
    x = SEED_POOL_X.reshape(1, 1, 4, 4) if number == 1 else rng.normal(size=setting)
    inputs = {"x": x}
    text = "the course-notes 4×4 example" if number == 1 else f"N={N}, C={C}, {H}×{W} input"
    if backward:
        inputs["dout"] = rng.normal(size=(N, C))
        return Case(text, inputs, describe_array("dx", "n, c, h, w"))
    return Case(text, inputs, describe_array("out", "n, c"))


def _gap_forward_case(rng, setting, number: int) -> Case:
    return _gap_case(rng, setting, number, backward=False)


def _gap_backward_case(rng, setting, number: int) -> Case:
    return _gap_case(rng, setting, number, backward=True)


def global_avg_pool_forward_cases(hidden: bool) -> list[Case]:
    return build_cases("global_avg_pool_forward", GAP_SETTINGS, GAP_HIDDEN, hidden, _gap_forward_case)


def global_avg_pool_backward_cases(hidden: bool) -> list[Case]:
    return build_cases("global_avg_pool_backward", GAP_SETTINGS, GAP_HIDDEN, hidden, _gap_backward_case)


def global_avg_pool_reference(inputs: dict) -> np.ndarray:
    """``F.adaptive_avg_pool2d(x, 1).flatten(1)`` in float64: (N, C)."""
    return functional().adaptive_avg_pool2d(float64_tensor(inputs["x"]), 1).flatten(1).numpy()


def global_avg_pool_spatial_axes_kept(inputs: dict) -> np.ndarray:
    """The mean with shape (N, C, 1, 1)."""
    return global_avg_pool_reference(inputs)[:, :, None, None]


def global_avg_pool_sum(inputs: dict) -> np.ndarray:
    _, _, H, W = inputs["x"].shape
    return global_avg_pool_reference(inputs) * H * W


def global_avg_pool_backward_reference(inputs: dict) -> np.ndarray:
    xt = float64_tensor(inputs["x"], True)
    functional().adaptive_avg_pool2d(xt, 1).flatten(1).backward(float64_tensor(inputs["dout"]))
    return xt.grad.numpy()


def global_avg_pool_backward_not_divided(inputs: dict) -> np.ndarray:
    _, _, H, W = inputs["x"].shape
    return global_avg_pool_backward_reference(inputs) * H * W


def call_global_avg_pool_forward(fn, inputs: dict):
    return fn(inputs["x"])


def call_global_avg_pool_backward(fn, inputs: dict):
    return fn(inputs["dout"], inputs["x"])


GAP_FORWARD = Exercise(
    function="global_avg_pool_forward",
    reference_name="torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)",
    make_cases=global_avg_pool_forward_cases,
    reference=global_avg_pool_reference,
    call=call_global_avg_pool_forward,
    mistakes=[
        Mistake("the output kept the spatial axes: (N, C, 1, 1) instead of (N, C)",
                "use x.mean(axis=(2, 3)) without keepdims.", global_avg_pool_spatial_axes_kept),
        Mistake("spatial sum instead of the mean: not divided by H·W", "divide by H·W.", global_avg_pool_sum),
    ],
    hint="out[n, c] = mean of x[n, c, :, :].",
)

GAP_BACKWARD = Exercise(
    function="global_avg_pool_backward",
    reference_name="torch autograd through adaptive_avg_pool2d(x, 1)",
    make_cases=global_avg_pool_backward_cases,
    reference=global_avg_pool_backward_reference,
    call=call_global_avg_pool_backward,
    mistakes=[
        Mistake("global-average-pool gradient not divided by H·W",
                "every one of the H·W inputs contributed 1/(H·W) of the mean.",
                global_avg_pool_backward_not_divided),
    ],
    hint="dx[n, c, h, w] = dout[n, c] / (H·W) for every h, w; dx has the shape of x.",
)


def check_maxpool2d_forward(maxpool2d_forward, hidden: bool = False) -> None:
    """Check ``maxpool2d_forward(x, kernel_size, stride)`` against ``F.max_pool2d``."""
    show(run_check(MAXPOOL_FORWARD, maxpool2d_forward, hidden))


def check_maxpool2d_backward(maxpool2d_backward, hidden: bool = False) -> None:
    """Check ``maxpool2d_backward(dout, x, kernel_size, stride) -> dx`` against torch autograd."""
    show(run_check(MAXPOOL_BACKWARD, maxpool2d_backward, hidden))


def check_avgpool2d_forward(avgpool2d_forward, hidden: bool = False) -> None:
    """Check ``avgpool2d_forward(x, kernel_size, stride)`` against ``F.avg_pool2d``."""
    show(run_check(AVGPOOL_FORWARD, avgpool2d_forward, hidden))


def check_avgpool2d_backward(avgpool2d_backward, hidden: bool = False) -> None:
    """Check ``avgpool2d_backward(dout, x, kernel_size, stride) -> dx`` against torch autograd."""
    show(run_check(AVGPOOL_BACKWARD, avgpool2d_backward, hidden))


def check_global_avg_pool_forward(global_avg_pool_forward, hidden: bool = False) -> None:
    """Check ``global_avg_pool_forward(x) -> (N, C)``."""
    show(run_check(GAP_FORWARD, global_avg_pool_forward, hidden))


def check_global_avg_pool_backward(global_avg_pool_backward, hidden: bool = False) -> None:
    """Check ``global_avg_pool_backward(dout, x) -> dx``."""
    show(run_check(GAP_BACKWARD, global_avg_pool_backward, hidden))
