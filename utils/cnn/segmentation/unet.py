"""``UNet(in_channels, num_classes, base_channels=16, depth=3)``: section 2's U-Net (double 3×3 conv blocks with
BatchNorm and ReLU, 2×2 max pooling down, 2×2 transposed convolutions up, skips concatenated at every scale, a
1×1 head giving logits (B, num_classes, H, W)), compared block by block with a float64 reference built from torch
layers that holds the student's weights (:mod:`~utils.cnn.segmentation.shared`).
"""
from __future__ import annotations

from utils.checks.exercise import run_check
from utils.checks.feedback import show
from utils.cnn.segmentation.shared import UNET_COVERS, UNetReference, unet_cases, unet_exercise


def _config(in_channels, num_classes, base_channels, depth):
    return dict(in_channels=in_channels, num_classes=num_classes, base_channels=base_channels, depth=depth)


SECTION = "2. The U-Net"

UNET = unet_exercise(
    "UNet", "the U-Net of section 2 (torch layers in float64, your weights)", UNetReference,
    lambda hidden: unet_cases(
        "UNet", UNetReference,
        counts=[_config(3, 2, 16, 4), _config(1, 5, 8, 2)],
        outputs=[(_config(1, 3, 4, 2), (1, 1, 8, 12), "eval"),
                 (_config(3, 4, 4, 3), (2, 3, 16, 24), "train")],
        rejects=[(_config(3, 2, 4, 2), (1, 3, 10, 12))],
        hidden_counts=[_config(4, 7, 6, 3), _config(2, 1, 32, 1)],
        hidden_outputs=[(_config(2, 2, 6, 1), (3, 2, 6, 4), "train"),
                        (_config(3, 5, 2, 3), (3, 3, 8, 16), "eval")],
        hidden_rejects=[(_config(1, 2, 4, 3), (2, 1, 16, 20))],
        hidden=hidden, attention=False),
    [("skips added instead of concatenated: each decoder block sees C_k channels, not 2·C_k",
      "section 2 joins the skip and the up-sampled map along the channel axis, so a decoder block's first "
      "convolution takes twice the scale's channel count.", dict(skip="add")),
     ("the skip connection at full resolution (into dec[0]) is missing",
      "every scale has its skip, the top one included: dec[0] joins down[0]'s output to the up-sampled map.",
      dict(no_skip_at="top")),
     ("the skip connection at the lowest decoder scale (into dec[depth−1]) is missing",
      "every scale has its skip, the lowest one included: the first decoder block joins the last encoder "
      "block's output (before its pooling) to the up-sampled bottleneck.", dict(no_skip_at="bottom")),
     ("skip and up-sampled map concatenated in the other order (up-sampled first)",
      "section 2 puts the skip's channels first, then the up-sampled ones: the order decides which weights "
      "meet which channels.", dict(cat_order="up_first")),
     ("average pooling instead of max pooling between the encoder blocks",
      "the encoder halves the resolution with 2×2 max pooling (section 2's table).", dict(pool="avg")),
     ("a softmax after the 1×1 head: the network must return logits",
      "the head returns raw scores; cross-entropy applies the softmax itself (section 2, “The head”).",
      dict(head_act="softmax")),
     ("a ReLU after the 1×1 head: logits can be negative",
      "nothing follows the 1×1 head: logits take any sign (section 2, “The head”).", dict(head_act="relu")),
     ("ReLU before BatchNorm in the double convolution",
      "each 3×3 convolution is followed by BatchNorm, then ReLU, in that order.", dict(relu_first=True)),
     ("the 3×3 convolutions have a bias",
      "a convolution followed by BatchNorm needs no bias: BatchNorm's shift plays that role.", dict(bias=True))],
    hint="compare your forward with section 2's table block by block: the difference starts at the block the "
         "message names; look at what happens just before it (pooling, up-sampling, the skip you join).",
    section=SECTION, covers=UNET_COVERS, attention=False)


def check_UNet(UNet, hidden: bool = False) -> None:
    """Check ``UNet(in_channels, num_classes, base_channels=16, depth=3)`` against section 2's U-Net."""
    show(run_check(UNET, UNet, hidden))
