"""``packed_last_hidden(lstm, padded, lengths) -> (B, H)``, or (B, 2H) for a bidirectional lstm: what a
``torch.nn.LSTM(batch_first=True)`` knows about each sequence of a padded batch once it has read it, the
padding never read.

The rule: the top layer's final hidden state, of each direction: for one direction, its hidden state at the
sequence's last real step; for two, that of the forward direction followed by that of the backward direction
after it has read the sequence back to step 0 (``torch.cat([h_n[-2], h_n[-1]], dim=1)`` with h_n from a packed
batch). The reference runs the lstm on each sequence alone, without padding. Rules: the lstm, padded and lengths
are not changed (weights, mode, values).
"""
from __future__ import annotations

import numpy as np
import torch

from utils.checks.adapters import float64_tensor
from utils.checks.characterise import Layout
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.rules import kept_unchanged
from utils.checks.seeding import case_rng
from utils.rnn.batches.shared import lstm_sizes, lstm_state_dict, padded_batch, torch_lstm
from utils.rnn.shared import array_or_value

# (lengths, D, H, num_layers, bidirectional)
SETTINGS = [((3, 5, 2), 2, 3, 1, False), ((2, 4, 1, 4), 3, 2, 2, False), ((4, 1, 3), 2, 3, 1, True),
            ((3, 6, 2), 1, 2, 2, True)]
HIDDEN_SETTINGS = [((5, 2, 7, 3, 1), 3, 4, 1, True), ((4, 4, 2), 2, 2, 2, False), ((1, 3), 2, 3, 3, True)]
RULE = "packed_last_hidden does not change the lstm (weights, mode), padded or lengths (Exercise 2)"


def _cases(hidden: bool) -> list[Case]:
    cases = []
    for number, (setting, salt) in enumerate(visible_then_hidden(SETTINGS, HIDDEN_SETTINGS, hidden), start=1):
        lengths, D, H, L, bidirectional = setting
        rng = case_rng("packed_last_hidden", number, salt)
        inputs = {"lstm": lstm_state_dict(rng, D, H, L, bidirectional), "x": padded_batch(rng, lengths, D),
                  "lengths": np.array(lengths)}
        order = "sorted longest first" if list(lengths) == sorted(lengths, reverse=True) else "not sorted"
        cases.append(Case(f"nn.LSTM({D}, {H}, num_layers={L}, batch_first=True, bidirectional={bidirectional}) "
                          f"with random weights; padded (B={len(lengths)}, T_max={max(lengths)}, D={D}) zero-padded, "
                          f"lengths {list(lengths)} ({order})", inputs, _describe_index))
    return cases


def _describe_index(index):
    return f"result[b={index[0]}, j={index[1]}]"


def _call(fn, inputs):
    lstm = torch_lstm(inputs["lstm"])
    padded, lengths = float64_tensor(inputs["x"]), torch.tensor(inputs["lengths"])
    with kept_unchanged({"lstm": lstm, "padded": padded, "lengths": lengths}, rule=RULE), torch.no_grad():
        return array_or_value(fn(lstm, padded, lengths))


def _top(h_n: torch.Tensor, bidirectional: bool) -> torch.Tensor:
    return torch.cat([h_n[-2], h_n[-1]], dim=1) if bidirectional else h_n[-1]


def one_by_one(inputs) -> np.ndarray:
    """nn.LSTM run on each sequence alone (no padding): the top layer's final h of each direction, (B, H·dirs)."""
    lstm = torch_lstm(inputs["lstm"])
    bidirectional = lstm_sizes(inputs["lstm"])[3]
    x = float64_tensor(inputs["x"])
    rows = []
    with torch.no_grad():
        for b, n in enumerate(inputs["lengths"]):
            _, (h_n, _) = lstm(x[b:b + 1, :n])
            rows.append(_top(h_n, bidirectional)[0])
    return torch.stack(rows).numpy()


def _mistaken(kind: str):
    def compute(inputs):
        lstm = torch_lstm(inputs["lstm"])
        D, H, L, bidirectional = lstm_sizes(inputs["lstm"])
        x, lengths = float64_tensor(inputs["x"]), torch.tensor(inputs["lengths"])
        B = x.shape[0]
        with torch.no_grad():
            if kind in ("last_padded_step", "h_n_unpacked"):   # the padding is read
                output, (h_n, c_n) = lstm(x)
                return (output[:, -1] if kind == "last_padded_step" else _top(h_n, bidirectional)).numpy()
            if kind == "sorted":   # sorted by length for packing, the order never restored
                order = torch.argsort(lengths, descending=True, stable=True)
                packed = torch.nn.utils.rnn.pack_padded_sequence(x[order], lengths[order], batch_first=True)
                _, (h_n, _) = lstm(packed)
                return _top(h_n, bidirectional).numpy()
            packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            packed_out, (h_n, c_n) = lstm(packed)
            output, _ = torch.nn.utils.rnn.pad_packed_sequence(packed_out, batch_first=True)
            dirs = 2 if bidirectional else 1
            if kind == "unpacked_last_column":   # the last column of the re-padded output: zeros for short ones
                return output[:, -1].numpy()
            if kind == "output_at_length":       # the output at each sequence's last real step, both halves
                return output[torch.arange(B), lengths - 1].numpy()
            if kind == "first_layer":
                return (torch.cat([h_n[0], h_n[1]], dim=1) if bidirectional else h_n[0]).numpy()
            if kind == "cell_state":
                return _top(c_n, bidirectional).numpy()
            if kind == "backward_only":
                return h_n[-1].numpy()
            if kind == "directions_swapped":
                return torch.cat([h_n[-1], h_n[-2]], dim=1).numpy()
            if kind == "reshaped":   # the (L·dirs, B, H) tensor's last dirs·B rows read as (B, dirs·H)
                return h_n[-dirs:].reshape(B, dirs * H).numpy()
            raise ValueError(kind)
    return compute


_PACK = ("pack the padded batch with its lengths (batch first, lengths in any order) and read the final states the "
         "lstm returns for it: they are taken at each sequence's own last step.")
MISTAKES = [
    Mistake("the lstm ran over the padding: the result is read at the last padded step, output[:, −1]",
            "a shorter sequence's last padded step comes after its end: " + _PACK, _mistaken("last_padded_step")),
    Mistake("the lstm ran over the padding: h_n of the unpacked batch has read every padded step",
            "without packing, the final states have read the padding of every shorter sequence: " + _PACK,
            _mistaken("h_n_unpacked")),
    Mistake("the batch was sorted by length for packing and the results were left in sorted order",
            "row b of the result belongs to sequence b: let pack_padded_sequence sort and restore the order "
            "(enforce_sorted=False), or undo your sort.", _mistaken("sorted")),
    Mistake("the result is the last time step of the re-padded output (pad_packed_sequence), which is zero for "
            "every sequence shorter than T_max",
            "the outputs at padded steps are zeros, not the state at the sequence's end: read the final states "
            "the lstm returns for the packed batch.", _mistaken("unpacked_last_column")),
    Mistake("both directions are read at each sequence's last real step: there the backward direction has read "
            "only one step",
            "the backward direction reads the sequence from its end back to step 0: its final state is the one "
            "after step 0, which h_n holds.", _mistaken("output_at_length")),
    Mistake("the result is taken from the first layer's final state, h_n[0] (or h_n[0] and h_n[1] for two "
            "directions); the top layer is the last one",
            "h_n is (num_layers · num_directions, B, H), layer by layer, each layer's directions together: the top "
            "layer's entries are the last ones.", _mistaken("first_layer")),
    Mistake("the result is the cell state c_n instead of the hidden state h_n",
            "the summary of a sequence is the hidden state (what the lstm outputs), not its cell state.",
            _mistaken("cell_state")),
    Mistake("only the backward direction's final state, h_n[−1], is returned for a bidirectional lstm",
            "a bidirectional lstm has two final states in its top layer, forward then backward: concatenate both "
            "(B, 2H).", _mistaken("backward_only")),
    Mistake("the two directions are concatenated in the wrong order: backward first",
            "the forward direction's state comes first, as in the output of nn.LSTM.", _mistaken("directions_swapped")),
    Mistake("h_n was reshaped to (B, 2H) as it is laid out, (directions, B, H): rows mix examples and directions",
            "the direction axis comes before the batch axis in h_n: move it (or index each direction) before "
            "joining the directions of one example.", _mistaken("reshaped")),
]

LAST_HIDDEN = Exercise(
    function="packed_last_hidden",
    reference_name="torch.nn.LSTM run on each sequence alone (its top layer's final h, both directions)",
    make_cases=_cases,
    reference=one_by_one,
    call=_call,
    mistakes=MISTAKES,
    hint="reread the rule above Exercise 2: pack, run the lstm, and read the top layer's final state of each "
         "direction for each sequence, in the batch's order.",
    exception_hints={"RuntimeError": "pack_padded_sequence wants lengths on the CPU (int64) and, unless you pass "
                                     "enforce_sorted=False, sorted longest first; the batch is batch first."},
    section="Exercise 2",
    layout=Layout(axes=("example", "unit")),
    covers={
        "a batch of 2 or more": lambda c: len(c.inputs["lengths"]) >= 2,
        "lengths not sorted": lambda c: list(c.inputs["lengths"]) != sorted(c.inputs["lengths"], reverse=True),
        "lengths sorted longest first": lambda c: list(c.inputs["lengths"]) == sorted(c.inputs["lengths"],
                                                                                     reverse=True),
        "a sequence of length 1": lambda c: min(c.inputs["lengths"]) == 1,
        "one direction, one layer": lambda c: lstm_sizes(c.inputs["lstm"])[2:] == (1, False),
        "one direction, 2 or more layers": lambda c: lstm_sizes(c.inputs["lstm"])[2] >= 2
        and not lstm_sizes(c.inputs["lstm"])[3],
        "bidirectional, one layer": lambda c: lstm_sizes(c.inputs["lstm"])[2:] == (1, True),
        "bidirectional, 2 or more layers": lambda c: lstm_sizes(c.inputs["lstm"])[2] >= 2
        and lstm_sizes(c.inputs["lstm"])[3],
        "D = 1": lambda c: lstm_sizes(c.inputs["lstm"])[0] == 1,
    },
)


def check_packed_last_hidden(packed_last_hidden, hidden: bool = False) -> None:
    """Check ``packed_last_hidden(lstm, padded, lengths)`` against nn.LSTM run on each sequence alone."""
    show(run_check(LAST_HIDDEN, packed_last_hidden, hidden))
