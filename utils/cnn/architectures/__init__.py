"""Checks for the CNN-architectures notebook (assignment ``cnn``).

Exercises and the student's classes / functions (every module is checked in eval mode, float64):

* ``LeNet5(in_channels=1, num_classes=10)``: conv1 (5×5, 6) → ReLU → max pool 2 → conv2 (5×5, 16) → ReLU →
  max pool 2 → flatten (16·4·4 = 256 on a 28×28 input) → fc1 (120) → ReLU → fc2 (84) → ReLU → fc3.
* ``VGGBlock(in_channels, out_channels, num_convs=2)``: ``convs`` (a ModuleList of 3×3 convs, padding 1), each
  followed by ReLU, then a 2×2 max pool (stride 2).
* ``BasicBlock(in_channels, out_channels, stride=1)``: must load the state_dict of
  ``torchvision.models.resnet.BasicBlock`` with ``downsample = Sequential(conv1x1(stride), BatchNorm2d)``
  whenever ``stride != 1`` or the channel count changes, and give the same output.
* ``AlexNet(num_classes=1000)``: must load the state_dict of ``torchvision.models.AlexNet``.
* ``SEBlock(channels, reduction=16)``: ``fc1 = Linear(C, C // r)``, ``fc2 = Linear(C // r, C)``; the output is
  ``x · sigmoid(fc2(relu(fc1(avgpool(x)))))``, compared with ``torchvision.ops.SqueezeExcitation``.
* ``SEResNet18(num_classes=10, reduction=16)``: the CIFAR-style ResNet-18 (3×3 stem, no max pool) whose
  basic blocks rescale their residual branch with an SE block before the addition; parameter names as
  in torchvision's ResNet plus ``se.fc1`` / ``se.fc2`` in every block.
* ``CNNClassifier(num_classes=10)``: the repaired classifier (3×3 convs with padding 1, BatchNorm, ReLU,
  max pool, twice; global average pooling; one Linear(128, num_classes) without activation).
* ``block_gradient_norms(blocks, x, grad_output) -> np.ndarray``: ‖∂L/∂h_k‖ for h_0 = x, h_k = blocks[k-1](h_{k-1}),
  with L = ⟨h_L, grad_output⟩; shape (len(blocks) + 1,).

Every module exercise has two kinds of cases: the parameter count of the student's module for a
configuration (the named structural mistakes are recognised here), then outputs on random inputs after
the student's module has loaded, with ``load_state_dict(strict=True)``, a state_dict built in the check
(torchvision's module under ``torch.random.fork_rng`` with a local seed where torchvision has one, the
reference implementation of this file otherwise; BatchNorm statistics randomised so that eval-mode
BatchNorm is not the identity). No check touches the global numpy or torch random generators.

When the student's parameter names or shapes differ from the state_dict's, ``call`` raises
:class:`ParameterMismatch`, which reaches the student as a failure report listing the names / shapes concerned
(weights that differ only by size-1 dimensions, a Linear layer written as a 1×1 convolution, are reshaped and
accepted). A student module whose forward calls torchvision's own BasicBlock, AlexNet or SqueezeExcitation
fails as "must be written from scratch" (``Exercise.forbidden``). ``call`` only runs the student's code and returns numpy arrays; references (``reference`` and the
mistake variants) are computed from the case inputs alone, so the trusted grader can run them outside the
student's kernel.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.checks.exercise import Case, Exercise, run_check
from utils.checks.compare import Tolerance, to_numpy
from utils.checks.feedback import show
from utils.checks.diagnose import Mistake
from utils.checks.seeding import case_rng

VALUES = Tolerance(atol=1e-10, rtol=1e-10)    # float64 on both sides: only summation order differs
COUNT = Tolerance(atol=1e-9, rtol=0.0)         # parameter counts are integers: exact


class ParameterMismatch(RuntimeError):
    """The student's state_dict has other names or shapes than the reference's (raised in ``call``, so it
    reaches the student as a report naming the parameters, like any other failure)."""


class VariantDoesNotApply(Exception):
    """A reference variant whose parameters differ from the case's state_dict: that mistake cannot be
    formed on this case (``diagnose.identify`` skips it). For the reference itself this is a bug in the check."""


# --------------------------------------------------------------------------- helpers


def _on_meta(build: Callable[[], nn.Module]) -> nn.Module:
    """A module built on the meta device: no memory, no initialisation, no random numbers."""
    with torch.device("meta"):
        return build()


def _count(module: nn.Module) -> np.ndarray:
    return np.array([float(sum(p.numel() for p in module.parameters()))])


def _build_student(cls, config: dict, double: bool = False) -> nn.Module:
    """The student's module; built on the meta device when possible (fast, no RNG), else on the CPU."""
    with torch.random.fork_rng(devices=[]):
        try:
            module = _on_meta(lambda: cls(**config))
            if not isinstance(module, nn.Module):
                return module
            return (module.double() if double else module).to_empty(device="cpu")
        except Exception:  # e.g. a shape computed with .item() in __init__: build it for real
            module = cls(**config)
            return module.double() if double and isinstance(module, nn.Module) else module


def _tensors(state: dict) -> dict:
    return {k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}


def _same_up_to_unit_dims(a: tuple, b: tuple) -> bool:
    """(8, 32) and (8, 32, 1, 1): a Linear layer and the equivalent 1×1 convolution."""
    return tuple(d for d in a if d != 1) == tuple(d for d in b if d != 1)


def _short(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f", … ({len(names)} in all)" if len(names) > 5 else "")


def _load(module: nn.Module, state: dict, reference_name: str) -> None:
    """``module.load_state_dict(state, strict=True)`` with a readable message when names or shapes differ.

    A weight whose shape differs only by dimensions of size 1 (a Linear layer written as a 1×1 convolution,
    as in torchvision's SqueezeExcitation) is reshaped: it computes the same function.
    """
    tensors = _tensors(state)
    own = module.state_dict()
    only_yours = [k for k in own if k not in tensors]
    only_expected = [k for k in tensors if k not in own]
    shapes = []
    for k in own:
        if k in tensors and tuple(own[k].shape) != tuple(tensors[k].shape):
            if _same_up_to_unit_dims(tuple(own[k].shape), tuple(tensors[k].shape)):
                tensors[k] = tensors[k].reshape(own[k].shape)
            else:
                shapes.append(f"{k}: yours {tuple(own[k].shape)}, expected {tuple(tensors[k].shape)}")
    if only_yours or only_expected or shapes:
        parts = []
        if only_expected:
            parts.append(f"expected but missing from your module: {_short(only_expected)}")
        if only_yours:
            parts.append(f"in your module but not expected: {_short(only_yours)}")
        if shapes:
            parts.append(f"different shapes: {_short(shapes)}")
        raise ParameterMismatch(f"your module's parameters do not match those of {reference_name}, so the check "
                                "cannot load its weights (load_state_dict(strict=True)); " + "; ".join(parts))
    module.load_state_dict(tensors, strict=True)


def _plain(value):
    """The student's result as a plain numpy array (a tensor is detached); anything else is left for
    ``compare`` to report (None, a string, a list of tensors, ...)."""
    array = to_numpy(value)
    return value if array is None else array


def _run_student(cls, inputs: dict, reference_name: str):
    """Build the student's module, load the case's weights, run it in eval mode, float64."""
    module = _build_student(cls, inputs["config"], double=True)
    if not isinstance(module, nn.Module):
        return module
    _load(module, inputs["state"], reference_name)
    module.eval()
    with torch.no_grad():
        return _plain(module(torch.from_numpy(np.array(inputs["x"]))))


def _run_reference(build: Callable[[], nn.Module], inputs: dict) -> np.ndarray:
    """``build()`` in float64 eval mode with the case's weights, on the case's input."""
    module = _on_meta(build)
    shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    if shapes != {k: np.shape(v) for k, v in inputs["state"].items()}:   # before allocating any memory
        raise VariantDoesNotApply("this variant has other parameters than the case's state_dict")
    module = module.double().to_empty(device="cpu")
    module.load_state_dict(_tensors(inputs["state"]), strict=True)
    module.eval()
    with torch.no_grad():
        return module(torch.from_numpy(np.array(inputs["x"]))).numpy()


def _random_state(build: Callable[[], nn.Module], rng: np.random.Generator, keep_float32: bool = False) -> dict:
    """The state_dict of ``build()`` initialised under fork_rng with a local seed, BatchNorm statistics randomised."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.integers(2 ** 62)))
        module = build()
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, c)))
                m.bias.copy_(torch.from_numpy(rng.normal(0.0, 0.2, c)))
                m.running_mean.copy_(torch.from_numpy(rng.normal(0.0, 0.2, c)))
                m.running_var.copy_(torch.from_numpy(rng.uniform(0.5, 2.0, c)))
    state = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    if not keep_float32:
        state = {k: v.astype(np.float64) if np.issubdtype(v.dtype, np.floating) else v for k, v in state.items()}
    return state


_STATE_CACHE: "OrderedDict[tuple, tuple]" = OrderedDict()
_STATE_CACHE_BYTES = 400 * 2 ** 20   # one AlexNet (61 M float32 weights) and the small ones


def _nbytes(entry: tuple) -> int:
    state, x = entry
    return sum(np.asarray(v).nbytes for v in state.values()) + x.nbytes


def _describe_config(config: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items())


def _module_cases(name: str, build: Callable[..., nn.Module], counts: list[dict], outputs: list[tuple],
                  hidden_counts: list[dict], hidden_outputs: list[tuple], hidden: bool,
                  keep_float32: bool = False) -> list[Case]:
    """Parameter-count cases, then output cases ``(config, input shape)`` with weights from ``build``."""
    cases = []
    all_counts = counts + (hidden_counts if hidden else [])
    all_outputs = [(o, "") for o in outputs] + ([(o, "hidden") for o in hidden_outputs] if hidden else [])
    for config in all_counts:
        expected = int(_count(_on_meta(lambda: build(**config)))[0])
        cases.append(Case(f"number of parameters of {name}({_describe_config(config)}), expected {expected:,}",
                          {"kind": "count", "config": config}, lambda index: "the parameter count"))
    for number, ((config, shape), salt) in enumerate(all_outputs, start=1):
        # building AlexNet's weights takes a second: keep the last ones. The key is a draw of the case's
        # generator, so it also changes with the grading salt that seeding.case_rng mixes in.
        key = (name, number, salt, int(case_rng(name, number, salt).integers(2 ** 62)))
        if key not in _STATE_CACHE:
            rng = case_rng(name, number, salt)
            _STATE_CACHE[key] = (_random_state(lambda: build(**config), rng, keep_float32), rng.normal(size=shape))
            while len(_STATE_CACHE) > 1 and sum(map(_nbytes, _STATE_CACHE.values())) > _STATE_CACHE_BYTES:
                _STATE_CACHE.popitem(last=False)   # the oldest first, never the entry just made
        state, x = _STATE_CACHE[key]
        cases.append(Case(f"{name}({_describe_config(config)}) in eval mode with the check's weights, "
                          f"input of shape {shape}", {"kind": "output", "config": config, "state": state, "x": x},
                          lambda index: f"output[{', '.join(map(str, index))}]"))
    return cases


def _module_exercise(function: str, reference_name: str, build: Callable[..., nn.Module],
                     make_cases: Callable[[bool], list[Case]], mistakes: list[tuple], hint: str,
                     forbidden: tuple[str, ...] = ()) -> Exercise:
    """An exercise on an nn.Module class; ``mistakes`` are (name, hint, variant keywords for ``build``);
    ``forbidden``: torchvision's own modules, which the student's module must not call (Exercise.forbidden)."""

    def reference(inputs):
        if inputs["kind"] == "count":
            return _count(_on_meta(lambda: build(**inputs["config"])))
        return _run_reference(lambda: build(**inputs["config"]), inputs)

    def call(cls, inputs):
        if inputs["kind"] == "count":
            module = _build_student(cls, inputs["config"])
            return _count(module) if isinstance(module, nn.Module) else module
        return _run_student(cls, inputs, reference_name)

    def variant(kw):
        def compute(inputs):
            if inputs["kind"] == "count":
                return _count(_on_meta(lambda: build(**inputs["config"], **kw)))
            return _run_reference(lambda: build(**inputs["config"], **kw), inputs)
        return compute

    return Exercise(
        function=function, reference_name=reference_name, make_cases=make_cases, reference=reference, call=call,
        mistakes=[Mistake(name, mhint, variant(kw)) for name, mhint, kw in mistakes],
        tolerance=VALUES, hint=hint, forbidden=forbidden,
        exception_hints={
            "ParameterMismatch": "use the attribute names and layer order given in the exercise: the check loads "
                                 "its weights into your module by name.",
            "RuntimeError": "print the shape of the tensor after every layer of your forward on the case's input: "
                            "a mismatch usually means a wrong in_features or channel count.",
        })


class _Flatten(nn.Module):
    def forward(self, x):
        return torch.flatten(x, 1)


def _activation(name: str):
    return {"relu": F.relu, "tanh": torch.tanh, "none": lambda t: t,
            "softmax": lambda t: F.softmax(t, dim=1)}[name]


# --------------------------------------------------------------------------- LeNet-5


class LeNet5Reference(nn.Module):
    """LeNet-5 with ReLU and max pooling (the variant with 44,426 parameters on 1×28×28 inputs)."""

    def __init__(self, in_channels=1, num_classes=10, pool="max", act="relu", final="none", flat=16 * 4 * 4):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(flat, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)
        self.pool = nn.MaxPool2d(2, 2) if pool == "max" else nn.AvgPool2d(2, 2)
        self.act, self.final = _activation(act), _activation(final)

    def forward(self, x):
        x = self.pool(self.act(self.conv1(x)))
        x = self.pool(self.act(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = self.act(self.fc1(x))
        x = self.act(self.fc2(x))
        return self.final(self.fc3(x))


_FINAL_ACTIVATION = ("activation on the final classifier layer: the last Linear must return raw scores (logits)",
                     "nn.CrossEntropyLoss applies log-softmax itself; a ReLU (or softmax) after the last layer "
                     "clips negative logits or squashes them.")

LENET = _module_exercise(
    "LeNet5", "LeNet-5 with max pooling (reference in utils.cnn.architectures)", LeNet5Reference,
    lambda hidden: _module_cases(
        "LeNet5", LeNet5Reference,
        counts=[dict(in_channels=1, num_classes=10)], outputs=[(dict(in_channels=1, num_classes=10), (2, 1, 28, 28)),
                                                               (dict(in_channels=3, num_classes=5), (3, 3, 28, 28))],
        hidden_counts=[dict(in_channels=3, num_classes=7)],
        hidden_outputs=[(dict(in_channels=2, num_classes=4), (2, 2, 28, 28))], hidden=hidden),
    [("LeNet with average pooling instead of max pooling", "use nn.MaxPool2d(2, 2) (or F.max_pool2d) after each "
      "convolution's ReLU; nn.AvgPool2d was the 1998 subsampling layer.", dict(pool="avg")),
     ("wrong flatten size: 16·5·5 = 400 is the flatten size for 32×32 inputs; on 28×28 inputs the last pooling "
      "gives 16×4×4 = 256", "follow the shapes: 28 → conv 5×5 → 24 → pool → 12 → conv 5×5 → 8 → pool → 4.",
      dict(flat=16 * 5 * 5)),
     ("tanh activations (the 1998 LeNet) instead of ReLU", "use ReLU after conv1, conv2, fc1 and fc2.",
      dict(act="tanh")),
     (*_FINAL_ACTIVATION, dict(final="relu")),
     ("softmax on the output: " + _FINAL_ACTIVATION[0], _FINAL_ACTIVATION[1], dict(final="softmax"))],
    hint="conv1 → ReLU → max pool → conv2 → ReLU → max pool → flatten → fc1 → ReLU → fc2 → ReLU → fc3 (no activation).")

# --------------------------------------------------------------------------- VGG block


class VGGBlockReference(nn.Module):
    def __init__(self, in_channels, out_channels, num_convs=2, padding=1, pool="max", last_relu=True):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3,
                                             padding=padding) for i in range(num_convs))
        self.pool = {"max": nn.MaxPool2d(2, 2), "avg": nn.AvgPool2d(2, 2), "none": nn.Identity()}[pool]
        self.last_relu = last_relu

    def forward(self, x):
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if self.last_relu or i < len(self.convs) - 1:
                x = F.relu(x)
        return self.pool(x)


VGG = _module_exercise(
    "VGGBlock", "a VGG block (reference in utils.cnn.architectures)", VGGBlockReference,
    lambda hidden: _module_cases(
        "VGGBlock", VGGBlockReference,
        counts=[dict(in_channels=3, out_channels=8, num_convs=2), dict(in_channels=8, out_channels=16, num_convs=3)],
        outputs=[(dict(in_channels=3, out_channels=8, num_convs=2), (2, 3, 8, 8)),
                 (dict(in_channels=4, out_channels=6, num_convs=3), (1, 4, 7, 9))],
        hidden_counts=[dict(in_channels=5, out_channels=5, num_convs=1)],
        hidden_outputs=[(dict(in_channels=5, out_channels=7, num_convs=1), (3, 5, 10, 6))], hidden=hidden),
    [("the 3×3 convolutions have no padding: a VGG block keeps the size until the pooling",
      "nn.Conv2d(..., kernel_size=3, padding=1).", dict(padding=0)),
     ("the max pooling at the end of the block is missing", "finish with nn.MaxPool2d(kernel_size=2, stride=2).",
      dict(pool="none")),
     ("average pooling instead of max pooling", "VGG uses nn.MaxPool2d(2, 2).", dict(pool="avg")),
     ("no ReLU after the last convolution", "every convolution is followed by a ReLU, the last one too.",
      dict(last_relu=False))],
    hint="for each conv in self.convs: x = relu(conv(x)); then a 2×2 max pool with stride 2.")

# --------------------------------------------------------------------------- ResNet BasicBlock


def torchvision_basic_block(in_channels, out_channels, stride=1) -> nn.Module:
    """``torchvision.models.resnet.BasicBlock`` with the projection shortcut when the shape changes."""
    from torchvision.models.resnet import BasicBlock, conv1x1
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))
    return BasicBlock(in_channels, out_channels, stride, downsample)


class BasicBlockVariant(nn.Module):
    """The basic block with the switches of the mistake catalogue (torchvision's names and layout)."""

    def __init__(self, in_channels, out_channels, stride=1, projection=True, shortcut_bn=True,
                 relu_before_add=False, stride_in="conv1", conv_bias=False):
        super().__init__()
        s1, s2 = (stride, 1) if stride_in == "conv1" else (1, stride)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, s1, 1, bias=conv_bias)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, s2, 1, bias=conv_bias)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if projection and (stride != 1 or in_channels != out_channels):
            layers = [nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)]
            if shortcut_bn:
                layers.append(nn.BatchNorm2d(out_channels))
            self.downsample = nn.Sequential(*layers)
        self.relu_before_add = relu_before_add

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.relu_before_add:
            return F.relu(out) + identity
        return F.relu(out + identity)


def _basic_block_build(in_channels, out_channels, stride=1, **variant):
    if not variant:
        return torchvision_basic_block(in_channels, out_channels, stride)
    return BasicBlockVariant(in_channels, out_channels, stride, **variant)


# torchvision's own modules, which the answers must not call: they are what the answers are compared with.
_TORCHVISION_BLOCKS = ("torchvision.models.resnet.BasicBlock", "torchvision.models.resnet.Bottleneck")
_TORCHVISION_SE = ("torchvision.ops.misc.SqueezeExcitation",)

_NO_PROJECTION = ("no projection shortcut when the shape changes (stride ≠ 1 or C_in ≠ C_out)",
                  "then the shortcut must be downsample = nn.Sequential(nn.Conv2d(C_in, C_out, 1, stride=stride, "
                  "bias=False), nn.BatchNorm2d(C_out)); check both conditions, not only the channels.")
_RELU_BEFORE_ADD = ("ReLU before the addition instead of after it",
                    "out = bn2(conv2(...)); out = out + identity; out = relu(out): the last ReLU acts on the sum.")

BASIC_BLOCK = _module_exercise(
    "BasicBlock", "torchvision.models.resnet.BasicBlock", _basic_block_build,
    lambda hidden: _module_cases(
        "BasicBlock", _basic_block_build,
        counts=[dict(in_channels=16, out_channels=16, stride=1), dict(in_channels=16, out_channels=32, stride=2),
                dict(in_channels=16, out_channels=16, stride=2), dict(in_channels=8, out_channels=24, stride=1)],
        outputs=[(dict(in_channels=8, out_channels=8, stride=1), (2, 8, 6, 6)),
                 (dict(in_channels=8, out_channels=16, stride=2), (2, 8, 8, 8)),
                 (dict(in_channels=6, out_channels=12, stride=1), (1, 6, 5, 7))],
        hidden_counts=[dict(in_channels=32, out_channels=64, stride=2)],
        hidden_outputs=[(dict(in_channels=8, out_channels=8, stride=2), (2, 8, 7, 9)),
                        (dict(in_channels=4, out_channels=12, stride=2), (1, 4, 9, 9))], hidden=hidden),
    [(*_NO_PROJECTION, dict(projection=False)),
     ("BatchNorm missing in the shortcut: the projection is a 1×1 conv followed by BatchNorm2d",
      "downsample = nn.Sequential(nn.Conv2d(C_in, C_out, 1, stride=stride, bias=False), nn.BatchNorm2d(C_out)).",
      dict(shortcut_bn=False)),
     (*_RELU_BEFORE_ADD, dict(relu_before_add=True)),
     ("the stride is applied in the second 3×3 convolution instead of the first",
      "conv1 = nn.Conv2d(C_in, C_out, 3, stride=stride, padding=1, bias=False); conv2 has stride 1.",
      dict(stride_in="conv2")),
     ("the 3×3 convolutions have a bias: in a ResNet they are followed by BatchNorm and use bias=False",
      "nn.Conv2d(..., bias=False): BatchNorm's β already is the bias.", dict(conv_bias=True))],
    hint="out = relu(bn1(conv1(x))); out = bn2(conv2(out)); out = relu(out + (x if downsample is None else "
         "downsample(x))); conv1 carries the stride.",
    forbidden=_TORCHVISION_BLOCKS)

# --------------------------------------------------------------------------- AlexNet


class AlexNetVariant(nn.Module):
    """torchvision's AlexNet layout with the switches of the mistake catalogue."""

    def __init__(self, num_classes=1000, conv1_padding=2, flat=256 * 6 * 6, final="none", pool_size=6):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, conv1_padding), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))
        self.avgpool = nn.AdaptiveAvgPool2d((pool_size, pool_size))
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Linear(flat, 4096), nn.ReLU(), nn.Dropout(0.5),
                                        nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, num_classes))
        self.final = _activation(final)

    def forward(self, x):
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.final(self.classifier(x))


def _alexnet_build(num_classes=1000, **variant):
    if not variant:
        from torchvision.models import AlexNet
        return AlexNet(num_classes=num_classes)
    return AlexNetVariant(num_classes, **variant)


ALEXNET = _module_exercise(
    "AlexNet", "torchvision.models.AlexNet", _alexnet_build,
    lambda hidden: _module_cases(
        "AlexNet", _alexnet_build, counts=[dict(num_classes=1000), dict(num_classes=10)],
        outputs=[(dict(num_classes=10), (1, 3, 224, 224))],
        hidden_counts=[dict(num_classes=37)], hidden_outputs=[],
        hidden=hidden, keep_float32=True),
    [("wrong flatten size: after the features and AdaptiveAvgPool2d((6, 6)) there are 256·6·6 = 9216 features, "
      "not 256·5·5", "classifier[1] = nn.Linear(256 * 6 * 6, 4096).", dict(flat=256 * 5 * 5)),
     ("wrong flatten size: 256·13·13 is the size before the last max pool",
      "classifier[1] = nn.Linear(256 * 6 * 6, 4096), after the last max pool and the adaptive pooling.",
      dict(flat=256 * 13 * 13)),
     (*_FINAL_ACTIVATION, dict(final="relu")),
     ("the first convolution has no padding: torchvision's AlexNet uses Conv2d(3, 64, 11, stride=4, padding=2)",
      "features[0] = nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2).", dict(conv1_padding=0))],
    hint="copy torchvision's layout: features (5 convs with ReLUs, 3 max pools at indices 2, 5, 12), "
         "avgpool = AdaptiveAvgPool2d((6, 6)), classifier = Dropout, Linear(9216, 4096), ReLU, Dropout, "
         "Linear(4096, 4096), ReLU, Linear(4096, num_classes).",
    forbidden=("torchvision.models.alexnet.AlexNet",))

# --------------------------------------------------------------------------- Squeeze-and-Excitation


class SEBlockReference(nn.Module):
    """x · sigmoid(fc2(relu(fc1(avgpool(x))))), with the switches of the mistake catalogue."""

    def __init__(self, channels, reduction=16, pool="avg", gate="sigmoid", hidden="ratio", returns="scaled"):
        super().__init__()
        h = {"ratio": channels // reduction, "reduction": reduction, "channels": channels}[hidden]
        self.fc1 = nn.Linear(channels, h)
        self.fc2 = nn.Linear(h, channels)
        self.pool, self.gate, self.returns = pool, gate, returns

    def forward(self, x):
        z = x.mean(dim=(2, 3)) if self.pool == "avg" else x.amax(dim=(2, 3))
        s = self.fc2(F.relu(self.fc1(z)))
        s = {"sigmoid": torch.sigmoid, "none": lambda t: t, "softmax": lambda t: F.softmax(t, dim=1)}[self.gate](s)
        s = s[:, :, None, None]
        return x * s if self.returns == "scaled" else s


class TorchvisionSE(nn.Module):
    """``torchvision.ops.SqueezeExcitation`` seen through the exercise's naming.

    torchvision computes the two Linear layers as 1×1 convolutions; its ``state_dict`` / ``load_state_dict``
    are exposed here with the exercise's shapes ``fc1.weight (C // r, C)`` and ``fc2.weight (C, C // r)``,
    so that the check's weights load into the reference exactly as into the student's module.
    """

    def __init__(self, channels, reduction=16):
        super().__init__()
        from torchvision.ops import SqueezeExcitation
        self.se = SqueezeExcitation(channels, channels // reduction)

    def state_dict(self, *args, **kwargs):
        return OrderedDict((k, v.flatten(1) if k.endswith("weight") else v)
                           for k, v in self.se.state_dict(*args, **kwargs).items())

    def load_state_dict(self, state, strict=True, assign=False):
        conv = {k: (v[:, :, None, None] if k.endswith("weight") else v) for k, v in state.items()}
        return self.se.load_state_dict(conv, strict=strict, assign=assign)

    def forward(self, x):
        return self.se(x)


def _se_build(channels, reduction=16, **variant):
    return SEBlockReference(channels, reduction, **variant)


def _se_reference_build(channels, reduction=16, **variant):
    return TorchvisionSE(channels, reduction) if not variant else SEBlockReference(channels, reduction, **variant)


SE_BLOCK = _module_exercise(
    "SEBlock", "torchvision.ops.SqueezeExcitation", _se_reference_build,
    lambda hidden: _module_cases(
        "SEBlock", _se_build,
        counts=[dict(channels=64, reduction=16), dict(channels=32, reduction=4)],
        outputs=[(dict(channels=16, reduction=4), (2, 16, 5, 5)), (dict(channels=32, reduction=8), (1, 32, 3, 4))],
        hidden_counts=[dict(channels=48, reduction=3)],
        hidden_outputs=[(dict(channels=24, reduction=3), (3, 24, 4, 6))], hidden=hidden),
    [("SE using max instead of average pooling in the squeeze step",
      "squeeze = global *average* pooling: z = x.mean(dim=(2, 3)).", dict(pool="max")),
     ("SE without the sigmoid: the channel weights must be gated into (0, 1)",
      "s = torch.sigmoid(self.fc2(torch.relu(self.fc1(z)))).", dict(gate="none")),
     ("softmax instead of sigmoid: SE gates every channel independently, they need not sum to 1",
      "use torch.sigmoid, not softmax over the channels.", dict(gate="softmax")),
     ("SE reduction ratio wrong: the hidden layer has C // reduction units, not `reduction` units",
      "fc1 = nn.Linear(channels, channels // reduction); fc2 = nn.Linear(channels // reduction, channels).",
      dict(hidden="reduction")),
     ("SE reduction ratio wrong: the hidden layer has C // reduction units, not C (no bottleneck)",
      "fc1 = nn.Linear(channels, channels // reduction).", dict(hidden="channels")),
     ("the block returns the channel weights s instead of the rescaled input x · s",
      "return x * s with s of shape (N, C, 1, 1).", dict(returns="gates"))],
    hint="z = x.mean(dim=(2, 3)); s = sigmoid(fc2(relu(fc1(z)))); return x * s[:, :, None, None].",
    forbidden=_TORCHVISION_SE)

# --------------------------------------------------------------------------- SE-ResNet-18


class SEBasicBlockReference(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1, reduction=16, se_after_add=False, projection=True,
                 se_hidden="ratio", se_pool="avg"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.se = SEBlockReference(out_channels, reduction, hidden=se_hidden, pool=se_pool)
        self.downsample = None
        if projection and (stride != 1 or in_channels != out_channels):
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_channels))
        self.se_after_add = se_after_add

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.se_after_add:
            return F.relu(self.se(out + identity))
        return F.relu(self.se(out) + identity)


class SEResNet18Reference(nn.Module):
    """CIFAR-style ResNet-18 with SE in every basic block (torchvision's parameter names)."""

    def __init__(self, num_classes=10, reduction=16, stem="cifar", **block_variant):
        super().__init__()
        if stem == "cifar":
            self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.stem = stem
        channels = 64
        for i, (width, stride) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)], start=1):
            blocks = [SEBasicBlockReference(channels, width, stride, reduction, **block_variant),
                      SEBasicBlockReference(width, width, 1, reduction, **block_variant)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            channels = width
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        if self.stem != "cifar":
            x = F.max_pool2d(x, 3, 2, 1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


SE_RESNET = _module_exercise(
    "SEResNet18", "an SE-ResNet-18 (reference in utils.cnn.architectures)", SEResNet18Reference,
    lambda hidden: _module_cases(
        "SEResNet18", SEResNet18Reference,
        counts=[dict(num_classes=10, reduction=16), dict(num_classes=100, reduction=8)],
        outputs=[(dict(num_classes=10, reduction=16), (1, 3, 16, 16))],
        hidden_counts=[dict(num_classes=7, reduction=4)],
        hidden_outputs=[(dict(num_classes=5, reduction=8), (1, 3, 12, 20))], hidden=hidden, keep_float32=True),
    [(*_NO_PROJECTION, dict(projection=False)),
     ("SE reduction ratio wrong: the hidden layer has C // reduction units, not `reduction` units",
      "se = SEBlock(out_channels, reduction) with fc1 = nn.Linear(C, C // reduction).", dict(se_hidden="reduction")),
     ("SE applied after the addition: it must rescale the residual branch before the shortcut is added",
      "out = bn2(conv2(...)); out = se(out); out = relu(out + identity).", dict(se_after_add=True)),
     ("SE using max instead of average pooling in the squeeze step", "z = x.mean(dim=(2, 3)).",
      dict(se_pool="max")),
     ("ImageNet stem (7×7 stride-2 conv + max pool) instead of the CIFAR stem",
      "conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False), no max pool.", dict(stem="imagenet"))],
    hint="conv1 (3×3, 64) → bn1 → ReLU → layer1..layer4 (two SE basic blocks each, widths 64, 128, 256, 512, "
         "strides 1, 2, 2, 2) → global average pool → fc; in each block out = relu(se(bn2(conv2(relu(bn1(conv1(x)))))) "
         "+ shortcut(x)).",
    forbidden=_TORCHVISION_BLOCKS + _TORCHVISION_SE + ("torchvision.models.resnet.ResNet",))

# --------------------------------------------------------------------------- the repaired CNN classifier


class CNNClassifierReference(nn.Module):
    def __init__(self, num_classes=10, padding=1, batchnorm=True, final="none", flat=128):
        super().__init__()
        bn = (lambda c: nn.BatchNorm2d(c)) if batchnorm else (lambda c: nn.Identity())
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, padding=padding), bn(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=padding), bn(128), nn.ReLU(), nn.MaxPool2d(2))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Linear(flat, num_classes)
        self.final = _activation(final)

    def forward(self, x):
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.final(self.classifier(x))


CLASSIFIER = _module_exercise(
    "CNNClassifier", "the repaired classifier of scenario D (reference in utils.cnn.architectures)",
    CNNClassifierReference,
    lambda hidden: _module_cases(
        "CNNClassifier", CNNClassifierReference,
        counts=[dict(num_classes=10), dict(num_classes=3)],
        outputs=[(dict(num_classes=10), (2, 3, 32, 32)), (dict(num_classes=4), (1, 3, 29, 43))],
        hidden_counts=[dict(num_classes=100)],
        hidden_outputs=[(dict(num_classes=10), (1, 3, 64, 80))], hidden=hidden),
    [(*_FINAL_ACTIVATION, dict(final="relu")),
     ("softmax on the output: " + _FINAL_ACTIVATION[0], _FINAL_ACTIVATION[1], dict(final="softmax")),
     ("wrong flatten size: after AdaptiveAvgPool2d((1, 1)) there are 128 features, not 128·56·56",
      "self.classifier = nn.Linear(128, num_classes): the global pooling removes the spatial size.",
      dict(flat=128 * 56 * 56)),
     ("wrong flatten size: 128·54·54 is the flatten size of the unrepaired network on 224×224 inputs",
      "with global average pooling the classifier sees 128 features, whatever the input size.",
      dict(flat=128 * 54 * 54)),
     ("the 3×3 convolutions still have no padding", "nn.Conv2d(3, 64, 3, padding=1) and "
      "nn.Conv2d(64, 128, 3, padding=1).", dict(padding=0)),
     ("BatchNorm2d missing after the convolutions", "features = Conv, BatchNorm2d, ReLU, MaxPool, Conv, "
      "BatchNorm2d, ReLU, MaxPool (indices 0–7).", dict(batchnorm=False))],
    hint="features = [Conv2d(3, 64, 3, padding=1), BatchNorm2d(64), ReLU, MaxPool2d(2), Conv2d(64, 128, 3, "
         "padding=1), BatchNorm2d(128), ReLU, MaxPool2d(2)]; avgpool = AdaptiveAvgPool2d((1, 1)); "
         "classifier = Linear(128, num_classes); forward returns the raw scores.")

# --------------------------------------------------------------------------- gradient flow


class PlainBlock(nn.Module):
    """conv 3×3 → ReLU → conv 3×3 → ReLU, no skip connection."""

    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return F.relu(self.conv2(F.relu(self.conv1(x))))


class ResidualBlock(PlainBlock):
    """The same two convolutions with an identity skip connection: relu(x + F(x))."""

    def forward(self, x):
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


def gradient_network(kind: str, depth: int, channels: int) -> nn.Sequential:
    block = PlainBlock if kind == "plain" else ResidualBlock
    return nn.Sequential(*[block(channels) for _ in range(depth)])


def gradient_norms_numpy(blocks: nn.Module, x: np.ndarray, grad_output: np.ndarray, *, metric="l2",
                         upstream="given", order="input_first", include_output=True) -> np.ndarray:
    """‖∂L/∂h_k‖ for k = 0..L with autograd in float64; the keywords reproduce known mistakes."""
    h = [torch.from_numpy(np.array(x)).requires_grad_()]
    for block in blocks:
        h.append(block(h[-1]))
    g = torch.from_numpy(np.array(grad_output))
    if upstream == "sum":
        g = torch.ones_like(h[-1])
    elif upstream == "mean":
        g = torch.ones_like(h[-1]) / h[-1].numel()
    grads = torch.autograd.grad(h[-1], h, g)
    values = {"l2": lambda t: t.norm(), "mean_abs": lambda t: t.abs().mean(),
              "squared": lambda t: (t ** 2).sum()}[metric]
    norms = np.array([float(values(t)) for t in grads])
    if not include_output:
        norms = norms[:-1]
    return norms[::-1].copy() if order == "output_first" else norms


def _gradient_cases(hidden: bool) -> list[Case]:
    settings = [("plain", 1, 2, (1, 2, 3, 3)), ("residual", 3, 3, (2, 3, 4, 4)), ("plain", 4, 3, (2, 3, 5, 4))]
    if hidden:
        settings += [("residual", 6, 2, (1, 2, 6, 6)), ("plain", 2, 4, (3, 4, 3, 5))]
    cases = []
    for number, (kind, depth, channels, shape) in enumerate(settings, start=1):
        rng = case_rng("block_gradient_norms", number, "hidden" if number > 3 else "")
        state = _random_state(lambda: gradient_network(kind, depth, channels), rng)
        cases.append(Case(
            f"{depth} {kind} block{'s' if depth > 1 else ''} of {channels} channels, input {shape}, "
            "random grad_output", {"kind": kind, "depth": depth, "channels": channels, "state": state,
                                   "x": rng.normal(size=shape), "grad_output": rng.normal(size=shape)},
            lambda index: f"norm of ∂L/∂h_{index[0]}"))
    return cases


def _gradient_blocks(inputs) -> nn.Sequential:
    """The case's network (the test input, not a reference), float64."""
    net = _on_meta(lambda: gradient_network(inputs["kind"], inputs["depth"], inputs["channels"]))
    net = net.to_empty(device="cpu").double()
    net.load_state_dict(_tensors(inputs["state"]))
    return net


def _gradient_call(fn, inputs):
    blocks = _gradient_blocks(inputs)
    return _plain(fn(blocks, torch.from_numpy(np.array(inputs["x"])),
                     torch.from_numpy(np.array(inputs["grad_output"]))))


def _gradient_variant(**kw):
    return lambda inputs: gradient_norms_numpy(_gradient_blocks(inputs), inputs["x"], inputs["grad_output"], **kw)


GRADIENT = Exercise(
    function="block_gradient_norms",
    reference_name="‖∂L/∂h_k‖ computed with torch.autograd.grad",
    make_cases=_gradient_cases,
    reference=_gradient_variant(),
    call=_gradient_call,
    mistakes=[
        Mistake("mean of |gradient| instead of the L2 norm", "use g.norm() (the square root of the sum of squares) "
                "for each ∂L/∂h_k.", _gradient_variant(metric="mean_abs")),
        Mistake("squared norm: the square root is missing", "g.norm() = sqrt((g ** 2).sum()).",
                _gradient_variant(metric="squared")),
        Mistake("grad_output is ignored: you back-propagated h_L.sum() instead of ⟨h_L, grad_output⟩",
                "h_L.backward(grad_output) or torch.autograd.grad(h_L, hs, grad_output).",
                _gradient_variant(upstream="sum")),
        Mistake("grad_output is ignored: you back-propagated h_L.mean() instead of ⟨h_L, grad_output⟩",
                "h_L.backward(grad_output) or torch.autograd.grad(h_L, hs, grad_output).",
                _gradient_variant(upstream="mean")),
        Mistake("the norms are in reverse order: index 0 must be the network's input x = h_0",
                "return [‖∂L/∂h_0‖, ‖∂L/∂h_1‖, …, ‖∂L/∂h_L‖].", _gradient_variant(order="output_first")),
        Mistake("the last entry ‖∂L/∂h_L‖ (= ‖grad_output‖) is missing: there are len(blocks) + 1 activations",
                "include h_0 = x and every block's output h_1 … h_L.", _gradient_variant(include_output=False)),
    ],
    tolerance=Tolerance(atol=1e-9, rtol=1e-8),
    hint="hs = [x.requires_grad_()]; for block in blocks: hs.append(block(hs[-1])); "
         "grads = torch.autograd.grad(hs[-1], hs, grad_output); return np.array([g.norm().item() for g in grads]).",
    exception_hints={"RuntimeError": "call retain_grad() on intermediate activations, or use "
                                     "torch.autograd.grad(h_L, [h_0, …, h_L], grad_output)."},
)

EXERCISES = {e.function: e for e in (LENET, VGG, BASIC_BLOCK, ALEXNET, SE_BLOCK, SE_RESNET, CLASSIFIER, GRADIENT)}


# --------------------------------------------------------------------------- check functions


def check_LeNet5(LeNet5, hidden: bool = False) -> None:
    """Check the class ``LeNet5(in_channels=1, num_classes=10)``: parameter count and outputs."""
    show(run_check(LENET, LeNet5, hidden))


def check_VGGBlock(VGGBlock, hidden: bool = False) -> None:
    """Check the class ``VGGBlock(in_channels, out_channels, num_convs=2)``."""
    show(run_check(VGG, VGGBlock, hidden))


def check_BasicBlock(BasicBlock, hidden: bool = False) -> None:
    """Check ``BasicBlock(in_channels, out_channels, stride=1)`` against torchvision's BasicBlock."""
    show(run_check(BASIC_BLOCK, BasicBlock, hidden))


def check_AlexNet(AlexNet, hidden: bool = False) -> None:
    """Check ``AlexNet(num_classes=1000)`` against ``torchvision.models.AlexNet``."""
    show(run_check(ALEXNET, AlexNet, hidden))


def check_SEBlock(SEBlock, hidden: bool = False) -> None:
    """Check ``SEBlock(channels, reduction=16)`` against ``torchvision.ops.SqueezeExcitation``."""
    show(run_check(SE_BLOCK, SEBlock, hidden))


def check_SEResNet18(SEResNet18, hidden: bool = False) -> None:
    """Check ``SEResNet18(num_classes=10, reduction=16)``."""
    show(run_check(SE_RESNET, SEResNet18, hidden))


def check_CNNClassifier(CNNClassifier, hidden: bool = False) -> None:
    """Check the repaired ``CNNClassifier(num_classes=10)``."""
    show(run_check(CLASSIFIER, CNNClassifier, hidden))


def check_block_gradient_norms(block_gradient_norms, hidden: bool = False) -> None:
    """Check ``block_gradient_norms(blocks, x, grad_output)``."""
    show(run_check(GRADIENT, block_gradient_norms, hidden))
