"""Exercises 5–7, what attention costs (whole numbers, checked exactly):

* ``mha_param_count(d_model, num_heads, bias=True) -> int``
* ``attention_matrix_bytes(seq_len, num_heads, batch_size=1, bytes_per_value=2) -> int``
* ``kv_cache_bytes(seq_len, num_layers, num_kv_heads, head_dim, batch_size=1, bytes_per_value=2) -> int``

Each check has one case: the student's function is called on every setting, and the numbers are
compared with the parameters and tensors of real modules built on the ``meta`` device (no memory used).
"""
from __future__ import annotations

import numpy as np
import torch

from utils.checks.characterise import Layout
from utils.checks.compare import EXACT
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.rules import int_answers


def _settings_case(text: str, settings: list, hidden_settings: list, hidden: bool, names: str,
                   function: str) -> list[Case]:
    """One case holding every setting (the hidden ones after the visible ones when ``hidden``)."""
    settings = [setting for setting, _ in visible_then_hidden(settings, hidden_settings, hidden)]
    keys = names.split(", ")

    def describe(index):
        args = ", ".join(f"{k}={v}" for k, v in zip(keys, settings[index[0]], strict=False))
        return f"{function}({args})"
    return [Case(text, {"settings": settings}, describe, layout=Layout(axes=("call",)))]


def _per_setting(one):
    """A mistake computed setting by setting, as one float64 array."""
    return lambda inputs: np.array([one(*s) for s in inputs["settings"]], dtype=np.float64)


def _int_call(name: str):
    """How to call ``name``: once per setting; each answer must be an int (the docstrings: "Returns an int")."""
    return lambda fn, inputs: _call(name, fn, inputs)


def _call(name, fn, inputs):
    return int_answers(fn, inputs["settings"], name, f"{name} returns an int (its docstring in Exercise 5)")


def _settings(c: Case) -> list[tuple]:
    return c.inputs["settings"]


def _batch_and_bytes_covers(required: int) -> dict:
    """The input space of a function of ``required`` positional arguments, then ``batch_size=1`` and
    ``bytes_per_value=2``: both left at their defaults, the byte size left at its default with a batch, a batch, and
    another byte size."""
    batch, size = required, required + 1
    return {
        "the defaults (batch_size=1, bytes_per_value=2)": lambda c: any(len(s) == required for s in _settings(c)),
        "bytes_per_value left at its default with batch_size 2 or more":
            lambda c: any(len(s) == batch + 1 and s[batch] >= 2 for s in _settings(c)),
        "batch_size 2 or more": lambda c: any(len(s) > batch and s[batch] >= 2 for s in _settings(c)),
        "bytes_per_value other than 2": lambda c: any(len(s) == size + 1 and s[size] != 2 for s in _settings(c)),
    }


# --------------------------------------------------------------------------- exercise 5: mha_param_count

# (d_model, num_heads, bias); a shorter setting leaves bias at its default (True)
_PARAM_SETTINGS = [(512, 8), (1024, 16, True), (512, 8, False), (64, 4, True), (768, 12, True)]
_PARAM_HIDDEN = [(256, 1, True), (96, 6, False), (2048, 32, True), (100, 5)]


def torch_mha_param_count(d_model: int, num_heads: int, bias: bool = True) -> int:
    """The number of parameters of a real ``nn.MultiheadAttention``, built on the meta device."""
    module = torch.nn.MultiheadAttention(d_model, num_heads, bias=bias, device="meta")
    return sum(p.numel() for p in module.parameters())


def _param_count_variant(kind: str):
    def one(d, h, bias=True):
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
    return _per_setting(one)


PARAMS = Exercise(
    function="mha_param_count",
    reference_name="sum(p.numel() for p in nn.MultiheadAttention(d_model, num_heads, bias=bias).parameters())",
    make_cases=lambda hidden: _settings_case(
        "settings of (d_model, num_heads, bias), the first one from the lecture (d_model=512, 8 heads)",
        _PARAM_SETTINGS, _PARAM_HIDDEN, hidden, "d_model, num_heads, bias", "mha_param_count"),
    reference=_per_setting(torch_mha_param_count),
    call=_int_call("mha_param_count"),
    mistakes=[
        Mistake("the biases were not counted: each of the four projections has d_model biases when bias=True",
                "a Linear layer with bias=True has one bias per output besides its weight matrix.",
                _param_count_variant("no_bias")),
        Mistake("only W_q, W_k, W_v were counted: the output projection W_o is a fourth Linear(d_model, d_model)",
                "count the output projection W_o as well (section 5a names the four projections).",
                _param_count_variant("qkv_only")),
        Mistake("every head was given its own full d_model × d_model projections: the heads share one "
                "Linear(d_model, d_model) per role, split into num_heads slices of d_k columns",
                "the heads share the projections, so the count does not depend on num_heads.",
                _param_count_variant("per_head")),
        Mistake("the projections were counted as d_model × d_k: together the heads produce all d_model outputs",
                "each projection maps d_model inputs to d_model outputs, all heads together.",
                _param_count_variant("head_dim")),
    ],
    tolerance=EXACT,
    hint="count the weights and the biases of each projection of section 5a; the heads share them, so num_heads "
         "does not change the count. Return an int.",
    section="5. What attention costs",
    covers={
        "bias=False": lambda c: any(len(s) == 3 and not s[2] for s in _settings(c)),
        "bias left at its default": lambda c: any(len(s) == 2 for s in _settings(c)),
        "one head": lambda c: any(s[1] == 1 for s in _settings(c)),
        "several heads": lambda c: any(s[1] > 1 for s in _settings(c)),
        "d_model not a power of 2": lambda c: any(s[0] & (s[0] - 1) for s in _settings(c)),
    },
)

# --------------------------------------------------------------------------- exercise 6: attention_matrix_bytes

_DTYPES = {1: torch.int8, 2: torch.float16, 4: torch.float32, 8: torch.float64}   # bytes per value -> dtype

# (seq_len, num_heads, batch_size, bytes_per_value); shorter settings leave the last ones at their defaults
# (batch_size=1, bytes_per_value=2): the lecture's four are called as attention_matrix_bytes(n, 16).
_MATRIX_SETTINGS = [(1024, 16), (4096, 16), (16384, 16), (65536, 16),
                    (2048, 8, 4, 4), (512, 12, 8, 2), (300, 4, 3)]
_MATRIX_HIDDEN = [(100, 3, 2, 8), (8192, 32, 1, 2), (77, 5), (50, 6, 5)]


def torch_attention_matrix_bytes(seq_len, num_heads, batch_size=1, bytes_per_value=2) -> int:
    """Bytes of the (B, h, n, n) score tensor, measured on a tensor allocated on the meta device."""
    scores = torch.empty(batch_size, num_heads, seq_len, seq_len, dtype=_DTYPES[bytes_per_value], device="meta")
    return scores.numel() * scores.element_size()


def _matrix_variant(kind: str):
    def one(n, h, b=1, nbytes=2):
        return {"no_heads": n * n * b * nbytes, "no_batch": n * n * h * nbytes, "values": n * n * h * b,
                "bits": n * n * h * b * nbytes * 8, "linear": n * h * b * nbytes}[kind]
    return _per_setting(one)


MATRIX = Exercise(
    function="attention_matrix_bytes",
    reference_name="numel() · element_size() of a (batch, heads, n, n) tensor of that dtype",
    make_cases=lambda hidden: _settings_case(
        "settings of (seq_len, num_heads, batch_size, bytes_per_value); the first four are the lecture's "
        "n = 1K, 4K, 16K, 64K with 16 heads in fp16",
        _MATRIX_SETTINGS, _MATRIX_HIDDEN, hidden, "seq_len, num_heads, batch_size, bytes_per_value",
        "attention_matrix_bytes"),
    reference=_per_setting(torch_attention_matrix_bytes),
    call=_int_call("attention_matrix_bytes"),
    mistakes=[
        Mistake("the heads were not counted: every head has its own n × n matrix",
                "every head of every sequence has its own matrix of scores.", _matrix_variant("no_heads")),
        Mistake("the batch size was not counted: every sequence of the batch has its own matrices",
                "every sequence of the batch has its own matrices.", _matrix_variant("no_batch")),
        Mistake("you counted values, not bytes: multiply by bytes_per_value",
                "each value takes bytes_per_value bytes (fp16 = 2).", _matrix_variant("values")),
        Mistake("you counted bits, not bytes", "bytes_per_value is already in bytes.", _matrix_variant("bits")),
        Mistake("seq_len was counted once: the matrix of one head holds n × n scores",
                "every query has a score for every key, so one head's matrix is n by n.", _matrix_variant("linear")),
    ],
    tolerance=EXACT,
    hint="count the values of the (batch, heads, n, n) score tensor of section 5b, then their bytes. Return an int.",
    section="5. What attention costs",
    covers={
        **_batch_and_bytes_covers(required=2),
        "seq_len not a power of 2": lambda c: any(s[0] & (s[0] - 1) for s in _settings(c)),
    },
)

# --------------------------------------------------------------------------- exercise 7: kv_cache_bytes

# (seq_len, num_layers, num_kv_heads, head_dim, batch_size, bytes_per_value); shorter settings leave the last
# ones at their defaults (batch_size=1, bytes_per_value=2), as the lecture's calls do.
_KV_SETTINGS = [(4096, 32, 16, 64), (4096, 32, 1, 64), (4096, 32, 4, 64),
                (2048, 24, 8, 128, 2, 2), (1000, 2, 3, 16, 4, 4), (500, 3, 2, 8, 3)]
_KV_HIDDEN = [(8192, 80, 8, 128, 1, 2), (77, 5, 2, 32, 3, 8), (33, 7, 3, 16), (20, 4, 5, 8, 6)]


def torch_kv_cache_bytes(seq_len, num_layers, num_kv_heads, head_dim, batch_size=1, bytes_per_value=2) -> int:
    """Bytes of the cached K and V tensors of every layer, allocated on the meta device."""
    total = 0
    for _layer in range(num_layers):
        for _kv in ("K", "V"):
            cache = torch.empty(batch_size, num_kv_heads, seq_len, head_dim, dtype=_DTYPES[bytes_per_value],
                                device="meta")
            total += cache.numel() * cache.element_size()
    return total


def _kv_variant(kind: str):
    def one(n, L, kv, d_k, b=1, nbytes=2):
        full = 2 * L * b * n * kv * d_k * nbytes
        return {"no_two": full // 2, "no_layers": full // L, "no_batch": full // b,
                "values": full // nbytes}[kind]
    return _per_setting(one)


KV = Exercise(
    function="kv_cache_bytes",
    reference_name="the bytes of the K and V cache tensors (batch, kv_heads, n, head_dim) of every layer",
    make_cases=lambda hidden: _settings_case(
        "settings of (seq_len, num_layers, num_kv_heads, head_dim, batch_size, bytes_per_value); the first "
        "three are the lecture's MHA (16 KV heads), MQA (1) and GQA (4) at n=4096, 32 layers, d_k=64, fp16",
        _KV_SETTINGS, _KV_HIDDEN, hidden, "seq_len, num_layers, num_kv_heads, head_dim, batch_size, bytes_per_value",
        "kv_cache_bytes"),
    reference=_per_setting(torch_kv_cache_bytes),
    call=_int_call("kv_cache_bytes"),
    mistakes=[
        Mistake("the factor 2 for K and V is missing: the cache holds both keys and values",
                "the cache holds two tensors per layer, one of keys and one of values.", _kv_variant("no_two")),
        Mistake("the layers were not counted: every layer caches its own K and V",
                "every layer keeps its own keys and values.", _kv_variant("no_layers")),
        Mistake("the batch size was not counted", "every sequence of the batch has its own cache.",
                _kv_variant("no_batch")),
        Mistake("you counted values, not bytes: multiply by bytes_per_value",
                "each value takes bytes_per_value bytes (fp16 = 2).", _kv_variant("values")),
    ],
    tolerance=EXACT,
    hint="count the values of the K and V tensors (batch, kv_heads, n, head_dim) of every layer (section 5c), "
         "then their bytes. Return an int.",
    section="5. What attention costs",
    covers={
        **_batch_and_bytes_covers(required=4),
        "one KV head (MQA)": lambda c: any(s[2] == 1 for s in _settings(c)),
        "an odd number of layers and of KV heads": lambda c: any(s[1] % 2 and s[2] % 2 for s in _settings(c)),
    },
)


def check_mha_param_count(mha_param_count, hidden: bool = False) -> None:
    """Check ``mha_param_count`` against the parameters of real ``nn.MultiheadAttention`` modules."""
    show(run_check(PARAMS, mha_param_count, hidden))


def check_attention_matrix_bytes(attention_matrix_bytes, hidden: bool = False) -> None:
    """Check ``attention_matrix_bytes`` against the size of real score tensors."""
    show(run_check(MATRIX, attention_matrix_bytes, hidden))


def check_kv_cache_bytes(kv_cache_bytes, hidden: bool = False) -> None:
    """Check ``kv_cache_bytes`` against the size of real K/V cache tensors."""
    show(run_check(KV, kv_cache_bytes, hidden))
