"""``BasicBlock(in_channels, out_channels, stride=1)``: ResNet's basic block, compared with
``torchvision.models.resnet.BasicBlock`` whose ``downsample = Sequential(conv1x1(stride), BatchNorm2d)``
whenever ``stride != 1`` or the channel count changes: the student's block must load its state_dict and give
the same output. A module exercise (:func:`~utils.cnn.architectures.shared.module_exercise`); a block whose
forward calls torchvision's own fails as "must be written from scratch".
"""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from utils.checks.exercise import run_check
from utils.checks.feedback import show
from utils.cnn.architectures.shared import config_value, input_shape, module_cases, module_exercise, output_case

MAP_AXES = ("image", "channel", "row", "column")

# torchvision's own blocks, which the answers must not call: they are what the answers are compared with.
TORCHVISION_BLOCKS = ("torchvision.models.resnet.BasicBlock", "torchvision.models.resnet.Bottleneck")

NO_PROJECTION = ("no projection shortcut when the shape changes (stride ≠ 1 or C_in ≠ C_out)",
                 "the shortcut is projected whenever the stride is not 1 or the channel count changes: check both "
                 "conditions, not only the channels (section 3).")
_RELU_BEFORE_ADD = ("ReLU before the addition instead of after it",
                    "the last ReLU acts on the sum of the residual branch and the shortcut, not on the branch alone.")


def torchvision_basic_block(in_channels, out_channels, stride=1) -> nn.Module:
    """``torchvision.models.resnet.BasicBlock`` with the projection shortcut when the shape changes."""
    from torchvision.models.resnet import BasicBlock, conv1x1
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))
    return BasicBlock(in_channels, out_channels, stride, downsample)


def projection_shortcut(in_channels, out_channels, stride, batchnorm=True) -> nn.Sequential | None:
    """``downsample``: a strided 1×1 conv (then BatchNorm2d) when the shape changes, else None (the identity)."""
    if stride == 1 and in_channels == out_channels:
        return None
    layers = [nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(out_channels))
    return nn.Sequential(*layers)


class BasicBlockVariant(nn.Module):
    """The basic block with the switches of the mistake catalogue (torchvision's names and layout)."""

    def __init__(self, in_channels, out_channels, stride=1, projection=True, shortcut_bn=True,
                 relu_before_add=False, stride_in="conv1", conv_bias=False):
        super().__init__()
        s1, s2 = (stride, 1) if stride_in == "conv1" else (1, stride)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, s1, 1, bias=conv_bias)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, s2, 1, bias=conv_bias)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if projection == "channels":   # projected only when the channel count changes, not for the stride alone
            projection = in_channels != out_channels
        self.downsample = projection_shortcut(in_channels, out_channels, stride, shortcut_bn) if projection else None
        self.relu_before_add = relu_before_add

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.relu_before_add:
            return F.relu(out) + identity
        return F.relu(out + identity)


def _basic_block_build(in_channels, out_channels, stride=1, **variant):
    if not variant:
        return torchvision_basic_block(in_channels, out_channels, stride)
    return BasicBlockVariant(in_channels, out_channels, stride, **variant)


def _shape_changes(case, channels: bool, stride: int) -> bool:
    config = case.inputs["config"] if output_case(case) else {}
    changes_channels = config.get("in_channels") != config.get("out_channels")
    return bool(config) and changes_channels == channels and config.get("stride") == stride


BASIC_BLOCK = module_exercise(
    "BasicBlock", "torchvision.models.resnet.BasicBlock", _basic_block_build,
    lambda hidden: module_cases(
        "BasicBlock", _basic_block_build,
        counts=[dict(in_channels=16, out_channels=16, stride=1), dict(in_channels=16, out_channels=32, stride=2),
                dict(in_channels=16, out_channels=16, stride=2), dict(in_channels=8, out_channels=24, stride=1)],
        outputs=[(dict(in_channels=8, out_channels=8, stride=1), (2, 8, 6, 6)),
                 (dict(in_channels=8, out_channels=16, stride=2), (2, 8, 8, 8), "train"),
                 (dict(in_channels=6, out_channels=12, stride=1), (1, 6, 5, 7))],
        hidden_counts=[dict(in_channels=32, out_channels=64, stride=2)],
        hidden_outputs=[(dict(in_channels=8, out_channels=8, stride=2), (2, 8, 7, 9), "train"),
                        (dict(in_channels=4, out_channels=12, stride=2), (1, 4, 9, 9))], hidden=hidden,
        axes=MAP_AXES),
    # the narrower mistake first: on the cases where both fit, it is the one that explains every case
    [("no projection shortcut when the shape changes by the stride alone (stride 2, C_in = C_out)",
      "with stride 2 the block halves H and W even when the channel count stays: the shortcut must be projected "
      "then too, not only when the channels change.", dict(projection="channels")),
     (*NO_PROJECTION, dict(projection=False)),
     ("BatchNorm missing in the shortcut: the projection is a 1×1 conv without BatchNorm2d",
      "the projection shortcut is normalised like the residual branch (see the diagram of section 3).",
      dict(shortcut_bn=False)),
     (*_RELU_BEFORE_ADD, dict(relu_before_add=True)),
     ("the stride is applied in the second 3×3 convolution instead of the first",
      "the first 3×3 convolution downsamples; the second keeps the size (section 3's task).",
      dict(stride_in="conv2")),
     ("the 3×3 convolutions have a bias",
      "in a ResNet the convolutions before a BatchNorm have no bias: BatchNorm's shift β already plays that role.",
      dict(conv_bias=True))],
    hint="follow the diagram of section 3 along both paths: the residual branch (two convolutions, each with its "
         "BatchNorm), the shortcut (identity, or projected when the shape changes), then the final ReLU.",
    forbidden=TORCHVISION_BLOCKS,
    section="3. The ResNet basic block",
    covers={"identity shortcut (stride 1, same channels)": lambda c: _shape_changes(c, False, 1),
            "stride 2 with the same channel count": lambda c: _shape_changes(c, False, 2),
            "more channels with stride 1": lambda c: _shape_changes(c, True, 1),
            "more channels with stride 2": lambda c: _shape_changes(c, True, 2),
            "an odd height or width with stride 2":
            lambda c: output_case(c) and config_value(c, "stride") == 2 and any(n % 2 for n in input_shape(c)[2:]),
            "a non-square input": lambda c: output_case(c) and input_shape(c)[2] != input_shape(c)[3]})


def check_BasicBlock(BasicBlock, hidden: bool = False) -> None:
    """Check ``BasicBlock(in_channels, out_channels, stride=1)`` against torchvision's BasicBlock."""
    show(run_check(BASIC_BLOCK, BasicBlock, hidden))
