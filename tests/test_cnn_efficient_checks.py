"""Tests of utils/cnn/efficient: the checks of source/cnn/cnn_efficient.ipynb.

For every check: the instructor solution and independent correct variants pass; catalogued mistakes, written
as student code, fail with the mistake's name in the message; odd returns (None, a total instead of a dict, a
dict without a layer) get a message that says what is expected; the references agree with torchvision's own
MBConv and with the formulas; the sample mistakes of utils/instructor/samples/cnn_efficient.py apply to the
notebook and are diagnosed. What every exercise keeps (release stubs, each mistake diagnosed on generated
outputs, coverage of the input space) is tested in tests/test_contract.py.
"""
from __future__ import annotations

from pathlib import Path

import check_failures
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import utils.cnn.efficient as ce
from notebook_solutions import NotebookSolutions
from utils.checks.feedback import NotImplementedYet
from utils.cnn.efficient import macs as macs_module
from utils.cnn.efficient.answers import pixels_read
from utils.cnn.efficient.inverted_residual import TorchvisionInvertedResidual
from utils.instructor.samples.cnn_efficient import MISTAKES as SAMPLES

NOTEBOOK = Path(__file__).resolve().parents[1] / "source" / "cnn" / "cnn_efficient.ipynb"
ORDER = ["DepthwiseSeparableConv", "InvertedResidual", "count_macs", "efficiency_answers"]
NB = NotebookSolutions(NOTEBOOK, {"np": np, "torch": torch, "nn": nn, "F": F})
SOL = NB.run({name: NB.cells[name] for name in ORDER})

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def mutate(name: str, *pairs: tuple[str, str]):
    return NB.mutate(name, *pairs, once=True, namespace=SOL)


def check(name: str):
    return getattr(ce, f"check_{name}")


def fails_with(name: str, student, text: str, hidden: bool = False) -> str:
    return check_failures.fails_with(check(name), student, text, hidden=hidden)


def test_every_exercise_has_a_solution_cell_and_a_check():
    assert set(ORDER) == set(ce.EXERCISES) and set(ORDER) <= set(NB.cells)


# --------------------------------------------------------------------------- references


def test_the_inverted_residual_reference_is_torchvisions_mbconv():
    """With channel counts torchvision does not round (multiples of 8), the reference built from
    Conv2dNormActivation and SqueezeExcitation computes exactly what torchvision's MBConv does."""
    from torchvision.models.efficientnet import MBConv, MBConvConfig
    for in_c, out_c, stride, ratio in [(16, 16, 1, 6), (16, 24, 2, 4), (8, 16, 1, 1)]:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            ours = TorchvisionInvertedResidual(in_c, out_c, stride, ratio).double().eval()
            theirs = MBConv(MBConvConfig(ratio, 3, stride, in_c, out_c, 1, 1.0, 1.0), 0.0, nn.BatchNorm2d).double()
        prefixes = {"expand": "0", "depthwise": "1", "se": "2", "project": "3"}
        if ratio == 1:
            prefixes = {"depthwise": "0", "se": "1", "project": "2"}
        state = {f"block.{prefixes[k.split('.')[0]]}.{k.split('.', 1)[1]}": v
                 for k, v in nn.Module.state_dict(ours).items()}
        theirs.load_state_dict(state, strict=True)
        x = torch.randn(2, in_c, 9, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            torch.testing.assert_close(ours(x), theirs.eval()(x), rtol=0, atol=1e-12)


def test_the_renamed_state_dict_round_trips():
    block = TorchvisionInvertedResidual(4, 4, 1, 3)
    names = set(block.state_dict())
    assert {"expand_conv.weight", "expand_bn.running_var", "dw_conv.weight", "se.fc1.weight", "project_bn.bias"} \
        <= names
    block.load_state_dict(block.state_dict(), strict=True)


@pytest.mark.parametrize("setting", macs_module._SETTINGS + macs_module._HIDDEN, ids=lambda s: s[0])
def test_flop_counter_agrees_with_the_formula(setting):
    network, config, shape = setting
    inputs = {"network": network, "config": config, "input_shape": shape}
    np.testing.assert_array_equal(macs_module.measured_macs(inputs), macs_module.counted_macs(inputs))


def test_gridding_counts():
    assert pixels_read((2, 2)) == 25 and pixels_read((1, 2)) == 49 and pixels_read((1,)) == 9


# --------------------------------------------------------------------------- correct alternatives pass


class SeparableWithModules(nn.Module):
    """Activations as modules, padding as a tuple computed from the dilated extent."""

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, dilation=1, padding=None):
        super().__init__()
        extent = dilation * (kernel_size - 1) + 1
        p = (extent - 1) // 2 if padding is None else padding
        self.depthwise = nn.Conv2d(in_channels, in_channels, (kernel_size, kernel_size), (stride, stride), (p, p),
                                   (dilation, dilation), in_channels, False)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, (1, 1), bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.bn2(self.pointwise(self.act(self.bn1(self.depthwise(x))))))


def test_the_solutions_and_alternatives_pass():
    for name in ORDER:
        check(name)(SOL[name])
    check("DepthwiseSeparableConv")(SeparableWithModules, hidden=True)


class ConvSE(nn.Module):
    """SE with 1×1 convolutions and adaptive average pooling."""

    def __init__(self, channels, squeeze):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(F.silu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))


class IdentityExpansion(nn.Module):
    """nn.Identity for the expansion when expand_ratio == 1 (no parameters), SE with 1×1 convolutions."""

    def __init__(self, in_channels, out_channels, stride=1, expand_ratio=4):
        super().__init__()
        hidden = in_channels * expand_ratio
        if expand_ratio == 1:
            self.expand = nn.Identity()
        else:
            self.expand_conv = nn.Conv2d(in_channels, hidden, 1, bias=False)
            self.expand_bn = nn.BatchNorm2d(hidden)
            self.expand = lambda x: F.silu(self.expand_bn(self.expand_conv(x)))
        self.dw_conv = nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False)
        self.dw_bn = nn.BatchNorm2d(hidden)
        self.se = ConvSE(hidden, max(1, in_channels // 4))
        self.project_conv = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(out_channels)
        self.skip = stride == 1 and in_channels == out_channels

    def forward(self, x):
        y = self.project_bn(self.project_conv(self.se(F.silu(self.dw_bn(self.dw_conv(self.expand(x)))))))
        return x + y if self.skip else y


def test_an_inverted_residual_with_conv_se_and_identity_passes():
    check("InvertedResidual")(IdentityExpansion, hidden=True)


def test_a_block_built_on_torchvisions_se_fails_as_not_from_scratch():
    fails_with("InvertedResidual", TorchvisionInvertedResidual, "SqueezeExcitation")


def _conv_out(size, conv, axis):
    k, s, p, d = conv.kernel_size[axis], conv.stride[axis], conv.padding[axis], conv.dilation[axis]
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def macs_from_input_shapes(model, input_shape):
    """Another valid count: forward pre-hooks read each layer's input, the output size comes from the formula,
    the values are numpy integers."""
    seen = {}
    layers = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    handles = [m.register_forward_pre_hook(lambda m, args, n=n: seen.__setitem__(n, args[0].shape))
               for n, m in layers.items()]
    with torch.inference_mode():
        model(torch.zeros(input_shape))
    for h in handles:
        h.remove()
    result = {}
    for n, m in layers.items():
        shape = seen[n]
        if isinstance(m, nn.Linear):
            result[n] = np.int64(np.prod(shape[:-1]) * m.in_features * m.out_features)
        else:
            h, w = _conv_out(shape[2], m, 0), _conv_out(shape[3], m, 1)
            result[n] = np.int64(shape[0] * m.out_channels * h * w * m.in_channels // m.groups
                                 * m.kernel_size[0] * m.kernel_size[1])
    return result


def test_a_count_from_input_shapes_passes():
    check("count_macs")(macs_from_input_shapes, hidden=True)


def test_unrounded_ratio_passes():
    answers = dict(SOL["efficiency_answers"])
    answers["param_saving"] = answers["std_params"] / answers["dws_params"]
    check("efficiency_answers")(answers, hidden=True)


# --------------------------------------------------------------------------- mistakes are named


@pytest.mark.parametrize("pairs, text", [
    ((("dilation=dilation, groups=in_channels, bias=False)", "dilation=dilation, bias=False)"),),
     "groups missing in the depthwise convolution"),
    ((("padding = dilation * (kernel_size - 1) // 2", "padding = (kernel_size - 1) // 2"),),
     "the padding ignores the dilation"),
    ((("kernel_size, stride=stride, padding=padding,", "kernel_size, stride=1, padding=padding,"),
      ("nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)",
       "nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)")),
     "the stride is applied in the pointwise 1×1 convolution"),
    ((("x = F.relu(self.bn1(self.depthwise(x)))", "x = self.bn1(self.depthwise(x))"),),
     "no ReLU between the depthwise and the pointwise convolution"),
], ids=["groups", "padding", "stride", "mid_relu"])
def test_separable_mistakes_are_named(pairs, text):
    fails_with("DepthwiseSeparableConv", mutate("DepthwiseSeparableConv", *pairs), text)


@pytest.mark.parametrize("pairs, text", [
    ((("return out + x if self.use_residual else out", "return out"),), "the residual connection is missing"),
    ((("return out + x if self.use_residual else out",
        "return F.silu(out + x) if self.use_residual else F.silu(out)"),),
     "an activation after the residual addition"),
    ((("self.expands = expand_ratio != 1", "self.expands = True"),), "an expansion layer with expand_ratio = 1"),
    ((("F.silu(self.expand_bn(", "F.relu6(self.expand_bn("), ("F.silu(self.dw_bn(", "F.relu6(self.dw_bn(")),
     "ReLU6 (MobileNetV2) instead of SiLU"),
    ((("self.se = SE(hidden, max(1, in_channels // 4))", "self.se = SE(hidden, max(1, hidden // 4))"),),
     "the SE bottleneck is a quarter of the expanded channels"),
], ids=["no_residual", "act_after_add", "expand_ratio_1", "relu6", "se_width"])
def test_inverted_residual_mistakes_are_named(pairs, text):
    fails_with("InvertedResidual", mutate("InvertedResidual", *pairs), text)


@pytest.mark.parametrize("pairs, text", [
    ((("macs[name] = outputs * m.in_features", "macs[name] = outputs * m.in_features + outputs"),
      ("* m.kernel_size[0] * m.kernel_size[1]", "* m.kernel_size[0] * m.kernel_size[1] + (outputs if m.bias is not "
                                               "None else 0)")), "the bias was counted as a MAC"),
    ((("outputs = shapes[name].numel()", "outputs = 2 * shapes[name].numel()"),),
     "FLOPs instead of MACs"),
    ((("outputs = shapes[name].numel()", "outputs = shapes[name][1:].numel()"),), "the batch size was not counted"),
], ids=["bias", "flops", "batch"])
def test_macs_mistakes_are_named(pairs, text):
    fails_with("count_macs", mutate("count_macs", *pairs), text)


def test_efficiency_answer_mistakes_are_named_without_the_value():
    answers = dict(SOL["efficiency_answers"], std_params=3 * 3 * 64 * 128 + 128)
    message = fails_with("efficiency_answers", answers, "a bias was counted")
    assert str(3 * 3 * 64 * 128) not in message
    answers = dict(SOL["efficiency_answers"], pixels_two_d2=81)
    fails_with("efficiency_answers", answers, "the whole square field was counted")


# --------------------------------------------------------------------------- odd returns, rules, stubs


def test_a_total_instead_of_a_dict_states_the_rule():
    message = fails_with("count_macs", lambda model, shape: sum(SOL["count_macs"](model, shape).values()),
                         "returns a dict with one entry per nn.Conv2d and nn.Linear")
    assert "a total?" in message


def test_a_missing_layer_is_named():
    def without_linear(model, shape):
        return {k: v for k, v in SOL["count_macs"](model, shape).items() if k != "fc"}
    fails_with("count_macs", without_linear, "no entry for 'fc'")


def test_an_extra_entry_is_named():
    fails_with("count_macs", lambda model, shape: {**SOL["count_macs"](model, shape), "relu1": 0},
               "entries for 'relu1'")


def test_switching_the_model_to_train_mode_breaks_a_rule():
    def in_train_mode(model, shape):
        return SOL["count_macs"](model.train(), shape)
    fails_with("count_macs", in_train_mode, "was left in train mode")


def test_the_flop_counter_is_not_allowed():
    def measured(model, shape):
        from torch.utils.flop_counter import FlopCounterMode
        with FlopCounterMode(display=False):
            model(torch.zeros(shape))
        return SOL["count_macs"](model, shape)
    fails_with("count_macs", measured, "FlopCounterMode")


def test_a_forward_returning_none_is_reported():
    class NoReturn(SOL["DepthwiseSeparableConv"]):
        def forward(self, x):
            self.bn2(self.pointwise(x))
    fails_with("DepthwiseSeparableConv", NoReturn, "did you forget `return`?")


def test_an_unanswered_key_is_not_implemented_and_a_non_dict_is_reported():
    with pytest.raises(NotImplementedYet):
        check("efficiency_answers")(dict(SOL["efficiency_answers"], dws_macs=None))
    fails_with("efficiency_answers", [1, 2, 3], "must be a dict of answers")


def test_stub_modules_are_not_implemented():
    class Stub(nn.Module):
        def __init__(self, *args, **kwargs):
            raise NotImplementedError()
    for name in ("DepthwiseSeparableConv", "InvertedResidual"):
        with pytest.raises(NotImplementedYet):
            check(name)(Stub)


# --------------------------------------------------------------------------- the demo's samples


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.student for s in SAMPLES])
def test_sample_mistakes_apply_and_are_diagnosed(sample):
    assert sample.notebook == "cnn_efficient" and sample.student.startswith("cnn_")
    fails_with(sample.cell, mutate(sample.cell, *sample.replace), sample.diagnosis)


def test_unique_sample_students():
    assert len({s.student for s in SAMPLES}) == len(SAMPLES) >= 3


def test_hooks_left_on_the_model_break_a_rule():
    fails_with("count_macs", mutate("count_macs", ("handle.remove()", "pass")), "forward hook(s) were left registered")


def test_float_counts_break_the_int_rule():
    fails_with("count_macs", lambda model, shape: {k: float(v) for k, v in SOL["count_macs"](model, shape).items()},
               "each MAC count is an int")
