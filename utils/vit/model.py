"""Exercise 5: the class ``ViT(image_size, patch_size, num_layers, num_heads, hidden_dim, mlp_dim, num_classes,
in_channels=3)``.

An ``nn.Module`` whose state_dict has torchvision's parameter names: it loads the state of a
``torchvision.models.VisionTransformer`` with ``strict=True`` and gives the same logits (N, num_classes)
on float32 images (N, in_channels, S, S), in eval mode and in train mode (torchvision's dropout is 0.0), and
its forward pass leaves the model's mode and parameters as they are. Some cases scale the activations
down to about 1e-3, where LayerNorm's eps (1e-6 in torchvision) changes the result.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from utils.attention import mha
from utils.checks.adapters import float64_array, float64_tensor, returned_array
from utils.checks.characterise import Layout
from utils.checks.compare import Tolerance
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.rules import kept_unchanged
from utils.checks.seeding import case_rng
from utils.vit.attention_weights import DK, DK_HINT, NO_SCALING, NO_SCALING_HINT, SQRT_D, SQRT_D_HINT, score_divisor
from utils.vit.patches import ORDER_MISTAKES
from utils.vit.tokens import POS_BEFORE_CLS, POS_BEFORE_CLS_HINT
from utils.vit.torchvision_vit import SMALL_CONFIG, torchvision_vit, vit_state_shapes

# (config, number of images, extras): extras "mode" ("eval" or "train"), "scale" (of the residual stream:
# 1e-3 makes LayerNorm's eps matter), "in_channels"
_CONFIGS = [(SMALL_CONFIG, 2, {}),
            (dict(image_size=12, patch_size=4, num_layers=1, num_heads=4, hidden_dim=16, mlp_dim=24,
                  num_classes=5), 3, {}),
            (dict(image_size=8, patch_size=4, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16,
                  num_classes=4), 2, {"scale": 1e-3}),
            (dict(image_size=12, patch_size=3, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=12,
                  num_classes=3), 2, {"mode": "train"})]
_HIDDEN_CONFIGS = [(dict(image_size=16, patch_size=4, num_layers=3, num_heads=2, hidden_dim=12, mlp_dim=20,
                         num_classes=7), 2, {}),
                   (dict(image_size=8, patch_size=2, num_layers=2, num_heads=1, hidden_dim=8, mlp_dim=8,
                         num_classes=3), 4, {}),
                   (dict(image_size=8, patch_size=2, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                         num_classes=10), 3, {"in_channels": 1}),
                   (dict(image_size=6, patch_size=3, num_layers=3, num_heads=4, hidden_dim=8, mlp_dim=8,
                         num_classes=2), 1, {"mode": "train", "scale": 1e-3, "in_channels": 2})]

# Scaled by a case's "scale": every parameter that writes into the residual stream.
_STREAM = ("conv_proj.weight", "conv_proj.bias", "class_token", "encoder.pos_embedding",
           "self_attention.out_proj.weight", "self_attention.out_proj.bias", "mlp.3.weight", "mlp.3.bias")

# The student's model runs in float32; the reference in float64.
_FLOAT32_MODEL = Tolerance(atol=1e-4, rtol=1e-4)

_ACTIVATIONS = {"gelu": F.gelu, "gelu_tanh": lambda u: F.gelu(u, approximate="tanh"), "relu": F.relu}


def vit_forward_variant(state: dict, images, config: dict, *, cls: str = "prepend", readout: str = "cls",
                        use_pos: bool = True, pos_before_cls: bool = False, final_ln: bool = True,
                        patch_order: str = "row", post_ln: bool = False, scale: str = "sqrt_dk",
                        activation: str = "gelu", block_eps: float = 1e-6, final_eps: float = 1e-6,
                        batch_first: bool = True) -> np.ndarray:
    """The ViT's logits (N, num_classes), written out with torch ops in float64, with switches for known mistakes.

    ``cls``: "prepend" or "append"; ``readout``: "cls" (the class token's row), "first", "last" or "mean";
    ``post_ln``: x = ln_1(x + MSA(x)), x = ln_2(x + MLP(x)) (the original Transformer's order);
    ``scale``: the scores' divisor, "sqrt_dk", "none", "sqrt_D" or "dk"; ``activation``: "gelu" (erf),
    "gelu_tanh" or "relu"; ``block_eps``, ``final_eps``: the LayerNorms' eps in the blocks and in encoder.ln;
    ``batch_first=False``: attention across the images of the batch (nn.MultiheadAttention without
    batch_first=True). The attention is :func:`utils.attention.mha.multi_head_attention`.
    """
    s = {k: float64_tensor(v) for k, v in state.items()}
    P, D, heads = config["patch_size"], config["hidden_dim"], config["num_heads"]
    act = _ACTIVATIONS[activation]
    with torch.no_grad():
        x = F.conv2d(float64_tensor(images), s["conv_proj.weight"], s["conv_proj.bias"], stride=P)
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
        for i in range(config["num_layers"]):
            p = f"encoder.layers.encoder_layer_{i}."

            def ln(u, which, p=p):
                return F.layer_norm(u, (D,), s[p + which + ".weight"], s[p + which + ".bias"], block_eps)

            attention = mha.projections_from_packed(
                s[p + "self_attention.in_proj_weight"], s[p + "self_attention.in_proj_bias"],
                s[p + "self_attention.out_proj.weight"], s[p + "self_attention.out_proj.bias"])
            h = x if post_ln else ln(x, "ln_1")
            if not batch_first:   # (N, T, D) read as (sequence N, batch T, D)
                h = h.transpose(0, 1)
            h = mha.multi_head_attention(h, h, h, attention, heads, divisor=score_divisor(scale))[0]
            x = x + (h if batch_first else h.transpose(0, 1))
            if post_ln:
                x = ln(x, "ln_1")
            h = x if post_ln else ln(x, "ln_2")
            h = act(h @ s[p + "mlp.0.weight"].T + s[p + "mlp.0.bias"])
            x = x + h @ s[p + "mlp.3.weight"].T + s[p + "mlp.3.bias"]
            if post_ln:
                x = ln(x, "ln_2")
        if final_ln:
            x = F.layer_norm(x, (D,), s["encoder.ln.weight"], s["encoder.ln.bias"], final_eps)
        if readout == "mean":
            z = x.mean(dim=1)
        elif readout == "last" or (readout == "cls" and cls == "append"):
            z = x[:, -1]
        else:
            z = x[:, 0]
        return float64_array(z @ s["heads.head.weight"].T + s["heads.head.bias"])


def _random_state(rng, config, in_channels: int = 3, stream_scale: float = 1.0) -> dict:
    """Random parameters with torchvision's names; scaled so that no layer saturates. ``stream_scale``
    multiplies every parameter that writes into the residual stream (:data:`_STREAM`): the stream, and so
    every LayerNorm's input, is then of that size."""
    state = {}
    for name, shape in vit_state_shapes(config, in_channels).items():
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln.weight")):
            value = 1 + 0.2 * rng.normal(size=shape)
        elif name.endswith("weight") and len(shape) >= 2:
            value = rng.normal(size=shape) / np.sqrt(np.prod(shape[1:]))
        elif name in ("class_token", "encoder.pos_embedding"):
            value = rng.normal(size=shape)
        else:
            value = 0.2 * rng.normal(size=shape)
        state[name] = value * stream_scale if name.endswith(_STREAM) else value
    return state


def _cases(hidden: bool) -> list[Case]:
    cases = []
    for number, ((config, N, extras), salt) in enumerate(visible_then_hidden(_CONFIGS, _HIDDEN_CONFIGS, hidden),
                                                         start=1):
        rng = case_rng("ViT", number, salt)
        S = config["image_size"]
        C = extras.get("in_channels", 3)
        scale = extras.get("scale", 1.0)
        mode = extras.get("mode", "eval")
        images = "RGB images" if C == 3 else f"images with in_channels={C}"
        text = (", ".join(f"{k}={v}" for k, v in config.items())
                + f"; {N} random {S}×{S} {images}, random parameters with torchvision's names; {mode} mode")
        if scale != 1.0:
            text += f"; activations of about {scale:g}, where LayerNorm's eps matters"
        inputs = {"config": config, "state": _random_state(rng, config, C, scale),
                  "images": rng.normal(size=(N, C, S, S)), "mode": mode}
        if C != 3:
            inputs["in_channels"] = C
        cases.append(Case(text, inputs, lambda index: f"logits[image {index[0]}, class {index[1]}]"))
    return cases


def _stream_size(case) -> float:
    """The typical size of the tokens that enter the first block (class token, patches, position)."""
    state = case.inputs["state"]
    return float(np.sqrt(np.mean(np.square(state["encoder.pos_embedding"]))))


_UNCHANGED = "the forward pass leaves the model as it found it: its train/eval mode and its parameters (Exercise 5)"


def _call(cls, inputs):
    extra = {"in_channels": inputs["in_channels"]} if "in_channels" in inputs else {}
    with torch.random.fork_rng(devices=[]):   # the student's init must not move the global RNG
        model = cls(**inputs["config"], **extra)
    model.load_state_dict({k: torch.tensor(v, dtype=torch.float32) for k, v in inputs["state"].items()},
                          strict=True)
    model.train(inputs.get("mode", "eval") == "train")
    images = torch.tensor(inputs["images"], dtype=torch.float32)
    with torch.random.fork_rng(devices=[]), torch.no_grad(), kept_unchanged({"your model": model}, _UNCHANGED):
        return returned_array(model(images))


def _reference(inputs):
    model = torchvision_vit(inputs["config"], inputs["state"], in_channels=inputs.get("in_channels", 3))
    with torch.no_grad():
        return float64_array(model(float64_tensor(inputs["images"])))


def _variant(**kw):
    return lambda inputs: vit_forward_variant(inputs["state"], inputs["images"], inputs["config"], **kw)


_POST_LN = ("post-LN where pre-LN was asked: LayerNorm was applied to the sum after each residual addition "
            "instead of to the input of each sublayer")
_POST_LN_HINT = ("ViT is pre-norm (section 4): each sublayer reads a normalised copy of the stream and its "
                 "output is added to the stream as it was; the stream itself is normalised only once, by "
                 "encoder.ln after the last block.")
_APPENDED = ("class token appended instead of prepended (torchvision's class token is token 0 and "
             "pos_embedding[:, 0] belongs to it)")
_APPENDED_HINT = ("the class token goes in front of the patches, so that it is token 0, the token that row 0 of "
                  "the position embedding belongs to and the one the head reads.")


def _eps(where: str) -> str:
    return f"LayerNorm eps left at PyTorch's default 1e-5 in {where}; torchvision's LayerNorms use eps=1e-6"


_EPS_HINT = ("section 4: all LayerNorms use eps=1e-6, ln_1 and ln_2 in every block and encoder.ln after the "
             "last one. The difference shows where the activations are small, as in this case.")

MISTAKES = [
    Mistake("classification from the mean of tokens instead of the class token",
            "torchvision's head reads the class token alone, after the final LayerNorm: no pooling over tokens.",
            _variant(readout="mean")),
    Mistake("missing final LayerNorm: torchvision applies encoder.ln after the last block",
            "after the last block, encoder.ln normalises the tokens before the head reads token 0.",
            _variant(final_ln=False)),
    Mistake("no position embedding: encoder.pos_embedding is never added",
            "the position embedding is added once, right after the class token is prepended and before the "
            "first block.", _variant(use_pos=False)),
    Mistake(_APPENDED + "; you classify from the last token, your class token",
            _APPENDED_HINT, _variant(cls="append", readout="last")),
    Mistake(_APPENDED + "; you classify from token 0, which is then the first patch, not the class token",
            _APPENDED_HINT, _variant(cls="append", readout="first")),
    Mistake(POS_BEFORE_CLS + ": the class token got no position embedding", POS_BEFORE_CLS_HINT,
            _variant(pos_before_cls=True)),
    Mistake(*ORDER_MISTAKES["column_major"], _variant(patch_order="column_major")),
    Mistake(_POST_LN, _POST_LN_HINT, _variant(post_ln=True)),
    Mistake(_POST_LN + "; and the final LayerNorm (encoder.ln) is missing", _POST_LN_HINT,
            _variant(post_ln=True, final_ln=False)),
    Mistake(NO_SCALING, NO_SCALING_HINT, _variant(scale="none")),
    Mistake(SQRT_D, SQRT_D_HINT, _variant(scale="sqrt_D")),
    Mistake(DK, DK_HINT, _variant(scale="dk")),
    Mistake("nn.MultiheadAttention without batch_first=True: it reads your tokens sequence-first, so the "
            "attention mixes the images of the batch instead of the tokens of one image",
            "nn.MultiheadAttention expects the sequence axis first unless it is built with batch_first=True; "
            "your tokens have the batch axis first, as section 4 says.", _variant(batch_first=False)),
    Mistake("the MLP uses the tanh approximation of GELU; torchvision's nn.GELU() is the exact (erf) one",
            "torchvision's MLP uses nn.GELU() with its default approximate='none'.",
            _variant(activation="gelu_tanh")),
    Mistake("the MLP uses ReLU instead of GELU", "the MLP's activation is GELU (section 4), not ReLU.",
            _variant(activation="relu")),
    Mistake(_eps("all LayerNorms"), _EPS_HINT, _variant(block_eps=1e-5, final_eps=1e-5)),
    Mistake(_eps("encoder.ln (after the last block)"), _EPS_HINT, _variant(final_eps=1e-5)),
    Mistake(_eps("ln_1 and ln_2 of the blocks"), _EPS_HINT, _variant(block_eps=1e-5)),
]

VIT = Exercise(
    function="ViT",
    reference_name="torchvision.models.VisionTransformer with the same state_dict",
    make_cases=_cases,
    reference=_reference,
    call=_call,
    mistakes=MISTAKES,
    tolerance=_FLOAT32_MODEL,
    hint="compare your model with torchvision's step by step on the same state_dict: the tokens after the "
         "patch embedding (tv_model._process_input), after the class token and position embedding, after "
         "each block, after encoder.ln. The case says what is special about it: train mode (torchvision's "
         "dropout is 0.0), small activations (LayerNorm eps), in_channels, a single image.",
    exception_hints={
        "RuntimeError": ("if the message lists missing or unexpected keys, your parameter names differ from "
                         "torchvision's (the list in section 4). If it is a size mismatch while loading, the "
                         "parameter it names has another shape in your model (conv_proj.weight has in_channels "
                         "input channels; pos_embedding has a row per token, the class token's included). If "
                         "two tensor sizes do not match in the forward pass, count your tokens: conv_proj's "
                         "stride is the patch size, and the class token is concatenated before the position "
                         "embedding is added."),
        "TypeError": "ViT is built as ViT(image_size=..., patch_size=..., num_layers=..., num_heads=..., "
                     "hidden_dim=..., mlp_dim=..., num_classes=..., in_channels=...); keep these argument names.",
    },
    section="Exercise 5",
    layout=Layout(axes=("image", "class")),
    covers={
        "a single image": lambda case: case.inputs["images"].shape[0] == 1,
        "3 or more images": lambda case: case.inputs["images"].shape[0] >= 3,
        "a single layer": lambda case: case.inputs["config"]["num_layers"] == 1,
        "3 or more layers": lambda case: case.inputs["config"]["num_layers"] >= 3,
        "a single head": lambda case: case.inputs["config"]["num_heads"] == 1,
        "4 or more heads": lambda case: case.inputs["config"]["num_heads"] >= 4,
        "mlp_dim different from hidden_dim": lambda case: case.inputs["config"]["mlp_dim"] != case.inputs["config"][
            "hidden_dim"],
        "train mode (torchvision's dropout is 0.0)": lambda case: case.inputs["mode"] == "train",
        "eval mode": lambda case: case.inputs["mode"] == "eval",
        "activations of about 1e-3, where LayerNorm's eps (1e-6) matters": lambda case: _stream_size(case) < 1e-2,
        "in_channels=1": lambda case: case.inputs.get("in_channels", 3) == 1,
        "in_channels other than 1 and 3": lambda case: case.inputs.get("in_channels", 3) not in (1, 3),
        "a patch size of 3 (an odd number of pixels)": lambda case: case.inputs["config"]["patch_size"] == 3,
    },
)


def check_ViT(ViT, hidden: bool = False) -> None:
    """Check the class ``ViT``: loads torchvision's state_dict (strict) and gives the same logits."""
    show(run_check(VIT, ViT, hidden))
