"""Exercise 5: ``make_criterion_and_optimizer(model) -> (criterion, optimizer)``.

``CrossEntropyLoss`` and ``SGD(lr=0.01, momentum=0.9, weight_decay=5e-4)``. A case runs three training steps
of a float64 ``Linear(6, 4)`` probe with the returned pair and compares the three losses, then the final
weights and biases (:func:`optimizer_steps`), with ``torch.optim`` itself as the reference.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn

from utils.checks.adapters import float64_tensor
from utils.checks.characterise import Layout
from utils.checks.compare import Tolerance
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, visible_then_hidden
from utils.checks.seeding import case_rng
from utils.cnn.pipeline.shared import check_on_one_thread, seeded, variant_name

# float64 torch arithmetic on both sides, so agreement is exact; a tight tolerance is what makes
# weight_decay=5e-4 visible (three steps change the weights by only ~1e-5 of their size)
FLOAT64_STEPS = Tolerance(atol=1e-10, rtol=1e-9)

_PROBE_IN, _PROBE_OUT = 6, 4


def optimizer_steps(factory, inputs) -> Any:
    """Three training steps of a linear probe with the (criterion, optimizer) that ``factory`` builds."""
    with seeded(0):   # its initial weights are overwritten; the seed only keeps the caller's generator untouched
        model = nn.Linear(_PROBE_IN, _PROBE_OUT).double()
    with torch.no_grad():
        model.weight.copy_(float64_tensor(inputs["w"]))
        model.bias.copy_(float64_tensor(inputs["b"]))
    pair = factory(model)
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        return pair
    criterion, optimizer = pair
    x, y = torch.from_numpy(inputs["x"]), torch.from_numpy(inputs["y"])
    losses = []
    for _ in range(inputs["steps"]):
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return np.concatenate([losses, model.weight.detach().numpy().ravel(), model.bias.detach().numpy()])


def reference_criterion_and_optimizer(model, optimizer="SGD", lr=0.01, momentum=0.9, weight_decay=5e-4,
                                      criterion="CE"):
    crit = nn.CrossEntropyLoss() if criterion == "CE" else nn.NLLLoss()
    if optimizer == "SGD":
        return crit, torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    return crit, torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)


def _describe_index(index) -> str:
    i = index[0]
    if i < 3:
        return f"the loss of step {i + 1}"
    i -= 3
    if i < _PROBE_OUT * _PROBE_IN:
        return f"the weight [{i // _PROBE_IN}, {i % _PROBE_IN}] after three steps"
    return f"the bias [{i - _PROBE_OUT * _PROBE_IN}] after three steps"


_SIZE = 3 + _PROBE_OUT * _PROBE_IN + _PROBE_OUT
_REGIONS = {"the three losses": np.arange(_SIZE) < 3, "the weights and biases after three steps": np.arange(_SIZE) >= 3}


def _optimizer_cases(hidden: bool) -> list[Case]:
    cases = []
    for number, (n, salt) in enumerate(visible_then_hidden([12, 16], [20, 24], hidden), start=1):
        rng = case_rng("make_criterion_and_optimizer", number, salt)
        inputs = {"w": rng.normal(size=(_PROBE_OUT, _PROBE_IN)), "b": rng.normal(size=_PROBE_OUT),
                  "x": rng.normal(size=(n, _PROBE_IN)) * 2, "y": rng.integers(0, _PROBE_OUT, n), "steps": 3}
        cases.append(Case(f"three training steps of a Linear({_PROBE_IN}, {_PROBE_OUT}) model on {n} random samples "
                          "with integer class labels", inputs, _describe_index, regions=_REGIONS))
    return cases


def _optimizer_variant(**kw):
    return lambda inputs: optimizer_steps(lambda m: reference_criterion_and_optimizer(m, **kw), inputs)


M_NO_MOMENTUM = "SGD without momentum=0.9"
M_NO_WD = "SGD without weight_decay=5e-4"
M_LR = "wrong learning rate: it must be lr=0.01"
M_ADAM = "Adam instead of SGD"
M_NLL = "NLLLoss on raw scores: CrossEntropyLoss (log-softmax + NLL) is the loss for logits"
_OPT_HINT = "section 3 fixes three SGD settings: learning rate 0.01, momentum 0.9 and weight decay 5e-4."

OPTIMIZER = Exercise(
    function="make_criterion_and_optimizer",
    reference_name="nn.CrossEntropyLoss with SGD (learning rate 0.01, momentum 0.9, weight decay 5e-4)",
    make_cases=_optimizer_cases,
    reference=lambda inputs: optimizer_steps(reference_criterion_and_optimizer, inputs),
    call=optimizer_steps,
    mistakes=(
        [Mistake(M_NO_MOMENTUM, _OPT_HINT, _optimizer_variant(momentum=0.0)),
         Mistake(M_NO_WD, _OPT_HINT, _optimizer_variant(weight_decay=0.0)),
         Mistake(M_NO_MOMENTUM + " and weight_decay=5e-4", _OPT_HINT,
                 _optimizer_variant(momentum=0.0, weight_decay=0.0))]
        + [Mistake(variant_name(M_LR, f"lr={lr:g}"), _OPT_HINT, _optimizer_variant(lr=lr))
           for lr in (0.001, 0.1, 1e-4, 0.05)]
        + [Mistake(variant_name(M_ADAM, f"optim.Adam(lr={lr:g}, weight_decay={wd:g})"), _OPT_HINT,
                   _optimizer_variant(optimizer="Adam", lr=lr, weight_decay=wd))
           for lr in (0.01, 0.001) for wd in (5e-4, 0.0)]
        + [Mistake(M_NLL, "the network outputs logits: use the loss that applies log-softmax itself (section 3).",
                   _optimizer_variant(criterion="NLL"))]
    ),
    tolerance=FLOAT64_STEPS,
    hint="the cross-entropy loss for logits, and SGD over the model's parameters with the settings of section 3: "
         "learning rate 0.01, momentum 0.9, weight decay 5e-4.",
    exception_hints={"AttributeError": "return the pair (criterion, optimizer), in that order.",
                     "TypeError": "return the pair (criterion, optimizer), in that order."},
    section="3. Loss and optimiser",
    layout=Layout(axes=("entry",)),
    covers={
        "two or more steps (momentum shows from the second)": lambda case: case.inputs["steps"] >= 2,
        "weights of order one (weight decay shows at the check's tolerance)":
            lambda case: np.abs(case.inputs["w"]).mean() > 0.3,
        "integer class labels": lambda case: case.inputs["y"].dtype.kind in "iu",
        "a batch of 2 or more samples": lambda case: len(case.inputs["y"]) >= 2,
    },
)


def check_make_criterion_and_optimizer(make_criterion_and_optimizer, hidden: bool = False) -> None:
    """Check ``make_criterion_and_optimizer(model)`` by three training steps of a linear probe."""
    check_on_one_thread(OPTIMIZER, make_criterion_and_optimizer, hidden)
