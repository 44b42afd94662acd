"""Exercise 2: ``classification_metrics(y_true, y_pred, num_classes) -> dict``.

The dict holds, for the classes ``0 … C-1``: ``"precision"``, ``"recall"``, ``"f1"`` and ``"support"`` (each a
sequence of C numbers), and the numbers ``"accuracy"``, ``"balanced_accuracy"`` and ``"macro_f1"``. The rules
(section 1.2) are scikit-learn's:

* precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2·TP / (2·TP + FP + FN), each 0 where its
  denominator is 0 (``zero_division=0``); support = the number of true samples of the class;
* macro-F1 = the mean of the C per-class F1 scores (``f1_score(..., labels=range(C), average="macro")``);
* balanced accuracy = the mean recall over the classes that occur in ``y_true``
  (``balanced_accuracy_score``).

A case compares all of them at once, as one vector: precision, recall, F1 and support per class, then
accuracy, balanced accuracy and macro-F1 (:func:`metrics_output`).
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from utils.checks.adapters import to_numpy
from utils.checks.characterise import Layout
from utils.checks.compare import Tolerance
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, visible_then_hidden
from utils.checks.rules import RuleBroken, kept_unchanged
from utils.checks.seeding import case_rng
from utils.cnn.pipeline.shared import check_on_one_thread
from utils.cnn.training.confusion import labels_as_given

PER_CLASS = ("precision", "recall", "f1", "support")
OVERALL = ("accuracy", "balanced_accuracy", "macro_f1")
KEYS_RULE = ("classification_metrics returns a dict with the keys precision, recall, f1, support (C numbers each), "
             "accuracy, balanced_accuracy and macro_f1 (one number each) (section 1.2)")
LABELS_RULE = "classification_metrics only reads y_true and y_pred (section 1.2): it changes neither"
# fractions of at most a few hundred samples; float32 arithmetic is far inside this, real mistakes far outside
FRACTIONS = Tolerance(atol=1e-6, rtol=1e-5)


def _entries(result: dict, c: int) -> np.ndarray:
    """The dict's values as one vector; a missing key or a wrong size breaks :data:`KEYS_RULE`."""
    if not isinstance(result, dict):
        raise RuleBroken(KEYS_RULE, f"it returned {type(result).__name__}")
    missing = [key for key in PER_CLASS + OVERALL if key not in result]
    if missing:
        raise RuleBroken(KEYS_RULE, f"the keys {missing} are missing (keys returned: {sorted(map(str, result))})")
    out = []
    for key in PER_CLASS + OVERALL:
        value = to_numpy(result[key])
        size = c if key in PER_CLASS else 1
        if value is None or value.size != size or value.dtype.kind not in "biuf":
            seen = "not numbers" if value is None or value.dtype.kind not in "biuf" else f"{value.size} values"
            raise RuleBroken(KEYS_RULE, f"{key!r} holds {seen}, expected {size}")
        out.append(value.astype(np.float64).ravel())
    return np.concatenate(out)


def metrics_output(fn, inputs) -> Any:
    y_true, y_pred = labels_as_given(inputs)
    with kept_unchanged({"y_true": y_true, "y_pred": y_pred}, rule=LABELS_RULE):
        result = fn(y_true, y_pred, inputs["num_classes"])
    return _entries(result, inputs["num_classes"])


def reference_metrics(inputs, rule: str = "sklearn") -> np.ndarray:
    """scikit-learn's metrics as one vector (see the module's docstring); ``rule`` = known mistakes."""
    y_true, y_pred, c = np.asarray(inputs["y_true"]), np.asarray(inputs["y_pred"]), inputs["num_classes"]
    labels = np.arange(c)
    with warnings.catch_warnings():   # scikit-learn warns about classes predicted but never true
        warnings.simplefilter("ignore")
        return _reference_metrics(y_true, y_pred, c, labels, rule)


def _reference_metrics(y_true, y_pred, c, labels, rule):
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, precision_recall_fscore_support
    zero = 1.0 if rule == "zero_division_1" else 0.0
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels,
                                                                     zero_division=zero)
    accuracy = accuracy_score(y_true, y_pred)
    balanced = balanced_accuracy_score(y_true, y_pred)
    macro_f1 = f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=zero)
    if rule == "swapped":            # precision and recall exchanged (F1 is symmetric in them)
        precision, recall = recall, precision
        balanced = float(np.mean(recall[np.isin(labels, y_true)]))
    if rule == "support_predicted":  # support counted over the predictions
        support = np.bincount(y_pred, minlength=c)
    if rule == "arithmetic":         # F1 as (P + R) / 2
        f1 = (precision + recall) / 2
        macro_f1 = float(f1.mean())
    if rule == "micro":              # micro-averaged F1 (equals accuracy for single-label classes)
        macro_f1 = f1_score(y_true, y_pred, labels=labels, average="micro", zero_division=zero)
    if rule == "weighted":           # F1 averaged with the supports as weights
        macro_f1 = f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=zero)
    if rule == "f1_of_means":        # harmonic mean of macro precision and macro recall
        p, r = precision.mean(), recall.mean()
        macro_f1 = 2 * p * r / (p + r) if p + r > 0 else 0.0
    if rule == "balanced_is_accuracy":
        balanced = accuracy
    if rule == "balanced_all_classes":   # mean recall over all C classes, an absent class counted as 0
        balanced = float(recall.mean())
    return np.concatenate([precision, recall, f1, support, [accuracy, balanced, macro_f1]]).astype(np.float64)


def _variant(rule: str):
    return lambda inputs: reference_metrics(inputs, rule)


def _describe(c: int):
    def describe(index) -> str:
        i = index[0]
        if i < 4 * c:
            return f"{PER_CLASS[i // c]}[{i % c}] (class {i % c})"
        return OVERALL[i - 4 * c]
    return describe


def _regions(c: int) -> dict:
    at = np.arange(4 * c + 3)
    regions = {f"the {key} of each class": (at >= k * c) & (at < (k + 1) * c) for k, key in enumerate(PER_CLASS)}
    regions.update({f"the {key}": at == 4 * c + k for k, key in enumerate(OVERALL)})
    return regions


def _imbalanced(rng, n: int, c: int, accuracy: float, weights=None, absent_pred=()) -> tuple:
    y_true = rng.choice(c, size=n, p=weights)
    allowed = [k for k in range(c) if k not in absent_pred]
    y_pred = np.where(rng.random(n) < accuracy, y_true, rng.choice(allowed, size=n))
    y_pred = np.where(np.isin(y_pred, absent_pred), rng.choice(allowed, size=n), y_pred)
    return y_true.astype(np.int64), y_pred.astype(np.int64)


def _metrics_cases(hidden: bool) -> list[Case]:
    # (description, n, C, accuracy, class weights (None: uniform), never predicted, kind)
    visible = [
        ("40 samples, 4 classes, torch tensors, class 3 never predicted", 40, 4, 0.6, None, (3,), "torch"),
        ("60 imbalanced samples (about 80 % of class 0), 3 classes, NumPy arrays", 60, 3, 0.5,
         [0.8, 0.15, 0.05], (), "numpy"),
        ("30 samples, 5 classes, torch tensors, class 4 never a true label and class 1 never predicted", 30, 5, 0.5,
         [0.3, 0.2, 0.25, 0.25, 0.0], (1,), "torch"),
    ]
    hidden_only = [
        ("300 imbalanced samples over 10 classes, NumPy arrays", 300, 10, 0.7,
         [0.5] + [0.5 / 9] * 9, (), "numpy"),
        ("20 samples, 2 classes, torch tensors, every prediction right", 20, 2, 1.0, None, (), "torch"),
        ("24 samples, 6 classes, torch tensors, class 5 in neither y_true nor y_pred, class 0 with a single true "
         "sample", 24, 6, 0.4, [0.2] * 5 + [0.0], (5,), "torch"),
    ]
    cases = []
    for number, ((desc, n, c, acc, weights, absent_pred, kind), salt) in enumerate(
            visible_then_hidden(visible, hidden_only, hidden), start=1):
        rng = case_rng("classification_metrics", number, salt)
        y_true, y_pred = _imbalanced(rng, n, c, acc, weights, absent_pred)
        if "a single true sample" in desc:   # class 0 keeps one true sample: its recall is 0 or 1
            y_true = np.where(y_true == 0, 1, y_true)
            y_true[0] = 0
        cases.append(Case(desc, {"y_true": y_true, "y_pred": y_pred, "num_classes": c, "kind": kind},
                          _describe(c), layout=Layout(axes=("entry",)), regions=_regions(c)))
    return cases


def _absent(case: Case, labels: str) -> bool:
    return len(set(range(case.inputs["num_classes"])) - set(case.inputs[labels].tolist())) > 0


M_SWAPPED = "precision and recall are swapped: precision divides by the true samples, recall by the predictions"
M_SUPPORT = "the support counts how often each class was predicted, not how often it is the true class"
M_ARITHMETIC = "F1 is the arithmetic mean of precision and recall instead of their harmonic mean"
M_MICRO = "macro-F1 is micro-averaged (pooled over all samples, which equals the accuracy)"
M_WEIGHTED = "macro-F1 weights each class by its support: macro means every class counts the same"
M_F1_OF_MEANS = "macro-F1 is the F1 of the mean precision and the mean recall, not the mean of the per-class F1"
M_BALANCED_ACC = "balanced accuracy equals the plain accuracy: it is the mean of the per-class recalls"
M_BALANCED_ALL = ("balanced accuracy averages the recall over all classes, also those that never occur in y_true "
                  "(their recall 0 pulls it down)")
M_ZERO_ONE = "a 0/0 precision, recall or F1 is set to 1: the rule of section 1.2 sets it to 0"

METRICS = Exercise(
    function="classification_metrics",
    reference_name="sklearn.metrics (precision_recall_fscore_support, balanced_accuracy_score, f1_score; "
                   "zero_division=0)",
    make_cases=_metrics_cases,
    reference=_variant("sklearn"),
    call=metrics_output,
    mistakes=[
        Mistake(M_SWAPPED, "precision asks 'of the samples predicted as k, how many are k?' (a column of the "
                           "confusion matrix); recall asks 'of the samples of class k, how many were found?' "
                           "(a row).", _variant("swapped")),
        Mistake(M_SUPPORT, "support is the number of samples whose true class is k: a row total of the confusion "
                           "matrix.", _variant("support_predicted")),
        Mistake(M_ARITHMETIC, "F1 is the harmonic mean of precision and recall (section 1.2): it is low when "
                              "either is low.", _variant("arithmetic")),
        Mistake(M_MICRO, "average the per-class F1 scores, each class with the same weight.", _variant("micro")),
        Mistake(M_WEIGHTED, "take the plain mean of the num_classes F1 scores, without weights.",
                _variant("weighted")),
        Mistake(M_F1_OF_MEANS, "compute F1 for each class first, then average those num_classes numbers.",
                _variant("f1_of_means")),
        Mistake(M_BALANCED_ACC, "balanced accuracy gives every class that occurs in y_true the same weight: "
                                "the mean of their recalls.", _variant("balanced_is_accuracy")),
        Mistake(M_BALANCED_ALL, "average the recall only over the classes that have true samples; a class "
                                "absent from y_true has no recall to average.", _variant("balanced_all_classes")),
        Mistake(M_ZERO_ONE, "where a denominator is 0 the score is 0 (scikit-learn's zero_division=0).",
                _variant("zero_division_1")),
    ],
    tolerance=FRACTIONS,
    hint="section 1.2: count TP, FP and FN per class from the confusion matrix (the diagonal, the column and row "
         "totals), divide with the zero-division rule, then average as each summary defines.",
    exception_hints={"ZeroDivisionError": "a class may never be predicted or never occur: where a denominator is "
                                          "0 the score is 0 (section 1.2).",
                     "KeyError": "return a dict with the seven keys of section 1.2."},
    forbidden=("sklearn.metrics.precision_recall_fscore_support", "sklearn.metrics.balanced_accuracy_score",
               "sklearn.metrics.f1_score", "sklearn.metrics.precision_score", "sklearn.metrics.recall_score",
               "sklearn.metrics.classification_report", "sklearn.metrics.confusion_matrix"),
    section="1.2 Precision, recall, F1",
    covers={
        "torch tensors": lambda case: case.inputs["kind"] == "torch",
        "NumPy arrays": lambda case: case.inputs["kind"] == "numpy",
        "a class that is never predicted (0/0 precision)": lambda case: _absent(case, "y_pred"),
        "a class that is never a true label (recall undefined, left out of balanced accuracy)":
            lambda case: _absent(case, "y_true"),
        "imbalanced classes (one class holds at least half of the samples)":
            lambda case: np.bincount(case.inputs["y_true"]).max() >= len(case.inputs["y_true"]) / 2,
        "a class with a single true sample": lambda case: 1 in np.bincount(case.inputs["y_true"]),
        "every prediction right": lambda case: bool(np.all(case.inputs["y_true"] == case.inputs["y_pred"])),
        "two classes and more than two": lambda case: case.inputs["num_classes"] == 2,
    },
)


def check_classification_metrics(classification_metrics, hidden: bool = False) -> None:
    """Check ``classification_metrics(y_true, y_pred, num_classes)`` against scikit-learn (zero_division=0)."""
    check_on_one_thread(METRICS, classification_metrics, hidden)
