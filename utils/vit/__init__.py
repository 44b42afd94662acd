"""Checks for the Vision Transformer assignment (ViT, Dosovitskiy et al. 2020, as in torchvision).

The notebook asks for (tensors are ``torch.Tensor``):

* ``patchify``, ``patch_embed_linear``, ``patch_embed_conv`` — images into patches and patch embeddings,
  :mod:`.patches`;
* ``embed_tokens`` — the class token prepended, the position embedding added, :mod:`.tokens`;
* ``ViT`` — a module that loads torchvision's ``VisionTransformer`` state_dict and gives its logits,
  :mod:`.model`;
* ``vit_param_count`` — the parameter count by formula, :mod:`.param_count`;
* ``attention_weights`` — the per-head attention weights of ``nn.MultiheadAttention``, :mod:`.attention_weights`.

Each module holds its exercise's settings, cases, reference, known mistakes and ``check_*``. The
references are torch/torchvision computed in float64 when the check runs (in the student's kernel, or in
the trusted grader); :mod:`.torchvision_vit` builds torchvision's model for them. The attention mistakes
come from the attention assignment's one implementation, :mod:`utils.attention.mha`.
"""
from utils.vit.attention_weights import ATTENTION_WEIGHTS, check_attention_weights
from utils.vit.model import VIT, check_ViT
from utils.vit.param_count import PARAM_COUNT, check_vit_param_count
from utils.vit.patches import (
    PATCH_EMBED_CONV,
    PATCH_EMBED_LINEAR,
    PATCHIFY,
    check_patch_embed_conv,
    check_patch_embed_linear,
    check_patchify,
)
from utils.vit.tokens import EMBED_TOKENS, check_embed_tokens

EXERCISES = {e.function: e for e in (PATCHIFY, PATCH_EMBED_LINEAR, PATCH_EMBED_CONV, EMBED_TOKENS, VIT,
                                      PARAM_COUNT, ATTENTION_WEIGHTS)}

__all__ = ["EXERCISES", "check_patchify", "check_patch_embed_linear", "check_patch_embed_conv",
           "check_embed_tokens", "check_ViT", "check_vit_param_count", "check_attention_weights"]
