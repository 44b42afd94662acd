"""From scratch means from scratch: an answer that calls the library it is compared with fails.

The visible checks watch the calls the student's code makes (aliases included); the trusted
grader also looks for the library name in the answer's own code.
"""
import ast
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from utils import check_conv2d_forward, check_deform_conv2d, check_lstm_cell, check_scaled_dot_product_attention
from utils.checks.feedback import CheckFailure
from utils.checks.registry import exercise
from utils.grading.trusted import forbidden_reference


def sdpa_via_torch(q, k, v, mask=None):
    weights = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
                            + (0 if mask is None else torch.where(mask, 0.0, float("-inf"))), dim=-1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask), weights


def test_attention_calling_torch_sdpa_is_rejected_by_name():
    with pytest.raises(CheckFailure, match=r"must be written from scratch, but it called "
                                           r"torch\.nn\.functional\.scaled_dot_product_attention"):
        check_scaled_dot_product_attention(sdpa_via_torch)


def test_an_alias_of_the_library_function_is_caught_too():
    from torch.nn.functional import scaled_dot_product_attention as renamed

    def sdpa(q, k, v, mask=None):
        scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return renamed(q, k, v, attn_mask=mask), torch.softmax(scores, dim=-1)

    with pytest.raises(CheckFailure, match="must be written from scratch"):
        check_scaled_dot_product_attention(sdpa)


def test_lstm_cell_wrapping_nn_lstmcell_is_rejected():
    def lstm_cell(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh):
        cell = torch.nn.LSTMCell(W_ih.shape[1], W_hh.shape[1]).to(x.dtype)
        with torch.no_grad():
            for p, v in zip(cell.parameters(), (W_ih, W_hh, b_ih, b_hh), strict=True):
                p.copy_(v)
        return cell(x, (h_prev, c_prev))

    with pytest.raises(CheckFailure, match=r"called torch\.nn\.LSTMCell"):
        check_lstm_cell(lstm_cell)


def test_numpy_convolution_through_torch_is_rejected():
    def conv2d_forward(x, w, b, stride=1, padding=0):
        out = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride=stride, padding=padding)
        return out.numpy()

    with pytest.raises(CheckFailure, match=r"called torch\.nn\.functional\.conv2d"):
        check_conv2d_forward(conv2d_forward)


def test_deform_conv2d_wrapping_torchvision_is_rejected():
    import torchvision

    def deform_conv2d(a_l, delta, mask, weight, stride=1, padding=0, dilation=1):
        def t(a):
            return torch.from_numpy(np.asarray(a, dtype=np.float64))

        return torchvision.ops.deform_conv2d(t(a_l), t(delta), t(weight), stride=stride, padding=padding,
                                             dilation=dilation, mask=t(mask)).numpy()

    with pytest.raises(CheckFailure, match=r"called torchvision\.ops\.deform_conv2d"):
        check_deform_conv2d(deform_conv2d)


def test_the_call_watcher_restores_the_profiler():
    def sentinel(*args):
        return None

    sys.setprofile(sentinel)
    try:
        with pytest.raises(CheckFailure):
            check_scaled_dot_product_attention(sdpa_via_torch)
        assert sys.getprofile() is sentinel
    finally:
        sys.setprofile(None)


@pytest.mark.parametrize("source, expected", [
    ("def f(q, k, v, mask=None):\n    return F.scaled_dot_product_attention(q, k, v), None\n",
     "torch.nn.functional.scaled_dot_product_attention"),
    ("def f(q, k, v, mask=None):\n    from torch.nn.functional import scaled_dot_product_attention\n"
     "    return scaled_dot_product_attention(q, k, v), None\n",
     "torch.nn.functional.scaled_dot_product_attention"),
    ("def f(q, k, v, mask=None):\n    return my_attention(q, k, v)\n", ""),
])
def test_the_trusted_grader_finds_library_names_in_the_answer(source, expected):
    definition = ast.parse(source).body[0]
    assert forbidden_reference(definition, exercise("check_scaled_dot_product_attention").forbidden) == expected
