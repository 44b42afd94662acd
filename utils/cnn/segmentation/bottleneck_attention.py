"""``BottleneckAttentionUNet(in_channels, num_classes, base_channels=16, depth=3, num_heads=2)``: section 2's U-Net
with one pre-norm self-attention layer over the bottleneck's h·w tokens (section 4):

    t = tokens(bottleneck(x)) + PE          (B, h·w, C), tokens in row-major order, PE sinusoidal
    t = t + attn(norm(t), norm(t), norm(t))  norm = LayerNorm(C), attn = MultiheadAttention(C, heads, batch_first)

then back to (B, C, h, w) and on into the decoder. Compared block by block with a float64 reference built from
``torch.nn.MultiheadAttention`` and ``torch.nn.LayerNorm`` holding the student's weights
(:mod:`~utils.cnn.segmentation.shared`).
"""
from __future__ import annotations

from utils.checks.exercise import run_check
from utils.checks.feedback import show
from utils.cnn.segmentation.shared import (
    UNET_COVERS,
    AttentionUNetReference,
    config_value,
    kind,
    unet_cases,
    unet_exercise,
)


def _config(in_channels, num_classes, base_channels, depth, num_heads):
    return dict(in_channels=in_channels, num_classes=num_classes, base_channels=base_channels, depth=depth,
                num_heads=num_heads)


SECTION = "4. Attention at the bottleneck"

ATTENTION_UNET = unet_exercise(
    "BottleneckAttentionUNet",
    "section 4's U-Net with torch.nn.MultiheadAttention at the bottleneck (float64, your weights)",
    AttentionUNetReference,
    lambda hidden: unet_cases(
        "BottleneckAttentionUNet", AttentionUNetReference,
        counts=[_config(3, 2, 16, 3, 4)],
        outputs=[(_config(1, 3, 2, 2, 2), (2, 1, 8, 12), "train"),
                 (_config(3, 2, 4, 1, 1), (1, 3, 4, 6), "eval")],
        rejects=[(_config(3, 2, 4, 2, 2), (1, 3, 8, 6))],
        hidden_counts=[_config(1, 4, 8, 2, 8)],
        hidden_outputs=[(_config(2, 4, 2, 3, 4), (3, 2, 16, 8), "train"),
                        (_config(1, 2, 4, 1, 2), (2, 1, 6, 4), "eval")],
        hidden_rejects=[(_config(1, 2, 2, 3, 2), (1, 1, 16, 12))],
        hidden=hidden, attention=True),
    [("no residual connection around the attention: the bottleneck's features are replaced, not refined",
      "the attention's output is added to the tokens it read (section 4's formula), as in a Transformer block.",
      dict(residual=False)),
     ("LayerNorm after the residual sum (post-norm) instead of before the attention (pre-norm)",
      "section 4 normalises the tokens on their way into the attention; the residual path is not normalised.",
      dict(norm_place="post")),
     ("no positional encoding: attention alone does not know where a token sits in the map",
      "add section 4's sinusoidal positions to the tokens before the attention.", dict(positions=False)),
     ("tokens made by reshaping (B, C, h, w) to (B, h·w, C): each token mixes values of several channels",
      "a token is the C channel values at one position: move the channel axis last before flattening "
      "the positions, and undo both steps on the way back.", dict(tokens="reshape")),
     ("attention across the batch: MultiheadAttention was given (B, h·w, C) without batch_first=True",
      "without batch_first, MultiheadAttention reads its input as (sequence, batch, features): images of the "
      "batch then attend to each other.", dict(batch_first=False))],
    hint="compare your bottleneck step by step with section 4's formula: tokens (which axis is which), the "
         "positions, the LayerNorm, the attention, the residual, then back to a map; the message says from "
         "which block on your values differ.",
    section=SECTION,
    covers={**UNET_COVERS,
            "one attention head": lambda c: kind(c) == "output" and config_value(c, "num_heads") == 1,
            "several attention heads": lambda c: kind(c) == "output" and config_value(c, "num_heads") > 1,
            "a bottleneck of one row or one column":
                lambda c: kind(c) == "output" and 1 in [n // 2 ** config_value(c, "depth")
                                                       for n in c.inputs["x"].shape[2:]]},
    attention=True)


def check_BottleneckAttentionUNet(BottleneckAttentionUNet, hidden: bool = False) -> None:
    """Check ``BottleneckAttentionUNet(in_channels, num_classes, base_channels=16, depth=3, num_heads=2)``."""
    show(run_check(ATTENTION_UNET, BottleneckAttentionUNet, hidden))
