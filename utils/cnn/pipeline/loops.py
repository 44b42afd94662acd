"""Exercises 7 and 8: the training and evaluation loops.

* ``train_one_epoch(model, loader, criterion, optimizer, device) -> (mean_loss, accuracy)``
* ``evaluate(model, loader, criterion, device) -> (mean_loss, accuracy)``

Both run on a small float64 probe model (``Flatten → Linear(12, 16) → [BatchNorm1d] → ReLU → Dropout(0.5)
→ Linear(16, 4)``) handed over in the wrong mode, so that a loop which does not switch it fails. A case
compares the returned pair and what the loop did: for ``train_one_epoch`` the number of optimizer steps, the
number of batches whose ``backward()`` came before their ``step()``, and the parameters after the epoch
(:func:`train_epoch_output`); for ``evaluate`` whether gradients were tracked and whether BatchNorm's running
statistics moved (:func:`evaluate_output`). Some loaders end with a smaller batch, so that a mean of batch
means is told from the mean per sample.

Rules the calls enforce: the labels reach ``criterion`` as the integer class indices the loader gives
(section 5.1 says so). ``evaluate`` may leave the model in eval mode (section 5.2 says so: the notebook's own
solution does, and ``train_one_epoch`` switches it back), so its mode afterwards is not checked; its
parameters and running statistics are.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from utils.checks.adapters import float64_tensor, to_numpy
from utils.checks.characterise import Layout
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, visible_then_hidden
from utils.checks.rules import require_dtype
from utils.checks.seeding import case_rng
from utils.cnn.pipeline.shared import check_on_one_thread, seeded

LABELS_RULE = ("the labels are integer class indices (torch.long): hand them to criterion as the loader gives "
               "them (section 5.1)")


class ClassIndexLoss(nn.CrossEntropyLoss):
    """``nn.CrossEntropyLoss`` that insists on the loader's integer labels (:data:`LABELS_RULE`)."""

    def forward(self, input, target):   # noqa: A002 - the name nn.CrossEntropyLoss uses
        require_dtype(target, "integer", what="the target tensor given to criterion", rule=LABELS_RULE)
        return super().forward(input, target)


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
    """The case's samples in order, in batches of the case's size (the last one smaller when n is not a
    multiple of it)."""
    from torch.utils.data import DataLoader, TensorDataset
    dataset = TensorDataset(torch.from_numpy(inputs["x"]), torch.from_numpy(inputs["y"]))
    return DataLoader(dataset, batch_size=inputs["batch_size"], shuffle=False,
                      generator=torch.Generator().manual_seed(0))


def batches(n: int, batch: int) -> str:
    """'30 samples in batches of 8 (the last batch holds 6)'."""
    last = n % batch
    return f"{n} samples in batches of {batch}" + (f" (the last batch holds {last})" if last else "")


def _loop_cases(exercise: str, hidden: bool, describe: Callable[[int, int, int], str],
                describe_index: Callable[[tuple], str], mode: str, regions: dict) -> list[Case]:
    """Probe weights and samples; ``describe(samples, batch size, torch seed)`` says what the case runs."""
    # the second visible case and the second hidden one end with a smaller batch: a mean of batch means
    # then differs from the mean per sample
    settings = visible_then_hidden([(24, 8), (30, 8)], [(32, 4), (23, 5)], hidden)
    cases = []
    for number, ((n, batch), salt) in enumerate(settings, start=1):
        rng = case_rng(exercise, number, salt)
        weights = {"w1": rng.normal(0, 0.6, (16, 12)), "b1": rng.normal(0, 0.1, 16),
                   "w2": rng.normal(0, 0.4, (4, 16)), "b2": rng.normal(0, 0.1, 4),
                   "mean": rng.normal(0, 0.3, 16), "var": rng.uniform(0.5, 2.0, 16)}
        inputs = {"weights": weights, "x": rng.normal(size=(n, 3, 2, 2)), "y": rng.integers(0, 4, n),
                  "batch_size": batch, "seed": 100 + number, "mode": mode}
        cases.append(Case(describe(n, batch, 100 + number), inputs, describe_index, regions=regions))
    return cases


def _ragged(case: Case) -> bool:
    return case.inputs["x"].shape[0] % case.inputs["batch_size"] != 0


def _even(case: Case) -> bool:
    return case.inputs["x"].shape[0] % case.inputs["batch_size"] == 0


# What both loops must hold on: loaders that divide evenly and loaders that do not, and labels as the loader gives them.
_LOADER_COVERS = {
    "a last batch smaller than the others": _ragged,
    "every batch of the same size": _even,
    "integer class labels": lambda case: case.inputs["y"].dtype.kind in "iu",
}


M_PERCENT = "accuracy returned in percent: return a fraction between 0 and 1"
_PERCENT_HINT = "the accuracy is a fraction of the samples, between 0 and 1, not a percentage."
M_BATCH_MEAN = "the loss is the mean of the batch means: a smaller last batch then weighs as much as a full one"
_BATCH_MEAN_HINT = ("a batch's loss is a mean over its samples: weight it by the batch size, and divide the total "
                    "by the number of samples, not by the number of batches.")

# =========================================================================== exercise 7: train_one_epoch


def _backward_before_step(events: list[str]) -> int:
    """The number of batches (a forward pass and what follows it) in which a backward pass came before the
    first ``optimizer.step()``."""
    count, batch = 0, None
    for event in [*events, "F"]:
        if event == "F":
            if batch is not None and "S" in batch and "B" in batch[:batch.index("S")]:
                count += 1
            batch = []
        elif batch is not None:
            batch.append(event)
    return count


def train_epoch_output(fn, inputs) -> Any:
    """Run ``fn(model, loader, criterion, optimizer, device)`` on a probe given in eval mode."""
    model = _probe_model(inputs["weights"], bn=False)
    model.train(inputs["mode"] == "train")   # handed over in eval mode: train_one_epoch switches dropout on
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    events: list[str] = []   # F forward, B backward (reaching the first layer), S optimizer.step()
    model.register_forward_pre_hook(lambda module, args: events.append("F"))
    model[1].weight.register_hook(lambda grad: events.append("B"))
    step = optimizer.step
    optimizer.step = lambda *args, **kwargs: (events.append("S"), step(*args, **kwargs))[1]
    with seeded(inputs["seed"]):
        result = _as_pair(fn(model, _loader(inputs), ClassIndexLoss(), optimizer, torch.device("cpu")))
    if not isinstance(result, list):
        return result
    params = [p.detach().numpy().ravel() for p in model.parameters()]
    return np.concatenate([result, [events.count("S"), _backward_before_step(events)], *params])


def reference_train_one_epoch(model, loader, criterion, optimizer, device, *, zero_grad="before", train=True,
                              percent=False, loss_mean="samples", acc_mean="samples", step=True,
                              step_first=False):
    """The zero_grad → forward → loss → backward → step loop; keywords reproduce known mistakes."""
    if train:
        model.train()
    total_loss, correct, seen, batch_losses, batch_accs = 0.0, 0, 0, [], []
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        if zero_grad == "before":
            optimizer.zero_grad()
        outputs = model(images)
        loss = criterion(outputs, labels)
        if step and step_first:
            optimizer.step()
        loss.backward()
        if zero_grad == "after_backward":
            optimizer.zero_grad()
        if step and not step_first:
            optimizer.step()
        hits = (outputs.argmax(dim=1) == labels).sum().item()
        total_loss += loss.item() * labels.size(0)
        correct += hits
        seen += labels.size(0)
        batch_losses.append(loss.item())
        batch_accs.append(hits / labels.size(0))
    mean_loss = {"samples": total_loss / seen, "sum": sum(batch_losses),
                 "batches": sum(batch_losses) / len(batch_losses)}[loss_mean]
    accuracy = correct / seen if acc_mean == "samples" else sum(batch_accs) / len(batch_accs)
    return mean_loss, 100 * accuracy if percent else accuracy


_TRAIN_OUTPUTS = ["mean loss", "accuracy", "number of optimizer.step() calls",
                  "batches whose loss.backward() came before their optimizer.step()"]
_PARAMS = [("first Linear's weight", (16, 12)), ("first Linear's bias", (16,)), ("last Linear's weight", (4, 16)),
           ("last Linear's bias", (4,))]
_TRAIN_SIZE = len(_TRAIN_OUTPUTS) + sum(int(np.prod(shape)) for _, shape in _PARAMS)
_PAIR = "the returned mean loss and accuracy"


def _mask(size: int, part: slice) -> np.ndarray:
    mask = np.zeros(size, dtype=bool)
    mask[part] = True
    return mask


_TRAIN_REGIONS = {_PAIR: _mask(_TRAIN_SIZE, slice(0, 2)),
                  "the parameters after the epoch": _mask(_TRAIN_SIZE, slice(len(_TRAIN_OUTPUTS), None))}


def _describe_train_index(index) -> str:
    i = index[0]
    if i < len(_TRAIN_OUTPUTS):
        return _TRAIN_OUTPUTS[i]
    i -= len(_TRAIN_OUTPUTS)
    for name, shape in _PARAMS:
        size = int(np.prod(shape))
        if i < size:
            where = ", ".join(str(int(v)) for v in np.unravel_index(i, shape))
            return f"{name} [{where}] after the epoch"
        i -= size
    return f"value {index[0]}"


def _describe_train_case(n: int, batch: int, seed: int) -> str:
    return (f"a probe model Flatten → Linear(12, 16) → ReLU → Dropout(0.5) → Linear(16, 4), handed over in "
            f"eval mode; {batches(n, batch)}; torch seed {seed}")


def _train_variant(**kw):
    return lambda inputs: train_epoch_output(lambda *args: reference_train_one_epoch(*args, **kw), inputs)


M_NO_ZERO_GRAD = "forgetting zero_grad: gradients accumulate across steps"
M_ZERO_AFTER_BACKWARD = "optimizer.zero_grad() is called between backward() and step(), so step() sees zero gradients"
M_STEP_BEFORE_BACKWARD = ("optimizer.step() comes before loss.backward(): each update runs before its batch's "
                          "gradients exist")
M_NO_STEP = "optimizer.step() is missing: the parameters never change"
M_NO_TRAIN = "model.train() missing in train_one_epoch: dropout stays off when the model arrives in eval mode"
M_LOSS_SUM = "the loss is summed over batches, not averaged over samples"

TRAIN_EPOCH = Exercise(
    function="train_one_epoch",
    reference_name="the reference zero_grad → forward → backward → step loop",
    make_cases=lambda hidden: _loop_cases("train_one_epoch", hidden, _describe_train_case, _describe_train_index,
                                          "eval", _TRAIN_REGIONS),
    reference=lambda inputs: train_epoch_output(reference_train_one_epoch, inputs),
    call=train_epoch_output,
    mistakes=[
        Mistake(M_NO_ZERO_GRAD, "backward() adds to the stored gradients: clear them once per batch, before "
                                "its backward pass.", _train_variant(zero_grad="never")),
        Mistake(M_ZERO_AFTER_BACKWARD, "clear the gradients before the backward pass: cleared between backward() "
                                       "and step(), they are gone when the update needs them.",
                _train_variant(zero_grad="after_backward")),
        Mistake(M_STEP_BEFORE_BACKWARD, "the update uses the gradients the backward pass has just computed, so "
                                        "it comes after it, in the same batch.", _train_variant(step_first=True)),
        Mistake(M_NO_STEP, "after the backward pass, let the optimizer update the parameters.",
                _train_variant(step=False)),
        Mistake(M_NO_TRAIN, "the model may arrive in eval mode: switch it to training mode at the start of the "
                            "function.", _train_variant(train=False)),
        Mistake(M_PERCENT, _PERCENT_HINT, _train_variant(percent=True)),
        Mistake(M_LOSS_SUM, "weight each batch's mean loss by its number of samples and divide the total by the "
                            "number of samples.", _train_variant(loss_mean="sum")),
        Mistake(M_BATCH_MEAN, _BATCH_MEAN_HINT, _train_variant(loss_mean="batches")),
    ],
    hint="switch the model to training mode, then for every batch, in the order of section 5.1: clear the "
         "gradients, forward, loss, backward, update. Return the mean loss per sample and the fraction of "
         "correctly predicted samples, both over the whole epoch.",
    exception_hints={"TypeError": "train_one_epoch returns the pair (mean loss, accuracy); the loader yields "
                                  "(images, labels) batches."},
    section="5.1 Training for one epoch",
    layout=Layout(axes=("entry",)),
    covers={
        **_LOADER_COVERS,
        "three or more batches (momentum and accumulated gradients show)":
            lambda case: case.inputs["x"].shape[0] // case.inputs["batch_size"] >= 3,
        "the model handed over in eval mode": lambda case: case.inputs["mode"] == "eval",
    },
)


def check_train_one_epoch(train_one_epoch, hidden: bool = False) -> None:
    """Check ``train_one_epoch(model, loader, criterion, optimizer, device)`` on a probe model."""
    check_on_one_thread(TRAIN_EPOCH, train_one_epoch, hidden)


# =========================================================================== exercise 8: evaluate


def evaluate_output(fn, inputs) -> Any:
    """Run ``fn(model, loader, criterion, device)`` on a probe given in train mode; record side effects."""
    model = _probe_model(inputs["weights"], bn=True)
    model.train(inputs["mode"] == "train")   # evaluate switches dropout off and BatchNorm to running statistics
    grad_enabled = []
    model.register_forward_pre_hook(lambda module, args: grad_enabled.append(torch.is_grad_enabled()))
    stats_before = model[2].running_mean.clone()
    with seeded(inputs["seed"]):
        result = _as_pair(fn(model, _loader(inputs), ClassIndexLoss(), torch.device("cpu")))
    if not isinstance(result, list):
        return result
    stats_changed = not torch.equal(stats_before, model[2].running_mean)
    return np.array(result + [float(any(grad_enabled)), float(stats_changed)])


def reference_evaluate(model, loader, criterion, device, *, eval_mode=True, no_grad=True, percent=False,
                       loss_mean="samples", acc_mean="samples"):
    """model.eval() and torch.no_grad() around forward and loss; keywords reproduce known mistakes."""
    if eval_mode:
        model.eval()
    total_loss, correct, seen, batch_losses, batch_accs = 0.0, 0, 0, [], []
    with torch.set_grad_enabled(not no_grad):
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            outputs = model(images)
            loss = criterion(outputs, labels).item()
            hits = (outputs.argmax(dim=1) == labels).sum().item()
            total_loss += loss * labels.size(0)
            correct += hits
            seen += labels.size(0)
            batch_losses.append(loss)
            batch_accs.append(hits / labels.size(0))
    mean_loss = total_loss / seen if loss_mean == "samples" else sum(batch_losses) / len(batch_losses)
    accuracy = correct / seen if acc_mean == "samples" else sum(batch_accs) / len(batch_accs)
    return mean_loss, 100 * accuracy if percent else accuracy


_EVAL_OUTPUTS = ["mean loss", "accuracy", "gradients were tracked during the forward pass (1 = yes)",
                 "BatchNorm running statistics changed (1 = yes)"]


_EVAL_REGIONS = {_PAIR: _mask(4, slice(0, 2)),
                 "what the loop did to the model (gradients tracked, running statistics moved)": _mask(4, slice(2, 4))}


def _describe_eval_case(n: int, batch: int, seed: int) -> str:
    return (f"a probe model Flatten → Linear(12, 16) → BatchNorm1d → ReLU → Dropout(0.5) → Linear(16, 4), "
            f"handed over in train mode; {batches(n, batch)}; torch seed {seed}")


def _eval_variant(**kw):
    return lambda inputs: evaluate_output(lambda *args: reference_evaluate(*args, **kw), inputs)


M_NO_EVAL = "model.eval() missing in evaluate: dropout is active and BatchNorm uses (and updates) batch statistics"
M_NO_NO_GRAD = "torch.no_grad() missing in evaluate: autograd records a graph for every batch"
M_NO_EVAL_NO_GRAD = "model.eval() and torch.no_grad() both missing in evaluate"

EVALUATE = Exercise(
    function="evaluate",
    reference_name="the reference evaluation loop (model.eval(), torch.no_grad())",
    make_cases=lambda hidden: _loop_cases("evaluate", hidden, _describe_eval_case,
                                          lambda index: _EVAL_OUTPUTS[index[0]], "train", _EVAL_REGIONS),
    reference=lambda inputs: evaluate_output(reference_evaluate, inputs),
    call=evaluate_output,
    mistakes=[
        Mistake(M_NO_EVAL, "switch the model to eval mode before the loop: dropout off, BatchNorm on its running "
                           "statistics.", _eval_variant(eval_mode=False)),
        Mistake(M_NO_NO_GRAD, "run the forward passes inside a block that turns gradient tracking off.",
                _eval_variant(no_grad=False)),
        Mistake(M_NO_EVAL_NO_GRAD, "both: eval mode first, then the forward passes with gradient tracking off.",
                _eval_variant(eval_mode=False, no_grad=False)),
        Mistake(M_PERCENT, _PERCENT_HINT, _eval_variant(percent=True)),
        Mistake(M_BATCH_MEAN, _BATCH_MEAN_HINT, _eval_variant(loss_mean="batches")),
    ],
    hint="eval mode, gradient tracking off, and no clearing, backward or update of any kind; return the mean loss "
         "per sample and the fraction of correctly predicted samples, as train_one_epoch does.",
    exception_hints={"TypeError": "evaluate returns the pair (mean loss, accuracy); the loader yields "
                                  "(images, labels) batches."},
    section="5.2 Evaluating",
    layout=Layout(axes=("entry",)),
    covers={
        **_LOADER_COVERS,
        "the model handed over in train mode (dropout on, BatchNorm on batch statistics)":
            lambda case: case.inputs["mode"] == "train",
    },
)


def check_evaluate(evaluate, hidden: bool = False) -> None:
    """Check ``evaluate(model, loader, criterion, device)`` on a probe model."""
    check_on_one_thread(EVALUATE, evaluate, hidden)
