"""Exercise 6: ``vit_param_count(image_size, patch_size, num_layers, num_heads, hidden_dim, mlp_dim,
num_classes) -> int``, computed by a formula (ViT-B/16: 86,567,656), compared with torchvision's model.
"""
from __future__ import annotations

import numpy as np
import torch

from utils.checks.compare import EXACT
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.rules import RuleBroken
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
                        final_ln=True, out_proj=True, per_head=False, one_mlp_layer=False) -> int:
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
    n += ln * int(final_ln)                                      # final LayerNorm
    n += D * C + b * C                                           # head
    return n


def _cases(hidden: bool) -> list[Case]:
    cases = []
    for config, _ in visible_then_hidden(_CONFIGS, _HIDDEN_CONFIGS, hidden):
        name = "ViT-B/16: " if config == VIT_B_16 else ""
        cases.append(Case(f"vit_param_count({name}" + ", ".join(f"{k}={v}" for k, v in config.items()) + ")",
                          {"config": config}))
    return cases


_INT_RULE = "vit_param_count returns the number of parameters as an int (Exercise 6)"


def _whole_number(value):
    """The student's count as a 0-d float64 array if it is an integer (Python, numpy or a one-element integer
    tensor); a float, even a whole one, breaks the notebook's rule "as an int"."""
    array = None
    if isinstance(value, (bool, np.bool_)):
        raise RuleBroken(_INT_RULE, f"it returned {type(value).__name__} {value}")
    if isinstance(value, (int, np.integer)):
        array = np.asarray(value)
    elif isinstance(value, torch.Tensor) and value.numel() == 1:
        if value.is_floating_point():
            raise RuleBroken(_INT_RULE, f"it returned a tensor of dtype {str(value.dtype).replace('torch.', '')}")
        array = value.detach().cpu().numpy()
    elif isinstance(value, (float, np.floating)):
        raise RuleBroken(_INT_RULE, f"it returned the float {value!r}; a / anywhere in the count makes a float")
    if array is None:
        return value   # None, a string, several numbers: the comparison names what it got
    return np.asarray(float(array.reshape(())))


def _call(fn, inputs):
    return _whole_number(fn(**inputs["config"]))


def _variant(**switches):
    return lambda inputs: np.asarray(float(param_count_variant(**inputs["config"], **switches)))


PARAM_COUNT = Exercise(
    function="vit_param_count",
    reference_name="the parameter count of torchvision's VisionTransformer (vit_b_16 for ViT-B/16)",
    make_cases=_cases,
    reference=lambda inputs: np.asarray(float(torchvision_param_count(inputs["config"]))),
    call=_call,
    mistakes=[
        Mistake("the class token is not counted, or the position embedding has L rows instead of L + 1 "
                "(either way D parameters are missing)",
                "both are learned: the class token is one D-vector, and the position embedding has one row "
                "for every token the encoder sees. Count the tokens with the class token in.",
                _variant(class_token=False)),
        Mistake("the position embedding is not counted",
                "encoder.pos_embedding is a learned parameter, one D-vector per token: it counts.",
                _variant(pos=False)),
        Mistake("biases are not counted", "the conv, the attention projections, the MLP's two nn.Linear and the "
                "head each have a bias as well as a weight.", _variant(biases=False)),
        Mistake("LayerNorm parameters are not counted",
                "each LayerNorm has a learned weight and a learned bias of size D; there are two in every block "
                "and one more after the last block.", _variant(layer_norms=False)),
        Mistake("the final LayerNorm (encoder.ln, after the last block) is not counted",
                "besides ln_1 and ln_2 in every block, encoder.ln normalises the tokens before the head, "
                "with its own weight and bias.", _variant(final_ln=False)),
        Mistake("the attention output projection (out_proj) is not counted",
                "attention has four D×D projections, W_q, W_k, W_v (packed in in_proj) and W_o (out_proj), "
                "each with a bias of size D.", _variant(out_proj=False)),
        Mistake("attention counted once per head with full-size projections: the heads split D, they do not "
                "multiply the parameters", "the number of heads does not change the parameter count.",
                _variant(per_head=True)),
        Mistake("the MLP has two linear layers (D→mlp_dim→D); only one is counted",
                "the MLP goes from D to mlp_dim and back to D: two nn.Linear layers, each with a weight and "
                "a bias.", _variant(one_mlp_layer=True)),
    ],
    tolerance=EXACT,
    hint="go through section 5's list part by part, a weight and a bias wherever there is one: the patch "
         "embedding, the class token and the position embedding, num_layers blocks, the final LayerNorm and "
         "the head. To find the part that is off, print your parts for a small configuration next to "
         "[(name, p.numel()) for name, p in tv_model.named_parameters()], tv_model being the small torchvision "
         "model built after exercise 3.",
    section="Exercise 6",
    covers={
        "ViT-B/16 (86,567,656)": lambda case: case.inputs["config"] == VIT_B_16,
        "a single layer": lambda case: case.inputs["config"]["num_layers"] == 1,
        "3 or more layers": lambda case: case.inputs["config"]["num_layers"] >= 3,
        "a single head": lambda case: case.inputs["config"]["num_heads"] == 1,
        "several heads": lambda case: case.inputs["config"]["num_heads"] >= 2,
        "mlp_dim other than 4·hidden_dim": lambda case: case.inputs["config"]["mlp_dim"] != 4 * case.inputs[
            "config"]["hidden_dim"],
        "mlp_dim smaller than hidden_dim": lambda case: case.inputs["config"]["mlp_dim"] < case.inputs["config"][
            "hidden_dim"],
        "num_classes other than 1000": lambda case: case.inputs["config"]["num_classes"] != 1000,
        "image_size / patch_size other than 14": lambda case: case.inputs["config"]["image_size"] // case.inputs[
            "config"]["patch_size"] != 14,
    },
)


def check_vit_param_count(vit_param_count, hidden: bool = False) -> None:
    """Check ``vit_param_count(...)`` against torchvision's parameter counts, ViT-B/16 included."""
    show(run_check(PARAM_COUNT, vit_param_count, hidden))
