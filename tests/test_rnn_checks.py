"""Tests for the checks in utils/rnn/: every check accepts correct variants, names each catalogued mistake,
reports stubs as not implemented, leaves the global RNGs alone; the rules the notebook states are enforced, the
cases added for them can fail, and mistakes outside the catalogue are described, never misnamed; the sample
mistakes apply."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from check_failures import fails_with, mistake_name

from notebook_solutions import NotebookSolutions
from utils import rnn as R
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
    return mistake_name(R.EXERCISES, function, keyword)


def _fails_with(function: str, student, text: str, hidden: bool = False) -> str:
    return fails_with(CHECKS[function], student, text, hidden=hidden)


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
    def with_parameters(V, H, scale=0.1):
        shapes = {"W_xh": (H, V), "W_hh": (H, H), "b_xh": (H,), "b_hh": (H,), "W_hy": (V, H), "b_y": (V,)}
        return {k: nn.Parameter(torch.randn(*s, dtype=torch.float64) * scale if k.startswith("W") else
                                torch.zeros(*s)) for k, s in shapes.items()}

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

    def with_create_graph(params, inputs, targets, h0, forward, loss_fn):
        loss = loss_fn(forward(params, inputs, h0)[0], targets)
        return {k: torch.autograd.grad(loss, p, retain_graph=True, create_graph=True)[0] for k, p in params.items()}

    R.check_rnn_gradients(all_at_once, hidden=True)
    R.check_rnn_gradients(with_create_graph, hidden=True)


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
        chars = sorted(text) if kind == "duplicates" else sorted(set(text))
        char2idx = {c: i for i, c in enumerate(chars)}
        if kind == "positions":
            char2idx = {c: i for i, c in enumerate(text)}
        if kind == "start_one":
            char2idx = {c: i for i, c in enumerate(chars, start=1)}
            return chars, char2idx, {i: c for i, c in enumerate(chars, start=1)}
        return chars, char2idx, {i: c for i, c in enumerate(chars)}
    return build_vocab


@pytest.mark.parametrize("kind, keyword", [("duplicates", "listed several times"),
                                           ("positions", "position in the text"), ("start_one", "indices start at 1")])
def test_vocab_mistakes(kind, keyword):
    _fails_with("build_vocab", _vocab(kind), _mistake_name("build_vocab", keyword))


def _sequences(kind):
    def make_sequences(text, char2idx):
        V = len(char2idx)
        src, dst = {"swapped": (text[1:], text[:-1]),
                    "no_shift": (text[:-1], text[:-1])}.get(kind, (text[:-1], text[1:]))
        index = {c: i for i, c in enumerate(sorted(set(text)))} if kind == "own_vocabulary" else char2idx
        shift = 1 if kind == "index_plus_one" else 0
        rows = []
        for ch in src:
            vec = torch.zeros(V)
            if index[ch] + shift < V:
                vec[index[ch] + shift] = 1.0
            rows.append(vec)
        return torch.stack(rows), torch.tensor([index[c] for c in dst])
    return make_sequences


@pytest.mark.parametrize("kind, keyword", [("swapped", "swapped"), ("no_shift", "not shifted"),
                                           ("index_plus_one", "one place too far"),
                                           ("own_vocabulary", "vocabulary rebuilt from the text")])
def test_sequence_mistakes(kind, keyword):
    _fails_with("make_sequences", _sequences(kind), _mistake_name("make_sequences", keyword))


def _init(kind):
    def init_rnn_params(V, H, scale=0.1):
        shapes = {"W_xh": (V, H) if kind in ("xh", "both") else (H, V), "W_hh": (H, H), "b_xh": (H,),
                  "b_hh": (H,), "W_hy": (H, V) if kind in ("hy", "both") else (V, H), "b_y": (V,)}
        scale = 0.1 if kind == "fixed_scale" else scale

        def make(name, shape):
            return torch.randn(*shape) if name.startswith("W") else torch.zeros(*shape)
        if kind == "non_leaf":
            return {k: make(k, s).requires_grad_() * scale for k, s in shapes.items()}
        return {k: (make(k, s) * scale).requires_grad_(kind != "no_grad") for k, s in shapes.items()}
    return init_rnn_params


@pytest.mark.parametrize("kind, keyword", [("xh", "W_xh is transposed"), ("hy", "W_hy is transposed"),
                                           ("both", "both transposed"), ("non_leaf", "not leaf"),
                                           ("no_grad", "requires_grad is missing"),
                                           ("fixed_scale", "scale argument is ignored")])
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
            if kind == "reset_to_h0":
                h = h0
            a = W_xh @ inputs[t] + (h @ W_hh if kind == "transpose_hh" else W_hh @ h)
            a = a + (0 if kind in ("no_bxh", "no_bias") else b_xh) + (0 if kind in ("no_bhh", "no_bias") else b_hh)
            h_new = torch.relu(a) if kind == "relu" else torch.tanh(a)
            s = W_hy @ (h if kind == "read_prev" else h_new) + b_y
            h = h_new
            logits.append(torch.tanh(s) if kind == "tanh_out" else s)
        return torch.stack(logits), (h0 if kind == "return_h0" else h)
    return rnn_forward


@pytest.mark.parametrize("kind, keyword", [
    ("transpose_hh", "W_hh is applied transposed"), ("no_bxh", "b_xh is not added"), ("no_bhh", "b_hh is not added"),
    ("no_bias", "neither b_xh nor b_hh"), ("tanh_out", "tanh on the output"), ("reset_h", "reset to zeros"),
    ("reset_to_h0", "starts again from h0"), ("ignore_h0", "h0 is ignored"),
    ("return_h0", "the returned h_T is the initial state"), ("relu", "ReLU"), ("read_prev", "before the update")])
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
        logits, _ = forward(params, inputs, torch.zeros_like(h0) if kind == "zeros" else h0)
        if kind == "sum":
            loss = F.cross_entropy(logits, targets, reduction="sum")
        elif kind == "double":   # the loss written out twice
            loss = loss_fn(logits, targets) + loss_fn(logits, targets)
        else:
            loss = loss_fn(logits, targets)
        grads = {k: torch.autograd.grad(loss, p, retain_graph=True)[0] for k, p in params.items()}
        return {k: -g for k, g in grads.items()} if kind == "negative" else grads
    return rnn_gradients


@pytest.mark.parametrize("kind, keyword", [("double", "twice the expected"), ("negative", "wrong sign"),
                                           ("sum", "T times too large"), ("zeros", "started from zeros")])
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
        gates = x @ W_ih.T + (0 if kind == "no_bih" else b_ih) + h @ W_hh.T + (0 if kind == "no_bhh" else b_hh)
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
    ("g_sigmoid", "sigmoid on the candidate"), ("no_tanh", "tanh is missing"), ("no_forget", "old cell state"),
    ("no_bhh", "b_hh is not added"), ("no_bih", "b_ih is not added")])
def test_lstm_cell_mistakes(kind, keyword):
    message = _fails_with("lstm_cell", _cell(kind), _mistake_name("lstm_cell", keyword))
    if kind in ("figo", "ifog", "iofg"):
        assert "LSTM gates in the wrong order" in message


def _stack(kind):
    def lstm_forward(x, layers, h0, c0, cell):
        seq, h_n, c_n = x, [], []
        h, c = h0[0], c0[0]
        for layer, weights in enumerate(layers):
            s = 0 if kind == "shared_state" else layer
            if not (kind == "chained" and layer > 0):
                h, c = h0[s], c0[s]
            source = x if kind == "read_x" else seq
            outs = []
            for t in range(source.shape[1]):
                if kind == "reset_h":
                    h = torch.zeros_like(h0[layer])
                if kind == "reset_to_h0":
                    h = h0[layer]
                if kind == "no_carry":
                    h, _ = cell(source[:, t], h, c, *weights)
                else:
                    h, c = cell(source[:, t], h, c, *weights)
                outs.append(h)
            seq = torch.stack(outs, 1)
            h_n.append(h)
            c_n.append(c)
        if kind == "top_only":   # the single-layer habit: the final state is the last output
            return seq, (seq[:, -1].expand(len(layers), -1, -1), c.expand(len(layers), -1, -1))
        return seq, (torch.stack(h_n), torch.stack(c_n))
    return lstm_forward


@pytest.mark.parametrize("kind, keyword", [("no_carry", "cell state not carried"), ("reset_h", "h is reset to zeros"),
                                           ("reset_to_h0", "starts again from h0[l]"),
                                           ("read_x", "every layer reads the input"),
                                           ("shared_state", "layer 0's initial state"),
                                           ("chained", "final state of layer l − 1"),
                                           ("top_only", "repeat the top layer's final state")])
def test_lstm_forward_mistakes(kind, keyword):
    _fails_with("lstm_forward", _stack(kind), _mistake_name("lstm_forward", keyword))


def _model(kind):
    class LSTMModel(nn.Module):
        def __init__(self, input_size, hidden_size, num_layers, output_size):
            super().__init__()
            self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=(kind != "time_major"))
            self.fc = nn.Linear(hidden_size, output_size)

        def forward(self, x):
            out, (h_n, c_n) = self.lstm(x)
            last = {"first": out[:, 0], "mean": out.mean(1), "h0": h_n[0], "c_n": c_n[-1]}.get(kind, out[:, -1])
            return self.fc(last)
    return LSTMModel


@pytest.mark.parametrize("kind, keyword", [("time_major", "batch_first is missing"), ("first", "first time step"),
                                           ("mean", "mean over time"), ("h0", "FIRST layer"),
                                           ("c_n", "cell state c_n")])
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
        out, state = rnn(x)
        objective = out.sum() if kind == "all" else out[:, -1].sum()
        if kind == "h_n":
            objective = (state[0] if isinstance(state, tuple) else state).sum()
        (g,) = torch.autograd.grad(objective, x)
        n = g[0].norm(dim=-1)
        return {"squared": n ** 2, "reversed": n.flip(0)}.get(kind, n)
    return gradient_norms


@pytest.mark.parametrize("kind, keyword", [("all", "ALL time steps"), ("squared", "squared norms"),
                                           ("reversed", "reverse time order"), ("h_n", "sums h_n")])
def test_gradient_norm_mistakes(kind, keyword):
    _fails_with("gradient_norms", _norms(kind), _mistake_name("gradient_norms", keyword))


def test_every_catalogued_mistake_is_tested():
    tested = {  # exercise -> number of mistakes exercised above
        "build_vocab": 3, "make_sequences": 4, "init_rnn_params": 6, "rnn_forward": 11, "rnn_loss": 4,
        "rnn_gradients": 4, "perplexity": 3, "lstm_cell": 8, "lstm_forward": 7, "LSTMModel": 5, "gradient_norms": 4}
    assert {name: len(e.mistakes) for name, e in R.EXERCISES.items()} == tested


# --------------------------------------------------------------------------- (c) rules, new cases, other variants
# Each variant below is a realistic mistake that the earlier cases let through, or one outside the catalogue:
# the check must reject it, quote the rule it breaks or describe the difference, and never name a wrong cause.

def _no_cause(message: str) -> str:
    assert "Likely cause" not in message, message
    return message


def _rule(function: str, student, rule: str, seen: str, hidden: bool = True) -> str:
    message = _fails_with(function, student, "breaks a rule of the exercise", hidden)
    rules = [line for line in message.splitlines() if line.strip().startswith("Rule:")]
    assert rules and rule in rules[0] and seen in message, message
    return _no_cause(message)


def _plain_vocab(text, order):
    chars = order(text)
    return chars, {c: i for i, c in enumerate(chars)}, dict(enumerate(chars))


@pytest.mark.parametrize("order, seen", [
    (lambda text: list(set(text)), "vocabulary not sorted: chars has"),   # changes from run to run
    (lambda text: list(dict.fromkeys(text)), "vocabulary not sorted: chars has"),
    (lambda text: sorted(set(text), reverse=True), "vocabulary not sorted: chars is in reverse order"),
    (lambda text: sorted(set(text), key=str.lower), "vocabulary not sorted: chars has 'a' before 'D'")])
def test_an_unsorted_vocabulary_breaks_the_stated_rule(order, seen):
    _rule("build_vocab", lambda text: _plain_vocab(text, order), "chars is the sorted list", seen)


def test_vocab_differences_show_characters_and_name_the_part():
    def idx2char_from_text(text):
        chars = sorted(set(text))
        return chars, {c: i for i, c in enumerate(chars)}, dict(enumerate(text))

    message = _no_cause(_fails_with("build_vocab", idx2char_from_text, "idx2char[0]: yours 'D', expected ' '"))
    assert "Only idx2char differs; chars and char2idx match." in message
    assert "68" not in message and "32" not in message   # ord('D'), ord(' '): characters, never their codes
    lowered = _no_cause(_fails_with("build_vocab", lambda text: _plain_vocab(text.lower(), lambda t: sorted(set(t))),
                                    "chars[1]: yours 'a', expected 'D'"))
    assert "sorted(set(" not in lowered and "enumerate(" not in lowered   # no solution code in the hint
    assert "sorted(set(" not in R.EXERCISES["build_vocab"].reference_name


def test_a_single_character_text_is_a_hidden_case():
    def drops_last(text):   # an off-by-one that only a one-character vocabulary empties completely
        chars = sorted(set(text))[:-1] if len(set(text)) == 1 else sorted(set(text))
        return chars, {c: i for i, c in enumerate(chars)}, dict(enumerate(chars))

    R.check_build_vocab(drops_last)
    _fails_with("build_vocab", drops_last, "text 'zzzz'", hidden=True)


@pytest.mark.parametrize("targets, seen", [(lambda y: y.float(), "targets has dtype float32"),
                                           (lambda y: y.int(), "targets has dtype int32")])
def test_targets_must_be_long_indices(targets, seen):
    def make_sequences(text, char2idx):
        idx = torch.tensor([char2idx[c] for c in text])
        return F.one_hot(idx[:-1], len(char2idx)).float(), targets(idx[1:])

    _rule("make_sequences", make_sequences, "targets is a torch.long tensor", seen)


def test_inputs_must_be_float_and_each_part_has_its_own_shape():
    def integer_one_hot(text, char2idx):
        idx = torch.tensor([char2idx[c] for c in text])
        return F.one_hot(idx[:-1], len(char2idx)), idx[1:]

    def vocabulary_size_of_the_text(text, char2idx):
        idx = torch.tensor([char2idx[c] for c in text])
        return torch.eye(len(set(text)) + 6)[idx[:-1]][:, :len(set(text))], idx[1:]

    def whole_text(text, char2idx):
        idx = torch.tensor([char2idx[c] for c in text])
        return F.one_hot(idx, len(char2idx)).float(), idx

    _rule("make_sequences", integer_one_hot, "inputs stacks float one-hot vectors", "inputs has dtype int64")
    message = _rule("make_sequences", vocabulary_size_of_the_text, "V = len(char2idx)", "inputs has shape (5, 3)")
    assert "Case 5" in message   # the visible case whose char2idx holds characters that are not in the text
    _rule("make_sequences", whole_text, "inputs has shape (T − 1, V)", "inputs has shape (4, 3), expected (3, 3)")


def test_make_sequences_reports_which_part_differs():
    def inputs_from_the_targets(text, char2idx):
        idx = torch.tensor([char2idx[c] for c in text])
        return F.one_hot(idx[1:], len(char2idx)).float(), idx[1:]

    _no_cause(_fails_with("make_sequences", inputs_from_the_targets,
                          "Nothing differs in the targets."))


def _init_with(weight, bias=torch.zeros):
    def init_rnn_params(V, H, scale=0.1):
        shapes = {"W_xh": (H, V), "W_hh": (H, H), "b_xh": (H,), "b_hh": (H,), "W_hy": (V, H), "b_y": (V,)}
        return {k: (weight(s, scale) if k.startswith("W") else bias(*s)).requires_grad_() for k, s in shapes.items()}
    return init_rnn_params


def test_init_checks_the_values_it_is_asked_for():
    R.check_init_rnn_params(_init_with(lambda s, scale: torch.randn(*s) * scale), hidden=True)
    random_biases = _init_with(lambda s, scale: torch.randn(*s) * scale, bias=lambda *s: torch.randn(*s) * 0.1)
    message = _no_cause(_fails_with("init_rnn_params", random_biases, "b_xh: values as asked"))
    assert "All the differences are in the biases" in message, message
    # the standard deviation taken as the variance: right for scale 1, caught by the hidden scale 0.01
    as_variance = _init_with(lambda s, scale: torch.randn(*s) * scale ** 0.5)
    R.check_init_rnn_params(as_variance)
    _no_cause(_fails_with("init_rnn_params", as_variance, "scale=0.01", hidden=True))


def test_a_correct_init_stays_in_the_spread_band_whatever_the_draw():
    # 9 entries, the smallest weight matrix of any case: the root-mean-square of N(0, 1) draws stays in [1/4, 4]
    draws = [torch.randn(9, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) for seed in range(500)]
    assert all(0.25 <= float(d.pow(2).mean().sqrt()) <= 4 for d in draws)


def _forward_loop(params, inputs, h0, update):
    h, out = h0, []
    for x_t in inputs:
        h = update(h, torch.tanh(params["W_xh"] @ x_t + params["b_xh"] + params["W_hh"] @ h + params["b_hh"]))
        out.append(params["W_hy"] @ h + params["b_y"])
    return torch.stack(out), h


def test_forward_keeps_its_arguments_and_the_shapes_of_each_output():
    def in_place(h, new):
        h[:] = new   # h is h0 at the first step: the caller's h0 changes
        return h

    _rule("rnn_forward", lambda p, x, h0: _forward_loop(p, x, h0, in_place), "do not change their arguments in place",
          "h0 was changed in place")

    def squeezed(params, inputs, h0):
        logits, h = _forward_loop(params, inputs, h0, lambda h, new: new)
        return logits.squeeze(), h

    R.check_rnn_forward(squeezed)   # every visible call has 2 or more steps
    _rule("rnn_forward", squeezed, "logits has shape (T, V)",
          "logits (for 1 input step) has shape (4,), expected (1, 4)")

    def h_T_as_row(params, inputs, h0):
        logits, h = _forward_loop(params, inputs, h0.reshape(-1), lambda h, new: new)
        return logits, h[None]

    _rule("rnn_forward", h_T_as_row, "h_T has the shape (H,) of h0", "h_T has shape (1, 2), expected (2,)")


def test_reset_to_h0_is_not_named_a_reset_to_zeros():
    message = _fails_with("rnn_forward", _forward("reset_to_h0"), "starts again from h0")
    assert "reset to zeros" not in message


@pytest.mark.parametrize("student, case", [
    # one maximum for the whole array: rows far below it underflow to log(0)
    (lambda z, y: -(z - z.max() - torch.log(torch.exp(z - z.max()).sum(1, keepdim=True)))[
        torch.arange(len(y)), y].mean(), "Case 4"),
    # the row minimum: a row spanning more than exp() holds overflows
    (lambda z, y: -(z - z.min(1, keepdim=True).values - torch.log(torch.exp(z - z.min(1, keepdim=True).values).sum(
        1, keepdim=True)))[torch.arange(len(y)), y].mean(), "Case 4"),
    # no shift at all
    (lambda z, y: -(z - torch.log(torch.exp(z).sum(1, keepdim=True)))[torch.arange(len(y)), y].mean(), "Case 4"),
    # log of the softmax: a target probability below what float64 holds becomes log(0)
    (lambda z, y: F.nll_loss(torch.log(F.softmax(z, dim=1)), y), "Case 10"),
])
def test_an_unstable_loss_fails_on_row_extremes_of_both_signs(student, case):
    message = _no_cause(_fails_with("rnn_loss", student, case, hidden=True))
    assert "NaN or infinite" in message


def test_an_unstable_perplexity_fails_and_a_stable_float32_one_passes():
    def global_max(z, y):
        shifted = z - z.max()
        log_p = shifted - torch.log(torch.exp(shifted).sum(1, keepdim=True))
        return torch.exp(-log_p[torch.arange(len(y)), y].mean())

    _no_cause(_fails_with("perplexity", global_max, "Case 4"))
    R.check_perplexity(lambda z, y: torch.exp(F.cross_entropy(z.float(), y)), hidden=True)


def test_the_loss_keeps_its_arguments():
    def shift_in_place(logits, targets):
        logits -= logits.max(dim=1, keepdim=True).values
        return F.nll_loss(F.log_softmax(logits, dim=1), targets)

    _rule("rnn_loss", shift_in_place, "do not change their arguments in place", "logits was changed in place")


def test_gradients_leave_grad_untouched():
    def with_backward(params, inputs, targets, h0, forward, loss_fn):
        loss_fn(forward(params, inputs, h0)[0], targets).backward()
        return {k: p.grad.clone() for k, p in params.items()}

    _rule("rnn_gradients", with_backward, "use torch.autograd.grad, which leaves .grad untouched",
          "params['W_xh'].grad was filled in")


def _lstm_cell_variant(kind):
    def lstm_cell(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh):
        i, f, g, o = (x @ W_ih.T + b_ih + h_prev @ W_hh.T + b_hh).chunk(4, dim=-1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        if kind == "in_place":
            c_prev.mul_(f).add_(i * g)
            return o * torch.tanh(c_prev), c_prev
        c = f * c_prev + i * g
        if kind == "old_cell_in_h":
            return o * torch.tanh(c_prev), c
        if kind == "swapped":
            return c, o * torch.tanh(c)
        return torch.cat([o * torch.tanh(c), c], dim=1)
    return lstm_cell


def test_lstm_cell_names_the_part_that_differs_and_keeps_its_arguments():
    _rule("lstm_cell", _lstm_cell_variant("in_place"), "do not change their arguments in place",
          "c_prev was changed in place")
    assert "Only h differs; c matches." in _no_cause(_fails_with("lstm_cell", _lstm_cell_variant("old_cell_in_h"),
                                                                 "h[b=0, j="))
    _no_cause(_fails_with("lstm_cell", _lstm_cell_variant("swapped"), "Shapes OK (h, c: (1, 3) each)"))
    _fails_with("lstm_cell", _lstm_cell_variant("concatenated"), "must return a tuple (h, c)")


def test_no_lstm_hint_gives_the_gate_equations_or_the_recurrence():
    texts = []
    for name in ("lstm_cell", "lstm_forward", "rnn_forward"):
        exercise = R.EXERCISES[name]
        texts += [exercise.hint, *exercise.exception_hints.values()]
        texts += [text for m in exercise.mistakes for text in (m.name, m.hint)]
    for text in texts:
        for formula in ("f * c", "f·c", "f ⊙ c", "i ⊙ g", "o ⊙ tanh", "tanh(W_xh", "W_hh @ h +", "σ(", "chunk(4"):
            assert formula not in text, (formula, text)


def _lstm_forward_variant(kind):
    def lstm_forward(x, layers, h0, c0, cell):
        seq, h_n, c_n = x, [], []
        for layer, weights in enumerate(layers):
            h, c = h0[layer], c0[layer]
            outputs = []
            for t in range(seq.shape[1]):
                h, c = cell(seq[:, t], h, c, *weights)
                outputs.append(h)
                if kind == "in_place":
                    h0[layer] = h
            seq = torch.stack(outputs, 1)
            h_n.append(h)
            c_n.append(c)
        if kind == "c_n_is_h_n":
            c_n = h_n
        if kind == "layers_reversed":
            h_n, c_n = h_n[::-1], c_n[::-1]
        return seq, (torch.stack(h_n), torch.stack(c_n))
    return lstm_forward


def test_lstm_forward_states_are_compared_and_arguments_kept():
    _rule("lstm_forward", _lstm_forward_variant("in_place"), "do not change their arguments in place",
          "h0 was changed in place")
    _no_cause(_fails_with("lstm_forward", _lstm_forward_variant("c_n_is_h_n"), "c_n[layer=0, b=0"))
    # one layer: reversing the layers changes nothing; the first case with 2 layers catches it
    _no_cause(_fails_with("lstm_forward", _lstm_forward_variant("layers_reversed"), "Case 2 of"))

    def wrong_state_shape(x, layers, h0, c0, cell):
        output, (h_n, c_n) = _lstm_forward_variant("")(x, layers, h0, c0, cell)
        return output, (h_n[-1], c_n)

    _rule("lstm_forward", wrong_state_shape, "h_n has shape (num_layers, B, H)",
          "h_n has shape (1, 2), expected (1, 1, 2)")


def test_a_dropout_the_model_does_not_ask_for_shows_in_train_mode():
    class WithDropout(nn.Module):
        def __init__(self, input_size, hidden_size, num_layers, output_size):
            super().__init__()
            self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True,
                                dropout=0.3 if num_layers > 1 else 0.0)
            self.fc = nn.Linear(hidden_size, output_size)

        def forward(self, x):
            return self.fc(self.lstm(x)[0][:, -1])

    message = _no_cause(_fails_with("LSTMModel", WithDropout, "in train mode"))
    assert "Only train mode differs; eval mode matches." in message


def _norms_variant(kind):
    def gradient_norms(rnn, x):
        if kind == "eval":
            rnn.eval()
        if kind == "x_in_place":
            x.requires_grad_()
        else:
            x = x.clone().requires_grad_()
        (g,) = torch.autograd.grad(rnn(x)[0][:, -1].sum(), x)
        norms = g[0].norm(dim=-1)
        return {"drop_first": norms[1:], "drop_last": norms[:-1]}.get(kind, norms)
    return gradient_norms


def test_gradient_norms_keep_the_model_and_x_as_they_were():
    _rule("gradient_norms", _norms_variant("eval"), "do not change their arguments in place",
          "rnn was left in eval mode (it was in train mode)")
    _rule("gradient_norms", _norms_variant("x_in_place"), "make a copy of x that requires gradients",
          "x.requires_grad was switched on")


@pytest.mark.parametrize("kind, entry", [("drop_first", "Entry 0 "), ("drop_last", "Entry 3 ")])
def test_a_dropped_norm_is_reported_as_that_entry(kind, entry):
    message = _no_cause(_fails_with("gradient_norms", _norms_variant(kind), "Yours has 3 values, expected 4."))
    assert entry in message and "is missing; the others match" in message


def test_the_last_output_is_not_h_n_with_several_layers():
    def from_h_n(rnn, x):
        x = x.clone().requires_grad_()
        state = rnn(x)[1]
        (g,) = torch.autograd.grad((state[0] if isinstance(state, tuple) else state)[-1].sum(), x)
        return g[0].norm(dim=-1)

    R.check_gradient_norms(from_h_n, hidden=True)   # the top layer's final state IS the last output
    message = _fails_with("gradient_norms", _norms("h_n"), "num_layers=2")
    assert "sums h_n" in message


# --------------------------------------------------------------------------- sample mistakes

def test_samples_apply_and_are_diagnosed(capsys):
    samples = [s for s in mistakes_for("rnn") if s.notebook == NOTEBOOK.stem]
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
