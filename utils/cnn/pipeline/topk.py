"""Exercise 6: ``topk_accuracy(logits, targets, k) -> float``.

The fraction of rows whose target is among the k indices returned by ``torch.topk`` (ties resolved as
torch.topk resolves them). A case calls the student's function on float32 logits and int64 targets for each
k of a list and compares the accuracies (:func:`topk_values`). The call enforces the rule of section 4 that
the function only reads its inputs: the notebook calls it twice on the same tensors (top-1, then top-3).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from utils.checks.adapters import to_numpy
from utils.checks.characterise import Layout
from utils.checks.compare import Tolerance
from utils.checks.diagnose import Mistake
from utils.checks.exercise import HIDDEN_SALT, Case, Exercise
from utils.checks.rules import kept_unchanged
from utils.checks.seeding import case_rng
from utils.cnn.pipeline.shared import check_on_one_thread

# a fraction of at most 200 rows, which a student may compute in float32: 1e-6 is far below 1 / 200
FRACTION = Tolerance(atol=1e-6, rtol=0.0)


def reference_topk_accuracy(logits, targets, k, rule="topk"):
    """Fraction of rows whose target is among ``torch.topk(logits, k, dim=1)``; ``rule`` = known mistakes."""
    logits = torch.as_tensor(logits)
    targets = torch.as_tensor(targets)
    n = targets.shape[0]
    if rule == "argsort":   # ties broken by a stable sort instead of torch.topk
        order = np.argsort(-logits.numpy(), axis=1, kind="stable")[:, :k]
        return float((order == targets.numpy()[:, None]).any(axis=1).mean())
    largest = rule != "smallest"
    _, pred = logits.topk(1 if rule == "ignore_k" else k, dim=1, largest=largest, sorted=True)
    if rule == "no_view":     # pred (N, k) compared with targets (N,): broadcasts along the wrong axis
        return float(pred.eq(targets).sum().item()) / n
    hits = pred.eq(targets.view(-1, 1).expand_as(pred))
    if rule == "mean_all":    # mean over N·k entries instead of N samples
        return float(hits.float().mean().item())
    correct = float(hits.sum().item()) / n
    return 100 * correct if rule == "percent" else correct


INPUTS_RULE = ("topk_accuracy only reads logits and targets, it changes neither (section 4): the notebook calls "
               "it again on the same tensors")


def topk_values(fn, inputs) -> Any:
    """``fn(logits, targets, k)`` for each k of the case, as one array (or the first value that is not a number)."""
    logits = torch.tensor(inputs["logits"], dtype=torch.float32)
    targets = torch.tensor(inputs["targets"], dtype=torch.int64)
    out = []
    for k in inputs["ks"]:
        with kept_unchanged({"logits": logits, "targets": targets}, rule=INPUTS_RULE):
            value = to_numpy(fn(logits, targets, k))
        if value is None or value.size != 1:
            return value
        out.append(float(value.reshape(())))
    return np.array(out)


def _topk_cases(hidden: bool) -> list[Case]:
    hand = np.array([[0.1, 2.0, 0.3, 1.5, -1.0], [3.0, 0.2, 0.1, 0.0, 2.9],
                     [0.0, 0.5, 1.0, 1.5, 2.0], [1.0, -1.0, 0.5, 0.2, 0.9]])
    settings = [("4 hand-made rows over 5 classes, targets [3, 4, 0, 2] (top-1: 0 of 4 correct, top-2: 2 of 4, "
                 "top-3: 3 of 4)", hand, np.array([3, 4, 0, 2]), [1, 2, 3])]
    rng = case_rng("topk_accuracy", 2)
    settings.append(("64 rows of random logits over 100 classes, no ties", rng.normal(size=(64, 100)),
                     rng.integers(0, 100, 64), [1, 5]))
    rng = case_rng("topk_accuracy", 3)
    settings.append(("50 rows of integer logits in {0, 1, 2} over 10 classes: many ties, resolved as torch.topk "
                     "resolves them", rng.integers(0, 3, size=(50, 10)).astype(float), rng.integers(0, 10, 50),
                     [1, 3, 5]))
    rng = case_rng("topk_accuracy", 4)
    settings.append(("5 rows over 10 classes with k=5 (batch size equal to k), no ties",
                     rng.normal(size=(5, 10)), rng.integers(0, 10, 5), [5]))
    if hidden:
        rng = case_rng("topk_accuracy", 5, HIDDEN_SALT)
        settings.append(("200 rows over 100 classes with values rounded to 1 decimal (ties), k = 1, 5, 10",
                         np.round(rng.normal(size=(200, 100)), 1), rng.integers(0, 100, 200), [1, 5, 10]))
        rng = case_rng("topk_accuracy", 6, HIDDEN_SALT)
        settings.append(("3 rows over 3 classes, k = 1, 3 and k=3 (batch size equal to k)",
                         rng.normal(size=(3, 3)), rng.integers(0, 3, 3), [1, 3]))
    return [Case(desc + f", k in {ks}", {"logits": logits, "targets": targets, "ks": ks},
                 lambda index, ks=ks: f"k={ks[index[0]]}",
                 regions={"the accuracies for k = 1": np.array(ks) == 1, "the accuracies for k > 1": np.array(ks) > 1})
            for desc, logits, targets, ks in settings]


def _topk_variant(rule):
    return lambda inputs: np.array([reference_topk_accuracy(torch.tensor(inputs["logits"], dtype=torch.float32),
                                                            torch.tensor(inputs["targets"]), k, rule)
                                    for k in inputs["ks"]])


M_TOPK_NO_VIEW = ("targets compared with the predictions without being made a column: (N, k) predictions "
                  "against (N,) targets line up along the wrong axis")
M_TOPK_MEAN_ALL = "the hits are averaged over N·k entries: divide the number of correct rows by N"
M_TOPK_PERCENT = "accuracy returned in percent: return a fraction between 0 and 1"
M_TOPK_SMALLEST = "topk with largest=False picks the k smallest scores"
M_TOPK_IGNORE_K = "k is ignored: only the top-1 prediction is compared"
M_TOPK_TIES = "ties are broken differently from torch.topk (argmax / argsort pick other tied classes)"
_COLUMN_HINT = ("the predictions have shape (N, k) and the targets (N,): make the targets a column of shape (N, 1) "
                "and expand it to the predictions' shape, so that row i is compared with target i only.")

TOPK = Exercise(
    function="topk_accuracy",
    reference_name="torch.topk-based top-k accuracy",
    make_cases=_topk_cases,
    reference=_topk_variant("topk"),
    call=topk_values,
    mistakes=[
        Mistake(M_TOPK_NO_VIEW, _COLUMN_HINT, _topk_variant("no_view")),
        Mistake(M_TOPK_MEAN_ALL, "count rows with a hit (at most one per row), then divide by N.",
                _topk_variant("mean_all")),
        Mistake(M_TOPK_PERCENT, "return the fraction itself, without the factor 100.", _topk_variant("percent")),
        Mistake(M_TOPK_SMALLEST, "ask torch.topk for the largest scores of each row.", _topk_variant("smallest")),
        Mistake(M_TOPK_IGNORE_K, "hand torch.topk the k you are given.", _topk_variant("ignore_k")),
        Mistake(M_TOPK_TIES, "take the top k with torch.topk itself: tied scores are then resolved exactly as the "
                             "check resolves them (section 4).", _topk_variant("argsort")),
    ],
    tolerance=FRACTION,
    hint="section 4: the indices of the k largest scores of each row (torch.topk along the class axis), the rows "
         "whose target is among them counted once, divided by the number of rows.",
    exception_hints={"RuntimeError": f"perhaps {M_TOPK_NO_VIEW}. Make the targets a column of shape (N, 1) "
                                     "and expand it to the predictions' shape, so that row i is compared with "
                                     "target i only."},
    section="4. Top-k accuracy",
    layout=Layout(axes=("entry",)),
    covers={
        "k = 1 and k > 1": lambda case: 1 in case.inputs["ks"] and max(case.inputs["ks"]) > 1,
        "tied scores in a row": lambda case: any(len(set(row)) < len(row) for row in case.inputs["logits"]),
        "as many rows as k (a wrong comparison then broadcasts silently)":
            lambda case: len(case.inputs["targets"]) in case.inputs["ks"],
        "more rows than k": lambda case: len(case.inputs["targets"]) > max(case.inputs["ks"]),
        "100 classes, as in CIFAR-100": lambda case: case.inputs["logits"].shape[1] == 100,
        "negative and positive scores": lambda case: case.inputs["logits"].min() < 0 < case.inputs["logits"].max(),
    },
)


def check_topk_accuracy(topk_accuracy, hidden: bool = False) -> None:
    """Check ``topk_accuracy(logits, targets, k)`` against torch.topk, ties included."""
    check_on_one_thread(TOPK, topk_accuracy, hidden)
