"""Exercise 1: ``scaled_dot_product_attention(q, k, v, mask=None) -> (output, weights)``.

q (..., T_q, d_k), k (..., T_k, d_k), v (..., T_k, d_v) -> output (..., T_q, d_v), weights (..., T_q, T_k);
``mask`` is a boolean keep-mask broadcastable to (..., T_q, T_k). The check compares output and weights
packed on the last axis, (..., T_q, d_v + T_k), with ``F.scaled_dot_product_attention`` and
softmax(q·kᵀ/√d_k).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from utils.attention.cases import LIBRARY_MHA, key_keep, mask_tensor, student_mask
from utils.attention.mha import attend
from utils.checks.adapters import float64_tensor
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.seeding import case_rng

# (batch shape, T_q, T_k, d_k, d_v, mask kind, score scale)
_SETTINGS = [
    ((2, 3), 4, 4, 5, 3, "none", "normal"),
    ((2, 2), 5, 5, 4, 4, "causal", "normal"),
    ((2, 2), 3, 6, 4, 2, "padding", "normal"),
    ((2, 2), 5, 5, 8, 3, "causal+padding", "normal"),
    ((1, 2), 6, 6, 4, 3, "none", "large"),
]
_HIDDEN_SETTINGS = [
    ((3, 4), 7, 7, 6, 5, "causal+padding", "normal"),
    ((3,), 6, 6, 5, 4, "random", "normal"),
    ((2, 3), 6, 6, 4, 2, "causal", "large"),
    ((2, 2), 1, 5, 3, 3, "padding", "normal"),
]

_MASK_WORDS = {
    "none": "no mask",
    "causal": "causal mask of shape (T, T)",
    "padding": "padding mask of shape (B, 1, 1, T_k) (some keys are padding)",
    "causal+padding": "causal and padding mask combined, shape (B, 1, T, T)",
    "random": "random keep-mask of shape (B, T_q, T_k), the diagonal always kept",
}


def _inputs(number: int, setting, salt: str) -> dict:
    batch, T_q, T_k, d_k, d_v, mask_kind, scale = setting
    rng = case_rng("scaled_dot_product_attention", number, salt)
    q = rng.normal(size=batch + (T_q, d_k))
    k = rng.normal(size=batch + (T_k, d_k))
    v = rng.normal(size=batch + (T_k, d_v))
    if scale == "large":
        # a shared direction of length ~45 in q and k: every score is about 1e3, and the scores of a
        # row still differ by a few units, so the weights are far from one-hot.
        base = math.sqrt(1000 * math.sqrt(d_k))
        q[..., 0] = base + 0.02 * rng.normal(size=q.shape[:-1])
        k[..., 0] = base + 0.02 * rng.normal(size=k.shape[:-1])
    B = batch[0]
    lengths = rng.integers(max(1, T_k // 2), T_k + 1, size=B)
    lengths[0] = max(1, T_k - 2)
    if mask_kind == "none":
        mask = None
    elif mask_kind == "causal":
        mask = np.tril(np.ones((T_q, T_k), dtype=bool))
    elif mask_kind == "padding":
        mask = student_mask(False, key_keep(lengths, T_k), T_q, T_k)
    elif mask_kind == "causal+padding":
        mask = student_mask(True, key_keep(lengths, T_k), T_q, T_k)
    else:
        mask = rng.random((B, T_q, T_k)) < 0.6
        mask |= np.eye(T_q, T_k, dtype=bool)[None]
    if mask is not None and len(batch) == 1 and mask.ndim == 4:
        mask = mask[:, 0]
    return {"q": q, "k": k, "v": v, "mask": mask}


def _describe_index(d_v: int):
    def describe(index):
        *lead, i, j = index
        prefix = ", ".join(map(str, lead))
        prefix = prefix + ", " if prefix else ""
        if j < d_v:
            return f"output[{prefix}{i}, {j}]"
        return f"weights[{prefix}{i}, {j - d_v}] (query {i}, key {j - d_v})"
    return describe


def _hand_case() -> Case:
    # d_k = 4, so √d_k = 2: the scores of query 0 are (0, 2, 4)/2 = (0, 1, 2).
    q = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]])
    k = np.array([[0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0], [2.0, 2.0, 0.0, 0.0]])
    v = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    return Case("hand-checkable: 2 queries, 3 keys, d_k = 4 (so √d_k = 2), no batch axes, no mask; "
                "the scores of query 0 are (0, 1, 2), those of query 1 all 0",
                {"q": q, "k": k, "v": v, "mask": None}, _describe_index(2))


def _describe(setting) -> str:
    batch, T_q, T_k, d_k, d_v, mask_kind, scale = setting
    shape = "×".join(map(str, batch))
    text = f"batch axes {shape}, T_q={T_q}, T_k={T_k}, d_k={d_k}, d_v={d_v}, {_MASK_WORDS[mask_kind]}"
    if scale == "large":
        text += (", scores of order 1e3 (exp(1000) overflows to inf: a softmax that does not subtract "
                 "the row maximum first gives NaN)")
    return text


def _cases(hidden: bool) -> list[Case]:
    settings = visible_then_hidden(_SETTINGS, _HIDDEN_SETTINGS, hidden)
    return [_hand_case()] + [Case(_describe(setting), _inputs(number, setting, salt), _describe_index(setting[4]))
                             for number, (setting, salt) in enumerate(settings, start=2)]


def _pack(output, weights) -> np.ndarray:
    """output (..., T_q, d_v) and weights (..., T_q, T_k) as one array (..., T_q, d_v + T_k)."""
    return np.concatenate([output, weights], axis=-1)


def torch_sdpa(q, k, v, mask) -> np.ndarray:
    """``F.scaled_dot_product_attention`` and the explicit softmax weights, packed on the last axis."""
    q, k, v, mask = float64_tensor(q), float64_tensor(k), float64_tensor(v), mask_tensor(mask)
    with torch.no_grad():
        output = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
    return _pack(output.numpy(), weights.numpy())


def _as_array(value, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().to(torch.float64).numpy()
    array = np.asarray(value)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.floating)
                                     or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{what} should be a tensor of numbers, got {type(value).__name__}")
    return array.astype(np.float64)


def _call(fn, inputs):
    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    result = fn(float64_tensor(q), float64_tensor(k), float64_tensor(v), mask=mask_tensor(inputs["mask"]))
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise TypeError("scaled_dot_product_attention must return a pair (output, weights), "
                        f"got {type(result).__name__}")
    output = _as_array(result[0], "output")
    weights = _as_array(result[1], "weights")
    want_out = q.shape[:-1] + v.shape[-1:]
    want_w = q.shape[:-1] + k.shape[-2:-1]
    if output.shape != want_out or weights.shape != want_w:
        raise ValueError(f"output has shape {output.shape} and weights {weights.shape}; expected output "
                         f"{want_out} = (..., T_q, d_v) and weights {want_w} = (..., T_q, T_k)")
    return _pack(output, weights)


def _variant(**switches):
    """The packed output of :func:`~utils.attention.mha.attend` with mistake switches."""
    def compute(inputs):
        output, weights = attend(float64_tensor(inputs["q"]), float64_tensor(inputs["k"]),
                                 float64_tensor(inputs["v"]), mask_tensor(inputs["mask"]), **switches)
        return _pack(output.numpy(), weights.numpy())
    return compute


def _divided_by_dk(inputs):
    return _variant(divisor=inputs["q"].shape[-1])(inputs)


MISTAKES = [
    Mistake("no √d_k scaling: the scores q·k were not divided by √d_k",
            "scores = q @ k.transpose(-2, -1) / math.sqrt(d_k), with d_k = q.shape[-1].",
            _variant(divisor=1.0)),
    Mistake("the scores were divided by d_k instead of √d_k",
            "divide by math.sqrt(d_k): the variance of q·k grows like d_k, its spread like √d_k.",
            _divided_by_dk),
    Mistake("softmax over the query axis (dim=-2): each column of the weights sums to 1 instead of each row",
            "every query (a row) gets a distribution over the keys: torch.softmax(scores, dim=-1).",
            _variant(dim=-2)),
    Mistake("the mask works the wrong way round (added with the wrong sign): positions where mask is True "
            "were suppressed, but True means keep",
            "scores = scores.masked_fill(~mask, float('-inf')) — or add -inf (a large negative number) "
            "where mask is False.",
            _variant(mask_mode="inverted")),
    Mistake("the mask was applied after the softmax: masked weights are zero but the rows no longer sum to 1",
            "mask the scores before the softmax, so the kept weights are renormalised.",
            _variant(mask_mode="after_softmax")),
    Mistake("the mask was ignored",
            "when mask is not None, set the scores where mask is False to -inf before the softmax.",
            _variant(mask_mode="ignored")),
]

SDPA = Exercise(
    function="scaled_dot_product_attention",
    forbidden=("torch.nn.functional.scaled_dot_product_attention",) + LIBRARY_MHA,
    reference_name="torch.nn.functional.scaled_dot_product_attention (output) and softmax(q·kᵀ/√d_k) (weights)",
    make_cases=_cases,
    reference=lambda inputs: torch_sdpa(inputs["q"], inputs["k"], inputs["v"], inputs["mask"]),
    call=_call,
    mistakes=MISTAKES,
    hint="weights = softmax(q·kᵀ/√d_k with -inf where mask is False, over the last axis), "
         "computed stably (subtract each row's maximum, or use torch.softmax); output = weights @ v.",
    exception_hints={"RuntimeError": "use k.transpose(-2, -1) (not .T) so that batch and head axes stay in place; "
                                     "the mask broadcasts against the scores (..., T_q, T_k)."},
)


def check_scaled_dot_product_attention(scaled_dot_product_attention, hidden: bool = False) -> None:
    """Check ``scaled_dot_product_attention(q, k, v, mask=None) -> (output, weights)``."""
    show(run_check(SDPA, scaled_dot_product_attention, hidden))
