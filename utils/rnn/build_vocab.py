"""``build_vocab(text) -> (chars, char2idx, idx2char)``: sorted unique characters and both mappings.

Compared as three parts of equal length, one entry per vocabulary index i, every entry a character: ``chars[i]``,
the character that ``char2idx`` sends to i, and ``idx2char[i]`` (stored as code points, always shown as
characters; the parts are named in every message).
That ``chars`` is sorted is a rule of the exercise, checked before the values: it holds for any order a
student might produce (first appearance, reversed, ``list(set(text))``, which changes from run to run).
"""
from __future__ import annotations

import numpy as np

from utils.checks.characterise import Layout
from utils.checks.compare import EXACT
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.rules import RuleBroken
from utils.rnn.shared import RANDOM_TEXT, text_of

TEXTS = ["Deep Learning", "hello world", "abcabc cab!", "To be, or not to be: that is the question."]
HIDDEN_TEXTS = ["Hello World", "banana bandana", "zzzz", "Zebra 42, zoo 7!", RANDOM_TEXT, RANDOM_TEXT]
PARTS = ("chars", "char2idx", "idx2char")
COLUMNS = ("chars[i]", "the character char2idx maps to i", "idx2char[i]")
NOTHING, SEVERAL = -1.0, -2.0   # no character for this index / more than one character
SORTED_RULE = "chars is the sorted list of the unique characters of text (Exercise 1.1)"


def _describe_index(index):
    part, i = index
    return f"{COLUMNS[part].replace('[i]', f'[{i}]').replace(' i', f' {i}')}"


def describe_character(value: float) -> str:
    """A compared value as the student reads it: the character itself, never its code."""
    if value == NOTHING:
        return "no character"
    if value == SEVERAL:
        return "more than one character"
    return repr(chr(int(value)))


def _cases(hidden: bool) -> list[Case]:
    cases = []
    for number, (setting, salt) in enumerate(visible_then_hidden(TEXTS, HIDDEN_TEXTS, hidden), start=1):
        text = text_of(setting, "build_vocab", number, salt)
        cases.append(Case(f"text {text!r}", {"text": text}, _describe_index, describe_character))
    return cases


def _sorted_rule(chars) -> None:
    """RuleBroken unless ``chars`` is in sorted order (duplicates are a value mistake, compared later)."""
    try:
        listed = list(chars)
        ordered = sorted(listed)
    except TypeError:
        return   # not a sequence of characters: the comparison names the type
    if listed == ordered:
        return
    if listed == sorted(listed, reverse=True):
        raise RuleBroken(SORTED_RULE, "vocabulary not sorted: chars is in reverse order")
    k = next(k for k in range(len(listed) - 1) if listed[k] > listed[k + 1])
    raise RuleBroken(SORTED_RULE, f"vocabulary not sorted: chars has {listed[k]!r} before {listed[k + 1]!r}")


def _code(ch) -> float:
    return float(ord(ch)) if isinstance(ch, str) and len(ch) == 1 else NOTHING


def _rows(chars, char2idx, idx2char) -> np.ndarray:
    """Three parts, one entry per index i < len(chars): chars[i], the character char2idx sends to i,
    idx2char[i]."""
    chars = list(chars)
    sent_to = {}
    for ch, i in dict(char2idx).items():
        sent_to.setdefault(i, []).append(ch)

    def inverse(i):
        found = sent_to.get(i, [])
        return _code(found[0]) if len(found) == 1 else (NOTHING if not found else SEVERAL)

    def lookup(i):
        try:
            return _code(idx2char[i])
        except (KeyError, IndexError, TypeError):
            return NOTHING
    rows = [[_code(ch), inverse(i), lookup(i)] for i, ch in enumerate(chars)]
    return np.array(rows, dtype=np.float64).reshape(-1, 3).T


def _call(fn, inputs):
    result = fn(inputs["text"])
    if not (isinstance(result, (tuple, list)) and len(result) == 3):
        return result
    chars, char2idx, idx2char = result
    if not hasattr(char2idx, "items"):
        raise TypeError(f"char2idx must be a dict (character -> index), got {type(char2idx).__name__}")
    _sorted_rule(chars)
    return _rows(chars, char2idx, idx2char)


def _reference(inputs):
    # the standard vocabulary: sorted unique characters, both maps following their positions
    chars = sorted(set(inputs["text"]))
    return _rows(chars, {c: i for i, c in enumerate(chars)}, dict(enumerate(chars)))


def _vocabulary_built(kind):
    def compute(inputs):
        text = inputs["text"]
        chars = sorted(text) if kind == "duplicates" else sorted(set(text))
        char2idx = {c: i for i, c in enumerate(chars)}
        idx2char = dict(enumerate(chars))
        if kind == "positions":
            char2idx = {c: i for i, c in enumerate(text)}
        if kind == "start_one":
            char2idx = {c: i + 1 for i, c in enumerate(chars)}
            idx2char = {i + 1: c for i, c in enumerate(chars)}
        return _rows(chars, char2idx, idx2char)
    return compute


MISTAKES = [
    Mistake("a character that occurs several times in the text is listed several times in chars",
            "the vocabulary holds each distinct character once; drop the repeats before sorting "
            "(see Exercise 1.1: 'the sorted list of unique characters').", _vocabulary_built("duplicates")),
    Mistake("char2idx gives each character its position in the text, not its position in chars",
            "both dictionaries are read off the vocabulary chars, not off the text: the index of a character "
            "is where it stands in chars.", _vocabulary_built("positions")),
    Mistake("the indices start at 1: the first character of the vocabulary must have index 0",
            "indices run 0..V−1, as positions in a Python list do: one-hot vectors have V entries.",
            _vocabulary_built("start_one")),
]

VOCAB = Exercise(
    function="build_vocab",
    reference_name="the sorted vocabulary and its two mappings",
    make_cases=_cases,
    reference=_reference,
    call=_call,
    mistakes=MISTAKES,
    tolerance=EXACT,
    hint="chars lists each distinct character of the text once, in sorted order; char2idx sends chars[i] to i "
         "and idx2char sends i back to chars[i], for i = 0..V−1.",
    exception_hints={"KeyError": "char2idx maps characters to indices and idx2char maps indices (0..V−1) to "
                                 "characters; build both from the sorted vocabulary, not from the text.",
                     "TypeError": "return a tuple (chars, char2idx, idx2char): a list of characters and two "
                                  "dictionaries."},
    section="Exercise 1.1",
    layout=Layout(axes=("position",), parts=PARTS),
    covers={
        "a character that occurs several times": lambda c: len(set(c.inputs["text"])) < len(c.inputs["text"]),
        "first-appearance order differs from sorted order":
            lambda c: list(dict.fromkeys(c.inputs["text"])) != sorted(set(c.inputs["text"])),
        "upper- and lower-case letters": lambda c: any(ch.isupper() for ch in c.inputs["text"])
            and any(ch.islower() for ch in c.inputs["text"]),
        "spaces, punctuation and digits": lambda c: " " in c.inputs["text"] and any(ch.isdigit() for ch in
            c.inputs["text"]) and any(not ch.isalnum() and ch != " " for ch in c.inputs["text"]),
        "a text with a single distinct character": lambda c: len(set(c.inputs["text"])) == 1,
    },
)


def check_build_vocab(build_vocab, hidden: bool = False) -> None:
    """Check ``build_vocab(text) -> (chars, char2idx, idx2char)``."""
    show(run_check(VOCAB, build_vocab, hidden))
