"""``pad_batch(sequences, pad_value=0) -> (padded, lengths, mask)``: a ragged list of B tensors, sequence b of
shape (T_b, *features), as one batch_first tensor padded (B, T_max, *features) holding ``pad_value`` after each
sequence's end (like ``torch.nn.utils.rnn.pad_sequence(batch_first=True)``), its lengths (B,) and the padding
mask (B, T_max), True at real steps.

Compared: one array (B, T_max + 1, F + 1), F the number of features per step: padded (its features flattened)
in [:, :T_max, :F], the mask as 0/1 in [:, :T_max, F] and the lengths in [:, T_max, 0]. Rules: padded is batch
first, keeps the sequences' dtype (token ids stay integers) and has the shape above; lengths are integers; the
mask is bool of shape (B, T_max); the sequences are not changed in place.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from utils.checks.adapters import float64_tensor
from utils.checks.characterise import Layout
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.rules import RuleBroken, kept_unchanged, require_dtype, require_shape
from utils.checks.seeding import case_rng
from utils.rnn.batches.shared import step_mask
from utils.rnn.shared import array_or_value

TOKENS = "token ids"
# (lengths, feature shape or TOKENS, pad_value)
SETTINGS = [((3, 1, 4), TOKENS, 0), ((2, 5, 3, 5), (3,), 0.0), ((4, 4), (2,), -1.0), ((1, 3, 2), (2, 2), 0.5)]
HIDDEN_SETTINGS = [((6, 2, 7, 1, 3), TOKENS, 5), ((3, 3, 3), (4,), 0.0), ((2, 1), (1,), 0.0),
                   ((5, 1, 2, 4), TOKENS, 0), ((3,), (2,), 0.0)]
IN_PLACE_RULE = "pad_batch does not change the sequences it is given (Exercise 1)"


def _inputs(number: int, setting, salt: str) -> dict:
    lengths, features, pad = setting
    rng = case_rng("pad_batch", number, salt)
    if features == TOKENS:
        sequences = [rng.integers(0, 9, size=n) for n in lengths]
        longest = int(np.argmax(lengths))
        sequences[longest][0] = pad   # a real token equal to pad_value: only the lengths tell it from padding
    else:
        sequences = [rng.normal(size=(n, *features)) for n in lengths]
        sequences[int(np.argmax(lengths))][-1] = pad   # a real step whose values all equal pad_value
    return {"sequences": sequences, "pad_value": pad}


def _sizes(inputs) -> tuple[int, int, tuple[int, ...], int]:
    """(B, T_max, feature shape, F)."""
    sequences = inputs["sequences"]
    features = tuple(sequences[0].shape[1:])
    return len(sequences), max(len(s) for s in sequences), features, math.prod(features)


def _layout(padded: np.ndarray, lengths, mask: np.ndarray) -> np.ndarray:
    """padded (B, T, *features), lengths (B,) and mask (B, T) as one (B, T + 1, F + 1) array."""
    B, T = padded.shape[:2]
    flat = padded.reshape(B, T, -1)
    out = np.zeros((B, T + 1, flat.shape[2] + 1))
    out[:, :T, :-1] = flat
    out[:, :T, -1] = mask
    out[:, T, 0] = lengths
    return out


def _describe_index_for(T: int, features: tuple[int, ...]):
    F = math.prod(features)

    def describe(index):
        b, t, j = index
        if t == T:
            return f"lengths[b={b}]"
        if j == F:
            return f"mask[b={b}, t={t}]"
        feature = ", ".join(map(str, np.unravel_index(j, features))) if features else ""
        return f"padded[b={b}, t={t}{', ' + feature if feature else ''}]"
    return describe


def _regions(inputs) -> dict:
    B, T, _, F = _sizes(inputs)
    lengths = np.array([len(s) for s in inputs["sequences"]])
    values, mask, counts, padding = (np.zeros((B, T + 1, F + 1), dtype=bool) for _ in range(4))
    values[:, :T, :F] = True
    mask[:, :T, F] = True
    counts[:, T, 0] = True
    padding[:, :T, :F] = ~step_mask(lengths, T)[:, :, None]
    return {"the padded values": values, "the mask": mask, "the lengths": counts,
            "the padded steps of padded": padding}


def _cases(hidden: bool) -> list[Case]:
    cases = []
    for number, (setting, salt) in enumerate(visible_then_hidden(SETTINGS, HIDDEN_SETTINGS, hidden), start=1):
        lengths, features, pad = setting
        inputs = _inputs(number, setting, salt)
        kind = "integer token ids (T_b,)" if features == TOKENS else \
            f"float sequences (T_b, {', '.join(map(str, features))})"
        cases.append(Case(f"B={len(lengths)} {kind} of lengths {list(lengths)}, pad_value={pad}; one real step "
                          "equals pad_value", inputs, _describe_index_for(max(lengths), _sizes(inputs)[2]),
                          regions=_regions(inputs)))
    return cases


def _call(fn, inputs):
    integer = inputs["sequences"][0].dtype.kind in "iu"
    sequences = [torch.tensor(s) if integer else float64_tensor(s) for s in inputs["sequences"]]
    B, T, features, _ = _sizes(inputs)
    with kept_unchanged({"sequences": sequences}, rule=IN_PLACE_RULE):
        result = fn(sequences, pad_value=inputs["pad_value"])
    if not (isinstance(result, (tuple, list)) and len(result) == 3):
        raise TypeError("pad_batch must return (padded, lengths, mask)")
    padded, lengths, mask = result
    shape = getattr(padded, "shape", None)
    if shape is not None and tuple(shape) == (T, B, *features) and B != T:
        raise RuleBroken("padded is batch first: (B, T_max, *features) (Exercise 1)",
                         f"padded has shape {tuple(shape)}, (T_max, B, ...): time first, as pad_sequence "
                         "gives by default")
    require_shape(padded, (B, T, *features), what="padded",
                  rule="padded has shape (B, T_max, *features), batch first (Exercise 1)")
    require_dtype(padded, "integer" if integer else "floating", what="padded",
                  rule="padded keeps the dtype of the sequences: token ids stay integers (Exercise 1)")
    require_shape(lengths, (B,), what="lengths", rule="lengths has shape (B,), one length per sequence (Exercise 1)")
    require_dtype(lengths, "integer", what="lengths",
                  rule="lengths are integers, as pack_padded_sequence expects (Exercise 1)")
    require_shape(mask, (B, T), what="mask", rule="mask has shape (B, T_max) (Exercise 1)")
    require_dtype(mask, "bool", what="mask", rule="mask is a bool tensor, True at real steps (Exercise 1)")
    parts = [array_or_value(p) for p in (padded, lengths, mask)]
    for part in parts:
        if not isinstance(part, np.ndarray):
            return part
    return _layout(*parts)


def _padded_with(*, left=False, ignore_pad=False, inverted=False, from_values=False, last_index=False):
    """The answer computed with mistake switches (none: the intended one)."""
    def compute(inputs):
        sequences, pad = inputs["sequences"], inputs["pad_value"]
        B, T, features, _ = _sizes(inputs)
        lengths = np.array([len(s) for s in sequences])
        padded = np.full((B, T, *features), 0.0 if ignore_pad else float(pad))
        for b, s in enumerate(sequences):
            if left:
                padded[b, T - len(s):] = s
            else:
                padded[b, :len(s)] = s
        mask = step_mask(lengths, T)
        if left:
            mask = mask[:, ::-1]
        if from_values:   # a step is padding when all its values equal pad_value
            mask = (padded != pad).reshape(B, T, -1).any(axis=2)
            lengths = mask.sum(axis=1)
        if inverted:
            mask = ~mask
        if last_index:
            lengths = lengths - 1
        return _layout(padded, lengths, mask)
    return compute


def torch_pad(inputs) -> np.ndarray:
    """torch.nn.utils.rnn.pad_sequence(batch_first=True, padding_value=pad_value), the lengths and their mask."""
    sequences = [torch.tensor(np.asarray(s, dtype=np.float64)) for s in inputs["sequences"]]
    padded = torch.nn.utils.rnn.pad_sequence(sequences, batch_first=True, padding_value=float(inputs["pad_value"]))
    lengths = np.array([len(s) for s in sequences])
    return _layout(padded.numpy(), lengths, step_mask(lengths, padded.shape[1]))


MISTAKES = [
    Mistake("the sequences are padded at the front (right-aligned): each sequence must start at step 0 and the "
            "padding come after its end",
            "pack_padded_sequence and the masks of this notebook take the first lengths[b] steps as the real ones; "
            "copy each sequence into the start of its row.", _padded_with(left=True)),
    Mistake("the padding holds 0 whatever pad_value is",
            "fill the padded tensor with the pad_value you were given before copying the sequences in.",
            _padded_with(ignore_pad=True)),
    Mistake("the mask is inverted: it is True at the padded steps (the convention of a key_padding_mask), "
            "here True marks the real steps",
            "the mask of Exercise 1 answers 'is this step real?'.", _padded_with(inverted=True)),
    Mistake("the mask and lengths are worked out by comparing values with pad_value, so a real step that "
            "happens to equal pad_value counts as padding",
            "a real token can have the pad's value (or a real frame be all zeros): build the mask from the lengths "
            "of the sequences, never from their values.", _padded_with(from_values=True)),
    Mistake("lengths hold each sequence's last index (length − 1) instead of its number of steps",
            "lengths[b] is the number of real steps of sequence b, what len() gives.", _padded_with(last_index=True)),
]

PAD = Exercise(
    function="pad_batch",
    reference_name="torch.nn.utils.rnn.pad_sequence(batch_first=True) with its lengths and mask",
    make_cases=_cases,
    reference=torch_pad,
    call=_call,
    mistakes=MISTAKES,
    hint="compare your result with the picture above Exercise 1: each row starts with its sequence, is filled "
         "with pad_value after its end; lengths count the real steps, the mask is True exactly there.",
    exception_hints={"RuntimeError": "sequence b has shape (T_b, *features): allocate (B, T_max, *features) with "
                                     "the sequences' dtype and copy sequence b into the first T_b steps of row b."},
    section="Exercise 1",
    layout=Layout(axes=("example", "step", "value")),
    covers={
        "a batch of 2 or more": lambda c: len(c.inputs["sequences"]) >= 2,
        "a batch of one sequence": lambda c: len(c.inputs["sequences"]) == 1,
        "ragged lengths": lambda c: len({len(s) for s in c.inputs["sequences"]}) > 1,
        "equal lengths (B ≥ 2)": lambda c: len(c.inputs["sequences"]) >= 2 and len({len(s) for s in
                                                                                  c.inputs["sequences"]}) == 1,
        "a sequence of length 1": lambda c: min(len(s) for s in c.inputs["sequences"]) == 1,
        "the longest sequence not first": lambda c: np.argmax([len(s) for s in c.inputs["sequences"]]) > 0,
        "integer token ids": lambda c: c.inputs["sequences"][0].dtype.kind in "iu",
        "one feature per step": lambda c: c.inputs["sequences"][0].shape[1:] == (1,),
        "several feature axes": lambda c: c.inputs["sequences"][0].ndim >= 3,
        "pad_value ≠ 0": lambda c: c.inputs["pad_value"] != 0,
        "a real step equal to pad_value": lambda c: True,
    },
)


def check_pad_batch(pad_batch, hidden: bool = False) -> None:
    """Check ``pad_batch(sequences, pad_value)`` against torch.nn.utils.rnn.pad_sequence(batch_first=True)."""
    show(run_check(PAD, pad_batch, hidden))
