"""Exercises 7 and 8: the training and evaluation loops.

* ``train_one_epoch(model, loader, criterion, optimizer, device) -> (mean_loss, accuracy)``
* ``evaluate(model, loader, criterion, device) -> (mean_loss, accuracy)``

Both run on a small float64 probe model (``Flatten → Linear(12, 16) → [BatchNorm1d] → ReLU → Dropout(0.5)
→ Linear(16, 4)``) handed over in the wrong mode, so that a loop which does not switch it fails. A case
compares the returned pair and what the loop did: for ``train_one_epoch`` the number of optimizer steps and
the parameters after the epoch (:func:`train_epoch_output`), for ``evaluate`` whether gradients were tracked
and whether BatchNorm's running statistics moved (:func:`evaluate_output`).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from utils.checks.adapters import float64_tensor, to_numpy
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, visible_then_hidden
from utils.checks.seeding import case_rng
from utils.cnn.pipeline.shared import check_on_one_thread, seeded


def _as_pair(result) -> Any:
    """Two numbers from a student's ``(a, b)`` return value, or the value itself when it is not that."""
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        return result
    out = []
    for v in result:
        a = to_numpy(v)
        if a is None or a.size != 1:
            return result
        out.append(float(a.reshape(())))
    return out


def _probe_model(weights: dict, bn: bool):
    """Flatten → Linear(12, 16) → [BatchNorm1d] → ReLU → Dropout(0.5) → Linear(16, 4), float64."""
    with seeded(0):   # initial weights are overwritten below; the caller's generator stays untouched
        layers = [nn.Flatten(), nn.Linear(12, 16)] + ([nn.BatchNorm1d(16)] if bn else []) + \
                 [nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 4)]
    model = nn.Sequential(*layers).double()
    with torch.no_grad():
        model[1].weight.copy_(float64_tensor(weights["w1"]))
        model[1].bias.copy_(float64_tensor(weights["b1"]))
        model[-1].weight.copy_(float64_tensor(weights["w2"]))
        model[-1].bias.copy_(float64_tensor(weights["b2"]))
        if bn:
            model[2].running_mean.copy_(float64_tensor(weights["mean"]))
            model[2].running_var.copy_(float64_tensor(weights["var"]))
    return model


def _loader(inputs):
    """The case's samples in order, in batches of the case's size."""
    from torch.utils.data import DataLoader, TensorDataset
    dataset = TensorDataset(torch.from_numpy(inputs["x"]), torch.from_numpy(inputs["y"]))
    return DataLoader(dataset, batch_size=inputs["batch_size"], shuffle=False,
                      generator=torch.Generator().manual_seed(0))


def _loop_cases(exercise: str, hidden: bool, describe: Callable[[int, int, int], str],
                describe_index: Callable[[tuple], str]) -> list[Case]:
    """Probe weights and samples; ``describe(samples, batch size, torch seed)`` says what the case runs."""
    settings = visible_then_hidden([(24, 8), (30, 10)], [(32, 4), (20, 5)], hidden)
    cases = []
    for number, ((n, batch), salt) in enumerate(settings, start=1):
        rng = case_rng(exercise, number, salt)
        weights = {"w1": rng.normal(0, 0.6, (16, 12)), "b1": rng.normal(0, 0.1, 16),
                   "w2": rng.normal(0, 0.4, (4, 16)), "b2": rng.normal(0, 0.1, 4),
                   "mean": rng.normal(0, 0.3, 16), "var": rng.uniform(0.5, 2.0, 16)}
        inputs = {"weights": weights, "x": rng.normal(size=(n, 3, 2, 2)), "y": rng.integers(0, 4, n),
                  "batch_size": batch, "seed": 100 + number}
        cases.append(Case(describe(n, batch, 100 + number), inputs, describe_index))
    return cases


M_PERCENT = "accuracy returned in percent: return a fraction between 0 and 1"
_PERCENT_HINT = "accuracy = correct / total."

# =========================================================================== exercise 7: train_one_epoch


def train_epoch_output(fn, inputs) -> Any:
    """Run ``fn(model, loader, criterion, optimizer, device)`` on a probe given in eval mode."""
    model = _probe_model(inputs["weights"], bn=False)
    model.eval()   # train_one_epoch must switch dropout on itself
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    steps = []
    step = optimizer.step
    optimizer.step = lambda *args, **kwargs: (steps.append(1), step(*args, **kwargs))[1]   # count the calls
    with seeded(inputs["seed"]):
        result = _as_pair(fn(model, _loader(inputs), nn.CrossEntropyLoss(), optimizer, torch.device("cpu")))
    if not isinstance(result, list):
        return result
    params = [p.detach().numpy().ravel() for p in model.parameters()]
    return np.concatenate([result, [len(steps)], *params])


def reference_train_one_epoch(model, loader, criterion, optimizer, device, *, zero_grad="before", train=True,
                              percent=False, loss_sum=False, step=True):
    """The zero_grad → forward → loss → backward → step loop; keywords reproduce known mistakes."""
    if train:
        model.train()
    total_loss, correct, seen = 0.0, 0, 0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        if zero_grad == "before":
            optimizer.zero_grad()
        outputs = model(images)
        loss = criterion(outputs, labels)
        loss.backward()
        if zero_grad == "after_backward":
            optimizer.zero_grad()
        if step:
            optimizer.step()
        total_loss += loss.item() * (1 if loss_sum else labels.size(0))
        correct += (outputs.argmax(dim=1) == labels).sum().item()
        seen += labels.size(0)
    accuracy = correct / seen
    return total_loss if loss_sum else total_loss / seen, 100 * accuracy if percent else accuracy


_TRAIN_OUTPUTS = ["mean loss", "accuracy", "number of optimizer.step() calls"]


def _describe_train_index(index) -> str:
    return _TRAIN_OUTPUTS[index[0]] if index[0] < 3 else f"parameter {index[0] - 3} after the epoch"


def _describe_train_case(n: int, batch: int, seed: int) -> str:
    return (f"a probe model Flatten → Linear(12, 16) → ReLU → Dropout(0.5) → Linear(16, 4), handed over in "
            f"eval mode; {n} samples in batches of {batch}; SGD(lr=0.1, momentum=0.9, weight_decay=0.01); "
            f"torch seed {seed}; compared: mean loss, accuracy, number of optimizer.step() calls, then the "
            "parameters after the epoch")


def _train_variant(**kw):
    return lambda inputs: train_epoch_output(lambda *args: reference_train_one_epoch(*args, **kw), inputs)


M_NO_ZERO_GRAD = "forgetting zero_grad: gradients accumulate across steps"
M_ZERO_AFTER_BACKWARD = "optimizer.zero_grad() is called between backward() and step(), so step() sees zero gradients"
M_NO_STEP = "optimizer.step() is missing: the parameters never change"
M_NO_TRAIN = "model.train() missing in train_one_epoch: dropout stays off when the model arrives in eval mode"
M_LOSS_SUM = "the loss is summed over batches, not averaged over samples"

TRAIN_EPOCH = Exercise(
    function="train_one_epoch",
    reference_name="the reference zero_grad → forward → backward → step loop",
    make_cases=lambda hidden: _loop_cases("train_one_epoch", hidden, _describe_train_case, _describe_train_index),
    reference=lambda inputs: train_epoch_output(reference_train_one_epoch, inputs),
    call=train_epoch_output,
    mistakes=[
        Mistake(M_NO_ZERO_GRAD, "call optimizer.zero_grad() at the start of every batch.",
                _train_variant(zero_grad="never")),
        Mistake(M_ZERO_AFTER_BACKWARD, "order: zero_grad(), forward, loss, backward(), step().",
                _train_variant(zero_grad="after_backward")),
        Mistake(M_NO_STEP, "call optimizer.step() after loss.backward().", _train_variant(step=False)),
        Mistake(M_NO_TRAIN, "call model.train() at the start of train_one_epoch.", _train_variant(train=False)),
        Mistake(M_PERCENT, _PERCENT_HINT, _train_variant(percent=True)),
        Mistake(M_LOSS_SUM, "running_loss += loss.item() * labels.size(0); return running_loss / total.",
                _train_variant(loss_sum=True)),
    ],
    hint="model.train(); per batch: move to device, optimizer.zero_grad(), outputs = model(images), "
         "loss = criterion(outputs, labels), loss.backward(), optimizer.step(); return (sum of "
         "loss.item()·batch size / N, correct / N).",
    exception_hints={"TypeError": "train_one_epoch(model, loader, criterion, optimizer, device) returns "
                                  "(mean_loss, accuracy)."},
)


def check_train_one_epoch(train_one_epoch, hidden: bool = False) -> None:
    """Check ``train_one_epoch(model, loader, criterion, optimizer, device)`` on a probe model."""
    check_on_one_thread(TRAIN_EPOCH, train_one_epoch, hidden)


# =========================================================================== exercise 8: evaluate


def evaluate_output(fn, inputs) -> Any:
    """Run ``fn(model, loader, criterion, device)`` on a probe given in train mode; record side effects."""
    model = _probe_model(inputs["weights"], bn=True)
    model.train()   # evaluate must switch dropout off and BatchNorm to its running statistics itself
    grad_enabled = []
    model.register_forward_pre_hook(lambda module, args: grad_enabled.append(torch.is_grad_enabled()))
    stats_before = model[2].running_mean.clone()
    with seeded(inputs["seed"]):
        result = _as_pair(fn(model, _loader(inputs), nn.CrossEntropyLoss(), torch.device("cpu")))
    if not isinstance(result, list):
        return result
    stats_changed = not torch.equal(stats_before, model[2].running_mean)
    return np.array(result + [float(any(grad_enabled)), float(stats_changed)])


def reference_evaluate(model, loader, criterion, device, *, eval_mode=True, no_grad=True, percent=False):
    """model.eval() and torch.no_grad() around forward and loss; keywords reproduce known mistakes."""
    if eval_mode:
        model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    with torch.set_grad_enabled(not no_grad):
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            outputs = model(images)
            total_loss += criterion(outputs, labels).item() * labels.size(0)
            correct += (outputs.argmax(dim=1) == labels).sum().item()
            seen += labels.size(0)
    accuracy = correct / seen
    return total_loss / seen, 100 * accuracy if percent else accuracy


_EVAL_OUTPUTS = ["mean loss", "accuracy", "gradients were tracked during the forward pass (1 = yes)",
                 "BatchNorm running statistics changed (1 = yes)"]


def _describe_eval_case(n: int, batch: int, seed: int) -> str:
    return (f"a probe model Flatten → Linear(12, 16) → BatchNorm1d → ReLU → Dropout(0.5) → Linear(16, 4), "
            f"handed over in train mode; {n} samples in batches of {batch}; torch seed {seed}")


def _eval_variant(**kw):
    return lambda inputs: evaluate_output(lambda *args: reference_evaluate(*args, **kw), inputs)


M_NO_EVAL = "model.eval() missing in evaluate: dropout is active and BatchNorm uses (and updates) batch statistics"
M_NO_NO_GRAD = "torch.no_grad() missing in evaluate: autograd records a graph for every batch"
M_NO_EVAL_NO_GRAD = "model.eval() and torch.no_grad() both missing in evaluate"

EVALUATE = Exercise(
    function="evaluate",
    reference_name="the reference evaluation loop (model.eval(), torch.no_grad())",
    make_cases=lambda hidden: _loop_cases("evaluate", hidden, _describe_eval_case,
                                          lambda index: _EVAL_OUTPUTS[index[0]]),
    reference=lambda inputs: evaluate_output(reference_evaluate, inputs),
    call=evaluate_output,
    mistakes=[
        Mistake(M_NO_EVAL, "call model.eval() at the start of evaluate.", _eval_variant(eval_mode=False)),
        Mistake(M_NO_NO_GRAD, "wrap the loop in `with torch.no_grad():`.", _eval_variant(no_grad=False)),
        Mistake(M_NO_EVAL_NO_GRAD, "model.eval(), then the loop inside `with torch.no_grad():`.",
                _eval_variant(eval_mode=False, no_grad=False)),
        Mistake(M_PERCENT, _PERCENT_HINT, _eval_variant(percent=True)),
    ],
    hint="model.eval(); with torch.no_grad(): per batch outputs = model(images), loss = criterion(outputs, labels); "
         "no zero_grad, backward or step; return (mean loss per sample, correct / N).",
    exception_hints={"TypeError": "evaluate(model, loader, criterion, device) returns (mean_loss, accuracy)."},
)


def check_evaluate(evaluate, hidden: bool = False) -> None:
    """Check ``evaluate(model, loader, criterion, device)`` on a probe model."""
    check_on_one_thread(EVALUATE, evaluate, hidden)
