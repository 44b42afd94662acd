"""``lstm_cell(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh) -> (h, c)`` in torch's layout (gate blocks i, f, g, o),
x (B, D), h and c (B, H). Compared: (h, c) stacked, with ``torch.nn.LSTMCell`` holding the case's weights.
"""
from __future__ import annotations

import numpy as np
import torch

from utils.checks.adapters import float64_tensor
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.seeding import case_rng
from utils.rnn.shared import lstm_cell_numpy, lstm_weights, stacked

SETTINGS = [(1, 2, 3), (3, 4, 5), (2, 5, 3), (4, 3, 6)]   # (B, D, H)
HIDDEN_SETTINGS = [(5, 6, 4), (2, 1, 7)]
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
        cases.append(Case(f"B={B}, D={D}, H={H}, random x, h_prev, c_prev, weights and biases; "
                          "compared: (h, c) stacked", inputs, _describe_index))
    return cases


def _call(fn, inputs):
    return stacked(fn(*(float64_tensor(inputs[name]) for name in ARGUMENTS)))


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


_ORDER_HINT = ("torch stacks the four gate blocks as i, f, g, o (input, forget, candidate, output): "
               "i, f, g, o = gates.chunk(4, dim=-1).")

MISTAKES = [
    Mistake("LSTM gates in the wrong order: you read the blocks as f, i, g, o", _ORDER_HINT,
            _cell_computed_with(order="figo")),
    Mistake("LSTM gates in the wrong order: you read the blocks as i, f, o, g", _ORDER_HINT,
            _cell_computed_with(order="ifog")),
    Mistake("LSTM gates in the wrong order: you read the blocks as i, o, f, g", _ORDER_HINT,
            _cell_computed_with(order="iofg")),
    Mistake("sigmoid on the candidate g: it must be tanh (values in (−1, 1))",
            "i, f, o use sigmoid; g = tanh(...).", _cell_computed_with(candidate_sigmoid=True)),
    Mistake("tanh is missing in the hidden-state update: h = o ⊙ c",
            "h_t = o_t ⊙ tanh(c_t).", _cell_computed_with(tanh_c=False)),
    Mistake("cell state not carried: c_t = i ⊙ g drops f ⊙ c_{t−1}",
            "c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t.", _cell_computed_with(forget=False)),
    Mistake("a missing bias: b_hh is not added to the gate pre-activations",
            "gates = x @ W_ihᵀ + b_ih + h @ W_hhᵀ + b_hh.", _cell_computed_with(bias_hh=False)),
]

CELL = Exercise(
    function="lstm_cell",
    forbidden=("torch.nn.LSTMCell", "torch.nn.LSTM", "torch.lstm_cell", "torch.lstm"),
    reference_name="torch.nn.LSTMCell with your weights",
    make_cases=_cases,
    reference=torch_lstm_cell,
    call=_call,
    mistakes=MISTAKES,
    hint="gates = x @ W_ih.T + b_ih + h_prev @ W_hh.T + b_hh; i, f, g, o = gates.chunk(4, dim=-1); "
         "c = σ(f)·c_prev + σ(i)·tanh(g); h = σ(o)·tanh(c).",
    exception_hints={"RuntimeError": "shapes: x (B, D), h_prev and c_prev (B, H), W_ih (4H, D), W_hh (4H, H); "
                                     "multiply x @ W_ih.T."},
)


def check_lstm_cell(lstm_cell, hidden: bool = False) -> None:
    """Check ``lstm_cell(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh)`` against torch.nn.LSTMCell."""
    show(run_check(CELL, lstm_cell, hidden))
