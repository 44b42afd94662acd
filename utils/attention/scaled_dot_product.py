"""Exercise 1: ``scaled_dot_product_attention(q, k, v, mask=None) -> (output, weights)``.

q (..., T_q, d_k), k (..., T_k, d_k), v (..., T_k, d_v) -> output (..., T_q, d_v), weights (..., T_q, T_k);
``mask`` is a boolean keep-mask broadcastable to (..., T_q, T_k). The check compares output and weights,
each of its own shape (checked part by part), packed into one flat array of values, with
``F.scaled_dot_product_attention`` and softmax(q·kᵀ/√d_k); an entry is reported as ``output[...]`` or
``weights[...]``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from utils.attention.cases import LIBRARY_MHA, key_keep, mask_tensor, student_mask
from utils.attention.mha import attend
from utils.checks.adapters import float64_tensor
from utils.checks.characterise import Layout
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.rules import kept_unchanged, require_shape
from utils.checks.seeding import case_rng

# (batch shape, T_q, T_k, d_k, d_v, mask kind, score scale). Score scales: "normal"; "large": every score
# about +1e3; "signed": scores about +1e3 in some rows and −1e3 in others (one maximum for the whole tensor
# leaves the negative rows at exp(−2000) = 0); "blocked_high": about ±1e3, where the first keys, which the
# first queries keep, score −1e3 and the later, blocked ones +1e3 (a maximum taken before masking fails).
_SETTINGS = [
    ((2, 3), 4, 4, 5, 3, "none", "normal"),
    ((2, 2), 5, 5, 4, 4, "causal", "normal"),
    ((2, 2), 3, 6, 4, 2, "padding", "normal"),
    ((2, 2), 5, 5, 8, 3, "causal+padding", "normal"),
    ((1, 2), 6, 6, 4, 3, "none", "large"),
    ((2,), 5, 4, 4, 3, "none", "signed"),
]
_HIDDEN_SETTINGS = [
    ((3, 4), 7, 7, 6, 5, "causal+padding", "normal"),
    ((3,), 6, 6, 5, 4, "random", "normal"),
    ((2, 3), 6, 6, 4, 2, "causal", "large"),
    ((2, 2), 1, 5, 3, 3, "padding", "normal"),
    ((2, 2), 6, 6, 4, 3, "causal", "blocked_high"),
    ((3,), 4, 7, 6, 2, "padding", "signed"),
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
    if scale != "normal":
        # a shared direction of length ~45 in q and k: every score is about ±1e3, and the scores of a
        # row still differ by a few units, so the weights are far from one-hot.
        base = math.sqrt(1000 * math.sqrt(d_k))
        q_sign = np.ones(T_q)
        k_sign = np.ones(T_k)
        if scale == "signed":   # rows alternate between +1e3 and −1e3, the first row positive
            q_sign = np.where(np.arange(T_q) % 2 == 0, 1.0, -1.0)
        elif scale == "blocked_high":   # keys 0..T_k/2−1 score −1e3, the later keys +1e3
            k_sign = np.where(np.arange(T_k) < T_k // 2, -1.0, 1.0)
        q[..., 0] = q_sign * (base + 0.02 * rng.normal(size=q.shape[:-1]))
        k[..., 0] = k_sign * (base + 0.02 * rng.normal(size=k.shape[:-1]))
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


def _describe_index(inputs: dict):
    """How to name entry i of the packed result: output[...] or weights[...] (query i, key j)."""
    out_shape = inputs["q"].shape[:-1] + inputs["v"].shape[-1:]
    w_shape = inputs["q"].shape[:-1] + inputs["k"].shape[-2:-1]
    n_out = int(np.prod(out_shape))

    def describe(index):
        flat = int(index[0])
        if flat < n_out:
            return f"output[{', '.join(map(str, np.unravel_index(flat, out_shape)))}]"
        where = tuple(int(i) for i in np.unravel_index(flat - n_out, w_shape))
        return f"weights[{', '.join(map(str, where))}] (query {where[-2]}, key {where[-1]})"
    return describe


def _hand_case() -> Case:
    # d_k = 4, so √d_k = 2: the scores of query 0 are (0, 2, 4)/2 = (0, 1, 2).
    q = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]])
    k = np.array([[0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0], [2.0, 2.0, 0.0, 0.0]])
    v = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    return Case("hand-checkable: 2 queries, 3 keys, d_k = 4 (so √d_k = 2), no batch axes, no mask; "
                "the scores of query 0 are (0, 1, 2), those of query 1 all 0",
                {"q": q, "k": k, "v": v, "mask": None})


def _describe(setting) -> str:
    batch, T_q, T_k, d_k, d_v, mask_kind, scale = setting
    shape = "×".join(map(str, batch))
    text = f"batch axes {shape}, T_q={T_q}, T_k={T_k}, d_k={d_k}, d_v={d_v}, {_MASK_WORDS[mask_kind]}"
    if scale == "large":
        text += (", scores of order 1e3 (exp(1000) overflows to inf: a softmax that does not subtract "
                 "the row maximum first gives NaN)")
    elif scale == "signed":
        text += ", scores of order +1e3 in some rows and −1e3 in others (each row needs its own maximum)"
    elif scale == "blocked_high":
        text += (", scores of order ±1e3 where the blocked keys score higher than the kept ones (the row "
                 "maximum is that of the kept keys)")
    return text


def _shaped(case: Case) -> Case:
    """The case with how to name an entry, and its regions: the output values, the weights, the blocked weights."""
    case.describe_index = _describe_index(case.inputs)
    case.layout = Layout(axes=("value",))
    n_out = int(np.prod(case.inputs["q"].shape[:-1])) * case.inputs["v"].shape[-1]
    weights = np.concatenate([np.zeros(n_out, dtype=bool), np.ones(_kept(case).size, dtype=bool)])
    case.regions = {"the output values": ~weights, "the weights": weights}
    if case.inputs["mask"] is not None:
        case.regions["the weights of blocked keys"] = np.concatenate([np.zeros(n_out, dtype=bool),
                                                                      ~_kept(case).ravel()])
    return case


def _cases(hidden: bool) -> list[Case]:
    settings = visible_then_hidden(_SETTINGS, _HIDDEN_SETTINGS, hidden)
    return [_shaped(_hand_case())] + [_shaped(Case(_describe(setting), _inputs(number, setting, salt)))
                                      for number, (setting, salt) in enumerate(settings, start=2)]


def _pack(output, weights) -> np.ndarray:
    """output (..., T_q, d_v) and weights (..., T_q, T_k) as one flat array: every output value, then every
    weight (two results of different shapes are compared together, never reported as one shape)."""
    return np.concatenate([np.asarray(output, dtype=np.float64).ravel(), np.asarray(weights, dtype=np.float64).ravel()])


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


INPUTS_RULE = "no function modifies its arguments in place (the notebook's conventions)"
SHAPE_RULE = "scaled_dot_product_attention returns (output, weights): output (..., T_q, d_v), weights " \
             "(..., T_q, T_k) (Exercise 1, Task)"


def _call(fn, inputs):
    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    arguments = {"q": float64_tensor(q), "k": float64_tensor(k), "v": float64_tensor(v),
                 "mask": mask_tensor(inputs["mask"])}
    with kept_unchanged(arguments, rule=INPUTS_RULE):
        result = fn(arguments["q"], arguments["k"], arguments["v"], mask=arguments["mask"])
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise TypeError("scaled_dot_product_attention must return a pair (output, weights), "
                        f"got {type(result).__name__}")
    output = require_shape(_as_array(result[0], "output"), q.shape[:-1] + v.shape[-1:], what="output",
                           rule=SHAPE_RULE)
    weights = require_shape(_as_array(result[1], "weights"), q.shape[:-1] + k.shape[-2:-1], what="weights",
                            rule=SHAPE_RULE)
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
            "the scores are divided by √d_k, d_k being the last size of q (section 1, “Why divide by √d_k?”).",
            _variant(divisor=1.0)),
    Mistake("the scores were divided by d_k instead of √d_k",
            "the variance of q·k grows like d_k, so its spread grows like √d_k: that is the divisor.",
            _divided_by_dk),
    Mistake("softmax over the query axis (dim=-2): each column of the weights sums to 1 instead of each row",
            "every query (a row of the scores) gets a distribution over the keys: the softmax runs over the last "
            "axis.",
            _variant(dim=-2)),
    Mistake("the mask works the wrong way round (a large negative number was added where mask is True): "
            "positions where mask is True were suppressed, but True means keep",
            "True means keep (the notebook's conventions): block the scores where the mask is False.",
            _variant(mask_mode="inverted")),
    Mistake("the mask was applied after the softmax: masked weights are zero but the rows no longer sum to 1",
            "mask the scores before the softmax, so the kept weights are renormalised.",
            _variant(mask_mode="after_softmax")),
    Mistake("the mask was ignored",
            "when a mask is given, block the scores where it is False before the softmax.",
            _variant(mask_mode="ignored")),
]


def _scores(case: Case) -> np.ndarray:
    q, k = case.inputs["q"], case.inputs["k"]
    return q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])


def _kept(case: Case) -> np.ndarray:
    mask = case.inputs["mask"]
    shape = _scores(case).shape
    return np.ones(shape, dtype=bool) if mask is None else np.broadcast_to(mask, shape)


def _row_maxima(case: Case) -> np.ndarray:
    return np.where(_kept(case), _scores(case), -np.inf).max(axis=-1)


def _mask_shape(case: Case, ndim: int, **extra) -> bool:
    mask = case.inputs["mask"]
    return mask is not None and mask.ndim == ndim

SDPA = Exercise(
    function="scaled_dot_product_attention",
    forbidden=("torch.nn.functional.scaled_dot_product_attention",) + LIBRARY_MHA,
    reference_name="torch.nn.functional.scaled_dot_product_attention (output) and the attention weights of "
                   "section 1 (weights)",
    make_cases=_cases,
    reference=lambda inputs: torch_sdpa(inputs["q"], inputs["k"], inputs["v"], inputs["mask"]),
    call=_call,
    mistakes=MISTAKES,
    hint="compare with section 1 step by step: the scaled scores, the mask (True = keep, blocked before the "
         "softmax), a softmax over the keys made stable with each row's own maximum, then the weighted values. "
         "NaN comes from a row whose scores are all blocked (is True read as keep?) or from exp overflowing or "
         "underflowing (one maximum for the whole tensor, or one taken before masking, is not enough).",
    exception_hints={"RuntimeError": "swap only the last two axes of k (not .T, see the task), so that batch and "
                                     "head axes stay in place; the mask broadcasts against the scores, "
                                     "whose last two axes are T_q × T_k."},
    section="1. Scaled dot-product attention",
    covers={
        "no batch axes (2-D q, k, v)": lambda c: c.inputs["q"].ndim == 2,
        "one batch axis": lambda c: c.inputs["q"].ndim == 3,
        "batch and head axes": lambda c: c.inputs["q"].ndim == 4,
        "T_q different from T_k": lambda c: c.inputs["q"].shape[-2] != c.inputs["k"].shape[-2],
        "a single query": lambda c: c.inputs["q"].shape[-2] == 1,
        "d_v different from d_k": lambda c: c.inputs["v"].shape[-1] != c.inputs["q"].shape[-1],
        "no mask": lambda c: c.inputs["mask"] is None,
        "a causal mask of shape (T, T)": lambda c: _mask_shape(c, 2),
        "a mask of shape (B, T_q, T_k)": lambda c: _mask_shape(c, 3),
        "a padding mask of shape (B, 1, 1, T_k)": lambda c: _mask_shape(c, 4) and c.inputs["mask"].shape[2] == 1,
        "a combined mask of shape (B, 1, T, T)": lambda c: _mask_shape(c, 4) and c.inputs["mask"].shape[2] > 1,
        "scores of order 1e3 (exp overflows)": lambda c: bool(np.all(_row_maxima(c) > 710)),
        "row maxima of both signs, beyond exp's range apart": lambda c: bool(
            _row_maxima(c).max() > 700 and _row_maxima(c).min() < -700),
        "blocked keys that score higher than every kept key, by more than exp's range": lambda c: bool(np.any(
            np.where(_kept(c), -np.inf, _scores(c)).max(axis=-1) - _row_maxima(c) > 750)),
        "a row whose mask keeps every key": lambda c: c.inputs["mask"] is not None and bool(
            np.any(_kept(c).all(axis=-1))),
    },
)


def check_scaled_dot_product_attention(scaled_dot_product_attention, hidden: bool = False) -> None:
    """Check ``scaled_dot_product_attention(q, k, v, mask=None) -> (output, weights)``."""
    show(run_check(SDPA, scaled_dot_product_attention, hidden))
