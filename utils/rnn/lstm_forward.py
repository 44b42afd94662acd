"""``lstm_forward(x, layers, h0, c0, cell) -> (output, (h_n, c_n))``: a multi-layer LSTM over a batch,
x (B, T, D), like ``torch.nn.LSTM(batch_first=True)``, given a correct ``cell``.

The sequence is fed in up to three calls over consecutive time steps, each starting from the
(h_n, c_n) the previous call returned; compared: the output (B, T, H) of all calls.
"""
from __future__ import annotations

import numpy as np
import torch

from utils.checks.adapters import float64_tensor
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.seeding import case_rng
from utils.rnn.shared import array_or_value, lstm_cell_numpy, lstm_weights, splits

SETTINGS = [(1, 3, 2, 2, 1), (2, 5, 3, 3, 2), (3, 6, 2, 4, 2), (2, 7, 2, 3, 3)]   # (B, T, D, H, L)
HIDDEN_SETTINGS = [(4, 8, 5, 5, 3), (3, 4, 1, 6, 2)]
WEIGHT_NAMES = ("W_ih", "W_hh", "b_ih", "b_hh")   # one layer's weights, in the order the cell takes them


def _inputs(number, setting, salt):
    B, T, D, H, L = setting
    rng = case_rng("lstm_forward", number, salt)
    layers = [lstm_weights(rng, D if layer == 0 else H, H, 0.6) for layer in range(L)]
    return {"x": rng.normal(size=(B, T, D)), "layers": layers,
            "h0": rng.normal(0, 0.6, (L, B, H)), "c0": rng.normal(0, 1.0, (L, B, H)), "splits": splits(T, 3)}


def _describe_index_for(chunks):
    def describe(index):
        b, t, j = index
        call = next(k for k, (lo, hi) in enumerate(chunks) if lo <= t < hi) + 1
        return f"output[b={b}, t={t}, j={j}] (call {call}" + (", started from the (h_n, c_n) of your "
                                                               "previous call)" if call > 1 else ")")
    return describe


def _cases(hidden: bool) -> list[Case]:
    cases = []
    for number, (setting, salt) in enumerate(visible_then_hidden(SETTINGS, HIDDEN_SETTINGS, hidden), start=1):
        B, T, D, H, L = setting
        inputs = _inputs(number, setting, salt)
        chunks = ", ".join(f"{a}..{b - 1}" for a, b in inputs["splits"])
        cases.append(Case(f"B={B}, T={T}, D={D}, H={H}, num_layers={L}, random h0 and c0; the sequence is fed "
                          f"in calls over time steps {chunks}, each starting from the (h_n, c_n) your previous "
                          "call returned; compared: output (B, T, H)", inputs, _describe_index_for(inputs["splits"])))
    return cases


def torch_lstm_cell_fn(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh):
    """A correct LSTM cell in torch; passed to the student's ``lstm_forward`` as ``cell``."""
    i, f, g, o = (x @ W_ih.T + b_ih + h_prev @ W_hh.T + b_hh).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _call(fn, inputs):
    layers = [tuple(float64_tensor(w[name]) for name in WEIGHT_NAMES) for w in inputs["layers"]]
    x, h, c = float64_tensor(inputs["x"]), float64_tensor(inputs["h0"]), float64_tensor(inputs["c0"])
    parts = []
    for a, b in inputs["splits"]:
        result = fn(x[:, a:b], layers, h, c, cell=torch_lstm_cell_fn)
        if not (isinstance(result, (tuple, list)) and len(result) == 2 and isinstance(result[1], (tuple, list))):
            raise TypeError("lstm_forward must return (output, (h_n, c_n)) like torch.nn.LSTM")
        out, (h, c) = result
        out = array_or_value(out)
        if not isinstance(out, np.ndarray) or out.ndim != 3:
            return out
        parts.append(out)
    return np.concatenate(parts, axis=1)


def torch_lstm(inputs) -> np.ndarray:
    """torch.nn.LSTM(batch_first=True) with the case's weights: the output (B, T, H), float64."""
    x, layers = inputs["x"], inputs["layers"]
    D, H, L = x.shape[2], inputs["h0"].shape[2], len(layers)
    with torch.random.fork_rng(devices=[]):
        lstm = torch.nn.LSTM(D, H, num_layers=L, batch_first=True).double()
    with torch.no_grad():
        for layer, w in enumerate(layers):
            for mine, theirs in (("W_ih", "weight_ih"), ("W_hh", "weight_hh"), ("b_ih", "bias_ih"),
                                 ("b_hh", "bias_hh")):
                getattr(lstm, f"{theirs}_l{layer}").copy_(float64_tensor(w[mine]))
        out, _ = lstm(float64_tensor(x), (float64_tensor(inputs["h0"]), float64_tensor(inputs["c0"])))
    return out.numpy()


def lstm_numpy(x, layers, h0, c0, *, carry_c=True, reset_h=False, layers_read_x=False, shared_state=False):
    """A multi-layer LSTM over a batch (B, T, D) -> (output, h_n, c_n); keyword switches reproduce known mistakes."""
    B, T, _ = x.shape
    seq = x
    h_n, c_n = [], []
    for layer, (W_ih, W_hh, b_ih, b_hh) in enumerate(layers):
        start = 0 if shared_state else layer
        h, c = h0[start], c0[start]
        outs = []
        source = x if layers_read_x else seq
        for t in range(T):
            h_prev = np.zeros_like(h) if reset_h else h
            h, c_new = lstm_cell_numpy(source[:, t], h_prev, c, W_ih, W_hh, b_ih, b_hh)
            if carry_c:   # the mistake keeps c = c0[layer]: `h, _ = cell(...)`
                c = c_new
            outs.append(h)
        seq = np.stack(outs, axis=1)
        h_n.append(h)
        c_n.append(c)
    return seq, np.stack(h_n), np.stack(c_n)


def _computed_with(**switches):
    def compute(inputs):
        layers = [tuple(w[name] for name in WEIGHT_NAMES) for w in inputs["layers"]]
        h, c, parts = inputs["h0"], inputs["c0"], []
        for a, b in inputs["splits"]:
            out, h, c = lstm_numpy(inputs["x"][:, a:b], layers, h, c, **switches)
            parts.append(out)
        return np.concatenate(parts, axis=1)
    return compute


MISTAKES = [
    Mistake("cell state not carried between steps: every step starts from the initial c0 "
            "(e.g. `h, _ = cell(...)` throws the new c away)",
            "keep both states: h, c = cell(x_t, h, c, ...) and feed the new c into the next step.",
            _computed_with(carry_c=False)),
    Mistake("h reset inside the loop: every step starts from h = 0 instead of h_{t−1}",
            "set h, c = h0[l], c0[l] once per layer, before the time loop.", _computed_with(reset_h=True)),
    Mistake("every layer reads the input x: layer l > 0 must read the outputs of layer l − 1",
            "after each layer, replace the sequence by the stacked h_t of that layer.",
            _computed_with(layers_read_x=True)),
    Mistake("every layer starts from layer 0's initial state: layer l must start from h0[l], c0[l]",
            "h0 and c0 are (num_layers, B, H): index them with the layer number.",
            _computed_with(shared_state=True)),
]

LSTM_FORWARD = Exercise(
    function="lstm_forward",
    forbidden=("torch.nn.LSTMCell", "torch.nn.LSTM", "torch.lstm_cell", "torch.lstm"),
    reference_name="torch.nn.LSTM(D, H, num_layers, batch_first=True) with your weights",
    make_cases=_cases,
    reference=torch_lstm,
    call=_call,
    mistakes=MISTAKES,
    hint="for each layer l: h, c = h0[l], c0[l]; for t: h, c = cell(seq[:, t], h, c, *layers[l]); "
         "seq = stack of h over t (dim=1); h_n, c_n stack the last h, c of each layer.",
    exception_hints={"RuntimeError": "shapes: x (B, T, D), h0 and c0 (num_layers, B, H); layer 0's W_ih is "
                                     "(4H, D), later layers' (4H, H); return h_n and c_n for all layers."},
)


def check_lstm_forward(lstm_forward, hidden: bool = False) -> None:
    """Check ``lstm_forward(x, layers, h0, c0, cell=...)`` against torch.nn.LSTM(batch_first=True)."""
    show(run_check(LSTM_FORWARD, lstm_forward, hidden))
