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
from utils.checks.seeding import case_rng
from utils.rnn.shared import scalar_or_value

SETTINGS = [(3, 4, "zeros"), (5, 6, "random"), (7, 7, "random"), (4, 10, "large")]   # (T, V, logits)
HIDDEN_SETTINGS = [(12, 5, "random"), (1, 3, "random")]
LOGITS = {"zeros": "all-zero logits (the loss is log V by hand)", "random": "random logits",
          "large": "large logits (std 20: exp() of them would overflow in float32)"}


def _cases(hidden: bool) -> list[Case]:
    cases = []
    for number, ((T, V, kind), salt) in enumerate(visible_then_hidden(SETTINGS, HIDDEN_SETTINGS, hidden), start=1):
        rng = case_rng("rnn_loss", number, salt)
        logits = {"zeros": np.zeros((T, V)), "random": rng.normal(0, 1.5, (T, V)),
                  "large": rng.normal(0, 20, (T, V))}[kind]
        cases.append(Case(f"T={T}, V={V}, {LOGITS[kind]}", {"logits": logits, "targets": rng.integers(0, V, T)}))
    return cases


def _call(fn, inputs):
    return scalar_or_value(fn(float64_tensor(inputs["logits"]), torch.as_tensor(inputs["targets"])))


def torch_cross_entropy(inputs) -> np.ndarray:
    return F.cross_entropy(float64_tensor(inputs["logits"]), torch.as_tensor(inputs["targets"])).numpy()


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
            "logits are (T, V): F.log_softmax(logits, dim=1) makes each row a distribution over characters.",
            _loss_computed_as("dim0")),
    Mistake("the NLL is summed over time steps instead of averaged",
            "F.nll_loss averages by default; the course's loss is the mean over the T steps.",
            _loss_computed_as("sum")),
    Mistake("log-softmax is missing: F.nll_loss was applied to raw logits",
            "nll_loss expects log-probabilities: F.nll_loss(F.log_softmax(logits, dim=1), targets).",
            _loss_computed_as("no_log_softmax")),
    Mistake("softmax instead of log-softmax before the NLL",
            "use F.log_softmax (probabilities are not log-probabilities).", _loss_computed_as("softmax_no_log")),
]

LOSS = Exercise(
    function="rnn_loss",
    reference_name="torch.nn.functional.cross_entropy",
    make_cases=_cases,
    reference=torch_cross_entropy,
    call=_call,
    mistakes=LOSS_MISTAKES,
    hint="loss = F.nll_loss(F.log_softmax(logits, dim=1), targets), a scalar (the mean over time steps).",
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
            "perplexity = exp(mean NLL).", _mean_nll),
    Mistake("exp of the summed NLL: perplexity uses the mean over time steps",
            "exp(F.cross_entropy(logits, targets)) (mean reduction).", _exp_of_summed_nll),
    Mistake("base 2 with a natural-log loss: 2 ** loss",
            "the NLL uses natural logarithms, so exponentiate with e: torch.exp(loss).", _two_to_the_nll),
]

PERPLEXITY = Exercise(
    function="perplexity",
    reference_name="torch.exp(torch.nn.functional.cross_entropy(logits, targets))",
    make_cases=_perplexity_cases,
    reference=_perplexity_reference,
    call=_call,
    mistakes=PERPLEXITY_MISTAKES,
    hint="perplexity = exp(mean over t of −log p(target_t)); a uniform guess over V characters gives V.",
)


def check_perplexity(perplexity, hidden: bool = False) -> None:
    """Check ``perplexity(logits, targets)`` against exp(F.cross_entropy)."""
    show(run_check(PERPLEXITY, perplexity, hidden))
