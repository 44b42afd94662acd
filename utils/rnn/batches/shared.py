"""What the exercises of the notebook ``rnn_batches`` share (it reuses :mod:`utils.rnn.shared` and adds):

* ragged lengths and a padded batch of random sequences with its lengths;
* random weights of a (bidirectional, multi-layer) ``torch.nn.LSTM`` in torch's parameter names, and that
  LSTM built in float64 with those weights, without touching torch's global generator;
* one direction of an LSTM over a padded batch in NumPy that respects each sequence's length, with switches
  for the known mistakes of ``bidirectional_lstm``.
"""
from __future__ import annotations

import numpy as np
import torch

from utils.checks.adapters import float64_tensor
from utils.rnn.shared import lstm_cell_numpy, lstm_weights


def step_mask(lengths, T: int) -> np.ndarray:
    """(B, T) bool: True at the real steps t < lengths[b]."""
    return np.arange(T)[None, :] < np.asarray(lengths)[:, None]


def padded_batch(rng: np.random.Generator, lengths, D: int, pad: float | None = 0.0) -> np.ndarray:
    """(B, T_max, D) random values at the real steps; the padded steps hold ``pad`` (random values if None)."""
    B, T = len(lengths), int(max(lengths))
    x = rng.normal(size=(B, T, D))
    if pad is not None:
        x[~step_mask(lengths, T)] = pad
    return x


def lstm_state_dict(rng: np.random.Generator, D: int, H: int, L: int, bidirectional: bool,
                    scale: float = 0.6) -> dict[str, np.ndarray]:
    """Random weights of ``torch.nn.LSTM(D, H, num_layers=L, bidirectional=...)`` under torch's names."""
    state = {}
    directions = ("", "_reverse") if bidirectional else ("",)
    for layer in range(L):
        width = D if layer == 0 else H * len(directions)
        for suffix in directions:
            w = lstm_weights(rng, width, H, scale)
            state.update({f"weight_ih_l{layer}{suffix}": w["W_ih"], f"weight_hh_l{layer}{suffix}": w["W_hh"],
                          f"bias_ih_l{layer}{suffix}": w["b_ih"], f"bias_hh_l{layer}{suffix}": w["b_hh"]})
    return state


def lstm_sizes(state: dict) -> tuple[int, int, int, bool]:
    """(D, H, L, bidirectional) of an LSTM state dict made by :func:`lstm_state_dict`."""
    W = state["weight_ih_l0"]
    L = 1 + max(int(name.split("_l")[1].split("_")[0]) for name in state)
    return W.shape[1], W.shape[0] // 4, L, "weight_ih_l0_reverse" in state


def torch_lstm(state: dict) -> torch.nn.LSTM:
    """``torch.nn.LSTM(batch_first=True)`` in float64 holding ``state``, the global generator untouched."""
    D, H, L, bidirectional = lstm_sizes(state)
    with torch.random.fork_rng(devices=[]):
        lstm = torch.nn.LSTM(D, H, num_layers=L, batch_first=True, bidirectional=bidirectional).double()
    lstm.load_state_dict({name: float64_tensor(value) for name, value in state.items()})
    return lstm


def direction_numpy(x, lengths, W_ih, W_hh, b_ih, b_hh, *, reverse=False, mask_state=True, zero_outputs=True,
                    h0=None, c0=None):
    """One LSTM direction over a padded batch x (B, T, D) -> (outputs (B, T, H), h (B, H), c (B, H)).

    Intended: the forward direction reads steps 0 .. len−1, the backward one len−1 .. 0 (each sequence from its
    own last real step); padded steps neither change the state nor give an output (zeros). Switches reproduce
    known mistakes: ``mask_state=False`` (padded steps update the state: the forward direction runs on through
    the padding, the backward one starts at T−1 and reads the padding first), ``zero_outputs=False`` (the state
    carried through a padded step is output there), ``h0`` / ``c0`` (the initial state, zeros by default).
    """
    B, T, _ = x.shape
    H = W_hh.shape[1]
    real = step_mask(lengths, T)
    h = np.zeros((B, H)) if h0 is None else h0
    c = np.zeros((B, H)) if c0 is None else c0
    outputs = np.zeros((B, T, H))
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        h_new, c_new = lstm_cell_numpy(x[:, t], h, c, W_ih, W_hh, b_ih, b_hh)
        update = real[:, t:t + 1] if mask_state else np.ones((B, 1), dtype=bool)
        h, c = np.where(update, h_new, h), np.where(update, c_new, c)
        outputs[:, t] = h if not zero_outputs else np.where(real[:, t:t + 1], h, 0.0)
    return outputs, h, c
