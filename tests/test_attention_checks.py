"""Tests of the attention checks (utils/attention): every check accepts correct alternatives, names each catalogued
mistake as a student would make it, leaves the global RNGs alone on the hidden cases, and the sample mistakes
of utils/instructor/samples/attention.py are diagnosed. What every exercise keeps (the notebook's solution
passes, each catalogued mistake is diagnosed, a stub is "not implemented yet") is tests/test_contract.py's."""
from __future__ import annotations

import dataclasses
import math
import pickle
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from notebook_solutions import NotebookSolutions
from utils import attention as A
from utils.attention import costs, encoder_block
from utils.checks.compare import to_numpy
from utils.checks.exercise import run_check
from utils.checks.feedback import CheckFailure
from utils.instructor.samples import mistakes_for

NOTEBOOK = Path(__file__).resolve().parents[1] / "source" / "attention" / "attention.ipynb"


# --------------------------------------------------------------------------- the notebook's solutions

NB = NotebookSolutions(NOTEBOOK, {"math": math, "np": np, "torch": torch, "F": F})
CELLS = NB.cells
SOLUTIONS = NB.run()


def _fails(check, fn, *names):
    with pytest.raises(CheckFailure) as info:
        check(fn, hidden=True)
    text = str(info.value)
    for name in names:
        assert name in text, text
    return text


def _passes(check, fn):
    check(fn, hidden=True)


# --------------------------------------------------------------------------- exercise 1: attention

def sdpa_student(*, divisor="sqrt", dim=-1, mask_mode="keep", stable=True):
    """A student's attention; the keywords reproduce the catalogued mistakes."""
    def fn(q, k, v, mask=None):
        d_k = q.shape[-1]
        scores = q @ k.transpose(-2, -1)
        if divisor == "sqrt":
            scores = scores / math.sqrt(d_k)
        elif divisor == "dk":
            scores = scores / d_k
        if mask is not None:
            if mask_mode == "keep":
                scores = scores.masked_fill(~mask, float("-inf"))
            elif mask_mode == "wrong_sign":       # the recipe `scores + mask * -1e9`, with True = keep
                scores = scores + mask * -1e9
        if stable:
            weights = torch.softmax(scores, dim=dim)
        else:
            weights = torch.exp(scores) / torch.exp(scores).sum(dim=dim, keepdim=True)
        if mask is not None and mask_mode == "after":
            weights = weights * mask
        return weights @ v, weights
    return fn


def sdpa_loop(q, k, v, mask=None):
    """Row by row with Python floats for the softmax, numpy arrays out."""
    q, k, v = (t.numpy() for t in (q, k, v))
    lead = q.shape[:-2]
    m = None if mask is None else np.broadcast_to(mask.numpy(), lead + (q.shape[-2], k.shape[-2]))
    out = np.zeros(lead + (q.shape[-2], v.shape[-1]))
    weights = np.zeros(lead + (q.shape[-2], k.shape[-2]))
    for index in np.ndindex(*lead):
        for i in range(q.shape[-2]):
            scores = [float(q[index][i] @ k[index][j]) / math.sqrt(q.shape[-1]) for j in range(k.shape[-2])]
            keep = [True] * len(scores) if m is None else list(m[index][i])
            top = max(s for s, kept in zip(scores, keep, strict=True) if kept)
            e = [math.exp(s - top) if kept else 0.0 for s, kept in zip(scores, keep, strict=True)]
            total = sum(e)
            weights[index][i] = [x / total for x in e]
            out[index][i] = weights[index][i] @ v[index]
    return out, weights


def sdpa_additive(q, k, v, mask=None):
    """Additive finite mask and einsum."""
    scores = torch.einsum("...id,...jd->...ij", q, k) / q.shape[-1] ** 0.5
    if mask is not None:
        scores = scores + (~mask) * -1e9
    weights = torch.softmax(scores, dim=-1)
    return torch.einsum("...ij,...jd->...id", weights, v), weights


@pytest.mark.parametrize("fn", [sdpa_student(), sdpa_loop, sdpa_additive], ids=["torch.softmax", "loop", "additive"])
def test_sdpa_accepts_correct(fn):
    _passes(A.check_scaled_dot_product_attention, fn)


@pytest.mark.parametrize("kw, name", [
    (dict(divisor="none"), "no √d_k scaling"),
    (dict(divisor="dk"), "divided by d_k instead of √d_k"),
    (dict(dim=-2), "softmax over the query axis"),
    (dict(mask_mode="wrong_sign"), "the mask works the wrong way round"),
    (dict(mask_mode="after"), "the mask was applied after the softmax"),
    (dict(mask_mode="ignored"), "the mask was ignored"),
])
def test_sdpa_names_mistakes(kw, name):
    _fails(A.check_scaled_dot_product_attention, sdpa_student(**kw), name)


def test_sdpa_naive_softmax_overflows():
    text = _fails(A.check_scaled_dot_product_attention, sdpa_student(stable=False), "NaN", "overflows")
    assert "scores of order 1e3" in text


def test_sdpa_wrong_return():
    _fails(A.check_scaled_dot_product_attention, lambda q, k, v, mask=None: sdpa_student()(q, k, v, mask)[0],
           "must return a pair (output, weights)")
    text = _fails(A.check_scaled_dot_product_attention,
                  lambda q, k, v, mask=None: (lambda o, w: (o, w.transpose(-2, -1)))(*sdpa_student()(q, k, v, mask)),
                  "breaks a rule of the exercise", "Rule: scaled_dot_product_attention returns (output, weights)")
    # each part's own shape, never that of the two packed together
    assert "Seen: weights has shape (3, 2), expected (2, 3)." in text, text


# --------------------------------------------------------------------------- exercise 2: multi-head attention

def mha_student(*, split="ok", merge="ok", out_proj=True, divisor="dk", transpose_w=True, mask_mode="keep"):
    def fn(query, key, value, params, num_heads, mask=None):
        def lin(x, name):
            W = params[f"W_{name}"]
            return x @ (W.T if transpose_w else W) + params[f"b_{name}"]

        B, T_q, d = query.shape
        d_k = d // num_heads

        def heads(x):
            if split == "no_transpose":
                return x.reshape(B, num_heads, x.shape[1], d_k)
            return x.reshape(B, x.shape[1], num_heads, d_k).transpose(1, 2)

        q, k, v = heads(lin(query, "q")), heads(lin(key, "k")), heads(lin(value, "v"))
        scale = {"dk": math.sqrt(d_k), "none": 1.0, "dmodel": math.sqrt(d)}[divisor]
        scores = q @ k.transpose(-2, -1) / scale
        if mask is not None and mask_mode == "keep":
            scores = scores.masked_fill(~mask, float("-inf"))
        elif mask is not None and mask_mode == "wrong_sign":
            scores = scores + mask * -1e9
        o = torch.softmax(scores, dim=-1) @ v
        o = o.reshape(B, T_q, d) if merge == "no_transpose" else o.transpose(1, 2).reshape(B, T_q, d)
        return lin(o, "o") if out_proj else o
    return fn


def mha_per_head_loop(query, key, value, params, num_heads, mask=None):
    """One head at a time with row slices of the weights, through the notebook's attention."""
    d = query.shape[-1]
    d_k = d // num_heads
    outputs = []
    for j in range(num_heads):
        rows = slice(j * d_k, (j + 1) * d_k)
        q = query @ params["W_q"][rows].T + params["b_q"][rows]
        k = key @ params["W_k"][rows].T + params["b_k"][rows]
        v = value @ params["W_v"][rows].T + params["b_v"][rows]
        m = None
        if mask is not None:
            m = mask[:, j] if mask.ndim == 4 and mask.shape[1] > 1 else (mask[:, 0] if mask.ndim == 4 else mask)
        outputs.append(SOLUTIONS["scaled_dot_product_attention"](q, k, v, m)[0])
    return torch.cat(outputs, dim=-1) @ params["W_o"].T + params["b_o"]


def mha_float32(query, key, value, params, num_heads, mask=None):
    p32 = {name: t.float() for name, t in params.items()}
    return mha_student()(query.float(), key.float(), value.float(), p32, num_heads, mask)


def mha_torch_module(query, key, value, params, num_heads, mask=None):
    """A student who loads nn.MultiheadAttention with their own weights (and flips the mask)."""
    d = query.shape[-1]
    mha = torch.nn.MultiheadAttention(d, num_heads, batch_first=True, dtype=torch.float64, device="meta")
    mha.load_state_dict({"in_proj_weight": torch.cat([params["W_q"], params["W_k"], params["W_v"]]),
                         "in_proj_bias": torch.cat([params["b_q"], params["b_k"], params["b_v"]]),
                         "out_proj.weight": params["W_o"], "out_proj.bias": params["b_o"]}, assign=True)
    attn_mask = None
    if mask is not None:
        B, T_q, T_k = query.shape[0], query.shape[1], key.shape[1]
        attn_mask = ~mask.expand(B, num_heads, T_q, T_k).reshape(B * num_heads, T_q, T_k)
    with torch.no_grad():
        return mha(query, key, value, attn_mask=attn_mask, need_weights=False)[0]


@pytest.mark.parametrize("fn", [mha_per_head_loop, mha_float32], ids=["per_head_loop", "float32"])
def test_mha_accepts_correct(fn):
    _passes(A.check_multi_head_attention, fn)


def test_mha_wrapping_nn_multiheadattention_is_not_from_scratch():
    _fails(A.check_multi_head_attention, mha_torch_module, "must be written from scratch")


@pytest.mark.parametrize("kw, name", [
    (dict(split="no_transpose", merge="no_transpose"), "heads split and merged in the wrong order"),
    (dict(split="no_transpose"), "heads split in the wrong order"),
    (dict(merge="no_transpose"), "heads merged in the wrong order"),
    (dict(out_proj=False), "missing output projection"),
    (dict(divisor="none"), "no √d_k scaling"),
    (dict(divisor="dmodel"), "√d_model instead of √d_k"),
    (dict(transpose_w=False), "computed as x @ W, with W not transposed"),
    (dict(mask_mode="wrong_sign"), "the mask works the wrong way round"),
    (dict(mask_mode="ignored"), "the mask was ignored"),
])
def test_mha_names_mistakes(kw, name):
    _fails(A.check_multi_head_attention, mha_student(**kw), name)


# --------------------------------------------------------------------------- exercise 3: positional encoding

def pe_loop(max_len, d_model):
    pe = [[0.0] * d_model for _ in range(max_len)]
    for p in range(max_len):
        for i in range(d_model // 2):
            angle = p / 10000 ** (2 * i / d_model)
            pe[p][2 * i] = math.sin(angle)
            pe[p][2 * i + 1] = math.cos(angle)
    return pe   # a nested list is accepted too


def pe_float32(max_len, d_model):
    position = torch.arange(max_len, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(max_len, d_model)
    pe[:, 0::2] = torch.sin(position * div)
    pe[:, 1::2] = torch.cos(position * div)
    return pe


def pe_student(*, swap=False, blocks=False, exponent="2i", start=0):
    def fn(max_len, d_model):
        p = np.arange(start, start + max_len)[:, None]
        i = np.arange(d_model // 2)
        if exponent == "column":
            j = np.arange(d_model)
            angle = p / 10000 ** (j / d_model)
            return np.where(j % 2 == 0, np.sin(angle), np.cos(angle))
        angle = p / 10000 ** ((2 * i if exponent == "2i" else i) / d_model)
        a, b = (np.cos(angle), np.sin(angle)) if swap else (np.sin(angle), np.cos(angle))
        if blocks:
            return np.concatenate([a, b], axis=1)
        return np.stack([a, b], axis=-1).reshape(max_len, d_model)
    return fn


@pytest.mark.parametrize("fn", [pe_loop, pe_student()], ids=["loop", "numpy_stack"])
def test_pe_accepts_correct(fn):
    _passes(A.check_positional_encoding, fn)


def test_pe_in_float32_breaks_the_float64_rule():
    """The task asks for a float64 tensor; torch.zeros without a dtype is float32, whose values pass the
    tolerance: only the rule catches it."""
    text = _fails(A.check_positional_encoding, pe_float32, "breaks a rule of the exercise",
                  "Rule: positional_encoding returns a float64 tensor (Exercise 3, Task).",
                  "Seen: the encoding has dtype float32.")
    assert "Case 1 of " in text


@pytest.mark.parametrize("kw, name", [
    (dict(swap=True), "sin/cos interleaving swapped"),
    (dict(blocks=True), "concatenated in two halves"),
    (dict(exponent="i"), "i/d_model instead of 2i/d_model"),
    (dict(exponent="column"), "every column got its own frequency"),
    (dict(start=1), "positions start at 1"),
])
def test_pe_names_mistakes(kw, name):
    _fails(A.check_positional_encoding, pe_student(**kw), name)


# --------------------------------------------------------------------------- exercise 4: encoder block

def block_student(*, post_always=False, pre_always=False, shared_norm=False, act=None, residual_normed=False,
                  final_norm=False, ln="functional"):
    mha = SOLUTIONS["multi_head_attention"]

    def fn(x, params, num_heads, norm_first=False, activation="relu", mask=None):
        d = x.shape[-1]
        pre = (norm_first or pre_always) and not post_always

        def norm(y, i):
            i = 1 if shared_norm else i
            w, b = params[f"norm{i}_weight"], params[f"norm{i}_bias"]
            if ln == "functional":
                return F.layer_norm(y, (d,), w, b, eps=1e-5)
            if ln == "eps_1e-6":
                return F.layer_norm(y, (d,), w, b, eps=1e-6)
            mu = y.mean(-1, keepdim=True)
            if ln == "unbiased":                       # torch.var's default divides by d - 1
                return (y - mu) / torch.sqrt(y.var(-1, keepdim=True) + 1e-5) * w + b
            return (y - mu) / (y.std(-1, unbiased=False, keepdim=True) + 1e-5) * w + b   # eps outside

        def ffn(y):
            h = y @ params["W_1"].T + params["b_1"]
            kind = act or activation
            if kind == "tanh" and activation == "relu":   # the approximation only replaces GELU
                kind = "relu"
            h = F.relu(h) if kind == "relu" else F.gelu(h, approximate="tanh" if kind == "tanh" else "none")
            return h @ params["W_2"].T + params["b_2"]

        def sa(y):
            return mha(y, y, y, params, num_heads, mask=mask)

        if pre:
            if residual_normed:
                x = norm(x, 1)
                x = x + sa(x)
                x = norm(x, 2)
                x = x + ffn(x)
            else:
                x = x + sa(norm(x, 1))
                x = x + ffn(norm(x, 2))
            return norm(x, 2) if final_norm else x
        x = norm(x + sa(x), 1)
        return norm(x + ffn(x), 2)
    return fn


def block_by_hand(x, params, num_heads, norm_first=False, activation="relu", mask=None):
    """LayerNorm written out, float32 arithmetic, GELU as z·Φ(z) with erf."""
    x = x.float()
    p = {name: t.float() for name, t in params.items()}

    def norm(y, i):
        mu = y.mean(-1, keepdim=True)
        var = ((y - mu) ** 2).mean(-1, keepdim=True)
        return (y - mu) / torch.sqrt(var + 1e-5) * p[f"norm{i}_weight"] + p[f"norm{i}_bias"]

    def ffn(y):
        h = y @ p["W_1"].T + p["b_1"]
        h = h * 0.5 * (1 + torch.erf(h / math.sqrt(2))) if activation == "gelu" else h.clamp(min=0)
        return h @ p["W_2"].T + p["b_2"]

    def sa(y):
        return SOLUTIONS["multi_head_attention"](y, y, y, p, num_heads, mask=mask)

    if norm_first:
        x = x + sa(norm(x, 1))
        return x + ffn(norm(x, 2))
    x = norm(x + sa(x), 1)
    return norm(x + ffn(x), 2)


@pytest.mark.parametrize("fn", [block_student(), block_by_hand], ids=["functional", "by_hand_float32"])
def test_block_accepts_correct(fn):
    _passes(A.check_transformer_encoder_block, fn)


@pytest.mark.parametrize("kw, name", [
    (dict(post_always=True), "post-LN where pre-LN was asked"),
    (dict(pre_always=True), "pre-LN where post-LN was asked"),
    (dict(shared_norm=True), "one LayerNorm (norm1) used for both sublayers"),
    (dict(act="relu"), "ReLU used where activation='gelu'"),
    (dict(act="gelu"), "GELU used where activation='relu'"),
    (dict(act="tanh"), "tanh approximation of GELU"),
    (dict(residual_normed=True), "residual taken from the normalised input"),
    (dict(final_norm=True), "an extra LayerNorm after the pre-LN block"),
    (dict(ln="unbiased"), "divided by d_model − 1"),
    (dict(ln="eps_outside"), "added to the standard deviation"),
    (dict(ln="eps_1e-6"), "LayerNorm with eps=1e-6"),
])
def test_block_names_mistakes(kw, name):
    _fails(A.check_transformer_encoder_block, block_student(**kw), name)


def test_block_gets_the_fast_path_free_reference():
    """The reference must equal the plain computation, also at padded positions (torch's fast path gives 0)."""
    for case in encoder_block.BLOCK.make_cases(True):
        if case.inputs["key_keep"] is not None:
            expected = encoder_block.torch_encoder_layer(case.inputs)
            plain = encoder_block._variant()(case.inputs)
            np.testing.assert_allclose(expected, plain, atol=1e-10)


# --------------------------------------------------------------------------- exercises 5-7: costs

@pytest.mark.parametrize("fn", [
    lambda d, h, bias=True: np.int64(4 * d * d + 4 * d * bias),
    lambda d, h, bias=True: torch.tensor(sum(x.numel() for x in torch.nn.MultiheadAttention(d, h, bias=bias,
                                                                                            device="meta").parameters())),
    lambda d, h, bias=True: h * 4 * (d // h) * d + (4 * d if bias else 0),
], ids=["numpy_int", "torch_count", "per_head_slices"])
def test_param_count_accepts_correct(fn):
    _passes(A.check_mha_param_count, fn)


@pytest.mark.parametrize("fn, name", [
    (lambda d, h, bias=True: 4 * d * d, "the biases were not counted"),
    (lambda d, h, bias=True: 3 * (d * d + d * bias), "only W_q, W_k, W_v were counted"),
    (lambda d, h, bias=True: 4 * h * (d * d + d * bias), "every head was given its own full"),
    (lambda d, h, bias=True: 4 * (d * (d // h) + (d // h) * bias), "counted as d_model × d_k"),
])
def test_param_count_names_mistakes(fn, name):
    _fails(A.check_mha_param_count, fn, name)


def test_matrix_bytes_accepts_correct():
    _passes(A.check_attention_matrix_bytes, lambda n, h, batch_size=1, bytes_per_value=2:
            np.prod([batch_size, h, n, n, bytes_per_value], dtype=np.int64))


@pytest.mark.parametrize("fn, name", [
    (lambda n, h, b=1, nb=2: b * h * n * nb, "seq_len was counted once"),
    (lambda n, h, b=1, nb=2: b * n * n * nb, "the heads were not counted"),
    (lambda n, h, b=1, nb=2: h * n * n * nb, "the batch size was not counted"),
    (lambda n, h, b=1, nb=2: b * h * n * n, "you counted values, not bytes"),
    (lambda n, h, b=1, nb=2: 8 * b * h * n * n * nb, "you counted bits, not bytes"),
])
def test_matrix_bytes_names_mistakes(fn, name):
    _fails(A.check_attention_matrix_bytes, fn, name)


def test_kv_bytes_accepts_correct():
    _passes(A.check_kv_cache_bytes, lambda n, L, kv, d, batch_size=1, bytes_per_value=2:
            L * (2 * kv * d) * n * batch_size * bytes_per_value)


@pytest.mark.parametrize("check, fn, seen", [
    (A.check_kv_cache_bytes, lambda n, L, kv, d, batch_size=1, bytes_per_value=2:
     float(L * (2 * kv * d) * n * batch_size * bytes_per_value), "kv_cache_bytes(4096, 32, 16, 64) returned "
     "536870912.0, a float"),
    (A.check_mha_param_count, lambda d, h, bias=True: float(4 * d * d + 4 * d * bias),
     "mha_param_count(512, 8) returned 1050624.0, a float"),
    (A.check_attention_matrix_bytes, lambda n, h, batch_size=1, bytes_per_value=2:
     torch.tensor(batch_size * h * n * n * bytes_per_value, dtype=torch.float64),
     "attention_matrix_bytes(1024, 16) returned 33554432.0, a Tensor"),
], ids=["kv_float", "params_float", "matrix_float_tensor"])
def test_costs_that_are_not_ints_break_the_rule(check, fn, seen):
    """Each docstring says "Returns an int": a whole-number float is rejected as such."""
    text = _fails(check, fn, "breaks a rule of the exercise", "returns an int (its docstring in Exercise 5)")
    assert f"Seen: {seen}." in text, text


@pytest.mark.parametrize("check, fn", [
    (A.check_attention_matrix_bytes, lambda n, h, batch_size=1, bytes_per_value=4:
     batch_size * h * n * n * bytes_per_value),
    (A.check_attention_matrix_bytes, lambda n, h, batch_size=2, bytes_per_value=2:
     batch_size * h * n * n * bytes_per_value),
    (A.check_kv_cache_bytes, lambda n, L, kv, d, batch_size=1, bytes_per_value=4:
     2 * L * kv * d * n * batch_size * bytes_per_value),
    (A.check_mha_param_count, lambda d, h, bias=False: 4 * d * d + 4 * d * bias),
], ids=["matrix_bytes_default", "matrix_batch_default", "kv_bytes_default", "params_bias_default"])
def test_a_wrong_default_is_caught_on_a_visible_call(check, fn):
    """The lecture's calls leave the last arguments at their defaults: a wrong default fails, visibly."""
    with pytest.raises(CheckFailure) as info:
        check(fn)
    assert "First difference at " in str(info.value) and "Likely cause" not in str(info.value)


@pytest.mark.parametrize("fn, name", [
    (lambda n, L, kv, d, b=1, nb=2: L * b * n * kv * d * nb, "the factor 2 for K and V is missing"),
    (lambda n, L, kv, d, b=1, nb=2: 2 * b * n * kv * d * nb, "the layers were not counted"),
    (lambda n, L, kv, d, b=1, nb=2: 2 * L * n * kv * d * nb, "the batch size was not counted"),
    (lambda n, L, kv, d, b=1, nb=2: 2 * L * b * n * kv * d, "you counted values, not bytes"),
])
def test_kv_bytes_names_mistakes(fn, name):
    _fails(A.check_kv_cache_bytes, fn, name)


def test_costs_reject_non_numbers():
    _fails(A.check_kv_cache_bytes, lambda *args: "512 MiB", "Expected a single number, got str.")


def test_lecture_numbers():
    """The seed's numbers, from the real modules and tensors the checks use."""
    assert costs.torch_mha_param_count(512, 8) == 1_050_624
    assert [costs.torch_attention_matrix_bytes(n, 16) for n in (1024, 4096)] == [32 * 2**20, 512 * 2**20]
    assert [costs.torch_kv_cache_bytes(4096, 32, kv, 64) for kv in (16, 1, 4)] == [512 * 2**20, 32 * 2**20, 128 * 2**20]


# --------------------------------------------------------------------------- every check: RNG, plain data, cells

ALL = sorted(A.EXERCISES)


@pytest.mark.parametrize("name", ALL)
def test_cases_and_outputs_travel_as_plain_data(name):
    """Trusted grading pickles the case inputs and saves what `call` returns as plain arrays."""
    exercise = A.EXERCISES[name]
    for case in exercise.make_cases(True):
        inputs = pickle.loads(pickle.dumps(case.inputs))
        array = to_numpy(exercise.call(SOLUTIONS[name], inputs))
        assert array is not None and array.dtype.kind in "biuf"
        assert array.shape == np.shape(exercise.reference(case.inputs))


def test_every_exercise_has_a_solution_and_test_cell():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells]
    assert len(ids) == len(set(ids))
    for name in ALL:
        assert name in CELLS
        test_cell = next(c for c in nb.cells if c.metadata["nbgrader"]["grade_id"] == f"test_{name}")
        assert test_cell.source == (f"check_{name}({name})\n### BEGIN HIDDEN TESTS\n"
                                    f"check_{name}({name}, hidden=True)\n### END HIDDEN TESTS")
        assert 1 <= test_cell.metadata["nbgrader"]["points"] <= 3


# --------------------------------------------------------------------------- sample mistakes

SAMPLES = mistakes_for("attention")


def test_at_least_three_samples():
    assert len(SAMPLES) >= 3
    assert all(s.student.startswith("attention_") for s in SAMPLES)
    assert len({s.student for s in SAMPLES}) == len(SAMPLES)


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.student for s in SAMPLES])
def test_sample_mistake_is_diagnosed(sample):
    assert sample.notebook == NOTEBOOK.stem
    namespace = NB.run(NB.apply(sample))
    with pytest.raises(CheckFailure) as info:
        getattr(A, f"check_{sample.cell}")(namespace[sample.cell])
    assert sample.diagnosis in str(info.value)
    # only this exercise loses points: every other check still passes
    for name in ALL:
        if name != sample.cell:
            getattr(A, f"check_{name}")(namespace[name])


# --------------------------------------------------------------------------- issue 15: holes, rules, wrong causes

def _sdpa_by_hand(*, mask_fill="keep", maximum="row"):
    """Attention with the mask filled by hand and a softmax written out; the keywords are off-catalogue variants:
    ``mask_fill="inverted"`` fills -inf where mask is True (True read as "blocked"); ``maximum`` is the shift of
    the softmax: "row" (right), "global" (one maximum for the whole tensor), "before_mask" (the row maximum taken
    before masking)."""
    def fn(q, k, v, mask=None):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if maximum == "before_mask":
            scores = scores - scores.amax(dim=-1, keepdim=True)
        if mask is not None:
            scores = scores.masked_fill(mask if mask_fill == "inverted" else ~mask, float("-inf"))
        if maximum == "row":
            scores = scores - scores.amax(dim=-1, keepdim=True)
        elif maximum == "global":
            scores = scores - scores.max()
        e = torch.exp(scores)
        weights = e / e.sum(dim=-1, keepdim=True)
        return weights @ v, weights
    return fn


def _no_wrong_cause(text: str, right: str = "") -> None:
    """The feedback names the right catalogued cause, or none (and then says where the values differ)."""
    causes = [line for line in text.splitlines() if line.strip().startswith("Likely cause:")]
    if right:
        assert causes and right in causes[0], text
    else:
        assert not causes, text


def test_sdpa_by_hand_is_right():
    _passes(A.check_scaled_dot_product_attention, _sdpa_by_hand())


def test_sdpa_masked_fill_with_the_mask_inverted_is_not_given_a_wrong_cause():
    """masked_fill(mask, -inf) with True read as "blocked": a row the mask keeps whole becomes all -inf, so NaN;
    the catalogue's inverted mask (a finite -1e9) does not explain that, and is not named."""
    text = _fails(A.check_scaled_dot_product_attention, _sdpa_by_hand(mask_fill="inverted"),
                  "causal mask of shape (T, T)", "values are NaN or infinite")
    _no_wrong_cause(text)
    assert "is True read as keep?" in text   # the hint says where NaN comes from


def test_sdpa_one_global_maximum_fails_on_rows_of_both_signs():
    """Rows at +1e3 and at −1e3: one maximum for the whole tensor leaves the negative rows at exp(−2000) = 0."""
    fn = _sdpa_by_hand(maximum="global")
    text = _fails(A.check_scaled_dot_product_attention, fn, "scores of order +1e3 in some rows and −1e3 in others",
                  "values are NaN or infinite", "one maximum for the whole tensor")
    _no_wrong_cause(text)
    with pytest.raises(CheckFailure):
        A.check_scaled_dot_product_attention(fn)   # visible: a student sees it before grading


def test_sdpa_maximum_before_masking_fails_where_blocked_keys_score_higher():
    fn = _sdpa_by_hand(maximum="before_mask")
    A.check_scaled_dot_product_attention(fn)   # no visible case has blocked keys far above the kept ones
    text = _fails(A.check_scaled_dot_product_attention, fn, "the blocked keys score higher than the kept ones",
                  "values are NaN or infinite", "one taken before masking")
    _no_wrong_cause(text)


def test_sdpa_the_naive_softmax_fails_on_negative_rows_too():
    """exp(−1000) underflows to 0 in every entry of a negative row: 0/0 = NaN, not only exp(+1000) = inf."""
    signed = [c for c in A.SDPA.make_cases(False) if "−1e3 in others" in c.description]
    assert len(signed) == 1
    only_signed = dataclasses.replace(A.SDPA, make_cases=lambda hidden: signed)
    with pytest.raises(CheckFailure, match="NaN or infinite"):
        run_check(only_signed, sdpa_student(stable=False))


def test_sdpa_modifying_q_in_place_breaks_the_rule():
    def fn(q, k, v, mask=None):
        q /= math.sqrt(q.shape[-1])   # scales the caller's q
        return sdpa_student(divisor="none")(q, k, v, mask)

    _fails(A.check_scaled_dot_product_attention, fn, "breaks a rule of the exercise",
           "Rule: no function modifies its arguments in place (the notebook's conventions).",
           "Seen: q was changed in place.")


def test_sdpa_a_difference_confined_to_the_weights_is_said_so():
    def fn(q, k, v, mask=None):
        output, weights = sdpa_student()(q, k, v, mask)
        return output, weights * 1.5
    text = _fails(A.check_scaled_dot_product_attention, fn,
                  "All the differences are in the weights; the rest matches: yours = expected × 1.5")
    _no_wrong_cause(text)
    assert "Shape OK" not in text   # never the shape of output and weights packed together


def mha_query_for_everything(query, key, value, params, num_heads, mask=None):
    """Self-attention assumed: keys and values projected from query."""
    return SOLUTIONS["multi_head_attention"](query, query, query, params, num_heads, mask)


def mha_value_from_key(query, key, value, params, num_heads, mask=None):
    return SOLUTIONS["multi_head_attention"](query, key, key, params, num_heads, mask)


def mha_heads_interleaved(query, key, value, params, num_heads, mask=None):
    """Head j takes every h-th channel (reshape to (..., d_k, h)) instead of a contiguous slice."""
    B, T_q, d = query.shape
    T_k, d_k = key.shape[1], d // num_heads

    def split(x, T):
        return x.reshape(B, T, d_k, num_heads).permute(0, 3, 1, 2)

    q = split(query @ params["W_q"].T + params["b_q"], T_q)
    k = split(key @ params["W_k"].T + params["b_k"], T_k)
    v = split(value @ params["W_v"].T + params["b_v"], T_k)
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return o.permute(0, 2, 3, 1).reshape(B, T_q, d) @ params["W_o"].T + params["b_o"]


def mha_transposes_params_in_place(query, key, value, params, num_heads, mask=None):
    """Stores x @ W-ready weights back into the caller's dict."""
    for role in "qkvo":
        params[f"W_{role}"] = params[f"W_{role}"].T
    p = {name: (t.T if name.startswith("W_") else t) for name, t in params.items()}
    return SOLUTIONS["multi_head_attention"](query, key, value, p, num_heads, mask)


@pytest.mark.parametrize("fn, words", [
    (mha_query_for_everything, "raised an error"),
    (mha_value_from_key, "cross-attention"),
    (mha_heads_interleaved, "does not match"),
], ids=["query_for_everything", "value_from_key", "heads_interleaved"])
def test_mha_off_catalogue_variants_get_no_wrong_cause(fn, words):
    _no_wrong_cause(_fails(A.check_multi_head_attention, fn, words))


def test_mha_in_biases_left_out_is_named():
    def fn(query, key, value, params, num_heads, mask=None):
        p = dict(params, b_q=torch.zeros_like(params["b_q"]), b_k=torch.zeros_like(params["b_k"]),
                 b_v=torch.zeros_like(params["b_v"]))
        return SOLUTIONS["multi_head_attention"](query, key, value, p, num_heads, mask)
    _no_wrong_cause(_fails(A.check_multi_head_attention, fn), "the biases b_q, b_k, b_v were left out")


def test_mha_changing_the_callers_params_breaks_the_rule():
    _fails(A.check_multi_head_attention, mha_transposes_params_in_place, "breaks a rule of the exercise",
           "Seen: params['W_q'] was changed in place.")


def test_pe_off_catalogue_base_gets_no_wrong_cause():
    def fn(max_len, d_model):
        position = torch.arange(max_len, dtype=torch.float64)[:, None]
        angle = position * torch.exp(-torch.arange(0, d_model, 2, dtype=torch.float64) * math.log(1000.0) / d_model)
        pe = torch.zeros(max_len, d_model, dtype=torch.float64)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(angle), torch.cos(angle)
        return pe
    text = _fails(A.check_positional_encoding, fn, "From position 1 on")
    _no_wrong_cause(text)


def _block_with(*, eps=1e-5, pre_by_default=False, in_place=False):
    mha = SOLUTIONS["multi_head_attention"]

    def fn(x, params, num_heads, norm_first=pre_by_default, activation="relu", mask=None):
        d = x.shape[-1]

        def norm(y, i):
            return F.layer_norm(y, (d,), params[f"norm{i}_weight"], params[f"norm{i}_bias"], eps=eps)

        def ffn(y):
            h = y @ params["W_1"].T + params["b_1"]
            return (F.gelu(h) if activation == "gelu" else F.relu(h)) @ params["W_2"].T + params["b_2"]

        if norm_first:
            if in_place:
                x += mha(norm(x, 1), norm(x, 1), norm(x, 1), params, num_heads, mask=mask)
                x += ffn(norm(x, 2))
                return x
            x = x + mha(norm(x, 1), norm(x, 1), norm(x, 1), params, num_heads, mask=mask)
            return x + ffn(norm(x, 2))
        x = norm(x + mha(x, x, x, params, num_heads, mask=mask), 1)
        return norm(x + ffn(x), 2)
    return fn


def test_block_eps_is_seen_on_small_activations():
    """eps 1e-12 or 0 is invisible on unit-variance activations; the cases of size 1e-3 show it (no cause named:
    the catalogue has eps=1e-6 only)."""
    _passes(A.check_transformer_encoder_block, _block_with())
    for eps in (1e-12, 0.0):
        _no_wrong_cause(_fails(A.check_transformer_encoder_block, _block_with(eps=eps)))
    _no_wrong_cause(_fails(A.check_transformer_encoder_block, _block_with(eps=1e-6)), "LayerNorm with eps=1e-6")


def test_block_wrong_default_fails_on_the_default_call():
    text = _fails(A.check_transformer_encoder_block, _block_with(pre_by_default=True), "Case 1 of",
                  "left at their defaults")
    _no_wrong_cause(text)


def test_block_residual_added_in_place_breaks_the_rule():
    _fails(A.check_transformer_encoder_block, _block_with(in_place=True), "breaks a rule of the exercise",
           "Seen: x was changed in place.")


def test_matrix_bytes_seq_len_once_is_named():
    _no_wrong_cause(_fails(A.check_attention_matrix_bytes, lambda n, h, batch_size=1, bytes_per_value=2:
                           batch_size * h * n * bytes_per_value), "seq_len was counted once")


HINTED = [(name, text) for name, exercise in A.EXERCISES.items()
          for text in [exercise.hint, exercise.reference_name, *exercise.exception_hints.values(),
                       *(m.name for m in exercise.mistakes), *(m.hint for m in exercise.mistakes)]]


@pytest.mark.parametrize("name, text", HINTED, ids=[f"{n}-{i}" for i, (n, _) in enumerate(HINTED)])
def test_no_hint_states_a_whole_formula_or_code(name, text):
    """Beyond the contract's 7-token rule: no hint spells out a whole formula or a line of solution code."""
    for code in ("masked_fill(~mask", "transpose(1, 2)", "reshape(B,", "@ W.T", "pe[:, 0::2]", "x = x +",
                 "= norm", "4·(d", "· seq_len² ·", "2 · num_layers ·", "math.sqrt(d_k)", "torch.softmax(scores"):
        assert code not in text, f"{name}: {text!r} holds {code!r}"
