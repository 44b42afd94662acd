"""``sampling_positions`` and ``deform_conv2d``: two exercises on the same settings and case builder.

* ``sampling_positions(delta, kernel_size, stride=1, padding=0, dilation=1) -> (p_y, p_x)``, each
  (N, K_h·K_w, H_out, W_out), with ``delta`` (N, 2·K_h·K_w, H_out, W_out);
* ``deform_conv2d(a_l, delta, mask, weight, stride=1, padding=0, dilation=1) -> (N, C_out, H_out, W_out)``,
  as ``torchvision.ops.deform_conv2d(..., bias=None)``.

Each exercise draws its own inputs (its name seeds the generator) from the settings below. The
references and mistakes come from :mod:`~utils.deformable_conv.computations`, imported where they are
computed: the kernel that grades this notebook only calls the student's functions.
"""
from __future__ import annotations

import numpy as np

from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.seeding import case_rng
from utils.deformable_conv.bilinear_interpolate import SAMPLING_MISTAKES

# (N, C_in, C_out, H, W, K_h, K_w, stride, padding, dilation, offset_range, mask kind, integer offsets)
SETTINGS = [
    (1, 1, 1, 4, 4, 2, 2, 1, 0, 1, 0.0, "ones", False),
    (1, 1, 2, 5, 4, 3, 3, 1, 1, 1, 2.0, "ones", True),
    (2, 2, 3, 5, 6, 3, 3, 1, 1, 1, 2.5, "random", False),
    (2, 3, 4, 6, 7, 2, 3, 2, 1, 2, 2.5, "random", False),
    (2, 1, 2, 7, 5, 3, 2, 2, 2, 1, 4.0, "random", False),
    (2, 2, 3, 8, 6, 2, 2, 1, 0, 2, 1.5, "random", False),
]
HIDDEN_SETTINGS = [
    (3, 2, 2, 9, 7, 3, 3, 2, 2, 2, 3.0, "random", False),
    (2, 3, 5, 7, 9, 3, 3, 1, 1, 1, 2.0, "random", False),
    (2, 2, 1, 6, 5, 1, 3, 1, 1, 3, 3.5, "random", False),
]


def _inputs(exercise: str, number: int, setting, salt: str) -> dict:
    from utils.deformable_conv.computations import output_size

    N, C_in, C_out, H, W, K_h, K_w, stride, padding, dilation, spread, mask_kind, integer = setting
    rng = case_rng(exercise, number, salt)
    H_out = output_size(H, K_h, stride, padding, dilation)
    W_out = output_size(W, K_w, stride, padding, dilation)
    K = K_h * K_w
    delta = rng.uniform(-spread, spread, size=(N, 2 * K, H_out, W_out))
    if integer:
        delta = np.round(delta)
    elif spread:
        some = rng.random(delta.shape) < 0.2  # a few exact integer offsets in every random case
        delta[some] = np.round(delta[some])
    if mask_kind == "ones":
        mask = np.ones((N, K, H_out, W_out))
    else:
        mask = rng.uniform(0, 1, size=(N, K, H_out, W_out))
    if number == 1 and not salt:  # the hand-checkable case: small integers
        a_l = np.arange(N * C_in * H * W, dtype=np.float64).reshape(N, C_in, H, W)
        weight = np.array([[1.0, 0.0], [0.0, -1.0]]).reshape(1, 1, 2, 2)
    else:
        a_l = rng.normal(size=(N, C_in, H, W))
        weight = rng.normal(size=(C_out, C_in, K_h, K_w))
    return {"a_l": a_l, "delta": delta, "mask": mask, "weight": weight,
            "stride": stride, "padding": padding, "dilation": dilation}


def _describe_setting(setting) -> str:
    N, C_in, C_out, H, W, K_h, K_w, stride, padding, dilation, spread, mask_kind, integer = setting
    if not spread:
        offsets = "zero offsets (an ordinary convolution)"
    elif integer:
        offsets = f"integer offsets in [−{spread:g}, {spread:g}]"
    else:
        offsets = f"offsets in [−{spread:g}, {spread:g}], some outside the image"
    return (f"N={N}, C_in={C_in}, C_out={C_out}, {H}×{W} input, {K_h}×{K_w} kernel, stride={stride}, "
            f"padding={padding}, dilation={dilation}, {offsets}, "
            f"{'mask of ones' if mask_kind == 'ones' else 'random mask'}")


def _cases(exercise: str, hidden: bool, describe_index) -> list[Case]:
    settings = visible_then_hidden(SETTINGS, HIDDEN_SETTINGS, hidden)
    return [Case(_describe_setting(setting), _inputs(exercise, number, setting, salt), describe_index)
            for number, (setting, salt) in enumerate(settings, start=1)]


def _kernel_size(inputs):
    return tuple(inputs["weight"].shape[2:])


def _settings_of(inputs) -> dict:
    return {"stride": inputs["stride"], "padding": inputs["padding"], "dilation": inputs["dilation"]}


# ----------------------------------------------------------------------- sampling_positions


def _describe_position_index(index):
    which, n, k, h, w = index
    return f"p_{'yx'[which]}[n={n}, k={k}, h_out={h}, w_out={w}]"


def _positions_cases(hidden: bool) -> list[Case]:
    return _cases("sampling_positions", hidden, _describe_position_index)


def _positions_call(fn, inputs):
    result = fn(inputs["delta"], _kernel_size(inputs), **_settings_of(inputs))
    if isinstance(result, (tuple, list)) and len(result) == 2:
        try:
            return np.stack([np.asarray(r, dtype=np.float64) for r in result])
        except (TypeError, ValueError):
            return result
    return result


def _positions_reference(inputs):
    from utils.deformable_conv.computations import positions_numpy

    # Δ's layout and the position formula are those of torchvision.ops.deform_conv2d.
    return positions_numpy(inputs["delta"], _kernel_size(inputs), **_settings_of(inputs))


def _positions_computed_with(**switches):
    def compute(inputs):
        from utils.deformable_conv.computations import positions_numpy

        return positions_numpy(inputs["delta"], _kernel_size(inputs), **_settings_of(inputs), **switches)
    return compute


# (switches of positions_numpy / deform_conv2d_numpy, name, hint), shared by both exercises
LAYOUT_MISTAKES = [
    (dict(offsets="xy"), "your output equals the reference computed with Δy and Δx swapped",
     "offset channel 2k is Δy (rows) and 2k+1 is Δx (columns), for tap k = kh·K_w + kw."),
    (dict(offsets="k"), "offsets are read from channels k and k+1 instead of 2k and 2k+1",
     "each tap owns two channels: Δy = delta[n, 2*k], Δx = delta[n, 2*k + 1]."),
    (dict(use_stride=False), "stride is ignored: the window of output (h_out, w_out) starts at h_out·stride",
     "the window's top-left corner is (h_out·stride − padding, w_out·stride − padding)."),
    (dict(use_padding=False), "padding is ignored in the sampling positions (missing − padding)",
     "on the unpadded input the window starts at h_out·stride − padding; positions < 0 sample zeros."),
    (dict(use_dilation=False), "dilation is ignored: tap (kh, kw) sits at kh·dilation, kw·dilation",
     "p_y = h_out·stride − padding + kh·dilation + Δy."),
]

POSITIONS_MISTAKES = [Mistake(name, hint, _positions_computed_with(**switches))
                      for switches, name, hint in LAYOUT_MISTAKES]

POSITIONS = Exercise(
    function="sampling_positions",
    reference_name="the sampling positions of torchvision.ops.deform_conv2d",
    make_cases=_positions_cases,
    reference=_positions_reference,
    call=_positions_call,
    mistakes=POSITIONS_MISTAKES,
    hint="p_y = h_out·stride − padding + kh·dilation + Δy with Δy = delta[n, 2k], Δx = delta[n, 2k+1], "
         "k = kh·K_w + kw; return (p_y, p_x), each (N, K_h·K_w, H_out, W_out).",
)


def check_sampling_positions(sampling_positions, hidden: bool = False) -> None:
    """Check ``sampling_positions(delta, kernel_size, stride, padding, dilation)``."""
    __tracebackhide__ = True
    show(run_check(POSITIONS, sampling_positions, hidden))


# ----------------------------------------------------------------------- deform_conv2d


def _describe_output_index(index):
    return f"[{', '.join(map(str, index))}] (n, c_out, h_out, w_out)"


def _deform_cases(hidden: bool) -> list[Case]:
    return _cases("deform_conv2d", hidden, _describe_output_index)


def _deform_call(fn, inputs):
    return fn(inputs["a_l"], inputs["delta"], inputs["mask"], inputs["weight"], **_settings_of(inputs))


def _deform_reference(inputs):
    from utils.deformable_conv.computations import torchvision_deform_conv2d

    return torchvision_deform_conv2d(**inputs)


def _deform_computed_with(**switches):
    def compute(inputs):
        from utils.deformable_conv.computations import deform_conv2d_numpy

        return deform_conv2d_numpy(inputs["a_l"], inputs["delta"], inputs["mask"], inputs["weight"],
                                   **_settings_of(inputs), **switches)
    return compute


DEFORM_MISTAKES = (
    [Mistake(name, hint, _deform_computed_with(**switches)) for switches, name, hint in LAYOUT_MISTAKES]
    + [Mistake(name, hint, _deform_computed_with(rule=rule)) for rule, (name, hint) in SAMPLING_MISTAKES.items()
       if rule != "swap_yx"]
    + [Mistake("the modulation mask is ignored: every sample must be multiplied by m_k",
               "value += weight[c_out, c_in, kh, kw] * m_k * sample, with m_k = mask[n, k, h_out, w_out].",
               _deform_computed_with(use_mask=False)),
       Mistake("the `+ 1` in the output size is missing: each spatial size is one too small",
               "H_out = (H + 2·padding − dilation·(K_h − 1) − 1) // stride + 1, or read it from delta.shape.",
               _deform_computed_with(plus_one=False))]
)

DEFORM = Exercise(
    function="deform_conv2d",
    forbidden=("torchvision.ops.deform_conv2d", "torchvision.ops.DeformConv2d"),
    reference_name="torchvision.ops.deform_conv2d",
    make_cases=_deform_cases,
    reference=_deform_reference,
    call=_deform_call,
    mistakes=DEFORM_MISTAKES,
    hint="for each output pixel and tap k: p = (h_out·stride − padding + kh·dilation + Δy, "
         "w_out·stride − padding + kw·dilation + Δx); "
         "add weight[c_out, c_in, kh, kw] · m_k · bilinear(a_l[n, c_in], p).",
    exception_hints={"IndexError": "a sample outside the image must give 0, and H_out, W_out must follow the "
                                   "output-size formula (or delta.shape[2:])."},
)


def check_deform_conv2d(deform_conv2d, hidden: bool = False) -> None:
    """Check ``deform_conv2d`` against ``torchvision.ops.deform_conv2d`` (float64, ``bias=None``)."""
    __tracebackhide__ = True
    show(run_check(DEFORM, deform_conv2d, hidden))
