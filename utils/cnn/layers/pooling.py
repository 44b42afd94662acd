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
from utils.checks.characterise import Layout
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check
from utils.checks.feedback import show
from utils.cnn.layers.shared import build_cases, calling, describe_array, functional, output_size

# The course notes' worked example: a 4×4 input pooled by 2×2 windows, stride 2.
SEED_POOL_X = np.array([[1, 3, 2, 4], [5, 6, 7, 8], [9, 2, 3, 1], [4, 5, 6, 7]], dtype=np.float64)
SEED_POOL_DOUT = np.array([[1, 2], [3, 4]], dtype=np.float64)

# (N, C, H, W, kernel_size, stride)
POOL_SETTINGS = [(1, 1, 4, 4, 2, 2), (2, 3, 6, 6, 2, 2), (2, 2, 9, 7, 2, 3), (2, 2, 7, 7, 3, 2),
                 (1, 3, 5, 8, 3, 1)]
POOL_HIDDEN = [(3, 2, 10, 9, 3, 3), (2, 4, 8, 8, 4, 2), (2, 2, 6, 5, 2, 1)]


def _window_counts(x, k: int, s: int) -> np.ndarray:
    """How many windows cover each input position (N, C, H, W)."""
    N, C, H, W = x.shape
    counts = np.zeros((H, W), dtype=int)
    for i in range(output_size(H, k, s, 0)):
        for j in range(output_size(W, k, s, 0)):
            counts[i * s:i * s + k, j * s:j * s + k] += 1
    return np.broadcast_to(counts, x.shape)


def _argmax_positions(x, k: int, s: int) -> np.ndarray:
    """True where an input is the maximum of at least one window."""
    N, C, H, W = x.shape
    hit = np.zeros(x.shape, dtype=bool)
    for i in range(output_size(H, k, s, 0)):
        for j in range(output_size(W, k, s, 0)):
            window = x[:, :, i * s:i * s + k, j * s:j * s + k]
            hit[:, :, i * s:i * s + k, j * s:j * s + k] |= window == window.max(axis=(2, 3), keepdims=True)
    return hit


def _pool_regions(x, k: int, s: int, backward: bool) -> dict:
    """Named parts of the output (forward) or of dx (backward), for the diagnosis of an unknown mistake."""
    if not backward:
        windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]
        return {"windows whose maximum is negative": windows.max(axis=(4, 5)) < 0}
    counts = _window_counts(x, k, s)
    return {"positions no window reaches": counts == 0, "positions in two or more windows": counts >= 2,
            "positions that are the maximum of a window": _argmax_positions(x, k, s)}


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
        return Case(text, inputs, describe_array("dx", "n, c, h, w"), regions=_pool_regions(x, k, s, True))
    return Case(text + f" (output {H_out}×{W_out})", inputs, describe_array("out", "n, c, h_out, w_out"),
                regions=_pool_regions(x, k, s, False))


def _forward_case(rng, setting, number: int) -> Case:
    return _pool_case(rng, setting, number, backward=False)


def _all_negative_window(case: Case) -> bool:
    x, k, s = case.inputs["x"], case.inputs["kernel_size"], case.inputs["stride"]
    windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]
    return bool((windows.max(axis=(4, 5)) < 0).any())


def _uncovered_border(case: Case) -> bool:
    _, _, H, W = case.inputs["x"].shape
    k, s = case.inputs["kernel_size"], case.inputs["stride"]
    return (H - k) % s != 0 or (W - k) % s != 0


# The input space of the pooling tasks (section 2): windows that overlap, leave gaps, or miss the border.
POOL_COVERS = {
    "a batch of 2 or more": lambda c: c.inputs["x"].shape[0] >= 2,
    "2 or more channels": lambda c: c.inputs["x"].shape[1] >= 2,
    "a non-square input": lambda c: c.inputs["x"].shape[2] != c.inputs["x"].shape[3],
    "kernel_size 3 or more": lambda c: c.inputs["kernel_size"] >= 3,
    "overlapping windows (stride < kernel_size)": lambda c: c.inputs["stride"] < c.inputs["kernel_size"],
    "gaps between windows (stride > kernel_size)": lambda c: c.inputs["stride"] > c.inputs["kernel_size"],
    "rows or columns no window reaches": _uncovered_border,
}
MAX_COVERS = {**POOL_COVERS, "a window whose values are all negative": _all_negative_window}
POOL_OUT = Layout(axes=("sample n", "channel", "output row", "output column"))
POOL_DX = Layout(axes=("sample n", "channel", "row", "column"))


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
    return calling(fn, {"x": inputs["x"]}, inputs["x"], inputs["kernel_size"], inputs["stride"])


def call_pool_backward(fn, inputs: dict):
    return calling(fn, {"dout": inputs["dout"], "x": inputs["x"]}, inputs["dout"], inputs["x"],
                   inputs["kernel_size"], inputs["stride"])


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


_STRIDE_IGNORED = ("the windows were moved by kernel_size instead of stride",
                   "consecutive windows start `stride` pixels apart, which is not kernel_size when windows "
                   "overlap or leave gaps.")


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
        Mistake("each window was averaged instead of taking its maximum", "max pooling keeps the largest value "
                "of each window.", maxpool2d_window_average),
    ],
    hint="each output is the largest value of one kernel_size × kernel_size window of x, channel by channel; "
         "windows start `stride` pixels apart and there is no padding.",
    section="Task: max pooling",
    layout=POOL_OUT,
    covers=MAX_COVERS,
)

MAXPOOL_BACKWARD = Exercise(
    function="maxpool2d_backward",
    reference_name="torch autograd through torch.nn.functional.max_pool2d",
    make_cases=maxpool2d_backward_cases,
    reference=maxpool2d_backward_reference,
    call=call_pool_backward,
    mistakes=[
        Mistake("pooling gradient sent to all positions of the window instead of only the argmax",
                "only the input that was the window's maximum influenced the output; the other inputs get 0.",
                _backward_loops("all")),
        Mistake("the average-pool gradient (dout shared evenly over the window) was used for max pooling",
                "max pooling hands the whole dout of a window to the one input that was its maximum.",
                _backward_loops("avg")),
        Mistake("overlapping windows overwrite each other's gradient: assigned instead of added",
                "an input that is the maximum of two overlapping windows receives the sum of both gradients.",
                _backward_loops("max", assign=True)),
        Mistake(*_STRIDE_IGNORED, _backward_loops("max", stride_is_kernel=True)),
    ],
    hint="check that only each window's maximum (found again from x) receives that window's dout, that gradients "
         "of overlapping windows add up, and that dx has the shape of x (section 2, “Backward”).",
    section="Task: max pooling",
    layout=POOL_DX,
    covers=MAX_COVERS,
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
        Mistake("each window was summed, not averaged", "divide each window's sum by the number of values it "
                "holds.", avgpool2d_window_sum),
    ],
    hint="each output is the mean of one kernel_size × kernel_size window of x, channel by channel; windows "
         "start `stride` pixels apart and there is no padding.",
    section="Task: average pooling",
    layout=POOL_OUT,
    covers=POOL_COVERS,
)

AVGPOOL_BACKWARD = Exercise(
    function="avgpool2d_backward",
    reference_name="torch autograd through torch.nn.functional.avg_pool2d",
    make_cases=avgpool2d_backward_cases,
    reference=avgpool2d_backward_reference,
    call=call_pool_backward,
    mistakes=[
        Mistake("every input of a window received the whole dout, not divided by the window size",
                "each of a window's inputs contributed one kernel_size²-th of its mean.",
                _backward_loops("all")),
        Mistake(*_STRIDE_IGNORED, _backward_loops("avg", stride_is_kernel=True)),
    ],
    hint="check the share each input of a window receives, that shares of overlapping windows add up, and that "
         "inputs no window reaches get 0 (section 2, “Backward”).",
    section="Task: average pooling",
    layout=POOL_DX,
    covers=POOL_COVERS,
)


# --------------------------------------------------------------------------- global average pooling

GAP_SETTINGS = [(1, 1, 4, 4), (2, 3, 5, 4), (3, 4, 7, 7), (2, 2, 1, 3)]   # (N, C, H, W)
GAP_COVERS = {
    "a batch of 2 or more": lambda c: c.inputs["x"].shape[0] >= 2,
    "2 or more channels": lambda c: c.inputs["x"].shape[1] >= 2,
    "a non-square input": lambda c: c.inputs["x"].shape[2] != c.inputs["x"].shape[3],
    "a spatial side of 1": lambda c: 1 in c.inputs["x"].shape[2:],
    "C different from H and W": lambda c: c.inputs["x"].shape[1] not in c.inputs["x"].shape[2:],
}
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
    return calling(fn, {"x": inputs["x"]}, inputs["x"])


def call_global_avg_pool_backward(fn, inputs: dict):
    return calling(fn, {"dout": inputs["dout"], "x": inputs["x"]}, inputs["dout"], inputs["x"])


GAP_FORWARD = Exercise(
    function="global_avg_pool_forward",
    reference_name="torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)",
    make_cases=global_avg_pool_forward_cases,
    reference=global_avg_pool_reference,
    call=call_global_avg_pool_forward,
    mistakes=[
        Mistake("the output kept the spatial axes: (N, C, 1, 1) instead of (N, C)",
                "the result has one value per sample and channel: drop the two spatial axes.",
                global_avg_pool_spatial_axes_kept),
        Mistake("each channel was summed over space, not averaged",
                "divide by the number of spatial positions.", global_avg_pool_sum),
    ],
    hint="one number per sample and channel: the average over all of that channel's positions; the result has "
         "shape (N, C).",
    section="Task: global average pooling",
    layout=Layout(axes=("sample n", "channel")),
    covers=GAP_COVERS,
)

GAP_BACKWARD = Exercise(
    function="global_avg_pool_backward",
    reference_name="torch autograd through adaptive_avg_pool2d(x, 1)",
    make_cases=global_avg_pool_backward_cases,
    reference=global_avg_pool_backward_reference,
    call=call_global_avg_pool_backward,
    mistakes=[
        Mistake("dout was copied to every position without dividing by H·W",
                "each of the H·W positions contributed one (H·W)-th of the mean.",
                global_avg_pool_backward_not_divided),
    ],
    hint="think of the global mean as one average-pooling window covering the whole channel (section 2, "
         "“Backward”); dx has the shape of x.",
    section="Task: global average pooling",
    layout=Layout(axes=("sample n", "channel", "row", "column")),
    covers=GAP_COVERS,
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
