"""Checks for the deformable-convolution assignment (modulated deformable convolution, DCNv2).

Exercises and the student's signatures:

* ``conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1) -> int``
* ``bilinear_interpolate(a_l, q_y, q_x) -> float`` with ``a_l`` of shape (H, W), zero outside.
* ``sampling_positions(delta, kernel_size, stride=1, padding=0, dilation=1) -> (p_y, p_x)``
  with ``delta`` of shape (N, 2·K_h·K_w, H_out, W_out) and each result of shape (N, K_h·K_w, H_out, W_out).
* ``deform_conv2d(a_l, delta, mask, weight, stride=1, padding=0, dilation=1) -> np.ndarray``
  with ``a_l`` (N, C_in, H, W), ``delta`` (N, 2·K_h·K_w, H_out, W_out) holding Δy at channel 2k and
  Δx at 2k+1 for tap k = kh·K_w + kw, ``mask`` (N, K_h·K_w, H_out, W_out), ``weight`` (C_out, C_in, K_h, K_w);
  returns (N, C_out, H_out, W_out), as ``torchvision.ops.deform_conv2d(..., bias=None)``.

References are computed with torch/torchvision in float64 when the check runs. The
known mistakes are the same computation done wrongly by :func:`deform_conv2d_numpy`.
"""
from __future__ import annotations

import numpy as np

from utils.checks.exercise import Case, Exercise, run_check
from utils.checks.adapters import float64_tensor, numbers, torch_module
from utils.checks.compare import EXACT
from utils.checks.diagnose import Mistake
from utils.checks.feedback import show
from utils.checks.seeding import case_rng

# --------------------------------------------------------------------------- references


def torch_conv_output_size(size: int, kernel_size: int, stride: int, padding: int, dilation: int) -> int:
    """The output length torch's own convolution produces for these settings."""
    torch = torch_module()
    x = torch.zeros(1, 1, size, 1, dtype=torch.float64)
    w = torch.zeros(1, 1, kernel_size, 1, dtype=torch.float64)
    out = torch.nn.functional.conv2d(x, w, stride=(stride, 1), padding=(padding, 0), dilation=(dilation, 1))
    return int(out.shape[2])


def torchvision_deform_conv2d(a_l, delta, mask, weight, stride=1, padding=0, dilation=1) -> np.ndarray:
    """``torchvision.ops.deform_conv2d`` in float64 on numpy inputs, ``bias=None``."""
    torch = torch_module()
    from torchvision.ops import deform_conv2d

    with torch.no_grad():
        out = deform_conv2d(float64_tensor(a_l), float64_tensor(delta), float64_tensor(weight), bias=None,
                            stride=stride, padding=padding, dilation=dilation, mask=float64_tensor(mask))
    return out.numpy()


def torchvision_bilinear(a_l, points) -> np.ndarray:
    """Bilinear samples of ``a_l`` (H, W) at ``points`` (P, 2) of (q_y, q_x), via torchvision.

    A 1×1 deformable convolution with weight 1 samples its input at (0 + Δy, 0 + Δx).
    """
    a_l = np.asarray(a_l, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    n = len(points)
    images = np.broadcast_to(a_l, (n, 1) + a_l.shape)
    H, W = a_l.shape
    offsets = np.zeros((n, 2, H, W))
    offsets[:, :, 0, 0] = points   # output pixel (0, 0) samples at (0 + q_y, 0 + q_x)
    out = torchvision_deform_conv2d(images, offsets, np.ones((n, 1, H, W)), np.ones((1, 1, 1, 1)))
    return out[:, 0, 0, 0]


# --------------------------------------------------------------------------- mistaken variants

SAMPLING_RULES = ("correct", "clamp", "trunc", "wrap", "bounds_on_q", "corner_mix", "corner_mix_diagonal",
                  "ceil", "swap_yx")


def bilinear_numpy(images: np.ndarray, q_y: np.ndarray, q_x: np.ndarray, rule: str = "correct") -> np.ndarray:
    """Bilinear samples of ``images`` (C, H, W) at positions ``q_y``, ``q_x`` (any equal shapes).

    Returns (C, *q_y.shape). ``rule="correct"`` is torchvision's rule (each corner outside
    the image counts as zero); the other rules are the mistakes students make.
    """
    images = np.asarray(images, dtype=np.float64)
    q_y = np.asarray(q_y, dtype=np.float64)
    q_x = np.asarray(q_x, dtype=np.float64)
    if rule == "swap_yx":
        q_y, q_x, rule = q_x, q_y, "correct"
    H, W = images.shape[-2:]

    if rule == "trunc":
        y0, x0 = np.trunc(q_y).astype(int), np.trunc(q_x).astype(int)
    else:
        y0, x0 = np.floor(q_y).astype(int), np.floor(q_x).astype(int)
    if rule == "ceil":
        y1, x1 = np.ceil(q_y).astype(int), np.ceil(q_x).astype(int)
    else:
        y1, x1 = y0 + 1, x0 + 1
    dy, dx = q_y - y0, q_x - x0

    def pixel(y, x):
        if rule == "clamp":
            return images[:, np.clip(y, 0, H - 1), np.clip(x, 0, W - 1)]
        if rule == "wrap":  # Python's negative indices read the other side of the image
            inside = (y >= -H) & (y < H) & (x >= -W) & (x < W)
            return images[:, y % H, x % W] * inside
        inside = (y >= 0) & (y < H) & (x >= 0) & (x < W)
        return images[:, np.clip(y, 0, H - 1), np.clip(x, 0, W - 1)] * inside

    v00, v01, v10, v11 = pixel(y0, x0), pixel(y0, x1), pixel(y1, x0), pixel(y1, x1)
    if rule == "ceil":  # sum of G(p, q) over floor/ceil corners: duplicates at integer positions
        wy0, wy1 = 1 - np.abs(y0 - q_y), 1 - np.abs(y1 - q_y)
        wx0, wx1 = 1 - np.abs(x0 - q_x), 1 - np.abs(x1 - q_x)
        return v00 * wy0 * wx0 + v01 * wy0 * wx1 + v10 * wy1 * wx0 + v11 * wy1 * wx1
    if rule == "corner_mix":  # "interpolate Y first" done with the wrong corners
        v_y = v00 * (1 - dy) + v10 * dy
        return v_y * (1 - dx) + v01 * dx
    if rule == "corner_mix_diagonal":  # x-weights applied to the vertical neighbours
        v0 = v00 * (1 - dx) + v10 * dx
        v1 = v01 * (1 - dx) + v11 * dx
        return v0 * (1 - dy) + v1 * dy
    out = (v00 * (1 - dx) + v01 * dx) * (1 - dy) + (v10 * (1 - dx) + v11 * dx) * dy
    if rule == "bounds_on_q":  # whole sample dropped unless q itself lies inside the image
        inside = (q_y >= 0) & (q_y <= H - 1) & (q_x >= 0) & (q_x <= W - 1)
        out = out * inside
    return out


def output_size(size, kernel_size, stride, padding, dilation, plus_one=True):
    return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + int(plus_one)


def positions_numpy(delta, kernel_size, stride=1, padding=0, dilation=1, *, offsets="yx",
                    use_stride=True, use_padding=True, use_dilation=True) -> np.ndarray:
    """Sampling positions (2, N, K, H_out, W_out): p = h_out·stride − padding + kh·dilation + Δ."""
    delta = np.asarray(delta, dtype=np.float64)
    K_h, K_w = kernel_size
    K = K_h * K_w
    _, _, H_out, W_out = delta.shape
    k = np.arange(K)
    if offsets == "yx":
        d_y, d_x = delta[:, 2 * k], delta[:, 2 * k + 1]
    elif offsets == "xy":
        d_y, d_x = delta[:, 2 * k + 1], delta[:, 2 * k]
    elif offsets == "k":
        d_y, d_x = delta[:, k], delta[:, k + 1]
    else:
        raise ValueError(f"offsets must be 'yx', 'xy' or 'k', got {offsets!r}")
    s = stride if use_stride else 1
    p = padding if use_padding else 0
    d = dilation if use_dilation else 1
    kh, kw = k // K_w, k % K_w
    base_y = (np.arange(H_out) * s - p)[None, None, :, None] + (kh * d)[None, :, None, None]
    base_x = (np.arange(W_out) * s - p)[None, None, None, :] + (kw * d)[None, :, None, None]
    return np.stack([base_y + d_y, base_x + d_x])


def deform_conv2d_numpy(a_l, delta, mask, weight, stride=1, padding=0, dilation=1, *, rule="correct",
                        offsets="yx", use_mask=True, use_stride=True, use_padding=True,
                        use_dilation=True, plus_one=True) -> np.ndarray:
    """Vectorized deformable convolution; the keyword flags reproduce known mistakes."""
    a_l, weight, mask = (np.asarray(x, dtype=np.float64) for x in (a_l, weight, mask))
    N, C_in, H, W = a_l.shape
    C_out, _, K_h, K_w = weight.shape
    H_out = output_size(H, K_h, stride, padding, dilation, plus_one)
    W_out = output_size(W, K_w, stride, padding, dilation, plus_one)
    delta = np.asarray(delta, dtype=np.float64)[:, :, :H_out, :W_out]
    mask = mask[:, :, :H_out, :W_out]
    p_y, p_x = positions_numpy(delta, (K_h, K_w), stride, padding, dilation, offsets=offsets,
                               use_stride=use_stride, use_padding=use_padding, use_dilation=use_dilation)
    sampled = np.stack([bilinear_numpy(a_l[n], p_y[n], p_x[n], rule) for n in range(N)])
    if use_mask:
        sampled = sampled * mask[:, None]
    return np.einsum("oik,nikhw->nohw", weight.reshape(C_out, C_in, K_h * K_w), sampled)


# --------------------------------------------------------------------------- exercise 1: output size

def _output_size_cases(hidden: bool) -> list[Case]:
    settings = [  # (size, kernel_size, stride, padding, dilation)
        (5, 3, 1, 0, 1), (32, 3, 1, 1, 1), (7, 3, 2, 1, 1), (6, 2, 2, 1, 2), (7, 3, 2, 1, 2),
        (10, 4, 3, 0, 1), (9, 3, 1, 2, 3),
    ]
    if hidden:
        settings += [(224, 7, 2, 3, 1), (13, 5, 2, 2, 2), (8, 1, 3, 0, 1), (11, 3, 4, 3, 5)]
    names = "size, kernel_size, stride, padding, dilation"
    table = np.array(settings)

    def describe(index):
        return "conv_output_size(" + ", ".join(f"{n}={v}" for n, v in zip(names.split(", "), table[index[0]])) + ")"

    return [Case(f"{len(settings)} settings of ({names}), some with stride 2+, padding and dilation",
                 {"settings": settings}, describe)]


def _output_size_reference(inputs):
    return np.array([torch_conv_output_size(*s) for s in inputs["settings"]], dtype=np.float64)


def _output_size_call(fn, inputs):
    return numbers([fn(*s) for s in inputs["settings"]])


def _size_variant(**kw):
    return lambda inputs: np.array([_output_size_variant(*s, **kw) for s in inputs["settings"]], dtype=np.float64)


def _output_size_variant(size, k, s, p, d, plus_one=True, dilation=True, padding_twice=True, true_div=False):
    d = d if dilation else 1
    pad = 2 * p if padding_twice else p
    span = size + pad - d * (k - 1) - 1
    return (span / s if true_div else span // s) + int(plus_one)


OUTPUT_SIZE_MISTAKES = [
    Mistake("your sizes are one less than expected: the `+ 1` at the end of the formula is missing",
            "a kernel that fits exactly once gives one output: (size + 2·padding − dilation·(K−1) − 1) // stride + 1.",
            _size_variant(plus_one=False)),
    Mistake("your sizes ignore dilation: the kernel's span is dilation·(K − 1) + 1, not K",
            "with dilation d the taps sit d pixels apart, so a K-tap kernel spans d·(K−1)+1 pixels.",
            _size_variant(dilation=False)),
    Mistake("padding is added once: it goes on both sides of the input",
            "use size + 2·padding.", _size_variant(padding_twice=False)),
    Mistake("you used true division `/`: the number of positions is rounded down",
            "use integer division `//`.", _size_variant(true_div=True)),
]

OUTPUT_SIZE = Exercise(
    function="conv_output_size",
    reference_name="the output size of torch.nn.functional.conv2d",
    make_cases=_output_size_cases,
    reference=_output_size_reference,
    call=_output_size_call,
    mistakes=OUTPUT_SIZE_MISTAKES,
    tolerance=EXACT,
    hint="out = (size + 2·padding − dilation·(kernel_size − 1) − 1) // stride + 1.",
)

# --------------------------------------------------------------------------- exercise 2: bilinear interpolation


def _bilinear_cases(hidden: bool) -> list[Case]:
    cases = []

    def add(description, a_l, points):
        points = np.asarray(points, dtype=np.float64)
        cases.append(Case(description, {"a_l": np.asarray(a_l, dtype=np.float64), "points": points},
                          lambda index, p=points: f"query (q_y={p[index[0], 0]:g}, q_x={p[index[0], 1]:g})"))

    add("2×2 image [[1, 2], [3, 4]] at its centre, at two fractional points and on its bottom edge "
        "(check these by hand)",
        [[1.0, 2.0], [3.0, 4.0]], [(0.5, 0.5), (0.25, 0.75), (0.0, 0.5), (1.0, 0.5)])
    rng = case_rng("bilinear_interpolate", 2)
    image = rng.normal(size=(4, 5))
    add("4×5 image, fractional points inside", image,
        np.column_stack([rng.uniform(0, 3, 6), rng.uniform(0, 4, 6)]))
    add("4×5 image, exact integer positions (corners and edges included)", image,
        [(0, 0), (3, 4), (2, 1), (0, 4), (3, 0), (1.0, 3.0)])
    add("4×5 image, negative fractional coordinates and points just outside the border", image,
        [(-0.5, 1.25), (1.5, -0.75), (-0.3, -0.6), (3.4, 2.0), (1.0, 4.5), (-0.999, 2.5)])
    add("4×5 image, points far outside (must give exactly 0)", image,
        [(-1.0, 2.0), (-2.5, 1.0), (5.0, 2.0), (1.0, -1.5), (1.0, 6.0)])
    if hidden:
        for number in (6, 7):
            rng = case_rng("bilinear_interpolate", number, "hidden")
            H, W = rng.integers(3, 8, size=2)
            pts = np.column_stack([rng.uniform(-1.5, H + 0.5, 12), rng.uniform(-1.5, W + 0.5, 12)])
            pts[::4] = np.round(pts[::4])
            add(f"{H}×{W} random image, 12 random points inside, across and outside the border",
                rng.normal(size=(H, W)), pts)
    return cases


def _bilinear_call(fn, inputs):
    a_l = inputs["a_l"]
    return numbers([fn(a_l, float(qy), float(qx)) for qy, qx in inputs["points"]])


def _bilinear_variant(rule):
    def compute(inputs):
        p = inputs["points"]
        return bilinear_numpy(inputs["a_l"][None], p[:, 0], p[:, 1], rule)[0]
    return compute


_SAMPLING_MISTAKES = {  # rule -> (name, hint), shared by bilinear_interpolate and deform_conv2d
    "clamp": ("pixels outside the image are clamped to the border instead of being zero",
              "a corner outside the image contributes 0 (zero padding), not the nearest border pixel."),
    "trunc": ("`int()` is used instead of floor: for negative coordinates int(-0.5) = 0 but floor(-0.5) = -1",
              "use np.floor (then int) so the top-left corner is always at or before q."),
    "wrap": ("negative indices wrap around: a_l[-1, x] reads the last row instead of giving 0",
             "test 0 <= y < H and 0 <= x < W before reading a pixel; Python's negative indexing does not raise."),
    "bounds_on_q": ("a sample is zeroed whenever q itself is outside [0, H−1]×[0, W−1], "
                    "but corners inside the image must still contribute",
                    "check each of the four corners separately, not the query point."),
    "corner_mix": ("the corners are mixed up when interpolating Y first (the top-right corner is weighted by the "
                   "x-fraction of the left column and v_11 is missing)",
                   "interpolate along X on the top row (v_00, v_01) and the bottom row (v_10, v_11), then along Y."),
    "corner_mix_diagonal": ("the x-fraction is applied to the vertical neighbours: v_00 and v_10 are blended by dx",
                            "v_01 is the right neighbour (same row, x + 1); v_10 is the one below (y + 1, same column)."),
    "ceil": ("at exact integer positions a corner is counted twice: ceil(q) equals floor(q) there",
             "take the second corner as floor(q) + 1, not ceil(q)."),
    "swap_yx": ("q_y and q_x are swapped: rows are indexed with x and columns with y",
                "a_l[y, x]: the first index is the row (y), the second the column (x)."),
}

BILINEAR_MISTAKES = [Mistake(name, hint, _bilinear_variant(rule)) for rule, (name, hint) in _SAMPLING_MISTAKES.items()]

BILINEAR = Exercise(
    function="bilinear_interpolate",
    forbidden=("torch.nn.functional.grid_sample",),
    reference_name="torchvision's bilinear sampling (torchvision.ops.deform_conv2d)",
    make_cases=_bilinear_cases,
    reference=lambda inputs: torchvision_bilinear(inputs["a_l"], inputs["points"]),
    call=_bilinear_call,
    mistakes=BILINEAR_MISTAKES,
    hint="corners at floor(q) and floor(q)+1; a corner outside the image counts as 0; "
         "interpolate along X on both rows, then along Y.",
    exception_hints={"IndexError": "a corner outside the image must give 0: test 0 <= y < H and 0 <= x < W first."},
)

# --------------------------------------------------------------------------- exercises 3 and 4: positions, deform_conv2d

# (N, C_in, C_out, H, W, K_h, K_w, stride, padding, dilation, offset_range, mask kind, integer offsets)
_DEFORM_SETTINGS = [
    (1, 1, 1, 4, 4, 2, 2, 1, 0, 1, 0.0, "ones", False),
    (1, 1, 2, 5, 4, 3, 3, 1, 1, 1, 2.0, "ones", True),
    (2, 2, 3, 5, 6, 3, 3, 1, 1, 1, 2.5, "random", False),
    (2, 3, 4, 6, 7, 2, 3, 2, 1, 2, 2.5, "random", False),
    (2, 1, 2, 7, 5, 3, 2, 2, 2, 1, 4.0, "random", False),
    (2, 2, 3, 8, 6, 2, 2, 1, 0, 2, 1.5, "random", False),
]
_DEFORM_HIDDEN_SETTINGS = [
    (3, 2, 2, 9, 7, 3, 3, 2, 2, 2, 3.0, "random", False),
    (2, 3, 5, 7, 9, 3, 3, 1, 1, 1, 2.0, "random", False),
    (2, 2, 1, 6, 5, 1, 3, 1, 1, 3, 3.5, "random", False),
]


def _deform_inputs(exercise: str, number: int, setting, salt: str) -> dict:
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


def _deform_cases(exercise: str, hidden: bool, describe_index) -> list[Case]:
    settings = [(s, "") for s in _DEFORM_SETTINGS]
    if hidden:
        settings += [(s, "hidden") for s in _DEFORM_HIDDEN_SETTINGS]
    return [Case(_describe_setting(s), _deform_inputs(exercise, number, s, salt), describe_index)
            for number, (s, salt) in enumerate(settings, start=1)]


def _describe_position_index(index):
    which, n, k, h, w = index
    return f"p_{'yx'[which]}[n={n}, k={k}, h_out={h}, w_out={w}]"


def _describe_output_index(index):
    return f"[{', '.join(map(str, index))}] (n, c_out, h_out, w_out)"


def _kernel_size(inputs):
    return tuple(inputs["weight"].shape[2:])


def _positions_call(fn, inputs):
    result = fn(inputs["delta"], _kernel_size(inputs), stride=inputs["stride"], padding=inputs["padding"],
                dilation=inputs["dilation"])
    if isinstance(result, (tuple, list)) and len(result) == 2:
        try:
            return np.stack([np.asarray(r, dtype=np.float64) for r in result])
        except (TypeError, ValueError):
            return result
    return result


def _positions_reference(inputs):
    # Δ's layout and the position formula are those of torchvision.ops.deform_conv2d.
    return positions_numpy(inputs["delta"], _kernel_size(inputs), inputs["stride"], inputs["padding"],
                           inputs["dilation"])


def _positions_variant(**kw):
    return lambda inputs: positions_numpy(inputs["delta"], _kernel_size(inputs), inputs["stride"],
                                          inputs["padding"], inputs["dilation"], **kw)


def _deform_variant(**kw):
    def compute(inputs):
        args = {k: inputs[k] for k in ("a_l", "delta", "mask", "weight", "stride", "padding", "dilation")}
        return deform_conv2d_numpy(**args, **kw)
    return compute


_LAYOUT_MISTAKES = [  # (variant keywords, name, hint), shared by sampling_positions and deform_conv2d
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

POSITIONS = Exercise(
    function="sampling_positions",
    reference_name="the sampling positions of torchvision.ops.deform_conv2d",
    make_cases=lambda hidden: _deform_cases("sampling_positions", hidden, _describe_position_index),
    reference=_positions_reference,
    call=_positions_call,
    mistakes=[Mistake(name, hint, _positions_variant(**kw)) for kw, name, hint in _LAYOUT_MISTAKES],
    hint="p_y = h_out·stride − padding + kh·dilation + Δy with Δy = delta[n, 2k], Δx = delta[n, 2k+1], "
         "k = kh·K_w + kw; return (p_y, p_x), each (N, K_h·K_w, H_out, W_out).",
)

DEFORM_MISTAKES = (
    [Mistake(name, hint, _deform_variant(**kw)) for kw, name, hint in _LAYOUT_MISTAKES]
    + [Mistake(name, hint, _deform_variant(rule=rule)) for rule, (name, hint) in _SAMPLING_MISTAKES.items()
       if rule != "swap_yx"]
    + [Mistake("the modulation mask is ignored: every sample must be multiplied by m_k",
               "value += weight[c_out, c_in, kh, kw] * m_k * sample, with m_k = mask[n, k, h_out, w_out].",
               _deform_variant(use_mask=False)),
       Mistake("the `+ 1` in the output size is missing: each spatial size is one too small",
               "H_out = (H + 2·padding − dilation·(K_h − 1) − 1) // stride + 1, or read it from delta.shape.",
               _deform_variant(plus_one=False))]
)

DEFORM = Exercise(
    function="deform_conv2d",
    forbidden=("torchvision.ops.deform_conv2d", "torchvision.ops.DeformConv2d"),
    reference_name="torchvision.ops.deform_conv2d",
    make_cases=lambda hidden: _deform_cases("deform_conv2d", hidden, _describe_output_index),
    reference=lambda inputs: torchvision_deform_conv2d(**inputs),
    call=lambda fn, inputs: fn(inputs["a_l"], inputs["delta"], inputs["mask"], inputs["weight"],
                               stride=inputs["stride"], padding=inputs["padding"], dilation=inputs["dilation"]),
    mistakes=DEFORM_MISTAKES,
    hint="for each output pixel and tap k: p = (h_out·stride − padding + kh·dilation + Δy, "
         "w_out·stride − padding + kw·dilation + Δx); add weight[c_out, c_in, kh, kw] · m_k · bilinear(a_l[n, c_in], p).",
    exception_hints={"IndexError": "a sample outside the image must give 0, and H_out, W_out must follow the "
                                   "output-size formula (or delta.shape[2:])."},
)

EXERCISES = {e.function: e for e in (OUTPUT_SIZE, BILINEAR, POSITIONS, DEFORM)}


def check_conv_output_size(conv_output_size, hidden: bool = False) -> None:
    """Check ``conv_output_size`` against torch's convolution output sizes."""
    __tracebackhide__ = True
    show(run_check(OUTPUT_SIZE, conv_output_size, hidden))


def check_bilinear_interpolate(bilinear_interpolate, hidden: bool = False) -> None:
    """Check ``bilinear_interpolate(a_l, q_y, q_x)`` against torchvision's sampling, in float64."""
    __tracebackhide__ = True
    show(run_check(BILINEAR, bilinear_interpolate, hidden))


def check_sampling_positions(sampling_positions, hidden: bool = False) -> None:
    """Check ``sampling_positions(delta, kernel_size, stride, padding, dilation)``."""
    __tracebackhide__ = True
    show(run_check(POSITIONS, sampling_positions, hidden))


def check_deform_conv2d(deform_conv2d, hidden: bool = False) -> None:
    """Check ``deform_conv2d`` against ``torchvision.ops.deform_conv2d`` (float64, ``bias=None``)."""
    __tracebackhide__ = True
    show(run_check(DEFORM, deform_conv2d, hidden))
