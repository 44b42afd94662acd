"""``gradient_norms(rnn, x) -> (T,)``: ‖∂L/∂x_t‖ for every time step, with L the sum of the last time step's
output, for an ``nn.RNN`` or ``nn.LSTM`` (batch_first) holding random weights, with one layer or several (with
several layers, h_n is no longer the last output), left in train mode or in eval mode.

Rules (Exercise 2.4 and the notebook's introduction): the gradient is taken with respect to a copy of x (the
caller's x keeps its values and requires_grad=False), and the model keeps its weights and its mode.
"""
from __future__ import annotations

import numpy as np
import torch

from utils.checks.adapters import float64_tensor
from utils.checks.characterise import Layout
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.rules import RuleBroken, kept_unchanged
from utils.checks.seeding import case_rng
from utils.rnn.shared import array_or_value

# (kind, D, H, T, num_layers, mode)
SETTINGS = [("RNN", 1, 2, 4, 1, "train"), ("RNN", 2, 3, 8, 1, "eval"), ("LSTM", 2, 3, 6, 1, "train"),
            ("LSTM", 3, 4, 10, 1, "eval"), ("RNN", 2, 3, 5, 2, "train")]
HIDDEN_SETTINGS = [("RNN", 3, 5, 12, 1, "eval"), ("LSTM", 1, 6, 15, 1, "train"), ("LSTM", 2, 3, 7, 2, "eval"),
                   ("RNN", 2, 4, 6, 3, "eval")]
IN_PLACE_RULE = "your functions do not change their arguments in place (the notebook's introduction)"
COPY_RULE = "make a copy of x that requires gradients (Exercise 2.4): the caller's x stays as it was"


def _describe_index(index):
    return f"norm for time step t={index[0]}"


def _cases(hidden: bool) -> list[Case]:
    cases = []
    for number, ((kind, D, H, T, L, mode), salt) in enumerate(visible_then_hidden(SETTINGS, HIDDEN_SETTINGS, hidden),
                                                               start=1):
        rng = case_rng("gradient_norms", number, salt)
        gates = 4 if kind == "LSTM" else 1
        weights = {}
        for layer in range(L):
            weights.update({f"weight_ih_l{layer}": rng.normal(0, 0.7, (gates * H, D if layer == 0 else H)),
                            f"weight_hh_l{layer}": rng.normal(0, 0.9 / np.sqrt(H), (gates * H, H)),
                            f"bias_ih_l{layer}": rng.normal(0, 0.3, gates * H),
                            f"bias_hh_l{layer}": rng.normal(0, 0.3, gates * H)})
        layers = f", num_layers={L}" if L > 1 else ""
        cases.append(Case(f"nn.{kind}(input_size={D}, hidden_size={H}{layers}, batch_first=True) with random "
                          f"weights, in {mode} mode; x of shape (1, T={T}, D={D})",
                          {"kind": kind, "weights": weights, "layers": L, "mode": mode,
                           "x": rng.normal(size=(1, T, D))}, _describe_index))
    return cases


def _module(inputs):
    """The case's nn.RNN or nn.LSTM in float64, holding its weights, in the case's mode."""
    kind, weights = inputs["kind"], inputs["weights"]
    H, D = weights["weight_hh_l0"].shape[1], weights["weight_ih_l0"].shape[1]
    with torch.random.fork_rng(devices=[]):
        module = getattr(torch.nn, kind)(D, H, num_layers=inputs["layers"], batch_first=True).double()
    module.load_state_dict({name: float64_tensor(value) for name, value in weights.items()})
    return module.train(inputs["mode"] == "train")


def _call(fn, inputs):
    module, x = _module(inputs), float64_tensor(inputs["x"])
    with kept_unchanged({"rnn": module}, rule=IN_PLACE_RULE), kept_unchanged({"x": x}, rule=COPY_RULE):
        norms = fn(module, x)
    if x.requires_grad:
        raise RuleBroken(COPY_RULE, "the caller's x now has requires_grad=True")
    return array_or_value(norms)


def _reference(inputs):
    # the Jacobian of the last output w.r.t. the whole input, summed over the output units
    module = _module(inputs)
    J = torch.autograd.functional.jacobian(lambda x: module(x)[0][0, -1], float64_tensor(inputs["x"]))  # (H, 1, T, D)
    return J.sum(dim=0)[0].norm(dim=-1).numpy()


def _norms_computed_as(kind):
    def compute(inputs):
        module = _module(inputs)
        x = float64_tensor(inputs["x"], requires_grad=True)
        out, state = module(x)
        objective = out.sum() if kind == "all_steps" else out[:, -1].sum()
        if kind == "h_n":
            objective = (state[0] if isinstance(state, tuple) else state).sum()
        (g,) = torch.autograd.grad(objective, x)
        norms = g[0].norm(dim=-1)
        if kind == "squared":
            norms = norms ** 2
        if kind == "reversed":
            norms = norms.flip(0)
        return norms.detach().numpy()
    return compute


MISTAKES = [
    Mistake("the objective sums the outputs of ALL time steps, not only the last one",
            "L is the sum of the last time step's output only: we ask how much the last step still depends on x_t.",
            _norms_computed_as("all_steps")),
    Mistake("squared norms: return the norm itself, not its square",
            "entry t is the Euclidean norm of ∂L/∂x_t, with the square root.", _norms_computed_as("squared")),
    Mistake("the norms are in reverse time order: entry t must belong to x_t",
            "keep the time order of x: entry 0 is the first time step.", _norms_computed_as("reversed")),
    Mistake("the objective sums h_n (every layer's final state) instead of the last step's output",
            "with several layers h_n holds every layer's state; the output at the last time step is the top "
            "layer's alone. Use the output sequence, the first thing the model returns.",
            _norms_computed_as("h_n")),
]

NORMS = Exercise(
    function="gradient_norms",
    reference_name="the Jacobian of the last step's summed output with respect to x "
                   "(torch.autograd.functional.jacobian)",
    make_cases=_cases,
    reference=_reference,
    call=_call,
    mistakes=MISTAKES,
    hint="L is the sum of the output at the last time step; take its gradient with respect to a copy of x that "
         "requires gradients, then the Euclidean norm over the features of each time step: T numbers.",
    section="Exercise 2.4",
    layout=Layout(axes=("time step",)),
    covers={
        "nn.RNN": lambda c: c.inputs["kind"] == "RNN",
        "nn.LSTM": lambda c: c.inputs["kind"] == "LSTM",
        "nn.RNN with 2 or more layers": lambda c: c.inputs["kind"] == "RNN" and c.inputs["layers"] >= 2,
        "nn.LSTM with 2 or more layers": lambda c: c.inputs["kind"] == "LSTM" and c.inputs["layers"] >= 2,
        "a model in train mode": lambda c: c.inputs["mode"] == "train",
        "a model in eval mode": lambda c: c.inputs["mode"] == "eval",
        "input_size 1": lambda c: c.inputs["x"].shape[2] == 1,
        "a long sequence (T ≥ 12)": lambda c: c.inputs["x"].shape[1] >= 12,
    },
)


def check_gradient_norms(gradient_norms, hidden: bool = False) -> None:
    """Check ``gradient_norms(rnn, x)`` against the Jacobian of the last output."""
    show(run_check(NORMS, gradient_norms, hidden))
