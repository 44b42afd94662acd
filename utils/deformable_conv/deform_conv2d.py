"""``sampling_positions`` and ``deform_conv2d``: two exercises on the same settings and case builder.

* ``sampling_positions(delta, kernel_size, stride=1, padding=0, dilation=1) -> (p_y, p_x)``, each
  (N, K_h·K_w, H_out, W_out), with ``delta`` (N, 2·K_h·K_w, H_out, W_out);
* ``deform_conv2d(a_l, delta, mask, weight, stride=1, padding=0, dilation=1) -> (N, C_out, H_out, W_out)``,
  as ``torchvision.ops.deform_conv2d(..., bias=None)``.

Each exercise draws its own inputs (its name seeds the generator) from the settings below; one visible and
one hidden case call the student's function without stride, padding and dilation (their defaults), and both
checks enforce the notebook's rule that the input arrays are left unchanged. The
references and mistakes come from :mod:`~utils.deformable_conv.computations`, imported where they are
computed: the kernel that grades this notebook only calls the student's functions.
"""
from __future__ import annotations

import numpy as np

from utils.checks.characterise import Layout
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.rules import kept_unchanged, require_shape
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
    (2, 2, 3, 8, 7, 3, 2, 3, 2, 1, 2.5, "zeros", False),
    (2, 1, 2, 6, 5, 2, 2, 1, 0, 1, 1.5, "random", False),
]
# The cases whose call leaves stride, padding and dilation at their defaults (1, 0, 1): the first visible
# one and the last hidden one.
DEFAULT_CALLS = {(1, ""), (len(SETTINGS) + len(HIDDEN_SETTINGS), "hidden")}


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
        if mask_kind == "zeros":   # some taps switched off: exact zeros in the mask
            mask[rng.random(mask.shape) < 0.3] = 0.0
    if number == 1 and not salt:  # the hand-checkable case: small integers
        a_l = np.arange(N * C_in * H * W, dtype=np.float64).reshape(N, C_in, H, W)
        weight = np.array([[1.0, 0.0], [0.0, -1.0]]).reshape(1, 1, 2, 2)
    else:
        a_l = rng.normal(size=(N, C_in, H, W))
        weight = rng.normal(size=(C_out, C_in, K_h, K_w))
    return {"a_l": a_l, "delta": delta, "mask": mask, "weight": weight,
            "stride": stride, "padding": padding, "dilation": dilation,
            "defaults": (number, salt and "hidden") in DEFAULT_CALLS}


def _describe_setting(setting) -> str:
    N, C_in, C_out, H, W, K_h, K_w, stride, padding, dilation, spread, mask_kind, integer = setting
    if not spread:
        offsets = "zero offsets (an ordinary convolution)"
    elif integer:
        offsets = f"integer offsets in [−{spread:g}, {spread:g}]"
    else:
        offsets = f"offsets in [−{spread:g}, {spread:g}], some outside the image"
    masks = {"ones": "mask of ones", "random": "random mask", "zeros": "random mask with some zeros (taps off)"}
    return (f"N={N}, C_in={C_in}, C_out={C_out}, {H}×{W} input, {K_h}×{K_w} kernel, stride={stride}, "
            f"padding={padding}, dilation={dilation}, {offsets}, {masks[mask_kind]}")


def _cases(exercise: str, hidden: bool, describe_index) -> list[Case]:
    settings = visible_then_hidden(SETTINGS, HIDDEN_SETTINGS, hidden)
    cases = []
    for number, (setting, salt) in enumerate(settings, start=1):
        inputs = _inputs(exercise, number, setting, salt)
        text = _describe_setting(setting)
        if inputs["defaults"]:
            text = text.replace("stride=1, padding=0, dilation=1", "stride, padding and dilation left at their "
                                                                    "defaults (not passed)")
        cases.append(Case(text, inputs, describe_index))
    return cases


def _kernel_size(inputs):
    return tuple(inputs["weight"].shape[2:])


def _settings_of(inputs) -> dict:
    return {"stride": inputs["stride"], "padding": inputs["padding"], "dilation": inputs["dilation"]}


def _passed_settings(inputs) -> dict:
    """The keywords the student's function is called with: none in a case that tests the defaults."""
    return {} if inputs.get("defaults") else _settings_of(inputs)


INPUTS_RULE = ("{function} leaves its input arrays as they are (the notebook's introduction: your functions must "
               "not modify the arrays they are given)")


def _kept(function: str, inputs: dict, names: tuple[str, ...]):
    return kept_unchanged({name: inputs[name] for name in names}, rule=INPUTS_RULE.format(function=function))


def _setting_covers() -> dict:
    """What both exercises' cases must cover, as predicates over a case."""
    def shape(c):
        N, C_in, H, W = c.inputs["a_l"].shape
        C_out, _, K_h, K_w = c.inputs["weight"].shape
        return N, C_in, C_out, H, W, K_h, K_w

    def positions(c):
        from utils.deformable_conv.computations import positions_numpy
        return positions_numpy(c.inputs["delta"], _kernel_size(c.inputs), **_settings_of(c.inputs))

    def straddles(c):   # a position with some corners inside and some outside, on each side
        p_y, p_x = positions(c)
        H, W = c.inputs["a_l"].shape[2:]
        return all(np.any(t) for t in ((p_y > -1) & (p_y < 0), (p_x > -1) & (p_x < 0),
                                       (p_y > H - 1) & (p_y < H), (p_x > W - 1) & (p_x < W)))

    def far_outside(c):
        p_y, p_x = positions(c)
        H, W = c.inputs["a_l"].shape[2:]
        return bool(np.any((p_y <= -1) | (p_y >= H) | (p_x <= -1) | (p_x >= W)))

    return {
        "a batch of 2 or more": lambda c: shape(c)[0] >= 2,
        "2 or more input channels": lambda c: shape(c)[1] >= 2,
        "C_out different from C_in": lambda c: shape(c)[2] != shape(c)[1],
        "a non-square input": lambda c: shape(c)[3] != shape(c)[4],
        "a kernel taller than wide": lambda c: shape(c)[5] > shape(c)[6],
        "a kernel wider than tall": lambda c: shape(c)[5] < shape(c)[6],
        "H_out different from W_out": lambda c: c.inputs["delta"].shape[2] != c.inputs["delta"].shape[3],
        "stride 2 or more": lambda c: c.inputs["stride"] >= 2,
        "padding 1 or more": lambda c: c.inputs["padding"] >= 1,
        "dilation 2 or more": lambda c: c.inputs["dilation"] >= 2,
        "stride, padding and dilation all different": lambda c: len({c.inputs["stride"], c.inputs["padding"],
                                                                     c.inputs["dilation"]}) == 3,
        "stride, padding and dilation left at their defaults": lambda c: bool(c.inputs.get("defaults")),
        "zero offsets (an ordinary convolution)": lambda c: not np.any(c.inputs["delta"]),
        "exact integer offsets": lambda c: bool(np.any((c.inputs["delta"] == np.round(c.inputs["delta"]))
                                                       & (c.inputs["delta"] != 0))),
        "positions with some corners outside, on every side": straddles,
        "positions entirely outside the image": far_outside,
        "a mask of ones": lambda c: bool(np.all(c.inputs["mask"] == 1)),
        "a mask with fractional values": lambda c: bool(np.any((c.inputs["mask"] > 0) & (c.inputs["mask"] < 1))),
        "a mask with zeros (taps switched off)": lambda c: bool(np.any(c.inputs["mask"] == 0)),
    }


# ----------------------------------------------------------------------- sampling_positions


def _describe_position_index(index):
    which, n, k, h, w = index
    return f"p_{'yx'[which]}[n={n}, k={k}, h_out={h}, w_out={w}]"


def _positions_cases(hidden: bool) -> list[Case]:
    return _cases("sampling_positions", hidden, _describe_position_index)


SHAPE_RULE = "sampling_positions returns (p_y, p_x), each of shape (N, K_h·K_w, H_out, W_out) (section 3, Task)"


def _positions_call(fn, inputs):
    with _kept("sampling_positions", inputs, ("delta",)):
        result = fn(inputs["delta"], _kernel_size(inputs), **_passed_settings(inputs))
    if isinstance(result, (tuple, list)) and len(result) == 2:
        N, _, H_out, W_out = inputs["delta"].shape
        K_h, K_w = _kernel_size(inputs)
        for name, part in zip(("p_y", "p_x"), result, strict=True):
            require_shape(part, (N, K_h * K_w, H_out, W_out), what=name, rule=SHAPE_RULE)
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
    (dict(offsets="xy"), "Δy and Δx swapped: x was read from the first channel of each tap's pair and y from "
                         "the second",
     "torchvision stores y first: of a tap's two offset channels the first is Δy (rows), the second Δx "
     "(section 3, “Offset layout”)."),
    (dict(offsets="k"), "offsets are read from channels k and k+1 instead of 2k and 2k+1",
     "each tap owns a pair of channels, so the pairs of taps 0, 1, 2, … start at channels 0, 2, 4, … "
     "(section 3, “Offset layout”)."),
    (dict(use_stride=False), "stride is ignored: neighbouring output pixels were given windows one input pixel "
                             "apart",
     "each step to the next output pixel moves the window by `stride` input pixels (section 3)."),
    (dict(use_padding=False), "padding is ignored in the sampling positions: the first window starts at row 0",
     "positions are on the unpadded input, so with padding the first window starts before row 0 and column 0; "
     "negative positions are the zero padding (section 3)."),
    (dict(use_dilation=False), "dilation is ignored: neighbouring taps were placed one pixel apart",
     "with dilation D neighbouring taps are D pixels apart (section 3)."),
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
    hint="compare your positions with section 3 term by term: where the window of (h_out, w_out) starts, "
         "where tap (kh, kw) sits in it, and which channels of delta hold that tap's offsets.",
    section="3. Where does each tap sample?",
    layout=Layout(axes=("sample n", "tap k", "h_out", "w_out"), parts=("p_y", "p_x")),
    covers=_setting_covers(),
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
    with _kept("deform_conv2d", inputs, ("a_l", "delta", "mask", "weight")):
        return fn(inputs["a_l"], inputs["delta"], inputs["mask"], inputs["weight"], **_passed_settings(inputs))


def _deform_reference(inputs):
    from utils.deformable_conv.computations import torchvision_deform_conv2d

    return torchvision_deform_conv2d(inputs["a_l"], inputs["delta"], inputs["mask"], inputs["weight"],
                                     **_settings_of(inputs))


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
    + [Mistake("the modulation mask is ignored: no sample was scaled by its tap's mask value",
               "each tap's sample counts only as much as its mask value m_k says: a mask value of 0 switches "
               "the tap off (section 4).",
               _deform_computed_with(use_mask=False)),
       Mistake("the `+ 1` in the output size is missing: each spatial size is one too small",
               "the output has as many positions as conv_output_size gives (section 1); it is also the spatial "
               "shape of delta and mask.",
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
    hint="build it from your earlier pieces: where each tap samples (section 3), the bilinear sample there "
         "(section 2), and section 4's sum, which combines every input channel and every tap with its weight "
         "and its mask value. If sampling_positions or bilinear_interpolate fails its check, fix it first.",
    exception_hints={"IndexError": "a sample outside the image must give 0, and H_out, W_out must be the output "
                                   "size of section 1 (the spatial shape of delta)."},
    section="4. Modulated deformable convolution",
    layout=Layout(axes=("sample n", "output channel", "h_out", "w_out")),
    covers=_setting_covers(),
)


def check_deform_conv2d(deform_conv2d, hidden: bool = False) -> None:
    """Check ``deform_conv2d`` against ``torchvision.ops.deform_conv2d`` (float64, ``bias=None``)."""
    __tracebackhide__ = True
    show(run_check(DEFORM, deform_conv2d, hidden))
