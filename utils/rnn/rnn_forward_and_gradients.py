"""``rnn_forward`` and ``rnn_gradients``: two exercises on the same settings and case builder.

* ``rnn_forward(params, inputs, h0) -> (logits, h_T)``: inputs (T, V), h0 (H,), logits (T, V), h_T (H,);
  the sequence is fed in two calls, the second starting from the h_T the first returned. Rules: each call's
  logits and h_T have their own shapes, and no argument is changed in place.
* ``rnn_gradients(params, inputs, targets, h0, forward, loss_fn) -> dict``: the gradients of the loss
  with ``torch.autograd.grad``, given a correct ``forward`` and ``loss_fn``. Rules: ``.grad`` of the
  parameters stays untouched (Exercise 1.6 asks for ``torch.autograd.grad``), no argument changes in place.

References are ``torch.nn.RNN`` (tanh) + ``torch.nn.Linear`` holding the case's weights, in float64.
Each exercise draws its own inputs (its name seeds the generator) from the settings below.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from utils.checks.adapters import float64_tensor
from utils.checks.characterise import Layout
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.rules import RuleBroken, kept_unchanged, require_shape
from utils.checks.seeding import case_rng
from utils.rnn.shared import PARAM_NAMES, array_or_value, splits, torch_rnn_modules

SETTINGS = [  # (V, H, T, one-hot inputs, random h0)
    (3, 2, 4, True, True),
    (5, 4, 6, True, False),
    (4, 4, 5, False, True),
    (6, 3, 7, True, True),
]
HIDDEN_SETTINGS = [(8, 5, 10, True, True), (5, 5, 4, False, True), (7, 6, 9, False, False), (4, 3, 2, True, True)]
IN_PLACE_RULE = "your functions do not change their arguments in place (the notebook's introduction)"


def _inputs(exercise, number, setting, salt):
    V, H, T, one_hot, random_h0 = setting
    rng = case_rng(exercise, number, salt)
    p = {"W_xh": rng.normal(0, 0.6, (H, V)), "W_hh": rng.normal(0, 0.5, (H, H)),
         "b_xh": rng.normal(0, 0.4, H), "b_hh": rng.normal(0, 0.4, H),
         "W_hy": rng.normal(0, 0.6, (V, H)), "b_y": rng.normal(0, 0.3, V)}
    x = np.eye(V)[rng.integers(0, V, T)] if one_hot else rng.normal(size=(T, V))
    h0 = rng.normal(0, 0.5, H) if random_h0 else np.zeros(H)
    return {"params": p, "inputs": x, "h0": h0, "targets": rng.integers(0, V, T), "splits": splits(T, 2)}


def _describe_setting(setting):
    V, H, T, one_hot, random_h0 = setting
    return (f"V={V}, H={H}, T={T}, {'one-hot' if one_hot else 'dense random'} inputs, "
            f"{'random' if random_h0 else 'zero'} h0, random nonzero biases")


def _cases(exercise, hidden, describe_for):
    """``describe_for(setting, inputs) -> (description, describe_index)`` says what the exercise compares."""
    cases = []
    for number, (setting, salt) in enumerate(visible_then_hidden(SETTINGS, HIDDEN_SETTINGS, hidden), start=1):
        inputs = _inputs(exercise, number, setting, salt)
        description, describe = describe_for(setting, inputs)
        cases.append(Case(description, inputs, describe))
    return cases


def _loaded_torch_rnn(p: dict):
    """torch.nn.RNN (tanh) + torch.nn.Linear in float64, holding the weights ``p`` of a case."""
    H, V = p["W_xh"].shape
    rnn, head = torch_rnn_modules(V, H)
    rnn, head = rnn.double(), head.double()
    with torch.no_grad():
        for name, value in (("weight_ih_l0", p["W_xh"]), ("weight_hh_l0", p["W_hh"]),
                            ("bias_ih_l0", p["b_xh"]), ("bias_hh_l0", p["b_hh"])):
            getattr(rnn, name).copy_(float64_tensor(value))
        head.weight.copy_(float64_tensor(p["W_hy"]))
        head.bias.copy_(float64_tensor(p["b_y"]))
    return rnn, head


def _torch_rnn_outputs(inputs):
    """The hidden states (T, 1, H) of the loaded torch.nn.RNN over the case's sequence, and its head."""
    rnn, head = _loaded_torch_rnn(inputs["params"])
    out, _ = rnn(float64_tensor(inputs["inputs"])[:, None, :], float64_tensor(inputs["h0"])[None, None, :])
    return rnn, head, out


# ----------------------------------------------------------------------- rnn_forward


def _forward_description(setting, inputs):
    (a, b), *rest = inputs["splits"]
    how = (f"; fed in two calls: steps {a}..{b - 1} from h0, then the rest from the h_T your first call returned"
           if rest else "")

    def describe(index):
        t, v = index
        second = rest and t >= b
        return f"logits[t={t}, v={v}]" + (" (second call, started from your returned h_T)" if second else "")
    return _describe_setting(setting) + how, describe


def _forward_cases(hidden: bool) -> list[Case]:
    return _cases("rnn_forward", hidden, _forward_description)


def _chunked(step, x, h0, chunks):
    """Run ``step(x_chunk, h) -> (logits, h)`` chunk after chunk, carrying the returned state."""
    parts, h = [], h0
    for a, b in chunks:
        logits, h = step(x[a:b], h)
        parts.append(logits)
    return parts


def _forward_call(fn, inputs):
    params = {k: float64_tensor(v) for k, v in inputs["params"].items()}

    V, H = params["W_xh"].shape[1], params["W_xh"].shape[0]

    def step(x_chunk, h):
        with kept_unchanged({"params": params, "inputs": x_chunk, "h0": h}, rule=IN_PLACE_RULE):
            result = fn(params, x_chunk, h)
        if not (isinstance(result, (tuple, list)) and len(result) == 2):
            raise TypeError(f"rnn_forward must return (logits, h_T), got {type(result).__name__}")
        logits, h_T = result
        if isinstance(logits, (list, tuple)) and logits and isinstance(logits[0], torch.Tensor):
            logits = torch.stack(list(logits))
        T = len(x_chunk)
        require_shape(logits, (T, V), what=f"logits (for {T} input step{'s' if T > 1 else ''})",
                      rule="logits has shape (T, V), one row per input step (Exercise 1.4)")
        require_shape(h_T, (H,), what="h_T", rule="h_T has the shape (H,) of h0 (Exercise 1.4)")
        return array_or_value(logits), (h_T if isinstance(h_T, torch.Tensor) else float64_tensor(h_T))

    parts = _chunked(step, float64_tensor(inputs["inputs"]), float64_tensor(inputs["h0"]), inputs["splits"])
    for part in parts:
        if not isinstance(part, np.ndarray) or part.ndim != 2:
            return part
    return np.concatenate(parts)


def torch_rnn_logits(inputs) -> np.ndarray:
    """Logits (T, V) of torch.nn.RNN (tanh) + torch.nn.Linear loaded with the case's weights, float64."""
    with torch.no_grad():
        _, head, out = _torch_rnn_outputs(inputs)
        return head(out[:, 0]).numpy()


def rnn_numpy(p, x, h0, *, transpose_hh=False, bias_xh=True, bias_hh=True, tanh_output=False,
              reset_h=False, reset_to_h0=False, ignore_h0=False, return_h0=False, relu=False, read_prev=False):
    """The vanilla RNN over one sequence -> (logits (T, V), h_T); keyword switches reproduce known mistakes."""
    W_xh = p["W_xh"]
    W_hh = p["W_hh"].T if transpose_hh else p["W_hh"]
    zeros = np.zeros_like(h0)
    h = zeros if ignore_h0 else h0
    logits = []
    for x_t in x:
        h_prev = zeros if reset_h else (h0 if reset_to_h0 else h)
        a = W_xh @ x_t + W_hh @ h_prev
        a = a + (p["b_xh"] if bias_xh else 0) + (p["b_hh"] if bias_hh else 0)
        h = np.maximum(a, 0) if relu else np.tanh(a)
        s = p["W_hy"] @ (h_prev if read_prev else h) + p["b_y"]
        logits.append(np.tanh(s) if tanh_output else s)
    return np.array(logits), (h0 if return_h0 else h)


def _forward_computed_with(**switches):
    def compute(inputs):
        def step(x_chunk, h):
            return rnn_numpy(inputs["params"], x_chunk, h, **switches)
        return np.concatenate(_chunked(step, inputs["inputs"], inputs["h0"], inputs["splits"]))
    return compute


_BIASES = "the formula above Exercise 1.4 adds both hidden biases, b_xh and b_hh, inside the tanh."
_CARRY = ("the state flows from each step to the next: take it from h0 once, before the loop, and let every step "
          "start from the state the step before produced.")
_FORWARD_SWITCHES = [  # (switches of rnn_numpy, mistake name, hint)
    (dict(transpose_hh=True), "W_hh is applied transposed (h @ W_hh multiplies by W_hhᵀ)",
     "in the formula W_hh multiplies the column vector h_{t−1} from the left; a row vector needs W_hh's transpose."),
    (dict(bias_xh=False), "a missing bias: b_xh is not added to the hidden pre-activation", _BIASES),
    (dict(bias_hh=False), "a missing bias: b_hh is not added to the hidden pre-activation", _BIASES),
    (dict(bias_xh=False, bias_hh=False), "a missing bias: neither b_xh nor b_hh is added", _BIASES),
    (dict(tanh_output=True), "tanh on the output: the logits s_t must be linear",
     "no activation on the read-out: the loss turns the logits into probabilities with a log-softmax."),
    (dict(reset_h=True), "the state is reset to zeros at every step instead of carrying h_{t−1}", _CARRY),
    (dict(reset_to_h0=True), "every step starts again from h0 instead of from the previous step's state", _CARRY),
    (dict(ignore_h0=True), "h0 is ignored: the first step starts from zeros instead of the h0 argument",
     "start from the h0 you are given: the check feeds the sequence in two calls, the second from the h_T "
     "your first call returned."),
    (dict(return_h0=True), "the returned h_T is the initial state h0, not the state after the last step",
     "return the state after the last step: it carries the sequence into the next call."),
    (dict(relu=True), "ReLU instead of tanh for the hidden state",
     "the hidden state uses tanh, bounded in (−1, 1), as in the formula above Exercise 1.4."),
    (dict(read_prev=True), "the logits are read from the state before the update (h_{t−1}) instead of the new h_t",
     "update the state first, then read the step's logits from the new state."),
]
FORWARD_MISTAKES = [Mistake(name, hint, _forward_computed_with(**switches))
                    for switches, name, hint in _FORWARD_SWITCHES]

FORWARD = Exercise(
    function="rnn_forward",
    forbidden=("torch.nn.RNN", "torch.nn.RNNCell", "torch.rnn_tanh", "torch.rnn_tanh_cell"),
    reference_name="torch.nn.RNN(V, H) + torch.nn.Linear(H, V) loaded with your weights",
    make_cases=_forward_cases,
    reference=torch_rnn_logits,
    call=_forward_call,
    mistakes=FORWARD_MISTAKES,
    hint="follow the formula above Exercise 1.4 step by step: the same weights at every step, the state carried "
         "from one step to the next starting at h0, linear logits stacked into (T, V), and the last state returned.",
    exception_hints={"RuntimeError": "a shape or dtype mismatch: W_xh is (H, V), W_hh (H, H), W_hy (V, H); "
                                     "x_t = inputs[t] is (V,); new tensors should use dtype=inputs.dtype."},
    section="Exercise 1.4",
    layout=Layout(axes=("time step", "character")),
    covers={
        "one-hot inputs": lambda c: bool(np.all(c.inputs["inputs"].sum(axis=1) == 1)
                                         and np.all((c.inputs["inputs"] == 0) | (c.inputs["inputs"] == 1))),
        "dense inputs (not one-hot)": lambda c: bool(np.any((c.inputs["inputs"] != 0) & (c.inputs["inputs"] != 1))),
        "a random h0": lambda c: bool(np.any(c.inputs["h0"] != 0)),
        "a zero h0": lambda c: bool(np.all(c.inputs["h0"] == 0)),
        "H = V": lambda c: c.inputs["params"]["W_xh"].shape[0] == c.inputs["params"]["W_xh"].shape[1],
        "H ≠ V": lambda c: c.inputs["params"]["W_xh"].shape[0] != c.inputs["params"]["W_xh"].shape[1],
        "a sequence fed in two calls": lambda c: len(c.inputs["splits"]) == 2,
        "calls of a single time step": lambda c: all(b - a == 1 for a, b in c.inputs["splits"]),
    },
)


def check_rnn_forward(rnn_forward, hidden: bool = False) -> None:
    """Check ``rnn_forward(params, inputs, h0)`` against torch.nn.RNN + nn.Linear with the same weights."""
    show(run_check(FORWARD, rnn_forward, hidden))


# ----------------------------------------------------------------------- rnn_gradients


def torch_rnn_forward(params, inputs, h0):
    """A correct RNN forward pass in torch; passed to the student's ``rnn_gradients`` as ``forward``."""
    h, logits = h0, []
    for x_t in inputs:
        h = torch.tanh(params["W_xh"] @ x_t + params["b_xh"] + params["W_hh"] @ h + params["b_hh"])
        logits.append(params["W_hy"] @ h + params["b_y"])
    return torch.stack(logits), h


def torch_rnn_loss(logits, targets):
    """The mean NLL of the log-softmax; passed to ``rnn_gradients`` as ``loss_fn``."""
    return F.nll_loss(F.log_softmax(logits, dim=1), targets)


def _gradients_description(setting, inputs):
    shapes = [(name, inputs["params"][name].shape) for name in PARAM_NAMES]

    def describe(index):
        i = index[0]
        for name, shape in shapes:
            size = int(np.prod(shape))
            if i < size:
                where = np.unravel_index(i, shape)
                return f"grads[{name!r}][{', '.join(str(int(w)) for w in where)}]"
            i -= size
        return f"index {index[0]}"
    return _describe_setting(setting), describe


def _gradients_cases(hidden: bool) -> list[Case]:
    return _cases("rnn_gradients", hidden, _gradients_description)


GRAD_RULE = "use torch.autograd.grad, which leaves .grad untouched (Exercise 1.6)"


def _gradients_call(fn, inputs):
    params = {k: float64_tensor(v, requires_grad=True) for k, v in inputs["params"].items()}
    x, y, h0 = float64_tensor(inputs["inputs"]), torch.as_tensor(inputs["targets"]), float64_tensor(inputs["h0"])
    with kept_unchanged({"params": params, "inputs": x, "targets": y, "h0": h0}, rule=IN_PLACE_RULE):
        grads = fn(params, x, y, h0, forward=torch_rnn_forward, loss_fn=torch_rnn_loss)
    touched = [name for name, p in params.items() if p.grad is not None]
    if touched:
        raise RuleBroken(GRAD_RULE, f"params[{touched[0]!r}].grad was filled in (by .backward()?)")
    if not isinstance(grads, dict):
        return grads
    parts = []
    for name in PARAM_NAMES:
        g = array_or_value(grads[name])
        if not isinstance(g, np.ndarray):
            return grads[name]
        parts.append(g.ravel())
    return np.concatenate(parts)


def torch_rnn_gradients(inputs) -> np.ndarray:
    """Gradients of F.cross_entropy through torch.nn.RNN + nn.Linear, flattened in PARAM_NAMES order."""
    rnn, head, out = _torch_rnn_outputs(inputs)
    loss = F.cross_entropy(head(out[:, 0]), torch.as_tensor(inputs["targets"]))
    loss.backward()
    order = [rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0, head.weight, head.bias]
    return np.concatenate([q.grad.numpy().ravel() for q in order])


def _doubled(inputs):
    return 2 * torch_rnn_gradients(inputs)


def _negated(inputs):
    return -torch_rnn_gradients(inputs)


def _times_T(inputs):
    return torch_rnn_gradients(inputs) * len(inputs["targets"])


def _from_zero_state(inputs):
    return torch_rnn_gradients({**inputs, "h0": np.zeros_like(inputs["h0"])})


GRADIENTS_MISTAKES = [
    Mistake("the gradients are twice the expected ones: the loss (or each gradient) was counted twice",
            "compute the loss once and ask autograd once per parameter; nothing is added up.", _doubled),
    Mistake("the gradients have the wrong sign (the direction of the update −lr·grad, not the gradient)",
            "return ∂loss/∂p itself; the optimizer subtracts it.", _negated),
    Mistake("the gradients are T times too large: the loss was summed over time steps",
            "use the loss_fn you are given, as it is: it averages over the time steps.", _times_T),
    Mistake("the forward pass started from zeros instead of the h0 argument",
            "pass the h0 you are given on to forward.", _from_zero_state),
]

GRADIENTS = Exercise(
    function="rnn_gradients",
    reference_name="loss.backward() through torch.nn.RNN + nn.Linear + F.cross_entropy",
    make_cases=_gradients_cases,
    reference=torch_rnn_gradients,
    call=_gradients_call,
    mistakes=GRADIENTS_MISTAKES,
    hint="run the forward and loss_fn you are given, then ask torch.autograd.grad for the gradient of that loss "
         "with respect to each parameter, keeping the graph between calls; return a dict with the keys of params.",
    exception_hints={"RuntimeError": "'Trying to backward through the graph a second time': each "
                                     "torch.autograd.grad call frees the graph unless retain_graph=True.",
                     "KeyError": f"return a dict with the keys {', '.join(PARAM_NAMES)}."},
    section="Exercise 1.6",
    covers={
        "one-hot inputs": lambda c: bool(np.all((c.inputs["inputs"] == 0) | (c.inputs["inputs"] == 1))),
        "dense inputs (not one-hot)": lambda c: bool(np.any((c.inputs["inputs"] != 0) & (c.inputs["inputs"] != 1))),
        "a random h0": lambda c: bool(np.any(c.inputs["h0"] != 0)),
        "a zero h0": lambda c: bool(np.all(c.inputs["h0"] == 0)),
        "H ≠ V": lambda c: c.inputs["params"]["W_xh"].shape[0] != c.inputs["params"]["W_xh"].shape[1],
        "T = 2 (a short sequence)": lambda c: len(c.inputs["targets"]) == 2,
    },
)


def check_rnn_gradients(rnn_gradients, hidden: bool = False) -> None:
    """Check ``rnn_gradients(params, inputs, targets, h0, forward=..., loss_fn=...)`` against loss.backward()."""
    show(run_check(GRADIENTS, rnn_gradients, hidden))
