"""``make_sequences(text, char2idx) -> (inputs, targets)``: one-hot inputs (T−1, V) for ``text[:-1]`` and
target indices (T−1,) for ``text[1:]``.

Compared as one array: the inputs with the targets as an extra last column.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from utils.checks.compare import EXACT
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.rnn.shared import RANDOM_TEXT, array_or_value, text_of

TEXTS = ["abca", "Deep Learning", "hello world", "a stitch in time saves nine"]
HIDDEN_TEXTS = ["Hello World", "xy", RANDOM_TEXT, RANDOM_TEXT]


def _cases(hidden: bool) -> list[Case]:
    cases = []
    for number, (setting, salt) in enumerate(visible_then_hidden(TEXTS, HIDDEN_TEXTS, hidden), start=1):
        text = text_of(setting, "make_sequences", number, salt)
        chars = sorted(set(text))
        V = len(chars)

        def describe(index, text=text, V=V):
            t, j = index
            if j < V:
                return f"inputs[{t}, {j}] (one-hot of input character {text[t]!r})"
            return f"targets[{t}] (should be the index of {text[t + 1]!r})"
        cases.append(Case(f"text {text!r} (V={V}); compared: inputs (T−1, V) with targets as an extra last column",
                          {"text": text, "char2idx": {c: i for i, c in enumerate(chars)}}, describe))
    return cases


def _call(fn, inputs):
    result = fn(inputs["text"], inputs["char2idx"])
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        return result
    x, y = array_or_value(result[0]), array_or_value(result[1])
    if not isinstance(x, np.ndarray):
        return result[0]
    if not isinstance(y, np.ndarray):
        return result[1]
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
        return x if x.ndim != 2 else y
    return np.column_stack([x, y])


def _reference(inputs):
    # one-hot rows are rows of the identity: torch.nn.functional.one_hot
    text, c2i = inputs["text"], inputs["char2idx"]
    x = F.one_hot(torch.tensor([c2i[c] for c in text[:-1]]), len(c2i)).double()
    y = torch.tensor([c2i[c] for c in text[1:]], dtype=torch.float64)
    return torch.column_stack([x, y]).numpy()


def _sequences_made(kind):
    def compute(inputs):
        text, c2i = inputs["text"], inputs["char2idx"]
        V = len(c2i)
        src, dst = text[:-1], text[1:]
        if kind == "swapped":
            src, dst = text[1:], text[:-1]
        elif kind == "no_shift":
            src, dst = text[:-1], text[:-1]
        elif kind == "full":
            src, dst = text, text
        x = np.zeros((len(src), V))
        x[np.arange(len(src)), [c2i[c] for c in src]] = 1.0
        if kind == "index_plus_one":
            x = np.zeros((len(src), V))
            idx = np.array([c2i[c] for c in src]) + 1
            keep = idx < V
            x[np.arange(len(src))[keep], idx[keep]] = 1.0
        return np.column_stack([x, [c2i[c] for c in dst]])
    return compute


MISTAKES = [
    Mistake("input and target sequences are swapped: inputs come from text[1:] and targets from text[:-1]",
            "the model reads character t and predicts character t+1: input = text[:-1], target = text[1:].",
            _sequences_made("swapped")),
    Mistake("the target is not shifted: each target equals its own input character",
            "target = text[1:] is the input shifted left by one.", _sequences_made("no_shift")),
    Mistake("the whole text is used for both inputs and targets (no shift, one step too many)",
            "input = text[:-1] (all but the last), target = text[1:] (all but the first).",
            _sequences_made("full")),
    Mistake("the one-hot 1 is one place too far right (index + 1)",
            "vec[idx] = 1.0 with idx = char2idx[ch], which starts at 0.", _sequences_made("index_plus_one")),
]

SEQUENCES = Exercise(
    function="make_sequences",
    reference_name="one-hot(text[:-1]) and indices of text[1:] (torch.nn.functional.one_hot)",
    make_cases=_cases,
    reference=_reference,
    call=_call,
    mistakes=MISTAKES,
    tolerance=EXACT,
    hint="inputs = torch.stack([one_hot(char2idx[ch], V) for ch in text[:-1]]); "
         "targets = torch.tensor([char2idx[ch] for ch in text[1:]], dtype=torch.long).",
)


def check_make_sequences(make_sequences, hidden: bool = False) -> None:
    """Check ``make_sequences(text, char2idx) -> (one-hot inputs, target indices)``."""
    show(run_check(SEQUENCES, make_sequences, hidden))
