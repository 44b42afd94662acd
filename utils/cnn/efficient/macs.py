"""``count_macs(model, input_shape) -> dict``: the multiply–accumulates of one forward pass, per layer.

The answer maps the name of every ``nn.Conv2d`` and ``nn.Linear`` of ``model`` (as ``model.named_modules()``
names it, e.g. ``"blocks.0.dw_conv"``) to the multiply–accumulates (MACs) that layer performs on a batch of
shape ``input_shape = (N, C, H, W)``:

* Conv2d: ``N · C_out · H_out · W_out · (C_in / groups) · k_h · k_w`` (stride, padding and dilation enter
  through H_out and W_out only; padded zeros are multiplied like any other input);
* Linear: ``(number of input rows) · in_features · out_features``;
* a bias is an addition without a multiplication: it is not a MAC.

The reference is measured at check time with ``torch.utils.flop_counter.FlopCounterMode`` on the same model
(its FLOPs are 2 × MACs), per layer. The networks are built in the check from a name and a configuration
(:func:`build_network`): a small CNN with a grouped dilated convolution, a stack of depthwise-separable
blocks with a 7×7 depthwise kernel, and a network of inverted residual blocks whose SE layers are Linear or
1×1 convolutions. The known mistakes are the same count with one rule broken (:func:`counted_macs`).
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn

from utils.checks.adapters import numbers
from utils.checks.characterise import Layout
from utils.checks.compare import EXACT
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.rules import RuleBroken, is_integer, kept_unchanged
from utils.cnn.efficient.depthwise_separable import SeparableReference
from utils.cnn.efficient.inverted_residual import InvertedResidualVariant

_FLOP_COUNTER = ("torch.utils.flop_counter.FlopCounterMode.__enter__",)
RULE = ("count_macs returns a dict with one entry per nn.Conv2d and nn.Linear layer of the model, keyed by "
        "its name in model.named_modules() (section 3's task)")
MODEL_RULE = "count_macs leaves the model as it found it: its weights, its train/eval mode, no hooks left on it"
INT_RULE = "each MAC count is an int (section 3's task)"


class LinearSE(nn.Module):
    """An SE block whose two layers are ``nn.Linear`` on the pooled (N, C) summaries."""

    def __init__(self, channels, squeeze):
        super().__init__()
        self.fc1 = nn.Linear(channels, squeeze)
        self.fc2 = nn.Linear(squeeze, channels)

    def forward(self, x):
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3))))))
        return x * s[:, :, None, None]


def _head(channels: int, classes: int) -> list:
    return [("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()), ("fc", nn.Linear(channels, classes))]


def build_network(name: str, config: dict) -> nn.Module:
    """One of the check's networks (``"small_cnn"``, ``"separable"``, ``"mbconv"``) for a configuration."""
    c = config["width"]
    if name == "small_cnn":
        layers = [("conv1", nn.Conv2d(config["in_channels"], c, 3, padding=1)), ("relu1", nn.ReLU()),
                  ("conv2", nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=False)), ("bn2", nn.BatchNorm2d(2 * c)),
                  ("relu2", nn.ReLU()),
                  ("grouped", nn.Conv2d(2 * c, 2 * c, 3, dilation=config["dilation"], groups=config["groups"])),
                  ("relu3", nn.ReLU()),
                  ("wide", nn.Conv2d(2 * c, c, (1, 5), padding=(0, 2)))] + _head(c, config["classes"])
    elif name == "separable":
        layers = [("stem", nn.Conv2d(config["in_channels"], c, 3, stride=2, padding=1, bias=False)),
                  ("block1", SeparableReference(c, 2 * c, 3, dilation=config["dilation"])),
                  ("block2", SeparableReference(2 * c, 2 * c, 7, stride=2)),
                  ("block3", SeparableReference(2 * c, 3 * c, 5, stride=2, padding=0))] + _head(3 * c,
                                                                                               config["classes"])
    elif name == "mbconv":
        block1 = InvertedResidualVariant(c, c, 1, config["expand_ratio"])
        block2 = InvertedResidualVariant(c, 2 * c, 2, 1)
        block1.se = LinearSE(c * config["expand_ratio"], max(1, c // 4))   # Linear layers on (N, C)
        layers = [("stem", nn.Conv2d(config["in_channels"], c, 3, stride=2, padding=1)),
                  ("blocks", nn.Sequential(block1, block2))] + _head(2 * c, config["classes"])
    else:
        raise ValueError(name)
    return nn.Sequential(OrderedDict(layers))


def _model(inputs: dict, device: str = "cpu") -> nn.Module:
    """The case's network, its weights drawn under fork_rng (the global generator is untouched)."""
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(0)
        return build_network(inputs["network"], inputs["config"]).eval()


def layer_names(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def measured_macs(inputs: dict) -> np.ndarray:
    """MACs per layer (in ``layer_names`` order): FLOPs from FlopCounterMode on the meta device, halved."""
    from torch.utils.flop_counter import FlopCounterMode
    model = _model(inputs, "meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(inputs["input_shape"], device="meta"))
    counts = counter.get_flop_counts()
    prefix = type(model).__name__
    return np.array([sum(counts.get(f"{prefix}.{name}", {}).values()) / 2 for name in layer_names(model)],
                    dtype=np.float64)


def _geometry(inputs: dict) -> list[tuple[nn.Module, tuple, tuple]]:
    """(layer, input shape, output shape) of each Conv2d / Linear, in ``layer_names`` order."""
    model = _model(inputs, "meta")
    seen: dict[str, tuple] = {}
    hooks = [m.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, (tuple(i[0].shape),
                                                                                         tuple(o.shape))))
             for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(inputs["input_shape"], device="meta"))
    for hook in hooks:
        hook.remove()
    modules = dict(model.named_modules())
    return [(modules[name], *seen[name]) for name in layer_names(model)]


def counted_macs(inputs: dict, bias=False, groups=True, batch=True, spatial="output", per_mac=1,
                 dilated_taps=False) -> np.ndarray:
    """The per-layer count by the formula of the module docstring, with one rule switched for a mistake."""
    counts = []
    for layer, shape_in, shape_out in _geometry(inputs):
        n = shape_out[0] if batch else 1
        if isinstance(layer, nn.Linear):
            rows = int(np.prod(shape_out[:-1])) // shape_out[0] * n
            macs = rows * layer.in_features * layer.out_features + (rows * layer.out_features if bias else 0)
        else:
            c_in = layer.in_channels // (layer.groups if groups else 1)
            kh, kw = layer.kernel_size
            if dilated_taps:
                kh, kw = (d * (k - 1) + 1 for d, k in zip(layer.dilation, layer.kernel_size, strict=True))
            h, w = shape_out[2:] if spatial == "output" else shape_in[2:]
            positions = n * layer.out_channels * h * w
            macs = positions * c_in * kh * kw + (positions if bias and layer.bias is not None else 0)
        counts.append(macs * per_mac)
    return np.array(counts, dtype=np.float64)


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _call(fn, inputs: dict):
    model = _model(inputs)
    with kept_unchanged({"model": model}, MODEL_RULE):
        answer = fn(model, tuple(inputs["input_shape"]))
    if _hooks(model):
        raise RuleBroken(MODEL_RULE, f"{_hooks(model)} forward hook(s) were left registered on its layers "
                                     "(remove each with handle.remove())")
    if not isinstance(answer, dict):
        raise RuleBroken(RULE, f"it returned {type(answer).__name__}" + (" (a total?)" if np.ndim(answer) == 0
                                                                         and answer is not None else ""))
    names = layer_names(model)
    missing = [n for n in names if n not in answer]
    extra = [repr(k) for k in answer if k not in names]
    if missing:
        raise RuleBroken(RULE, f"no entry for {', '.join(map(repr, missing[:4]))}"
                               + (f" and {len(missing) - 4} more" if len(missing) > 4 else ""))
    if extra:
        raise RuleBroken(RULE, f"entries for {', '.join(extra[:4])}, which are not Conv2d or Linear layers")
    values = [answer[n] for n in names]
    wrong_type = next((n for n, v in zip(names, values, strict=True) if not is_integer(v)), None)
    if wrong_type is not None and isinstance(numbers(values), np.ndarray):
        value = answer[wrong_type]
        raise RuleBroken(INT_RULE, f"the entry {wrong_type!r} is {value!r}, a {type(value).__name__}")
    return numbers(values)


_NETWORKS = {"small_cnn": "a small CNN (3×3 convs, stride 2, a grouped dilated conv, a 1×5 conv, Linear head)",
             "separable": "a stem conv and three depthwise-separable blocks (3×3 dilated, 7×7 stride 2, 5×5 no "
                          "padding), Linear head",
             "mbconv": "a stem conv and two inverted residual blocks (SE as Linear, then as 1×1 convs), Linear head"}

_SETTINGS = [("small_cnn", dict(in_channels=3, width=4, dilation=2, groups=4, classes=10), (2, 3, 16, 12)),
             ("separable", dict(in_channels=3, width=4, dilation=2, classes=5), (3, 3, 23, 17)),
             ("mbconv", dict(in_channels=3, width=8, expand_ratio=4, classes=7), (2, 3, 15, 20))]
_HIDDEN = [("small_cnn", dict(in_channels=1, width=6, dilation=3, groups=3, classes=4), (4, 1, 21, 19)),
           ("separable", dict(in_channels=2, width=3, dilation=3, classes=6), (1, 2, 30, 25)),
           ("mbconv", dict(in_channels=3, width=4, expand_ratio=6, classes=3), (5, 3, 12, 13))]


def _cases(hidden: bool) -> list[Case]:
    cases = []
    for (network, config, shape), _ in visible_then_hidden(_SETTINGS, _HIDDEN, hidden):
        inputs = {"network": network, "config": config, "input_shape": shape}
        names = layer_names(_model(inputs, "meta"))
        cases.append(Case(f"{_NETWORKS[network]}, {', '.join(f'{k}={v}' for k, v in config.items())}, "
                          f"input_shape={shape}", inputs,
                          lambda index, names=names: f"count_macs(...)[{names[index[0]]!r}]",
                          layout=Layout(axes=("layer",))))
    return cases


def _mistake(**switches):
    return lambda inputs: counted_macs(inputs, **switches)


MACS = Exercise(
    function="count_macs",
    reference_name="FlopCounterMode's FLOPs / 2, per layer",
    make_cases=_cases,
    reference=measured_macs,
    call=_call,
    mistakes=[
        Mistake("the bias was counted as a MAC: it is an addition per output, with no multiplication",
                "a MAC is one multiplication and the addition that accumulates it; the bias adds without "
                "multiplying (section 3).", _mistake(bias=True)),
        Mistake("groups ignored: a grouped (or depthwise) convolution reads only C_in / groups channels per output",
                "each output value of a convolution with groups g reads C_in / g input channels: divide.",
                _mistake(groups=False)),
        Mistake("the batch size was not counted: the MACs of one image, not of the batch",
                "input_shape[0] images go through the layer: every one of them costs its MACs.",
                _mistake(batch=False)),
        Mistake("the input's H × W was used instead of the output's: stride and padding change the number of "
                "output positions",
                "count one kernel application per output position, H_out × W_out, from the layer's output shape.",
                _mistake(spatial="input")),
        Mistake("FLOPs instead of MACs: each multiply–accumulate was counted twice",
                "FLOPs = 2 × MACs; the dict holds MACs.", _mistake(per_mac=2)),
        Mistake("a dilated kernel was counted with its extent, d·(k − 1) + 1 taps per side, not its k taps",
                "dilation spreads the k × k taps apart; it does not add taps.", _mistake(dilated_taps=True)),
    ],
    tolerance=EXACT,
    hint="for every Conv2d and Linear, read its input and output shapes during one forward pass (a forward hook) "
         "and apply section 3's formula; biases are not MACs.",
    forbidden=_FLOP_COUNTER,
    section="3. Counting multiply–accumulates",
    layout=Layout(axes=("layer",)),
    covers={"a batch of 2 or more": lambda c: c.inputs["input_shape"][0] >= 2,
            "a batch of one image": lambda c: c.inputs["input_shape"][0] == 1,
            "a non-square input": lambda c: c.inputs["input_shape"][2] != c.inputs["input_shape"][3],
            "a grouped (not depthwise) convolution": lambda c: c.inputs["network"] == "small_cnn",
            "depthwise convolutions with dilation, stride 2 and no padding": lambda c: c.inputs["network"] ==
            "separable",
            "Linear layers inside the network (SE) and 1×1 convolutions": lambda c: c.inputs["network"] == "mbconv",
            "a non-square (1×5) kernel": lambda c: c.inputs["network"] == "small_cnn",
            "an odd input side with stride 2": lambda c: any(n % 2 for n in c.inputs["input_shape"][2:])},
    exception_hints={"RuntimeError": "run the model once on torch.zeros(input_shape) to read the layers' shapes; "
                                     "do not change its weights or mode."},
)


def check_count_macs(count_macs, hidden: bool = False) -> None:
    """Check ``count_macs(model, input_shape) -> {layer name: MACs}`` against FlopCounterMode's measurement."""
    show(run_check(MACS, count_macs, hidden))
