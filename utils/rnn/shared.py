"""What several exercises of the RNN assignment share.

* random texts for the hidden cases of ``build_vocab`` and ``make_sequences``;
* how a student's returned values are read for the comparison (arrays, stacked pairs, scalars);
* the RNN's parameter names, and ``torch.nn.RNN`` + ``torch.nn.Linear`` made without touching torch's
  global generator (``init_rnn_params``, ``rnn_forward``, ``rnn_gradients``);
* the LSTM cell in NumPy with mistake switches, and random LSTM weights in torch's layout
  (``lstm_cell``, ``lstm_forward``, ``LSTMModel``);
* how a sequence is split into the chunks the student's forward pass is called on.
"""
from __future__ import annotations

import numpy as np
import torch

from utils.checks.adapters import to_numpy
from utils.checks.seeding import case_rng

# --------------------------------------------------------------------------- texts

ALPHABET = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?'-")
RANDOM_TEXT = "a random text"   # a hidden setting: the text is drawn for the case


def text_of(setting: str, exercise: str, number: int, salt: str) -> str:
    """The case's text: ``setting`` itself, or for :data:`RANDOM_TEXT` random letters, repeated so that some
    characters recur."""
    if setting != RANDOM_TEXT:
        return setting
    rng = case_rng(exercise, number, salt)
    pool = rng.choice(ALPHABET, size=int(rng.integers(3, 15)), replace=False)
    return "".join(rng.choice(pool, size=int(rng.integers(8, 30))))


# --------------------------------------------------------------------------- reading the student's values


def array_or_value(value):
    """A student's value as a float64 array, or the value itself when it is not a numeric array
    (so that the comparison names its type)."""
    array = to_numpy(value)
    if array is None or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        return value
    return array.astype(np.float64)


def stacked(parts):
    """Equal-shaped parts stacked on a new first axis; otherwise the first odd part as it is."""
    arrays = [array_or_value(p) for p in parts]
    for raw, a in zip(parts, arrays, strict=True):
        if not isinstance(a, np.ndarray):
            return raw
    for a in arrays[1:]:
        if a.shape != arrays[0].shape:
            return a
    return np.stack(arrays)


def scalar_or_value(value):
    """A one-element value as a 0-d float64 array; anything else as :func:`array_or_value` reads it."""
    array = array_or_value(value)
    if isinstance(array, np.ndarray) and array.size == 1:
        return array.reshape(())
    return array


def splits(T: int, n: int) -> list[tuple[int, int]]:
    """Split range(T) into at most ``n`` consecutive non-empty chunks."""
    n = max(1, min(n, T))
    edges = np.linspace(0, T, n + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


# --------------------------------------------------------------------------- the vanilla RNN

PARAM_NAMES = ("W_xh", "W_hh", "b_xh", "b_hh", "W_hy", "b_y")


def torch_rnn_modules(V: int, H: int, device=None) -> tuple[torch.nn.RNN, torch.nn.Linear]:
    """``torch.nn.RNN(V, H)`` (tanh) and ``torch.nn.Linear(H, V)``, with the global generator left as it was."""
    with torch.random.fork_rng(devices=[]):
        rnn = torch.nn.RNN(V, H, nonlinearity="tanh", device=device)
        head = torch.nn.Linear(H, V, device=device)
    return rnn, head


# --------------------------------------------------------------------------- the LSTM


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def lstm_cell_numpy(x, h, c, W_ih, W_hh, b_ih, b_hh, *, order="ifgo", candidate_sigmoid=False,
                    tanh_c=True, forget=True, bias_hh=True, bias_ih=True):
    """One LSTM step in torch's layout: x (B, D), h and c (B, H) -> (h, c).

    ``order`` names the gate held by each of the 4 row blocks ("ifgo" is torch's); the other switches
    reproduce known mistakes.
    """
    z = x @ W_ih.T + (b_ih if bias_ih else 0) + h @ W_hh.T + (b_hh if bias_hh else 0)
    blocks = dict(zip(order, np.split(z, 4, axis=-1), strict=True))
    i, f, o = sigmoid(blocks["i"]), sigmoid(blocks["f"]), sigmoid(blocks["o"])
    g = sigmoid(blocks["g"]) if candidate_sigmoid else np.tanh(blocks["g"])
    c_new = (f * c if forget else 0) + i * g
    h_new = o * (np.tanh(c_new) if tanh_c else c_new)
    return h_new, c_new


def lstm_weights(rng: np.random.Generator, D: int, H: int, scale: float = 0.7) -> dict[str, np.ndarray]:
    """Random weights of one LSTM layer: W_ih (4H, D), W_hh (4H, H), b_ih and b_hh (4H,)."""
    return {"W_ih": rng.normal(0, scale, (4 * H, D)), "W_hh": rng.normal(0, scale, (4 * H, H)),
            "b_ih": rng.normal(0, 0.5, 4 * H), "b_hh": rng.normal(0, 0.5, 4 * H)}
