"""Tests for the checks in utils/rnn/: every check accepts correct variants, names each catalogued mistake,
reports stubs as not implemented, leaves the global RNGs alone; the sample mistakes apply."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from notebook_solutions import NotebookSolutions
from utils import rnn as R
from utils.checks.feedback import CheckFailure
from utils.instructor.samples import mistakes_for
from utils.rnn.shared import PARAM_NAMES

NOTEBOOK = Path(__file__).resolve().parents[1] / "source" / "rnn" / "rnn.ipynb"
CHECKS = {name: getattr(R, f"check_{name}") for name in R.EXERCISES}


# --------------------------------------------------------------------------- the notebook's solutions

NB = NotebookSolutions(NOTEBOOK, {"torch": torch, "nn": nn, "F": F, "np": np})


@pytest.fixture(scope="module")
def sol():
    return NB.run()


def _mistake_name(function: str, keyword: str) -> str:
    names = [m.name for m in R.EXERCISES[function].mistakes if keyword in m.name]
    assert len(names) == 1, (function, keyword, names)
    return names[0]


def _fails_with(function: str, student, text: str, hidden: bool = False) -> str:
    with pytest.raises(CheckFailure) as info:
        CHECKS[function](student, hidden=hidden)
    message = str(info.value)
    assert text in message, message
    return message


# --------------------------------------------------------------------------- (a) correct solutions and variants

def test_vocab_variants_pass():
    def as_string_and_list(text):
        chars = "".join(sorted(list(set(text))))
        return chars, {c: i for i, c in enumerate(chars)}, list(chars)

    R.check_build_vocab(as_string_and_list, hidden=True)


def test_sequence_variants_pass():
    def vectorized(text, char2idx):
        idx = torch.tensor([char2idx[c] for c in text])
        return F.one_hot(idx[:-1], len(char2idx)).float(), idx[1:]

    def numpy_version(text, char2idx):
        idx = np.array([char2idx[c] for c in text])
        return np.eye(len(char2idx), dtype=np.float32)[idx[:-1]], idx[1:]

    R.check_make_sequences(vectorized, hidden=True)
    R.check_make_sequences(numpy_version, hidden=True)


def test_init_variants_pass():
    def with_parameters(V, H):
        shapes = {"W_xh": (H, V), "W_hh": (H, H), "b_xh": (H,), "b_hh": (H,), "W_hy": (V, H), "b_y": (V,)}
        return {k: nn.Parameter(torch.randn(*s, dtype=torch.float64) * 0.1) for k, s in shapes.items()}

    R.check_init_rnn_params(with_parameters, hidden=True)


def _row_vector_forward(params, inputs, h0, dtype=None):
    p = {k: (v.to(dtype) if dtype else v) for k, v in params.items()}
    x = inputs.to(dtype) if dtype else inputs
    h = h0.to(dtype) if dtype else h0
    projected = x @ p["W_xh"].T + p["b_xh"]          # all input projections at once
    states = []
    for t in range(len(x)):
        h = torch.tanh(projected[t] + h @ p["W_hh"].T + p["b_hh"])
        states.append(h)
    return torch.stack(states) @ p["W_hy"].T + p["b_y"], h


def test_forward_variants_pass():
    R.check_rnn_forward(_row_vector_forward, hidden=True)
    R.check_rnn_forward(lambda p, x, h0: _row_vector_forward(p, x, h0, torch.float32), hidden=True)

    def numpy_forward(params, inputs, h0):
        p = {k: v.numpy() for k, v in params.items()}
        h, out = h0.numpy(), []
        for x_t in inputs.numpy():
            h = np.tanh(p["W_xh"] @ x_t + p["b_xh"] + p["W_hh"] @ h + p["b_hh"])
            out.append(p["W_hy"] @ h + p["b_y"])
        return np.array(out), h

    R.check_rnn_forward(numpy_forward, hidden=True)


def test_loss_and_perplexity_variants_pass():
    def manual(logits, targets):
        log_probs = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        return -log_probs[torch.arange(len(targets)), targets].mean()

    R.check_rnn_loss(manual, hidden=True)
    R.check_rnn_loss(lambda z, y: F.cross_entropy(z.float(), y), hidden=True)
    R.check_perplexity(lambda z, y: math.exp(F.cross_entropy(z, y).item()), hidden=True)
    R.check_perplexity(lambda z, y: torch.exp(manual(z.float(), y)).numpy(), hidden=True)


def test_gradient_variants_pass(sol):
    def all_at_once(params, inputs, targets, h0, forward, loss_fn):
        loss = loss_fn(forward(params, inputs, h0)[0], targets)
        grads = torch.autograd.grad(loss, list(params.values()))
        return dict(zip(params, grads, strict=True))

    def with_backward(params, inputs, targets, h0, forward, loss_fn):
        loss_fn(forward(params, inputs, h0)[0], targets).backward()
        return {k: p.grad for k, p in params.items()}

    R.check_rnn_gradients(all_at_once, hidden=True)
    R.check_rnn_gradients(with_backward, hidden=True)


def _cell_by_slices(x, h, c, W_ih, W_hh, b_ih, b_hh, dtype=None):
    if dtype is not None:
        x, h, c, W_ih, W_hh, b_ih, b_hh = (v.to(dtype) for v in (x, h, c, W_ih, W_hh, b_ih, b_hh))
    H = h.shape[1]

    def gate(k):
        rows = slice(k * H, (k + 1) * H)
        return x @ W_ih[rows].T + b_ih[rows] + h @ W_hh[rows].T + b_hh[rows]
    i, f, g, o = torch.sigmoid(gate(0)), torch.sigmoid(gate(1)), torch.tanh(gate(2)), torch.sigmoid(gate(3))
    c_new = f * c + i * g
    return o * torch.tanh(c_new), c_new


def test_lstm_cell_variants_pass():
    R.check_lstm_cell(_cell_by_slices, hidden=True)
    R.check_lstm_cell(lambda *a: _cell_by_slices(*a, dtype=torch.float32), hidden=True)


def test_lstm_forward_variants_pass():
    def time_outer(x, layers, h0, c0, cell):
        hs, cs = list(h0), list(c0)
        outputs = []
        for t in range(x.shape[1]):
            inp = x[:, t]
            for layer, weights in enumerate(layers):
                hs[layer], cs[layer] = cell(inp, hs[layer], cs[layer], *weights)
                inp = hs[layer]
            outputs.append(inp)
        return torch.stack(outputs, 1), (torch.stack(hs), torch.stack(cs))

    R.check_lstm_forward(time_outer, hidden=True)


def test_model_variants_pass():
    class FromHidden(nn.Module):
        def __init__(self, input_size, hidden_size, num_layers, output_size):
            super().__init__()
            self.lstm = nn.LSTM(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers,
                                batch_first=True)
            self.fc = nn.Linear(hidden_size, output_size)

        def forward(self, x):
            _, (h_n, _) = self.lstm(x)
            return self.fc(h_n[-1])

    R.check_LSTMModel(FromHidden, hidden=True)


def test_gradient_norm_variants_pass():
    def with_backward(rnn, x):
        x = x.clone().requires_grad_()
        rnn(x)[0][0, -1].sum().backward()
        return x.grad[0].norm(dim=1).numpy()

    def loop(rnn, x):
        x = x.clone().requires_grad_()
        (g,) = torch.autograd.grad(rnn(x)[0][:, -1, :].sum(), x)
        return [math.sqrt(float((g[0, t] ** 2).sum())) for t in range(x.shape[1])]

    R.check_gradient_norms(with_backward, hidden=True)
    R.check_gradient_norms(loop, hidden=True)


# --------------------------------------------------------------------------- (b) each catalogued mistake is named

def _vocab(kind):
    def build_vocab(text):
        chars = {"unsorted": list(dict.fromkeys(text)), "reverse": sorted(set(text), reverse=True),
                 "duplicates": sorted(text)}.get(kind, sorted(set(text)))
        char2idx = {c: i for i, c in enumerate(chars)}
        if kind == "positions":
            char2idx = {c: i for i, c in enumerate(text)}
        if kind == "start_one":
            char2idx = {c: i for i, c in enumerate(chars, start=1)}
            return chars, char2idx, {i: c for i, c in enumerate(chars, start=1)}
        return chars, char2idx, {i: c for i, c in enumerate(chars)}
    return build_vocab


@pytest.mark.parametrize("kind, keyword", [("unsorted", "not sorted"), ("reverse", "reverse order"),
                                           ("duplicates", "duplicates kept"), ("positions", "positions"),
                                           ("start_one", "indices start at 1")])
def test_vocab_mistakes(kind, keyword):
    _fails_with("build_vocab", _vocab(kind), _mistake_name("build_vocab", keyword))


def _sequences(kind):
    def make_sequences(text, char2idx):
        V = len(char2idx)
        src, dst = {"swapped": (text[1:], text[:-1]), "no_shift": (text[:-1], text[:-1]),
                    "full": (text, text)}.get(kind, (text[:-1], text[1:]))
        shift = 1 if kind == "index_plus_one" else 0
        rows = []
        for ch in src:
            vec = torch.zeros(V)
            if char2idx[ch] + shift < V:
                vec[char2idx[ch] + shift] = 1.0
            rows.append(vec)
        return torch.stack(rows), torch.tensor([char2idx[c] for c in dst])
    return make_sequences


@pytest.mark.parametrize("kind, keyword", [("swapped", "swapped"), ("no_shift", "not shifted"),
                                           ("full", "whole text"), ("index_plus_one", "one place too far")])
def test_sequence_mistakes(kind, keyword):
    _fails_with("make_sequences", _sequences(kind), _mistake_name("make_sequences", keyword))


def _init(kind):
    def init_rnn_params(V, H):
        shapes = {"W_xh": (V, H) if kind in ("xh", "both") else (H, V), "W_hh": (H, H), "b_xh": (H,),
                  "b_hh": (H,), "W_hy": (H, V) if kind in ("hy", "both") else (V, H), "b_y": (V,)}
        if kind == "non_leaf":
            return {k: torch.randn(*s, requires_grad=True) * 0.1 for k, s in shapes.items()}
        return {k: torch.randn(*s).requires_grad_(kind != "no_grad") for k, s in shapes.items()}
    return init_rnn_params


@pytest.mark.parametrize("kind, keyword", [("xh", "transposed W_xh:"), ("hy", "transposed W_hy:"),
                                           ("both", "transposed W_xh and W_hy"), ("non_leaf", "not leaf"),
                                           ("no_grad", "requires_grad is missing")])
def test_init_mistakes(kind, keyword):
    _fails_with("init_rnn_params", _init(kind), _mistake_name("init_rnn_params", keyword))


def _forward(kind):
    def rnn_forward(params, inputs, h0):
        W_xh, W_hh, b_xh, b_hh, W_hy, b_y = (params[k] for k in PARAM_NAMES)
        h = torch.zeros_like(h0) if kind == "ignore_h0" else h0
        logits = []
        for t in range(inputs.shape[0]):
            if kind == "reset_h":
                h = torch.zeros_like(h0)
            a = W_xh @ inputs[t] + (h @ W_hh if kind == "transpose_hh" else W_hh @ h)
            a = a + (0 if kind in ("no_bxh", "no_bias") else b_xh) + (0 if kind in ("no_bhh", "no_bias") else b_hh)
            h = torch.relu(a) if kind == "relu" else torch.tanh(a)
            s = W_hy @ h + b_y
            logits.append(torch.tanh(s) if kind == "tanh_out" else s)
        return torch.stack(logits), (h0 if kind == "return_h0" else h)
    return rnn_forward


@pytest.mark.parametrize("kind, keyword", [
    ("transpose_hh", "W_hh is transposed"), ("no_bxh", "b_xh is not added"), ("no_bhh", "b_hh is not added"),
    ("no_bias", "neither b_xh nor b_hh"), ("tanh_out", "tanh on the output"), ("reset_h", "h reset inside"),
    ("ignore_h0", "h0 is ignored"), ("return_h0", "the returned h_T is the initial state"), ("relu", "ReLU")])
def test_forward_mistakes(kind, keyword):
    _fails_with("rnn_forward", _forward(kind), _mistake_name("rnn_forward", keyword))


def test_forward_with_transposed_weights_gets_a_shape_hint():
    def x_times_w(params, inputs, h0):
        h, logits = h0, []
        for x_t in inputs:
            h = torch.tanh(x_t @ params["W_xh"] + params["b_xh"] + params["W_hh"] @ h + params["b_hh"])
            logits.append(params["W_hy"] @ h + params["b_y"])
        return torch.stack(logits), h

    message = _fails_with("rnn_forward", x_times_w, "rnn_forward raised an error")
    assert "W_xh is (H, V)" in message


def _loss(kind):
    def rnn_loss(logits, targets):
        if kind == "no_log_softmax":
            return F.nll_loss(logits, targets)
        if kind == "softmax":
            return F.nll_loss(F.softmax(logits, dim=1), targets)
        log_probs = F.log_softmax(logits, dim=0 if kind == "dim0" else 1)
        return F.nll_loss(log_probs, targets, reduction="sum" if kind == "sum" else "mean")
    return rnn_loss


@pytest.mark.parametrize("kind, keyword", [("dim0", "wrong dimension"), ("sum", "summed over time"),
                                           ("no_log_softmax", "raw logits"), ("softmax", "softmax instead")])
def test_loss_mistakes(kind, keyword):
    _fails_with("rnn_loss", _loss(kind), _mistake_name("rnn_loss", keyword))


def _gradients(kind):
    def rnn_gradients(params, inputs, targets, h0, forward, loss_fn):
        logits, _ = forward(params, inputs, h0)
        if kind == "sum":
            loss = F.cross_entropy(logits, targets, reduction="sum")
        else:
            loss = loss_fn(logits, targets)
        if kind == "double":
            loss.backward(retain_graph=True)
            loss.backward()
            return {k: p.grad for k, p in params.items()}
        grads = {k: torch.autograd.grad(loss, p, retain_graph=True)[0] for k, p in params.items()}
        return {k: -g for k, g in grads.items()} if kind == "negative" else grads
    return rnn_gradients


@pytest.mark.parametrize("kind, keyword", [("double", "doubled"), ("negative", "wrong sign"),
                                           ("sum", "T times too large")])
def test_gradient_mistakes(kind, keyword):
    _fails_with("rnn_gradients", _gradients(kind), _mistake_name("rnn_gradients", keyword))


def test_gradients_without_retain_graph_get_the_hint():
    def no_retain(params, inputs, targets, h0, forward, loss_fn):
        loss = loss_fn(forward(params, inputs, h0)[0], targets)
        return {k: torch.autograd.grad(loss, p)[0] for k, p in params.items()}

    message = _fails_with("rnn_gradients", no_retain, "retain_graph=True")
    assert "RuntimeError" in message


@pytest.mark.parametrize("student, keyword", [
    (lambda z, y: F.cross_entropy(z, y), "exponential is missing"),
    (lambda z, y: torch.exp(F.cross_entropy(z, y, reduction="sum")), "summed NLL"),
    (lambda z, y: 2 ** F.cross_entropy(z, y), "base 2")])
def test_perplexity_mistakes(student, keyword):
    _fails_with("perplexity", student, _mistake_name("perplexity", keyword))


def _cell(kind):
    def lstm_cell(x, h, c, W_ih, W_hh, b_ih, b_hh):
        gates = x @ W_ih.T + b_ih + h @ W_hh.T + (0 if kind == "no_bhh" else b_hh)
        blocks = gates.chunk(4, dim=-1)
        order = {"figo": "figo", "ifog": "ifog", "iofg": "iofg"}.get(kind, "ifgo")
        z = dict(zip(order, blocks, strict=True))
        i, f, o = torch.sigmoid(z["i"]), torch.sigmoid(z["f"]), torch.sigmoid(z["o"])
        g = torch.sigmoid(z["g"]) if kind == "g_sigmoid" else torch.tanh(z["g"])
        c_new = i * g if kind == "no_forget" else f * c + i * g
        return (o * c_new if kind == "no_tanh" else o * torch.tanh(c_new)), c_new
    return lstm_cell


@pytest.mark.parametrize("kind, keyword", [
    ("figo", "as f, i, g, o"), ("ifog", "as i, f, o, g"), ("iofg", "as i, o, f, g"),
    ("g_sigmoid", "sigmoid on the candidate"), ("no_tanh", "tanh is missing"), ("no_forget", "c_t = i ⊙ g"),
    ("no_bhh", "b_hh is not added")])
def test_lstm_cell_mistakes(kind, keyword):
    message = _fails_with("lstm_cell", _cell(kind), _mistake_name("lstm_cell", keyword))
    if kind in ("figo", "ifog", "iofg"):
        assert "LSTM gates in the wrong order" in message


def _stack(kind):
    def lstm_forward(x, layers, h0, c0, cell):
        seq, h_n, c_n = x, [], []
        for layer, weights in enumerate(layers):
            s = 0 if kind == "shared_state" else layer
            h, c = h0[s], c0[s]
            source = x if kind == "read_x" else seq
            outs = []
            for t in range(source.shape[1]):
                if kind == "reset_h":
                    h = torch.zeros_like(h0[layer])
                if kind == "no_carry":
                    h, _ = cell(source[:, t], h, c, *weights)
                else:
                    h, c = cell(source[:, t], h, c, *weights)
                outs.append(h)
            seq = torch.stack(outs, 1)
            h_n.append(h)
            c_n.append(c)
        return seq, (torch.stack(h_n), torch.stack(c_n))
    return lstm_forward


@pytest.mark.parametrize("kind, keyword", [("no_carry", "cell state not carried"), ("reset_h", "h reset inside"),
                                           ("read_x", "every layer reads the input"),
                                           ("shared_state", "layer 0's initial state")])
def test_lstm_forward_mistakes(kind, keyword):
    _fails_with("lstm_forward", _stack(kind), _mistake_name("lstm_forward", keyword))


def _model(kind):
    class LSTMModel(nn.Module):
        def __init__(self, input_size, hidden_size, num_layers, output_size):
            super().__init__()
            self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=(kind != "time_major"))
            self.fc = nn.Linear(hidden_size, output_size)

        def forward(self, x):
            out, (h_n, _) = self.lstm(x)
            last = {"first": out[:, 0], "mean": out.mean(1), "h0": h_n[0]}.get(kind, out[:, -1])
            return self.fc(last)
    return LSTMModel


@pytest.mark.parametrize("kind, keyword", [("time_major", "batch_first is missing"), ("first", "first time step"),
                                           ("mean", "mean over time"), ("h0", "FIRST layer")])
def test_model_mistakes(kind, keyword):
    _fails_with("LSTMModel", _model(kind), _mistake_name("LSTMModel", keyword))


def test_model_inside_sequential_gets_the_tuple_hint():
    class Sequential(nn.Module):
        def __init__(self, input_size, hidden_size, num_layers, output_size):
            super().__init__()
            self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)
            self.fc = nn.Linear(hidden_size, output_size)
            self.net = nn.Sequential(self.lstm, self.fc)

        def forward(self, x):
            return self.net(x)

    _fails_with("LSTMModel", Sequential, "nn.LSTM returns a tuple")
    _fails_with("LSTMModel", type("NoLayers", (nn.Module,), {"__init__": lambda self, *a: nn.Module.__init__(self)}),
                "self.lstm")


def _norms(kind):
    def gradient_norms(rnn, x):
        x = x.clone().requires_grad_()
        out = rnn(x)[0]
        (g,) = torch.autograd.grad(out.sum() if kind == "all" else out[:, -1].sum(), x)
        n = g[0].norm(dim=-1)
        return {"squared": n ** 2, "reversed": n.flip(0)}.get(kind, n)
    return gradient_norms


@pytest.mark.parametrize("kind, keyword", [("all", "ALL time steps"), ("squared", "squared norms"),
                                           ("reversed", "reverse time order")])
def test_gradient_norm_mistakes(kind, keyword):
    _fails_with("gradient_norms", _norms(kind), _mistake_name("gradient_norms", keyword))


def test_every_catalogued_mistake_is_tested():
    tested = {  # exercise -> number of mistakes exercised above
        "build_vocab": 5, "make_sequences": 4, "init_rnn_params": 5, "rnn_forward": 9, "rnn_loss": 4,
        "rnn_gradients": 3, "perplexity": 3, "lstm_cell": 7, "lstm_forward": 4, "LSTMModel": 4, "gradient_norms": 3}
    assert {name: len(e.mistakes) for name, e in R.EXERCISES.items()} == tested




# --------------------------------------------------------------------------- sample mistakes

def test_samples_apply_and_are_diagnosed(capsys):
    samples = mistakes_for("rnn")
    assert len(samples) >= 3
    assert len({s.student for s in samples}) == len(samples)
    for sample in samples:
        assert sample.student.startswith("rnn_") and sample.notebook == NOTEBOOK.stem
        assert sample.cell in NB.cells, sample.cell
        namespace = NB.run(NB.apply(sample))
        _fails_with(sample.cell, namespace[sample.cell], sample.diagnosis)
        for other in CHECKS:   # the mistake costs that exercise's points only
            if other != sample.cell:
                CHECKS[other](namespace[other])
    capsys.readouterr()
