"""Exercise 5: the class ``ViT(image_size, patch_size, num_layers, num_heads, hidden_dim, mlp_dim, num_classes,
in_channels=3)``.

An ``nn.Module`` whose state_dict has torchvision's parameter names: it loads the state of a
``torchvision.models.VisionTransformer`` with ``strict=True`` and gives the same logits (N, num_classes)
in eval mode, on float32 images (N, 3, S, S).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from utils.attention import mha
from utils.checks.adapters import float64_array, float64_tensor, returned_array
from utils.checks.compare import Tolerance
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.seeding import case_rng
from utils.vit.attention_weights import NO_SCALING, NO_SCALING_HINT, SQRT_D, SQRT_D_HINT, score_divisor
from utils.vit.patches import ORDER_MISTAKES
from utils.vit.tokens import POS_BEFORE_CLS, POS_BEFORE_CLS_HINT
from utils.vit.torchvision_vit import SMALL_CONFIG, torchvision_vit, vit_state_shapes

# (config, number of images)
_CONFIGS = [(SMALL_CONFIG, 2), (dict(image_size=12, patch_size=4, num_layers=1, num_heads=4, hidden_dim=16,
                                     mlp_dim=24, num_classes=5), 3)]
_HIDDEN_CONFIGS = [(dict(image_size=16, patch_size=4, num_layers=3, num_heads=2, hidden_dim=12, mlp_dim=20,
                         num_classes=7), 2),
                   (dict(image_size=8, patch_size=2, num_layers=2, num_heads=1, hidden_dim=8, mlp_dim=8,
                         num_classes=3), 4)]

# The student's model runs in float32; the reference in float64.
_FLOAT32_MODEL = Tolerance(atol=1e-4, rtol=1e-4)

_ACTIVATIONS = {"gelu": F.gelu, "gelu_tanh": lambda u: F.gelu(u, approximate="tanh"), "relu": F.relu}


def vit_forward_variant(state: dict, images, config: dict, *, cls: str = "prepend", readout: str = "cls",
                        use_pos: bool = True, pos_before_cls: bool = False, final_ln: bool = True,
                        patch_order: str = "row", post_ln: bool = False, scale: str = "sqrt_dk",
                        activation: str = "gelu") -> np.ndarray:
    """The ViT's logits (N, num_classes), written out with torch ops in float64, with switches for known mistakes.

    ``cls``: "prepend" or "append"; ``readout``: "cls" (the class token's row), "first", "last" or "mean";
    ``post_ln``: x = ln_1(x + MSA(x)), x = ln_2(x + MLP(x)) (the original Transformer's order);
    ``scale``: the scores' divisor, "sqrt_dk", "none", "sqrt_D" or "dk"; ``activation``: "gelu" (erf),
    "gelu_tanh" or "relu". The attention is :func:`utils.attention.mha.multi_head_attention`.
    """
    s = {k: float64_tensor(v) for k, v in state.items()}
    P, D, heads = config["patch_size"], config["hidden_dim"], config["num_heads"]
    eps = 1e-6
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
                return F.layer_norm(u, (D,), s[p + which + ".weight"], s[p + which + ".bias"], eps)

            attention = mha.projections_from_packed(
                s[p + "self_attention.in_proj_weight"], s[p + "self_attention.in_proj_bias"],
                s[p + "self_attention.out_proj.weight"], s[p + "self_attention.out_proj.bias"])
            h = x if post_ln else ln(x, "ln_1")
            x = x + mha.multi_head_attention(h, h, h, attention, heads, divisor=score_divisor(scale))[0]
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
        return float64_array(z @ s["heads.head.weight"].T + s["heads.head.bias"])


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


def _cases(hidden: bool) -> list[Case]:
    cases = []
    for number, ((config, N), salt) in enumerate(visible_then_hidden(_CONFIGS, _HIDDEN_CONFIGS, hidden), start=1):
        rng = case_rng("ViT", number, salt)
        S = config["image_size"]
        text = (", ".join(f"{k}={v}" for k, v in config.items())
                + f"; {N} random {S}×{S} RGB images, random parameters with torchvision's names")
        cases.append(Case(text, {"config": config, "state": _random_state(rng, config),
                                 "images": rng.normal(size=(N, 3, S, S))},
                          lambda index: f"logits[image {index[0]}, class {index[1]}]"))
    return cases


def _call(cls, inputs):
    with torch.random.fork_rng(devices=[]):   # the student's init must not move the global RNG
        model = cls(**inputs["config"])
    model.load_state_dict({k: torch.tensor(v, dtype=torch.float32) for k, v in inputs["state"].items()},
                          strict=True)
    model.eval()
    with torch.no_grad():
        return returned_array(model(torch.tensor(inputs["images"], dtype=torch.float32)))


def _reference(inputs):
    model = torchvision_vit(inputs["config"], inputs["state"])
    with torch.no_grad():
        return float64_array(model(float64_tensor(inputs["images"])))


def _variant(**kw):
    return lambda inputs: vit_forward_variant(inputs["state"], inputs["images"], inputs["config"], **kw)


_POST_LN = ("post-LN where pre-LN was asked: LayerNorm was applied after the residual addition "
            "(x = LN(x + MSA(x))) instead of before the sublayer (x = x + MSA(LN(x)))")
_POST_LN_HINT = ("ViT is pre-norm: x = x + self_attention(ln_1(x)), then x = x + mlp(ln_2(x)); the residual "
                 "stream itself is normalised only once, by encoder.ln after the last block.")
_APPENDED = ("class token appended instead of prepended (torchvision's class token is token 0 and "
             "pos_embedding[:, 0] belongs to it)")
_APPENDED_HINT = "x = torch.cat([class_token.expand(N, -1, -1), x], dim=1); classify from x[:, 0]."

MISTAKES = [
    Mistake("classification from the mean of tokens instead of the class token",
            "torchvision classifies from the class token only: heads(x[:, 0]) after the final LayerNorm.",
            _variant(readout="mean")),
    Mistake("missing final LayerNorm: torchvision applies encoder.ln after the last block",
            "x = self.encoder.ln(self.encoder.layers(x)) before taking x[:, 0].",
            _variant(final_ln=False)),
    Mistake("no position embedding: encoder.pos_embedding is never added", "add pos_embedding right after "
            "prepending the class token, before the first encoder block.", _variant(use_pos=False)),
    Mistake(_APPENDED + "; you classify from the last token, your class token",
            _APPENDED_HINT, _variant(cls="append", readout="last")),
    Mistake(_APPENDED + "; you classify from x[:, 0], which is then the first patch, not the class token",
            _APPENDED_HINT, _variant(cls="append", readout="first")),
    Mistake(POS_BEFORE_CLS + ": the class token got no position embedding", POS_BEFORE_CLS_HINT,
            _variant(pos_before_cls=True)),
    Mistake(*ORDER_MISTAKES["column_major"], _variant(patch_order="column_major")),
    Mistake(_POST_LN, _POST_LN_HINT, _variant(post_ln=True)),
    Mistake(_POST_LN + "; and the final LayerNorm (encoder.ln) is missing", _POST_LN_HINT,
            _variant(post_ln=True, final_ln=False)),
    Mistake(NO_SCALING, NO_SCALING_HINT, _variant(scale="none")),
    Mistake(SQRT_D, SQRT_D_HINT, _variant(scale="sqrt_D")),
    Mistake("the attention scores were divided by d_k instead of √d_k", NO_SCALING_HINT, _variant(scale="dk")),
    Mistake("the MLP uses the tanh approximation of GELU; torchvision's nn.GELU() is the exact (erf) one",
            "use nn.GELU() (approximate='none').", _variant(activation="gelu_tanh")),
    Mistake("the MLP uses ReLU instead of GELU", "mlp = Linear(D, mlp_dim), nn.GELU(), Dropout, Linear(mlp_dim, D), "
            "Dropout.", _variant(activation="relu")),
]

VIT = Exercise(
    function="ViT",
    reference_name="torchvision.models.VisionTransformer with the same state_dict (eval mode)",
    make_cases=_cases,
    reference=_reference,
    call=_call,
    mistakes=MISTAKES,
    tolerance=_FLOAT32_MODEL,
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


def check_ViT(ViT, hidden: bool = False) -> None:
    """Check the class ``ViT``: loads torchvision's state_dict (strict) and gives the same logits."""
    show(run_check(VIT, ViT, hidden))
