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
from utils.cnn.layers.shared import (
    PACKED,
    build_cases,
    calling,
    describe_parts,
    flatten,
    part_regions,
    return_hint,
    shapes_text,
    unpack_outputs,
)

SOFTMAX_OVERFLOW = ("softmax without subtracting the max of each row: np.exp overflows (or every entry of a row "
                    "underflows to 0) and inf/inf or 0/0 is NaN. Softmax does not change when a constant is "
                    "subtracted from a row — from each row on its own, since rows may sit far apart (section 5, "
                    "“Numerical stability”)")

# (N, K, special); "spread": each row shifted by its own offset, of both signs, far beyond exp's range
SCE_SETTINGS = [(2, 3, ""), (5, 4, ""), (8, 10, ""), (3, 4, "large"), (4, 5, "spread")]
SCE_HIDDEN = [(16, 7, ""), (3, 5, "negative"), (6, 4, "spread float32"), (7, 3, "uint8 labels"),
              (5, 6, "spread int32 labels")]

# Row offsets of the "spread" cases: float64's exp overflows above about 709, float32's above about 88.
ROW_OFFSETS = {"float64": (1000.0, -1000.0, 0.0, 1200.0, -400.0, 150.0, -900.0),
               "float32": (120.0, -150.0, 0.0, 300.0, -60.0, 95.0)}


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
            logits = logits * 10 - 1000
            text = f"N={N}, K={K}, logits around −1000 (exp underflows to 0 unless the max is subtracted)"
        elif special.startswith("spread"):
            dtype = "float32" if "float32" in special else "float64"
            offsets = np.array(ROW_OFFSETS[dtype][:N])
            logits = (logits * 2.5 + offsets[:, None]).astype(dtype)
            shown = ", ".join(f"{v:g}".replace("-", "−") for v in offsets)
            text = (f"N={N}, K={K}, {dtype} logits, each row around its own offset ({shown}): row maxima of "
                    "both signs, far beyond exp's range")
        if "labels" in special:
            dtype = special.split()[-2]
            labels = labels.astype(dtype)
            text += f", labels of dtype {dtype}"
    parts = [("loss", ()), ("dlogits", (N, K))]
    return Case(text + f"; returns {shapes_text(parts)}", {"logits": logits, "labels": labels},
                describe_parts(parts), regions=part_regions(parts))


def _row_maxima(case: Case) -> np.ndarray:
    return np.asarray(case.inputs["logits"], dtype=np.float64).max(axis=1)


def _beyond_exp(case: Case) -> bool:
    """Some row maximum where the dtype's exp overflows, and some other row where subtracting that maximum
    would underflow every entry: only each row's own maximum works."""
    logits = case.inputs["logits"]
    limit = 88.0 if logits.dtype == np.float32 else 709.0
    top = _row_maxima(case)
    return bool(top.max() > limit and (top.max() - top.min()) > 2 * limit)


SCE_COVERS = {
    "a batch of 2 or more": lambda c: c.inputs["logits"].shape[0] >= 2,
    "K different from N": lambda c: c.inputs["logits"].shape[0] != c.inputs["logits"].shape[1],
    "row maxima of both signs, different per row":
        lambda c: bool((_row_maxima(c) > 100).any() and (_row_maxima(c) < -100).any()),
    "float64 logits beyond exp's range, rows far apart": lambda c: c.inputs["logits"].dtype == np.float64 and
        _beyond_exp(c),
    "float32 logits beyond exp's float32 range, rows far apart": lambda c: c.inputs["logits"].dtype == np.float32
        and _beyond_exp(c),
    "all logits far below 0 (exp underflows)": lambda c: bool((_row_maxima(c) < -300).all()),
    "labels of an integer dtype other than int64 (uint8, int32)":
        lambda c: c.inputs["labels"].dtype in (np.uint8, np.int32),
    "a label that is not its row's largest logit":
        lambda c: bool((c.inputs["logits"].argmax(axis=1) != c.inputs["labels"]).any()),
}


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


RESULT_SHAPES = "softmax_cross_entropy returns loss, a float (the batch mean), and dlogits of shape (N, K)"


def call_softmax_cross_entropy(fn, inputs: dict) -> np.ndarray:
    logits = inputs["logits"]
    result = calling(fn, {"logits": logits, "labels": inputs["labels"]}, logits, inputs["labels"])
    return unpack_outputs(result, ("loss", "dlogits"), "softmax_cross_entropy", ((), logits.shape), RESULT_SHAPES)


SOFTMAX_CE = Exercise(
    function="softmax_cross_entropy",
    reference_name="torch.nn.functional.cross_entropy (mean over the batch) and its autograd gradient",
    make_cases=softmax_cross_entropy_cases,
    reference=softmax_cross_entropy_reference,
    call=call_softmax_cross_entropy,
    mistakes=[
        Mistake("loss and dlogits are sums over the N samples, not means",
                "the loss is the mean over the batch, and the gradient of a mean carries its 1/N.",
                cross_entropy_summed),
        Mistake("the loss is averaged but dlogits was not divided by N",
                "the gradient of a mean over N samples carries the same 1/N.", cross_entropy_grad_not_divided),
        Mistake("dlogits is the softmax alone: the one-hot of the label was not subtracted",
                "the true class's entry of the gradient is 1/N smaller than the softmax part alone.",
                cross_entropy_grad_without_onehot),
        Mistake("dlogits has the wrong sign",
                "raising the true class's logit lowers the loss, so that entry of dlogits is negative.",
                cross_entropy_grad_negated),
    ],
    hint=f"if you see NaN or inf: {SOFTMAX_OVERFLOW}. Otherwise: the loss is the batch mean of the negative "
         "log-probability of each sample's label, and its gradient is the section's formula.",
    exception_hints={**return_hint("loss", "dlogits"),
                     "IndexError": "labels holds one class index per sample: pick, in each row, the entry of that "
                                   "row's label."},
    section="5. Softmax cross-entropy",
    layout=PACKED,
    covers=SCE_COVERS,
)


def check_softmax_cross_entropy(softmax_cross_entropy, hidden: bool = False) -> None:
    """Check ``softmax_cross_entropy(logits, labels) -> (loss, dlogits)`` against ``F.cross_entropy``."""
    show(run_check(SOFTMAX_CE, softmax_cross_entropy, hidden))
