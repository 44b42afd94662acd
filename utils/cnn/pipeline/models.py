"""Exercises 3 and 4: the networks ``CustomCNN(num_classes=100)`` and ``CustomCNNwithBN(num_classes=100)``.

* ``CustomCNN``: conv 3→32→64 (pool), →128 (pool), →256 (pool), 3×3 kernels with padding 1, FC
  256·4·4 = 4096 → 512 → 256 → num_classes, ReLU everywhere but the last layer, dropout 0.5 after fc1 and fc2.
* ``CustomCNNwithBN``: the same with ``BatchNorm2d`` between every conv and its ReLU.

A case compares a table of the network's layers (:func:`architecture_rows`), its parameter count and
output shape, or its outputs once the case's weights are loaded into its layers in registration order
(eval mode, train mode under a fixed torch seed, one SGD step, and for BatchNorm eval mode after a train-mode
pass, where the momentum of the running statistics shows), all in float64 (:func:`model_output`). A case
carries the seed of its weights, not the weights: they are drawn when the case runs, from a local generator.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.checks.characterise import Layout
from utils.checks.compare import Tolerance
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, visible_then_hidden
from utils.checks.seeding import case_rng
from utils.cnn.pipeline.shared import check_on_one_thread, seeded, variant_name

# float64 networks on both sides: a student's layers may only sum in another order than the reference's.
FLOAT64_NETWORK = Tolerance(atol=1e-7, rtol=1e-6)

_CHANNELS = [3, 32, 64, 128, 256]
_ARCH_ROWS, _ARCH_COLS = 16, 7
_CONV_FIELDS = ["layer type (1 Conv2d, 2 BatchNorm2d, 3 Linear, 0 none)", "in_channels", "out_channels",
                "kernel_size", "stride", "padding", "has bias (1 = yes)"]
_BN_FIELDS = [_CONV_FIELDS[0], "num_features", "-", "-", "-", "-", "has affine weight and bias (1 = yes)"]
_LINEAR_FIELDS = [_CONV_FIELDS[0], "in_features", "out_features", "-", "-", "-", "has bias (1 = yes)"]


def _layers(model):
    """The model's Conv2d, BatchNorm2d and Linear layers, each list in registration order."""
    mods = list(model.modules())
    return ([m for m in mods if isinstance(m, nn.Conv2d)], [m for m in mods if isinstance(m, nn.BatchNorm2d)],
            [m for m in mods if isinstance(m, nn.Linear)])


def _conv_padding(m) -> float:
    if isinstance(m.padding, str):
        return float((m.kernel_size[0] - 1) // 2) if m.padding == "same" else 0.0
    return float(m.padding[0])


def architecture_rows(model) -> np.ndarray:
    """(16, 7): its Conv2d, then BatchNorm2d, then Linear layers, each in registration order."""
    convs, bns, linears = _layers(model)
    rows = [[1, m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], _conv_padding(m), m.bias is not None]
            for m in convs]
    rows += [[2, m.num_features, 0, 0, 0, 0, m.affine] for m in bns]
    rows += [[3, m.in_features, m.out_features, 0, 0, 0, m.bias is not None] for m in linears]
    table = np.zeros((_ARCH_ROWS, _ARCH_COLS))
    rows = np.array(rows[:_ARCH_ROWS], dtype=np.float64).reshape(-1, _ARCH_COLS)
    table[:len(rows)] = rows
    return table


def uninitialised(num_classes=100, bn=False, **kw) -> nn.Module:
    """A :class:`ReferenceCNN` without torch's random initialisation (its weights are loaded before any output
    is measured, and the layer table and sizes do not depend on them): built on the meta device, then given
    memory, with BatchNorm's running statistics reset. Several times faster than drawing 2.6 million numbers."""
    with torch.device("meta"):
        model = ReferenceCNN(num_classes, bn, **kw)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
    return model


class ReferenceCNN(nn.Module):
    """CustomCNN / CustomCNNwithBN as specified; the keywords reproduce known mistakes."""

    def __init__(self, num_classes=100, bn=False, *, final=None, dropout_p=0.5, dropout_at=(1, 2),
                 bn_after_relu=False, fc1_in=256 * 4 * 4, padding=1, dropout_always=False):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(_CHANNELS[i], _CHANNELS[i + 1], 3, padding=padding) for i in range(4))
        self.bns = nn.ModuleList(nn.BatchNorm2d(c) for c in _CHANNELS[1:]) if bn else None
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1, self.fc2 = nn.Linear(fc1_in, 512), nn.Linear(512, 256)
        self.fc3 = nn.Linear(256, num_classes)
        self.final, self.dropout_p, self.dropout_at, self.bn_after_relu = final, dropout_p, dropout_at, bn_after_relu
        self.dropout_always = dropout_always   # functional dropout that ignores eval mode

    def _block(self, i, x):
        x = self.convs[i](x)
        if self.bns is not None and not self.bn_after_relu:
            x = self.bns[i](x)
        x = F.relu(x)
        if self.bns is not None and self.bn_after_relu:
            x = self.bns[i](x)
        return x

    def forward(self, x):
        x = self.pool(self._block(1, self._block(0, x)))     # 32 → 16
        x = self.pool(self._block(2, x))                      # 16 → 8
        x = self.pool(self._block(3, x))                      # 8 → 4
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        drop = self.training or self.dropout_always
        if 1 in self.dropout_at:
            x = F.dropout(x, self.dropout_p, drop)
        x = F.relu(self.fc2(x))
        if 2 in self.dropout_at:
            x = F.dropout(x, self.dropout_p, drop)
        x = self.fc3(x)
        if self.final == "relu":
            x = F.relu(x)
        elif self.final == "softmax":
            x = F.softmax(x, dim=1)
        return x


@functools.lru_cache(maxsize=2)   # the student's network and the reference load the same weights in turn
def _model_weights(seed: int, bn: bool, num_classes: int) -> dict:
    """He-scaled uniform random weights for every layer (activations stay of order one), drawn from a local
    generator seeded with ``seed``: a case carries the seed, not 2.6 million numbers."""
    rng = np.random.default_rng(seed)

    def uniform(shape, fan_in=None, scale=None):
        bound = np.sqrt(6 / fan_in) if fan_in else scale   # variance 2 / fan_in
        values = rng.random(shape)
        values *= 2 * bound
        values -= bound
        return values

    conv = [(uniform((_CHANNELS[i + 1], _CHANNELS[i], 3, 3), fan_in=9 * _CHANNELS[i]),
             uniform(_CHANNELS[i + 1], scale=0.2)) for i in range(4)]
    dims = [4096, 512, 256, num_classes]
    linear = [(uniform((dims[i + 1], dims[i]), fan_in=dims[i]), uniform(dims[i + 1], scale=0.2)) for i in range(3)]
    bns = [(0.5 + rng.random(c), uniform(c, scale=0.3), uniform(c, scale=0.3), 0.5 + rng.random(c))
           for c in _CHANNELS[1:]] if bn else []
    return {"conv": conv, "linear": linear, "bn": bns}


def _load_weights(model, weights: dict) -> None:
    """The case's weights copied into the model's layers, matched in registration order (a layer the
    student does not have is skipped: the comparison of outputs then tells)."""
    convs, bns, linears = _layers(model)

    def put(param, array):
        param.copy_(torch.from_numpy(array))

    with torch.no_grad():
        pairs = list(zip(convs, weights["conv"], strict=False)) + list(zip(linears, weights["linear"], strict=False))
        for m, (w, b) in pairs:
            put(m.weight, w)
            if m.bias is not None:
                put(m.bias, b)
        for m, (g, b, mean, var) in zip(bns, weights["bn"], strict=False):
            if m.affine:
                put(m.weight, g)
                put(m.bias, b)
            if m.running_mean is not None:
                put(m.running_mean, mean)
                put(m.running_var, var)


def _build(cls, num_classes):
    with seeded(0):   # the student's __init__ draws its initial weights from torch's generator
        return cls() if num_classes is None else cls(num_classes=num_classes)


def model_output(cls, inputs) -> Any:
    """What a model case measures for a network class (the student's or a reference)."""
    # every draw from torch's generator (dropout even in eval mode, a mistake) is local to the case
    with seeded(inputs.get("seed", 0)):
        return _model_output(cls, inputs)


def _model_output(cls, inputs) -> Any:
    kind = inputs["kind"]
    model = _build(cls, inputs.get("num_classes"))
    if kind == "architecture":
        return architecture_rows(model)
    if kind == "size":
        with torch.no_grad():
            model.eval()
            out = model(torch.zeros(2, 3, 32, 32))
        n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return np.array([n_params, *tuple(out.shape)], dtype=np.float64)
    model = model.double()
    _load_weights(model, _model_weights(inputs["weight_seed"], inputs["bn"], 100))
    x = torch.from_numpy(inputs["x"])
    if kind == "eval":
        model.eval()
        with torch.no_grad():
            return model(x).detach().numpy()
    model.train()
    if kind == "train":
        with seeded(inputs["seed"]), torch.no_grad():
            return model(x).detach().numpy()
    if kind == "train_then_eval":   # one train-mode pass moves BatchNorm's running statistics (momentum 0.1)
        with seeded(inputs["seed"]), torch.no_grad():
            model(x)
        model.eval()
        with torch.no_grad():
            return model(x).detach().numpy()
    # kind == "step": one SGD step from the case's weights, dropout and batch statistics active
    convs, _, linears = _layers(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    with seeded(inputs["seed"]):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), torch.from_numpy(inputs["y"]))
        loss.backward()
        optimizer.step()
    return np.concatenate([[loss.item()], convs[0].weight.detach().numpy().ravel(),
                           linears[-1].weight.detach().numpy().ravel()])


def _describe_arch_index(expected: np.ndarray):
    def describe(index):
        row, col = index
        kind = int(expected[row, 0])
        fields = {1: _CONV_FIELDS, 2: _BN_FIELDS, 3: _LINEAR_FIELDS}.get(kind, _CONV_FIELDS)
        number = int((expected[:row + 1, 0] == kind).sum()) if kind else 0
        name = {1: f"Conv2d layer {number}", 2: f"BatchNorm2d layer {number}", 3: f"Linear layer {number}"}.get(
            kind, "a layer the reference does not have")
        return f"{name}: {fields[col]}"
    return describe


def _describe_output_index(index):
    return f"logit [{', '.join(map(str, index))}] (sample, class)"


_CONV1_SHAPE, _FC3_SHAPE = (32, 3, 3, 3), (100, 256)


def _describe_step_index(index) -> str:
    """The loss, then conv1's and fc3's weights after the step."""
    i = index[0]
    if i == 0:
        return "the loss before the step"
    i -= 1
    for name, shape in (("conv1's weight", _CONV1_SHAPE), ("fc3's weight", _FC3_SHAPE)):
        size = int(np.prod(shape))
        if i < size:
            return f"{name} [{', '.join(str(int(v)) for v in np.unravel_index(i, shape))}] after the step"
        i -= size
    return f"value {index[0]}"


_SIZE_FIELDS = ["number of trainable parameters", "output rows (batch size 2)", "output columns (classes)"]


_STEP_SIZE = 1 + int(np.prod(_CONV1_SHAPE)) + int(np.prod(_FC3_SHAPE))
_STEP_REGIONS = {"the loss": np.arange(_STEP_SIZE) == 0,
                 "conv1's weights after the step": (np.arange(_STEP_SIZE) >= 1)
                 & (np.arange(_STEP_SIZE) <= int(np.prod(_CONV1_SHAPE))),
                 "fc3's weights after the step": np.arange(_STEP_SIZE) > int(np.prod(_CONV1_SHAPE))}


def _output_case(name: str, bn: bool, number: int, kind: str, n: int, salt: str) -> Case:
    rng = case_rng(name, number, salt)
    inputs = {"kind": kind, "num_classes": None, "bn": bn, "weight_seed": int(rng.integers(2 ** 31)),
              "x": rng.normal(size=(n, 3, 32, 32)), "y": rng.integers(0, 100, n), "seed": number}
    what = {"eval": "eval mode (no dropout" + (", BatchNorm with running statistics)" if bn else ")"),
            "train": f"train mode (dropout active{', BatchNorm with batch statistics' if bn else ''}), "
                     f"torch seed {number}",
            "train_then_eval": f"one train-mode forward pass (torch seed {number}), which moves BatchNorm's "
                               "running statistics, then eval mode",
            "step": f"one SGD step in train mode (gradients through every layer), torch seed {number}"
            }[kind]
    if kind == "step":
        return Case(f"{name}() with random weights loaded into its layers, {n} random 3×32×32 images, {what}",
                    inputs, _describe_step_index, layout=Layout(axes=("entry",)), regions=_STEP_REGIONS)
    return Case(f"{name}() with random weights loaded into its layers, {n} random 3×32×32 images, {what}",
                inputs, _describe_output_index, layout=Layout(axes=("sample", "class")))


def _model_cases(name: str, bn: bool, hidden: bool) -> list[Case]:
    with seeded(0):   # building the reference initialises weights: keep the caller's generator untouched
        expected_arch = architecture_rows(ReferenceCNN(bn=bn))
    cases = [
        Case(f"{name}(): its Conv2d{', BatchNorm2d' if bn else ''} and Linear layers, in order",
             {"kind": "architecture"}, _describe_arch_index(expected_arch), layout=Layout(axes=("layer row", "field"))),
        Case(f"{name}(): parameter count and output shape for a (2, 3, 32, 32) input",
             {"kind": "size", "num_classes": None}, lambda index: _SIZE_FIELDS[index[0]],
             layout=Layout(axes=("measurement",))),
        Case(f"{name}(num_classes=10): parameter count and output shape",
             {"kind": "size", "num_classes": 10}, lambda index: _SIZE_FIELDS[index[0]],
             layout=Layout(axes=("measurement",))),
    ]
    # with BatchNorm, the hidden eval case follows a train-mode pass: the running statistics it uses then
    # depend on BatchNorm's momentum
    settings = visible_then_hidden([("eval", 3), ("train", 4), ("step", 4)],
                                   [("train_then_eval" if bn else "eval", 4), ("train", 4), ("step", 2)], hidden)
    for number, ((kind, n), salt) in enumerate(settings, start=len(cases) + 1):
        cases.append(_output_case(name, bn, number, kind, n, salt))
    return cases


M_FINAL_RELU = "activation on the final layer: ReLU after fc3 clips the negative logits"
M_FINAL_SOFTMAX = ("activation on the final layer: softmax after fc3 (CrossEntropyLoss applies log-softmax "
                   "itself)")
M_NO_DROPOUT = "dropout missing: in train mode the output equals the output without dropout"
M_DROPOUT_ONE = "dropout applied only after fc1: it belongs after fc1 and after fc2"
M_DROPOUT_P = "dropout present but its probability is not 0.5"
M_FLATTEN = "wrong flatten size: fc1 must take 256·4·4 = 4096 features (three 2×2 poolings: 32 → 16 → 8 → 4)"
M_NO_PAD = "the convolutions have no padding=1, so the spatial size shrinks and the flatten size changes"
M_BN_AFTER_RELU = "BatchNorm is applied after the ReLU: the order is conv → BatchNorm → ReLU"
M_DROPOUT_IN_EVAL = ("dropout stays active in eval mode: functional dropout does not follow model.eval() unless it "
                     "is given the module's training flag")

_FINAL_HINT = ("fc3 outputs raw scores (logits) with no activation after it: the loss applies log-softmax itself "
               "(section 2.1, “no activation on the last layer”).")


def _model_mistakes(bn: bool) -> list[Mistake]:
    def variant(**kw):
        return lambda inputs: model_output(lambda num_classes=100: uninitialised(num_classes, bn, **kw), inputs)

    mistakes = [
        Mistake(M_FINAL_RELU, _FINAL_HINT, variant(final="relu")),
        Mistake(M_FINAL_SOFTMAX, _FINAL_HINT, variant(final="softmax")),
        Mistake(M_NO_DROPOUT, "section 2.1: dropout with probability 0.5 follows the ReLUs of fc1 and fc2.",
                variant(dropout_at=())),
        Mistake(M_DROPOUT_ONE, "the ReLU of fc2 is followed by dropout too, as that of fc1 is.",
                variant(dropout_at=(1,))),
        Mistake(M_DROPOUT_IN_EVAL, "use a dropout module (it follows train() and eval()), or hand the functional "
                                   "form the module's training flag.", variant(dropout_always=True)),
    ]
    mistakes += [Mistake(variant_name(M_DROPOUT_P, f"p={p}"), "section 2.1 asks for a dropout probability of 0.5.",
                         variant(dropout_p=p))
                 for p in (0.1, 0.2, 0.25, 0.3, 0.4)]
    mistakes += [Mistake(variant_name(M_FLATTEN, f"fc1 taking {n} features"),
                         "count the poolings: three of them halve 32×32 to 4×4, and the last convolution has 256 "
                         "channels; flatten each image into one row before fc1.", variant(fc1_in=n))
                 for n in (256 * 8 * 8, 256 * 2 * 2, 128 * 4 * 4, 256, 128 * 8 * 8)]
    mistakes.append(Mistake(M_NO_PAD, "a 3×3 convolution keeps the spatial size only with a padding of 1 on each "
                                      "side.", variant(padding=0, fc1_in=256 * 2 * 2)))
    if bn:
        mistakes.append(Mistake(M_BN_AFTER_RELU, "section 2.2: each BatchNorm2d sits between its convolution and "
                                                 "that convolution's ReLU.", variant(bn_after_relu=True)))
    return mistakes


def _output_kind(*kinds):
    return lambda case: case.inputs.get("kind") in kinds


def _model_exercise(name: str, bn: bool) -> Exercise:
    layout = ("conv 3→32, conv 32→64, pool, conv 64→128, pool, conv 128→256, pool (3×3 kernels, padding 1"
              + ", each conv followed by BatchNorm2d then ReLU" * bn + "), flatten 4096, fc 512, fc 256, "
              "fc num_classes, ReLU after every layer but the last, dropout 0.5 after fc1 and fc2")
    covers = {
        "the layer table (types, sizes, kernel, stride, padding, bias)": _output_kind("architecture"),
        "num_classes other than 100": lambda case: case.inputs.get("num_classes") not in (None, 100),
        "eval mode (dropout off)": _output_kind("eval", "train_then_eval"),
        "train mode with dropout drawn under a fixed torch seed": _output_kind("train"),
        "one SGD step (gradients through every layer)": _output_kind("step"),
        "a batch of 2 or more images": lambda case: "x" in case.inputs and case.inputs["x"].shape[0] >= 2,
    }
    if bn:
        covers["BatchNorm with batch statistics (train mode) and running statistics (eval mode)"] = \
            lambda case: case.inputs.get("kind") == "train"
        covers["eval mode after a train-mode pass (BatchNorm's momentum)"] = _output_kind("train_then_eval")
    return Exercise(
        function=name,
        reference_name=f"the reference {name} (real torch modules)",
        make_cases=lambda hidden: _model_cases(name, bn, hidden),
        reference=lambda inputs: model_output(lambda num_classes=100: uninitialised(num_classes, bn), inputs),
        call=model_output,
        mistakes=_model_mistakes(bn),
        tolerance=FLOAT64_NETWORK,
        hint=f"compare your layers and forward pass with the table of section 2.1{' and with section 2.2' * bn}: "
             + layout + ".",
        exception_hints={"RuntimeError": "a shape does not fit: " + layout + "."},
        section="2.2 `CustomCNNwithBN`" if bn else "2.1 `CustomCNN`",
        covers=covers,
    )


CUSTOM_CNN = _model_exercise("CustomCNN", bn=False)
CUSTOM_CNN_BN = _model_exercise("CustomCNNwithBN", bn=True)


def check_CustomCNN(CustomCNN, hidden: bool = False) -> None:
    """Check the ``CustomCNN`` class against the reference network (layers, outputs, one SGD step)."""
    check_on_one_thread(CUSTOM_CNN, CustomCNN, hidden)


def check_CustomCNNwithBN(CustomCNNwithBN, hidden: bool = False) -> None:
    """Check the ``CustomCNNwithBN`` class against the reference network with BatchNorm2d."""
    check_on_one_thread(CUSTOM_CNN_BN, CustomCNNwithBN, hidden)
