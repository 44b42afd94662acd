"""``make_sequences(text, char2idx) -> (inputs, targets)``: one-hot inputs (T−1, V) for ``text[:-1]`` and
target indices (T−1,) for ``text[1:]``, with V = ``len(char2idx)``.

Rules checked before the values (Exercise 1.2): ``inputs`` is a float tensor, ``targets`` holds integer
indices (``torch.long``), and each part has its own shape. The values are then compared as one array: the
inputs with the targets as an extra last column (a difference confined to the targets is reported as such).
Some cases hand over a ``char2idx`` that was not built from the text itself (a larger, differently ordered
vocabulary), as happens when a model's vocabulary comes from a whole corpus.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from utils.checks.characterise import Layout
from utils.checks.compare import EXACT
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.rules import RuleBroken, require_dtype, require_shape
from utils.rnn.shared import RANDOM_TEXT, array_or_value, text_of

# (text, vocabulary): None means the text's own sorted vocabulary
TEXTS = [("abca", None), ("Deep Learning", None), ("hello world", None), ("a stitch in time saves nine", None),
         ("banana", "zyxnba")]
HIDDEN_TEXTS = [("Hello World", None), ("xy", None), ("cab", "abcdefgh"),
                (RANDOM_TEXT, None), (RANDOM_TEXT, None)]
TARGETS_RULE = "targets is a torch.long tensor of character indices (Exercise 1.2)"
INPUTS_RULE = "inputs stacks float one-hot vectors (Exercise 1.2: one_hot returns a float tensor)"


def _cases(hidden: bool) -> list[Case]:
    cases = []
    for number, ((setting, vocabulary), salt) in enumerate(visible_then_hidden(TEXTS, HIDDEN_TEXTS, hidden),
                                                           start=1):
        text = text_of(setting, "make_sequences", number, salt)
        chars = list(vocabulary) if vocabulary else sorted(set(text))
        V = len(chars)
        char2idx = {c: i for i, c in enumerate(chars)}

        def describe(index, text=text, V=V):
            t, j = index
            if j < V:
                return f"inputs[{t}, {j}] (one-hot of input character {text[t]!r})"
            return f"targets[{t}] (should be the index of {text[t + 1]!r})"
        own = "" if vocabulary is None else f", char2idx = {char2idx} (a vocabulary not built from this text)"
        mask = np.zeros((len(text) - 1, V + 1), dtype=bool)
        mask[:, V] = True
        cases.append(Case(f"text {text!r} (V={V}{own})", {"text": text, "char2idx": char2idx}, describe,
                          regions={"the targets": mask}))
    return cases


def _targets_rule(y):
    require_dtype(y, "integer", what="targets", rule=TARGETS_RULE)
    name = str(getattr(y, "dtype", "")).replace("torch.", "")
    if name and name != "int64":
        raise RuleBroken(TARGETS_RULE, f"targets has dtype {name}")


def _call(fn, inputs):
    text, c2i = inputs["text"], inputs["char2idx"]
    result = fn(text, c2i)
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        return result
    x, y = result
    if isinstance(x, (list, tuple)) and x and isinstance(x[0], torch.Tensor):
        x = torch.stack(list(x))
    require_dtype(x, "floating", what="inputs", rule=INPUTS_RULE)
    _targets_rule(y)
    steps, V = len(text) - 1, len(c2i)
    require_shape(x, (steps, V), what="inputs", rule="inputs has shape (T − 1, V), with T = len(text) and "
                  "V = len(char2idx): the last character has no next one to predict (Exercise 1.2)")
    require_shape(y, (steps,), what="targets", rule="targets has shape (T − 1,): the first character is never "
                  "a target (Exercise 1.2)")
    x, y = array_or_value(x), array_or_value(y)
    if not isinstance(x, np.ndarray):
        return x
    if not isinstance(y, np.ndarray):
        return y
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
        index = dict(c2i)
        if kind == "own_vocabulary":   # the vocabulary rebuilt from the text, V = len(char2idx) kept
            index = {c: i for i, c in enumerate(sorted(set(text)))}
        x = np.zeros((len(src), V))
        x[np.arange(len(src)), [index[c] for c in src]] = 1.0
        if kind == "index_plus_one":
            x = np.zeros((len(src), V))
            idx = np.array([index[c] for c in src]) + 1
            keep = idx < V
            x[np.arange(len(src))[keep], idx[keep]] = 1.0
        return np.column_stack([x, [index[c] for c in dst]])
    return compute


MISTAKES = [
    Mistake("input and target sequences are swapped: the inputs come from the later characters",
            "the model reads character t and predicts the one after it: which slice of the text feeds the "
            "inputs, and which the targets? (see the table above Exercise 1.2)", _sequences_made("swapped")),
    Mistake("the targets are not shifted: each target is its own input character",
            "the target at step t is the NEXT character: the targets start one character later than the inputs.",
            _sequences_made("no_shift")),
    Mistake("the one-hot 1 is one place too far right (index + 1)",
            "the 1 goes at the character's index itself; indices start at 0.", _sequences_made("index_plus_one")),
    Mistake("the indices come from a vocabulary rebuilt from the text, not from the char2idx argument",
            "use the char2idx you are given for every index: the vocabulary may come from a larger corpus, "
            "in another order.", _sequences_made("own_vocabulary")),
]

SEQUENCES = Exercise(
    function="make_sequences",
    reference_name="one-hot inputs and next-character targets (torch.nn.functional.one_hot)",
    make_cases=_cases,
    reference=_reference,
    call=_call,
    mistakes=MISTAKES,
    tolerance=EXACT,
    hint="row t of inputs is the one-hot vector (length V = len(char2idx)) of character t; targets[t] is the "
         "index of the character that follows it. Look both up in char2idx.",
    exception_hints={"KeyError": "look every character up in the char2idx you are given (it may hold more "
                                 "characters than the text, in another order)."},
    section="Exercise 1.2",
    layout=Layout(axes=("time step", "column")),
    covers={
        "a text of two characters (one step)": lambda c: len(c.inputs["text"]) == 2,
        "a character that repeats": lambda c: len(set(c.inputs["text"])) < len(c.inputs["text"]),
        "upper- and lower-case letters": lambda c: any(ch.isupper() for ch in c.inputs["text"])
            and any(ch.islower() for ch in c.inputs["text"]),
        "a char2idx with characters that are not in the text": lambda c: len(c.inputs["char2idx"])
            > len(set(c.inputs["text"])),
        "a char2idx that is not in sorted order": lambda c: list(c.inputs["char2idx"])
            != sorted(c.inputs["char2idx"]),
    },
)


def check_make_sequences(make_sequences, hidden: bool = False) -> None:
    """Check ``make_sequences(text, char2idx) -> (one-hot inputs, target indices)``."""
    show(run_check(SEQUENCES, make_sequences, hidden))
