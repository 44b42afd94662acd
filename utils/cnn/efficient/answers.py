"""``efficiency_answers``: a dict of numbers worked out by hand (or with a few lines of arithmetic), one case
per key: what a depthwise-separable convolution saves over a standard one, what stacked 3×3, 7×7 and dilated
kernels cost for their receptive field, how many pixels a stack of dilated convolutions really reads (the
gridding effect), and the activation memory of an inverted residual block's expanded tensor.

Every answer is measured on torch modules when the check runs, never typed in: parameters from
``parameters()`` (modules on the meta device), MACs from ``FlopCounterMode`` (FLOPs / 2), receptive fields and
the pixels read from autograd (an input pixel is read when the centre output's gradient reaches it), bytes from
a tensor's ``numel() · element_size()``. A wrong answer a student typically gives is catalogued for its key
(:class:`~utils.cnn.layers.by_hand.ByHandAnswers`, as for the by-hand dicts of ``cnn_layers``).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn

from utils.checks.compare import Tolerance
from utils.checks.exercise import run_check
from utils.checks.feedback import show
from utils.cnn.layers.by_hand import ByHandAnswers, Question, WrongAnswer, measured_receptive_field

# the sizes of section 4's questions
C_IN, C_OUT, K, SIDE, C = 64, 128, 3, 56, 64
# whole numbers compare exactly within this; the one ratio is asked to 2 decimals
TWO_DECIMALS = Tolerance(atol=5e-3, rtol=0.0)


def _params(*layers: nn.Module) -> int:
    return sum(p.numel() for layer in layers for p in layer.parameters())


def _meta(build):
    with torch.device("meta"):
        return build()


def _standard(c_in=C_IN, c_out=C_OUT, bias=False):
    return _meta(lambda: nn.Conv2d(c_in, c_out, K, padding=1, bias=bias))


def _separable(c_in=C_IN, c_out=C_OUT, k=K, full=False):
    """[depthwise k×k, pointwise 1×1] without bias (BatchNorm's parameters are not part of the question)."""
    return _meta(lambda: [nn.Conv2d(c_in, c_in, k, padding=k // 2, groups=1 if full else c_in, bias=False),
                          nn.Conv2d(c_in, c_out, 1, bias=False)])


def _macs(layers, side=SIDE, stride=1) -> int:
    """MACs of ``layers`` (the first with ``stride``) on a 1 × C_in × side × side input, measured by FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode
    layers[0].stride = (stride, stride)
    with FlopCounterMode(display=False) as counter:
        nn.Sequential(*layers)(torch.zeros(1, layers[0].in_channels, side, side, device="meta"))
    return counter.get_total_flops() // 2


def pixels_read(dilations: tuple[int, ...]) -> int:
    """How many input pixels the centre output of stacked 3×3 convolutions (these dilations) depends on."""
    net = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=d, dilation=d, bias=False) for d in dilations]).double()
    with torch.no_grad():
        for conv in net:
            conv.weight.fill_(1.0)
    x = torch.ones(1, 1, 31, 31, dtype=torch.float64, requires_grad=True)
    net(x)[0, 0, 15, 15].backward()
    return int((x.grad != 0).sum())


def _expanded_bytes(expand_ratio=6, channels=32, bits=False, values=False) -> int:
    conv = _meta(lambda: nn.Conv2d(channels, channels * expand_ratio, 1, bias=False))
    out = conv(torch.zeros(1, channels, SIDE, SIDE, device="meta"))
    return out.numel() * (1 if values else out.element_size() * (8 if bits else 1))


_FLOPS = ("FLOPs instead of MACs: each multiply–accumulate was counted twice", "the question asks for MACs; "
          "FLOPs = 2 × MACs.")

QUESTIONS = {
    "std_params": Question(
        f"weights of a standard Conv2d({C_IN}, {C_OUT}, {K}×{K}), bias=False",
        lambda: _params(_standard()),
        (WrongAnswer("a bias was counted: the question says bias=False", "count the k·k·C_in weights of each of "
                     "the C_out filters, nothing else.", lambda: _params(_standard(bias=True))),)),
    "dws_params": Question(
        f"weights of its depthwise-separable replacement: depthwise {K}×{K} on {C_IN} channels, then pointwise "
        f"1×1 to {C_OUT} (no bias)",
        lambda: _params(*_separable()),
        (WrongAnswer("the depthwise step was counted as a full convolution: each depthwise filter has k·k weights "
                     "and sees one channel", "one k×k filter per input channel.",
                     lambda: _params(*_separable(full=True))),
         WrongAnswer("only the depthwise step was counted", "the pointwise 1×1 convolution has C_in·C_out weights.",
                     lambda: _params(_separable()[0])),
         WrongAnswer("the depthwise filters were counted on the C_out channels", "the depthwise step runs first, "
                     "on the C_in input channels.", C_OUT * K * K + C_IN * C_OUT))),
    "param_saving": Question(
        "how many times fewer weights the separable version has: std_params / dws_params (2 decimals)",
        lambda: _params(_standard()) / _params(*_separable()),
        (WrongAnswer("the ratio is upside down", "divide the standard count by the separable one: the answer is "
                     "above 1.", lambda: _params(*_separable()) / _params(_standard())),)),
    "std_macs": Question(
        f"MACs of the standard convolution on one {C_IN}×{SIDE}×{SIDE} input (padding 1, stride 1)",
        lambda: _macs([_standard()]),
        (WrongAnswer(*_FLOPS, lambda: 2 * _macs([_standard()])),
         WrongAnswer("the MACs of one output position: multiply by the H_out × W_out positions",
                     "every output position applies all the filters again.", lambda: _params(_standard())))),
    "dws_macs": Question(
        "MACs of the depthwise-separable version on the same input",
        lambda: _macs(_separable()),
        (WrongAnswer(*_FLOPS, lambda: 2 * _macs(_separable())),
         WrongAnswer("only the pointwise convolution was counted", "the depthwise step costs k·k MACs per channel "
                     "and position too.", lambda: _macs(_separable()[1:])))),
    "dws_macs_stride2": Question(
        "MACs of the depthwise-separable version when its depthwise convolution has stride 2",
        lambda: _macs(_separable(), stride=2),
        (WrongAnswer("the stride was ignored: stride 2 leaves a quarter of the output positions",
                     "count the positions of the 28×28 output, for both steps.", lambda: _macs(_separable())),
         WrongAnswer("only the depthwise step was made cheaper: the pointwise convolution runs on the "
                     "downsampled map too", "after the stride-2 depthwise step every later layer sees 28×28.",
                     lambda: _macs(_separable()[:1], stride=2) + _macs(_separable()[1:])))),
    "params_three_3x3": Question(
        f"weights of three stacked Conv2d({C}, {C}, 3×3), bias=False (receptive field 7)",
        lambda: _params(*_meta(lambda: [nn.Conv2d(C, C, 3, bias=False) for _ in range(3)])),
        (WrongAnswer("one layer counted instead of three", "there are three layers of the same size.",
                     9 * C * C),)),
    "params_one_7x7": Question(
        f"weights of one Conv2d({C}, {C}, 7×7), bias=False (the same receptive field)",
        lambda: _params(_meta(lambda: nn.Conv2d(C, C, 7, bias=False)))),
    "params_dw7": Question(
        f"weights of a ConvNeXt-style pair: depthwise 7×7 on {C} channels, then pointwise 1×1 {C} → {C} (no bias)",
        lambda: _params(*_separable(C, C, 7)),
        (WrongAnswer("the depthwise 7×7 was counted as a full convolution", "one 7×7 filter per channel.",
                     lambda: _params(*_separable(C, C, 7, full=True))),)),
    "rf_dilated_d3": Question(
        "receptive field (side) of one 3×3 convolution with dilation 3",
        lambda: measured_receptive_field((("conv", 3, 1, 3),)),
        (WrongAnswer("dilation ignored", "dilation 3 spreads the 3 taps 3 pixels apart.", 3),
         WrongAnswer("kernel size times dilation: the taps span d·(k − 1) + 1 pixels", "count the pixels from the "
                     "first tap to the last one, both included.", 9))),
    "rf_two_d2": Question(
        "receptive field of two stacked 3×3 convolutions, both with dilation 2",
        lambda: measured_receptive_field((("conv", 3, 1, 2),) * 2),
        (WrongAnswer("the two extents were added (5 + 5): stacked layers overlap by one pixel",
                     "each further layer widens the field by d·(k − 1).", 10),)),
    "pixels_two_d2": Question(
        "how many input pixels inside that 2-D field the centre output actually depends on (gridding)",
        lambda: pixels_read((2, 2)),
        (WrongAnswer("the whole square field was counted: with dilation 2 twice, only pixels at even offsets "
                     "are ever read", "list the offsets each layer can add (−2, 0, 2) and which sums are "
                     "reachable (section 4's figure).", 81),)),
    "pixels_d1_d2": Question(
        "the same count for a 3×3 convolution with dilation 1 followed by one with dilation 2",
        lambda: pixels_read((1, 2)),
        (WrongAnswer("the gridding of two dilation-2 layers was assumed: a dilation-1 layer first fills the gaps",
                     "offsets (−1, 0, 1) plus (−2, 0, 2) reach every offset from −3 to 3.", 25),)),
    "expanded_bytes": Question(
        f"bytes of the expanded tensor of InvertedResidual(32, 32, expand_ratio=6) on a 1×32×{SIDE}×{SIDE} "
        "float32 input (the output of its 1×1 expansion)",
        _expanded_bytes,
        (WrongAnswer("values, not bytes: a float32 value takes 4 bytes", "multiply the number of values by 4.",
                     lambda: _expanded_bytes(values=True)),
         WrongAnswer("bits, not bytes", "a float32 value is 4 bytes.", lambda: _expanded_bytes(bits=True)),
         WrongAnswer("the expansion was not applied: the tensor has 6 × 32 channels",
                     "the expanded tensor is the widest one of the block.", lambda: _expanded_bytes(expand_ratio=1)))),
}

EFFICIENCY_ANSWERS = dataclasses.replace(
    ByHandAnswers("efficiency_answers", QUESTIONS).exercise(
        TWO_DECIMALS, "count per layer as section 4 does: weights are k·k·(C_in / groups)·C_out, MACs are weights × "
                      "output positions, and each stacked layer widens the field by d·(k − 1)."),
    section="4. On paper: what a receptive field costs")


def check_efficiency_answers(efficiency_answers, hidden: bool = False) -> None:
    """Check the dict of hand-computed costs against torch modules, FlopCounterMode and autograd."""
    show(run_check(EFFICIENCY_ANSWERS, efficiency_answers, hidden))
