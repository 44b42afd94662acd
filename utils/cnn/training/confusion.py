"""Exercise 1: ``confusion_matrix(y_true, y_pred, num_classes) -> (C, C) counts``.

Row ``i`` is the true class, column ``j`` the predicted class (scikit-learn's convention): entry ``[i, j]``
counts the samples of class ``i`` predicted as ``j``. Every class ``0 … C-1`` has its row and column, also a
class that occurs in neither ``y_true`` nor ``y_pred``. The reference is
``sklearn.metrics.confusion_matrix(y_true, y_pred, labels=range(C))``. A case hands over the labels as torch
int64 tensors or NumPy int arrays (the notebook uses both) and compares the counts exactly. The call enforces
that the labels are only read.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from utils.checks.adapters import returned_array
from utils.checks.characterise import Layout
from utils.checks.compare import EXACT
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, visible_then_hidden
from utils.checks.rules import kept_unchanged
from utils.checks.seeding import case_rng
from utils.cnn.pipeline.shared import check_on_one_thread

LABELS_RULE = "confusion_matrix only reads y_true and y_pred (section 1.1): it changes neither"


def labels_as_given(inputs: dict) -> tuple[Any, Any]:
    """The case's labels as the student receives them: torch int64 tensors or NumPy int64 arrays."""
    if inputs["kind"] == "torch":
        return torch.tensor(inputs["y_true"], dtype=torch.int64), torch.tensor(inputs["y_pred"], dtype=torch.int64)
    return np.array(inputs["y_true"], dtype=np.int64), np.array(inputs["y_pred"], dtype=np.int64)


def confusion_output(fn, inputs) -> Any:
    y_true, y_pred = labels_as_given(inputs)
    with kept_unchanged({"y_true": y_true, "y_pred": y_pred}, rule=LABELS_RULE):
        return returned_array(fn(y_true, y_pred, inputs["num_classes"]))


def reference_confusion(inputs, rule: str = "sklearn") -> np.ndarray:
    """``sklearn.metrics.confusion_matrix`` with every class as a label, as float64; ``rule`` = known mistakes."""
    from sklearn.metrics import confusion_matrix
    y_true, y_pred, c = np.asarray(inputs["y_true"]), np.asarray(inputs["y_pred"]), inputs["num_classes"]
    if rule == "inferred":      # the labels found in the data: an absent class loses its row and column
        with warnings.catch_warnings():   # scikit-learn warns when a single label occurs
            warnings.simplefilter("ignore")
            return confusion_matrix(y_true, y_pred).astype(np.float64)
    if rule == "largest":       # the size taken from the largest label seen
        size = int(max(y_true.max(), y_pred.max())) + 1
        return confusion_matrix(y_true, y_pred, labels=np.arange(size)).astype(np.float64)
    if rule == "one_based":     # labels read as 1 … C: class k is counted at k - 1, class 0 wraps to the end
        return confusion_matrix((y_true - 1) % c, (y_pred - 1) % c, labels=np.arange(c)).astype(np.float64)
    if rule == "fancy_assign":  # counts[y_true, y_pred] += 1 with arrays: a repeated pair is counted once
        counts = np.zeros((c, c))
        counts[y_true, y_pred] += 1
        return counts
    counts = confusion_matrix(y_true, y_pred, labels=np.arange(c)).astype(np.float64)
    if rule == "transposed":
        return counts.T
    if rule == "row_normalised":
        totals = counts.sum(axis=1, keepdims=True)
        return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    return counts


def _labels(rng, n: int, c: int, accuracy: float, absent_true=(), absent_pred=()) -> tuple[np.ndarray, np.ndarray]:
    """``n`` true labels over ``c`` classes (never one of ``absent_true``) and predictions that are right with
    probability ``accuracy``, otherwise a random class (never one of ``absent_pred``)."""
    allowed_true = [k for k in range(c) if k not in absent_true]
    allowed_pred = [k for k in range(c) if k not in absent_pred]
    y_true = rng.choice(allowed_true, size=n)
    y_pred = np.where(rng.random(n) < accuracy, y_true, rng.choice(allowed_pred, size=n))
    y_pred = np.where(np.isin(y_pred, absent_pred), rng.choice(allowed_pred, size=n), y_pred)
    return y_true.astype(np.int64), y_pred.astype(np.int64)


def _confusion_cases(hidden: bool) -> list[Case]:
    # (description, n, C, accuracy, absent from y_true, absent from y_pred, torch or numpy)
    visible = [
        ("30 samples, 4 classes, torch tensors, class 3 never predicted", 30, 4, 0.6, (), (3,), "torch"),
        ("25 samples, 5 classes, NumPy arrays, class 2 in neither y_true nor y_pred, class 4 never a true label",
         25, 5, 0.5, (2, 4), (2,), "numpy"),
        ("40 samples, 6 classes, torch tensors, the last class (5) in neither y_true nor y_pred", 40, 6, 0.7,
         (5,), (5,), "torch"),
    ]
    hidden_only = [
        ("200 samples, 10 classes, NumPy arrays, classes 0 and 7 never predicted", 200, 10, 0.8, (), (0, 7),
         "numpy"),
        ("1 sample, 3 classes, torch tensors", 1, 3, 0.0, (), (), "torch"),
        ("64 samples, 2 classes, torch tensors", 64, 2, 0.5, (), (), "torch"),
    ]
    cases = []
    for number, ((desc, n, c, acc, absent_true, absent_pred, kind), salt) in enumerate(
            visible_then_hidden(visible, hidden_only, hidden), start=1):
        rng = case_rng("confusion_matrix", number, salt)
        y_true, y_pred = _labels(rng, n, c, acc, absent_true, absent_pred)
        cases.append(Case(desc, {"y_true": y_true, "y_pred": y_pred, "num_classes": c, "kind": kind},
                          lambda index: f"[{index[0]}, {index[1]}] (true class {index[0]}, predicted {index[1]})"))
    return cases


def _variant(rule: str):
    return lambda inputs: reference_confusion(inputs, rule)


M_TRANSPOSED = "the matrix is transposed: its rows are the predicted classes and its columns the true ones"
M_INFERRED = ("the classes are taken from the labels that occur: a class that is in neither y_true nor y_pred gets "
              "no row and no column")
M_LARGEST = ("the size is taken from the largest label that occurs, not from num_classes: a last class that never "
             "occurs is missing")
M_ONE_BASED = "the labels are read as 1 … C: every count sits one row and one column too early, class 0 at the end"
M_FANCY = ("the counts are added with one fancy-indexed `+= 1`: NumPy and torch add once per distinct (true, "
           "predicted) pair, so repeated pairs are counted once")
M_NORMALISED = "each row is divided by its total: the exercise asks for counts, not fractions"

CONFUSION = Exercise(
    function="confusion_matrix",
    reference_name="sklearn.metrics.confusion_matrix(y_true, y_pred, labels=range(num_classes))",
    make_cases=_confusion_cases,
    reference=_variant("sklearn"),
    call=confusion_output,
    mistakes=[
        Mistake(M_TRANSPOSED, "the first index is the true class, the second the prediction (section 1.1): row i "
                              "sums to the number of samples of class i.", _variant("transposed")),
        Mistake(M_INFERRED, "the matrix is num_classes × num_classes, whatever occurs in the data: a class "
                            "nobody predicted and no sample has still owns a row and a column of zeros.",
                _variant("inferred")),
        Mistake(M_LARGEST, "size the matrix with num_classes: the data need not contain the last class.",
                _variant("largest")),
        Mistake(M_ONE_BASED, "class labels here are 0 … num_classes - 1: use them as indices as they are.",
                _variant("one_based")),
        Mistake(M_FANCY, "an indexed `+=` with index arrays writes each distinct position once; count with a "
                         "loop, np.add.at, torch's index_put_ with accumulate=True, or bincount over a "
                         "combined index.", _variant("fancy_assign")),
        Mistake(M_NORMALISED, "return the raw counts; normalising is a separate step for the figure.",
                _variant("row_normalised")),
    ],
    tolerance=EXACT,
    hint="section 1.1: a num_classes × num_classes array of zeros, then one count added at [true class, "
         "predicted class] for every sample.",
    exception_hints={"IndexError": "the matrix has num_classes rows and columns; labels run from 0 to "
                                   "num_classes - 1."},
    forbidden=("sklearn.metrics.confusion_matrix",),
    section="1.1 The confusion matrix",
    layout=Layout(axes=("true class", "predicted class")),
    covers={
        "torch tensors and NumPy arrays": lambda case: case.inputs["kind"] == "torch",
        "NumPy arrays": lambda case: case.inputs["kind"] == "numpy",
        "a class that is never predicted": lambda case: len(set(range(case.inputs["num_classes"]))
                                                            - set(case.inputs["y_pred"].tolist())) > 0,
        "a class that is never a true label": lambda case: len(set(range(case.inputs["num_classes"]))
                                                               - set(case.inputs["y_true"].tolist())) > 0,
        "the last class in neither y_true nor y_pred": lambda case: (case.inputs["num_classes"] - 1) not in
            set(case.inputs["y_true"].tolist()) | set(case.inputs["y_pred"].tolist()),
        "a repeated (true, predicted) pair": lambda case: len(set(zip(case.inputs["y_true"].tolist(),
                                                                      case.inputs["y_pred"].tolist(), strict=False)))
            < len(case.inputs["y_true"]),
        "a single sample": lambda case: len(case.inputs["y_true"]) == 1,
        "two classes and more than two": lambda case: case.inputs["num_classes"] == 2,
    },
)


def check_confusion_matrix(confusion_matrix, hidden: bool = False) -> None:
    """Check ``confusion_matrix(y_true, y_pred, num_classes)`` against scikit-learn's, every class included."""
    check_on_one_thread(CONFUSION, confusion_matrix, hidden)
