"""Exercise 2: ``multi_head_attention(query, key, value, params, num_heads, mask=None) -> output``.

query (B, T_q, d_model), key and value (B, T_k, d_model); ``params`` holds W_q, b_q, W_k, b_k, W_v, b_v,
W_o, b_o in ``nn.Linear``'s convention (y = x Wᵀ + b, W of shape (d_model, d_model)); ``mask`` is a
boolean keep-mask broadcastable to (B, num_heads, T_q, T_k). Returns (B, T_q, d_model), compared with
``nn.MultiheadAttention`` loaded with the same weights.
"""
from __future__ import annotations

import numpy as np
import torch

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
from utils.checks.characterise import Layout
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.rules import kept_unchanged
from utils.checks.seeding import case_rng

# (B, T_q, T_k, d_model, num_heads, causal, padding)
_SETTINGS = [
    (1, 3, 3, 4, 2, False, False),
    (2, 5, 5, 8, 2, False, False),
    (2, 5, 5, 12, 3, True, False),
    (2, 6, 6, 8, 4, False, True),
    (2, 3, 6, 8, 2, False, True),
    (2, 5, 5, 8, 2, True, True),
]
_HIDDEN_SETTINGS = [
    (3, 7, 7, 16, 4, True, True),
    (2, 4, 4, 6, 1, True, False),
    (3, 5, 8, 12, 6, False, True),
    (2, 7, 4, 6, 2, False, True),
]


def _inputs(number: int, setting, salt: str) -> dict:
    B, T_q, T_k, d, h, causal, padding = setting
    rng = case_rng("multi_head_attention", number, salt)
    query = rng.normal(size=(B, T_q, d))
    cross = T_q != T_k
    key = rng.normal(size=(B, T_k, d)) if cross else query
    value = rng.normal(size=(B, T_k, d)) if cross else query
    keep_keys = None
    if padding:
        lengths = rng.integers(max(1, T_k // 2), T_k, size=B)
        lengths[-1] = T_k
        keep_keys = key_keep(lengths, T_k)
    return {"query": query, "key": key, "value": value, "params": attention_params(rng, d),
            "num_heads": h, "causal": causal, "key_keep": keep_keys,
            "mask": student_mask(causal, keep_keys, T_q, T_k)}


def _describe(setting) -> str:
    B, T_q, T_k, d, h, causal, padding = setting
    kind = "self-attention" if T_q == T_k else f"cross-attention (T_q={T_q}, T_k={T_k})"
    masks = []
    if causal:
        masks.append("causal mask")
    if padding:
        masks.append("padding mask (some keys are padding)")
    mask_text = " and ".join(masks) if masks else "no mask"
    shape = {(True, False): "(T, T)", (False, True): "(B, 1, 1, T_k)", (True, True): "(B, 1, T, T)"}
    if masks:
        mask_text += f", shape {shape[(causal, padding)]}"
    return f"B={B}, T={T_q}, d_model={d}, num_heads={h} (d_k={d // h}), {kind}, {mask_text}"


def _describe_index(index):
    return f"output[b={index[0]}, t={index[1]}, channel {index[2]}]"


def _cases(hidden: bool) -> list[Case]:
    return [Case(_describe(s), _inputs(n, s, salt), _describe_index)
            for n, (s, salt) in enumerate(visible_then_hidden(_SETTINGS, _HIDDEN_SETTINGS, hidden), start=1)]


def torch_mha(inputs) -> np.ndarray:
    """``nn.MultiheadAttention(batch_first=True)`` loaded with the case's W_q, W_k, W_v, W_o."""
    p = params_tensors(inputs["params"])
    d = p["W_q"].shape[0]
    with torch.random.fork_rng(devices=[]):
        module = torch.nn.MultiheadAttention(d, inputs["num_heads"], batch_first=True, dtype=torch.float64)
    module.load_state_dict({
        "in_proj_weight": torch.cat([p["W_q"], p["W_k"], p["W_v"]]),   # packed (3·d_model, d_model)
        "in_proj_bias": torch.cat([p["b_q"], p["b_k"], p["b_v"]]),
        "out_proj.weight": p["W_o"], "out_proj.bias": p["b_o"]})
    module.eval()
    T_q, T_k = inputs["query"].shape[1], inputs["key"].shape[1]
    # torch's boolean masks mean the opposite of ours: True = NOT allowed to attend.
    attn_mask = ~torch.tril(torch.ones(T_q, T_k, dtype=torch.bool)) if inputs["causal"] else None
    kpm = None if inputs["key_keep"] is None else ~torch.from_numpy(inputs["key_keep"])
    with torch.no_grad():
        out, _ = module(float64_tensor(inputs["query"]), float64_tensor(inputs["key"]),
                        float64_tensor(inputs["value"]), key_padding_mask=kpm, attn_mask=attn_mask,
                        need_weights=False)
    return out.numpy()


def _variant(**switches):
    """The output of :func:`~utils.attention.mha.multi_head_attention` with mistake switches."""
    def compute(inputs):
        output, _ = mha.multi_head_attention(
            float64_tensor(inputs["query"]), float64_tensor(inputs["key"]), float64_tensor(inputs["value"]),
            params_tensors(inputs["params"]), inputs["num_heads"], mask_tensor(inputs["mask"]), **switches)
        return output.numpy()
    return compute


MISTAKES = [
    Mistake("heads split and merged in the wrong order: a plain reshape without the transpose, both ways, gave "
            "each head a piece of the sequence instead of d_k channels of every token",
            "cut each token's d_model channels into h groups of d_k first, then move the head axis in front of "
            "the token axis (section 2's shape diagram); merge back in the reverse order.",
            _variant(split_transpose=False, merge_transpose=False)),
    Mistake("heads merged in the wrong order: reshaped back without first moving the head axis behind the "
            "token axis",
            "before merging, move the head axis back behind the token axis, so that the heads of one token sit "
            "side by side (section 2's shape diagram).",
            _variant(merge_transpose=False)),
    Mistake("heads split in the wrong order: a plain reshape into heads, without the transpose",
            "a straight reshape into heads cuts the sequence into pieces: split the channels of each token first, "
            "then move the head axis (section 2).",
            _variant(split_transpose=False)),
    Mistake("missing output projection: the merged heads must go through W_o, b_o",
            "the last step of section 2's diagram is the Linear W_o (with its bias b_o).", _variant(out_proj=False)),
    Mistake("no √d_k scaling inside the heads",
            "each head is a scaled dot-product attention of its own: its scores are divided by √d_k.",
            _variant(divisor="none")),
    Mistake("the scores were divided by √d_model instead of √d_k (d_k = d_model / num_heads is the size of one head)",
            "inside each head the dot products have d_k terms, d_k being the size of one head.",
            _variant(divisor="sqrt_d_model")),
    Mistake("the projections were computed as x @ W, with W not transposed (nn.Linear's convention)",
            "params follow nn.Linear's convention, y = x Wᵀ + b with W of shape (out, in) (section 2, “The weights”).",
            _variant(transpose_w=False)),
    Mistake("the mask works the wrong way round: positions where mask is True were suppressed, but True means keep",
            "True means keep (the notebook's conventions): block the positions where the mask is False.",
            _variant(mask_mode="inverted")),
    Mistake("the mask was ignored",
            "pass the mask on to the attention of every head (it broadcasts over the head axis).",
            _variant(mask_mode="ignored")),
    Mistake("the biases b_q, b_k, b_v were left out of the input projections",
            "each of the four projections is a Linear with its own bias, W_q, W_k and W_v included.",
            _variant(in_bias=False)),
]

INPUTS_RULE = "no function modifies its arguments in place (the notebook's conventions)"


def _call(fn, inputs):
    arguments = {"query": float64_tensor(inputs["query"]), "key": float64_tensor(inputs["key"]),
                 "value": float64_tensor(inputs["value"]), "params": params_tensors(inputs["params"]),
                 "mask": mask_tensor(inputs["mask"])}
    with kept_unchanged(arguments, rule=INPUTS_RULE):
        return returned_array(fn(arguments["query"], arguments["key"], arguments["value"], arguments["params"],
                                 inputs["num_heads"], mask=arguments["mask"]))


def _shape(c: Case) -> tuple[int, int, int, int, int]:
    """(B, T_q, T_k, d_model, num_heads)."""
    B, T_q, d = c.inputs["query"].shape
    return B, T_q, c.inputs["key"].shape[1], d, c.inputs["num_heads"]

MHA = Exercise(
    function="multi_head_attention",
    forbidden=LIBRARY_MHA,
    reference_name="torch.nn.MultiheadAttention(batch_first=True) loaded with your W_q, W_k, W_v, W_o",
    make_cases=_cases,
    reference=torch_mha,
    call=_call,
    mistakes=MISTAKES,
    hint="follow section 2's shape diagram step by step: the three input projections, the split into heads "
         "(reshape, then transpose), attention in every head with the mask, the merge (transpose back, then "
         "reshape), the output projection. Keys and values come from key and value, which differ from query in "
         "cross-attention.",
    exception_hints={"RuntimeError": "check the shapes: d_k = d_model // num_heads, queries have T_q tokens and "
                                     "keys T_k, and the mask broadcasts against the scores, whose axes are batch, "
                                     "head, query and key."},
    section="2. Multi-head attention",
    layout=Layout(axes=("batch", "query token", "channel")),
    covers={
        "a batch of 2 or more": lambda c: _shape(c)[0] >= 2,
        "one head": lambda c: _shape(c)[4] == 1,
        "2 or more heads": lambda c: _shape(c)[4] >= 2,
        "4 or more heads": lambda c: _shape(c)[4] >= 4,
        "an odd head size d_k": lambda c: (_shape(c)[3] // _shape(c)[4]) % 2 == 1,
        "cross-attention with fewer queries than keys": lambda c: _shape(c)[1] < _shape(c)[2],
        "cross-attention with more queries than keys": lambda c: _shape(c)[1] > _shape(c)[2],
        "key and value different tensors": lambda c: not np.array_equal(c.inputs["key"], c.inputs["value"]),
        "no mask": lambda c: c.inputs["mask"] is None,
        "a causal mask only": lambda c: c.inputs["causal"] and c.inputs["key_keep"] is None,
        "a padding mask only": lambda c: not c.inputs["causal"] and c.inputs["key_keep"] is not None,
        "causal and padding masks combined": lambda c: c.inputs["causal"] and c.inputs["key_keep"] is not None,
    },
)


def check_multi_head_attention(multi_head_attention, hidden: bool = False) -> None:
    """Check ``multi_head_attention`` against ``nn.MultiheadAttention`` loaded with the same weights."""
    show(run_check(MHA, multi_head_attention, hidden))
