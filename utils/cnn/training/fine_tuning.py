"""Exercise 5: ``fine_tune_optimizer(model, head_lr, backbone_lr=None, weight_decay=0.01) -> torch.optim.AdamW``.

``model`` has two parts, ``model.backbone`` and ``model.head`` (both ``nn.Module``). The rules of section 3.1:

* ``backbone_lr=None`` freezes the backbone: each of its parameters gets ``requires_grad = False`` and none of
  them is given to the optimizer (so it keeps no state for them); a number trains the backbone with that
  learning rate (``requires_grad`` True);
* the head is trained with ``head_lr``;
* AdamW (default betas and eps) with ``weight_decay`` on the parameters of two or more dimensions (convolution and
  linear weights) and 0 on the one-dimensional ones (biases, normalisation weights and shifts);
* nothing else about the model changes (its values, its modes).

A case builds a small float64 model (conv → BatchNorm → ReLU → pooling as the backbone, a linear head), calls
the student's function, then reads, for each parameter in ``named_parameters()`` order, the learning rate and
weight decay of its parameter group (-1 when it is in no group) and its ``requires_grad``, and runs two training
steps with the returned optimizer. The reference builds ``torch.optim.AdamW`` with the groups of the rules and
runs the same steps (:func:`fine_tune_output`).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from utils.checks.adapters import float64_tensor
from utils.checks.characterise import Layout
from utils.checks.compare import Tolerance
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, visible_then_hidden
from utils.checks.rules import kept_unchanged
from utils.checks.seeding import case_rng
from utils.cnn.pipeline.shared import check_on_one_thread, seeded

# float64 torch on both sides; tight enough for a weight decay of lr·λ ≈ 1e-4 of a weight in two steps
FLOAT64_STEPS = Tolerance(atol=1e-10, rtol=1e-8)
MODEL_RULE = ("fine_tune_optimizer changes nothing in the model but requires_grad: not its weights, not its "
              "train/eval mode (section 3.1)")
_STEPS = 2


class TwoPartModel(nn.Module):
    """``backbone``: Conv2d(2, C, 3) → BatchNorm2d(C) → ReLU → global average pool → flatten; ``head``:
    Linear(C, K). Input (N, 2, H, W), output (N, K)."""

    def __init__(self, channels: int, classes: int):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(2, channels, 3), nn.BatchNorm2d(channels), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(channels, classes)

    def forward(self, x):
        return self.head(self.backbone(x))


def _model(inputs) -> TwoPartModel:
    with seeded(0):   # overwritten below; the seed only keeps the caller's generator untouched
        model = TwoPartModel(inputs["channels"], inputs["classes"]).double()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(float64_tensor(inputs["values"][name]))
    return model


def _table(model, optimizer) -> np.ndarray:
    """For each parameter: learning rate and weight decay of its group (-1, -1 in no group), requires_grad."""
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    rows = []
    for _, p in model.named_parameters():
        group = group_of.get(id(p))
        rows.append([-1.0, -1.0] if group is None else [float(group["lr"]), float(group["weight_decay"])])
        rows[-1].append(float(p.requires_grad))
    return np.array(rows).ravel()


def fine_tune_output(fn, inputs) -> Any:
    """``[group table, every parameter after two training steps]`` with the optimizer that ``fn`` builds."""
    model = _model(inputs)
    with kept_unchanged({"model": model}, rule=MODEL_RULE):
        optimizer = fn(model, head_lr=inputs["head_lr"], backbone_lr=inputs["backbone_lr"],
                       weight_decay=inputs["weight_decay"])
    if not isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    table = _table(model, optimizer)
    x, target = torch.from_numpy(inputs["x"]), torch.from_numpy(inputs["target"])
    for _ in range(_STEPS):
        optimizer.zero_grad()
        loss = ((model(x) - target) ** 2).mean()
        loss.backward()
        optimizer.step()
    values = [p.detach().numpy().ravel() for p in model.parameters()]
    return np.concatenate([table] + values)


def reference_optimizer(model, head_lr, backbone_lr=None, weight_decay=0.01, rule="reference"):
    """AdamW with the groups of section 3.1; ``rule`` makes one known mistake."""
    backbone, head = list(model.backbone.named_parameters()), list(model.head.named_parameters())
    frozen = backbone_lr is None
    if rule == "freeze_head":
        backbone, head = head, backbone
    if rule == "no_freeze" and frozen:
        backbone_lr, frozen = head_lr, False
    if rule == "one_lr" and not frozen:
        backbone_lr = head_lr
    if rule == "swapped" and not frozen:
        backbone_lr, head_lr = head_lr, backbone_lr
    decay = 0.0 if rule == "no_decay" else weight_decay

    def decays(name, p) -> bool:
        if rule == "decay_all":
            return True
        if rule == "decay_by_name":
            return not name.endswith("bias")
        return p.ndim >= 2

    def groups(named, lr) -> list[dict]:
        return [{"params": [p for n, p in named if decays(n, p)], "lr": lr, "weight_decay": decay},
                {"params": [p for n, p in named if not decays(n, p)], "lr": lr, "weight_decay": 0.0}]

    param_groups = groups(head, head_lr)
    if frozen:
        for _, p in backbone:
            p.requires_grad_(rule == "not_frozen")
        if rule in ("lr_zero", "in_optimizer"):
            param_groups += groups(backbone, 0.0 if rule == "lr_zero" else head_lr)
            if rule == "lr_zero":
                for _, p in backbone:
                    p.requires_grad_(True)
    else:
        param_groups += groups(backbone, backbone_lr)
    param_groups = [g for g in param_groups if g["params"]]
    if rule == "adam":
        return torch.optim.Adam(param_groups, lr=head_lr)
    return torch.optim.AdamW(param_groups, lr=head_lr)


def _variant(rule: str) -> Callable:
    return lambda inputs: fine_tune_output(lambda model, **kw: reference_optimizer(model, rule=rule, **kw), inputs)


def _names(channels: int, classes: int) -> list[tuple[str, tuple]]:
    with seeded(0):
        model = TwoPartModel(channels, classes)
    return [(name, tuple(p.shape)) for name, p in model.named_parameters()]


def _describe(names: list[tuple[str, tuple]]):
    def describe(index) -> str:
        i = index[0]
        if i < 3 * len(names):
            what = ("the learning rate of its group", "the weight decay of its group", "requires_grad")[i % 3]
            return f"{names[i // 3][0]}: {what}"
        i -= 3 * len(names)
        for name, shape in names:
            size = int(np.prod(shape))
            if i < size:
                return f"{name}{list(np.unravel_index(i, shape))} after {_STEPS} steps"
            i -= size
        return f"entry {index[0]}"
    return describe


def _fine_tune_cases(hidden: bool) -> list[Case]:
    # (backbone_lr, head_lr, weight_decay, channels, classes)
    visible = [(None, 1e-2, 0.01, 4, 3), (1e-3, 1e-2, 0.05, 4, 3)]
    hidden_only = [(None, 3e-3, 0.1, 6, 5), (1e-4, 5e-3, 0.01, 6, 5)]
    cases = []
    for number, ((backbone_lr, head_lr, wd, channels, classes), salt) in enumerate(
            visible_then_hidden(visible, hidden_only, hidden), start=1):
        rng = case_rng("fine_tune_optimizer", number, salt)
        names = _names(channels, classes)
        values = {name: rng.normal(0, 0.5, size=shape) + (1.0 if name == "backbone.1.weight" else 0.0)
                  for name, shape in names}
        inputs = {"backbone_lr": backbone_lr, "head_lr": head_lr, "weight_decay": wd, "channels": channels,
                  "classes": classes, "values": values, "x": rng.normal(size=(6, 2, 5, 5)),
                  "target": rng.normal(size=(6, classes))}
        size = 3 * len(names) + sum(int(np.prod(s)) for _, s in names)
        at = np.arange(size)
        backbone = "the backbone frozen" if backbone_lr is None else f"backbone_lr={backbone_lr:g}"
        cases.append(Case(f"{backbone}, head_lr={head_lr:g}, weight_decay={wd:g}; backbone Conv2d(2, {channels}, 3) "
                          f"→ BatchNorm2d({channels}) → ReLU → pool, head Linear({channels}, {classes}); two "
                          "training steps on 6 random images", inputs, _describe(names),
                          regions={"the parameter groups (learning rate, weight decay, requires_grad)":
                                   at < 3 * len(names),
                                   "the parameters after two steps": at >= 3 * len(names)}))
    return cases


M_LR_ZERO = ("the backbone is \"frozen\" with a learning rate of 0: it is still trainable and still in the "
             "optimizer")
M_IN_OPTIMIZER = "the frozen backbone's parameters are still given to the optimizer"
M_NOT_FROZEN = "the backbone is left out of the optimizer but its requires_grad stays True"
M_NO_FREEZE = "backbone_lr=None does not freeze the backbone: it trains with head_lr"
M_FREEZE_HEAD = "the head is frozen and the backbone trained, instead of the other way round"
M_SWAPPED = "head_lr and backbone_lr are swapped"
M_ONE_LR = "backbone_lr is ignored: the backbone trains with head_lr"
M_DECAY_ALL = "weight decay is applied to every parameter, also biases and normalisation parameters"
M_DECAY_BY_NAME = ("only parameters named '…bias' are spared weight decay: BatchNorm's weight (a 1-d scale) is "
                   "decayed too")
M_NO_DECAY = "no weight decay at all"
M_ADAM = "Adam with weight_decay (an L2 term added to the gradient) instead of AdamW (decoupled weight decay)"
_FREEZE_HINT = ("freezing means two things (section 3.1): requires_grad False for each backbone parameter, and "
                "the backbone's parameters left out of the optimizer's groups.")
_DECAY_HINT = "section 3.1: weight decay on parameters of two or more dimensions, 0 on one-dimensional ones."

FINE_TUNE = Exercise(
    function="fine_tune_optimizer",
    reference_name="torch.optim.AdamW with section 3.1's parameter groups",
    make_cases=_fine_tune_cases,
    reference=lambda inputs: fine_tune_output(reference_optimizer, inputs),
    call=fine_tune_output,
    mistakes=[
        Mistake(M_LR_ZERO, _FREEZE_HINT, _variant("lr_zero")),
        Mistake(M_IN_OPTIMIZER, _FREEZE_HINT, _variant("in_optimizer")),
        Mistake(M_NOT_FROZEN, _FREEZE_HINT, _variant("not_frozen")),
        Mistake(M_NO_FREEZE, "backbone_lr=None means: freeze the backbone.", _variant("no_freeze")),
        Mistake(M_FREEZE_HEAD, "model.backbone is the pretrained part that stays fixed; model.head is new and "
                               "trains.", _variant("freeze_head")),
        Mistake(M_SWAPPED, "the new head learns fast (head_lr), the pretrained backbone slowly (backbone_lr).",
                _variant("swapped")),
        Mistake(M_ONE_LR, "give the backbone's parameters their own group(s) with backbone_lr.", _variant("one_lr")),
        Mistake(M_DECAY_ALL, _DECAY_HINT, _variant("decay_all")),
        Mistake(M_DECAY_BY_NAME, "decide by the number of dimensions (p.ndim), not by the name: normalisation "
                                 "weights are one-dimensional too.", _variant("decay_by_name")),
        Mistake(M_NO_DECAY, "give the groups of weights (two or more dimensions) weight_decay.", _variant("no_decay")),
        Mistake(M_ADAM, "use torch.optim.AdamW, whose weight decay shrinks the weights directly, outside the "
                        "adaptive step.", _variant("adam")),
    ],
    tolerance=FLOAT64_STEPS,
    hint="section 3.1: freeze (or give backbone_lr to) the backbone, head_lr to the head, and split each part into "
         "parameters with and without weight decay; one AdamW over those groups.",
    exception_hints={"TypeError": "the signature is fine_tune_optimizer(model, head_lr, backbone_lr=None, "
                                  "weight_decay=0.01); it returns the optimizer.",
                     "ValueError": "a parameter may be in one group only, and an optimizer needs at least one."},
    section="3.1 Fine-tuning",
    layout=Layout(axes=("entry",)),
    covers={
        "a frozen backbone": lambda case: case.inputs["backbone_lr"] is None,
        "a backbone with its own learning rate": lambda case: case.inputs["backbone_lr"] is not None,
        "a normalisation layer (1-d weights, no decay)": lambda case: "backbone.1.weight" in case.inputs["values"],
        "two steps (Adam's moments show from the second)": lambda case: _STEPS >= 2,
        "two sizes of model": lambda case: case.inputs["channels"] != 4,
    },
)


def check_fine_tune_optimizer(fine_tune_optimizer, hidden: bool = False) -> None:
    """Check ``fine_tune_optimizer(model, head_lr, backbone_lr, weight_decay)`` by its groups and two AdamW steps."""
    check_on_one_thread(FINE_TUNE, fine_tune_optimizer, hidden)
