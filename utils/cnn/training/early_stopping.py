"""Exercise 4: the class ``EarlyStopping(patience, min_delta, path)``.

The rules of section 2.2:

* ``step(val_loss, model) -> bool``: an epoch *improves* when ``val_loss < best - min_delta`` (``best`` starts
  at infinity, so the first finite loss improves; a tie or a NaN loss does not). On an improvement ``best``
  becomes ``val_loss``, the count of epochs without improvement goes back to 0 and the model's weights are
  saved with ``torch.save(model.state_dict(), path)``; otherwise the count grows by one. ``step`` returns True
  (stop) once the count reaches ``patience``.
* ``restore(model)`` loads the saved weights back with ``model.load_state_dict(torch.load(path))``.

A case drives the student's class with a scripted sequence of validation losses and a float64
``nn.Linear(3, 2)`` whose weights are overwritten in place before every epoch (as training does), each epoch with
its own weights, in a temporary folder. It stops at the first True, as a training loop does, then calls
``restore(model)``. Three whole numbers are compared (:func:`early_stopping_output`): the epoch at which
``step`` returned True (0: never), the epoch whose weights the file at ``path`` holds (read by the check with
``torch.load``; 0: no file) and the epoch whose weights the model holds after ``restore`` (-1: none of them).
"""
from __future__ import annotations

import math
import os
import tempfile
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from utils.checks.adapters import float64_tensor, to_numpy
from utils.checks.characterise import Layout
from utils.checks.compare import EXACT
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, visible_then_hidden
from utils.checks.rules import RuleBroken
from utils.checks.seeding import case_rng
from utils.cnn.pipeline.shared import check_on_one_thread, seeded

STEP_RULE = "step(val_loss, model) returns True (stop) or False (go on) (section 2.2)"
FILE_RULE = "the checkpoint is the model's state_dict saved with torch.save at `path` (section 2.2)"
OUTPUTS = ("the epoch at which step() returned True (0: never)",
           "the epoch whose weights the checkpoint file holds (0: no file, -1: none of the epochs')",
           "the epoch whose weights the model holds after restore() (-1: none of the epochs')")


def _probe(inputs) -> nn.Module:
    with seeded(0):   # overwritten every epoch; the seed only keeps the caller's generator untouched
        return nn.Linear(3, 2).double()


def _which_epoch(state, inputs) -> int:
    """The 1-based epoch whose weights ``state`` holds, or -1."""
    try:
        weight, bias = to_numpy(state["weight"]), to_numpy(state["bias"])
    except (KeyError, TypeError, IndexError):
        return -1
    for epoch, (w, b) in enumerate(zip(inputs["weights"], inputs["biases"], strict=True), start=1):
        if weight is not None and bias is not None and weight.shape == w.shape and bias.shape == b.shape \
                and np.array_equal(weight, w) and np.array_equal(bias, b):
            return epoch
    return -1


def _as_stop(value) -> bool:
    array = None if value is None else to_numpy(value)
    if array is None or array.size != 1 or array.dtype.kind not in "biuf":
        raise RuleBroken(STEP_RULE, f"step returned {value!r}")
    return bool(array.reshape(()))


def early_stopping_output(cls, inputs) -> Any:
    """``[stop epoch, epoch in the checkpoint, epoch after restore]`` for the case's loss sequence."""
    model = _probe(inputs)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "best_model.pt")
        stopper = cls(patience=inputs["patience"], min_delta=inputs["min_delta"], path=path)
        stop_epoch = 0
        for epoch, loss in enumerate(inputs["losses"], start=1):
            with torch.no_grad():   # training changes the weights in place
                model.weight.copy_(float64_tensor(inputs["weights"][epoch - 1]))
                model.bias.copy_(float64_tensor(inputs["biases"][epoch - 1]))
            if _as_stop(stopper.step(float(loss), model)):
                stop_epoch = epoch
                break
        file_epoch = 0
        if os.path.exists(path):
            try:
                saved = torch.load(path, weights_only=True)
            except Exception as exc:
                raise RuleBroken(FILE_RULE, f"torch.load(path) cannot read it as a state_dict "
                                            f"({type(exc).__name__})") from None
            file_epoch = _which_epoch(saved, inputs)
        stopper.restore(model)
        restored = _which_epoch(model.state_dict(), inputs)
    return np.array([stop_epoch, file_epoch, restored], dtype=np.float64)


class ReferenceEarlyStopping:
    """Section 2.2's rules; ``rule`` makes one known mistake."""

    def __init__(self, patience, min_delta, path, rule="reference"):
        self.patience, self.min_delta, self.path, self.rule = patience, min_delta, path, rule
        self.best, self.count, self.kept = math.inf, 0, None

    def _improves(self, loss: float) -> bool:
        if self.rule == "no_delta":
            return loss < self.best
        if self.rule == "plus_delta":
            return loss < self.best + self.min_delta
        if self.rule == "tie":
            return loss <= self.best - self.min_delta
        if self.rule == "nan":
            return not loss >= self.best - self.min_delta
        return loss < self.best - self.min_delta

    def step(self, loss, model) -> bool:
        if self._improves(loss):
            self.best = loss
            self.count = 0
            torch.save(model.state_dict(), self.path)
            self.kept = model.state_dict()      # what the "alias" mistake restores: the live tensors
        else:
            self.count += 1
            if self.rule == "small_moves_best" and loss < self.best:
                self.best = loss
        if self.rule == "save_every":
            torch.save(model.state_dict(), self.path)
        if self.rule == "late":
            return self.count > self.patience
        if self.rule == "early":
            return self.count >= self.patience - 1
        return self.count >= self.patience

    def restore(self, model) -> None:
        if self.rule == "alias":
            model.load_state_dict(self.kept)
        else:
            model.load_state_dict(torch.load(self.path, weights_only=True))


class _NoReset(ReferenceEarlyStopping):
    """The count of epochs without improvement is never reset: it counts every bad epoch since the start."""

    def step(self, loss, model) -> bool:
        count = self.count
        stop = super().step(loss, model)
        if self.count == 0:
            self.count = count
            stop = self.count >= self.patience
        return stop


def _variant(rule: str):
    def run(inputs):
        if rule == "no_reset":
            return early_stopping_output(_NoReset, inputs)
        return early_stopping_output(lambda **kw: ReferenceEarlyStopping(rule=rule, **kw), inputs)
    return run


def _curve(rng, epochs: int, turn: int, noise: float) -> np.ndarray:
    """A validation curve that falls, then rises after epoch ``turn``, with noise, rounded to 3 decimals."""
    t = np.arange(epochs)
    return np.round(1 / (1 + 0.4 * t) + 0.03 * np.maximum(0, t - turn) + rng.normal(0, noise, epochs), 3)


def _early_cases(hidden: bool) -> list[Case]:
    nan = float("nan")
    visible = [
        ("patience=2, min_delta=0", 2, 0.0, [1.0, 0.8, 0.9, 0.7, 0.75, 0.72, 0.71, 0.6]),
        ("patience=3, min_delta=0.05 (improvements smaller than min_delta in between)", 3, 0.05,
         [1.0, 0.97, 0.94, 0.91, 0.88, 0.85, 0.9, 0.95, 1.0]),
        ("patience=2, min_delta=0, a tie and a NaN loss", 2, 0.0, [0.5, 0.25, 0.25, nan, 0.375, 0.25, 0.25]),
        ("patience=3, min_delta=0.01, the loss falls until a small rise in the last epoch (never stops)", 3, 0.01,
         [1.0, 0.875, 0.75, 0.625, 0.5, 0.505]),
    ]
    hidden_only = [("patience=1, min_delta=0, a noisy curve", 1, 0.0, "curve"),
                   ("patience=4, min_delta=0.01, a noisy curve", 4, 0.01, "curve"),
                   ("patience=3, min_delta=0.002, a noisy curve with a NaN loss at epoch 5", 3, 0.002, "nan"),
                   ("patience=2, min_delta=0, a NaN loss at epoch 1 (diverged at once), then a noisy curve", 2, 0.0,
                    "nan_first")]
    cases = []
    for number, ((desc, patience, min_delta, losses), salt) in enumerate(
            visible_then_hidden(visible, hidden_only, hidden), start=1):
        rng = case_rng("EarlyStopping", number, salt)
        if isinstance(losses, str):
            curve = _curve(rng, 16, int(rng.integers(5, 9)), 0.02)
            if losses == "nan":
                curve[4] = nan
            if losses == "nan_first":
                curve[0] = nan
            losses = curve.tolist()
        epochs = len(losses)
        inputs = {"patience": patience, "min_delta": min_delta, "losses": list(losses),
                  "weights": list(rng.normal(size=(epochs, 2, 3))), "biases": list(rng.normal(size=(epochs, 2)))}
        shown = ", ".join("NaN" if math.isnan(x) else f"{x:g}" for x in losses)
        cases.append(Case(f"{desc}; validation losses of epochs 1…{epochs}: [{shown}]", inputs,
                          lambda index: OUTPUTS[index[0]]))
    return cases


def _stops(case: Case) -> bool:
    return ReferenceRun(case).stop > 0


class ReferenceRun:
    """The reference's three numbers for a case (for ``covers``)."""

    def __init__(self, case: Case):
        self.stop, self.saved, self.restored = (int(v) for v in early_stopping_output(ReferenceEarlyStopping,
                                                                                        case.inputs))


def _small_improvement(case: Case) -> bool:
    losses, delta = case.inputs["losses"], case.inputs["min_delta"]
    return delta > 0 and any(0 < a - b <= delta for a, b in zip(losses, losses[1:], strict=False))


M_LATE = "it stops one epoch late: after patience + 1 epochs without improvement"
M_EARLY = "it stops one epoch early: after patience - 1 epochs without improvement"
M_NO_RESET = "the count of epochs without improvement is not reset by an improvement"
M_SAVE_EVERY = "a checkpoint is saved every epoch, not only when the validation loss improves"
M_ALIAS = ("restore() puts back the last epoch's weights: the kept model.state_dict() is a reference to the live "
           "parameters, which training keeps changing")
M_NO_DELTA = "min_delta is ignored: any decrease counts as an improvement"
M_PLUS_DELTA = "an improvement is tested as val_loss < best + min_delta: a small rise counts as an improvement"
M_TIE = "a tie (val_loss equal to best - min_delta) counts as an improvement"
M_NAN = "a NaN validation loss counts as an improvement"
M_SMALL_MOVES = "best moves to every lower loss, also one that improved by less than min_delta"
_DELTA_HINT = "an epoch improves only when val_loss < best - min_delta (section 2.2), a strict comparison."

EARLY_STOPPING = Exercise(
    function="EarlyStopping",
    reference_name="early stopping with a torch.save checkpoint (section 2.2's rules)",
    make_cases=_early_cases,
    reference=lambda inputs: early_stopping_output(ReferenceEarlyStopping, inputs),
    call=early_stopping_output,
    mistakes=[
        Mistake(M_LATE, "stop as soon as the count of epochs without improvement equals patience.", _variant("late")),
        Mistake(M_EARLY, "with patience p the run goes on through p - 1 bad epochs and stops at the p-th.",
                _variant("early")),
        Mistake(M_NO_RESET, "an improvement starts the count of bad epochs again from 0.", _variant("no_reset")),
        Mistake(M_SAVE_EVERY, "save only in the branch where the validation loss improved.", _variant("save_every")),
        Mistake(M_ALIAS, "state_dict() returns the live tensors, not a copy: load the weights back from the file "
                         "you saved (or keep a deep copy).", _variant("alias")),
        Mistake(M_NO_DELTA, _DELTA_HINT, _variant("no_delta")),
        Mistake(M_PLUS_DELTA, _DELTA_HINT, _variant("plus_delta")),
        Mistake(M_TIE, _DELTA_HINT, _variant("tie")),
        Mistake(M_NAN, "write the test so that a NaN loss fails it: every comparison with NaN is False.",
                _variant("nan")),
        Mistake(M_SMALL_MOVES, "change best only on an improvement; small decreases add up until one of them "
                               "beats best - min_delta.", _variant("small_moves_best")),
    ],
    tolerance=EXACT,
    hint="section 2.2: compare with best - min_delta, reset the count and save on an improvement, count otherwise, "
         "stop when the count reaches patience; restore loads the file.",
    exception_hints={"FileNotFoundError": "save the checkpoint at the path the constructor receives.",
                     "TypeError": "the constructor takes patience, min_delta and path; step takes (val_loss, "
                                  "model); restore takes (model)."},
    section="2.2 Early stopping",
    layout=Layout(axes=("result",)),
    covers={
        "a run that stops": _stops,
        "a run that never stops": lambda case: not _stops(case),
        "a best epoch before the stop (restore must go back)": lambda case: 0 < ReferenceRun(case).restored
            < ReferenceRun(case).stop,
        "patience 1 and more than 1": lambda case: case.inputs["patience"] == 1,
        "an improvement smaller than min_delta": _small_improvement,
        "a tie with the best loss": lambda case: any(b == a for a, b in zip(case.inputs["losses"],
                                                                             case.inputs["losses"][1:], strict=False)),
        "a NaN loss": lambda case: any(math.isnan(x) for x in case.inputs["losses"]),
        "a NaN loss in the first epoch": lambda case: math.isnan(case.inputs["losses"][0]),
    },
)


def check_EarlyStopping(EarlyStopping, hidden: bool = False) -> None:
    """Check the class ``EarlyStopping(patience, min_delta, path)`` on scripted validation losses."""
    check_on_one_thread(EARLY_STOPPING, EarlyStopping, hidden)
