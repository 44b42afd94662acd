"""Exercise 6: ``vit_param_count(image_size, patch_size, num_layers, num_heads, hidden_dim, mlp_dim,
num_classes) -> int``, computed by a formula (ViT-B/16: 86,567,656), compared with torchvision's model.
"""
from __future__ import annotations

import numpy as np
import torch

from utils.checks.adapters import numbers
from utils.checks.compare import EXACT
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.vit.torchvision_vit import SMALL_CONFIG, VIT_B_16, torchvision_vit

_CONFIGS = [SMALL_CONFIG, dict(image_size=8, patch_size=2, num_layers=1, num_heads=1, hidden_dim=4, mlp_dim=6,
                               num_classes=3), VIT_B_16]
_HIDDEN_CONFIGS = [dict(image_size=16, patch_size=4, num_layers=3, num_heads=4, hidden_dim=16, mlp_dim=40,
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


def _cases(hidden: bool) -> list[Case]:
    configs = [config for config, _ in visible_then_hidden(_CONFIGS, _HIDDEN_CONFIGS, hidden)]

    def describe(index):
        c = configs[index[0]]
        name = "ViT-B/16: " if c == VIT_B_16 else ""
        return f"vit_param_count({name}" + ", ".join(f"{k}={v}" for k, v in c.items()) + ")"

    return [Case(f"{len(configs)} configurations, ViT-B/16 included", {"configs": configs}, describe)]


def _variant(**switches):
    return lambda inputs: np.array([param_count_variant(**c, **switches) for c in inputs["configs"]],
                                   dtype=np.float64)


PARAM_COUNT = Exercise(
    function="vit_param_count",
    reference_name="the parameter count of torchvision's VisionTransformer (vit_b_16 for ViT-B/16)",
    make_cases=_cases,
    reference=lambda inputs: np.array([torchvision_param_count(c) for c in inputs["configs"]], dtype=np.float64),
    call=lambda fn, inputs: numbers([fn(**c) for c in inputs["configs"]]),
    mistakes=[
        Mistake("the class token is not counted, or the position embedding has L rows instead of L + 1 "
                "(either way D parameters are missing)",
                "class_token is a learned (1, 1, D) parameter, and pos_embedding has one row per token, "
                "the class token's included: (1, L + 1, D).",
                _variant(class_token=False)),
        Mistake("the position embedding is not counted ((L + 1)·D parameters)",
                "encoder.pos_embedding is learned: one D-vector per token, class token included.",
                _variant(pos=False)),
        Mistake("biases are not counted", "every nn.Linear, the conv and the attention projections have biases.",
                _variant(biases=False)),
        Mistake("LayerNorm parameters are not counted (2·D per LayerNorm: 2 per block + the final one)",
                "each LayerNorm has a weight and a bias of size D.", _variant(layer_norms=False)),
        Mistake("the attention output projection (out_proj, D² + D) is not counted",
                "attention has 4 projections: W_q, W_k, W_v (in_proj, 3D² + 3D) and W_o (out_proj, D² + D).",
                _variant(out_proj=False)),
        Mistake("attention counted once per head with full-size projections: the heads split D, they do not "
                "multiply the parameters", "the number of heads does not change the parameter count.",
                _variant(per_head=True)),
        Mistake("the MLP has two linear layers (D→mlp_dim→D); only one is counted",
                "MLP: D·mlp_dim + mlp_dim + mlp_dim·D + D.", _variant(one_mlp_layer=True)),
    ],
    tolerance=EXACT,
    hint="conv_proj 3·P²·D + D; class token D; pos (L+1)·D with L = (image_size/P)²; per block "
         "2·2D (LayerNorms) + 4D² + 4D (attention) + 2·D·mlp_dim + mlp_dim + D (MLP); final LayerNorm 2D; "
         "head D·classes + classes.",
)


def check_vit_param_count(vit_param_count, hidden: bool = False) -> None:
    """Check ``vit_param_count(...)`` against torchvision's parameter counts, ViT-B/16 included."""
    show(run_check(PARAM_COUNT, vit_param_count, hidden))
