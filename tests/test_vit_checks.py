"""Tests of the ViT checks (utils/vit): correct implementations pass, each catalogued mistake is named as a student
would make it, the global RNGs are untouched on the hidden cases, and every sample mistake is diagnosed. What every
exercise keeps (the notebook's solution passes, each catalogued mistake is diagnosed, a stub is "not implemented
yet") is tests/test_contract.py's."""
from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from notebook_solutions import NotebookSolutions
from utils import vit
from utils.checks.feedback import CheckFailure
from utils.instructor.samples import mistakes_for
from utils.vit.attention_weights import ATTENTION_WEIGHTS, attention_weights_variant
from utils.vit.model import VIT, vit_forward_variant
from utils.vit.param_count import param_count_variant
from utils.vit.patches import patch_embed_variant, patchify_variant
from utils.vit.tokens import embed_tokens_variant
from utils.vit.torchvision_vit import SMALL_CONFIG, VIT_B_16, torchvision_vit, vit_state_shapes

NOTEBOOK = Path(__file__).resolve().parents[1] / "source" / "vit" / "vit.ipynb"
CHECKS = {"patchify": vit.check_patchify, "patch_embed_linear": vit.check_patch_embed_linear,
          "patch_embed_conv": vit.check_patch_embed_conv, "embed_tokens": vit.check_embed_tokens,
          "ViT": vit.check_ViT, "vit_param_count": vit.check_vit_param_count,
          "attention_weights": vit.check_attention_weights}


# --------------------------------------------------------------------------- the notebook's solutions

NB = NotebookSolutions(NOTEBOOK, imports=True)   # the imports cell, then every solution code cell


@pytest.fixture(scope="module")
def solutions():
    return NB.run()


pytestmark = pytest.mark.usefixtures("one_torch_thread")   # tiny models: one thread is faster


def _failure(check, fn) -> str:
    with pytest.raises(CheckFailure) as info:
        check(fn, hidden=True)
    return str(info.value)


# --------------------------------------------------------------------------- exercise 1: patchify

def patchify_loops(x, patch_size):
    x = np.asarray(x, dtype=np.float32)
    N, C, H, W = x.shape
    P = patch_size
    out = np.zeros((N, (H // P) * (W // P), C * P * P), dtype=np.float32)
    for n in range(N):
        for i in range(H // P):
            for j in range(W // P):
                out[n, i * (W // P) + j] = x[n, :, i * P:(i + 1) * P, j * P:(j + 1) * P].ravel()
    return out


def patchify_unfold(x, patch_size):
    return x.unfold(2, patch_size, patch_size).unfold(3, patch_size, patch_size) \
        .permute(0, 2, 3, 1, 4, 5).flatten(3).flatten(1, 2)


def _patchify_order(order):
    return lambda x, P: patchify_variant(x.numpy(), P, order)


def test_patchify_accepts_correct():
    for fn in (patchify_loops, patchify_unfold):
        vit.check_patchify(fn, hidden=True)


@pytest.mark.parametrize("order, words", [("column_major", "column-major"), ("channels_last", "channels-last"),
                                          ("naive_reshape", "without moving axes"), ("pixel_xy", "(C, x, y)")])
def test_patchify_names_mistakes(order, words):
    assert words in _failure(vit.check_patchify, _patchify_order(order))


def test_patchify_wrong_shape_reported():
    text = _failure(vit.check_patchify, lambda x, P: x.reshape(x.shape[0], x.shape[1], -1))
    assert "Shape" in text


# --------------------------------------------------------------------------- exercises 2 and 3: embeddings

def embed_loops_float32(x, weight, bias, patch_size):
    x, weight, bias = x.float(), weight.float(), bias.float()
    N, C, H, W = x.shape
    P, D = patch_size, weight.shape[0]
    out = torch.zeros(N, (H // P) * (W // P), D)
    for n in range(N):
        for i in range(H // P):
            for j in range(W // P):
                patch = x[n, :, i * P:(i + 1) * P, j * P:(j + 1) * P]
                out[n, i * (W // P) + j] = (weight * patch).sum(dim=(1, 2, 3)) + bias
    return out


def embed_einsum(x, weight, bias, patch_size):
    N, C, H, W = x.shape
    P = patch_size
    blocks = x.reshape(N, C, H // P, P, W // P, P)
    return torch.einsum("nciyjx,dcyx->nijd", blocks, weight).reshape(N, -1, weight.shape[0]) + bias


def embed_module(x, weight, bias, patch_size):
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], patch_size, stride=patch_size).double()
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
        return conv(x).flatten(2).permute(0, 2, 1)


def _embed(**kw):
    return lambda x, w, b, P: patch_embed_variant(x.numpy(), w.numpy(), b.numpy(), P, **kw)


@pytest.mark.parametrize("name", ["patch_embed_linear", "patch_embed_conv"])
def test_patch_embed_accepts_correct(name):
    for fn in (embed_loops_float32, embed_einsum, embed_module):
        CHECKS[name](fn, hidden=True)


@pytest.mark.parametrize("kw, words", [(dict(order="column_major"), "column-major"),
                                       (dict(order="channels_last"), "channels-last"),
                                       (dict(order="naive_reshape"), "without moving axes"),
                                       (dict(no_transpose=True), "instead of flattened and transposed")])
def test_patch_embed_linear_names_mistakes(kw, words):
    assert words in _failure(vit.check_patch_embed_linear, _embed(**kw))


@pytest.mark.parametrize("kw, words", [(dict(stride=1), "stride ≠ patch size"),
                                       (dict(no_transpose=True), "instead of flattened and transposed"),
                                       (dict(order="column_major"), "column-major")])
def test_patch_embed_conv_names_mistakes(kw, words):
    assert words in _failure(vit.check_patch_embed_conv, _embed(**kw))


def test_patch_embed_conv_stride_in_student_code():
    def strided(x, weight, bias, patch_size):
        return F.conv2d(x, weight, bias, stride=1).flatten(2).transpose(1, 2)
    assert "stride ≠ patch size" in _failure(vit.check_patch_embed_conv, strided)


# --------------------------------------------------------------------------- exercise 4: tokens

def tokens_numpy(patches, class_token, pos):
    patches, cls, pos = (np.asarray(a, dtype=np.float32) for a in (patches, class_token, pos))
    cls = np.repeat(cls, len(patches), axis=0)
    return np.concatenate([cls, patches], axis=1) + pos


def tokens_repeat(patches, class_token, pos):
    out = torch.empty(patches.shape[0], patches.shape[1] + 1, patches.shape[2], dtype=patches.dtype)
    out[:, 0] = class_token[0, 0]
    out[:, 1:] = patches
    return out + pos.repeat(patches.shape[0], 1, 1)


def test_embed_tokens_accepts_correct():
    vit.check_embed_tokens(tokens_repeat, hidden=True)
    vit.check_embed_tokens(tokens_numpy, hidden=True)   # float32


@pytest.mark.parametrize("mistake, words", [("appended", "appended instead of prepended"),
                                            ("no_pos", "no position embedding"),
                                            ("pos_before_cls", "before the class token is concatenated"),
                                            ("pos_before_cls_first", "before the class token is concatenated")])
def test_embed_tokens_names_mistakes(mistake, words):
    def fn(p, c, e):
        return embed_tokens_variant(p.numpy(), c.numpy(), e.numpy(), mistake)
    assert words in _failure(vit.check_embed_tokens, fn)


def test_embed_tokens_shape_mismatch_hint():
    def early(patches, class_token, pos):
        patches = patches + pos          # (N, L, D) + (1, L + 1, D): RuntimeError
        return torch.cat([class_token.expand(len(patches), -1, -1), patches], dim=1)
    text = _failure(vit.check_embed_tokens, early)
    assert "raised RuntimeError" in text and "added after the concatenation" in text


# --------------------------------------------------------------------------- exercise 5: ViT

class HandAttention(nn.Module):
    """Multi-head self-attention written out, with nn.MultiheadAttention's parameter names."""

    scale = "sqrt_dk"   # a subclass sets "none" or "sqrt_D" to reproduce a mistake

    def __init__(self, D, heads):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * D, D))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * D))
        self.out_proj = nn.Linear(D, D)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x):
        N, T, D = x.shape
        q, k, v = (x @ self.in_proj_weight.T + self.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (t.reshape(N, T, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        divisor = {"sqrt_dk": math.sqrt(D // self.heads), "none": 1.0, "sqrt_D": math.sqrt(D)}[self.scale]
        a = torch.softmax(q @ k.transpose(-1, -2) / divisor, dim=-1) @ v
        return self.out_proj(a.transpose(1, 2).reshape(N, T, D))


class HandBlock(nn.Module):
    post_ln = False     # True reproduces the post-LN mistake
    attention = HandAttention

    def __init__(self, heads, D, M):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(D, eps=1e-6), nn.LayerNorm(D, eps=1e-6)
        self.self_attention = self.attention(D, heads)
        self.mlp = nn.ModuleDict({"0": nn.Linear(D, M), "3": nn.Linear(M, D)})

    def _mlp(self, h):
        return self.mlp["3"](0.5 * self.mlp["0"](h) * (1 + torch.erf(self.mlp["0"](h) / math.sqrt(2))))

    def forward(self, x):
        if self.post_ln:
            x = self.ln_1(x + self.self_attention(x))
            return self.ln_2(x + self._mlp(x))
        x = x + self.self_attention(self.ln_1(x))
        return x + self._mlp(self.ln_2(x))


class HandEncoder(nn.Module):
    block = HandBlock

    def __init__(self, L, layers, heads, D, M):
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.zeros(1, L + 1, D))
        self.layers = nn.Sequential(OrderedDict((f"encoder_layer_{i}", self.block(heads, D, M))
                                                for i in range(layers)))
        self.ln = nn.LayerNorm(D, eps=1e-6)


class HandViT(nn.Module):
    """A second correct ViT: attention and GELU by hand, patches by reshape, float64."""

    encoder_class = HandEncoder

    def __init__(self, image_size, patch_size, num_layers, num_heads, hidden_dim, mlp_dim, num_classes=1000,
                 in_channels=3):
        super().__init__()
        self.P = patch_size
        self.conv_proj = nn.Conv2d(in_channels, hidden_dim, patch_size, stride=patch_size)
        self.class_token = nn.Parameter(torch.randn(1, 1, hidden_dim))
        self.encoder = self.encoder_class((image_size // patch_size) ** 2, num_layers, num_heads, hidden_dim, mlp_dim)
        self.heads = nn.ModuleDict({"head": nn.Linear(hidden_dim, num_classes)})
        self.double()

    def forward(self, x):
        x = x.double()
        N, C, H, W = x.shape
        P, D = self.P, self.conv_proj.out_channels
        patches = x.reshape(N, C, H // P, P, W // P, P).permute(0, 2, 4, 1, 3, 5).reshape(N, -1, C * P * P)
        x = patches @ self.conv_proj.weight.reshape(D, -1).T + self.conv_proj.bias
        x = torch.cat([self.class_token.expand(N, -1, -1), x], dim=1) + self.encoder.pos_embedding
        x = self.encoder.ln(self.encoder.layers(x))
        return self.heads["head"](x[:, 0])


def _vit_with(solutions, **flags):
    """The notebook's ViT with a mistaken forward pass."""
    base = solutions["ViT"]

    class Wrong(base):
        def forward(self, x):
            x = self.conv_proj(x)
            if flags.get("column_major"):
                x = x.transpose(2, 3)
            x = x.flatten(2).transpose(1, 2)
            token = self.class_token.expand(x.shape[0], -1, -1)
            pos = self.encoder.pos_embedding
            if flags.get("pos_before_cls"):
                x = torch.cat([token, x + pos[:, 1:]], dim=1)
            elif flags.get("append"):
                x = torch.cat([x, token], dim=1) + pos
            else:
                x = torch.cat([token, x], dim=1) + (0 if flags.get("no_pos") else pos)
            x = self.encoder.layers(x)
            if not flags.get("no_ln"):
                x = self.encoder.ln(x)
            if flags.get("mean"):
                return self.heads(x.mean(dim=1))
            return self.heads(x[:, -1] if flags.get("append") else x[:, 0])

    return Wrong


def test_vit_accepts_correct():
    vit.check_ViT(HandViT)


@pytest.mark.parametrize("flags, words", [
    (dict(mean=True), "classification from the mean of tokens instead of the class token"),
    (dict(no_ln=True), "missing final LayerNorm"),
    (dict(no_pos=True), "no position embedding"),
    (dict(append=True), "class token appended instead of prepended"),
    (dict(pos_before_cls=True), "before the class token is concatenated"),
    (dict(column_major=True), "column-major"),
])
def test_vit_names_mistakes(solutions, flags, words):
    assert words in _failure(vit.check_ViT, _vit_with(solutions, **flags))


def _hand_vit(post_ln=False, scale="sqrt_dk"):
    """HandViT with a post-LN block and/or a mistaken attention scaling."""
    attention = type("Attention", (HandAttention,), {"scale": scale})
    block = type("Block", (HandBlock,), {"post_ln": post_ln, "attention": attention})
    encoder = type("Encoder", (HandEncoder,), {"block": block})
    return type("WrongViT", (HandViT,), {"encoder_class": encoder})


@pytest.mark.parametrize("kw, words", [
    (dict(post_ln=True), "post-LN where pre-LN was asked"),
    (dict(scale="none"), "no √d_k scaling"),
    (dict(scale="sqrt_D"), "divided by √hidden_dim instead of √d_k"),
])
def test_vit_names_block_mistakes(kw, words):
    assert words in _failure(vit.check_ViT, _hand_vit(**kw))


def test_vit_names_post_ln_in_notebook_block(solutions):
    """The notebook's EncoderBlock rewritten post-LN (nn.MultiheadAttention kept)."""
    class PostLN(solutions["EncoderBlock"]):
        def forward(self, x):
            x = self.ln_1(x + self.self_attention(x, x, x, need_weights=False)[0])
            return self.ln_2(x + self.mlp(x))

    class WrongViT(solutions["ViT"]):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            for block in self.encoder.layers:
                block.__class__ = PostLN
    assert "post-LN where pre-LN was asked" in _failure(vit.check_ViT, WrongViT)


def test_vit_names_activation_mistakes(solutions):
    class Relu(solutions["ViT"]):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            for block in self.encoder.layers:
                block.mlp[1] = nn.ReLU()
    assert "ReLU instead of GELU" in _failure(vit.check_ViT, Relu)


def test_vit_wrong_names_and_stride(solutions):
    class Renamed(HandViT):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.cls_token = self.class_token
            del self.class_token
    text = _failure(vit.check_ViT, Renamed)
    assert "raised RuntimeError" in text and "parameter names differ" in text

    class Strided(solutions["ViT"]):
        def __init__(self, image_size, patch_size, *args, **kwargs):
            super().__init__(image_size, patch_size, *args, **kwargs)
            self.conv_proj.stride = (1, 1)
    text = _failure(vit.check_ViT, Strided)
    assert "raised RuntimeError" in text and "stride is the patch size" in text


def test_vit_variant_matches_torchvision():
    for case in VIT.make_cases(True):
        inputs = case.inputs
        got = vit_forward_variant(inputs["state"], inputs["images"], inputs["config"])
        np.testing.assert_allclose(got, VIT.reference(inputs), atol=1e-10)


def test_state_shapes_are_torchvision_names():
    model = torchvision_vit(SMALL_CONFIG)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == dict(vit_state_shapes(SMALL_CONFIG))


# --------------------------------------------------------------------------- exercise 6: parameter count

def count_from_shapes(image_size, patch_size, num_layers, num_heads, hidden_dim, mlp_dim, num_classes):
    config = dict(image_size=image_size, patch_size=patch_size, num_layers=num_layers, num_heads=num_heads,
                  hidden_dim=hidden_dim, mlp_dim=mlp_dim, num_classes=num_classes)
    return np.int64(sum(int(np.prod(s)) for s in vit_state_shapes(config).values()))


def test_param_count_accepts_correct(solutions):
    vit.check_vit_param_count(count_from_shapes, hidden=True)
    vit.check_vit_param_count(lambda **c: torch.tensor(param_count_variant(**c)), hidden=True)
    assert solutions["vit_param_count"](**VIT_B_16) == 86_567_656


@pytest.mark.parametrize("flag, words", [
    ("class_token", "class token is not counted"), ("pos", "position embedding is not counted"),
    ("pos_plus_one", "position embedding has L rows instead of L + 1"), ("biases", "biases are not counted"),
    ("layer_norms", "LayerNorm parameters are not counted"), ("final_ln", "final LayerNorm (encoder.ln"),
    ("out_proj", "out_proj"),
    ("per_head", "once per head"), ("one_mlp_layer", "only one is counted")])
def test_param_count_names_mistakes(flag, words):
    value = flag not in ("per_head", "one_mlp_layer")   # these two switch a mistake on with True
    def fn(**c):
        return param_count_variant(**c, **{flag: not value})
    assert words in _failure(vit.check_vit_param_count, fn)


# --------------------------------------------------------------------------- exercise 7: attention weights

def attention_loops_float32(x, in_proj_weight, in_proj_bias, num_heads):
    x, W, b = (np.asarray(a, dtype=np.float32) for a in (x, in_proj_weight, in_proj_bias))
    N, T, D = x.shape
    d_k = D // num_heads
    out = np.zeros((N, num_heads, T, T), dtype=np.float32)
    for n in range(N):
        q = x[n] @ W[:D].T + b[:D]
        k = x[n] @ W[D:2 * D].T + b[D:2 * D]
        for a in range(num_heads):
            cols = slice(a * d_k, (a + 1) * d_k)
            scores = q[:, cols] @ k[:, cols].T / np.sqrt(np.float32(d_k))
            e = np.exp(scores - scores.max(axis=1, keepdims=True))
            out[n, a] = e / e.sum(axis=1, keepdims=True)
    return out


def attention_module(x, in_proj_weight, in_proj_bias, num_heads):
    mha = nn.MultiheadAttention(x.shape[-1], num_heads, batch_first=True).double()
    with torch.no_grad():
        mha.in_proj_weight.copy_(in_proj_weight)
        mha.in_proj_bias.copy_(in_proj_bias)
        return mha(x, x, x, need_weights=True, average_attn_weights=False)[1]


def test_attention_weights_accepts_correct():
    for fn in (attention_loops_float32, attention_module):
        vit.check_attention_weights(fn, hidden=True)


@pytest.mark.parametrize("kw, words", [
    (dict(scale="none"), "no √d_k scaling"),
    (dict(scale="sqrt_D"), "divided by √hidden_dim instead of √d_k"),
    (dict(scale="dk"), "divided by d_k instead of √d_k"),
    (dict(dim=-2), "softmax over the query axis"),
    (dict(swap_qk=True), "queries and keys swapped"),
    (dict(split="no_transpose"), "heads split in the wrong order"),
    (dict(bias=False), "in_proj bias was left out"),
    (dict(average=True), "averaged over the heads"),
])
def test_attention_weights_names_mistakes(kw, words):
    def fn(x, W, b, h):
        return attention_weights_variant(x.numpy(), W.numpy(), b.numpy(), h, **kw)
    assert words in _failure(vit.check_attention_weights, fn)


def test_attention_weights_reference_is_multihead_attention():
    for case in ATTENTION_WEIGHTS.make_cases(True):
        np.testing.assert_allclose(attention_weights_variant(**case.inputs),
                                   ATTENTION_WEIGHTS.reference(case.inputs), atol=1e-12)


# --------------------------------------------------------------------------- common properties

def test_exercises_have_checks():
    assert set(vit.EXERCISES) == set(CHECKS)
    assert {n[len("check_"):] for n in dir(vit) if n.startswith("check_")} == set(CHECKS)


@pytest.mark.parametrize("name", list(CHECKS))
def test_call_returns_plain_numpy(solutions, name):
    """Exercise.call runs only the student's code and hands back numpy (what the trusted grader records)."""
    exercise = vit.EXERCISES[name]
    case = exercise.make_cases(False)[-1]
    value = exercise.call(solutions[name], case.inputs)
    assert isinstance(value, np.ndarray) and value.dtype.kind in "fi"


def _returning(value):
    return lambda *args, **kwargs: value


def test_every_check_can_fail():
    for name, check in CHECKS.items():
        with pytest.raises(CheckFailure):
            check(_returning(None if name != "vit_param_count" else 0))


# --------------------------------------------------------------------------- sample mistakes

SAMPLES = mistakes_for("vit")


def test_there_are_samples():
    assert len(SAMPLES) >= 3 and all(s.student.startswith("vit_") for s in SAMPLES)
    assert len({s.student for s in SAMPLES}) == len(SAMPLES)


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.student for s in SAMPLES])
def test_sample_mistake_is_diagnosed(sample):
    assert sample.notebook == "vit"
    namespace = NB.run(NB.apply(sample))
    with pytest.raises(CheckFailure) as info:
        CHECKS[sample.cell](namespace[sample.cell], hidden=True)
    assert sample.diagnosis in str(info.value)


@pytest.mark.parametrize("name", list(CHECKS))
def test_trusted_split_roundtrip(solutions, name, tmp_path):
    """What the trusted grader does: pickled inputs → call in the kernel → npz → judge outside it."""
    import pickle

    from utils.checks.exercise import Case as CheckCase
    from utils.checks.exercise import Produced, case_label, evaluate, produce
    from utils.checks.feedback import CheckResult
    from utils.checks.seeding import grading_salt

    exercise = vit.EXERCISES[name]
    with grading_salt("test-secret"):
        cases = exercise.make_cases(False)
    sent = pickle.loads(pickle.dumps([(c.description, c.inputs) for c in cases]))
    arrays = {}
    for index, (description, inputs) in enumerate(sent):
        produced = produce(exercise, solutions[name], CheckCase(description, inputs), case_label(index + 1, len(sent)))
        assert produced.error is None and isinstance(produced.value, np.ndarray)
        arrays[str(index)] = produced.value
    np.savez(tmp_path / "out.npz", **arrays)
    with np.load(tmp_path / "out.npz", allow_pickle=False) as data:
        loaded = {k: data[k] for k in data.files}
    with grading_salt("test-secret"):
        verdict = evaluate(exercise, exercise.make_cases(False),
                           lambda index, case, label: Produced(value=loaded[str(index)]))
    assert isinstance(verdict, CheckResult)


# --------------------------------------------------------------------------- holes a case now closes (issue 15)
# Each variant below passed every visible and hidden case before the case or rule that now rejects it; the
# feedback names its cause when the catalogue has it, and otherwise names none (never a wrong one).

def _cause(text: str) -> str:
    line = next((line for line in text.splitlines() if "Likely cause:" in line), "")
    return line.split("Likely cause:", 1)[1].strip() if line else ""


def _rejected_without_a_wrong_cause(check, fn) -> str:
    text = _failure(check, fn)
    assert _cause(text) == "", text
    return text


def patchify_square_only(x, patch_size):
    """n_h used for both grid axes: right on square images only."""
    N, C, H, W = x.shape
    n = H // patch_size
    return x.reshape(N, C, n, patch_size, n, patch_size).permute(0, 2, 4, 1, 3, 5).reshape(N, n * n, -1)


def test_patchify_square_assumption_rejected():
    text = _rejected_without_a_wrong_cause(vit.check_patchify, patchify_square_only)
    assert "Case 3 of" in text and "6×9 image" in text


def test_patchify_off_catalogue_order_names_no_cause():
    """Column-major patches AND (x, y) pixels: two catalogued mistakes at once, neither explains it."""
    def both(x, P):
        N, C, H, W = x.shape
        blocks = x.reshape(N, C, H // P, P, W // P, P).permute(0, 4, 2, 1, 5, 3)
        return blocks.reshape(N, (H // P) * (W // P), C * P * P)
    _rejected_without_a_wrong_cause(vit.check_patchify, both)


def embed_square_only(x, weight, bias, patch_size):
    N, C, H, W = x.shape
    n, D = H // patch_size, weight.shape[0]
    patches = x.reshape(N, C, n, patch_size, n, patch_size).permute(0, 2, 4, 1, 3, 5).reshape(N, n * n, -1)
    return patches @ weight.reshape(D, -1).T + bias


def embed_rgb_only(x, weight, bias, patch_size):
    N, C, H, W = x.shape
    P, D = patch_size, weight.shape[0]
    patches = x.reshape(N, C, H // P, P, W // P, P).permute(0, 2, 4, 1, 3, 5).reshape(N, -1, C * P * P)
    return patches @ weight.reshape(D, 3 * P * P).T + bias


def conv_square_only(x, weight, bias, patch_size):
    z = F.conv2d(x, weight, bias, stride=patch_size)
    n = x.shape[-1] // patch_size
    return z.reshape(x.shape[0], weight.shape[0], n * n).transpose(1, 2)


@pytest.mark.parametrize("name, fn", [("patch_embed_linear", embed_square_only),
                                      ("patch_embed_linear", embed_rgb_only),
                                      ("patch_embed_conv", conv_square_only)])
def test_patch_embed_non_square_and_other_channels_rejected(name, fn):
    text = _failure(CHECKS[name], fn)
    assert "Case 4 of" in text and "N=2, C=1, 6×10 image" in text, text   # the visible non-square case
    assert _cause(text) == ""


@pytest.mark.parametrize("stride", [lambda P: 2, lambda P: max(P // 2, 1)])
def test_patch_embed_conv_other_strides_name_no_wrong_cause(stride):
    """A stride fixed at 2, or P // 2 (which is 1 on the first case): no single catalogued stride explains it."""
    def strided(x, weight, bias, P):
        return F.conv2d(x, weight, bias, stride=stride(P)).flatten(2).transpose(1, 2)
    text = _rejected_without_a_wrong_cause(vit.check_patch_embed_conv, strided)
    assert "do not overlap" in text


def tokens_in_place(patches, class_token, pos):
    patches += pos[:, 1:]             # the caller's patch embeddings change
    return torch.cat([(class_token + pos[:, :1]).expand(len(patches), -1, -1), patches], dim=1)


def tokens_cls_in_place(patches, class_token, pos):
    class_token += pos[:, :1]         # the caller's class token (a model parameter) changes
    return torch.cat([class_token.expand(len(patches), -1, -1), patches + pos[:, 1:]], dim=1)


@pytest.mark.parametrize("fn, what", [(tokens_in_place, "patch_embeddings"), (tokens_cls_in_place, "class_token")])
def test_embed_tokens_in_place_breaks_the_rule(fn, what):
    text = _failure(vit.check_embed_tokens, fn)
    assert "breaks a rule" in text and "no in-place operations" in text and f"{what} was changed in place" in text


def test_embed_tokens_pos_on_first_image_only():
    def first_only(patches, class_token, pos):
        x = torch.cat([class_token.expand(len(patches), -1, -1), patches], dim=1)
        x[0] = x[0] + pos[0]
        return x
    text = _rejected_without_a_wrong_cause(vit.check_embed_tokens, first_only)
    assert "Case 2 of" in text


def _vit_variant(solutions, *, mlp_p=0.0, attn_p=0.0, eps=(1e-6, 1e-6, 1e-6, 1e-6), channels=None,
                 batch_first=True, switch_to_eval=False, squeeze=False):
    """The notebook's ViT rebuilt with one change: dropout rates, eps of (ln_1, ln_2, encoder.ln) — the fourth
    entry unused —, conv_proj's input channels fixed, batch_first, a forward that switches to eval, a squeeze."""
    base, block = solutions["ViT"], solutions["EncoderBlock"]

    class Variant(base):
        def __init__(self, image_size, patch_size, num_layers, num_heads, hidden_dim, mlp_dim, num_classes=1000,
                     in_channels=3):
            super().__init__(image_size, patch_size, num_layers, num_heads, hidden_dim, mlp_dim, num_classes,
                             in_channels if channels is None else channels)
            for layer in self.encoder.layers:
                layer.ln_1.eps, layer.ln_2.eps = eps[0], eps[1]
                layer.mlp[2].p = layer.mlp[4].p = mlp_p
                layer.self_attention.dropout = attn_p
                layer.self_attention.batch_first = batch_first
            self.encoder.ln.eps = eps[2]

        def forward(self, x):
            if switch_to_eval:
                self.eval()
            out = super().forward(x)
            return out.squeeze() if squeeze else out
    del block
    return Variant


def test_vit_dropout_rates_fail_in_train_mode(solutions):
    for kw in (dict(mlp_p=0.1), dict(attn_p=0.1)):
        text = _rejected_without_a_wrong_cause(vit.check_ViT, _vit_variant(solutions, **kw))
        case_line = next(line for line in text.splitlines() if "Case " in line)
        assert case_line.endswith("train mode"), text


@pytest.mark.parametrize("eps, words", [((1e-5, 1e-5, 1e-5, 0), "in all LayerNorms;"),
                                        ((1e-6, 1e-6, 1e-5, 0), "in encoder.ln (after the last block);"),
                                        ((1e-5, 1e-5, 1e-6, 0), "in ln_1 and ln_2 of the blocks;")])
def test_vit_layer_norm_eps_named(solutions, eps, words):
    text = _failure(vit.check_ViT, _vit_variant(solutions, eps=eps))
    assert "LayerNorm eps left at PyTorch's default 1e-5" in _cause(text) and words in _cause(text), text
    assert "Case 3 of" in text and "where LayerNorm's eps matters" in text


def test_vit_eps_in_ln_1_only_names_no_wrong_cause(solutions):
    _rejected_without_a_wrong_cause(vit.check_ViT, _vit_variant(solutions, eps=(1e-5, 1e-6, 1e-6, 0)))


def test_vit_batch_first_named(solutions):
    assert "without batch_first=True" in _cause(_failure(vit.check_ViT, _vit_variant(solutions, batch_first=False)))


def test_vit_fixed_rgb_channels_rejected(solutions):
    text = _failure(vit.check_ViT, _vit_variant(solutions, channels=3))
    assert "raised RuntimeError" in text and "in_channels=1" in text and "in_channels input channels" in text


def test_vit_forward_switching_to_eval_breaks_the_rule(solutions):
    text = _failure(vit.check_ViT, _vit_variant(solutions, switch_to_eval=True))
    assert "breaks a rule" in text and "left in eval mode" in text and "train mode" in text


def test_vit_squeeze_fails_on_a_single_image(solutions):
    text = _failure(vit.check_ViT, _vit_variant(solutions, squeeze=True))
    assert "1 random" in text and _cause(text) == ""


def test_vit_train_case_leaves_global_rng_alone(solutions):
    """Dropout in the student's train-mode forward draws random numbers: not from the caller's generator."""
    state = torch.random.get_rng_state()
    with pytest.raises(CheckFailure):
        vit.check_ViT(_vit_variant(solutions, mlp_p=0.5), hidden=True)
    assert torch.equal(state, torch.random.get_rng_state())


def test_param_count_must_be_an_int():
    text = _failure(vit.check_vit_param_count, lambda **c: float(param_count_variant(**c)))
    assert "breaks a rule" in text and "as an int" in text and "the float 81226.0" in text
    vit.check_vit_param_count(lambda **c: np.int64(param_count_variant(**c)), hidden=True)


def test_param_count_compares_whole_numbers():
    text = _failure(vit.check_vit_param_count, lambda **c: param_count_variant(**c) + 1)
    assert "Yours 81227, expected 81226." in text and "Shape" not in text and "allowed" not in text


@pytest.mark.parametrize("fn", [
    lambda **c: param_count_variant(**c) - c["num_classes"],                            # head without bias
    lambda **c: param_count_variant(**{**c, "mlp_dim": 4 * c["hidden_dim"]}),           # mlp_dim taken as 4·D
    lambda **c: param_count_variant(**c) + c["hidden_dim"],                             # L + 2 position rows
])
def test_param_count_off_catalogue_names_no_cause(fn):
    _rejected_without_a_wrong_cause(vit.check_vit_param_count, fn)


def attention_naive_softmax(x, in_proj_weight, in_proj_bias, num_heads, shift="none"):
    N, T, D = x.shape
    q, k, _ = (x @ in_proj_weight.T + in_proj_bias).chunk(3, dim=-1)
    q, k = (a.reshape(N, T, num_heads, -1).transpose(1, 2) for a in (q, k))
    s = q @ k.transpose(-2, -1) / math.sqrt(D // num_heads)
    if shift == "global":
        s = s - s.max()
    elif shift == "row":
        s = s - s.amax(dim=-1, keepdim=True)
    e = torch.exp(s)
    return e / e.sum(dim=-1, keepdim=True)


@pytest.mark.parametrize("shift", ["none", "global"])
def test_attention_unstable_softmax_rejected_on_large_scores(shift):
    fn = lambda *a: attention_naive_softmax(*a, shift=shift)   # noqa: E731
    vit.check_attention_weights(fn)                              # the visible cases cannot tell
    text = _rejected_without_a_wrong_cause(vit.check_attention_weights, fn)
    assert "large scores" in text and "row's own maximum" in text


def test_attention_row_max_softmax_passes():
    vit.check_attention_weights(lambda *a: attention_naive_softmax(*a, shift="row"), hidden=True)


def test_hints_give_no_formula():
    """Beyond contract clause i: no hint spells out a whole count or the attention / embedding formula."""
    for exercise in vit.EXERCISES.values():
        texts = [exercise.hint, *exercise.exception_hints.values()] + [m.hint for m in exercise.mistakes]
        for text in texts:
            assert "D²" not in text and "·D·" not in text and "softmax(" not in text and ".reshape(" not in text, text


def attention_interleaved_heads(x, in_proj_weight, in_proj_bias, num_heads):
    """Feature f given to head f % h instead of f // d_k."""
    N, T, D = x.shape
    q, k, _ = (x @ in_proj_weight.T + in_proj_bias).chunk(3, dim=-1)
    q, k = (a.reshape(N, T, -1, num_heads).permute(0, 3, 1, 2) for a in (q, k))
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(D // num_heads), dim=-1)


def attention_scaled_after_softmax(x, in_proj_weight, in_proj_bias, num_heads):
    N, T, D = x.shape
    q, k, _ = (x @ in_proj_weight.T + in_proj_bias).chunk(3, dim=-1)
    q, k = (a.reshape(N, T, num_heads, -1).transpose(1, 2) for a in (q, k))
    return torch.softmax(q @ k.transpose(-2, -1), dim=-1) / math.sqrt(D // num_heads)


@pytest.mark.parametrize("fn", [attention_interleaved_heads, attention_scaled_after_softmax])
def test_attention_off_catalogue_names_no_cause(fn):
    _rejected_without_a_wrong_cause(vit.check_attention_weights, fn)
