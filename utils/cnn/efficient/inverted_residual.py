"""``InvertedResidual(in_channels, out_channels, stride=1, expand_ratio=4)``: MobileNetV2's inverted residual
with EfficientNet's squeeze-and-excitation (the MBConv block).

With ``hidden = in_channels · expand_ratio`` and ``squeeze = max(1, in_channels // 4)``::

    x ─► [1×1 expand → BN → SiLU]  (left out when expand_ratio == 1)
      ─► depthwise 3×3 (stride, padding 1, groups = hidden) → BN → SiLU
      ─► SE: avg pool → fc1 (hidden → squeeze) → SiLU → fc2 (squeeze → hidden) → sigmoid, times its input
      ─► 1×1 project → BN          (no activation: the linear bottleneck)
      ─► + x                        (only when stride == 1 and in_channels == out_channels)

Attributes (the check loads its weights by name): ``expand_conv``, ``expand_bn`` (only when expand_ratio > 1),
``dw_conv``, ``dw_bn``, ``se.fc1``, ``se.fc2`` (Linear layers or 1×1 convolutions, with bias), ``project_conv``,
``project_bn``; the convolutions have no bias. The reference (:class:`TorchvisionInvertedResidual`) is built from
``torchvision.ops.Conv2dNormActivation`` and ``torchvision.ops.SqueezeExcitation``, as torchvision's own MBConv
is; a module whose forward calls torchvision's SqueezeExcitation, MBConv or InvertedResidual fails as "must be
written from scratch". A module exercise (:func:`~utils.cnn.architectures.shared.module_exercise`).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.checks.exercise import run_check
from utils.checks.feedback import show
from utils.cnn.architectures.shared import config_value, input_shape, module_cases, module_exercise, output_case

MAP_AXES = ("image", "channel", "row", "column")

_TORCHVISION_BLOCKS = ("torchvision.ops.misc.SqueezeExcitation", "torchvision.models.efficientnet.MBConv",
                       "torchvision.models.mobilenetv2.InvertedResidual")

# torchvision's piece -> the exercise's attribute
_NAMES = (("expand.0.", "expand_conv."), ("expand.1.", "expand_bn."), ("depthwise.0.", "dw_conv."),
          ("depthwise.1.", "dw_bn."), ("se.", "se."), ("project.0.", "project_conv."), ("project.1.", "project_bn."))


def _rename(key: str, pairs) -> str:
    for old, new in pairs:
        if key.startswith(old):
            return new + key[len(old):]
    raise KeyError(key)


def squeeze_channels(in_channels: int) -> int:
    """The SE bottleneck of an MBConv block: a quarter of the block's *input* channels, at least 1."""
    return max(1, in_channels // 4)


class TorchvisionInvertedResidual(nn.Module):
    """The block from torchvision's pieces (as ``torchvision.models.efficientnet.MBConv`` builds it), with its
    ``state_dict`` / ``load_state_dict`` under the exercise's attribute names."""

    def __init__(self, in_channels, out_channels, stride=1, expand_ratio=4):
        super().__init__()
        from torchvision.ops import Conv2dNormActivation, SqueezeExcitation
        hidden = in_channels * expand_ratio
        self.expand = Conv2dNormActivation(in_channels, hidden, 1, activation_layer=nn.SiLU) \
            if expand_ratio != 1 else None
        self.depthwise = Conv2dNormActivation(hidden, hidden, 3, stride, groups=hidden, activation_layer=nn.SiLU)
        self.se = SqueezeExcitation(hidden, squeeze_channels(in_channels), activation=nn.SiLU)
        self.project = Conv2dNormActivation(hidden, out_channels, 1, activation_layer=None)
        self.use_residual = stride == 1 and in_channels == out_channels

    def state_dict(self, *args, **kwargs):
        return OrderedDict((_rename(k, _NAMES), v) for k, v in super().state_dict(*args, **kwargs).items())

    def load_state_dict(self, state, strict=True, assign=False):
        back = tuple((new, old) for old, new in _NAMES)
        return super().load_state_dict({_rename(k, back): v for k, v in state.items()}, strict=strict, assign=assign)

    def forward(self, x):
        out = x if self.expand is None else self.expand(x)
        out = self.project(self.se(self.depthwise(out)))
        return out + x if self.use_residual else out


class SE(nn.Module):
    def __init__(self, channels, squeeze):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(F.silu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))))


class InvertedResidualVariant(nn.Module):
    """The block with the exercise's attribute names and the switches of the mistake catalogue."""

    def __init__(self, in_channels, out_channels, stride=1, expand_ratio=4, project_act=False, act_after_add=False,
                 residual="when_shapes_match", se_place="after_dw", se_squeeze="input", expand_always=False,
                 act="silu", stride_in="depthwise", dw_groups="depthwise"):
        super().__init__()
        hidden = in_channels * expand_ratio
        self.expands = expand_ratio != 1 or expand_always
        e_stride, d_stride = (stride, 1) if stride_in == "expand" and self.expands else (1, stride)
        if self.expands:
            self.expand_conv = nn.Conv2d(in_channels, hidden, 1, e_stride, bias=False)
            self.expand_bn = nn.BatchNorm2d(hidden)
        self.dw_conv = nn.Conv2d(hidden, hidden, 3, d_stride, 1, groups=hidden if dw_groups == "depthwise" else 1,
                                 bias=False)
        self.dw_bn = nn.BatchNorm2d(hidden)
        se_channels = out_channels if se_place == "after_project" else hidden
        self.se = SE(se_channels, squeeze_channels(in_channels) if se_squeeze == "input" else max(1, hidden // 4))
        self.project_conv = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(out_channels)
        self.use_residual = residual == "when_shapes_match" and stride == 1 and in_channels == out_channels
        self.act = {"silu": F.silu, "relu6": F.relu6}[act]
        self.project_act, self.act_after_add, self.se_place = project_act, act_after_add, se_place

    def forward(self, x):
        out = self.act(self.expand_bn(self.expand_conv(x))) if self.expands else x
        if self.se_place == "before_dw":
            out = self.se(out)
        out = self.act(self.dw_bn(self.dw_conv(out)))
        if self.se_place == "after_dw":
            out = self.se(out)
        out = self.project_bn(self.project_conv(out))
        if self.se_place == "after_project":
            out = self.se(out)
        if self.project_act:
            out = self.act(out)
        if self.use_residual:
            out = out + x
        return self.act(out) if self.act_after_add else out


def _build(in_channels, out_channels, stride=1, expand_ratio=4, **variant):
    if not variant:
        return TorchvisionInvertedResidual(in_channels, out_channels, stride, expand_ratio)
    return InvertedResidualVariant(in_channels, out_channels, stride, expand_ratio, **variant)


def _residual(case, present: bool) -> bool:
    if not output_case(case):
        return False
    keeps = config_value(case, "stride") == 1 and config_value(case, "in_channels") == config_value(case,
                                                                                                      "out_channels")
    return keeps == present


INVERTED_RESIDUAL = module_exercise(
    "InvertedResidual", "an MBConv block built from torchvision.ops.Conv2dNormActivation and "
    "torchvision.ops.SqueezeExcitation", _build,
    lambda hidden: module_cases(
        "InvertedResidual", _build,
        counts=[dict(in_channels=16, out_channels=24, stride=2, expand_ratio=6),
                dict(in_channels=16, out_channels=16, stride=1, expand_ratio=1),
                dict(in_channels=8, out_channels=16, stride=1, expand_ratio=4)],
        outputs=[(dict(in_channels=4, out_channels=4, stride=1, expand_ratio=4), (2, 4, 6, 7), "train"),
                 (dict(in_channels=8, out_channels=12, stride=2, expand_ratio=3), (1, 8, 9, 8)),
                 (dict(in_channels=6, out_channels=6, stride=1, expand_ratio=1), (1, 6, 5, 8)),
                 (dict(in_channels=4, out_channels=6, stride=1, expand_ratio=2), (2, 4, 7, 5), "train"),
                 (dict(in_channels=4, out_channels=4, stride=2, expand_ratio=6), (2, 4, 9, 10))],
        hidden_counts=[dict(in_channels=24, out_channels=40, stride=2, expand_ratio=6),
                       dict(in_channels=3, out_channels=5, stride=1, expand_ratio=1)],
        hidden_outputs=[(dict(in_channels=5, out_channels=5, stride=1, expand_ratio=3), (3, 5, 8, 6), "train"),
                        (dict(in_channels=7, out_channels=4, stride=2, expand_ratio=1), (2, 7, 11, 9), "train"),
                        (dict(in_channels=12, out_channels=12, stride=1, expand_ratio=2), (1, 12, 4, 9))],
        hidden=hidden, axes=MAP_AXES),
    # narrower mistakes first: where two fit the first failing case, the one that explains every case is named
    [("an activation after the projection: the last 1×1 convolution must stay linear (the linear bottleneck)",
      "the projection maps the wide features back to a narrow bottleneck; an activation there destroys "
      "information, so the block ends with BatchNorm only (section 2).", dict(project_act=True)),
     ("an activation after the residual addition (the ResNet habit): the inverted residual adds its input to "
      "a linear output and stops",
      "unlike ResNet's basic block, nothing follows the addition: the sum is the output (section 2's diagram).",
      dict(act_after_add=True)),
     ("the residual connection is missing although stride = 1 and in_channels = out_channels",
      "add the input to the projected output whenever the shapes match: stride 1 and the same channel count.",
      dict(residual="never")),
     ("squeeze-and-excitation before the depthwise convolution: SE re-weights the depthwise output",
      "the SE block sits between the depthwise stage and the projection (section 2's diagram).",
      dict(se_place="before_dw")),
     ("squeeze-and-excitation after the projection, on the out_channels narrow features",
      "SE re-weights the hidden (expanded) channels, before the projection narrows them.",
      dict(se_place="after_project")),
     ("the SE bottleneck is a quarter of the expanded channels: in this block it is a quarter of in_channels",
      "the SE squeeze width is a quarter of the block's input channels (at least one unit), not of the hidden ones.",
      dict(se_squeeze="hidden")),
     ("an expansion layer with expand_ratio = 1: a 1×1 convolution from C to C channels that the block "
      "leaves out",
      "with expand_ratio 1 there is nothing to expand: the block starts with the depthwise convolution.",
      dict(expand_always=True)),
     ("ReLU6 (MobileNetV2) instead of SiLU after the expansion and the depthwise convolution",
      "this block (EfficientNet's) uses SiLU, x · sigmoid(x), wherever MobileNetV2 used ReLU6.", dict(act="relu6")),
     ("the stride is applied in the 1×1 expansion instead of the depthwise 3×3 convolution",
      "the depthwise 3×3 convolution downsamples; a strided 1×1 convolution only skips pixels.",
      dict(stride_in="expand")),
     ("groups missing in the depthwise convolution: a full 3×3 convolution over the hidden channels",
      "the depthwise 3×3 convolution has one filter per hidden channel: groups = hidden.",
      dict(dw_groups="full"))],
    hint="follow section 2's diagram stage by stage (expand, depthwise, SE, project, residual) and print the "
         "shape after each; check which stages have an activation and when the input is added.",
    forbidden=_TORCHVISION_BLOCKS,
    section="2. The inverted residual block",
    covers={"expand_ratio 1 (no expansion layer)": lambda c: config_value(c, "expand_ratio") == 1,
            "expand_ratio 1 in an output case": lambda c: output_case(c) and config_value(c, "expand_ratio") == 1,
            "a residual connection (stride 1, in = out)": lambda c: _residual(c, True),
            "no residual: stride 2 with in = out": lambda c: _residual(c, False) and config_value(c, "stride") == 2
            and config_value(c, "in_channels") == config_value(c, "out_channels"),
            "no residual: stride 1 with in ≠ out": lambda c: _residual(c, False) and config_value(c, "stride") == 1,
            "a residual case in train mode": lambda c: _residual(c, True) and c.inputs["mode"] == "train",
            "in_channels < 4 (the SE bottleneck rounds up to 1)": lambda c: (config_value(c, "in_channels") or 4) < 4,
            "a non-square input": lambda c: output_case(c) and input_shape(c)[2] != input_shape(c)[3]})


def check_InvertedResidual(InvertedResidual, hidden: bool = False) -> None:
    """Check ``InvertedResidual(in_channels, out_channels, stride=1, expand_ratio=4)`` against the block built
    from torchvision's Conv2dNormActivation and SqueezeExcitation."""
    show(run_check(INVERTED_RESIDUAL, InvertedResidual, hidden))
