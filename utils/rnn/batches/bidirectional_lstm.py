"""``bidirectional_lstm(x, lengths, params_forward, params_backward, cell) -> (output, (h_n, c_n))``: a one-layer
bidirectional LSTM over a padded batch x (B, T_max, D) from scratch, each direction a loop over time with
``cell`` (the check passes a correct LSTM cell), respecting each sequence's length.

Intended (what ``torch.nn.LSTM(bidirectional=True, batch_first=True)`` does on a packed batch, with zero initial
states): the forward direction reads steps 0 .. len−1, the backward direction len−1 .. 0, each sequence from its
own last real step; output (B, T_max, 2H) holds [forward h_t, backward h_t] at real steps and zeros at padded
steps (as ``pad_packed_sequence`` gives); h_n and c_n (2, B, H) hold each direction's final state (forward
after step len−1, backward after step 0). Compared: output followed along the time axis by h_n and c_n laid out
as (B, 1, 2H) each ([forward, backward]). Rules: output, h_n and c_n have their shapes; no argument changes in
place.
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
from utils.rnn.batches.shared import direction_numpy, lstm_state_dict, padded_batch, step_mask, torch_lstm
from utils.rnn.lstm_forward import torch_lstm_cell_fn
from utils.rnn.shared import array_or_value

# (lengths, D, H, padding: "zeros" or "random values")
SETTINGS = [((3, 5, 2), 2, 3, "zeros"), ((4, 1, 4, 2), 3, 2, "zeros"), ((2, 6, 3), 1, 4, "random values")]
HIDDEN_SETTINGS = [((5, 2, 7, 1, 3), 3, 3, "random values"), ((3, 3), 2, 2, "zeros"), ((1, 4, 6, 2), 4, 3, "zeros")]
IN_PLACE_RULE = "bidirectional_lstm does not change its arguments in place (Exercise 3)"
WEIGHTS = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")


def _cases(hidden: bool) -> list[Case]:
    cases = []
    for number, (setting, salt) in enumerate(visible_then_hidden(SETTINGS, HIDDEN_SETTINGS, hidden), start=1):
        lengths, D, H, padding = setting
        rng = case_rng("bidirectional_lstm", number, salt)
        inputs = {"lstm": lstm_state_dict(rng, D, H, 1, True),
                  "x": padded_batch(rng, lengths, D, pad=0.0 if padding == "zeros" else None),
                  "lengths": np.array(lengths)}
        T = max(lengths)
        cases.append(Case(f"B={len(lengths)}, T_max={T}, D={D}, H={H}, lengths {list(lengths)}, padded steps of x "
                          f"hold {padding}; random weights for each direction, zero initial states", inputs,
                          _describe_index_for(T, H), regions=_regions(np.array(lengths), T, H)))
    return cases


def _describe_index_for(T: int, H: int):
    def describe(index):
        b, t, j = index
        direction, unit = ("forward", j) if j < H else ("backward", j - H)
        if t >= T:
            return f"{'h_n' if t == T else 'c_n'}[{0 if j < H else 1} ({direction}), b={b}, j={unit}]"
        return f"output[b={b}, t={t}, {j}] ({direction} half, unit {unit})"
    return describe


def _regions(lengths, T: int, H: int) -> dict:
    B = len(lengths)

    def mask(rows=slice(None), cols=slice(None)):
        m = np.zeros((B, T + 2, 2 * H), dtype=bool)
        m[:, rows, cols] = True
        return m
    padded = mask()
    padded[:, :T] = ~step_mask(lengths, T)[:, :, None]
    padded[:, T:] = False
    return {"the forward half of output": mask(slice(0, T), slice(0, H)),
            "the backward half of output": mask(slice(0, T), slice(H, None)),
            "the padded steps of output": padded, "the entries of h_n": mask(slice(T, T + 1)),
            "the entries of c_n": mask(slice(T + 1, T + 2))}


def _weights(state: dict, suffix: str) -> tuple:
    return tuple(state[name + suffix] for name in WEIGHTS)


def _layout(output, h_n, c_n) -> np.ndarray:
    """output (B, T, 2H), h_n and c_n (2, B, H) as one (B, T + 2, 2H) array."""
    finals = [np.concatenate([s[0], s[1]], axis=1)[:, None] for s in (np.asarray(h_n), np.asarray(c_n))]
    return np.concatenate([np.asarray(output, dtype=np.float64), *finals], axis=1)


def _call(fn, inputs):
    x, lengths = float64_tensor(inputs["x"]), torch.tensor(inputs["lengths"])
    forward = tuple(float64_tensor(w) for w in _weights(inputs["lstm"], ""))
    backward = tuple(float64_tensor(w) for w in _weights(inputs["lstm"], "_reverse"))
    B, T, _ = x.shape
    H = forward[1].shape[1]
    arguments = {"x": x, "lengths": lengths, "params_forward": forward, "params_backward": backward}
    with kept_unchanged(arguments, rule=IN_PLACE_RULE):
        result = fn(x, lengths, forward, backward, cell=torch_lstm_cell_fn)
    if not (isinstance(result, (tuple, list)) and len(result) == 2 and isinstance(result[1], (tuple, list))
            and len(result[1]) == 2):
        raise TypeError("bidirectional_lstm must return (output, (h_n, c_n)) like torch.nn.LSTM")
    output, (h_n, c_n) = result
    require_shape(output, (B, T, 2 * H), what="output",
                  rule="output has shape (B, T_max, 2H): [forward h_t, backward h_t] at every step (Exercise 3)")
    for name, value in (("h_n", h_n), ("c_n", c_n)):
        require_shape(value, (2, B, H), what=name,
                      rule=f"{name} has shape (2, B, H): the forward direction's final state, then the backward "
                           "one's (Exercise 3)")
    parts = [array_or_value(p) for p in (output, h_n, c_n)]
    for part in parts:
        if not isinstance(part, np.ndarray):
            return part
    return _layout(*parts)


def torch_bidirectional(inputs) -> np.ndarray:
    """nn.LSTM(bidirectional=True, batch_first=True) on the packed batch, re-padded with zeros."""
    lstm = torch_lstm(inputs["lstm"])
    x, lengths = float64_tensor(inputs["x"]), torch.tensor(inputs["lengths"])
    with torch.no_grad():
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, (h_n, c_n) = lstm(packed)
        output, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return _layout(output.numpy(), h_n.numpy(), c_n.numpy())


def _computed_with(*, backward_masked=True, forward_masked=True, zero_outputs=True, reversed_outputs=False,
                   swapped=False, backward_weights="_reverse", backward_h_n_first_step=False, chained=False):
    """The answer in NumPy, with switches that reproduce known mistakes (none: the intended answer)."""
    def compute(inputs):
        x, lengths = inputs["x"], inputs["lengths"]
        B, T, _ = x.shape
        out_f, h_f, c_f = direction_numpy(x, lengths, *_weights(inputs["lstm"], ""), mask_state=forward_masked,
                                          zero_outputs=zero_outputs)
        start = (h_f, c_f) if chained else (None, None)
        out_b, h_b, c_b = direction_numpy(x, lengths, *_weights(inputs["lstm"], backward_weights), reverse=True,
                                          mask_state=backward_masked, zero_outputs=zero_outputs,
                                          h0=start[0], c0=start[1])
        if reversed_outputs:   # stored in the order the backward loop produced them: step len−1 first
            flipped = np.zeros_like(out_b)
            for b, n in enumerate(lengths):
                flipped[b, :n] = out_b[b, :n][::-1]
            out_b = flipped
        if backward_h_n_first_step:   # the backward output at the last real step: it has read one step only
            h_b = out_b[np.arange(B), np.asarray(lengths) - 1]
        halves = (out_b, out_f) if swapped else (out_f, out_b)
        return _layout(np.concatenate(halves, axis=2), np.stack([h_f, h_b]), np.stack([c_f, c_b]))
    return compute


MISTAKES = [
    Mistake("the backward direction starts at T_max − 1 for every sequence, so a shorter one reads its padding "
            "before its last real step",
            "the backward direction of sequence b starts at its own last real step, lengths[b] − 1: a padded step "
            "must leave its state as it is (zero until the sequence begins).", _computed_with(backward_masked=False)),
    Mistake("the forward direction's state runs on through the padded steps, so its final state is taken at "
            "T_max − 1, not at the sequence's last real step",
            "a padded step must leave the state as it is: keep the previous h and c wherever t ≥ lengths[b].",
            _computed_with(forward_masked=False)),
    Mistake("the outputs at padded steps are not zero",
            "pad_packed_sequence puts zeros at every padded step of the output: write zeros wherever "
            "t ≥ lengths[b].", _computed_with(zero_outputs=False)),
    Mistake("the backward outputs are stored in the order they were computed (last real step first), not "
            "re-reversed to the time steps they belong to",
            "output[b, t] holds both directions' states at step t: the backward state computed after reading step "
            "t goes to position t.", _computed_with(reversed_outputs=True)),
    Mistake("the two directions are concatenated in the wrong order: backward first",
            "like nn.LSTM, output[..., :H] is the forward direction and output[..., H:] the backward one.",
            _computed_with(swapped=True)),
    Mistake("the backward direction uses the forward direction's weights",
            "each direction has its own weights: params_backward for the backward loop.",
            _computed_with(backward_weights="")),
    Mistake("h_n[1] is the backward state at the sequence's last real step, where it has read one step only",
            "the backward direction finishes at step 0: its final state is the one after reading step 0.",
            _computed_with(backward_h_n_first_step=True)),
    Mistake("the backward direction starts from the forward direction's final state instead of zeros",
            "both directions start from zero states of their own; they meet only in the output.",
            _computed_with(chained=True)),
]

BIDIRECTIONAL = Exercise(
    function="bidirectional_lstm",
    forbidden=("torch.nn.LSTMCell", "torch.nn.LSTM", "torch.lstm_cell", "torch.lstm"),
    reference_name="torch.nn.LSTM(bidirectional=True, batch_first=True) on the packed batch, holding your weights",
    make_cases=_cases,
    reference=torch_bidirectional,
    call=_call,
    mistakes=MISTAKES,
    hint="compare your two loops with the picture above Exercise 3: where each direction starts for each sequence, "
         "what a padded step does to the state and to the output, and where each final state is taken.",
    exception_hints={"RuntimeError": "shapes: x (B, T_max, D); each direction's W_ih is (4H, D) and W_hh (4H, H); "
                                     "cell takes x_t (B, D), h and c (B, H)."},
    section="Exercise 3",
    layout=Layout(axes=("example", "step", "unit")),
    covers={
        "a batch of 2 or more": lambda c: len(c.inputs["lengths"]) >= 2,
        "lengths not sorted": lambda c: list(c.inputs["lengths"]) != sorted(c.inputs["lengths"], reverse=True),
        "a sequence of length 1": lambda c: min(c.inputs["lengths"]) == 1,
        "equal lengths": lambda c: len(set(c.inputs["lengths"])) == 1,
        "random values in the padding": lambda c: bool(np.any(c.inputs["x"][~step_mask(c.inputs["lengths"],
                                                                                     c.inputs["x"].shape[1])])),
        "D = 1": lambda c: c.inputs["x"].shape[2] == 1,
        "D ≠ H": lambda c: c.inputs["x"].shape[2] != c.inputs["lstm"]["weight_hh_l0"].shape[1],
    },
)


def check_bidirectional_lstm(bidirectional_lstm, hidden: bool = False) -> None:
    """Check ``bidirectional_lstm(x, lengths, params_forward, params_backward, cell=...)`` against
    torch.nn.LSTM(bidirectional=True) on packed sequences."""
    show(run_check(BIDIRECTIONAL, bidirectional_lstm, hidden))
