"""The softmax cross-entropy loss and its gradient.

* ``softmax_cross_entropy(logits, labels) -> (loss, dlogits)``: logits (N, K), labels (N,) ints;
  loss is the batch mean, as ``torch.nn.functional.cross_entropy``; dlogits (N, K) its gradient.
"""
from __future__ import annotations

import numpy as np

from utils.checks.adapters import float64_tensor, torch_module
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check
from utils.checks.feedback import show
from utils.cnn.layers.shared import RETURN_HINT, build_cases, describe_parts, flatten, shapes_text, unpack_outputs

SOFTMAX_OVERFLOW = ("softmax without subtracting the max: np.exp overflows on large logits (inf/inf = NaN); "
                    "subtract each row's maximum before exponentiating")

# (N, K, special)
SCE_SETTINGS = [(2, 3, ""), (5, 4, ""), (8, 10, ""), (3, 4, "large")]
SCE_HIDDEN = [(16, 7, ""), (3, 5, "negative")]


def _case(rng, setting, number: int) -> Case:
    N, K, special = setting
    if number == 1:
        logits, labels = np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]]), np.array([2, 0])
        text = "logits [[1, 2, 3], [1, 1, 1]], labels [2, 0]"
    else:
        logits, labels = rng.normal(scale=2.0, size=(N, K)), rng.integers(0, K, size=N)
        text = f"N={N}, K={K}, random logits"
        if special == "large":
            logits = logits * 300 + 1000
            text = f"N={N}, K={K}, large logits around 1000 (exp overflows unless the max is subtracted)"
        elif special == "negative":
            logits = logits * 300 - 1000
            text = f"N={N}, K={K}, logits around −1000 (exp underflows to 0 unless the max is subtracted)"
    parts = [("loss", ()), ("dlogits", (N, K))]
    return Case(text + f"; returns {shapes_text(parts)}", {"logits": logits, "labels": labels},
                describe_parts(parts))


def softmax_cross_entropy_cases(hidden: bool) -> list[Case]:
    return build_cases("softmax_cross_entropy", SCE_SETTINGS, SCE_HIDDEN, hidden, _case)


def torch_cross_entropy(logits, labels, reduction: str = "mean") -> tuple:
    """(loss, dlogits) of ``F.cross_entropy`` from autograd, as float64 tensors."""
    torch = torch_module()
    logits_t = float64_tensor(logits, True)
    loss = torch.nn.functional.cross_entropy(logits_t, torch.as_tensor(np.asarray(labels), dtype=torch.long),
                                             reduction=reduction)
    loss.backward()
    return loss, logits_t.grad


def softmax_cross_entropy_reference(inputs: dict) -> np.ndarray:
    return flatten(*torch_cross_entropy(inputs["logits"], inputs["labels"]))


def cross_entropy_summed(inputs: dict) -> np.ndarray:
    """The loss and its gradient summed over the batch, not averaged."""
    return flatten(*torch_cross_entropy(inputs["logits"], inputs["labels"], reduction="sum"))


def cross_entropy_grad_not_divided(inputs: dict) -> np.ndarray:
    """The mean loss with the gradient of the sum: dlogits = p − onehot."""
    loss, dlogits = torch_cross_entropy(inputs["logits"], inputs["labels"])
    return flatten(loss, dlogits * len(inputs["labels"]))


def cross_entropy_grad_without_onehot(inputs: dict) -> np.ndarray:
    """dlogits = softmax(logits) / N."""
    loss, _ = torch_cross_entropy(inputs["logits"], inputs["labels"])
    probabilities = torch_module().softmax(float64_tensor(inputs["logits"]), dim=1)
    return flatten(loss, probabilities / len(inputs["labels"]))


def cross_entropy_grad_negated(inputs: dict) -> np.ndarray:
    """dlogits = (onehot − p) / N."""
    loss, dlogits = torch_cross_entropy(inputs["logits"], inputs["labels"])
    return flatten(loss, -1.0 * dlogits)


def call_softmax_cross_entropy(fn, inputs: dict) -> np.ndarray:
    return unpack_outputs(fn(inputs["logits"], inputs["labels"]), ("loss", "dlogits"), "softmax_cross_entropy")


SOFTMAX_CE = Exercise(
    function="softmax_cross_entropy",
    reference_name="torch.nn.functional.cross_entropy (mean over the batch) and its autograd gradient",
    make_cases=softmax_cross_entropy_cases,
    reference=softmax_cross_entropy_reference,
    call=call_softmax_cross_entropy,
    mistakes=[
        Mistake("cross-entropy not averaged over the batch: loss and dlogits are sums over the N samples",
                "loss = mean over samples of −log p[label]; dlogits = (p − onehot) / N.", cross_entropy_summed),
        Mistake("the loss is averaged but dlogits is not divided by N",
                "the gradient of a mean carries the 1/N: dlogits = (p − onehot) / N.", cross_entropy_grad_not_divided),
        Mistake("dlogits = softmax(logits): the one-hot of the label was not subtracted",
                "dlogits = (p − onehot) / N.", cross_entropy_grad_without_onehot),
        Mistake("dlogits has the wrong sign: it is (p − onehot)/N, not (onehot − p)/N",
                "increasing the correct logit lowers the loss, so that entry of dlogits is negative.",
                cross_entropy_grad_negated),
    ],
    hint=f"if you see NaN or inf: {SOFTMAX_OVERFLOW}. loss = mean_n(−log softmax(logits)[n, label_n]); "
         "dlogits = (softmax(logits) − onehot(labels)) / N.",
    exception_hints={**RETURN_HINT, "IndexError": "labels holds one class index per sample: p[np.arange(N), labels]."},
)


def check_softmax_cross_entropy(softmax_cross_entropy, hidden: bool = False) -> None:
    """Check ``softmax_cross_entropy(logits, labels) -> (loss, dlogits)`` against ``F.cross_entropy``."""
    show(run_check(SOFTMAX_CE, softmax_cross_entropy, hidden))
