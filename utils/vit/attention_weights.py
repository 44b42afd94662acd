"""Exercise 7: ``attention_weights(x, in_proj_weight, in_proj_bias, num_heads) -> (N, num_heads, T, T)``.

x (N, T, D); ``in_proj_weight`` (3D, D) stacks W_q, W_k, W_v as in ``nn.MultiheadAttention``. The weights
softmax(Q_h K_hᵀ / √d_k) of each head, compared with ``nn.MultiheadAttention``'s
``need_weights=True, average_attn_weights=False`` output.
"""
from __future__ import annotations

import numpy as np
import torch

from utils.attention import mha
from utils.checks.adapters import float64_array, float64_tensor, returned_array
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.seeding import case_rng

# (N, T, D, num_heads)
_SETTINGS = [(1, 3, 2, 1), (2, 5, 8, 2), (2, 17, 16, 4)]
_HIDDEN_SETTINGS = [(3, 10, 12, 3), (1, 7, 6, 1), (2, 9, 32, 8)]

# The scaling mistakes, shared with the ViT model's.
NO_SCALING = "no √d_k scaling: the attention scores q·k were not divided by √d_k"
NO_SCALING_HINT = ("softmax(q kᵀ / √d_k) with d_k = hidden_dim // num_heads, the size of one head "
                   "(nn.MultiheadAttention does this for you).")
SQRT_D = "the attention scores were divided by √hidden_dim instead of √d_k (d_k = hidden_dim / num_heads)"
SQRT_D_HINT = "each head has d_k = hidden_dim // num_heads features; divide its scores by math.sqrt(d_k)."


def score_divisor(scale: str) -> str:
    """The ViT checks' name of what the scores are divided by ("sqrt_dk", "none", "sqrt_D", "dk"; D is
    hidden_dim) as :func:`utils.attention.mha.score_divisor` names it."""
    return "sqrt_d_model" if scale == "sqrt_D" else scale


def torch_attention_weights(x, in_proj_weight, in_proj_bias, num_heads) -> np.ndarray:
    """Per-head weights of ``nn.MultiheadAttention`` (float64) with the case's in_proj parameters."""
    x = float64_tensor(x)
    D = x.shape[-1]
    with torch.random.fork_rng(devices=[]):
        module = torch.nn.MultiheadAttention(D, num_heads, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        module.in_proj_weight.copy_(float64_tensor(in_proj_weight))
        module.in_proj_bias.copy_(float64_tensor(in_proj_bias))
        _, weights = module(x, x, x, need_weights=True, average_attn_weights=False)
    return float64_array(weights)


def attention_weights_variant(x, in_proj_weight, in_proj_bias, num_heads, *, scale="sqrt_dk", dim=-1,
                              split="ok", swap_qk=False, bias=True, average=False) -> np.ndarray:
    """The attention weights (N, h, T, T), from :func:`utils.attention.mha.multi_head_attention` with
    the known mistakes: ``scale`` (see :func:`score_divisor`), the softmax axis ``dim``, ``split``
    "no_transpose" (heads reshaped straight to (N, h, T, d_k)), ``swap_qk``, ``bias=False`` (no in_proj
    bias) and ``average`` (the mean over the heads, (N, T, T))."""
    x = float64_tensor(x)
    params = mha.projections_from_packed(float64_tensor(in_proj_weight), float64_tensor(in_proj_bias))
    _, weights = mha.multi_head_attention(x, x, x, params, num_heads, divisor=score_divisor(scale), dim=dim,
                                          split_transpose=(split == "ok"), swap_qk=swap_qk, in_bias=bias,
                                          out_proj=False)
    return float64_array(weights.mean(dim=1) if average else weights)


def _describe_index(index):
    return (f"[{index[0]}, {index[1]}, {index[2]}, {index[3]}] = sequence {index[0]}, "
            f"head {index[1]}, query token {index[2]}, key token {index[3]}")


def _cases(hidden: bool) -> list[Case]:
    cases = []
    settings = visible_then_hidden(_SETTINGS, _HIDDEN_SETTINGS, hidden)
    for number, ((N, T, D, h), salt) in enumerate(settings, start=1):
        rng = case_rng("attention_weights", number, salt)
        if number == 1 and not salt:
            x = np.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
            W = np.vstack([np.eye(D)] * 3)
            b = np.zeros(3 * D)
            text = ("N=1, T=3 tokens (1, 0), (0, 1), (1, 1), D=2, 1 head, W_q = W_k = W_v = I, no bias: "
                    "weights = softmax(x xᵀ / √2) row by row (check by hand)")
        else:
            x = rng.normal(size=(N, T, D))
            W = rng.normal(size=(3 * D, D)) / np.sqrt(D) * 1.5
            b = 0.5 * rng.normal(size=3 * D)
            text = f"N={N}, T={T} tokens, D={D}, {h} head{'s' if h > 1 else ''} (d_k={D // h}), random values"
        cases.append(Case(text, {"x": x, "in_proj_weight": W, "in_proj_bias": b, "num_heads": h}, _describe_index))
    return cases


def _variant(**kw):
    return lambda inputs: attention_weights_variant(inputs["x"], inputs["in_proj_weight"], inputs["in_proj_bias"],
                                                    inputs["num_heads"], **kw)


ATTENTION_WEIGHTS = Exercise(
    function="attention_weights",
    reference_name="nn.MultiheadAttention's weights (need_weights=True, average_attn_weights=False)",
    make_cases=_cases,
    reference=lambda inputs: torch_attention_weights(**inputs),
    call=lambda fn, inputs: returned_array(fn(float64_tensor(inputs["x"]), float64_tensor(inputs["in_proj_weight"]),
                                     float64_tensor(inputs["in_proj_bias"]), inputs["num_heads"])),
    mistakes=[
        Mistake(NO_SCALING, NO_SCALING_HINT, _variant(scale="none")),
        Mistake(SQRT_D, SQRT_D_HINT, _variant(scale="sqrt_D")),
        Mistake("the scores were divided by d_k instead of √d_k", NO_SCALING_HINT, _variant(scale="dk")),
        Mistake("softmax over the query axis (dim=-2): each column of the weights sums to 1 instead of each row",
                "softmax(..., dim=-1): for each query, the weights over the keys sum to 1.",
                _variant(dim=-2)),
        Mistake("queries and keys swapped (the result is the transpose of the scores before the softmax)",
                "in_proj_weight stacks [W_q; W_k; W_v]: rows 0…D−1 give q, rows D…2D−1 give k.",
                _variant(swap_qk=True)),
        Mistake("heads split in the wrong order: (N, T, D) was reshaped straight to (N, h, T, d_k)",
                "reshape to (N, T, h, d_k) first, then transpose(1, 2) to (N, h, T, d_k).",
                _variant(split="no_transpose")),
        Mistake("the in_proj bias was left out", "q = x @ W_q.T + b_q with b_q = in_proj_bias[:D], and the same "
                "for k.", _variant(bias=False)),
        Mistake("the weights were averaged over the heads: return one (T, T) matrix per head, shape (N, h, T, T)",
                "do not take the mean over the head axis; the figure below does that itself.",
                _variant(average=True)),
    ],
    hint="q, k = (x @ in_proj_weight.T + in_proj_bias).chunk(3, dim=-1)[:2]; split each into heads "
         "(N, T, h, d_k) → (N, h, T, d_k); weights = softmax(q kᵀ / √d_k, dim=-1).",
    exception_hints={"RuntimeError": "check the shapes: d_k = D // num_heads, and q kᵀ needs k.transpose(-2, -1)."},
)


def check_attention_weights(attention_weights, hidden: bool = False) -> None:
    """Check ``attention_weights(x, in_proj_weight, in_proj_bias, num_heads)`` against nn.MultiheadAttention."""
    show(run_check(ATTENTION_WEIGHTS, attention_weights, hidden))
