"""Squeeze-and-Excitation: ``SEBlock`` and ``SEResNet18``.

* ``SEBlock(channels, reduction=16)``: ``fc1 = Linear(C, C // r)``, ``fc2 = Linear(C // r, C)``; the output is
  ``x · sigmoid(fc2(relu(fc1(avgpool(x)))))``, compared with ``torchvision.ops.SqueezeExcitation``.
* ``SEResNet18(num_classes=10, reduction=16)``: the CIFAR-style ResNet-18 (3×3 stem, no max pool) whose
  basic blocks rescale their residual branch with an SE block before the addition; parameter names as
  in torchvision's ResNet plus ``se.fc1`` / ``se.fc2`` in every block.

Both are module exercises (:func:`~utils.cnn.architectures.shared.module_exercise`); a module whose forward
calls torchvision's SqueezeExcitation (or its ResNet blocks) fails as "must be written from scratch".
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.checks.exercise import run_check
from utils.checks.feedback import show
from utils.cnn.architectures.basic_block import NO_PROJECTION, TORCHVISION_BLOCKS, projection_shortcut
from utils.cnn.architectures.shared import config_value, input_shape, module_cases, module_exercise, output_case

MAP_AXES = ("image", "channel", "row", "column")

# torchvision's own SE block, which the answers must not call: it is what they are compared with.
_TORCHVISION_SE = ("torchvision.ops.misc.SqueezeExcitation",)

_SE_REDUCTION = "SE reduction ratio wrong: the hidden layer has C // reduction units, not `reduction` units"
_SE_MAX_POOL = "SE using max instead of average pooling in the squeeze step"

# --------------------------------------------------------------------------- the SE block


class SEBlockReference(nn.Module):
    """x · sigmoid(fc2(relu(fc1(avgpool(x))))), with the switches of the mistake catalogue."""

    def __init__(self, channels, reduction=16, pool="avg", gate="sigmoid", hidden="ratio", returns="scaled"):
        super().__init__()
        h = {"ratio": channels // reduction, "reduction": reduction, "channels": channels}[hidden]
        self.fc1 = nn.Linear(channels, h)
        self.fc2 = nn.Linear(h, channels)
        self.pool, self.gate, self.returns = pool, gate, returns

    def forward(self, x):
        z = x.mean(dim=(2, 3)) if self.pool == "avg" else x.amax(dim=(2, 3))
        s = self.fc2(F.relu(self.fc1(z)))
        s = {"sigmoid": torch.sigmoid, "none": lambda t: t, "softmax": lambda t: F.softmax(t, dim=1)}[self.gate](s)
        s = s[:, :, None, None]
        return x * s if self.returns == "scaled" else s


class TorchvisionSE(nn.Module):
    """``torchvision.ops.SqueezeExcitation`` seen through the exercise's naming.

    torchvision computes the two Linear layers as 1×1 convolutions; its ``state_dict`` / ``load_state_dict``
    are exposed here with the exercise's shapes ``fc1.weight (C // r, C)`` and ``fc2.weight (C, C // r)``,
    so that the check's weights load into the reference exactly as into the student's module.
    """

    def __init__(self, channels, reduction=16):
        super().__init__()
        from torchvision.ops import SqueezeExcitation
        self.se = SqueezeExcitation(channels, channels // reduction)

    def state_dict(self, *args, **kwargs):
        return OrderedDict((k, v.flatten(1) if k.endswith("weight") else v)
                           for k, v in self.se.state_dict(*args, **kwargs).items())

    def load_state_dict(self, state, strict=True, assign=False):
        conv = {k: (v[:, :, None, None] if k.endswith("weight") else v) for k, v in state.items()}
        return self.se.load_state_dict(conv, strict=strict, assign=assign)

    def forward(self, x):
        return self.se(x)


def _se_build(channels, reduction=16, **variant):
    return SEBlockReference(channels, reduction, **variant)


def _se_reference_build(channels, reduction=16, **variant):
    return TorchvisionSE(channels, reduction) if not variant else SEBlockReference(channels, reduction, **variant)


SE_BLOCK = module_exercise(
    "SEBlock", "torchvision.ops.SqueezeExcitation", _se_reference_build,
    lambda hidden: module_cases(
        "SEBlock", _se_build,
        counts=[dict(channels=64, reduction=16), dict(channels=32, reduction=4)],
        outputs=[(dict(channels=32, reduction=8), (1, 32, 3, 4)),
                 (dict(channels=16, reduction=4), (2, 16, 5, 5), "train")],
        hidden_counts=[dict(channels=48, reduction=3), dict(channels=20, reduction=8)],
        hidden_outputs=[(dict(channels=24, reduction=3), (3, 24, 4, 6)),
                        (dict(channels=20, reduction=8), (2, 20, 6, 3), "train")], hidden=hidden, axes=MAP_AXES),
    [(_SE_MAX_POOL, "the squeeze step averages each channel over all H×W positions (section 5).", dict(pool="max")),
     ("SE without the sigmoid: the channel weights are not gated into (0, 1)",
      "the excitation ends with a gate in (0, 1) for every channel (section 5's formula).", dict(gate="none")),
     ("softmax instead of sigmoid: SE gates every channel independently, they need not sum to 1",
      "each channel gets its own gate in (0, 1); a softmax over the channels makes them compete.",
      dict(gate="softmax")),
     (_SE_REDUCTION,
      "reduction is the divisor of the channel count: the bottleneck between fc1 and fc2 has C // reduction units.",
      dict(hidden="reduction")),
     ("SE reduction ratio wrong: the hidden layer has C // reduction units, not C (no bottleneck)",
      "fc1 narrows the C channel summaries to C // reduction units; fc2 widens them back to C.",
      dict(hidden="channels")),
     ("the block returns the channel weights s instead of the rescaled input x · s",
      "the block returns its input with every channel multiplied by that channel's gate (the scale step).",
      dict(returns="gates"))],
    hint="go through the three steps of section 5 in order (squeeze, excite, scale) and print the shape after "
         "each: (N, C) summaries, (N, C) gates in (0, 1), then (N, C, H, W).",
    forbidden=_TORCHVISION_SE,
    section="5. Squeeze-and-Excitation",
    covers={"reduction other than 16": lambda c: config_value(c, "reduction") not in (None, 16),
            "channels not a multiple of reduction (C // r rounds down)":
            lambda c: output_case(c) and config_value(c, "channels") % config_value(c, "reduction") != 0,
            "a non-square input": lambda c: output_case(c) and input_shape(c)[2] != input_shape(c)[3]})


def check_SEBlock(SEBlock, hidden: bool = False) -> None:
    """Check ``SEBlock(channels, reduction=16)`` against ``torchvision.ops.SqueezeExcitation``."""
    show(run_check(SE_BLOCK, SEBlock, hidden))


# --------------------------------------------------------------------------- SE-ResNet-18


class SEBasicBlockReference(nn.Module):
    """A basic block whose residual branch is rescaled by an SE block before the addition."""

    def __init__(self, in_channels, out_channels, stride=1, reduction=16, se_after_add=False, projection=True,
                 se_hidden="ratio", se_pool="avg"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.se = SEBlockReference(out_channels, reduction, hidden=se_hidden, pool=se_pool)
        self.downsample = projection_shortcut(in_channels, out_channels, stride) if projection else None
        self.se_after_add = se_after_add

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.se_after_add:
            return F.relu(self.se(out + identity))
        return F.relu(self.se(out) + identity)


class SEResNet18Reference(nn.Module):
    """CIFAR-style ResNet-18 with SE in every basic block (torchvision's parameter names)."""

    def __init__(self, num_classes=10, reduction=16, stem="cifar", **block_variant):
        super().__init__()
        if stem == "cifar":
            self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.stem = stem
        channels = 64
        for i, (width, stride) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)], start=1):
            blocks = [SEBasicBlockReference(channels, width, stride, reduction, **block_variant),
                      SEBasicBlockReference(width, width, 1, reduction, **block_variant)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            channels = width
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        if self.stem != "cifar":
            x = F.max_pool2d(x, 3, 2, 1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


SE_RESNET = module_exercise(
    "SEResNet18", "an SE-ResNet-18 (reference in utils.cnn.architectures)", SEResNet18Reference,
    lambda hidden: module_cases(
        "SEResNet18", SEResNet18Reference,
        counts=[dict(num_classes=10, reduction=16), dict(num_classes=100, reduction=8)],
        outputs=[(dict(num_classes=10, reduction=16), (1, 3, 16, 16))],
        hidden_counts=[dict(num_classes=7, reduction=4)],
        hidden_outputs=[(dict(num_classes=5, reduction=8), (2, 3, 10, 14), "train")], hidden=hidden,
        keep_float32=True, axes=("image", "class")),
    [(*NO_PROJECTION, dict(projection=False)),
     (_SE_REDUCTION, "each SEBasicBlock hands its reduction ratio to its SEBlock unchanged (section 6).",
      dict(se_hidden="reduction")),
     ("SE applied after the addition: it must rescale the residual branch before the shortcut is added",
      "the SE block rescales the residual branch (after bn2); the shortcut is added afterwards, not rescaled.",
      dict(se_after_add=True)),
     (_SE_MAX_POOL, "the squeeze step averages each channel over all H×W positions (section 5).",
      dict(se_pool="max")),
     ("ImageNet stem (7×7 stride-2 conv + max pool) instead of the CIFAR stem",
      "the CIFAR stem of section 6 is one 3×3 convolution of stride 1, with no max pooling after it.",
      dict(stem="imagenet"))],
    hint="check section 6's table stage by stage (widths and strides of the two blocks of each layer), where "
         "the SE block sits in each block, and the head: global average pooling, then fc.",
    forbidden=TORCHVISION_BLOCKS + _TORCHVISION_SE + ("torchvision.models.resnet.ResNet",),
    section="6. SE-ResNet-18",
    covers={"reduction other than 16": lambda c: config_value(c, "reduction") not in (None, 16),
            "a non-square input": lambda c: output_case(c) and input_shape(c)[2] != input_shape(c)[3],
            "num_classes other than 10": lambda c: config_value(c, "num_classes") not in (None, 10)})


def check_SEResNet18(SEResNet18, hidden: bool = False) -> None:
    """Check ``SEResNet18(num_classes=10, reduction=16)``."""
    show(run_check(SE_RESNET, SEResNet18, hidden))
