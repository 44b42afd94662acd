"""``gradient_norms(rnn, x) -> (T,)``: ‖∂L/∂x_t‖ for every time step, with L the sum of the last time step's
output, for an ``nn.RNN`` or ``nn.LSTM`` (batch_first) holding random weights.
"""
from __future__ import annotations

import numpy as np
import torch

from utils.checks.adapters import float64_tensor
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.seeding import case_rng
from utils.rnn.shared import array_or_value

SETTINGS = [("RNN", 1, 2, 4), ("RNN", 2, 3, 8), ("LSTM", 2, 3, 6), ("LSTM", 3, 4, 10)]   # (kind, D, H, T)
HIDDEN_SETTINGS = [("RNN", 3, 5, 12), ("LSTM", 1, 6, 15)]


def _describe_index(index):
    return f"norm for time step t={index[0]}"


def _cases(hidden: bool) -> list[Case]:
    cases = []
    for number, ((kind, D, H, T), salt) in enumerate(visible_then_hidden(SETTINGS, HIDDEN_SETTINGS, hidden),
                                                      start=1):
        rng = case_rng("gradient_norms", number, salt)
        gates = 4 if kind == "LSTM" else 1
        weights = {"weight_ih_l0": rng.normal(0, 0.7, (gates * H, D)),
                   "weight_hh_l0": rng.normal(0, 0.9 / np.sqrt(H), (gates * H, H)),
                   "bias_ih_l0": rng.normal(0, 0.3, gates * H), "bias_hh_l0": rng.normal(0, 0.3, gates * H)}
        cases.append(Case(f"nn.{kind}(input_size={D}, hidden_size={H}, batch_first=True) with random weights, "
                          f"x of shape (1, T={T}, D={D})",
                          {"kind": kind, "weights": weights, "x": rng.normal(size=(1, T, D))}, _describe_index))
    return cases


def _module(inputs):
    """The case's nn.RNN or nn.LSTM in float64, holding its weights."""
    kind, weights = inputs["kind"], inputs["weights"]
    H, D = weights["weight_hh_l0"].shape[1], weights["weight_ih_l0"].shape[1]
    with torch.random.fork_rng(devices=[]):
        module = getattr(torch.nn, kind)(D, H, batch_first=True).double()
    module.load_state_dict({name: float64_tensor(value) for name, value in weights.items()})
    return module


def _call(fn, inputs):
    return array_or_value(fn(_module(inputs), float64_tensor(inputs["x"])))


def _reference(inputs):
    # the Jacobian of the last output w.r.t. the whole input, summed over the output units
    module = _module(inputs)
    J = torch.autograd.functional.jacobian(lambda x: module(x)[0][0, -1], float64_tensor(inputs["x"]))  # (H, 1, T, D)
    return J.sum(dim=0)[0].norm(dim=-1).numpy()


def _norms_computed_as(kind):
    def compute(inputs):
        module = _module(inputs)
        x = float64_tensor(inputs["x"], requires_grad=True)
        out = module(x)[0]
        objective = out.sum() if kind == "all_steps" else out[:, -1].sum()
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
            "L = output[:, -1, :].sum(): we ask how much the last step still depends on x_t.",
            _norms_computed_as("all_steps")),
    Mistake("squared norms: return ‖∂L/∂x_t‖, not its square", "use .norm(dim=-1).", _norms_computed_as("squared")),
    Mistake("the norms are in reverse time order: entry t must belong to x_t",
            "index the gradient as grad[0, t] for t = 0..T−1.", _norms_computed_as("reversed")),
]

NORMS = Exercise(
    function="gradient_norms",
    reference_name="the Jacobian of output[:, -1].sum() w.r.t. x (torch.autograd.functional.jacobian)",
    make_cases=_cases,
    reference=_reference,
    call=_call,
    mistakes=MISTAKES,
    hint="x = x.clone().requires_grad_(); out = rnn(x)[0]; L = out[:, -1].sum(); "
         "g = torch.autograd.grad(L, x)[0]; return g[0].norm(dim=-1) (shape (T,)).",
)


def check_gradient_norms(gradient_norms, hidden: bool = False) -> None:
    """Check ``gradient_norms(rnn, x)`` against the Jacobian of the last output."""
    show(run_check(NORMS, gradient_norms, hidden))
