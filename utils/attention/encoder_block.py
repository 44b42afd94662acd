"""Exercise 4: ``transformer_encoder_block(x, params, num_heads, norm_first=False, activation="relu",
mask=None) -> (B, T, d_model)``.

x (B, T, d_model); ``params`` holds the attention weights of exercise 2 plus W_1 (d_ff, d_model), b_1,
W_2 (d_model, d_ff), b_2, norm1_weight, norm1_bias, norm2_weight, norm2_bias. Compared with
``nn.TransformerEncoderLayer(batch_first=True, dropout=0)`` in eval mode, post-LN and pre-LN; the first case
calls the block with its defaults, and cases whose activations are of size 1e-3 make LayerNorm's eps=1e-5
visible (at unit variance eps=1e-6 or 0 would pass the tolerance).
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
from utils.checks.characterise import Layout
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.rules import kept_unchanged
from utils.checks.seeding import case_rng

# (B, T, d_model, num_heads, d_ff, norm_first, activation, causal, padding, scale). scale: the size of x and of
# the biases of the attention; 1e-3 makes the LayerNorm's input variance comparable to its eps (1e-5).
_SETTINGS = [
    (1, 3, 4, 2, 8, False, "relu", False, False, 1.0),
    (2, 5, 8, 2, 16, False, "relu", False, True, 1.0),
    (2, 5, 8, 2, 32, True, "gelu", False, False, 1.0),
    (2, 6, 8, 4, 16, True, "gelu", True, False, 1.0),
    (2, 5, 8, 2, 16, False, "gelu", False, True, 1.0),
    (2, 5, 8, 2, 16, True, "relu", True, True, 1.0),
    (2, 4, 8, 2, 16, True, "gelu", False, False, 1e-3),
]
_HIDDEN_SETTINGS = [
    (3, 7, 16, 4, 64, True, "gelu", True, True, 1.0),
    (2, 6, 12, 3, 24, False, "relu", True, False, 1.0),
    (2, 5, 8, 4, 24, False, "gelu", False, True, 1e-3),
]
# The first visible case calls transformer_encoder_block(x, params, num_heads): norm_first, activation and
# mask left at their defaults (post-LN, "relu", None), which its setting has.
_DEFAULTS_CASE = 1


def _inputs(number: int, setting, salt: str) -> dict:
    B, T, d, h, d_ff, norm_first, activation, causal, padding, scale = setting
    rng = case_rng("transformer_encoder_block", number, salt)
    params = attention_params(rng, d)
    for name in ("b_q", "b_k", "b_v", "b_o"):
        params[name] = scale * params[name]
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
    x = scale * (1.5 * rng.normal(size=(B, T, d)) + 0.5)
    return {"x": x, "params": params, "num_heads": h, "norm_first": norm_first, "activation": activation,
            "causal": causal, "key_keep": keep_keys, "mask": student_mask(causal, keep_keys, T, T),
            "defaults": number == _DEFAULTS_CASE and not salt}


def _describe(setting, defaults: bool = False) -> str:
    B, T, d, h, d_ff, norm_first, activation, causal, padding, scale = setting
    ln = "pre-LN (norm_first=True)" if norm_first else "post-LN (norm_first=False)"
    masks = [m for m, on in (("causal mask", causal), ("padding mask", padding)) if on]
    if defaults:
        return (f"B={B}, T={T}, d_model={d}, num_heads={h}, d_ff={d_ff}, called as transformer_encoder_block(x, "
                "params, num_heads): norm_first, activation and mask left at their defaults")
    text = (f"B={B}, T={T}, d_model={d}, num_heads={h}, d_ff={d_ff}, {ln}, activation='{activation}', "
            f"{' and '.join(masks) if masks else 'no mask'}")
    if scale != 1:
        text += f", x and the attention biases of size {scale:g} (LayerNorm's eps=1e-5 matters)"
    return text


def _describe_index(index):
    return f"output[b={index[0]}, t={index[1]}, channel {index[2]}]"


def _cases(hidden: bool) -> list[Case]:
    return [Case(_describe(s, n == _DEFAULTS_CASE and not salt), _inputs(n, s, salt), _describe_index)
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
                  final_norm: bool = False, eps: float = 1e-5, eps_outside: bool = False,
                  unbiased: bool = False) -> torch.Tensor:
    """The encoder block (float64 tensors, x (B, T, d_model)) with the known mistakes as options.

    ``force_norm_first`` overrides ``norm_first``; ``shared_norm``: norm1 for both sublayers; ``act``
    overrides ``activation`` ("relu", "gelu", "gelu_tanh"); ``residual_from_normed``: pre-LN with the
    residual taken from the normalised input; ``final_norm``: a LayerNorm after the pre-LN block; ``eps``: the
    LayerNorm's eps; ``eps_outside``: eps added to the standard deviation instead of the variance;
    ``unbiased``: the variance divided by d_model − 1.
    """
    d = x.shape[-1]
    if force_norm_first is not None:
        norm_first = force_norm_first
    second_norm = "norm1" if shared_norm else "norm2"

    def ln(y, name):
        if not (eps_outside or unbiased):
            return F.layer_norm(y, (d,), p[f"{name}_weight"], p[f"{name}_bias"], eps=eps)
        centred = y - y.mean(-1, keepdim=True)
        var = (centred ** 2).sum(-1, keepdim=True) / (d - 1 if unbiased else d)
        std = torch.sqrt(var) + eps if eps_outside else torch.sqrt(var + eps)
        return centred / std * p[f"{name}_weight"] + p[f"{name}_bias"]

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
            "with norm_first=True each sublayer reads a normalised copy of x and the residual sums stay "
            "un-normalised (section 4's table, right column).",
            _only_if("norm_first", True, _variant(force_norm_first=False))),
    Mistake("pre-LN where post-LN was asked: with norm_first=False the LayerNorm comes after each residual sum",
            "with norm_first=False every residual sum is normalised (section 4's table, left column).",
            _only_if("norm_first", False, _variant(force_norm_first=True))),
    Mistake("one LayerNorm (norm1) used for both sublayers: the feed-forward sublayer has its own norm2",
            "the attention sublayer uses norm1_weight and norm1_bias, the feed-forward sublayer norm2_weight and "
            "norm2_bias.",
            _variant(shared_norm=True)),
    Mistake("ReLU used where activation='gelu' was asked",
            "use the activation that `activation` names; 'gelu' is the exact, erf-based GELU.",
            _only_if("activation", "gelu", _variant(act="relu"))),
    Mistake("GELU used where activation='relu' was asked", "use the activation that `activation` names.",
            _only_if("activation", "relu", _variant(act="gelu"))),
    Mistake("the tanh approximation of GELU was used; nn.TransformerEncoderLayer uses the exact (erf) GELU",
            "the notebook asks for the exact form of GELU, not its tanh approximation (section 4).",
            _only_if("activation", "gelu", _variant(act="gelu_tanh"))),
    Mistake("pre-LN residual taken from the normalised input: x was replaced by norm1(x) before the residual "
            "sum, but the residual path must carry the un-normalised x",
            "in pre-LN only the sublayer's input is normalised; what is added to it is the x that came in.",
            _only_if("norm_first", True, _variant(residual_from_normed=True))),
    Mistake("an extra LayerNorm after the pre-LN block: nn.TransformerEncoderLayer(norm_first=True) ends with "
            "the residual sum",
            "the final LayerNorm of a pre-LN network belongs to the whole encoder stack, not to each block.",
            _only_if("norm_first", True, _variant(final_norm=True))),
    Mistake("the LayerNorm's variance was divided by d_model − 1 (torch.var's default, unbiased=True)",
            "LayerNorm uses the biased variance, the mean of the squared deviations over d_model values.",
            _variant(unbiased=True)),
    Mistake("the LayerNorm's eps was added to the standard deviation instead of to the variance",
            "eps goes under the square root, with the variance (as in F.layer_norm).",
            _variant(eps_outside=True)),
    Mistake("LayerNorm with eps=1e-6: the notebook's LayerNorm uses eps=1e-5",
            "use eps=1e-5, as the task says; on small activations the eps changes the result.",
            _variant(eps=1e-6)),
]

INPUTS_RULE = "no function modifies its arguments in place (the notebook's conventions)"


def _call(fn, inputs):
    arguments = {"x": float64_tensor(inputs["x"]), "params": params_tensors(inputs["params"]),
                 "mask": mask_tensor(inputs["mask"])}
    options = {} if inputs.get("defaults") else {"norm_first": inputs["norm_first"],
                                                 "activation": inputs["activation"], "mask": arguments["mask"]}
    with kept_unchanged(arguments, rule=INPUTS_RULE):
        return returned_array(fn(arguments["x"], arguments["params"], inputs["num_heads"], **options))


def _layer_norm_input_variance(c: Case) -> float:
    """The smallest variance over d_model of the block's input x: what the first LayerNorm sees in pre-LN."""
    return float(np.var(c.inputs["x"], axis=-1).min())

BLOCK = Exercise(
    function="transformer_encoder_block",
    forbidden=LIBRARY_MHA + ("torch.nn.TransformerEncoderLayer",),
    reference_name="torch.nn.TransformerEncoderLayer(batch_first=True, dropout=0) in eval mode with your weights",
    make_cases=_cases,
    reference=torch_encoder_layer,
    call=_call,
    mistakes=MISTAKES,
    hint="compare with section 4's table for your norm_first, with separate norm1 and norm2, the activation "
         "that `activation` names, the FFN of section 4 and LayerNorm with eps=1e-5. If multi_head_attention "
         "does not pass its own check yet, fix it first.",
    section="4. The Transformer encoder block",
    layout=Layout(axes=("batch", "token", "channel")),
    covers={
        "post-LN with ReLU": lambda c: not c.inputs["norm_first"] and c.inputs["activation"] == "relu",
        "post-LN with GELU": lambda c: not c.inputs["norm_first"] and c.inputs["activation"] == "gelu",
        "pre-LN with ReLU": lambda c: c.inputs["norm_first"] and c.inputs["activation"] == "relu",
        "pre-LN with GELU": lambda c: c.inputs["norm_first"] and c.inputs["activation"] == "gelu",
        "norm_first, activation and mask left at their defaults": lambda c: bool(c.inputs.get("defaults")),
        "a batch of 2 or more": lambda c: c.inputs["x"].shape[0] >= 2,
        "2 or more heads": lambda c: c.inputs["num_heads"] >= 2,
        "d_ff different from 4·d_model": lambda c: c.inputs["params"]["W_1"].shape[0] != 4 * c.inputs["x"].shape[2],
        "a causal mask": lambda c: c.inputs["causal"],
        "a padding mask": lambda c: c.inputs["key_keep"] is not None,
        "activations whose variance is comparable to LayerNorm's eps (pre-LN)":
            lambda c: c.inputs["norm_first"] and _layer_norm_input_variance(c) < 1e-4,
        "activations whose variance is comparable to LayerNorm's eps (post-LN)":
            lambda c: not c.inputs["norm_first"] and _layer_norm_input_variance(c) < 1e-4,
    },
)


def check_transformer_encoder_block(transformer_encoder_block, hidden: bool = False) -> None:
    """Check the encoder block against ``nn.TransformerEncoderLayer`` (post-LN and pre-LN, ReLU and GELU)."""
    show(run_check(BLOCK, transformer_encoder_block, hidden))
