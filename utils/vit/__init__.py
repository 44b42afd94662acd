"""Checks for the Vision Transformer assignment (ViT, Dosovitskiy et al. 2020, as in torchvision).

Exercises and the student's signatures (tensors are ``torch.Tensor``):

* ``patchify(x, patch_size) -> (N, n_h·n_w, C·P·P)`` with ``x`` (N, C, H, W): patches ordered row by
  row (patch (i, j) is number i·n_w + j), each patch's pixels flattened in (C, P, P) order — the order
  of ``torch.nn.functional.unfold``.
* ``patch_embed_linear(x, weight, bias, patch_size) -> (N, n_h·n_w, D)``: patchify, then a linear
  projection whose weight is ``conv_proj.weight`` (D, C, P, P) seen as a (D, C·P·P) matrix.
* ``patch_embed_conv(x, weight, bias, patch_size) -> (N, n_h·n_w, D)``: the same with a P×P
  convolution of stride P, flattened and transposed as ``VisionTransformer._process_input`` does.
* ``embed_tokens(patch_embeddings, class_token, pos_embedding) -> (N, L + 1, D)``: the class token
  (1, 1, D) is prepended to every sequence, then the position embedding (1, L + 1, D) is added.
* ``ViT(image_size, patch_size, num_layers, num_heads, hidden_dim, mlp_dim, num_classes, in_channels=3)``:
  an ``nn.Module`` whose state_dict has torchvision's parameter names, so that it loads the state of a
  ``torchvision.models.VisionTransformer`` with ``strict=True`` and gives the same logits in eval mode.
* ``vit_param_count(image_size, patch_size, num_layers, num_heads, hidden_dim, mlp_dim, num_classes) -> int``
  computed by a formula (ViT-B/16: 86,567,656).
* ``attention_weights(x, in_proj_weight, in_proj_bias, num_heads) -> (N, num_heads, T, T)``: the attention
  weights softmax(Q_h K_hᵀ / √d_k) of each head, with ``in_proj_weight`` (3D, D) stacking W_q, W_k, W_v as in
  ``nn.MultiheadAttention``; as its ``need_weights=True, average_attn_weights=False`` output.

References are torch/torchvision computed in float64 when the check runs. The known mistakes are
the same computations done wrongly (functions ``*_variant`` below).
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F

from utils.checks.exercise import Case, Exercise, run_check
from utils.checks.compare import EXACT, Tolerance
from utils.checks.adapters import numbers
from utils.checks.feedback import show
from utils.checks.diagnose import Mistake
from utils.checks.seeding import case_rng

# --------------------------------------------------------------------------- torch helpers


def _t(x) -> torch.Tensor:
    return torch.from_numpy(np.array(x, dtype=np.float64))


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy().astype(np.float64)


def _plain(value):
    """What the student returned, with a tensor turned into a plain numpy array (no comparison here)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return value


def torchvision_vit(config: dict, state: dict | None = None, dtype=torch.float64):
    """A ``torchvision.models.VisionTransformer`` for ``config`` (eval mode), loaded with ``state``.

    Built under ``fork_rng`` so that its random initialisation leaves torch's global RNG unchanged.
    """
    from torchvision.models import VisionTransformer
    with torch.random.fork_rng(devices=[]):
        model = VisionTransformer(**config)
    model = model.to(dtype).eval()
    if state is not None:
        model.load_state_dict({k: torch.as_tensor(np.asarray(v), dtype=dtype) for k, v in state.items()},
                              strict=True)
    return model


def torchvision_process_input(x, weight, bias, patch_size) -> np.ndarray:
    """torchvision's patch embedding (``conv_proj`` + flatten + permute) for conv weights ``weight``."""
    x, weight, bias = _t(x), _t(weight), _t(bias)
    N, C, H, W = x.shape
    assert C == 3 and H == W, "torchvision's VisionTransformer takes square RGB images"
    config = dict(image_size=H, patch_size=patch_size, num_layers=0, num_heads=1,
                  hidden_dim=weight.shape[0], mlp_dim=1, num_classes=1)
    model = torchvision_vit(config)
    with torch.no_grad():
        model.conv_proj.weight.copy_(weight)
        model.conv_proj.bias.copy_(bias)
        return _np(model._process_input(x))


# --------------------------------------------------------------------------- mistaken variants

def patchify_variant(x, patch_size, order: str = "correct") -> np.ndarray:
    """Patches (N, L, C·P·P); ``order`` reproduces the known flattening mistakes."""
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


def patch_embed_variant(x, weight, bias, patch_size, order: str = "correct", stride: int | None = None,
                        no_transpose: bool = False) -> np.ndarray:
    """Patch embeddings (N, L, D) computed with a known mistake."""
    weight = np.asarray(weight, dtype=np.float64)
    D = weight.shape[0]
    if stride is not None or no_transpose:
        with torch.no_grad():
            y = F.conv2d(_t(x), _t(weight), _t(bias), stride=stride or patch_size)
        N, _, h, w = y.shape
        if no_transpose:
            return _np(y.reshape(N, h * w, D))
        return _np(y.flatten(2).transpose(1, 2))
    patches = patchify_variant(x, patch_size, order)   # a wrong order meets the (C, P, P) weight
    return patches @ weight.reshape(D, -1).T + np.asarray(bias)


def embed_tokens_variant(patches, class_token, pos_embedding, mistake: str = "correct") -> np.ndarray:
    patches = np.asarray(patches, dtype=np.float64)
    N, L, D = patches.shape
    cls = np.broadcast_to(np.asarray(class_token, dtype=np.float64), (N, 1, D))
    pos = np.asarray(pos_embedding, dtype=np.float64)
    if mistake == "appended":
        return np.concatenate([patches, cls], axis=1) + pos
    if mistake == "no_pos":
        return np.concatenate([cls, patches], axis=1)
    if mistake == "pos_before_cls":   # patches get pos[1:], the class token gets no position
        return np.concatenate([cls, patches + pos[:, 1:]], axis=1)
    if mistake == "pos_before_cls_first":  # patches get pos[:L], the class token gets none
        return np.concatenate([cls, patches + pos[:, :L]], axis=1)
    if mistake == "batch_shared_cls":  # class token replaces the first patch
        return np.concatenate([cls, patches[:, 1:]], axis=1) + pos[:, :L]
    assert mistake == "correct"
    return np.concatenate([cls, patches], axis=1) + pos


def vit_forward_variant(state: dict, images, config: dict, *, cls: str = "prepend", readout: str = "cls",
                        use_pos: bool = True, pos_before_cls: bool = False, final_ln: bool = True,
                        patch_order: str = "row", post_ln: bool = False, scale: str = "sqrt_dk",
                        activation: str = "gelu") -> np.ndarray:
    """The ViT forward pass written out with torch ops in float64, with switches for known mistakes.

    ``cls``: "prepend" or "append"; ``readout``: "cls" (the class token's row), "first", "last" or "mean";
    ``post_ln``: x = ln_1(x + MSA(x)), x = ln_2(x + MLP(x)) (the original Transformer's order);
    ``scale``: the scores' divisor, "sqrt_dk", "none", "sqrt_D" or "dk"; ``activation``: "gelu" (erf),
    "gelu_tanh" or "relu".
    """
    s = {k: _t(v) for k, v in state.items()}
    P, D, heads = config["patch_size"], config["hidden_dim"], config["num_heads"]
    eps = 1e-6
    with torch.no_grad():
        x = F.conv2d(_t(images), s["conv_proj.weight"], s["conv_proj.bias"], stride=P)
        if patch_order == "column_major":
            x = x.transpose(2, 3)
        x = x.flatten(2).transpose(1, 2)
        N = x.shape[0]
        token = s["class_token"].expand(N, -1, -1)
        pos = s["encoder.pos_embedding"]
        if pos_before_cls:
            x = torch.cat([token, x + pos[:, 1:]], dim=1)
        else:
            x = torch.cat([token, x] if cls == "prepend" else [x, token], dim=1)
            if use_pos:
                x = x + pos
        T = x.shape[1]
        divisor = {"sqrt_dk": (D // heads) ** 0.5, "none": 1.0, "sqrt_D": D ** 0.5, "dk": D // heads}[scale]
        act = {"gelu": F.gelu, "gelu_tanh": lambda u: F.gelu(u, approximate="tanh"), "relu": F.relu}[activation]
        for i in range(config["num_layers"]):
            p = f"encoder.layers.encoder_layer_{i}."

            def ln(u, which):
                return F.layer_norm(u, (D,), s[p + which + ".weight"], s[p + which + ".bias"], eps)

            h = x if post_ln else ln(x, "ln_1")
            q, k, v = (h @ s[p + "self_attention.in_proj_weight"].T
                       + s[p + "self_attention.in_proj_bias"]).chunk(3, dim=-1)
            q, k, v = (t.reshape(N, T, heads, D // heads).transpose(1, 2) for t in (q, k, v))
            a = torch.softmax(q @ k.transpose(-1, -2) / divisor, dim=-1) @ v
            a = a.transpose(1, 2).reshape(N, T, D)
            x = x + a @ s[p + "self_attention.out_proj.weight"].T + s[p + "self_attention.out_proj.bias"]
            if post_ln:
                x = ln(x, "ln_1")
            h = x if post_ln else ln(x, "ln_2")
            h = act(h @ s[p + "mlp.0.weight"].T + s[p + "mlp.0.bias"])
            x = x + h @ s[p + "mlp.3.weight"].T + s[p + "mlp.3.bias"]
            if post_ln:
                x = ln(x, "ln_2")
        if final_ln:
            x = F.layer_norm(x, (D,), s["encoder.ln.weight"], s["encoder.ln.bias"], eps)
        if readout == "mean":
            z = x.mean(dim=1)
        elif readout == "last" or (readout == "cls" and cls == "append"):
            z = x[:, -1]
        else:
            z = x[:, 0]
        return _np(z @ s["heads.head.weight"].T + s["heads.head.bias"])


def vit_state_shapes(config: dict) -> "OrderedDict[str, tuple]":
    """torchvision's parameter names and shapes for a ``VisionTransformer`` with ``config`` (3 channels)."""
    P, D, M = config["patch_size"], config["hidden_dim"], config["mlp_dim"]
    L = (config["image_size"] // P) ** 2
    shapes = OrderedDict(class_token=(1, 1, D))
    shapes["conv_proj.weight"] = (D, 3, P, P)
    shapes["conv_proj.bias"] = (D,)
    shapes["encoder.pos_embedding"] = (1, L + 1, D)
    for i in range(config["num_layers"]):
        p = f"encoder.layers.encoder_layer_{i}."
        shapes.update({p + "ln_1.weight": (D,), p + "ln_1.bias": (D,),
                       p + "self_attention.in_proj_weight": (3 * D, D), p + "self_attention.in_proj_bias": (3 * D,),
                       p + "self_attention.out_proj.weight": (D, D), p + "self_attention.out_proj.bias": (D,),
                       p + "ln_2.weight": (D,), p + "ln_2.bias": (D,),
                       p + "mlp.0.weight": (M, D), p + "mlp.0.bias": (M,),
                       p + "mlp.3.weight": (D, M), p + "mlp.3.bias": (D,)})
    shapes["encoder.ln.weight"] = (D,)
    shapes["encoder.ln.bias"] = (D,)
    shapes["heads.head.weight"] = (config["num_classes"], D)
    shapes["heads.head.bias"] = (config["num_classes"],)
    return shapes


def param_count_variant(image_size, patch_size, num_layers, num_heads, hidden_dim, mlp_dim, num_classes,
                        *, class_token=True, pos=True, pos_plus_one=True, biases=True, layer_norms=True,
                        out_proj=True, per_head=False, one_mlp_layer=False) -> int:
    """The parameter count of torchvision's ViT by formula, with switches for known mistakes."""
    P, D, M, C = patch_size, hidden_dim, mlp_dim, num_classes
    L = (image_size // P) ** 2
    b = int(biases)
    n = 3 * P * P * D + b * D                                   # conv_proj
    n += D * int(class_token)                                    # class token
    n += (L + int(pos_plus_one)) * D * int(pos)                  # position embedding
    attention = (3 * D * D + b * 3 * D) + (D * D + b * D) * int(out_proj)
    if per_head:                                                 # one full-size projection set per head
        attention *= num_heads
    mlp = D * M + b * M + (0 if one_mlp_layer else M * D + b * D)
    ln = 2 * D * int(layer_norms)
    n += num_layers * (2 * ln + attention + mlp)
    n += ln                                                      # final LayerNorm
    n += D * C + b * C                                           # head
    return n


# --------------------------------------------------------------------------- exercise 1: patchify

# (N, C, H, W, P)
_PATCHIFY_SETTINGS = [(1, 1, 4, 4, 2), (2, 3, 8, 8, 4), (2, 2, 6, 9, 3), (3, 3, 12, 8, 4)]
_PATCHIFY_HIDDEN = [(2, 4, 10, 15, 5), (1, 3, 16, 16, 8), (4, 1, 8, 8, 2)]


def _image_cases(exercise: str, settings, hidden_settings, hidden, make, describe, describe_index):
    rows = [(s, "") for s in settings] + ([(s, "hidden") for s in hidden_settings] if hidden else [])
    cases = []
    for number, (s, salt) in enumerate(rows, start=1):
        inputs = make(case_rng(exercise, number, salt), s, number == 1 and not salt)
        cases.append(Case(describe(s), inputs, describe_index(inputs)))
    return cases


def _patchify_inputs(rng, s, by_hand):
    N, C, H, W, P = s
    if by_hand:
        x = np.arange(N * C * H * W, dtype=np.float64).reshape(N, C, H, W)
    else:
        x = rng.normal(size=(N, C, H, W))
    return {"x": x, "patch_size": P}


def _describe_image(s, extra=""):
    N, C, H, W, P = s[:5]
    return (f"N={N}, C={C}, {H}×{W} image, patch {P}×{P} → {H // P}×{W // P} = {(H // P) * (W // P)} patches"
            + extra)


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
        return _np(F.unfold(_t(inputs["x"]), kernel_size=P, stride=P).transpose(1, 2))


_ORDER_MISTAKES = {  # order -> (name, hint), shared by patchify and patch_embed_linear
    "column_major": ("patches flattened in the wrong order (column-major): your patches are numbered "
                     "column by column, (i, j) → j·n_h + i",
                     "torchvision flattens the conv output (N, D, n_h, n_w) row by row: patch (i, j) is number "
                     "i·n_w + j. Put the n_h axis before the n_w axis before you merge them."),
    "channels_last": ("patches flattened in the wrong order (channels-last): each patch is flattened in "
                      "(P, P, C) order instead of (C, P, P)",
                      "the conv weight (D, C, P, P) pairs with pixels in (C, P, P) order: move the channel "
                      "axis in front of the two pixel axes before flattening a patch."),
    "pixel_xy": ("the pixels inside a patch are flattened column-major: (C, x, y) instead of (C, y, x)",
                 "keep the row (y) axis before the column (x) axis inside each patch."),
    "naive_reshape": ("the image was reshaped straight to (N, L, C·P·P) without moving axes: "
                      "a patch is not a contiguous block of memory",
                      "reshape to (N, C, n_h, P, n_w, P), permute to (N, n_h, n_w, C, P, P), then reshape "
                      "to (N, n_h·n_w, C·P·P)."),
}

PATCHIFY = Exercise(
    function="patchify",
    reference_name="torch.nn.functional.unfold(x, P, stride=P).transpose(1, 2)",
    make_cases=lambda hidden: _image_cases("patchify", _PATCHIFY_SETTINGS, _PATCHIFY_HIDDEN, hidden,
                                           _patchify_inputs, _describe_image, _patch_feature_index),
    reference=_patchify_reference,
    call=lambda fn, inputs: _plain(fn(_t(inputs["x"]), inputs["patch_size"])),
    mistakes=[Mistake(name, hint, lambda inputs, o=order: patchify_variant(inputs["x"], inputs["patch_size"], o))
              for order, (name, hint) in _ORDER_MISTAKES.items()],
    hint="patch (i, j) holds x[n, :, i·P:(i+1)·P, j·P:(j+1)·P], flattened in (C, P, P) order, "
         "and is number i·n_w + j in the sequence.",
)

# --------------------------------------------------------------------------- exercises 2 and 3: patch embedding

# (N, C, H, W, P, D); torchvision's patch embedding takes square RGB images
_EMBED_SETTINGS = [(1, 3, 4, 4, 2, 2), (2, 3, 8, 8, 4, 5), (2, 3, 12, 12, 3, 8)]
_EMBED_HIDDEN = [(3, 3, 16, 16, 8, 6), (2, 3, 10, 10, 5, 16), (1, 3, 6, 6, 1, 4)]


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


def _embed_call(fn, inputs):
    return _plain(fn(_t(inputs["x"]), _t(inputs["weight"]), _t(inputs["bias"]), inputs["patch_size"]))


def _embed_reference(inputs):
    return torchvision_process_input(inputs["x"], inputs["weight"], inputs["bias"], inputs["patch_size"])


def _embed_variant(**kw):
    return lambda inputs: patch_embed_variant(inputs["x"], inputs["weight"], inputs["bias"],
                                              inputs["patch_size"], **kw)


_NO_TRANSPOSE = Mistake(
    "the conv output (N, D, n_h, n_w) was reshaped to (N, L, D) instead of flattened and transposed",
    "x.flatten(2) gives (N, D, L); then .transpose(1, 2) gives (N, L, D). A reshape never moves the D axis.",
    _embed_variant(no_transpose=True))
_STRIDE = Mistake(
    "conv_proj stride ≠ patch size: the windows overlap and there are too many patches",
    "a patch embedding is a P×P convolution with stride P (kernel_size=patch_size, stride=patch_size).",
    _embed_variant(stride=1))
_STRIDE_HALF = Mistake(_STRIDE.name, _STRIDE.hint,
                       lambda inputs: patch_embed_variant(inputs["x"], inputs["weight"], inputs["bias"],
                                                          inputs["patch_size"], stride=max(1, inputs["patch_size"] // 2)))

_EMBED_HINT = ("z_(i, j) = W · vec(patch (i, j)) + b with W = weight.reshape(D, C·P·P): "
               "the conv weight's (C, P, P) order is the order of the patch pixels.")

PATCH_EMBED_LINEAR = Exercise(
    function="patch_embed_linear",
    reference_name="torchvision VisionTransformer._process_input (conv_proj with the same weights)",
    make_cases=lambda hidden: _image_cases("patch_embed_linear", _EMBED_SETTINGS, _EMBED_HIDDEN, hidden,
                                           _embed_inputs, _describe_embed, _embedding_index),
    reference=_embed_reference,
    call=_embed_call,
    mistakes=[Mistake(name, hint, _embed_variant(order=order)) for order, (name, hint) in _ORDER_MISTAKES.items()]
    + [_NO_TRANSPOSE],
    hint=_EMBED_HINT,
)

PATCH_EMBED_CONV = Exercise(
    function="patch_embed_conv",
    reference_name="torchvision VisionTransformer._process_input (conv_proj with the same weights)",
    make_cases=lambda hidden: _image_cases("patch_embed_conv", _EMBED_SETTINGS, _EMBED_HIDDEN, hidden,
                                           _embed_inputs, _describe_embed, _embedding_index),
    reference=_embed_reference,
    call=_embed_call,
    mistakes=[_STRIDE, _STRIDE_HALF, _NO_TRANSPOSE,
              Mistake(*_ORDER_MISTAKES["column_major"], _embed_variant(order="column_major"))],
    hint="F.conv2d(x, weight, bias, stride=patch_size) gives (N, D, n_h, n_w); flatten the last two axes "
         "and transpose to (N, n_h·n_w, D).",
)

# --------------------------------------------------------------------------- exercise 4: class token and positions

# (N, L, D)
_TOKEN_SETTINGS = [(1, 2, 3), (2, 4, 5), (3, 9, 8)]
_TOKEN_HIDDEN = [(4, 16, 6), (2, 1, 7)]


def _token_cases(hidden):
    rows = [(s, "") for s in _TOKEN_SETTINGS] + ([(s, "hidden") for s in _TOKEN_HIDDEN] if hidden else [])
    cases = []
    for number, ((N, L, D), salt) in enumerate(rows, start=1):
        rng = case_rng("embed_tokens", number, salt)
        if number == 1 and not salt:
            patches = np.arange(N * L * D, dtype=np.float64).reshape(N, L, D) + 1
            cls = np.full((1, 1, D), 100.0)
            pos = np.arange(1, L + 2, dtype=np.float64).reshape(1, L + 1, 1) * np.full((1, 1, D), 0.5)
            text = (f"N={N}, L={L} patches, D={D}: patches 1…{N * L * D}, class token all 100, "
                    f"position embedding 0.5·(t + 1) for token t (check by hand)")
        else:
            patches, cls, pos = rng.normal(size=(N, L, D)), rng.normal(size=(1, 1, D)), rng.normal(size=(1, L + 1, D))
            text = f"N={N}, L={L} patches, D={D}, random values"
        cases.append(Case(text, {"patches": patches, "class_token": cls, "pos_embedding": pos},
                          lambda index: (f"[{index[0]}, {index[1]}, {index[2]}] = sequence {index[0]}, "
                                         f"{'the class token' if index[1] == 0 else f'token {index[1]}'}, "
                                         f"feature {index[2]}")))
    return cases


def _token_variant(mistake):
    return lambda inputs: embed_tokens_variant(inputs["patches"], inputs["class_token"], inputs["pos_embedding"],
                                               mistake)


_POS_BEFORE_CLS = "position embedding added before the class token is concatenated"
_POS_BEFORE_CLS_HINT = ("pos_embedding has L + 1 rows, row 0 belongs to the class token: concatenate "
                        "[class token, patches] first, then add pos_embedding.")

EMBED_TOKENS = Exercise(
    function="embed_tokens",
    reference_name="torchvision's torch.cat([class_token.expand(N, -1, -1), x], dim=1) + pos_embedding",
    make_cases=_token_cases,
    reference=lambda inputs: _np(torch.cat([_t(inputs["class_token"]).expand(len(inputs["patches"]), -1, -1),
                                            _t(inputs["patches"])], dim=1) + _t(inputs["pos_embedding"])),
    call=lambda fn, inputs: _plain(fn(_t(inputs["patches"]), _t(inputs["class_token"]),
                                      _t(inputs["pos_embedding"]))),
    mistakes=[
        Mistake("class token appended instead of prepended: it must be token 0",
                "torch.cat([class_tokens, patches], dim=1): the class token comes first, and x[:, 0] reads it.",
                _token_variant("appended")),
        Mistake("no position embedding: the tokens carry no information about where their patch was",
                "add pos_embedding (1, L + 1, D) to the (N, L + 1, D) sequence; it broadcasts over the batch.",
                _token_variant("no_pos")),
        Mistake(_POS_BEFORE_CLS + ": the class token got no position embedding", _POS_BEFORE_CLS_HINT,
                _token_variant("pos_before_cls")),
        Mistake(_POS_BEFORE_CLS + ": the patches got rows 0…L−1 and the class token none", _POS_BEFORE_CLS_HINT,
                _token_variant("pos_before_cls_first")),
    ],
    hint="x = torch.cat([class_token.expand(N, -1, -1), patches], dim=1) + pos_embedding.",
    exception_hints={"RuntimeError": f"{_POS_BEFORE_CLS} (shape mismatch)? {_POS_BEFORE_CLS_HINT}",
                     "ValueError": f"{_POS_BEFORE_CLS} (shape mismatch)? {_POS_BEFORE_CLS_HINT}"},
)

# --------------------------------------------------------------------------- exercise 5: the whole ViT

SMALL_CONFIG = dict(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128,
                    num_classes=10)
_VIT_CONFIGS = [(SMALL_CONFIG, 2), (dict(image_size=12, patch_size=4, num_layers=1, num_heads=4, hidden_dim=16,
                                         mlp_dim=24, num_classes=5), 3)]
_VIT_HIDDEN = [(dict(image_size=16, patch_size=4, num_layers=3, num_heads=2, hidden_dim=12, mlp_dim=20,
                     num_classes=7), 2),
               (dict(image_size=8, patch_size=2, num_layers=2, num_heads=1, hidden_dim=8, mlp_dim=8,
                     num_classes=3), 4)]


def _random_state(rng, config) -> dict:
    """Random parameters with torchvision's names; scaled so that no layer saturates."""
    state = {}
    for name, shape in vit_state_shapes(config).items():
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln.weight")):
            value = 1 + 0.2 * rng.normal(size=shape)
        elif name.endswith("weight") and len(shape) >= 2:
            value = rng.normal(size=shape) / np.sqrt(np.prod(shape[1:]))
        elif name in ("class_token", "encoder.pos_embedding"):
            value = rng.normal(size=shape)
        else:
            value = 0.2 * rng.normal(size=shape)
        state[name] = value
    return state


def _vit_cases(hidden):
    rows = [(c, "") for c in _VIT_CONFIGS] + ([(c, "hidden") for c in _VIT_HIDDEN] if hidden else [])
    cases = []
    for number, ((config, N), salt) in enumerate(rows, start=1):
        rng = case_rng("ViT", number, salt)
        S = config["image_size"]
        text = (", ".join(f"{k}={v}" for k, v in config.items())
                + f"; {N} random {S}×{S} RGB images, random parameters with torchvision's names")
        cases.append(Case(text, {"config": config, "state": _random_state(rng, config),
                                 "images": rng.normal(size=(N, 3, S, S))},
                          lambda index: f"logits[image {index[0]}, class {index[1]}]"))
    return cases


def _vit_call(cls, inputs):
    with torch.random.fork_rng(devices=[]):   # the student's init must not move the global RNG
        model = cls(**inputs["config"])
    model.load_state_dict({k: torch.tensor(v, dtype=torch.float32) for k, v in inputs["state"].items()},
                          strict=True)
    model.eval()
    with torch.no_grad():
        return _plain(model(torch.tensor(inputs["images"], dtype=torch.float32)))


def _vit_reference(inputs):
    model = torchvision_vit(inputs["config"], inputs["state"])
    with torch.no_grad():
        return _np(model(_t(inputs["images"])))


def _vit_variant(**kw):
    return lambda inputs: vit_forward_variant(inputs["state"], inputs["images"], inputs["config"], **kw)


_POST_LN = ("post-LN where pre-LN was asked: LayerNorm was applied after the residual addition "
            "(x = LN(x + MSA(x))) instead of before the sublayer (x = x + MSA(LN(x)))")
_POST_LN_HINT = ("ViT is pre-norm: x = x + self_attention(ln_1(x)), then x = x + mlp(ln_2(x)); the residual "
                 "stream itself is normalised only once, by encoder.ln after the last block.")
_NO_SCALING = "no √d_k scaling: the attention scores q·k were not divided by √d_k"
_NO_SCALING_HINT = ("softmax(q kᵀ / √d_k) with d_k = hidden_dim // num_heads, the size of one head "
                    "(nn.MultiheadAttention does this for you).")
_SQRT_D = "the attention scores were divided by √hidden_dim instead of √d_k (d_k = hidden_dim / num_heads)"
_SQRT_D_HINT = "each head has d_k = hidden_dim // num_heads features; divide its scores by math.sqrt(d_k)."

_APPENDED = ("class token appended instead of prepended (torchvision's class token is token 0 and "
             "pos_embedding[:, 0] belongs to it)")
_APPENDED_HINT = "x = torch.cat([class_token.expand(N, -1, -1), x], dim=1); classify from x[:, 0]."

VIT_MISTAKES = [
    Mistake("classification from the mean of tokens instead of the class token",
            "torchvision classifies from the class token only: heads(x[:, 0]) after the final LayerNorm.",
            _vit_variant(readout="mean")),
    Mistake("missing final LayerNorm: torchvision applies encoder.ln after the last block",
            "x = self.encoder.ln(self.encoder.layers(x)) before taking x[:, 0].",
            _vit_variant(final_ln=False)),
    Mistake("no position embedding: encoder.pos_embedding is never added", "add pos_embedding right after "
            "prepending the class token, before the first encoder block.", _vit_variant(use_pos=False)),
    Mistake(_APPENDED, _APPENDED_HINT, _vit_variant(cls="append", readout="last")),
    Mistake(_APPENDED, _APPENDED_HINT, _vit_variant(cls="append", readout="first")),
    Mistake(_POS_BEFORE_CLS + ": the class token got no position embedding", _POS_BEFORE_CLS_HINT,
            _vit_variant(pos_before_cls=True)),
    Mistake(_ORDER_MISTAKES["column_major"][0], _ORDER_MISTAKES["column_major"][1],
            _vit_variant(patch_order="column_major")),
    Mistake(_POST_LN, _POST_LN_HINT, _vit_variant(post_ln=True)),
    Mistake(_POST_LN, _POST_LN_HINT, _vit_variant(post_ln=True, final_ln=False)),
    Mistake(_NO_SCALING, _NO_SCALING_HINT, _vit_variant(scale="none")),
    Mistake(_SQRT_D, _SQRT_D_HINT, _vit_variant(scale="sqrt_D")),
    Mistake("the attention scores were divided by d_k instead of √d_k", _NO_SCALING_HINT, _vit_variant(scale="dk")),
    Mistake("the MLP uses the tanh approximation of GELU; torchvision's nn.GELU() is the exact (erf) one",
            "use nn.GELU() (approximate='none').", _vit_variant(activation="gelu_tanh")),
    Mistake("the MLP uses ReLU instead of GELU", "mlp = Linear(D, mlp_dim), nn.GELU(), Dropout, Linear(mlp_dim, D), "
            "Dropout.", _vit_variant(activation="relu")),
]

VIT = Exercise(
    function="ViT",
    reference_name="torchvision.models.VisionTransformer with the same state_dict (eval mode)",
    make_cases=_vit_cases,
    reference=_vit_reference,
    call=_vit_call,
    mistakes=VIT_MISTAKES,
    tolerance=Tolerance(atol=1e-4, rtol=1e-4),   # your model runs in float32
    hint="patches → conv_proj (stride P) → flatten+transpose → prepend class token → + pos_embedding → "
         "encoder blocks (pre-norm: x + attn(ln_1(x)), then x + mlp(ln_2(x))) → encoder.ln → heads.head(x[:, 0]). "
         "LayerNorms use eps=1e-6 and the MLP's GELU is the exact (erf) one.",
    exception_hints={
        "RuntimeError": ("if the message lists missing or unexpected keys, your parameter names differ from "
                         "torchvision's (compare with torchvision's state_dict().keys()); if it is a size "
                         "mismatch, check that conv_proj's stride equals the patch size (conv_proj stride ≠ "
                         "patch size gives too many tokens) and that the class token is concatenated before "
                         "the position embedding is added."),
        "TypeError": "ViT is built as ViT(image_size=..., patch_size=..., num_layers=..., num_heads=..., "
                     "hidden_dim=..., mlp_dim=..., num_classes=...); keep these argument names.",
    },
)

# --------------------------------------------------------------------------- exercise 6: parameter count

VIT_B_16 = dict(image_size=224, patch_size=16, num_layers=12, num_heads=12, hidden_dim=768, mlp_dim=3072,
                num_classes=1000)
_COUNT_CONFIGS = [SMALL_CONFIG, dict(image_size=8, patch_size=2, num_layers=1, num_heads=1, hidden_dim=4,
                                     mlp_dim=6, num_classes=3), VIT_B_16]
_COUNT_HIDDEN = [dict(image_size=16, patch_size=4, num_layers=3, num_heads=4, hidden_dim=16, mlp_dim=40,
                      num_classes=7),
                 dict(image_size=30, patch_size=10, num_layers=2, num_heads=1, hidden_dim=6, mlp_dim=5,
                      num_classes=2)]
_VIT_B_16_COUNT: int | None = None   # built once per process: vit_b_16 has 86M parameters


def torchvision_param_count(config: dict) -> int:
    """Trainable parameters of torchvision's ViT for ``config`` (vit_b_16(weights=None) for ViT-B/16)."""
    global _VIT_B_16_COUNT
    if config == VIT_B_16:
        if _VIT_B_16_COUNT is None:
            from torchvision.models import vit_b_16
            with torch.random.fork_rng(devices=[]):
                model = vit_b_16(weights=None)
            _VIT_B_16_COUNT = sum(p.numel() for p in model.parameters() if p.requires_grad)
            del model
        return _VIT_B_16_COUNT
    model = torchvision_vit(config, dtype=torch.float32)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _count_cases(hidden):
    configs = _COUNT_CONFIGS + (_COUNT_HIDDEN if hidden else [])

    def describe(index):
        c = configs[index[0]]
        name = "ViT-B/16: " if c == VIT_B_16 else ""
        return f"vit_param_count({name}" + ", ".join(f"{k}={v}" for k, v in c.items()) + ")"

    return [Case(f"{len(configs)} configurations, ViT-B/16 included", {"configs": configs}, describe)]


def _count_variant(**kw):
    return lambda inputs: np.array([param_count_variant(**c, **kw) for c in inputs["configs"]], dtype=np.float64)


PARAM_COUNT = Exercise(
    function="vit_param_count",
    reference_name="the parameter count of torchvision's VisionTransformer (vit_b_16 for ViT-B/16)",
    make_cases=_count_cases,
    reference=lambda inputs: np.array([torchvision_param_count(c) for c in inputs["configs"]], dtype=np.float64),
    call=lambda fn, inputs: numbers([fn(**c) for c in inputs["configs"]]),
    mistakes=[
        Mistake("the class token is not counted, or the position embedding has L rows instead of L + 1 "
                "(either way D parameters are missing)",
                "class_token is a learned (1, 1, D) parameter, and pos_embedding has one row per token, "
                "the class token's included: (1, L + 1, D).",
                _count_variant(class_token=False)),
        Mistake("the position embedding is not counted ((L + 1)·D parameters)",
                "encoder.pos_embedding is learned: one D-vector per token, class token included.",
                _count_variant(pos=False)),
        Mistake("biases are not counted", "every nn.Linear, the conv and the attention projections have biases.",
                _count_variant(biases=False)),
        Mistake("LayerNorm parameters are not counted (2·D per LayerNorm: 2 per block + the final one)",
                "each LayerNorm has a weight and a bias of size D.", _count_variant(layer_norms=False)),
        Mistake("the attention output projection (out_proj, D² + D) is not counted",
                "attention has 4 projections: W_q, W_k, W_v (in_proj, 3D² + 3D) and W_o (out_proj, D² + D).",
                _count_variant(out_proj=False)),
        Mistake("attention counted once per head with full-size projections: the heads split D, they do not "
                "multiply the parameters", "the number of heads does not change the parameter count.",
                _count_variant(per_head=True)),
        Mistake("the MLP has two linear layers (D→mlp_dim→D); only one is counted",
                "MLP: D·mlp_dim + mlp_dim + mlp_dim·D + D.", _count_variant(one_mlp_layer=True)),
    ],
    tolerance=EXACT,
    hint="conv_proj 3·P²·D + D; class token D; pos (L+1)·D with L = (image_size/P)²; per block "
         "2·2D (LayerNorms) + 4D² + 4D (attention) + 2·D·mlp_dim + mlp_dim + D (MLP); final LayerNorm 2D; "
         "head D·classes + classes.",
)

# --------------------------------------------------------------------------- exercise 7: attention weights

# (N, T, D, num_heads)
_ATTN_SETTINGS = [(1, 3, 2, 1), (2, 5, 8, 2), (2, 17, 16, 4)]
_ATTN_HIDDEN = [(3, 10, 12, 3), (1, 7, 6, 1), (2, 9, 32, 8)]


def torch_attention_weights(x, in_proj_weight, in_proj_bias, num_heads) -> np.ndarray:
    """Per-head weights of ``nn.MultiheadAttention`` (float64) with the case's in_proj parameters."""
    x = _t(x)
    D = x.shape[-1]
    with torch.random.fork_rng(devices=[]):
        mha = torch.nn.MultiheadAttention(D, num_heads, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        mha.in_proj_weight.copy_(_t(in_proj_weight))
        mha.in_proj_bias.copy_(_t(in_proj_bias))
        _, weights = mha(x, x, x, need_weights=True, average_attn_weights=False)
    return _np(weights)


def attention_weights_variant(x, in_proj_weight, in_proj_bias, num_heads, *, scale="sqrt_dk", dim=-1,
                              split="ok", swap_qk=False, bias=True, average=False) -> np.ndarray:
    """The attention weights (N, h, T, T) in numpy, with switches for known mistakes."""
    x, W, b = (np.asarray(a, dtype=np.float64) for a in (x, in_proj_weight, in_proj_bias))
    N, T, D = x.shape
    d_k = D // num_heads
    qkv = x @ W.T + (b if bias else 0)
    q, k = qkv[..., :D], qkv[..., D:2 * D]
    if swap_qk:
        q, k = k, q
    if split == "ok":
        q, k = (a.reshape(N, T, num_heads, d_k).transpose(0, 2, 1, 3) for a in (q, k))
    else:   # reshape straight to (N, h, T, d_k)
        q, k = (a.reshape(N, num_heads, T, d_k) for a in (q, k))
    divisor = {"sqrt_dk": np.sqrt(d_k), "none": 1.0, "sqrt_D": np.sqrt(D), "dk": d_k}[scale]
    scores = q @ k.transpose(0, 1, 3, 2) / divisor
    scores = scores - scores.max(axis=dim, keepdims=True)
    weights = np.exp(scores) / np.exp(scores).sum(axis=dim, keepdims=True)
    return weights.mean(axis=1) if average else weights


def _attention_cases(hidden):
    rows = [(s, "") for s in _ATTN_SETTINGS] + ([(s, "hidden") for s in _ATTN_HIDDEN] if hidden else [])
    cases = []
    for number, ((N, T, D, h), salt) in enumerate(rows, start=1):
        rng = case_rng("attention_weights", number, salt)
        if number == 1 and not salt:
            x = np.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
            W = np.vstack([np.eye(D)] * 3)
            b = np.zeros(3 * D)
            text = ("N=1, T=3 tokens (1, 0), (0, 1), (1, 1), D=2, 1 head, W_q = W_k = W_v = I, no bias: "
                    "weights = softmax(x xᵀ / √2) row by row (check by hand)")
        else:
            x = rng.normal(size=(N, T, D))
            W = rng.normal(size=(3 * D, D)) / np.sqrt(D) * 1.5
            b = 0.5 * rng.normal(size=3 * D)
            text = f"N={N}, T={T} tokens, D={D}, {h} head{'s' if h > 1 else ''} (d_k={D // h}), random values"
        cases.append(Case(text, {"x": x, "in_proj_weight": W, "in_proj_bias": b, "num_heads": h},
                          lambda index: (f"[{index[0]}, {index[1]}, {index[2]}, {index[3]}] = sequence {index[0]}, "
                                         f"head {index[1]}, query token {index[2]}, key token {index[3]}")))
    return cases


def _attention_variant(**kw):
    return lambda inputs: attention_weights_variant(inputs["x"], inputs["in_proj_weight"], inputs["in_proj_bias"],
                                                    inputs["num_heads"], **kw)


ATTENTION_WEIGHTS = Exercise(
    function="attention_weights",
    reference_name="nn.MultiheadAttention's weights (need_weights=True, average_attn_weights=False)",
    make_cases=_attention_cases,
    reference=lambda inputs: torch_attention_weights(**inputs),
    call=lambda fn, inputs: _plain(fn(_t(inputs["x"]), _t(inputs["in_proj_weight"]), _t(inputs["in_proj_bias"]),
                                      inputs["num_heads"])),
    mistakes=[
        Mistake(_NO_SCALING, _NO_SCALING_HINT, _attention_variant(scale="none")),
        Mistake(_SQRT_D, _SQRT_D_HINT, _attention_variant(scale="sqrt_D")),
        Mistake("the scores were divided by d_k instead of √d_k", _NO_SCALING_HINT, _attention_variant(scale="dk")),
        Mistake("softmax over the query axis (dim=-2): each column of the weights sums to 1 instead of each row",
                "softmax(..., dim=-1): for each query, the weights over the keys sum to 1.",
                _attention_variant(dim=-2)),
        Mistake("queries and keys swapped (the result is the transpose of the scores before the softmax)",
                "in_proj_weight stacks [W_q; W_k; W_v]: rows 0…D−1 give q, rows D…2D−1 give k.",
                _attention_variant(swap_qk=True)),
        Mistake("heads split in the wrong order: (N, T, D) was reshaped straight to (N, h, T, d_k)",
                "reshape to (N, T, h, d_k) first, then transpose(1, 2) to (N, h, T, d_k).",
                _attention_variant(split="no_transpose")),
        Mistake("the in_proj bias was left out", "q = x @ W_q.T + b_q with b_q = in_proj_bias[:D], and the same "
                "for k.", _attention_variant(bias=False)),
        Mistake("the weights were averaged over the heads: return one (T, T) matrix per head, shape (N, h, T, T)",
                "do not take the mean over the head axis; the figure below does that itself.",
                _attention_variant(average=True)),
    ],
    hint="q, k = (x @ in_proj_weight.T + in_proj_bias).chunk(3, dim=-1)[:2]; split each into heads "
         "(N, T, h, d_k) → (N, h, T, d_k); weights = softmax(q kᵀ / √d_k, dim=-1).",
    exception_hints={"RuntimeError": "check the shapes: d_k = D // num_heads, and q kᵀ needs k.transpose(-2, -1)."},
)

EXERCISES = {e.function: e for e in (PATCHIFY, PATCH_EMBED_LINEAR, PATCH_EMBED_CONV, EMBED_TOKENS, VIT,
                                      PARAM_COUNT, ATTENTION_WEIGHTS)}


def check_patchify(patchify, hidden: bool = False) -> None:
    """Check ``patchify(x, patch_size)`` against ``F.unfold`` (row-major patches, (C, P, P) features)."""
    show(run_check(PATCHIFY, patchify, hidden))


def check_patch_embed_linear(patch_embed_linear, hidden: bool = False) -> None:
    """Check ``patch_embed_linear(x, weight, bias, patch_size)`` against torchvision's conv_proj."""
    show(run_check(PATCH_EMBED_LINEAR, patch_embed_linear, hidden))


def check_patch_embed_conv(patch_embed_conv, hidden: bool = False) -> None:
    """Check ``patch_embed_conv(x, weight, bias, patch_size)`` against torchvision's conv_proj."""
    show(run_check(PATCH_EMBED_CONV, patch_embed_conv, hidden))


def check_embed_tokens(embed_tokens, hidden: bool = False) -> None:
    """Check ``embed_tokens(patches, class_token, pos_embedding)``."""
    show(run_check(EMBED_TOKENS, embed_tokens, hidden))


def check_ViT(ViT, hidden: bool = False) -> None:
    """Check the class ``ViT``: loads torchvision's state_dict (strict) and gives the same logits."""
    show(run_check(VIT, ViT, hidden))


def check_vit_param_count(vit_param_count, hidden: bool = False) -> None:
    """Check ``vit_param_count(...)`` against torchvision's parameter counts, ViT-B/16 included."""
    show(run_check(PARAM_COUNT, vit_param_count, hidden))


def check_attention_weights(attention_weights, hidden: bool = False) -> None:
    """Check ``attention_weights(x, in_proj_weight, in_proj_bias, num_heads)`` against nn.MultiheadAttention."""
    show(run_check(ATTENTION_WEIGHTS, attention_weights, hidden))
