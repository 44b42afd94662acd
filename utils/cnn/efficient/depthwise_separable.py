"""``DepthwiseSeparableConv(in_channels, out_channels, kernel_size=3, stride=1, dilation=1, padding=None)``:
a depthwise k×k convolution (one filter per input channel, ``groups=in_channels``) → BatchNorm → ReLU, then a
pointwise 1×1 convolution → BatchNorm → ReLU (MobileNetV1's block). ``padding=None`` means the padding that
keeps the size at stride 1, ``dilation · (kernel_size − 1) // 2``.

Attributes (the check loads its weights by name): ``depthwise`` Conv2d(C_in, C_in, k, groups=C_in,
bias=False), ``bn1`` BatchNorm2d(C_in), ``pointwise`` Conv2d(C_in, C_out, 1, bias=False), ``bn2``
BatchNorm2d(C_out). The reference is the same stack written with ``nn.Conv2d(groups=...)``
(:class:`SeparableReference`), loaded with the check's weights, in float64, in eval mode and after one
train-mode forward on a batch. A module exercise (:func:`~utils.cnn.architectures.shared.module_exercise`).
"""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from utils.checks.exercise import run_check
from utils.checks.feedback import show
from utils.cnn.architectures.shared import config_value, input_shape, module_cases, module_exercise, output_case

MAP_AXES = ("image", "channel", "row", "column")


def same_padding(kernel_size: int, dilation: int) -> int:
    """The padding that keeps H and W at stride 1 for an odd kernel: half the dilated kernel's extent."""
    return dilation * (kernel_size - 1) // 2


class SeparableReference(nn.Module):
    """depthwise conv → BN → ReLU → pointwise conv → BN → ReLU, with the switches of the mistake catalogue."""

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, dilation=1, padding=None,
                 groups="depthwise", pointwise=True, padding_rule="same", order="depthwise_first", mid_relu=True,
                 bias=False, stride_in="depthwise"):
        super().__init__()
        if padding is None:
            padding = {"same": same_padding(kernel_size, dilation), "no_dilation": (kernel_size - 1) // 2,
                       "zero": 0}[padding_rule]
        dw_stride, pw_stride = (stride, 1) if stride_in == "depthwise" else (1, stride)
        dw_channels = out_channels if order == "pointwise_first" else in_channels
        self.depthwise = nn.Conv2d(dw_channels, dw_channels, kernel_size, dw_stride, padding, dilation,
                                   groups=dw_channels if groups == "depthwise" else 1, bias=bias)
        self.bn1 = nn.BatchNorm2d(dw_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, pw_stride, bias=bias) if pointwise else None
        self.bn2 = nn.BatchNorm2d(out_channels) if pointwise else None
        self.order, self.mid_relu = order, mid_relu

    def _depthwise(self, x):
        x = self.bn1(self.depthwise(x))
        return F.relu(x) if self.mid_relu or self.order == "pointwise_first" else x

    def _pointwise(self, x):
        return F.relu(self.bn2(self.pointwise(x)))

    def forward(self, x):
        if self.pointwise is None:
            return F.relu(self.bn1(self.depthwise(x)))
        if self.order == "pointwise_first":
            return self._depthwise(self._pointwise(x))
        return self._pointwise(self._depthwise(x))


def _strided(case, dilated: bool = False) -> bool:
    """An output case with stride 2 (and, with ``dilated``, a dilation above 1)."""
    return output_case(case) and config_value(case, "stride") == 2 and \
        (not dilated or (config_value(case, "dilation") or 1) > 1)


SEPARABLE = module_exercise(
    "DepthwiseSeparableConv", "a depthwise nn.Conv2d(groups=in_channels) then a 1×1 nn.Conv2d, each with "
    "BatchNorm2d and ReLU", SeparableReference,
    lambda hidden: module_cases(
        "DepthwiseSeparableConv", SeparableReference,
        counts=[dict(in_channels=32, out_channels=64), dict(in_channels=16, out_channels=24, kernel_size=5),
                dict(in_channels=8, out_channels=8, kernel_size=7)],
        outputs=[(dict(in_channels=4, out_channels=6), (2, 4, 7, 9), "train"),
                 (dict(in_channels=6, out_channels=5, kernel_size=3, stride=2), (1, 6, 9, 8)),
                 (dict(in_channels=5, out_channels=7, kernel_size=3, dilation=2), (2, 5, 8, 11)),
                 (dict(in_channels=3, out_channels=3, kernel_size=7), (1, 3, 10, 9)),
                 (dict(in_channels=4, out_channels=8, kernel_size=5, stride=2, dilation=2, padding=1),
                  (2, 4, 13, 12), "train")],
        hidden_counts=[dict(in_channels=24, out_channels=40, kernel_size=3), dict(in_channels=12, out_channels=6)],
        hidden_outputs=[(dict(in_channels=7, out_channels=3, kernel_size=5, dilation=3), (3, 7, 14, 15), "train"),
                        (dict(in_channels=2, out_channels=9, stride=2), (2, 2, 11, 7)),
                        (dict(in_channels=5, out_channels=5, kernel_size=7, stride=2, padding=0), (1, 5, 12, 16))],
        hidden=hidden, axes=MAP_AXES),
    [("groups missing in the depthwise convolution: with groups=1 every filter reads all C_in channels (a full "
      "k×k convolution)",
      "the depthwise convolution has one k×k filter per input channel, which sees only that channel: that is "
      "what `groups` says (section 1).", dict(groups="full")),
     ("the pointwise 1×1 convolution (and its BatchNorm) is missing: the block never mixes the channels",
      "after the depthwise step each channel has only seen itself; a 1×1 convolution then mixes them into "
      "out_channels (section 1's two steps).", dict(pointwise=False)),
     ("pointwise before depthwise: the 1×1 convolution runs first, the k×k depthwise filters on its C_out "
      "channels",
      "the spatial (depthwise) filtering comes first, on the C_in input channels; the 1×1 convolution comes "
      "second.", dict(order="pointwise_first")),
     ("the padding ignores the dilation: (k − 1) // 2 instead of dilation · (k − 1) // 2",
      "a dilated kernel spans dilation · (k − 1) + 1 pixels; the padding that keeps the size covers half of "
      "that extent (section 1's padding rule).", dict(padding_rule="no_dilation")),
     ("no padding: with padding=None the block must keep H and W at stride 1",
      "padding=None means the padding that keeps the size at stride 1 (section 1's padding rule).",
      dict(padding_rule="zero")),
     ("the stride is applied in the pointwise 1×1 convolution instead of the depthwise one",
      "the depthwise k×k convolution downsamples; a strided 1×1 convolution only skips pixels without "
      "looking at their neighbours.", dict(stride_in="pointwise")),
     ("no ReLU between the depthwise and the pointwise convolution",
      "MobileNetV1's block has a BatchNorm and a ReLU after each of its two convolutions.",
      dict(mid_relu=False)),
     ("the convolutions have a bias: before a BatchNorm a bias is redundant (BatchNorm's β plays that role)",
      "create both convolutions with bias=False.", dict(bias=True))],
    hint="follow section 1's diagram: depthwise k×k (groups = C_in, the stride, the dilation and the padding "
         "rule) → BN → ReLU → pointwise 1×1 → BN → ReLU; print the shape after each step.",
    section="1. Depthwise-separable convolution",
    covers={"stride 2": _strided,
            "dilation above 1 with the padding rule (padding=None)":
            lambda c: output_case(c) and (config_value(c, "dilation") or 1) > 1 and config_value(c, "padding") is None,
            "an explicit padding": lambda c: output_case(c) and config_value(c, "padding") is not None,
            "stride 2 with dilation above 1": lambda c: _strided(c, dilated=True),
            "in_channels = out_channels": lambda c: output_case(c) and
            config_value(c, "in_channels") == config_value(c, "out_channels"),
            "in_channels ≠ out_channels": lambda c: output_case(c) and
            config_value(c, "in_channels") != config_value(c, "out_channels"),
            "a large (7×7) depthwise kernel": lambda c: output_case(c) and config_value(c, "kernel_size") == 7,
            "a non-square input": lambda c: output_case(c) and input_shape(c)[2] != input_shape(c)[3]})


def check_DepthwiseSeparableConv(DepthwiseSeparableConv, hidden: bool = False) -> None:
    """Check ``DepthwiseSeparableConv(in_channels, out_channels, kernel_size=3, stride=1, dilation=1,
    padding=None)`` against the same stack built from ``nn.Conv2d(groups=...)``."""
    show(run_check(SEPARABLE, DepthwiseSeparableConv, hidden))
