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
from utils.checks.characterise import Layout
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.seeding import case_rng

# (N, T, D, num_heads, large): large scores beyond ±709, where exp overflows in float64
_SETTINGS = [(1, 3, 2, 1, False), (2, 5, 8, 2, False), (2, 17, 16, 4, False)]
_HIDDEN_SETTINGS = [(3, 10, 12, 3, False), (1, 7, 6, 1, False), (2, 9, 32, 8, False), (2, 6, 4, 2, True)]

# The scaling mistakes, shared with the ViT model's.
NO_SCALING = "no √d_k scaling: the attention scores q·k were not divided by √d_k"
NO_SCALING_HINT = ("the scores of each head are scaled down by √d_k, the square root of the size of one head "
                   "(d_k = hidden_dim // num_heads), before the softmax; section 7 says why "
                   "(nn.MultiheadAttention does this for you).")
SQRT_D = "the attention scores were divided by √hidden_dim instead of √d_k (d_k = hidden_dim / num_heads)"
SQRT_D_HINT = ("the divisor is the square root of the size of one head, d_k = hidden_dim // num_heads, "
               "not of the whole hidden_dim.")
DK = "the attention scores were divided by d_k instead of √d_k"
DK_HINT = "the divisor is the square root of d_k, not d_k itself."


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


def scores(x, W, b, num_heads) -> np.ndarray:
    """The scaled scores (N, h, T, T) before the softmax, in float64."""
    x = np.asarray(x, dtype=np.float64)
    N, T, D = x.shape
    d_k = D // num_heads
    q, k = (x @ W[i * D:(i + 1) * D].T + b[i * D:(i + 1) * D] for i in (0, 1))
    q, k = (a.reshape(N, T, num_heads, d_k).transpose(0, 2, 1, 3) for a in (q, k))
    return q @ k.transpose(0, 1, 3, 2) / np.sqrt(d_k)


def _extreme_rows(case) -> bool:
    """Scores beyond ±709 with row maxima of both signs, 800 or more apart within one head's matrix."""
    s = scores(case.inputs["x"], case.inputs["in_proj_weight"], case.inputs["in_proj_bias"], case.inputs["num_heads"])
    row_max = s.max(axis=-1)
    return bool(np.abs(s).max() > 709 and (row_max > 0).any() and (row_max < 0).any()
                and (np.ptp(row_max, axis=-1) > 800).any())


def _describe_index(index):
    return (f"[{index[0]}, {index[1]}, {index[2]}, {index[3]}] = sequence {index[0]}, "
            f"head {index[1]}, query token {index[2]}, key token {index[3]}")


def _cases(hidden: bool) -> list[Case]:
    cases = []
    settings = visible_then_hidden(_SETTINGS, _HIDDEN_SETTINGS, hidden)
    for number, ((N, T, D, h, large), salt) in enumerate(settings, start=1):
        rng = case_rng("attention_weights", number, salt)
        if number == 1 and not salt:
            x = np.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
            W = np.vstack([np.eye(D)] * 3)
            b = np.zeros(3 * D)
            text = ("N=1, T=3 tokens (1, 0), (0, 1), (1, 1), D=2, 1 head, W_q = W_k = W_v = I, no bias: "
                    "weights = softmax(x xᵀ / √2) row by row (check by hand)")
        elif large:   # long queries against keys that all lean one way: rows of very different maxima
            x = rng.normal(size=(N, T, D))
            W = rng.normal(size=(3 * D, D))
            W[:D] *= 25
            W[D:2 * D] *= 2
            b = 0.5 * rng.normal(size=3 * D)
            b[D:2 * D] = 30.0
            text = (f"N={N}, T={T} tokens, D={D}, {h} heads (d_k={D // h}), large scores: up to ±"
                    f"{np.abs(scores(x, W, b, h)).max():.0f}, row maxima of both signs")
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
        Mistake(DK, DK_HINT, _variant(scale="dk")),
        Mistake("softmax over the query axis (dim=-2): each column of the weights sums to 1 instead of each row",
                "normalise over the keys, the last axis: for each query, its row of weights sums to 1.",
                _variant(dim=-2)),
        Mistake("queries and keys swapped (the result is the transpose of the scores before the softmax)",
                "in_proj_weight stacks [W_q; W_k; W_v]: rows 0…D−1 give q, rows D…2D−1 give k.",
                _variant(swap_qk=True)),
        Mistake("heads split in the wrong order: the projected N×T×D tensor was reshaped straight to N×h×T×d_k",
                "feature f of a token belongs to head f // d_k of that same token: split the feature axis "
                "into (head, d_k) first, and only then move the head axis in front of the token axis.",
                _variant(split="no_transpose")),
        Mistake("the in_proj bias was left out", "in_proj_bias belongs to the projection: q gets its first D "
                "entries and k the next D.", _variant(bias=False)),
        Mistake("the weights were averaged over the heads: return one T×T matrix per head, N×h×T×T in all",
                "do not take the mean over the head axis; the figure below does that itself.",
                _variant(average=True)),
    ],
    hint="go through section 7 step by step: q and k come from the first two blocks of rows of the packed "
         "projection, with their bias; each head takes its own d_k consecutive features; each head's scores "
         "are scaled and turned into weights over the keys. Compare one head with nn.MultiheadAttention("
         "..., average_attn_weights=False) on a small input. If only the case with large scores fails, "
         "your softmax overflows: subtract each row's own maximum before the exponential.",
    exception_hints={"RuntimeError": "check the shapes: each head has d_k = D // num_heads features, and the "
                                     "scores of one head are (T, T): every query against every key, so the "
                                     "keys' last two axes are swapped before the product."},
    section="Exercise 7",
    layout=Layout(axes=("sequence", "head", "query token", "key token")),
    covers={
        "a batch of 2 or more sequences": lambda case: case.inputs["x"].shape[0] >= 2,
        "a single head": lambda case: case.inputs["num_heads"] == 1,
        "3 or more heads": lambda case: case.inputs["num_heads"] >= 3,
        "heads of 2 or more features (d_k ≥ 2)":
            lambda case: case.inputs["x"].shape[2] // case.inputs["num_heads"] >= 2 and case.inputs["num_heads"] >= 2,
        "more tokens than features (T > D)": lambda case: case.inputs["x"].shape[1] > case.inputs["x"].shape[2],
        "fewer tokens than features (T < D)": lambda case: case.inputs["x"].shape[1] < case.inputs["x"].shape[2],
        "a non-zero in_proj bias": lambda case: bool(np.any(case.inputs["in_proj_bias"] != 0)),
        "scores beyond ±709, row maxima of both signs and 800 apart": _extreme_rows,
    },
)


def check_attention_weights(attention_weights, hidden: bool = False) -> None:
    """Check ``attention_weights(x, in_proj_weight, in_proj_bias, num_heads)`` against nn.MultiheadAttention."""
    show(run_check(ATTENTION_WEIGHTS, attention_weights, hidden))
