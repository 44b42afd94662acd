"""Exercise 3: ``positional_encoding(max_len, d_model) -> (max_len, d_model)``, the sinusoidal encoding
PE[p, 2i] = sin(p / 10000^(2i/d_model)), PE[p, 2i+1] = cos(p / 10000^(2i/d_model)).
"""
from __future__ import annotations

import numpy as np
import torch

from utils.checks.adapters import returned_array
from utils.checks.characterise import Layout
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.rules import require_dtype

# (max_len, d_model, description)
_SETTINGS = [(4, 4, "hand-checkable: max_len=4, d_model=4 (frequencies 1 and 1/100)"),
             (50, 16, "max_len=50, d_model=16"), (128, 64, "max_len=128, d_model=64")]
_HIDDEN_SETTINGS = [(7, 2, "max_len=7, d_model=2 (one sin/cos pair)"), (30, 10, "max_len=30, d_model=10"),
                    (3, 12, "max_len=3, d_model=12 (fewer positions than columns)")]


def torch_positional_encoding(max_len: int, d_model: int) -> np.ndarray:
    """PE[p, 2i] = sin(p·ω_i), PE[p, 2i+1] = cos(p·ω_i), ω_i = 10000^(−2i/d_model), in float64."""
    position = torch.arange(max_len, dtype=torch.float64)[:, None]
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)
    angle = position / torch.pow(torch.tensor(10000.0, dtype=torch.float64), two_i / d_model)
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return pe.numpy()


def pe_variant(max_len: int, d_model: int, *, layout: str = "interleaved", exponent: str = "2i", start: int = 0,
               swap: bool = False) -> np.ndarray:
    """The encoding (max_len, d_model) in numpy with the known mistakes as options.

    ``layout`` "blocks": all sin columns, then all cos columns; ``exponent`` "i": ω_i = 10000^(−i/d_model),
    "column": column j gets its own 10000^(−j/d_model); ``start``: the first position; ``swap``: cos in the
    even columns, sin in the odd ones.
    """
    pos = np.arange(start, start + max_len, dtype=np.float64)[:, None]
    if exponent == "column":
        j = np.arange(d_model, dtype=np.float64)
        angle = pos * 10000.0 ** (-j / d_model)
        return np.where(np.arange(d_model) % 2 == 0, np.sin(angle), np.cos(angle))
    i = np.arange(d_model // 2, dtype=np.float64)
    angle = pos * 10000.0 ** (-(2 * i if exponent == "2i" else i) / d_model)
    first, second = (np.cos(angle), np.sin(angle)) if swap else (np.sin(angle), np.cos(angle))
    if layout == "blocks":
        return np.concatenate([first, second], axis=1)
    out = np.empty((max_len, d_model))
    out[:, 0::2], out[:, 1::2] = first, second
    return out


def _cases(hidden: bool) -> list[Case]:
    return [Case(text, {"max_len": n, "d_model": d},
                 lambda index: f"PE[position {index[0]}, column {index[1]}] "
                               f"({'sin' if index[1] % 2 == 0 else 'cos'}, i={index[1] // 2})")
            for (n, d, text), _ in visible_then_hidden(_SETTINGS, _HIDDEN_SETTINGS, hidden)]


def _variant(**switches):
    return lambda inputs: pe_variant(inputs["max_len"], inputs["d_model"], **switches)


DTYPE_RULE = "positional_encoding returns a float64 tensor (Exercise 3, Task)"


def _call(fn, inputs):
    return returned_array(require_dtype(fn(inputs["max_len"], inputs["d_model"]), "float64", what="the encoding",
                                        rule=DTYPE_RULE))


PE = Exercise(
    function="positional_encoding",
    reference_name="the sinusoidal positional encoding of section 3, in float64",
    make_cases=_cases,
    reference=lambda inputs: torch_positional_encoding(inputs["max_len"], inputs["d_model"]),
    call=_call,
    mistakes=[
        Mistake("sin/cos interleaving swapped: cos went to the even columns and sin to the odd ones",
                "the even column of each pair holds the sine, the odd one the cosine (section 3's formula).",
                _variant(swap=True)),
        Mistake("sin and cos were concatenated in two halves instead of interleaved",
                "sine and cosine of the same frequency sit next to each other: even columns sine, odd columns "
                "cosine.",
                _variant(layout="blocks")),
        Mistake("the exponent uses i/d_model instead of 2i/d_model",
                "the exponent of pair i is the index of its even column, 2i, over d_model (section 3's formula).",
                _variant(exponent="i")),
        Mistake("every column got its own frequency 10000^(−j/d_model): the sin and cos of a pair must share ω_i",
                "columns 2i and 2i+1 turn at the same angular frequency ω_i (section 3).",
                _variant(exponent="column")),
        Mistake("positions start at 1: the first row must be position 0 (all sin 0, all cos 1)",
                "positions run from 0 to max_len − 1.", _variant(start=1)),
    ],
    hint="compare with section 3's formula: which columns hold the sine and the cosine, the frequency each pair "
         "uses, positions from 0; return a float64 tensor of shape (max_len, d_model).",
    section="3. Sinusoidal positional encoding",
    layout=Layout(axes=("position", "column")),
    covers={
        "d_model = 2 (one pair)": lambda c: c.inputs["d_model"] == 2,
        "d_model not a power of 2": lambda c: c.inputs["d_model"] & (c.inputs["d_model"] - 1) != 0,
        "fewer positions than columns": lambda c: c.inputs["max_len"] < c.inputs["d_model"],
        "positions of 100 or more": lambda c: c.inputs["max_len"] > 100,
        "d_model of 64 or more (slow pairs)": lambda c: c.inputs["d_model"] >= 64,
    },
)


def check_positional_encoding(positional_encoding, hidden: bool = False) -> None:
    """Check ``positional_encoding(max_len, d_model)`` against the sinusoidal formula."""
    show(run_check(PE, positional_encoding, hidden))
