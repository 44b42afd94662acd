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
from utils.cnn.architectures.shared import module_cases, module_exercise

# torchvision's own blocks, which the answers must not call: they are what the answers are compared with.
TORCHVISION_BLOCKS = ("torchvision.models.resnet.BasicBlock", "torchvision.models.resnet.Bottleneck")

NO_PROJECTION = ("no projection shortcut when the shape changes (stride ≠ 1 or C_in ≠ C_out)",
                 "then the shortcut must be downsample = nn.Sequential(nn.Conv2d(C_in, C_out, 1, stride=stride, "
                 "bias=False), nn.BatchNorm2d(C_out)); check both conditions, not only the channels.")
_RELU_BEFORE_ADD = ("ReLU before the addition instead of after it",
                    "out = bn2(conv2(...)); out = out + identity; out = relu(out): the last ReLU acts on the sum.")


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


BASIC_BLOCK = module_exercise(
    "BasicBlock", "torchvision.models.resnet.BasicBlock", _basic_block_build,
    lambda hidden: module_cases(
        "BasicBlock", _basic_block_build,
        counts=[dict(in_channels=16, out_channels=16, stride=1), dict(in_channels=16, out_channels=32, stride=2),
                dict(in_channels=16, out_channels=16, stride=2), dict(in_channels=8, out_channels=24, stride=1)],
        outputs=[(dict(in_channels=8, out_channels=8, stride=1), (2, 8, 6, 6)),
                 (dict(in_channels=8, out_channels=16, stride=2), (2, 8, 8, 8)),
                 (dict(in_channels=6, out_channels=12, stride=1), (1, 6, 5, 7))],
        hidden_counts=[dict(in_channels=32, out_channels=64, stride=2)],
        hidden_outputs=[(dict(in_channels=8, out_channels=8, stride=2), (2, 8, 7, 9)),
                        (dict(in_channels=4, out_channels=12, stride=2), (1, 4, 9, 9))], hidden=hidden),
    [(*NO_PROJECTION, dict(projection=False)),
     ("BatchNorm missing in the shortcut: the projection is a 1×1 conv followed by BatchNorm2d",
      "downsample = nn.Sequential(nn.Conv2d(C_in, C_out, 1, stride=stride, bias=False), nn.BatchNorm2d(C_out)).",
      dict(shortcut_bn=False)),
     (*_RELU_BEFORE_ADD, dict(relu_before_add=True)),
     ("the stride is applied in the second 3×3 convolution instead of the first",
      "conv1 = nn.Conv2d(C_in, C_out, 3, stride=stride, padding=1, bias=False); conv2 has stride 1.",
      dict(stride_in="conv2")),
     ("the 3×3 convolutions have a bias: in a ResNet they are followed by BatchNorm and use bias=False",
      "nn.Conv2d(..., bias=False): BatchNorm's β already is the bias.", dict(conv_bias=True))],
    hint="out = relu(bn1(conv1(x))); out = bn2(conv2(out)); out = relu(out + (x if downsample is None else "
         "downsample(x))); conv1 carries the stride.",
    forbidden=TORCHVISION_BLOCKS)


def check_BasicBlock(BasicBlock, hidden: bool = False) -> None:
    """Check ``BasicBlock(in_channels, out_channels, stride=1)`` against torchvision's BasicBlock."""
    show(run_check(BASIC_BLOCK, BasicBlock, hidden))
