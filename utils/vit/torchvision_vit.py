"""torchvision's ``VisionTransformer``, the reference of the ViT checks: the model built in float64 with a
case's parameters, its parameter names and shapes, and the configurations the checks use; and
:func:`plain`, the student's returned tensor as the numpy array every check records.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

SMALL_CONFIG = dict(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128,
                    num_classes=10)
VIT_B_16 = dict(image_size=224, patch_size=16, num_layers=12, num_heads=12, hidden_dim=768, mlp_dim=3072,
                num_classes=1000)


def torchvision_vit(config: dict, state: dict | None = None, dtype=torch.float64, in_channels: int = 3):
    """A ``torchvision.models.VisionTransformer`` for ``config`` (eval mode), loaded with ``state``.

    torchvision's model takes RGB images; for ``in_channels`` ≠ 3 its ``conv_proj`` is replaced by a
    convolution with that many input channels (the rest of the model does not depend on it). Built under
    ``fork_rng`` so that its random initialisation leaves torch's global RNG unchanged.
    """
    from torchvision.models import VisionTransformer
    with torch.random.fork_rng(devices=[]):
        model = VisionTransformer(**config)
        if in_channels != 3:
            P = config["patch_size"]
            model.conv_proj = torch.nn.Conv2d(in_channels, config["hidden_dim"], kernel_size=P, stride=P)
    model = model.to(dtype).eval()
    if state is not None:
        model.load_state_dict({k: torch.as_tensor(np.asarray(v), dtype=dtype) for k, v in state.items()},
                              strict=True)
    return model


def vit_state_shapes(config: dict, in_channels: int = 3) -> OrderedDict[str, tuple]:
    """torchvision's parameter names and shapes for a ``VisionTransformer`` with ``config``."""
    P, D, M = config["patch_size"], config["hidden_dim"], config["mlp_dim"]
    L = (config["image_size"] // P) ** 2
    shapes = OrderedDict(class_token=(1, 1, D))
    shapes["conv_proj.weight"] = (D, in_channels, P, P)
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
