"""``lstm_cell(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh) -> (h, c)`` in torch's layout (gate blocks i, f, g, o),
x (B, D), h and c (B, H). Compared: (h, c) stacked (the parts named h and c in every message), with
``torch.nn.LSTMCell`` holding the case's weights. Rules: each part has shape (B, H); no argument changes in place.
"""
from __future__ import annotations

import numpy as np
import torch

from utils.checks.adapters import float64_tensor
from utils.checks.characterise import Layout
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.rules import kept_unchanged, require_shape
from utils.checks.seeding import case_rng
from utils.rnn.shared import lstm_cell_numpy, lstm_weights, stacked

SETTINGS = [(1, 2, 3), (3, 4, 5), (2, 5, 3), (4, 3, 6)]   # (B, D, H)
HIDDEN_SETTINGS = [(5, 6, 4), (2, 1, 7), (3, 4, 4)]
IN_PLACE_RULE = "your functions do not change their arguments in place (the notebook's introduction)"
ARGUMENTS = ("x", "h", "c", "W_ih", "W_hh", "b_ih", "b_hh")   # the case's inputs, in the student's order


def _describe_index(index):
    which, b, j = index
    return f"{'hc'[which]}[b={b}, j={j}]"


def _cases(hidden: bool) -> list[Case]:
    cases = []
    for number, ((B, D, H), salt) in enumerate(visible_then_hidden(SETTINGS, HIDDEN_SETTINGS, hidden), start=1):
        rng = case_rng("lstm_cell", number, salt)
        inputs = {"x": rng.normal(size=(B, D)), "h": rng.normal(0, 0.7, (B, H)),
                  "c": rng.normal(0, 1.0, (B, H)), **lstm_weights(rng, D, H)}
        cases.append(Case(f"B={B}, D={D}, H={H}, random x, h_prev, c_prev, weights and biases", inputs,
                          _describe_index))
    return cases


def _call(fn, inputs):
    arguments = {name: float64_tensor(inputs[name]) for name in ARGUMENTS}
    with kept_unchanged({("h_prev" if n == "h" else "c_prev" if n == "c" else n): v for n, v in arguments.items()},
                        rule=IN_PLACE_RULE):
        result = fn(*arguments.values())
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise TypeError(f"lstm_cell must return a tuple (h, c), got {type(result).__name__}")
    shape = tuple(inputs["h"].shape)
    for part, value in zip("hc", result, strict=True):
        require_shape(value, shape, what=part, rule=f"{part} has shape (B, H), like {part}_prev (Exercise 2.1)")
    return stacked(result)


def torch_lstm_cell(inputs) -> np.ndarray:
    """torch.nn.LSTMCell with the case's weights: (h, c) stacked, float64."""
    D, H = inputs["x"].shape[1], inputs["h"].shape[1]
    with torch.random.fork_rng(devices=[]):
        cell = torch.nn.LSTMCell(D, H).double()
    with torch.no_grad():
        for mine, theirs in (("W_ih", "weight_ih"), ("W_hh", "weight_hh"), ("b_ih", "bias_ih"), ("b_hh", "bias_hh")):
            getattr(cell, theirs).copy_(float64_tensor(inputs[mine]))
        h, c = cell(float64_tensor(inputs["x"]), (float64_tensor(inputs["h"]), float64_tensor(inputs["c"])))
    return np.stack([h.numpy(), c.numpy()])


def _cell_computed_with(**switches):
    def compute(inputs):
        return np.stack(lstm_cell_numpy(*(inputs[name] for name in ARGUMENTS), **switches))
    return compute


_ORDER_HINT = ("torch stacks the four gate blocks of W_ih, W_hh and the biases in the order i, f, g, o (see "
               "“PyTorch's layout” above Exercise 2.1): read each block as the gate it holds.")
_BIAS_HINT = "both biases, b_ih and b_hh, are added to the gate pre-activations."

MISTAKES = [
    Mistake("LSTM gates in the wrong order: you read the blocks as f, i, g, o", _ORDER_HINT,
            _cell_computed_with(order="figo")),
    Mistake("LSTM gates in the wrong order: you read the blocks as i, f, o, g", _ORDER_HINT,
            _cell_computed_with(order="ifog")),
    Mistake("LSTM gates in the wrong order: you read the blocks as i, o, f, g", _ORDER_HINT,
            _cell_computed_with(order="iofg")),
    Mistake("sigmoid on the candidate g: it must be tanh (values in (−1, 1))",
            "the three gates i, f, o use a sigmoid; the candidate content g is the one that uses tanh.",
            _cell_computed_with(candidate_sigmoid=True)),
    Mistake("tanh is missing in the hidden-state update: the output gate multiplies the raw cell state",
            "the new hidden state shows the cell through a tanh before the output gate scales it.",
            _cell_computed_with(tanh_c=False)),
    Mistake("the old cell state is dropped: the new c holds only the written content",
            "the forget gate decides how much of c_prev to keep: that kept part is added to what the input gate "
            "writes.", _cell_computed_with(forget=False)),
    Mistake("a missing bias: b_hh is not added to the gate pre-activations", _BIAS_HINT,
            _cell_computed_with(bias_hh=False)),
    Mistake("a missing bias: b_ih is not added to the gate pre-activations", _BIAS_HINT,
            _cell_computed_with(bias_ih=False)),
]

CELL = Exercise(
    function="lstm_cell",
    forbidden=("torch.nn.LSTMCell", "torch.nn.LSTM", "torch.lstm_cell", "torch.lstm"),
    reference_name="torch.nn.LSTMCell with your weights",
    make_cases=_cases,
    reference=torch_lstm_cell,
    call=_call,
    mistakes=MISTAKES,
    hint="go through the equations above Exercise 2.1 one at a time: which blocks of the stacked weights belong "
         "to which gate (torch's order), which nonlinearity each gate uses, how c_prev enters the new cell state, "
         "and how the new cell state enters h.",
    exception_hints={"RuntimeError": "shapes: x (B, D), h_prev and c_prev (B, H), W_ih (4H, D), W_hh (4H, H): "
                                     "rows of x are examples, so x is multiplied by the transpose of W_ih."},
    section="Exercise 2.1",
    layout=Layout(axes=("example", "unit"), parts=("h", "c")),
    covers={
        "a batch of 2 or more": lambda c: c.inputs["x"].shape[0] >= 2,
        "a batch of 1": lambda c: c.inputs["x"].shape[0] == 1,
        "D ≠ H": lambda c: c.inputs["x"].shape[1] != c.inputs["h"].shape[1],
        "D = H": lambda c: c.inputs["x"].shape[1] == c.inputs["h"].shape[1],
        "D = 1": lambda c: c.inputs["x"].shape[1] == 1,
        "c_prev of both signs": lambda c: bool((c.inputs["c"] > 0).any() and (c.inputs["c"] < 0).any()),
    },
)


def check_lstm_cell(lstm_cell, hidden: bool = False) -> None:
    """Check ``lstm_cell(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh)`` against torch.nn.LSTMCell."""
    show(run_check(CELL, lstm_cell, hidden))
