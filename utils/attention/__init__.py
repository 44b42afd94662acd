"""Checks for the attention assignment: scaled dot-product attention, multi-head attention,
sinusoidal positional encoding, the Transformer encoder block, and what attention costs.

Exercises and the student's signatures (tensors are float64 ``torch.Tensor``; a mask is a boolean
tensor, **True = keep** (this query may look at this key), broadcastable to the scores' shape,
the convention of ``torch.nn.functional.scaled_dot_product_attention``):

* ``scaled_dot_product_attention(q, k, v, mask=None) -> (output, weights)`` with ``q`` (..., T_q, d_k),
  ``k`` (..., T_k, d_k), ``v`` (..., T_k, d_v); ``output`` (..., T_q, d_v), ``weights`` (..., T_q, T_k).
* ``multi_head_attention(query, key, value, params, num_heads, mask=None) -> output`` with ``query``
  (B, T_q, d_model), ``key``/``value`` (B, T_k, d_model), ``params`` a dict of ``W_q, b_q, W_k, b_k, W_v,
  b_v, W_o, b_o`` in ``nn.Linear``'s convention (y = x Wᵀ + b, W of shape (d_model, d_model)), ``mask``
  broadcastable to (B, num_heads, T_q, T_k); returns (B, T_q, d_model).
* ``positional_encoding(max_len, d_model) -> (max_len, d_model)``: PE[p, 2i] = sin(p / 10000^(2i/d)),
  PE[p, 2i+1] = cos(p / 10000^(2i/d)).
* ``transformer_encoder_block(x, params, num_heads, norm_first=False, activation="relu", mask=None)``
  with ``x`` (B, T, d_model) and ``params`` the attention weights above plus ``W_1`` (d_ff, d_model),
  ``b_1``, ``W_2`` (d_model, d_ff), ``b_2``, ``norm1_weight``, ``norm1_bias``, ``norm2_weight``,
  ``norm2_bias``; as ``torch.nn.TransformerEncoderLayer(batch_first=True, dropout=0)`` in eval mode.
* ``mha_param_count(d_model, num_heads, bias=True) -> int``
* ``attention_matrix_bytes(seq_len, num_heads, batch_size=1, bytes_per_value=2) -> int``
* ``kv_cache_bytes(seq_len, num_layers, num_kv_heads, head_dim, batch_size=1, bytes_per_value=2) -> int``

References are computed when the check runs, in float64, from torch: ``F.scaled_dot_product_attention``,
``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer`` loaded with the case's weights, and, for the
costs, the parameters and tensors of real modules built on the ``meta`` device (no memory used). The
known mistakes are the same computations done wrongly by the ``*_variant`` functions below.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from utils.checks.exercise import Case, Exercise, run_check
from utils.checks.compare import Tolerance
from utils.checks.feedback import show
from utils.checks.diagnose import Mistake
from utils.checks.seeding import case_rng

# --------------------------------------------------------------------------- helpers


def _t(x) -> torch.Tensor:
    return torch.from_numpy(np.array(x, dtype=np.float64))


def _mask_t(mask):
    return None if mask is None else torch.from_numpy(np.array(mask, dtype=bool))


def _params_t(params: dict) -> dict:
    return {name: _t(value) for name, value in params.items()}


def _as_array(value, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().to(torch.float64).numpy()
    array = np.asarray(value)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.floating)
                                     or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{what} should be a tensor of numbers, got {type(value).__name__}")
    return array.astype(np.float64)


def _plain(value):
    """A tensor the student returned, as a numpy array (anything else is left to the comparison)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return value


def _stable_softmax(scores: torch.Tensor, dim: int) -> torch.Tensor:
    shifted = scores - scores.amax(dim=dim, keepdim=True)
    e = torch.exp(shifted)
    return e / e.sum(dim=dim, keepdim=True)


def _attend_variant(q, k, v, mask, *, divisor=None, dim=-1, mask_mode="keep"):
    """Attention with the known mistakes as options (float64 torch tensors in and out)."""
    scores = q @ k.transpose(-2, -1)
    scores = scores / (math.sqrt(q.shape[-1]) if divisor is None else divisor)
    if mask is not None:
        if mask_mode == "keep":
            scores = scores.masked_fill(~mask, float("-inf"))
        elif mask_mode == "inverted":  # `scores + mask * -1e9` with mask True = keep
            scores = scores + mask.to(scores.dtype) * -1e9
    weights = _stable_softmax(scores, dim)
    if mask is not None and mask_mode == "after_softmax":
        weights = weights * mask
    return weights @ v, weights


def _student_mask(causal: bool, key_keep, T_q: int, T_k: int):
    """The boolean keep-mask a student receives: (T_q, T_k), (B, 1, 1, T_k) or (B, 1, T_q, T_k)."""
    mask = None
    if causal:
        mask = np.tril(np.ones((T_q, T_k), dtype=bool))
    if key_keep is not None:
        padding = np.asarray(key_keep, dtype=bool)[:, None, None, :]
        mask = padding if mask is None else (mask[None, None] & padding)
    return mask


def _key_keep(lengths, T_k: int) -> np.ndarray:
    return np.arange(T_k)[None, :] < np.asarray(lengths)[:, None]


# --------------------------------------------------------------------------- exercise 1: scaled dot-product attention

# (batch shape, T_q, T_k, d_k, d_v, mask kind, score scale)
_SDPA_SETTINGS = [
    ((2, 3), 4, 4, 5, 3, "none", "normal"),
    ((2, 2), 5, 5, 4, 4, "causal", "normal"),
    ((2, 2), 3, 6, 4, 2, "padding", "normal"),
    ((2, 2), 5, 5, 8, 3, "causal+padding", "normal"),
    ((1, 2), 6, 6, 4, 3, "none", "large"),
]
_SDPA_HIDDEN = [
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


def _sdpa_inputs(number: int, setting, salt: str) -> dict:
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
        mask = _student_mask(False, _key_keep(lengths, T_k), T_q, T_k)
    elif mask_kind == "causal+padding":
        mask = _student_mask(True, _key_keep(lengths, T_k), T_q, T_k)
    else:
        mask = rng.random((B, T_q, T_k)) < 0.6
        mask |= np.eye(T_q, T_k, dtype=bool)[None]
    if mask is not None and len(batch) == 1 and mask.ndim == 4:
        mask = mask[:, 0]
    return {"q": q, "k": k, "v": v, "mask": mask}


def _hand_sdpa_case() -> Case:
    # d_k = 4, so √d_k = 2: the scores of query 0 are (0, 2, 4)/2 = (0, 1, 2).
    q = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]])
    k = np.array([[0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0], [2.0, 2.0, 0.0, 0.0]])
    v = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    return Case("hand-checkable: 2 queries, 3 keys, d_k = 4 (so √d_k = 2), no batch axes, no mask; "
                "the scores of query 0 are (0, 1, 2), those of query 1 all 0",
                {"q": q, "k": k, "v": v, "mask": None}, _sdpa_index(2))


def _sdpa_index(d_v: int):
    def describe(index):
        *lead, i, j = index
        prefix = ", ".join(map(str, lead))
        prefix = prefix + ", " if prefix else ""
        if j < d_v:
            return f"output[{prefix}{i}, {j}]"
        return f"weights[{prefix}{i}, {j - d_v}] (query {i}, key {j - d_v})"
    return describe


def _describe_sdpa(setting) -> str:
    batch, T_q, T_k, d_k, d_v, mask_kind, scale = setting
    shape = "×".join(map(str, batch))
    text = (f"batch axes {shape}, T_q={T_q}, T_k={T_k}, d_k={d_k}, d_v={d_v}, {_MASK_WORDS[mask_kind]}")
    if scale == "large":
        text += (", scores of order 1e3 (exp(1000) overflows to inf: a softmax that does not subtract "
                 "the row maximum first gives NaN)")
    return text


def _sdpa_cases(hidden: bool) -> list[Case]:
    cases = [_hand_sdpa_case()]
    settings = [(s, "") for s in _SDPA_SETTINGS] + ([(s, "hidden") for s in _SDPA_HIDDEN] if hidden else [])
    for number, (setting, salt) in enumerate(settings, start=2):
        cases.append(Case(_describe_sdpa(setting), _sdpa_inputs(number, setting, salt), _sdpa_index(setting[4])))
    return cases


def _sdpa_pack(output, weights) -> np.ndarray:
    return np.concatenate([output, weights], axis=-1)


def torch_sdpa(q, k, v, mask) -> np.ndarray:
    """``F.scaled_dot_product_attention`` and the explicit softmax weights, packed on the last axis."""
    q, k, v, mask = _t(q), _t(k), _t(v), _mask_t(mask)
    with torch.no_grad():
        output = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
    return _sdpa_pack(output.numpy(), weights.numpy())


def _sdpa_call(fn, inputs):
    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    result = fn(_t(q), _t(k), _t(v), mask=_mask_t(inputs["mask"]))
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
    return _sdpa_pack(output, weights)


def sdpa_variant(**kw):
    def compute(inputs):
        out, w = _attend_variant(_t(inputs["q"]), _t(inputs["k"]), _t(inputs["v"]), _mask_t(inputs["mask"]), **kw)
        return _sdpa_pack(out.numpy(), w.numpy())
    return compute


def _dk_divisor(**kw):
    def compute(inputs):
        d_k = inputs["q"].shape[-1]
        return sdpa_variant(divisor=d_k, **kw)(inputs)
    return compute


SDPA_MISTAKES = [
    Mistake("no √d_k scaling: the scores q·k were not divided by √d_k",
            "scores = q @ k.transpose(-2, -1) / math.sqrt(d_k), with d_k = q.shape[-1].",
            sdpa_variant(divisor=1.0)),
    Mistake("the scores were divided by d_k instead of √d_k",
            "divide by math.sqrt(d_k): the variance of q·k grows like d_k, its spread like √d_k.",
            _dk_divisor()),
    Mistake("softmax over the query axis (dim=-2): each column of the weights sums to 1 instead of each row",
            "every query (a row) gets a distribution over the keys: torch.softmax(scores, dim=-1).",
            sdpa_variant(dim=-2)),
    Mistake("the mask works the wrong way round (added with the wrong sign): positions where mask is True "
            "were suppressed, but True means keep",
            "scores = scores.masked_fill(~mask, float('-inf')) — or add -inf (a large negative number) where mask is False.",
            sdpa_variant(mask_mode="inverted")),
    Mistake("the mask was applied after the softmax: masked weights are zero but the rows no longer sum to 1",
            "mask the scores before the softmax, so the kept weights are renormalised.",
            sdpa_variant(mask_mode="after_softmax")),
    Mistake("the mask was ignored",
            "when mask is not None, set the scores where mask is False to -inf before the softmax.",
            sdpa_variant(mask_mode="ignored")),
]

# Library attention a from-scratch answer must not call (see Exercise.forbidden). Multi-head
# attention may build on F.scaled_dot_product_attention, the building block of exercise 1.
_LIBRARY_MHA = ("torch.nn.MultiheadAttention", "torch.nn.functional.multi_head_attention_forward")

SDPA = Exercise(
    function="scaled_dot_product_attention",
    forbidden=("torch.nn.functional.scaled_dot_product_attention",) + _LIBRARY_MHA,
    reference_name="torch.nn.functional.scaled_dot_product_attention (output) and softmax(q·kᵀ/√d_k) (weights)",
    make_cases=_sdpa_cases,
    reference=lambda inputs: torch_sdpa(inputs["q"], inputs["k"], inputs["v"], inputs["mask"]),
    call=_sdpa_call,
    mistakes=SDPA_MISTAKES,
    hint="weights = softmax(q·kᵀ/√d_k with -inf where mask is False, over the last axis), "
         "computed stably (subtract each row's maximum, or use torch.softmax); output = weights @ v.",
    exception_hints={"RuntimeError": "use k.transpose(-2, -1) (not .T) so that batch and head axes stay in place; "
                                     "the mask broadcasts against the scores (..., T_q, T_k)."},
)

# --------------------------------------------------------------------------- exercise 2: multi-head attention

# (B, T_q, T_k, d_model, num_heads, causal, padding)
_MHA_SETTINGS = [
    (1, 3, 3, 4, 2, False, False),
    (2, 5, 5, 8, 2, False, False),
    (2, 5, 5, 12, 3, True, False),
    (2, 6, 6, 8, 4, False, True),
    (2, 3, 6, 8, 2, False, True),
    (2, 5, 5, 8, 2, True, True),
]
_MHA_HIDDEN = [
    (3, 7, 7, 16, 4, True, True),
    (2, 4, 4, 6, 1, True, False),
    (3, 5, 8, 12, 6, False, True),
]


def _attention_params(rng, d_model: int) -> dict:
    s = 1 / math.sqrt(d_model)
    return {name: rng.normal(scale=s if name.startswith("W") else 0.1,
                             size=(d_model, d_model) if name.startswith("W") else (d_model,))
            for name in ("W_q", "b_q", "W_k", "b_k", "W_v", "b_v", "W_o", "b_o")}


def _mha_inputs(number: int, setting, salt: str) -> dict:
    B, T_q, T_k, d, h, causal, padding = setting
    rng = case_rng("multi_head_attention", number, salt)
    query = rng.normal(size=(B, T_q, d))
    cross = T_q != T_k
    key = rng.normal(size=(B, T_k, d)) if cross else query
    value = rng.normal(size=(B, T_k, d)) if cross else query
    key_keep = None
    if padding:
        lengths = rng.integers(max(1, T_k // 2), T_k, size=B)
        lengths[-1] = T_k
        key_keep = _key_keep(lengths, T_k)
    return {"query": query, "key": key, "value": value, "params": _attention_params(rng, d),
            "num_heads": h, "causal": causal, "key_keep": key_keep,
            "mask": _student_mask(causal, key_keep, T_q, T_k)}


def _describe_mha(setting) -> str:
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


def _mha_cases(hidden: bool) -> list[Case]:
    settings = [(s, "") for s in _MHA_SETTINGS] + ([(s, "hidden") for s in _MHA_HIDDEN] if hidden else [])
    return [Case(_describe_mha(s), _mha_inputs(n, s, salt),
                 lambda index: f"output[b={index[0]}, t={index[1]}, channel {index[2]}]")
            for n, (s, salt) in enumerate(settings, start=1)]


def torch_mha(inputs) -> np.ndarray:
    """``nn.MultiheadAttention(batch_first=True)`` loaded with the case's W_q, W_k, W_v, W_o."""
    p = _params_t(inputs["params"])
    d = p["W_q"].shape[0]
    with torch.random.fork_rng(devices=[]):
        mha = torch.nn.MultiheadAttention(d, inputs["num_heads"], batch_first=True, dtype=torch.float64)
    mha.load_state_dict({
        "in_proj_weight": torch.cat([p["W_q"], p["W_k"], p["W_v"]]),   # packed (3·d_model, d_model)
        "in_proj_bias": torch.cat([p["b_q"], p["b_k"], p["b_v"]]),
        "out_proj.weight": p["W_o"], "out_proj.bias": p["b_o"]})
    mha.eval()
    T_q, T_k = inputs["query"].shape[1], inputs["key"].shape[1]
    # torch's boolean masks mean the opposite of ours: True = NOT allowed to attend.
    attn_mask = ~torch.tril(torch.ones(T_q, T_k, dtype=torch.bool)) if inputs["causal"] else None
    kpm = None if inputs["key_keep"] is None else ~torch.from_numpy(inputs["key_keep"])
    with torch.no_grad():
        out, _ = mha(_t(inputs["query"]), _t(inputs["key"]), _t(inputs["value"]),
                     key_padding_mask=kpm, attn_mask=attn_mask, need_weights=False)
    return out.numpy()


def mha_variant_torch(query, key, value, p, num_heads, mask, *, split="ok", merge="ok", out_proj=True,
                      divisor="sqrt_dk", transpose_w=True, mask_mode="keep"):
    """Multi-head attention (float64 torch tensors) with the known mistakes as options."""
    def linear(x, W, b):
        return x @ (W.T if transpose_w else W) + b

    Q, K, V = (linear(x, p[f"W_{n}"], p[f"b_{n}"]) for x, n in ((query, "q"), (key, "k"), (value, "v")))
    B, T_q, d = Q.shape
    d_k = d // num_heads

    def heads(X):
        if split == "no_transpose":
            return X.reshape(B, num_heads, X.shape[1], d_k)
        return X.reshape(B, X.shape[1], num_heads, d_k).transpose(1, 2)

    div = {"sqrt_dk": math.sqrt(d_k), "none": 1.0, "sqrt_dmodel": math.sqrt(d)}[divisor]
    O, _ = _attend_variant(heads(Q), heads(K), heads(V), mask, divisor=div, mask_mode=mask_mode)
    O = O.reshape(B, T_q, d) if merge == "no_transpose" else O.transpose(1, 2).reshape(B, T_q, d)
    return linear(O, p["W_o"], p["b_o"]) if out_proj else O


def _mha_variant(**kw):
    def compute(inputs):
        return mha_variant_torch(_t(inputs["query"]), _t(inputs["key"]), _t(inputs["value"]),
                                 _params_t(inputs["params"]), inputs["num_heads"], _mask_t(inputs["mask"]),
                                 **kw).numpy()
    return compute


MHA_MISTAKES = [
    Mistake("heads split in the wrong order: (B, T, d_model) was reshaped straight to (B, h, T, d_k) "
            "without the transpose",
            "X.reshape(B, T, h, d_k).transpose(1, 2) gives (B, h, T, d_k): each head keeps its own d_k "
            "channels of every token.",
            _mha_variant(split="no_transpose", merge="no_transpose")),
    Mistake("heads merged in the wrong order: (B, h, T, d_k) was reshaped straight to (B, T, d_model) "
            "without transposing back",
            "O.transpose(1, 2).reshape(B, T, d_model) puts the heads of one token side by side.",
            _mha_variant(merge="no_transpose")),
    Mistake("heads split in the wrong order (reshape to (B, h, T, d_k) without the transpose)",
            "X.reshape(B, T, h, d_k).transpose(1, 2); merge back with O.transpose(1, 2).reshape(B, T, d_model).",
            _mha_variant(split="no_transpose")),
    Mistake("missing output projection: the merged heads must go through W_o, b_o",
            "return merged @ W_o.T + b_o.", _mha_variant(out_proj=False)),
    Mistake("no √d_k scaling inside the heads", "divide each head's scores by math.sqrt(d_k), d_k = d_model // num_heads.",
            _mha_variant(divisor="none")),
    Mistake("the scores were divided by √d_model instead of √d_k (d_k = d_model / num_heads is the size of one head)",
            "inside each head the dot products have d_k terms: divide by math.sqrt(d_model // num_heads).",
            _mha_variant(divisor="sqrt_dmodel")),
    Mistake("the projections were computed as x @ W instead of x @ W.T (nn.Linear's convention)",
            "nn.Linear computes y = x Wᵀ + b with W of shape (out_features, in_features): use x @ W.T + b.",
            _mha_variant(transpose_w=False)),
    Mistake("the mask works the wrong way round: positions where mask is True were suppressed, but True means keep",
            "scores.masked_fill(~mask, float('-inf')).", _mha_variant(mask_mode="inverted")),
    Mistake("the mask was ignored", "pass the mask on to the attention of every head (it broadcasts over the head axis).",
            _mha_variant(mask_mode="ignored")),
]

MHA = Exercise(
    function="multi_head_attention",
    forbidden=_LIBRARY_MHA,
    reference_name="torch.nn.MultiheadAttention(batch_first=True) loaded with your W_q, W_k, W_v, W_o",
    make_cases=_mha_cases,
    reference=torch_mha,
    call=lambda fn, inputs: _plain(fn(_t(inputs["query"]), _t(inputs["key"]), _t(inputs["value"]),
                                      _params_t(inputs["params"]), inputs["num_heads"], mask=_mask_t(inputs["mask"]))),
    mistakes=MHA_MISTAKES,
    hint="project (x @ W.T + b), split (B, T, d_model) → (B, T, h, d_k) → transpose → (B, h, T, d_k), attend "
         "with √d_k and the mask, transpose back and merge to (B, T, d_model), then the output projection W_o.",
    exception_hints={"RuntimeError": "check the shapes: d_k = d_model // num_heads, and the mask broadcasts "
                                     "against the scores (B, h, T_q, T_k)."},
)

# --------------------------------------------------------------------------- exercise 3: positional encoding


def torch_positional_encoding(max_len: int, d_model: int) -> np.ndarray:
    """PE[p, 2i] = sin(p·ω_i), PE[p, 2i+1] = cos(p·ω_i), ω_i = 10000^(−2i/d_model), in float64."""
    position = torch.arange(max_len, dtype=torch.float64)[:, None]
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)
    angle = position / torch.pow(torch.tensor(10000.0, dtype=torch.float64), two_i / d_model)
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return pe.numpy()


def pe_variant(max_len, d_model, *, layout="interleaved", exponent="2i", start=0, swap=False):
    pos = np.arange(start, start + max_len, dtype=np.float64)[:, None]
    i = np.arange(d_model // 2, dtype=np.float64)
    if exponent == "2i":
        freq = 10000.0 ** (-2 * i / d_model)
    elif exponent == "i":
        freq = 10000.0 ** (-i / d_model)
    else:  # "column": the column index j used in place of 2i
        freq = None
    if freq is None:
        j = np.arange(d_model, dtype=np.float64)
        angle = pos * 10000.0 ** (-j / d_model)
        even, odd = np.sin(angle), np.cos(angle)
        out = np.where(np.arange(d_model) % 2 == 0, even, odd)
        return out
    angle = pos * freq
    first, second = (np.cos(angle), np.sin(angle)) if swap else (np.sin(angle), np.cos(angle))
    if layout == "blocks":
        return np.concatenate([first, second], axis=1)
    out = np.empty((max_len, d_model))
    out[:, 0::2], out[:, 1::2] = first, second
    return out


def _pe_cases(hidden: bool) -> list[Case]:
    settings = [(4, 4, "hand-checkable: max_len=4, d_model=4 (frequencies 1 and 1/100)"),
                (50, 16, "max_len=50, d_model=16"), (128, 64, "max_len=128, d_model=64")]
    if hidden:
        settings += [(7, 2, "max_len=7, d_model=2 (one sin/cos pair)"), (30, 10, "max_len=30, d_model=10")]
    return [Case(text, {"max_len": n, "d_model": d},
                 lambda index: f"PE[position {index[0]}, column {index[1]}] "
                               f"({'sin' if index[1] % 2 == 0 else 'cos'}, i={index[1] // 2})")
            for n, d, text in settings]


def _pe_variant(**kw):
    return lambda inputs: pe_variant(inputs["max_len"], inputs["d_model"], **kw)


PE = Exercise(
    function="positional_encoding",
    reference_name="the sinusoidal formula PE[p, 2i] = sin(p/10000^(2i/d)), PE[p, 2i+1] = cos(p/10000^(2i/d))",
    make_cases=_pe_cases,
    reference=lambda inputs: torch_positional_encoding(inputs["max_len"], inputs["d_model"]),
    call=lambda fn, inputs: _plain(fn(inputs["max_len"], inputs["d_model"])),
    mistakes=[
        Mistake("sin/cos interleaving swapped: cos went to the even columns and sin to the odd ones",
                "column 2i holds sin(p·ω_i) and column 2i+1 holds cos(p·ω_i): pe[:, 0::2] = sin, pe[:, 1::2] = cos.",
                _pe_variant(swap=True)),
        Mistake("sin and cos were concatenated in two halves instead of interleaved",
                "interleave them: pe[:, 0::2] = sin(angle), pe[:, 1::2] = cos(angle).",
                _pe_variant(layout="blocks")),
        Mistake("the exponent uses i/d_model instead of 2i/d_model",
                "ω_i = 10000^(−2i/d_model) for the pair (2i, 2i+1): use torch.arange(0, d_model, 2) / d_model.",
                _pe_variant(exponent="i")),
        Mistake("every column got its own frequency 10000^(−j/d_model): the sin and cos of a pair must share ω_i",
                "columns 2i and 2i+1 use the same ω_i = 10000^(−2i/d_model).",
                _pe_variant(exponent="column")),
        Mistake("positions start at 1: the first row must be position 0 (all sin 0, all cos 1)",
                "use torch.arange(max_len) for the positions.", _pe_variant(start=1)),
    ],
    hint="angle[p, i] = p / 10000^(2i/d_model) for i = 0 … d_model/2 − 1; pe[:, 0::2] = sin(angle), "
         "pe[:, 1::2] = cos(angle); shape (max_len, d_model).",
)

# --------------------------------------------------------------------------- exercise 4: the encoder block

# (B, T, d_model, num_heads, d_ff, norm_first, activation, causal, padding)
_BLOCK_SETTINGS = [
    (1, 3, 4, 2, 8, False, "relu", False, False),
    (2, 5, 8, 2, 16, False, "relu", False, True),
    (2, 5, 8, 2, 32, True, "gelu", False, False),
    (2, 6, 8, 4, 16, True, "gelu", True, False),
    (2, 5, 8, 2, 16, False, "gelu", False, True),
    (2, 5, 8, 2, 16, True, "relu", True, True),
]
_BLOCK_HIDDEN = [
    (3, 7, 16, 4, 64, True, "gelu", True, True),
    (2, 6, 12, 3, 24, False, "relu", True, False),
]


def _block_inputs(number: int, setting, salt: str) -> dict:
    B, T, d, h, d_ff, norm_first, activation, causal, padding = setting
    rng = case_rng("transformer_encoder_block", number, salt)
    params = _attention_params(rng, d)
    params.update({
        "W_1": rng.normal(scale=1 / math.sqrt(d), size=(d_ff, d)), "b_1": rng.normal(scale=0.1, size=d_ff),
        "W_2": rng.normal(scale=1 / math.sqrt(d_ff), size=(d, d_ff)), "b_2": rng.normal(scale=0.1, size=d),
        "norm1_weight": 1 + 0.3 * rng.normal(size=d), "norm1_bias": 0.2 * rng.normal(size=d),
        "norm2_weight": 1 + 0.3 * rng.normal(size=d), "norm2_bias": 0.2 * rng.normal(size=d),
    })
    key_keep = None
    if padding:
        lengths = rng.integers(max(1, T // 2), T, size=B)
        lengths[-1] = T
        key_keep = _key_keep(lengths, T)
    x = 1.5 * rng.normal(size=(B, T, d)) + 0.5
    return {"x": x, "params": params, "num_heads": h, "norm_first": norm_first, "activation": activation,
            "causal": causal, "key_keep": key_keep, "mask": _student_mask(causal, key_keep, T, T)}


def _describe_block(setting) -> str:
    B, T, d, h, d_ff, norm_first, activation, causal, padding = setting
    ln = "pre-LN (norm_first=True)" if norm_first else "post-LN (norm_first=False)"
    masks = [m for m, on in (("causal mask", causal), ("padding mask", padding)) if on]
    return (f"B={B}, T={T}, d_model={d}, num_heads={h}, d_ff={d_ff}, {ln}, activation='{activation}', "
            f"{' and '.join(masks) if masks else 'no mask'}")


def _block_cases(hidden: bool) -> list[Case]:
    settings = [(s, "") for s in _BLOCK_SETTINGS] + ([(s, "hidden") for s in _BLOCK_HIDDEN] if hidden else [])
    return [Case(_describe_block(s), _block_inputs(n, s, salt),
                 lambda index: f"output[b={index[0]}, t={index[1]}, channel {index[2]}]")
            for n, (s, salt) in enumerate(settings, start=1)]


def torch_encoder_layer(inputs) -> np.ndarray:
    """``nn.TransformerEncoderLayer(batch_first=True, dropout=0)`` in eval mode with the case's weights."""
    p = _params_t(inputs["params"])
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
        out = layer(_t(inputs["x"]), src_mask=src_mask, src_key_padding_mask=kpm)
    return out.detach().numpy()


def block_variant_torch(x, p, num_heads, norm_first, activation, mask, *, force_norm_first=None,
                        shared_norm=False, act=None, residual_from_normed=False, final_norm=False):
    """The encoder block (float64 torch tensors) with the known mistakes as options."""
    d = x.shape[-1]
    if force_norm_first is not None:
        norm_first = force_norm_first
    act = act or activation
    norm2 = ("norm1", "norm1") if shared_norm else ("norm2", "norm2")

    def ln(y, name):
        return F.layer_norm(y, (d,), p[f"{name}_weight"], p[f"{name}_bias"], eps=1e-5)

    def sa(y):
        return mha_variant_torch(y, y, y, p, num_heads, mask)

    def ff(y):
        hidden = y @ p["W_1"].T + p["b_1"]
        hidden = {"relu": F.relu, "gelu": F.gelu, "gelu_tanh": lambda z: F.gelu(z, approximate="tanh")}[act](hidden)
        return hidden @ p["W_2"].T + p["b_2"]

    if norm_first:
        if residual_from_normed:
            y = ln(x, "norm1")
            x = y + sa(y)
            y = ln(x, norm2[0])
            x = y + ff(y)
        else:
            x = x + sa(ln(x, "norm1"))
            x = x + ff(ln(x, norm2[0]))
        if final_norm:
            x = ln(x, norm2[0])
        return x
    x = ln(x + sa(x), "norm1")
    return ln(x + ff(x), norm2[0])


def _block_variant(**kw):
    def compute(inputs):
        return block_variant_torch(_t(inputs["x"]), _params_t(inputs["params"]), inputs["num_heads"],
                                   inputs["norm_first"], inputs["activation"], _mask_t(inputs["mask"]), **kw).numpy()
    return compute


def _only_if(flag_name, value, compute):
    """A mistake that applies only to the cases with ``inputs[flag_name] == value``."""
    def guarded(inputs):
        if inputs[flag_name] != value:
            raise ValueError("not applicable")
        return compute(inputs)
    return guarded


BLOCK_MISTAKES = [
    Mistake("post-LN where pre-LN was asked: with norm_first=True the LayerNorm comes before each sublayer",
            "pre-LN: x = x + attn(norm1(x)); x = x + ffn(norm2(x)) — no LayerNorm after the residual sums.",
            _only_if("norm_first", True, _block_variant(force_norm_first=False))),
    Mistake("pre-LN where post-LN was asked: with norm_first=False the LayerNorm comes after each residual sum",
            "post-LN: x = norm1(x + attn(x)); x = norm2(x + ffn(x)).",
            _only_if("norm_first", False, _block_variant(force_norm_first=True))),
    Mistake("one LayerNorm (norm1) used for both sublayers: the feed-forward sublayer has its own norm2",
            "use norm1_weight/norm1_bias around the attention and norm2_weight/norm2_bias around the feed-forward.",
            _block_variant(shared_norm=True)),
    Mistake("ReLU used where activation='gelu' was asked", "apply F.gelu (exact, erf-based) when activation == 'gelu'.",
            _only_if("activation", "gelu", _block_variant(act="relu"))),
    Mistake("GELU used where activation='relu' was asked", "apply F.relu when activation == 'relu'.",
            _only_if("activation", "relu", _block_variant(act="gelu"))),
    Mistake("the tanh approximation of GELU was used; nn.TransformerEncoderLayer uses the exact (erf) GELU",
            "use F.gelu(h) (approximate='none'), not approximate='tanh'.",
            _only_if("activation", "gelu", _block_variant(act="gelu_tanh"))),
    Mistake("pre-LN residual taken from the normalised input (x = norm1(x); x = x + attn(x)): the residual "
            "path must carry the un-normalised x",
            "x = x + attn(norm1(x)); x = x + ffn(norm2(x)).",
            _only_if("norm_first", True, _block_variant(residual_from_normed=True))),
    Mistake("an extra LayerNorm after the pre-LN block: nn.TransformerEncoderLayer(norm_first=True) ends with "
            "the residual sum",
            "the final LayerNorm of a pre-LN network belongs to the whole encoder stack, not to each block.",
            _only_if("norm_first", True, _block_variant(final_norm=True))),
]

BLOCK = Exercise(
    function="transformer_encoder_block",
    forbidden=_LIBRARY_MHA + ("torch.nn.TransformerEncoderLayer",),
    reference_name="torch.nn.TransformerEncoderLayer(batch_first=True, dropout=0) in eval mode with your weights",
    make_cases=_block_cases,
    reference=torch_encoder_layer,
    call=lambda fn, inputs: _plain(fn(_t(inputs["x"]), _params_t(inputs["params"]), inputs["num_heads"],
                                      norm_first=inputs["norm_first"], activation=inputs["activation"],
                                      mask=_mask_t(inputs["mask"]))),
    mistakes=BLOCK_MISTAKES,
    hint="post-LN: x = norm1(x + attn(x)); x = norm2(x + ffn(x)). pre-LN: x = x + attn(norm1(x)); "
         "x = x + ffn(norm2(x)). ffn(y) = act(y @ W_1.T + b_1) @ W_2.T + b_2; LayerNorm with eps=1e-5. "
         "If multi_head_attention does not pass its own check yet, fix it first.",
)

# --------------------------------------------------------------------------- exercises 5–7: costs


_EXACT = Tolerance(atol=0.5, rtol=0.0)   # counts and byte sizes are integers


def _numbers(values) -> np.ndarray:
    out = []
    for v in values:
        if isinstance(v, torch.Tensor):
            v = v.item() if v.numel() == 1 else v
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError(f"expected a number (int), got {type(v).__name__}")
        out.append(float(v))
    return np.array(out)


def _settings_case(text: str, settings: list, names: str, function: str) -> Case:
    keys = names.split(", ")

    def describe(index):
        args = ", ".join(f"{k}={v}" for k, v in zip(keys, settings[index[0]]))
        return f"{function}({args})"
    return Case(text, {"settings": settings}, describe)


def torch_mha_param_count(d_model: int, num_heads: int, bias: bool = True) -> int:
    """The number of parameters of a real ``nn.MultiheadAttention``, built on the meta device."""
    mha = torch.nn.MultiheadAttention(d_model, num_heads, bias=bias, device="meta")
    return sum(p.numel() for p in mha.parameters())


_PARAM_SETTINGS = [(512, 8, True), (1024, 16, True), (512, 8, False), (64, 4, True), (768, 12, True)]
_PARAM_HIDDEN = [(256, 1, True), (96, 6, False), (2048, 32, True)]


def _param_variant(kind):
    def one(d, h, bias):
        b = 1 if bias else 0
        if kind == "no_bias":
            return 4 * d * d
        if kind == "qkv_only":
            return 3 * (d * d + b * d)
        if kind == "per_head":
            return 4 * h * (d * d + b * d)
        if kind == "head_dim":
            d_k = d // h
            return 4 * (d * d_k + b * d_k)
        raise ValueError(kind)
    return lambda inputs: np.array([one(*s) for s in inputs["settings"]], dtype=np.float64)


PARAMS = Exercise(
    function="mha_param_count",
    reference_name="sum(p.numel() for p in nn.MultiheadAttention(d_model, num_heads, bias=bias).parameters())",
    make_cases=lambda hidden: [_settings_case(
        "settings of (d_model, num_heads, bias), the first one from the lecture (d_model=512, 8 heads)",
        _PARAM_SETTINGS + (_PARAM_HIDDEN if hidden else []), "d_model, num_heads, bias", "mha_param_count")],
    reference=lambda inputs: np.array([torch_mha_param_count(*s) for s in inputs["settings"]], dtype=np.float64),
    call=lambda fn, inputs: _numbers([fn(*s) for s in inputs["settings"]]),
    mistakes=[
        Mistake("the biases were not counted: each of the four projections has d_model biases when bias=True",
                "Linear(d, d) has d·d weights + d biases.", _param_variant("no_bias")),
        Mistake("only W_q, W_k, W_v were counted: the output projection W_o is a fourth Linear(d_model, d_model)",
                "4 projections: 4·(d² + d).", _param_variant("qkv_only")),
        Mistake("every head was given its own full d_model × d_model projections: the heads share one "
                "Linear(d_model, d_model) per role, split into num_heads slices of d_k columns",
                "the parameter count does not depend on num_heads: 4·(d² + d).", _param_variant("per_head")),
        Mistake("the projections were counted as d_model × d_k: together the heads produce all d_model outputs",
                "each projection maps d_model → num_heads·d_k = d_model.", _param_variant("head_dim")),
    ],
    tolerance=_EXACT,
    hint="four Linear(d_model, d_model) layers (W_q, W_k, W_v, W_o): 4·(d_model² + d_model) with biases, "
         "4·d_model² without; num_heads does not change the count.",
)

_DTYPES = {1: torch.int8, 2: torch.float16, 4: torch.float32, 8: torch.float64}


def torch_attention_matrix_bytes(seq_len, num_heads, batch_size=1, bytes_per_value=2) -> int:
    """Bytes of the (B, h, n, n) score tensor, measured on a tensor allocated on the meta device."""
    scores = torch.empty(batch_size, num_heads, seq_len, seq_len, dtype=_DTYPES[bytes_per_value], device="meta")
    return scores.numel() * scores.element_size()


_MATRIX_SETTINGS = [(1024, 16, 1, 2), (4096, 16, 1, 2), (16384, 16, 1, 2), (65536, 16, 1, 2),
                    (2048, 8, 4, 4), (512, 12, 8, 2)]
_MATRIX_HIDDEN = [(100, 3, 2, 8), (8192, 32, 1, 2)]


def _matrix_variant(kind):
    def one(n, h, b, nbytes):
        return {"no_heads": n * n * b * nbytes, "no_batch": n * n * h * nbytes, "values": n * n * h * b,
                "bits": n * n * h * b * nbytes * 8}[kind]
    return lambda inputs: np.array([one(*s) for s in inputs["settings"]], dtype=np.float64)


MATRIX = Exercise(
    function="attention_matrix_bytes",
    reference_name="numel() · element_size() of a (batch, heads, n, n) tensor of that dtype",
    make_cases=lambda hidden: [_settings_case(
        "settings of (seq_len, num_heads, batch_size, bytes_per_value); the first four are the lecture's "
        "n = 1K, 4K, 16K, 64K with 16 heads in fp16",
        _MATRIX_SETTINGS + (_MATRIX_HIDDEN if hidden else []), "seq_len, num_heads, batch_size, bytes_per_value",
        "attention_matrix_bytes")],
    reference=lambda inputs: np.array([torch_attention_matrix_bytes(*s) for s in inputs["settings"]], dtype=np.float64),
    call=lambda fn, inputs: _numbers([fn(*s) for s in inputs["settings"]]),
    mistakes=[
        Mistake("the heads were not counted: every head has its own n × n matrix", "multiply by num_heads.",
                _matrix_variant("no_heads")),
        Mistake("the batch size was not counted: every sequence of the batch has its own matrices",
                "multiply by batch_size.", _matrix_variant("no_batch")),
        Mistake("you counted values, not bytes: multiply by bytes_per_value", "fp16 = 2 bytes per value.",
                _matrix_variant("values")),
        Mistake("you counted bits, not bytes", "bytes_per_value is already in bytes; do not multiply by 8.",
                _matrix_variant("bits")),
    ],
    tolerance=_EXACT,
    hint="batch_size · num_heads · seq_len² · bytes_per_value.",
)


def torch_kv_cache_bytes(seq_len, num_layers, num_kv_heads, head_dim, batch_size=1, bytes_per_value=2) -> int:
    """Bytes of the cached K and V tensors of every layer, allocated on the meta device."""
    total = 0
    for _ in range(num_layers):
        for _kv in ("K", "V"):
            cache = torch.empty(batch_size, num_kv_heads, seq_len, head_dim, dtype=_DTYPES[bytes_per_value],
                                device="meta")
            total += cache.numel() * cache.element_size()
    return total


_KV_SETTINGS = [(4096, 32, 16, 64, 1, 2), (4096, 32, 1, 64, 1, 2), (4096, 32, 4, 64, 1, 2),
                (2048, 24, 8, 128, 2, 2), (1000, 2, 3, 16, 4, 4)]
_KV_HIDDEN = [(8192, 80, 8, 128, 1, 2), (77, 5, 2, 32, 3, 8)]


def _kv_variant(kind):
    def one(n, L, kv, d_k, b, nbytes):
        full = 2 * L * b * n * kv * d_k * nbytes
        return {"no_two": full // 2, "no_layers": full // L, "no_batch": full // b,
                "values": full // nbytes}[kind]
    return lambda inputs: np.array([one(*s) for s in inputs["settings"]], dtype=np.float64)


KV = Exercise(
    function="kv_cache_bytes",
    reference_name="the bytes of the K and V cache tensors (batch, kv_heads, n, head_dim) of every layer",
    make_cases=lambda hidden: [_settings_case(
        "settings of (seq_len, num_layers, num_kv_heads, head_dim, batch_size, bytes_per_value); the first "
        "three are the lecture's MHA (16 KV heads), MQA (1) and GQA (4) at n=4096, 32 layers, d_k=64, fp16",
        _KV_SETTINGS + (_KV_HIDDEN if hidden else []),
        "seq_len, num_layers, num_kv_heads, head_dim, batch_size, bytes_per_value", "kv_cache_bytes")],
    reference=lambda inputs: np.array([torch_kv_cache_bytes(*s) for s in inputs["settings"]], dtype=np.float64),
    call=lambda fn, inputs: _numbers([fn(*s) for s in inputs["settings"]]),
    mistakes=[
        Mistake("the factor 2 for K and V is missing: the cache holds both keys and values",
                "2 · num_layers · batch_size · seq_len · num_kv_heads · head_dim · bytes_per_value.",
                _kv_variant("no_two")),
        Mistake("the layers were not counted: every layer caches its own K and V", "multiply by num_layers.",
                _kv_variant("no_layers")),
        Mistake("the batch size was not counted", "multiply by batch_size.", _kv_variant("no_batch")),
        Mistake("you counted values, not bytes: multiply by bytes_per_value", "fp16 = 2 bytes per value.",
                _kv_variant("values")),
    ],
    tolerance=_EXACT,
    hint="2 (K and V) · num_layers · batch_size · seq_len · num_kv_heads · head_dim · bytes_per_value; "
         "MHA has num_kv_heads = num_heads, MQA 1, GQA the number of groups.",
)

EXERCISES = {e.function: e for e in (SDPA, MHA, PE, BLOCK, PARAMS, MATRIX, KV)}

# --------------------------------------------------------------------------- check functions


def check_scaled_dot_product_attention(scaled_dot_product_attention, hidden: bool = False) -> None:
    """Check ``scaled_dot_product_attention(q, k, v, mask=None) -> (output, weights)``."""
    show(run_check(SDPA, scaled_dot_product_attention, hidden))


def check_multi_head_attention(multi_head_attention, hidden: bool = False) -> None:
    """Check ``multi_head_attention`` against ``nn.MultiheadAttention`` loaded with the same weights."""
    show(run_check(MHA, multi_head_attention, hidden))


def check_positional_encoding(positional_encoding, hidden: bool = False) -> None:
    """Check ``positional_encoding(max_len, d_model)`` against the sinusoidal formula."""
    show(run_check(PE, positional_encoding, hidden))


def check_transformer_encoder_block(transformer_encoder_block, hidden: bool = False) -> None:
    """Check the encoder block against ``nn.TransformerEncoderLayer`` (post-LN and pre-LN, ReLU and GELU)."""
    show(run_check(BLOCK, transformer_encoder_block, hidden))


def check_mha_param_count(mha_param_count, hidden: bool = False) -> None:
    """Check ``mha_param_count`` against the parameters of real ``nn.MultiheadAttention`` modules."""
    show(run_check(PARAMS, mha_param_count, hidden))


def check_attention_matrix_bytes(attention_matrix_bytes, hidden: bool = False) -> None:
    """Check ``attention_matrix_bytes`` against the size of real score tensors."""
    show(run_check(MATRIX, attention_matrix_bytes, hidden))


def check_kv_cache_bytes(kv_cache_bytes, hidden: bool = False) -> None:
    """Check ``kv_cache_bytes`` against the size of real K/V cache tensors."""
    show(run_check(KV, kv_cache_bytes, hidden))
