"""Exercise 4: ``transformer_encoder_block(x, params, num_heads, norm_first=False, activation="relu",
mask=None) -> (B, T, d_model)``.

x (B, T, d_model); ``params`` holds the attention weights of exercise 2 plus W_1 (d_ff, d_model), b_1,
W_2 (d_model, d_ff), b_2, norm1_weight, norm1_bias, norm2_weight, norm2_bias. Compared with
``nn.TransformerEncoderLayer(batch_first=True, dropout=0)`` in eval mode, post-LN and pre-LN.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from utils.attention import mha
from utils.attention.cases import (
    LIBRARY_MHA,
    attention_params,
    key_keep,
    mask_tensor,
    params_tensors,
    student_mask,
)
from utils.checks.adapters import float64_tensor, returned_array
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.seeding import case_rng

# (B, T, d_model, num_heads, d_ff, norm_first, activation, causal, padding)
_SETTINGS = [
    (1, 3, 4, 2, 8, False, "relu", False, False),
    (2, 5, 8, 2, 16, False, "relu", False, True),
    (2, 5, 8, 2, 32, True, "gelu", False, False),
    (2, 6, 8, 4, 16, True, "gelu", True, False),
    (2, 5, 8, 2, 16, False, "gelu", False, True),
    (2, 5, 8, 2, 16, True, "relu", True, True),
]
_HIDDEN_SETTINGS = [
    (3, 7, 16, 4, 64, True, "gelu", True, True),
    (2, 6, 12, 3, 24, False, "relu", True, False),
]


def _inputs(number: int, setting, salt: str) -> dict:
    B, T, d, h, d_ff, norm_first, activation, causal, padding = setting
    rng = case_rng("transformer_encoder_block", number, salt)
    params = attention_params(rng, d)
    params.update({
        "W_1": rng.normal(scale=1 / math.sqrt(d), size=(d_ff, d)), "b_1": rng.normal(scale=0.1, size=d_ff),
        "W_2": rng.normal(scale=1 / math.sqrt(d_ff), size=(d, d_ff)), "b_2": rng.normal(scale=0.1, size=d),
        "norm1_weight": 1 + 0.3 * rng.normal(size=d), "norm1_bias": 0.2 * rng.normal(size=d),
        "norm2_weight": 1 + 0.3 * rng.normal(size=d), "norm2_bias": 0.2 * rng.normal(size=d),
    })
    keep_keys = None
    if padding:
        lengths = rng.integers(max(1, T // 2), T, size=B)
        lengths[-1] = T
        keep_keys = key_keep(lengths, T)
    x = 1.5 * rng.normal(size=(B, T, d)) + 0.5
    return {"x": x, "params": params, "num_heads": h, "norm_first": norm_first, "activation": activation,
            "causal": causal, "key_keep": keep_keys, "mask": student_mask(causal, keep_keys, T, T)}


def _describe(setting) -> str:
    B, T, d, h, d_ff, norm_first, activation, causal, padding = setting
    ln = "pre-LN (norm_first=True)" if norm_first else "post-LN (norm_first=False)"
    masks = [m for m, on in (("causal mask", causal), ("padding mask", padding)) if on]
    return (f"B={B}, T={T}, d_model={d}, num_heads={h}, d_ff={d_ff}, {ln}, activation='{activation}', "
            f"{' and '.join(masks) if masks else 'no mask'}")


def _describe_index(index):
    return f"output[b={index[0]}, t={index[1]}, channel {index[2]}]"


def _cases(hidden: bool) -> list[Case]:
    return [Case(_describe(s), _inputs(n, s, salt), _describe_index)
            for n, (s, salt) in enumerate(visible_then_hidden(_SETTINGS, _HIDDEN_SETTINGS, hidden), start=1)]


def torch_encoder_layer(inputs) -> np.ndarray:
    """``nn.TransformerEncoderLayer(batch_first=True, dropout=0)`` in eval mode with the case's weights."""
    p = params_tensors(inputs["params"])
    d = p["W_q"].shape[0]
    d_ff = p["W_1"].shape[0]
    with torch.random.fork_rng(devices=[]):
        layer = torch.nn.TransformerEncoderLayer(
            d, inputs["num_heads"], dim_feedforward=d_ff, dropout=0.0, activation=inputs["activation"],
            batch_first=True, norm_first=inputs["norm_first"], dtype=torch.float64)
    layer.load_state_dict({
        "self_attn.in_proj_weight": torch.cat([p["W_q"], p["W_k"], p["W_v"]]),
        "self_attn.in_proj_bias": torch.cat([p["b_q"], p["b_k"], p["b_v"]]),
        "self_attn.out_proj.weight": p["W_o"], "self_attn.out_proj.bias": p["b_o"],
        "linear1.weight": p["W_1"], "linear1.bias": p["b_1"], "linear2.weight": p["W_2"], "linear2.bias": p["b_2"],
        "norm1.weight": p["norm1_weight"], "norm1.bias": p["norm1_bias"],
        "norm2.weight": p["norm2_weight"], "norm2.bias": p["norm2_bias"]})
    layer.eval()
    T = inputs["x"].shape[1]
    src_mask = ~torch.tril(torch.ones(T, T, dtype=torch.bool)) if inputs["causal"] else None
    kpm = None if inputs["key_keep"] is None else ~torch.from_numpy(inputs["key_keep"])
    # Gradients stay enabled on purpose: in eval mode without autograd torch takes a "fast path" that
    # returns zeros at padded positions; with autograd it runs the plain computation.
    with torch.enable_grad():
        out = layer(float64_tensor(inputs["x"]), src_mask=src_mask, src_key_padding_mask=kpm)
    return out.detach().numpy()


_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "gelu_tanh": lambda z: F.gelu(z, approximate="tanh")}


def block_variant(x: torch.Tensor, p: dict, num_heads: int, norm_first: bool, activation: str,
                  mask: torch.Tensor | None, *, force_norm_first: bool | None = None, shared_norm: bool = False,
                  act: str | None = None, residual_from_normed: bool = False,
                  final_norm: bool = False) -> torch.Tensor:
    """The encoder block (float64 tensors, x (B, T, d_model)) with the known mistakes as options.

    ``force_norm_first`` overrides ``norm_first``; ``shared_norm``: norm1 for both sublayers; ``act``
    overrides ``activation`` ("relu", "gelu", "gelu_tanh"); ``residual_from_normed``: pre-LN with the
    residual taken from the normalised input; ``final_norm``: a LayerNorm after the pre-LN block.
    """
    d = x.shape[-1]
    if force_norm_first is not None:
        norm_first = force_norm_first
    second_norm = "norm1" if shared_norm else "norm2"

    def ln(y, name):
        return F.layer_norm(y, (d,), p[f"{name}_weight"], p[f"{name}_bias"], eps=1e-5)

    def sa(y):
        return mha.multi_head_attention(y, y, y, p, num_heads, mask)[0]

    def ff(y):
        hidden = _ACTIVATIONS[act or activation](y @ p["W_1"].T + p["b_1"])
        return hidden @ p["W_2"].T + p["b_2"]

    if norm_first:
        if residual_from_normed:
            y = ln(x, "norm1")
            x = y + sa(y)
            y = ln(x, second_norm)
            x = y + ff(y)
        else:
            x = x + sa(ln(x, "norm1"))
            x = x + ff(ln(x, second_norm))
        if final_norm:
            x = ln(x, second_norm)
        return x
    x = ln(x + sa(x), "norm1")
    return ln(x + ff(x), second_norm)


def _variant(**switches):
    def compute(inputs):
        return block_variant(float64_tensor(inputs["x"]), params_tensors(inputs["params"]), inputs["num_heads"],
                             inputs["norm_first"], inputs["activation"], mask_tensor(inputs["mask"]),
                             **switches).numpy()
    return compute


def _only_if(flag_name: str, value, compute):
    """A mistake that applies only to the cases with ``inputs[flag_name] == value``."""
    def guarded(inputs):
        if inputs[flag_name] != value:
            raise ValueError("not applicable")
        return compute(inputs)
    return guarded


MISTAKES = [
    Mistake("post-LN where pre-LN was asked: with norm_first=True the LayerNorm comes before each sublayer",
            "pre-LN: x = x + attn(norm1(x)); x = x + ffn(norm2(x)) — no LayerNorm after the residual sums.",
            _only_if("norm_first", True, _variant(force_norm_first=False))),
    Mistake("pre-LN where post-LN was asked: with norm_first=False the LayerNorm comes after each residual sum",
            "post-LN: x = norm1(x + attn(x)); x = norm2(x + ffn(x)).",
            _only_if("norm_first", False, _variant(force_norm_first=True))),
    Mistake("one LayerNorm (norm1) used for both sublayers: the feed-forward sublayer has its own norm2",
            "use norm1_weight/norm1_bias around the attention and norm2_weight/norm2_bias around the feed-forward.",
            _variant(shared_norm=True)),
    Mistake("ReLU used where activation='gelu' was asked", "apply F.gelu (exact, erf-based) when activation == 'gelu'.",
            _only_if("activation", "gelu", _variant(act="relu"))),
    Mistake("GELU used where activation='relu' was asked", "apply F.relu when activation == 'relu'.",
            _only_if("activation", "relu", _variant(act="gelu"))),
    Mistake("the tanh approximation of GELU was used; nn.TransformerEncoderLayer uses the exact (erf) GELU",
            "use F.gelu(h) (approximate='none'), not approximate='tanh'.",
            _only_if("activation", "gelu", _variant(act="gelu_tanh"))),
    Mistake("pre-LN residual taken from the normalised input (x = norm1(x); x = x + attn(x)): the residual "
            "path must carry the un-normalised x",
            "x = x + attn(norm1(x)); x = x + ffn(norm2(x)).",
            _only_if("norm_first", True, _variant(residual_from_normed=True))),
    Mistake("an extra LayerNorm after the pre-LN block: nn.TransformerEncoderLayer(norm_first=True) ends with "
            "the residual sum",
            "the final LayerNorm of a pre-LN network belongs to the whole encoder stack, not to each block.",
            _only_if("norm_first", True, _variant(final_norm=True))),
]

BLOCK = Exercise(
    function="transformer_encoder_block",
    forbidden=LIBRARY_MHA + ("torch.nn.TransformerEncoderLayer",),
    reference_name="torch.nn.TransformerEncoderLayer(batch_first=True, dropout=0) in eval mode with your weights",
    make_cases=_cases,
    reference=torch_encoder_layer,
    call=lambda fn, inputs: returned_array(fn(float64_tensor(inputs["x"]), params_tensors(inputs["params"]),
                                     inputs["num_heads"], norm_first=inputs["norm_first"],
                                     activation=inputs["activation"], mask=mask_tensor(inputs["mask"]))),
    mistakes=MISTAKES,
    hint="post-LN: x = norm1(x + attn(x)); x = norm2(x + ffn(x)). pre-LN: x = x + attn(norm1(x)); "
         "x = x + ffn(norm2(x)). ffn(y) = act(y @ W_1.T + b_1) @ W_2.T + b_2; LayerNorm with eps=1e-5. "
         "If multi_head_attention does not pass its own check yet, fix it first.",
)


def check_transformer_encoder_block(transformer_encoder_block, hidden: bool = False) -> None:
    """Check the encoder block against ``nn.TransformerEncoderLayer`` (post-LN and pre-LN, ReLU and GELU)."""
    show(run_check(BLOCK, transformer_encoder_block, hidden))
