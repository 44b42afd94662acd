"""``VGGBlock(in_channels, out_channels, num_convs=2)``: ``convs`` (a ModuleList of 3×3 convs, padding 1),
each followed by ReLU, then a 2×2 max pool (stride 2). A module exercise
(:func:`~utils.cnn.architectures.shared.module_exercise`).
"""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from utils.checks.exercise import run_check
from utils.checks.feedback import show
from utils.cnn.architectures.shared import config_value, input_shape, module_cases, module_exercise, output_case

MAP_AXES = ("image", "channel", "row", "column")


class VGGBlockReference(nn.Module):
    def __init__(self, in_channels, out_channels, num_convs=2, padding=1, pool="max", last_relu=True):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3,
                                             padding=padding) for i in range(num_convs))
        self.pool = {"max": nn.MaxPool2d(2, 2), "avg": nn.AvgPool2d(2, 2), "none": nn.Identity()}[pool]
        self.last_relu = last_relu

    def forward(self, x):
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if self.last_relu or i < len(self.convs) - 1:
                x = F.relu(x)
        return self.pool(x)


VGG = module_exercise(
    "VGGBlock", "a VGG block (reference in utils.cnn.architectures)", VGGBlockReference,
    lambda hidden: module_cases(
        "VGGBlock", VGGBlockReference,
        counts=[dict(in_channels=3, out_channels=8, num_convs=2), dict(in_channels=8, out_channels=16, num_convs=3)],
        outputs=[(dict(in_channels=4, out_channels=6, num_convs=3), (1, 4, 9, 11)),
                 (dict(in_channels=3, out_channels=8, num_convs=2), (2, 3, 8, 8), "train")],
        hidden_counts=[dict(in_channels=5, out_channels=5, num_convs=1)],
        hidden_outputs=[(dict(in_channels=5, out_channels=7, num_convs=1), (3, 5, 10, 6))], hidden=hidden,
        axes=MAP_AXES),
    [("the 3×3 convolutions have no padding",
      "in a VGG block the convolutions keep the height and width; only the pooling at the end halves them "
      "(section 2).", dict(padding=0)),
     ("the max pooling at the end of the block is missing",
      "the block ends with a 2×2 max pooling of stride 2, which halves H and W, rounding down.", dict(pool="none")),
     ("average pooling instead of max pooling", "VGG's pooling keeps the largest value of each 2×2 window.",
      dict(pool="avg")),
     ("no ReLU after the last convolution",
      "every convolution of the block is followed by a ReLU, the last one too, before the pooling.",
      dict(last_relu=False))],
    hint="print the shape after each step of your forward and compare the steps with section 2's task: what "
         "follows each convolution, what each does to H and W, and how the block ends.",
    section="2. A VGG block",
    covers={"a single convolution (num_convs=1)": lambda c: output_case(c) and config_value(c, "num_convs") == 1,
            "three convolutions (num_convs=3)": lambda c: output_case(c) and config_value(c, "num_convs") == 3,
            "an odd height or width (the pooling rounds down)":
            lambda c: output_case(c) and any(n % 2 for n in input_shape(c)[2:]),
            "a non-square input": lambda c: output_case(c) and input_shape(c)[2] != input_shape(c)[3]})


def check_VGGBlock(VGGBlock, hidden: bool = False) -> None:
    """Check the class ``VGGBlock(in_channels, out_channels, num_convs=2)``."""
    show(run_check(VGG, VGGBlock, hidden))
