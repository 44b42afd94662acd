"""Tests of utils/cnn/segmentation: the checks of source/cnn/cnn_segmentation.ipynb.

The instructor solution and independent correct variants pass (float32 modules, pooling as a module, another
token layout that is the same computation); catalogued mistakes written as student code are named; mistakes
outside the catalogue are located at the block where the trace first differs; wiring errors, a missing size
check, a block run twice and a wrong output shape are reported with their scale; odd returns get clear
messages. The sample mistakes must apply to the notebook and be diagnosed. What every exercise keeps is tested
in tests/test_contract.py.
"""
from __future__ import annotations

import math
from pathlib import Path

import check_failures
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import utils.cnn.segmentation as seg
from notebook_solutions import NotebookSolutions
from utils.checks.feedback import NotImplementedYet
from utils.cnn.segmentation.shared import AttentionUNetReference, UNetReference, block_label, sinusoidal_positions
from utils.instructor.samples.cnn_segmentation import MISTAKES as SAMPLES

NOTEBOOK = Path(__file__).resolve().parents[1] / "source" / "cnn" / "cnn_segmentation.ipynb"
ORDER = ["UNet", "unet_answers", "BottleneckAttentionUNet"]
NB = NotebookSolutions(NOTEBOOK, {"np": np, "torch": torch, "nn": nn, "F": F, "math": math})
CELLS = NB.cells
SOL = NB.run({name: CELLS[name] for name in ORDER})


def mutate(name: str, *pairs: tuple[str, str], once: bool = False):
    return NB.mutate(name, *pairs, once=once, namespace=SOL)


def fails_with(name: str, student, *texts: str, hidden: bool = False) -> str:
    return check_failures.fails_with(getattr(seg, f"check_{name}"), student, *texts, hidden=hidden)


# --------------------------------------------------------------------------- correct answers pass


def test_the_solutions_pass_visible_and_hidden():
    for name in ORDER:
        for hidden in (False, True):
            getattr(seg, f"check_{name}")(SOL[name], hidden=hidden)


def test_the_references_with_no_switch_are_the_solution():
    torch.manual_seed(3)
    ours = SOL["BottleneckAttentionUNet"](2, 3, base_channels=4, depth=2, num_heads=2).double().eval()
    ref = AttentionUNetReference(2, 3, base_channels=4, depth=2, num_heads=2).double().eval()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 2, 8, 12, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x))


class ModuleStyleUNet(nn.Module):
    """Another valid formulation: float32, pooling as a module, skips in a dict, a recursive decoder."""

    def __init__(self, in_channels, num_classes, base_channels=16, depth=3):
        super().__init__()
        reference = UNetReference(in_channels, num_classes, base_channels, depth)
        self.down, self.bottleneck, self.up, self.dec, self.head = (reference.down, reference.bottleneck,
                                                                     reference.up, reference.dec, reference.head)
        self.pool = nn.MaxPool2d(2)
        self.depth = depth

    def forward(self, x):
        if any(n % (1 << self.depth) for n in x.shape[2:]):
            raise ValueError("H and W must be multiples of 2**depth")
        skips = {}
        for k in range(self.depth):
            skips[k] = self.down[k](x)
            x = self.pool(skips[k])

        def decode(k, y):
            if k < 0:
                return y
            return decode(k - 1, self.dec[k](torch.cat((skips[k], self.up[k](y)), 1)))
        return self.head(decode(self.depth - 1, self.bottleneck(x)))


def test_another_valid_unet_passes():
    seg.check_UNet(ModuleStyleUNet, hidden=True)


def test_tokens_through_permute_pass():
    student = mutate("BottleneckAttentionUNet",
                     ("t = x.flatten(2).transpose(1, 2) + ", "t = x.permute(0, 2, 3, 1).reshape(b, h * w, c) + "),
                     ("return t.transpose(1, 2).reshape(b, c, h, w)",
                      "return t.reshape(b, h, w, c).permute(0, 3, 1, 2)"))
    seg.check_BottleneckAttentionUNet(student, hidden=True)


def test_positions_from_the_reference_formula_match_the_notebook():
    torch.testing.assert_close(sinusoidal_positions(12, 8), SOL["sinusoidal_positions"](12, 8, torch.float64))


# --------------------------------------------------------------------------- catalogued mistakes are named


@pytest.mark.parametrize("pairs, text", [
    ((("torch.cat([skips[k], x], dim=1)", "torch.cat([x, skips[k]], dim=1)"),), "concatenated in the other order"),
    ((("F.max_pool2d(x, 2)", "F.avg_pool2d(x, 2)"),), "average pooling instead of max pooling"),
    ((("return self.head(x)", "return F.softmax(self.head(x), dim=1)"),), "a softmax after the 1×1 head"),
    ((("double_conv(2 * widths[k], widths[k])", "double_conv(widths[k], widths[k])"),
      ("self.dec[k](torch.cat([skips[k], x], dim=1))", "self.dec[k](skips[k] + x)")), "skips added instead of"),
])
def test_unet_mistakes_are_named(pairs, text):
    fails_with("UNet", mutate("UNet", *pairs), text)


def test_a_missing_top_skip_is_named_with_its_scale():
    student = mutate("UNet",
                     ("double_conv(2 * widths[k], widths[k]) for k in range(depth)",
                      "double_conv(widths[k] * (2 if k else 1), widths[k]) for k in range(depth)"),
                     ("x = self.dec[k](torch.cat([skips[k], x], dim=1))",
                      "x = self.dec[k](torch.cat([skips[k], x], dim=1) if k else x)"))
    fails_with("UNet", student, "skip connection at full resolution (into dec[0]) is missing")


@pytest.mark.parametrize("pairs, text", [
    ((("t = t + self.attn(u, u, u, need_weights=False)[0]", "t = self.attn(u, u, u, need_weights=False)[0]"),),
     "no residual connection"),
    ((("nn.MultiheadAttention(dim, num_heads, batch_first=True)", "nn.MultiheadAttention(dim, num_heads)"),),
     "attention across the batch"),
    ((("t = x.flatten(2).transpose(1, 2) + ", "t = x.reshape(b, h * w, c) + "),
      ("return t.transpose(1, 2).reshape(b, c, h, w)", "return t.reshape(b, c, h, w)")), "tokens made by reshaping"),
    ((("+ sinusoidal_positions(h * w, c, x.dtype)", ""),), "no positional encoding"),
])
def test_attention_mistakes_are_named(pairs, text):
    fails_with("BottleneckAttentionUNet", mutate("BottleneckAttentionUNet", *pairs), text)


# --------------------------------------------------------------------------- the scale is named


def test_a_mistake_at_one_scale_is_located_at_that_block():
    student = mutate("UNet", ("torch.cat([skips[k], x], dim=1)",
                              "torch.cat([skips[k], x] if k else [x, skips[k]], dim=1)"))
    message = fails_with("UNet", student, "All the differences are in the blocks from dec[0] (decoder, full "
                                          "resolution) on; the rest matches")
    assert "Likely cause" not in message


def test_a_changed_returned_value_is_located_after_the_head():
    student = mutate("UNet", ("return self.head(x)", "return torch.tanh(self.head(x))"))
    fails_with("UNet", student, "the value forward returns (after head)")


def test_a_skip_wired_to_the_wrong_scale_says_where_the_error_arose():
    student = mutate("UNet", ("torch.cat([skips[k], x], dim=1)", "torch.cat([skips[self.depth - 1 - k], x], dim=1)"))
    fails_with("UNet", student, "raised an error", "[raised after up[", "before dec[")


def test_a_forward_without_the_size_rule_breaks_it():
    student = mutate("UNet", ("if x.shape[-2] % m or x.shape[-1] % m:", "if False:"))
    fails_with("UNet", student, "breaks a rule", "not a ValueError", "multiple of 2**depth")


def test_a_block_run_twice_breaks_the_rule():
    student = mutate("UNet", ("return self.head(x)", "self.head(x)\n        return self.head(x)"))
    fails_with("UNet", student, "runs exactly once", "head (the 1×1 segmentation head) ran 2 times")


def test_a_wrong_output_shape_is_reported():
    student = mutate("UNet", ("return self.head(x)", "return self.head(x)[:, :, 1:]"))
    fails_with("UNet", student, "forward returned shape", "(batch, num_classes, H, W)")


def test_block_labels_read_like_the_table():
    assert block_label("dec.1") == "dec[1] (decoder, 1/2 resolution)"
    assert block_label("down.0") == "down[0] (encoder, full resolution)"


# --------------------------------------------------------------------------- odd answers


def test_a_stub_is_not_implemented_yet():
    class Stub(nn.Module):
        def __init__(self, *args, **kwargs):
            super().__init__()
            raise NotImplementedError()
    with pytest.raises(NotImplementedYet):
        seg.check_UNet(Stub)


def test_a_forward_returning_none_is_reported():
    student = mutate("UNet", ("return self.head(x)", "self.head(x)"))
    fails_with("UNet", student, "None")


def test_wrong_parameter_names_are_listed():
    student = mutate("UNet", ("self.head = nn.Conv2d", "self.classifier = nn.Conv2d"),
                     ("return self.head(x)", "return self.classifier(x)"))
    fails_with("UNet", student, "expected but missing from your module: head.weight")


def test_unet_answers_wrong_values_are_named_without_the_answer():
    answers = dict(SOL["unet_answers"], decoder_params=[v + 1 for v in SOL["unet_answers"]["decoder_params"]])
    message = fails_with("unet_answers", answers, "decoder_params")
    assert str(SOL["unet_answers"]["decoder_params"][0]) not in message
    answers = dict(SOL["unet_answers"], score_ratio=256)
    fails_with("unet_answers", answers, "the ratio of token counts")


def test_unet_answers_not_a_dict_or_missing_key():
    fails_with("unet_answers", [1, 2], "must be a dict")
    fails_with("unet_answers", {k: v for k, v in SOL["unet_answers"].items() if k != "head_params"}, "head_params")


# --------------------------------------------------------------------------- samples


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.student for s in SAMPLES])
def test_sample_mistakes_apply_and_are_diagnosed(sample):
    assert sample.notebook == "cnn_segmentation" and sample.student.startswith("cnn_")
    student = mutate(sample.cell, *sample.replace, once=True)
    fails_with(sample.cell, student, sample.diagnosis)
