"""``lstm_forward(x, layers, h0, c0, cell) -> (output, (h_n, c_n))``: a multi-layer LSTM over a batch,
x (B, T, D), like ``torch.nn.LSTM(batch_first=True)``, given a correct ``cell``.

The sequence is fed in up to three calls over consecutive time steps, each starting from the
(h_n, c_n) the previous call returned. Compared: the output (B, T, H) of all calls, followed along the time axis
by the (h_n, c_n) the last call returned (each (L, B, H), laid out per layer), so a mistake in the final states
is seen even where the output is right (e.g. the top layer's state returned for every layer). Rules: each call's
output, h_n and c_n have their own shapes; no argument changes in place.
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
from utils.rnn.shared import array_or_value, lstm_cell_numpy, lstm_weights, splits

SETTINGS = [(1, 3, 2, 2, 1), (2, 5, 3, 3, 2), (3, 6, 2, 4, 2), (2, 7, 2, 3, 3)]   # (B, T, D, H, L)
HIDDEN_SETTINGS = [(4, 8, 5, 5, 3), (3, 4, 1, 6, 2), (2, 3, 3, 2, 2)]
IN_PLACE_RULE = "your functions do not change their arguments in place (the notebook's introduction)"
WEIGHT_NAMES = ("W_ih", "W_hh", "b_ih", "b_hh")   # one layer's weights, in the order the cell takes them


def _inputs(number, setting, salt):
    B, T, D, H, L = setting
    rng = case_rng("lstm_forward", number, salt)
    layers = [lstm_weights(rng, D if layer == 0 else H, H, 0.6) for layer in range(L)]
    return {"x": rng.normal(size=(B, T, D)), "layers": layers,
            "h0": rng.normal(0, 0.6, (L, B, H)), "c0": rng.normal(0, 1.0, (L, B, H)), "splits": splits(T, 3)}


def _describe_index_for(chunks, T, L):
    def describe(index):
        b, t, j = index
        if t >= T:
            which, layer = ("h_n", t - T) if t < T + L else ("c_n", t - T - L)
            return f"{which}[layer={layer}, b={b}, j={j}] returned by your last call"
        call = next(k for k, (lo, hi) in enumerate(chunks) if lo <= t < hi) + 1
        return f"output[b={b}, t={t}, j={j}] (call {call}" + (", started from the (h_n, c_n) of your "
                                                               "previous call)" if call > 1 else ")")
    return describe


def _regions(B, T, L, H):
    def mask(lo, hi):
        m = np.zeros((B, T + 2 * L, H), dtype=bool)
        m[:, lo:hi] = True
        return m
    return {"the entries of output": mask(0, T), "the entries of h_n": mask(T, T + L),
            "the entries of c_n": mask(T + L, T + 2 * L)}


def _cases(hidden: bool) -> list[Case]:
    cases = []
    for number, (setting, salt) in enumerate(visible_then_hidden(SETTINGS, HIDDEN_SETTINGS, hidden), start=1):
        B, T, D, H, L = setting
        inputs = _inputs(number, setting, salt)
        chunks = ", ".join(f"{a}..{b - 1}" for a, b in inputs["splits"])
        cases.append(Case(f"B={B}, T={T}, D={D}, H={H}, num_layers={L}, random h0 and c0; the sequence is fed "
                          f"in calls over time steps {chunks}, each starting from the (h_n, c_n) your previous "
                          "call returned", inputs, _describe_index_for(inputs["splits"], T, L),
                          regions=_regions(B, T, L, H)))
    return cases


def _final_states(h_n, c_n) -> np.ndarray:
    """(h_n, c_n), each (L, B, H), laid out as (B, 2L, H) to follow the output along the time axis."""
    return np.concatenate([np.asarray(h_n, dtype=np.float64).transpose(1, 0, 2),
                           np.asarray(c_n, dtype=np.float64).transpose(1, 0, 2)], axis=1)


def torch_lstm_cell_fn(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh):
    """A correct LSTM cell in torch; passed to the student's ``lstm_forward`` as ``cell``."""
    i, f, g, o = (x @ W_ih.T + b_ih + h_prev @ W_hh.T + b_hh).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _call(fn, inputs):
    layers = [tuple(float64_tensor(w[name]) for name in WEIGHT_NAMES) for w in inputs["layers"]]
    x, h, c = float64_tensor(inputs["x"]), float64_tensor(inputs["h0"]), float64_tensor(inputs["c0"])
    L, B, H = inputs["h0"].shape
    parts = []
    for a, b in inputs["splits"]:
        x_chunk = x[:, a:b]
        with kept_unchanged({"x": x_chunk, "layers": layers, "h0": h, "c0": c}, rule=IN_PLACE_RULE):
            result = fn(x_chunk, layers, h, c, cell=torch_lstm_cell_fn)
        if not (isinstance(result, (tuple, list)) and len(result) == 2 and isinstance(result[1], (tuple, list))
                and len(result[1]) == 2):
            raise TypeError("lstm_forward must return (output, (h_n, c_n)) like torch.nn.LSTM")
        out, (h, c) = result
        require_shape(out, (B, b - a, H), what=f"output (for {b - a} input step{'s' if b - a > 1 else ''})",
                      rule="output has shape (B, T, H), the top layer's h_t at every step (Exercise 2.2)")
        for name, value in (("h_n", h), ("c_n", c)):
            require_shape(value, (L, B, H), what=name,
                          rule=f"{name} has shape (num_layers, B, H), every layer's state after the last step "
                               "(Exercise 2.2)")
        out = array_or_value(out)
        if not isinstance(out, np.ndarray):
            return out
        parts.append(out)
    return np.concatenate([*parts, _final_states(array_or_value(h), array_or_value(c))], axis=1)


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
        out, (h_n, c_n) = lstm(float64_tensor(x), (float64_tensor(inputs["h0"]), float64_tensor(inputs["c0"])))
    return np.concatenate([out.numpy(), _final_states(h_n.numpy(), c_n.numpy())], axis=1)


def lstm_numpy(x, layers, h0, c0, *, carry_c=True, reset_h=False, reset_to_h0=False, layers_read_x=False,
               shared_state=False, chained_layers=False, top_state_only=False):
    """A multi-layer LSTM over a batch (B, T, D) -> (output, h_n, c_n); keyword switches reproduce known mistakes."""
    B, T, _ = x.shape
    seq = x
    h_n, c_n = [], []
    h, c = h0[0], c0[0]
    for layer, (W_ih, W_hh, b_ih, b_hh) in enumerate(layers):
        start = 0 if shared_state else layer
        if not (chained_layers and layer > 0):   # the mistake carries the state of layer l − 1 into layer l
            h, c = h0[start], c0[start]
        outs = []
        source = x if layers_read_x else seq
        for t in range(T):
            h_prev = np.zeros_like(h) if reset_h else (h0[layer] if reset_to_h0 else h)
            h, c_new = lstm_cell_numpy(source[:, t], h_prev, c, W_ih, W_hh, b_ih, b_hh)
            if carry_c:   # the mistake keeps c = c0[layer]: `h, _ = cell(...)`
                c = c_new
            outs.append(h)
        seq = np.stack(outs, axis=1)
        h_n.append(h)
        c_n.append(c)
    if top_state_only:   # every layer's final state taken to be the top layer's (true for one layer only)
        h_n, c_n = [h_n[-1]] * len(layers), [c_n[-1]] * len(layers)
    return seq, np.stack(h_n), np.stack(c_n)


def _computed_with(**switches):
    def compute(inputs):
        layers = [tuple(w[name] for name in WEIGHT_NAMES) for w in inputs["layers"]]
        h, c, parts = inputs["h0"], inputs["c0"], []
        for a, b in inputs["splits"]:
            out, h, c = lstm_numpy(inputs["x"][:, a:b], layers, h, c, **switches)
            parts.append(out)
        return np.concatenate([*parts, _final_states(h, c)], axis=1)
    return compute


_CARRY = ("each layer takes its state from h0[l] and c0[l] once, before its time loop; every step then starts from "
          "the state the step before produced.")
MISTAKES = [
    Mistake("cell state not carried between steps: every step starts from the initial c0 "
            "(the new c returned by cell is thrown away)",
            "keep both parts of what cell returns and feed both into the next step.", _computed_with(carry_c=False)),
    Mistake("h is reset to zeros at every step instead of carrying h_{t−1}", _CARRY, _computed_with(reset_h=True)),
    Mistake("every step starts again from h0[l] instead of from the previous step's h", _CARRY,
            _computed_with(reset_to_h0=True)),
    Mistake("every layer reads the input x: layer l > 0 must read the outputs of layer l − 1",
            "after each layer, the sequence its h_t form over time is the input of the next layer.",
            _computed_with(layers_read_x=True)),
    Mistake("every layer starts from layer 0's initial state: layer l must start from h0[l] and c0[l]",
            "h0 and c0 are (num_layers, B, H): each layer has its own initial state.",
            _computed_with(shared_state=True)),
    Mistake("layer l starts from the final state of layer l − 1 instead of its own h0[l] and c0[l]",
            "the state is carried along time, not from one layer to the next: reset it from h0 and c0 for "
            "every layer.", _computed_with(chained_layers=True)),
    Mistake("h_n and c_n repeat the top layer's final state for every layer (true only with one layer)",
            "h_n[l] and c_n[l] are the final states of layer l: collect each layer's last h and c.",
            _computed_with(top_state_only=True)),
]

LSTM_FORWARD = Exercise(
    function="lstm_forward",
    forbidden=("torch.nn.LSTMCell", "torch.nn.LSTM", "torch.lstm_cell", "torch.lstm"),
    reference_name="torch.nn.LSTM with num_layers layers and batch_first=True, holding your weights",
    make_cases=_cases,
    reference=torch_lstm,
    call=_call,
    mistakes=MISTAKES,
    hint="compare your loops with the picture above Exercise 2.2: where each layer's state starts, what each layer "
         "reads, what is carried from step to step, and what output, h_n and c_n hold.",
    exception_hints={"RuntimeError": "shapes: x (B, T, D), h0 and c0 (num_layers, B, H); layer 0's W_ih is "
                                     "(4H, D), later layers' (4H, H); return h_n and c_n for all layers."},
    section="Exercise 2.2",
    layout=Layout(axes=("example", "step", "unit")),
    covers={
        "a single layer": lambda c: len(c.inputs["layers"]) == 1,
        "2 or more layers": lambda c: len(c.inputs["layers"]) >= 2,
        "3 layers": lambda c: len(c.inputs["layers"]) >= 3,
        "a batch of 2 or more": lambda c: c.inputs["x"].shape[0] >= 2,
        "D ≠ H": lambda c: c.inputs["x"].shape[2] != c.inputs["h0"].shape[2],
        "D = 1": lambda c: c.inputs["x"].shape[2] == 1,
        "a sequence fed in three calls": lambda c: len(c.inputs["splits"]) == 3,
        "calls of a single time step": lambda c: all(b - a == 1 for a, b in c.inputs["splits"]),
    },
)


def check_lstm_forward(lstm_forward, hidden: bool = False) -> None:
    """Check ``lstm_forward(x, layers, h0, c0, cell=...)`` against torch.nn.LSTM(batch_first=True)."""
    show(run_check(LSTM_FORWARD, lstm_forward, hidden))
