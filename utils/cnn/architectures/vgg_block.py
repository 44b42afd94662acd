"""``VGGBlock(in_channels, out_channels, num_convs=2)``: ``convs`` (a ModuleList of 3×3 convs, padding 1),
each followed by ReLU, then a 2×2 max pool (stride 2). A module exercise
(:func:`~utils.cnn.architectures.shared.module_exercise`).
"""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from utils.checks.exercise import run_check
from utils.checks.feedback import show
from utils.cnn.architectures.shared import module_cases, module_exercise


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
        outputs=[(dict(in_channels=3, out_channels=8, num_convs=2), (2, 3, 8, 8)),
                 (dict(in_channels=4, out_channels=6, num_convs=3), (1, 4, 7, 9))],
        hidden_counts=[dict(in_channels=5, out_channels=5, num_convs=1)],
        hidden_outputs=[(dict(in_channels=5, out_channels=7, num_convs=1), (3, 5, 10, 6))], hidden=hidden),
    [("the 3×3 convolutions have no padding: a VGG block keeps the size until the pooling",
      "nn.Conv2d(..., kernel_size=3, padding=1).", dict(padding=0)),
     ("the max pooling at the end of the block is missing", "finish with nn.MaxPool2d(kernel_size=2, stride=2).",
      dict(pool="none")),
     ("average pooling instead of max pooling", "VGG uses nn.MaxPool2d(2, 2).", dict(pool="avg")),
     ("no ReLU after the last convolution", "every convolution is followed by a ReLU, the last one too.",
      dict(last_relu=False))],
    hint="for each conv in self.convs: x = relu(conv(x)); then a 2×2 max pool with stride 2.")


def check_VGGBlock(VGGBlock, hidden: bool = False) -> None:
    """Check the class ``VGGBlock(in_channels, out_channels, num_convs=2)``."""
    show(run_check(VGG, VGGBlock, hidden))
