"""Tests of utils/cnn/training: the checks of the notebook source/cnn/cnn_training.ipynb.

For every check: the instructor solution and independent correct variants pass (loops, torch instead of NumPy,
float32 where the rules allow it, another grouping of parameters, an in-memory deep copy next to the file);
realistic mistakes, written as a student would write them, fail with the mistake's name; odd returns get a
message that says what was expected. The sample mistakes of utils/instructor/samples/cnn_training.py must apply
and be diagnosed, and ``Exercise.call`` must return plain arrays that the grader side accepts. What every
exercise keeps (stubs, each catalogued mistake diagnosed on generated outputs, global generators untouched)
is tested in tests/test_contract.py.
"""
from __future__ import annotations

import copy
import math
import pickle
from pathlib import Path

import check_failures
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import utils.cnn.training as ct
from notebook_solutions import NotebookSolutions
from utils.checks.adapters import to_numpy
from utils.checks.exercise import Case, Produced, evaluate, produce
from utils.checks.feedback import CheckResult
from utils.checks.seeding import grading_salt
from utils.cnn.training import clipping, confusion, early_stopping, fine_tuning, metrics
from utils.instructor.samples.cnn_training import MISTAKES as SAMPLES

NOTEBOOK = Path(__file__).resolve().parents[1] / "source" / "cnn" / "cnn_training.ipynb"
FUNCTIONS = ["confusion_matrix", "classification_metrics", "clip_gradients", "EarlyStopping", "fine_tune_optimizer"]
BASE = {"np": np, "torch": torch, "nn": nn, "F": F, "math": math}
NB = NotebookSolutions(NOTEBOOK, BASE)
NB.base["confusion_matrix"] = NB.build("confusion_matrix")   # classification_metrics may use it, as in the notebook
build, mutate = NB.build, NB.mutate


def check(name: str):
    return getattr(ct, f"check_{name}")


def passes(name: str, student) -> None:
    check(name)(student)
    check(name)(student, hidden=True)


def failure(name: str, student, hidden: bool = True) -> str:
    return check_failures.failure(check(name), student, hidden=hidden)


# =========================================================================== the solution and correct variants

@pytest.mark.parametrize("name", FUNCTIONS)
def test_the_solution_passes(name, capsys):
    passes(name, build(name))
    assert capsys.readouterr().out.count("✓") == 2


def confusion_loop(y_true, y_pred, num_classes):
    counts = [[0] * num_classes for _ in range(num_classes)]
    for t, p in zip(y_true.tolist(), y_pred.tolist(), strict=True):
        counts[t][p] += 1
    return counts                                  # a nested list of ints is an array-like answer


def confusion_bincount(y_true, y_pred, num_classes):
    t, p = torch.as_tensor(y_true), torch.as_tensor(y_pred)
    return torch.bincount(t * num_classes + p, minlength=num_classes ** 2).reshape(num_classes, num_classes)


@pytest.mark.parametrize("variant", [confusion_loop, confusion_bincount])
def test_correct_confusion_variants_pass(variant):
    passes("confusion_matrix", variant)


def metrics_loops(y_true, y_pred, num_classes):
    """Plain Python counts, float32 results."""
    y_true, y_pred = list(map(int, y_true)), list(map(int, y_pred))
    out = {"precision": [], "recall": [], "f1": [], "support": []}
    for k in range(num_classes):
        tp = sum(t == k and p == k for t, p in zip(y_true, y_pred, strict=True))
        fp = sum(t != k and p == k for t, p in zip(y_true, y_pred, strict=True))
        fn = sum(t == k and p != k for t, p in zip(y_true, y_pred, strict=True))
        out["precision"].append(tp / (tp + fp) if tp + fp else 0.0)
        out["recall"].append(tp / (tp + fn) if tp + fn else 0.0)
        out["f1"].append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
        out["support"].append(tp + fn)
    present = [r for r, s in zip(out["recall"], out["support"], strict=True) if s > 0]
    result = {key: np.array(v, dtype=np.float32) for key, v in out.items()}
    result.update(accuracy=sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(y_true),
                  balanced_accuracy=sum(present) / len(present), macro_f1=float(np.mean(out["f1"])))
    return result


def test_correct_metrics_variant_passes():
    passes("classification_metrics", metrics_loops)


def clip_torch(parameters, max_norm):
    """Vectorised with torch.linalg.vector_norm over the stacked per-parameter norms; returns a 0-d tensor."""
    grads = [p.grad for p in list(parameters) if p.grad is not None]
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    if torch.isfinite(total):
        torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0).item())
    return total


def test_correct_clip_variant_passes():
    passes("clip_gradients", clip_torch)


class EarlyStoppingCopy:
    """Keeps a deep copy in memory and a file; counts with a different name and order of statements."""

    def __init__(self, patience, min_delta, path):
        self.patience, self.min_delta, self.path = patience, min_delta, path
        self.best, self.wait, self.state = None, 0, None

    def step(self, val_loss, model):
        better = not math.isnan(val_loss) and (self.best is None or self.best - val_loss > self.min_delta)
        self.wait = 0 if better else self.wait + 1
        if better:
            self.best = val_loss
            self.state = copy.deepcopy(model.state_dict())
            torch.save(self.state, self.path)
        return torch.tensor(self.wait >= self.patience)   # a 0-d bool tensor is a valid answer

    def restore(self, model):
        model.load_state_dict(self.state)


def test_correct_early_stopping_variant_passes():
    passes("EarlyStopping", EarlyStoppingCopy)


def fine_tune_per_parameter(model, head_lr, backbone_lr=None, weight_decay=0.01):
    """One group per parameter, backbone first."""
    groups = []
    for p in model.backbone.parameters():
        p.requires_grad_(backbone_lr is not None)
        if backbone_lr is not None:
            groups.append({"params": [p], "lr": backbone_lr, "weight_decay": weight_decay if p.dim() > 1 else 0})
    groups += [{"params": [p], "lr": head_lr, "weight_decay": weight_decay if p.dim() > 1 else 0}
               for p in model.head.parameters()]
    return torch.optim.AdamW(groups)


def test_correct_fine_tune_variant_passes():
    passes("fine_tune_optimizer", fine_tune_per_parameter)


# =========================================================================== realistic mistakes are named

MISTAKES = [
    ("confusion_matrix", [("np.add.at(counts, (y_true, y_pred), 1)", "counts[y_true, y_pred] += 1")],
     confusion.M_FANCY),
    ("confusion_matrix", [("np.zeros((num_classes, num_classes), dtype=np.int64)",
                           "np.zeros((max(y_true.max(), y_pred.max()) + 1,) * 2, dtype=np.int64)")],
     confusion.M_LARGEST),
    ("classification_metrics", [('"precision": precision,', '"precision": recall,'),
                                ('"recall": recall,', '"recall": precision,'),
                                ("recall[support > 0].mean()", "precision[support > 0].mean()")],
     metrics.M_SWAPPED),
    ("classification_metrics", [('"balanced_accuracy": recall[support > 0].mean()',
                                 '"balanced_accuracy": recall.mean()')], metrics.M_BALANCED_ALL),
    ("classification_metrics", [("f1 = ratio(2 * tp, predicted + support)",
                                 "f1 = (precision + recall) / 2")], metrics.M_ARITHMETIC),
    ("clip_gradients", [("    if not math.isfinite(total):\n        return total\n", "")], clipping.M_NO_GUARD),
    ("clip_gradients", [("min(1.0, max_norm / (total + 1e-6))", "max_norm / (total + 1e-6)")], clipping.M_ALWAYS),
    ("clip_gradients", [("total + 1e-6", "total")], clipping.M_NO_EPS),
    ("EarlyStopping", [("return self.bad_epochs >= self.patience", "return self.bad_epochs > self.patience")],
     early_stopping.M_LATE),
    ("EarlyStopping", [("if val_loss < self.best - self.min_delta:", "if val_loss < self.best:")],
     early_stopping.M_NO_DELTA),
    ("EarlyStopping", [("if val_loss < self.best - self.min_delta:",
                        "if not val_loss >= self.best - self.min_delta:")], early_stopping.M_NAN),
    ("fine_tune_optimizer", [("p.requires_grad = not frozen", "p.requires_grad = True"),
                             ("    if not frozen:\n        param_groups += groups(model.backbone, backbone_lr)",
                              "    param_groups += groups(model.backbone, 0.0 if frozen else backbone_lr)")],
     fine_tuning.M_LR_ZERO),
    ("fine_tune_optimizer", [("torch.optim.AdamW(", "torch.optim.Adam(")], fine_tuning.M_ADAM),
    ("fine_tune_optimizer", [('if p.ndim >= 2], "lr": lr, "weight_decay": weight_decay}',
                              '], "lr": lr, "weight_decay": weight_decay}'),
                             ('{"params": [p for p in params if p.ndim < 2], "lr": lr, "weight_decay": 0.0}', "")],
     fine_tuning.M_DECAY_ALL),
]


@pytest.mark.parametrize("name, edits, named", MISTAKES, ids=[f"{m[0]}-{i}" for i, m in enumerate(MISTAKES)])
def test_a_realistic_mistake_is_named(name, edits, named):
    text = failure(name, mutate(name, *edits, once=True), hidden=False)
    assert named in text, text
    assert "does not match" in text


def test_a_generator_read_twice_is_named():
    def clip_reads_twice(parameters, max_norm):
        total = math.sqrt(sum(float((p.grad ** 2).sum()) for p in parameters if p.grad is not None))
        if math.isfinite(total):
            for p in parameters:                 # a generator is already exhausted here
                if p.grad is not None:
                    p.grad.mul_(min(1.0, max_norm / (total + 1e-6)))
        return total
    text = failure("clip_gradients", clip_reads_twice, hidden=False)
    assert clipping.M_GENERATOR in text and "Case 3 of 4" in text, text


def test_nan_for_zero_division_is_reported_where_it_starts():
    student = mutate("classification_metrics", ("out=np.zeros_like(a), where=b > 0", "out=np.full_like(a, np.nan), "
                                                "where=b > 0"), once=True)
    text = failure("classification_metrics", student, hidden=False)
    assert "NaN" in text and "precision[3] (class 3)" in text, text


def test_per_parameter_clipping_is_named_and_described_in_the_notebook_s_words():
    student = mutate("clip_gradients", ("factor = min(1.0, max_norm / (total + 1e-6))\n    for g in grads:\n"
                                        "        g.mul_(factor)",
                                        "for g in grads:\n"
                                        "        g.mul_(min(1.0, max_norm / (float(g.norm()) + 1e-6)))"),
                     once=True)
    text = failure("clip_gradients", student, hidden=False)
    assert clipping.M_PER_PARAMETER in text and "'s gradient at [" in text, text


def test_the_aliasing_bug_is_named():
    student = mutate("EarlyStopping", ("            torch.save(model.state_dict(), self.path)",
                                       "            torch.save(model.state_dict(), self.path)\n"
                                       "            self.kept = model.state_dict()"),
                     ("model.load_state_dict(torch.load(self.path, weights_only=True))",
                      "model.load_state_dict(self.kept)"), once=True)
    text = failure("EarlyStopping", student, hidden=False)
    assert early_stopping.M_ALIAS in text and "restore()" in text, text


# =========================================================================== odd returns and broken rules

def test_odd_returns_get_clear_messages():
    assert "did you forget `return`" in failure("confusion_matrix", lambda t, p, c: None, hidden=False)
    text = failure("classification_metrics", lambda t, p, c: {"precision": [0.0] * c}, hidden=False)
    assert "returns a dict with the keys" in text and "'recall'" in text, text
    text = failure("classification_metrics", lambda t, p, c: [1, 2, 3], hidden=False)
    assert "it returned list" in text, text
    text = failure("clip_gradients", lambda params, max_norm: "done", hidden=False)
    assert "Expected a single number, got str" in text, text
    assert "did you forget `return`" in failure("clip_gradients", lambda params, max_norm: None, hidden=False)
    text = failure("fine_tune_optimizer", lambda model, **kw: [torch.optim.AdamW(model.parameters())], hidden=False)
    assert "got list" in text, text


def test_early_stopping_step_must_return_a_bool():
    class NoReturn(EarlyStoppingCopy):
        def step(self, val_loss, model):
            super().step(val_loss, model)
    text = failure("EarlyStopping", NoReturn, hidden=False)
    assert "returns True (stop) or False" in text and "step returned None" in text, text


def test_a_whole_model_saved_breaks_the_checkpoint_rule():
    student = mutate("EarlyStopping", ("torch.save(model.state_dict(), self.path)", "torch.save(model, self.path)"),
                     ("model.load_state_dict(torch.load(self.path, weights_only=True))",
                      "model.load_state_dict(torch.load(self.path, weights_only=False).state_dict())"), once=True)
    text = failure("EarlyStopping", student, hidden=False)
    assert "state_dict saved with torch.save" in text, text


def test_changing_the_parameters_or_labels_breaks_a_rule():
    def clip_and_shrink(parameters, max_norm):
        params = list(parameters)
        total = build("clip_gradients")(params, max_norm)
        with torch.no_grad():
            params[0].mul_(0.5)
        return total
    text = failure("clip_gradients", clip_and_shrink, hidden=False)
    assert "changes the gradients (.grad) in place and nothing else" in text, text

    def sorting(y_true, y_pred, num_classes):
        y_true.sort() if isinstance(y_true, np.ndarray) else y_true.copy_(y_true.sort().values)
        return build("confusion_matrix")(y_true, y_pred, num_classes)
    assert "only reads y_true and y_pred" in failure("confusion_matrix", sorting, hidden=False)


def test_switching_the_backbone_to_eval_breaks_the_model_rule():
    def also_eval(model, head_lr, backbone_lr=None, weight_decay=0.01):
        model.backbone.eval()
        return build("fine_tune_optimizer")(model, head_lr, backbone_lr, weight_decay)
    assert "changes nothing in the model but requires_grad" in failure("fine_tune_optimizer", also_eval,
                                                                          hidden=False)


def test_calling_the_library_is_not_from_scratch():
    text = failure("clip_gradients", lambda params, max_norm: float(torch.nn.utils.clip_grad_norm_(params, max_norm)),
                   hidden=False)
    assert "clip_grad_norm_" in text, text


# =========================================================================== samples and the grading split

@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.student)
def test_sample_mistake_applies_and_is_diagnosed(sample):
    assert sample.student.startswith("cnn_training_") and sample.notebook == "cnn_training"
    student = mutate(sample.cell, *sample.replace, once=True)
    text = failure(sample.cell, student, hidden=True)
    assert sample.diagnosis in text, text


@pytest.mark.parametrize("name", FUNCTIONS)
def test_call_returns_plain_arrays_that_the_grader_accepts(name):
    exercise = ct.EXERCISES[name]
    with grading_salt("a course secret"):
        cases = exercise.make_cases(True)
    student = build(name)
    arrays = []
    for index, case in enumerate(cases):
        assert check_failures.plain_data(case.inputs), (name, index)
        inputs = pickle.loads(pickle.dumps(case.inputs))
        produced = produce(exercise, student, Case(case.description, inputs), "case")
        assert produced.error is None, produced.error
        array = to_numpy(produced.value)
        assert isinstance(array, np.ndarray) and array.dtype.kind in "biuf", type(produced.value)
        arrays.append(pickle.loads(pickle.dumps(array)))
    with grading_salt("a course secret"):
        verdict = evaluate(exercise, cases, lambda index, case, label: Produced(value=arrays[index]))
    assert isinstance(verdict, CheckResult), verdict
