"""``build_vocab(text) -> (chars, char2idx, idx2char)``: sorted unique characters and both mappings.

Compared as one row per vocabulary entry i: (ord(chars[i]), char2idx[chars[i]], ord(idx2char[i])).
"""
from __future__ import annotations

import numpy as np

from utils.checks.compare import EXACT
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.rnn.shared import RANDOM_TEXT, text_of

TEXTS = ["Deep Learning", "hello world", "abcabc cab!", "To be, or not to be: that is the question."]
HIDDEN_TEXTS = ["Hello World", "banana bandana", RANDOM_TEXT, RANDOM_TEXT]
COLUMNS = ("ord(chars[i])", "char2idx[chars[i]]", "ord(idx2char[i]), −1 if missing")


def _describe_index(index):
    i, column = index
    return f"vocabulary entry i={i}, column {column}: {COLUMNS[column]}"


def _cases(hidden: bool) -> list[Case]:
    cases = []
    for number, (setting, salt) in enumerate(visible_then_hidden(TEXTS, HIDDEN_TEXTS, hidden), start=1):
        text = text_of(setting, "build_vocab", number, salt)
        cases.append(Case(f"text {text!r}; each row i is (ord(chars[i]), char2idx[chars[i]], ord(idx2char[i]))",
                          {"text": text}, _describe_index))
    return cases


def _call(fn, inputs):
    result = fn(inputs["text"])
    if not (isinstance(result, (tuple, list)) and len(result) == 3):
        return result
    chars, char2idx, idx2char = result

    def code(i):  # ord(idx2char[i]), or -1 where idx2char has no entry i
        try:
            return ord(idx2char[i])
        except (KeyError, IndexError):
            return -1
    rows = [[ord(ch), char2idx[ch], code(i)] for i, ch in enumerate(list(chars))]
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def _rows(chars, char2idx, idx2char):
    return np.array([[ord(ch), char2idx[ch], ord(idx2char[i])] for i, ch in enumerate(chars)], dtype=np.float64)


def _reference(inputs):
    # The standard pattern: chars = sorted(set(text)); both maps follow enumerate(chars).
    chars = sorted(set(inputs["text"]))
    return _rows(chars, {c: i for i, c in enumerate(chars)}, dict(enumerate(chars)))


def _vocabulary_built(kind):
    def compute(inputs):
        text = inputs["text"]
        if kind == "unsorted":
            chars = list(dict.fromkeys(text))
        elif kind == "reverse":
            chars = sorted(set(text), reverse=True)
        elif kind == "duplicates":
            chars = sorted(text)
        else:
            chars = sorted(set(text))
        char2idx = {c: i for i, c in enumerate(chars)}
        if kind == "positions":
            char2idx = {c: i for i, c in enumerate(text)}
        if kind == "start_one":
            rows = _rows(chars, {c: i + 1 for i, c in enumerate(chars)}, dict(enumerate(chars)))
            rows[:, 2] = [-1] + [ord(c) for c in chars[:-1]]   # idx2char = {i + 1: c}: no entry 0
            return rows
        return _rows(chars, char2idx, dict(enumerate(chars)))
    return compute


MISTAKES = [
    Mistake("vocabulary not sorted: the characters are in order of first appearance",
            "chars = sorted(set(text)): sorting makes the indices the same on every run and machine.",
            _vocabulary_built("unsorted")),
    Mistake("vocabulary sorted in reverse order", "use sorted(set(text)) without reverse=True.",
            _vocabulary_built("reverse")),
    Mistake("duplicates kept in the vocabulary: every character must appear once",
            "take set(text) before sorting.", _vocabulary_built("duplicates")),
    Mistake("char2idx was built from the positions in the text, not from the vocabulary",
            "char2idx = {ch: i for i, ch in enumerate(chars)}.", _vocabulary_built("positions")),
    Mistake("indices start at 1: the first character of the vocabulary must have index 0",
            "enumerate(chars) starts at 0; one-hot vectors have V entries, 0..V−1.",
            _vocabulary_built("start_one")),
]

VOCAB = Exercise(
    function="build_vocab",
    reference_name="chars = sorted(set(text)) with char2idx / idx2char from enumerate(chars)",
    make_cases=_cases,
    reference=_reference,
    call=_call,
    mistakes=MISTAKES,
    tolerance=EXACT,
    hint="chars = sorted(set(text)); char2idx = {ch: i for i, ch in enumerate(chars)}; "
         "idx2char = {i: ch for i, ch in enumerate(chars)}; return (chars, char2idx, idx2char).",
    exception_hints={"KeyError": "char2idx maps characters to indices and idx2char maps indices (0..V−1) to "
                                 "characters; check both are built from the sorted vocabulary."},
)


def check_build_vocab(build_vocab, hidden: bool = False) -> None:
    """Check ``build_vocab(text) -> (chars, char2idx, idx2char)``."""
    show(run_check(VOCAB, build_vocab, hidden))
