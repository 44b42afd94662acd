"""Exercises 1–3: images into patches and patch embeddings.

* ``patchify(x, patch_size) -> (N, n_h·n_w, C·P·P)`` with x (N, C, H, W): patches row by row (patch (i, j)
  is number i·n_w + j), each patch's pixels flattened in (C, P, P) order, the order of ``F.unfold``.
* ``patch_embed_linear(x, weight, bias, patch_size) -> (N, n_h·n_w, D)``: patchify, then a linear projection
  whose weight is ``conv_proj.weight`` (D, C, P, P) seen as a (D, C·P·P) matrix.
* ``patch_embed_conv(x, weight, bias, patch_size) -> (N, n_h·n_w, D)``: the same with a P×P convolution of
  stride P, flattened and transposed as torchvision's ``VisionTransformer._process_input`` does.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from utils.checks.adapters import float64_array, float64_tensor, returned_array
from utils.checks.characterise import Layout
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.seeding import case_rng
from utils.vit.torchvision_vit import torchvision_vit


def patchify_variant(x, patch_size: int, order: str = "correct") -> np.ndarray:
    """Patches (N, L, C·P·P) of x (N, C, H, W); ``order`` reproduces the known flattening mistakes."""
    x = np.asarray(x, dtype=np.float64)
    N, C, H, W = x.shape
    P = patch_size
    n_h, n_w = H // P, W // P
    if order == "naive_reshape":  # x.reshape(N, L, C·P·P): consecutive memory, not square patches
        return x.reshape(N, n_h * n_w, C * P * P)
    blocks = x.reshape(N, C, n_h, P, n_w, P)            # (n, c, i, y, j, x)
    if order == "correct":
        patches = blocks.transpose(0, 2, 4, 1, 3, 5)     # (n, i, j, c, y, x)
    elif order == "column_major":
        patches = blocks.transpose(0, 4, 2, 1, 3, 5)     # (n, j, i, c, y, x)
    elif order == "channels_last":
        patches = blocks.transpose(0, 2, 4, 3, 5, 1)     # (n, i, j, y, x, c)
    elif order == "pixel_xy":
        patches = blocks.transpose(0, 2, 4, 1, 5, 3)     # (n, i, j, c, x, y)
    else:
        raise ValueError(order)
    return patches.reshape(N, n_h * n_w, C * P * P)


def patch_embed_variant(x, weight, bias, patch_size: int, order: str = "correct", stride: int | None = None,
                        no_transpose: bool = False) -> np.ndarray:
    """Patch embeddings (N, L, D) computed with a known mistake: a wrong patch ``order`` meeting the
    (C, P, P) weight, a convolution ``stride`` other than P, or the conv output reshaped (``no_transpose``)."""
    weight = np.asarray(weight, dtype=np.float64)
    D = weight.shape[0]
    if stride is not None or no_transpose:
        with torch.no_grad():
            y = F.conv2d(float64_tensor(x), float64_tensor(weight), float64_tensor(bias), stride=stride or patch_size)
        N, _, h, w = y.shape
        if no_transpose:
            return float64_array(y.reshape(N, h * w, D))
        return float64_array(y.flatten(2).transpose(1, 2))
    patches = patchify_variant(x, patch_size, order)
    return patches @ weight.reshape(D, -1).T + np.asarray(bias)


def torchvision_process_input(x, weight, bias, patch_size: int) -> np.ndarray:
    """torchvision's patch embedding (``conv_proj`` + flatten + permute) for conv weights ``weight``.

    torchvision's model takes square RGB images only; for other images (the notebook allows any C and
    H ≠ W) the same convolution is flattened row by row and transposed, as ``_process_input`` does.
    """
    x, weight, bias = float64_tensor(x), float64_tensor(weight), float64_tensor(bias)
    N, C, H, W = x.shape
    if C != 3 or H != W:
        with torch.no_grad():
            y = F.conv2d(x, weight, bias, stride=patch_size)
            return float64_array(y.reshape(N, y.shape[1], -1).permute(0, 2, 1))
    config = dict(image_size=H, patch_size=patch_size, num_layers=0, num_heads=1,
                  hidden_dim=weight.shape[0], mlp_dim=1, num_classes=1)
    model = torchvision_vit(config)
    with torch.no_grad():
        model.conv_proj.weight.copy_(weight)
        model.conv_proj.bias.copy_(bias)
        return float64_array(model._process_input(x))


def _image_cases(exercise: str, settings, hidden_settings, hidden, make, describe, describe_index) -> list[Case]:
    """Cases drawn by ``make(rng, setting, by_hand)``; the first visible one is made by hand."""
    cases = []
    for number, (s, salt) in enumerate(visible_then_hidden(settings, hidden_settings, hidden), start=1):
        inputs = make(case_rng(exercise, number, salt), s, number == 1 and not salt)
        cases.append(Case(describe(s), inputs, describe_index(inputs)))
    return cases


def _describe_image(s, extra=""):
    N, C, H, W, P = s[:5]
    return (f"N={N}, C={C}, {H}×{W} image, patch {P}×{P} → {H // P}×{W // P} = {(H // P) * (W // P)} patches"
            + extra)


# The flattening mistakes, order -> (name, hint), shared by patchify, patch_embed_linear and the ViT.
ORDER_MISTAKES = {
    "column_major": ("patches flattened in the wrong order (column-major): your patches are numbered "
                     "column by column, (i, j) → j·n_h + i",
                     "torchvision flattens the conv output, a grid of n_h rows and n_w columns of patches, row "
                     "by row: patch (i, j) is number i·n_w + j. Put the patch-row axis before the patch-column "
                     "axis when you merge them."),
    "channels_last": ("patches flattened in the wrong order (channels-last): each patch is flattened in "
                      "(P, P, C) order instead of (C, P, P)",
                      "the conv weight (D, C, P, P) pairs with pixels in (C, P, P) order: move the channel "
                      "axis in front of the two pixel axes before flattening a patch."),
    "pixel_xy": ("the pixels inside a patch are flattened column-major: (C, x, y) instead of (C, y, x)",
                 "keep the row (y) axis before the column (x) axis inside each patch."),
    "naive_reshape": ("the image was reshaped straight to (N, L, C·P·P) without moving axes: "
                      "a patch is not a contiguous block of memory",
                      "a reshape keeps the memory order, and the pixels of one patch are not next to each "
                      "other in memory. Give the patch row and the row inside a patch separate axes (the same "
                      "for columns), and move the axes so that each patch's (C, P, P) values come together "
                      "before you merge any of them."),
}

# --------------------------------------------------------------------------- exercise 1: patchify

# (N, C, H, W, P)
_PATCHIFY_SETTINGS = [(1, 1, 4, 4, 2), (2, 3, 8, 8, 4), (2, 2, 6, 9, 3), (3, 3, 12, 8, 4)]
_PATCHIFY_HIDDEN = [(2, 4, 10, 15, 5), (1, 3, 16, 16, 8), (4, 1, 8, 8, 2)]


def _patchify_inputs(rng, s, by_hand):
    N, C, H, W, P = s
    if by_hand:
        x = np.arange(N * C * H * W, dtype=np.float64).reshape(N, C, H, W)
    else:
        x = rng.normal(size=(N, C, H, W))
    return {"x": x, "patch_size": P}


def _patch_feature_index(inputs):
    N, C, H, W = inputs["x"].shape
    P = inputs["patch_size"]
    n_w = W // P

    def describe(index):
        n, patch, f = index
        c, y, x = np.unravel_index(f, (C, P, P))
        return (f"[{n}, {patch}, {f}] = image {n}, patch (row {patch // n_w}, col {patch % n_w}), "
                f"channel {c}, pixel (y={y}, x={x}) inside the patch")
    return describe


def _patchify_reference(inputs):
    P = inputs["patch_size"]
    with torch.no_grad():   # unfold: (N, C·P·P, L), features in (C, P, P) order, patches row by row
        return float64_array(F.unfold(float64_tensor(inputs["x"]), kernel_size=P, stride=P).transpose(1, 2))


PATCHIFY = Exercise(
    function="patchify",
    reference_name="torch.nn.functional.unfold (kernel and stride P), one patch per row",
    make_cases=lambda hidden: _image_cases("patchify", _PATCHIFY_SETTINGS, _PATCHIFY_HIDDEN, hidden,
                                           _patchify_inputs, _describe_image, _patch_feature_index),
    reference=_patchify_reference,
    call=lambda fn, inputs: returned_array(fn(float64_tensor(inputs["x"]), inputs["patch_size"])),
    mistakes=[Mistake(name, hint, lambda inputs, o=order: patchify_variant(inputs["x"], inputs["patch_size"], o))
              for order, (name, hint) in ORDER_MISTAKES.items()],
    hint="section 1 fixes two orders: the patches row by row over the grid of patches, and the pixels of "
         "each patch in (C, P, P) order. Try a small image whose pixel values are their own positions "
         "(torch.arange) and compare your rows with the figure above the exercise.",
    section="Exercise 1",
    layout=Layout(axes=("image", "patch", "patch feature")),
    covers={
        "a batch of 2 or more images": lambda case: case.inputs["x"].shape[0] >= 2,
        "a single channel": lambda case: case.inputs["x"].shape[1] == 1,
        "3 or more channels": lambda case: case.inputs["x"].shape[1] >= 3,
        "a non-square image wider than tall": lambda case: case.inputs["x"].shape[3] > case.inputs["x"].shape[2],
        "a non-square image taller than wide": lambda case: case.inputs["x"].shape[2] > case.inputs["x"].shape[3],
        "a patch size other than 2": lambda case: case.inputs["patch_size"] != 2,
        "random values of both signs": lambda case: bool((case.inputs["x"] < 0).any()),
    },
)

# --------------------------------------------------------------------------- exercises 2 and 3: patch embedding

# (N, C, H, W, P, D); the reference is torchvision's patch embedding for square RGB images, the same
# convolution for the others (the notebook allows any C and H ≠ W, as in exercise 1)
_EMBED_SETTINGS = [(1, 3, 4, 4, 2, 2), (2, 3, 8, 8, 4, 5), (2, 3, 12, 12, 3, 8), (2, 1, 6, 10, 2, 4)]
_EMBED_HIDDEN = [(3, 3, 16, 16, 8, 6), (2, 3, 10, 10, 5, 16), (1, 3, 6, 6, 1, 4), (2, 2, 12, 6, 3, 5)]


def _embed_inputs(rng, s, by_hand):
    N, C, H, W, P, D = s
    inputs = _patchify_inputs(rng, s[:5], by_hand)
    if by_hand:
        inputs["x"] = inputs["x"] / 10
        weight = np.zeros((D, C, P, P))
        weight[0, 0, 0, 0] = 1.0      # embedding 0 = top-left pixel of channel 0
        weight[1, 2, P - 1, 0] = -1.0  # embedding 1 = −(bottom-left pixel of channel 2)
        bias = np.array([0.0, 0.5])
    else:
        weight = rng.normal(size=(D, C, P, P)) / np.sqrt(C * P * P)
        bias = rng.normal(size=D)
    inputs.update(weight=weight, bias=bias)
    return inputs


def _describe_embed(s):
    return _describe_image(s, f", hidden_dim D={s[5]}")


def _embedding_index(inputs):
    n_w = inputs["x"].shape[3] // inputs["patch_size"]

    def describe(index):
        n, patch, d = index
        return f"[{n}, {patch}, {d}] = image {n}, patch (row {patch // n_w}, col {patch % n_w}), embedding {d}"
    return describe


def _embed_cases(exercise: str):
    return lambda hidden: _image_cases(exercise, _EMBED_SETTINGS, _EMBED_HIDDEN, hidden, _embed_inputs,
                                       _describe_embed, _embedding_index)


def _embed_call(fn, inputs):
    x, weight, bias = (float64_tensor(inputs[key]) for key in ("x", "weight", "bias"))
    return returned_array(fn(x, weight, bias, inputs["patch_size"]))


def _embed_reference(inputs):
    return torchvision_process_input(inputs["x"], inputs["weight"], inputs["bias"], inputs["patch_size"])


def _embed_variant(**kw):
    return lambda inputs: patch_embed_variant(inputs["x"], inputs["weight"], inputs["bias"],
                                              inputs["patch_size"], **kw)


def _half_stride(inputs):
    """Stride patch_size // 2, a mistake of its own only where that stride is not 1."""
    stride = inputs["patch_size"] // 2
    if stride <= 1:
        raise ValueError("the same as the stride-1 mistake")
    return patch_embed_variant(inputs["x"], inputs["weight"], inputs["bias"], inputs["patch_size"], stride=stride)


_EMBED_COVERS = {
    "a batch of 2 or more images": lambda case: case.inputs["x"].shape[0] >= 2,
    "a non-square image wider than tall": lambda case: case.inputs["x"].shape[3] > case.inputs["x"].shape[2],
    "a non-square image taller than wide": lambda case: case.inputs["x"].shape[2] > case.inputs["x"].shape[3],
    "a number of channels other than 3": lambda case: case.inputs["x"].shape[1] != 3,
    "patch size 1": lambda case: case.inputs["patch_size"] == 1,
    "a patch size of 3 or more": lambda case: case.inputs["patch_size"] >= 3,
    "D larger than C·P·P": lambda case: case.inputs["weight"].shape[0] > np.prod(case.inputs["weight"].shape[1:]),
    "D smaller than C·P·P": lambda case: case.inputs["weight"].shape[0] < np.prod(case.inputs["weight"].shape[1:]),
    "a non-zero bias": lambda case: bool(np.any(case.inputs["bias"] != 0)),
}

_NO_TRANSPOSE = Mistake(
    "the conv output, N×D×n_h×n_w, was reshaped straight to N×L×D instead of flattened and transposed",
    "a reshape never moves an axis: D stays in front. Merge the two grid axes into one patch axis first, "
    "then swap the patch axis and the D axis, as torchvision's code in section 2 does.",
    _embed_variant(no_transpose=True))
_STRIDE_HINT = ("the patches do not overlap: the P×P window moves by a whole patch at each step, so the "
                "convolution's stride is the patch size, not its default of 1.")
_STRIDE_MISTAKES = [
    Mistake("conv_proj stride ≠ patch size (stride 1): the windows overlap and there are too many patches",
            _STRIDE_HINT, _embed_variant(stride=1)),
    Mistake("conv_proj stride ≠ patch size (stride patch_size // 2): the windows overlap and there are too many "
            "patches", _STRIDE_HINT, _half_stride),
]

PATCH_EMBED_LINEAR = Exercise(
    function="patch_embed_linear",
    reference_name="torchvision VisionTransformer._process_input (conv_proj with the same weights)",
    make_cases=_embed_cases("patch_embed_linear"),
    reference=_embed_reference,
    call=_embed_call,
    mistakes=[Mistake(name, hint, _embed_variant(order=order)) for order, (name, hint) in ORDER_MISTAKES.items()]
    + [_NO_TRANSPOSE],
    hint="cut the patches as in exercise 1 and apply one affine map to all of them; the conv weight "
         "(D, C, P, P) seen as a (D, C·P·P) matrix pairs with patch pixels in (C, P, P) order. Check one "
         "patch by hand: embedding d is the sum of weight[d] times that patch, plus bias[d].",
    section="Exercise 2",
    layout=Layout(axes=("image", "patch", "embedding feature")),
    covers=_EMBED_COVERS,
)

PATCH_EMBED_CONV = Exercise(
    function="patch_embed_conv",
    reference_name="torchvision VisionTransformer._process_input (conv_proj with the same weights)",
    make_cases=_embed_cases("patch_embed_conv"),
    reference=_embed_reference,
    call=_embed_call,
    mistakes=_STRIDE_MISTAKES + [_NO_TRANSPOSE,
                                 Mistake(*ORDER_MISTAKES["column_major"], _embed_variant(order="column_major"))],
    hint="the convolution gives a grid N×D×n_h×n_w with one position per patch (the P×P windows do not "
         "overlap, so there are exactly n_h·n_w of them); the check wants a sequence N×L×D with the patches "
         "row by row, as torchvision's code in section 2 makes it.",
    section="Exercise 3",
    layout=Layout(axes=("image", "patch", "embedding feature")),
    covers=_EMBED_COVERS,
)


def check_patchify(patchify, hidden: bool = False) -> None:
    """Check ``patchify(x, patch_size)`` against ``F.unfold`` (row-major patches, (C, P, P) features)."""
    show(run_check(PATCHIFY, patchify, hidden))


def check_patch_embed_linear(patch_embed_linear, hidden: bool = False) -> None:
    """Check ``patch_embed_linear(x, weight, bias, patch_size)`` against torchvision's conv_proj."""
    show(run_check(PATCH_EMBED_LINEAR, patch_embed_linear, hidden))


def check_patch_embed_conv(patch_embed_conv, hidden: bool = False) -> None:
    """Check ``patch_embed_conv(x, weight, bias, patch_size)`` against torchvision's conv_proj."""
    show(run_check(PATCH_EMBED_CONV, patch_embed_conv, hidden))
