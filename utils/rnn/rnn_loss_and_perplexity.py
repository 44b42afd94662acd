"""``rnn_loss`` and ``perplexity``: two exercises on the same cases (logits (T, V) and targets (T,)).

* ``rnn_loss(logits, targets) -> scalar``: log-softmax over the vocabulary, then the mean NLL;
* ``perplexity(logits, targets) -> float``: exp of the mean NLL.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from utils.checks.adapters import float64_tensor
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.rules import kept_unchanged
from utils.checks.seeding import case_rng
from utils.rnn.shared import scalar_or_value

# (T, V, logits)
SETTINGS = [(3, 4, "zeros"), (5, 6, "random"), (7, 7, "random"), (6, 5, "extreme")]
HIDDEN_SETTINGS = [(12, 5, "random"), (1, 3, "random"), (4, 10, "large"), (8, 6, "extreme32"), (5, 7, "extreme")]
# rnn_loss only: the wide row's target is its SMALLEST logit, so its −log p is about 1600 (perplexity would be e^400)
LOSS_ONLY_HIDDEN_SETTINGS = [(4, 5, "extreme_low")]
LOGITS = {"zeros": "all-zero logits (the loss is log V by hand)", "random": "random logits",
          "large": "large logits (std 20)",
          "extreme": "float64 logits with each row shifted by about ±1000, differently per row and of both signs "
                     "(exp() of them overflows or underflows even in float64), one row spanning more than 1500",
          "extreme_low": "float64 logits with each row shifted by about ±1000, one row spanning more than 1500 whose "
                         "target is its smallest logit (its probability is below what float64 holds)",
          "extreme32": "float32 logits with each row shifted by ±100 to ±300, differently per row and of both signs "
                       "(exp() of them overflows or underflows in float32)"}
IN_PLACE_RULE = "your functions do not change their arguments in place (the notebook's introduction)"


def _logits(rng, T, V, kind):
    if kind == "zeros":
        return np.zeros((T, V))
    if kind == "large":
        return rng.normal(0, 20, (T, V))
    z = rng.normal(0, 1.5, (T, V))
    if kind == "random":
        return z
    # every row shifted far from 0, alternating in sign, by a different amount per row
    low, high = (100, 300) if kind == "extreme32" else (800, 1200)
    signs = np.where(np.arange(T) % 2 == 0, 1.0, -1.0)
    z = z + (signs * rng.uniform(low, high, T))[:, None]
    if kind != "extreme32":   # one row spans ±800 around its shift: shifting by the row minimum overflows
        z[T // 2, :] = z[T // 2, 0] + np.linspace(-800, 800, V)
        return z
    return z.astype(np.float32)


def _cases(hidden: bool, hidden_only: tuple = ()) -> list[Case]:
    cases = []
    settings = visible_then_hidden(SETTINGS, HIDDEN_SETTINGS + list(hidden_only), hidden)
    for number, ((T, V, kind), salt) in enumerate(settings, start=1):
        rng = case_rng("rnn_loss", number, salt)
        logits = _logits(rng, T, V, kind)
        targets = rng.integers(0, V, T)
        if kind == "extreme":   # the wide row's target is its largest logit: the loss stays moderate
            targets[T // 2] = V - 1
        if kind == "extreme_low":
            targets[T // 2] = 0
        cases.append(Case(f"T={T}, V={V}, {LOGITS[kind]}", {"logits": logits, "targets": targets},
                          lambda index: "the value you returned"))
    return cases


def _call(fn, inputs):
    logits = torch.tensor(inputs["logits"])   # float32 where the case is float32, else float64
    targets = torch.as_tensor(inputs["targets"])
    with kept_unchanged({"logits": logits, "targets": targets}, rule=IN_PLACE_RULE):
        result = fn(logits, targets)
    return scalar_or_value(result)


def torch_cross_entropy(inputs) -> np.ndarray:
    return F.cross_entropy(float64_tensor(inputs["logits"]), torch.as_tensor(inputs["targets"])).numpy()


def _row_max(case):
    return np.asarray(case.inputs["logits"], dtype=np.float64).max(axis=1)


COVERS = {
    "all-zero logits": lambda c: not np.any(c.inputs["logits"]),
    "row maxima of both signs, different per row, beyond what exp() holds in float64":
        lambda c: _row_max(c).max() > 709 and _row_max(c).min() < -709 and len(set(_row_max(c))) == len(_row_max(c)),
    "a row whose logits span more than exp() holds":
        lambda c: bool(np.any(np.ptp(np.asarray(c.inputs["logits"], dtype=np.float64), axis=1) > 1400)),
    "float32 logits with row maxima of both signs beyond what exp() holds in float32":
        lambda c: c.inputs["logits"].dtype == np.float32 and _row_max(c).max() > 88 and _row_max(c).min() < -88,
    "a single time step (T = 1)": lambda c: len(c.inputs["targets"]) == 1,
    "T ≠ V": lambda c: c.inputs["logits"].shape[0] != c.inputs["logits"].shape[1],
}


def nll_numpy(inputs, kind: str = "mean"):
    """The mean NLL of the log-softmax over the vocabulary; the other kinds reproduce known mistakes."""
    z, y = inputs["logits"], np.asarray(inputs["targets"])
    dim = 0 if kind == "dim0" else 1
    logp = z - z.max(axis=dim, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(axis=dim, keepdims=True))
    if kind == "no_log_softmax":
        logp = z
    if kind == "softmax_no_log":
        logp = np.exp(logp)
    picked = -logp[np.arange(len(y)), y]
    return picked.sum() if kind == "sum" else picked.mean()


def _loss_computed_as(kind):
    def compute(inputs):
        return nll_numpy(inputs, kind)
    return compute


# ----------------------------------------------------------------------- rnn_loss

LOSS_MISTAKES = [
    Mistake("softmax over the wrong dimension: the log-softmax normalises over time steps (dim=0) "
            "instead of over the vocabulary",
            "logits are (T, V): each row, one time step, must become a distribution over the V characters.",
            _loss_computed_as("dim0")),
    Mistake("the NLL is summed over time steps instead of averaged",
            "the loss is the mean over the T steps (the 1/T in the formula above Exercise 1.5).",
            _loss_computed_as("sum")),
    Mistake("log-softmax is missing: the NLL was taken of the raw logits",
            "F.nll_loss expects log-probabilities, not logits.", _loss_computed_as("no_log_softmax")),
    Mistake("softmax instead of log-softmax before the NLL",
            "F.nll_loss expects log-probabilities; probabilities are not log-probabilities.",
            _loss_computed_as("softmax_no_log")),
]

LOSS = Exercise(
    function="rnn_loss",
    reference_name="torch.nn.functional.cross_entropy",
    make_cases=lambda hidden: _cases(hidden, LOSS_ONLY_HIDDEN_SETTINGS),
    reference=torch_cross_entropy,
    call=_call,
    mistakes=LOSS_MISTAKES,
    hint="turn each row of logits into log-probabilities over the vocabulary in a numerically stable way (large "
         "logits of either sign must not overflow), then average −log p of the target over the time steps.",
    section="Exercise 1.5",
    covers={**COVERS, "a target logit more than 800 below its row's maximum": lambda c: bool(np.any(
        _row_max(c) - np.asarray(c.inputs["logits"], dtype=np.float64)[np.arange(len(c.inputs["targets"])),
                                                                         c.inputs["targets"]] > 800))},
)


def check_rnn_loss(rnn_loss, hidden: bool = False) -> None:
    """Check ``rnn_loss(logits, targets)`` against F.cross_entropy."""
    show(run_check(LOSS, rnn_loss, hidden))


# ----------------------------------------------------------------------- perplexity


def _perplexity_cases(hidden: bool) -> list[Case]:
    cases = _cases(hidden)
    cases[0].description = cases[0].description.replace("the loss is log V by hand", "the perplexity is V by hand")
    return cases


def _perplexity_reference(inputs):
    return np.exp(torch_cross_entropy(inputs))


def _mean_nll(inputs):
    return nll_numpy(inputs)


def _exp_of_summed_nll(inputs):
    return np.exp(nll_numpy(inputs, "sum"))


def _two_to_the_nll(inputs):
    return 2.0 ** nll_numpy(inputs)


PERPLEXITY_MISTAKES = [
    Mistake("the exponential is missing: you returned the mean NLL itself",
            "the loss is in nats; perplexity is e raised to it (see the text above Exercise 1.7).", _mean_nll),
    Mistake("exp of the summed NLL: perplexity uses the mean over time steps",
            "exponentiate the mean negative log-likelihood, not the sum.", _exp_of_summed_nll),
    Mistake("base 2 with a natural-log loss: 2 to the power of the loss",
            "the NLL uses natural logarithms, so exponentiate with e.", _two_to_the_nll),
]

PERPLEXITY = Exercise(
    function="perplexity",
    reference_name="the exponential of torch.nn.functional.cross_entropy",
    make_cases=_perplexity_cases,
    reference=_perplexity_reference,
    call=_call,
    mistakes=PERPLEXITY_MISTAKES,
    hint="the mean negative log-likelihood is the loss of Exercise 1.5; perplexity is e to that power (a uniform "
         "guess over V characters gives V). Compute it stably: large logits of either sign must not overflow.",
    section="Exercise 1.7",
    covers=COVERS,
)


def check_perplexity(perplexity, hidden: bool = False) -> None:
    """Check ``perplexity(logits, targets)`` against exp(F.cross_entropy)."""
    show(run_check(PERPLEXITY, perplexity, hidden))
