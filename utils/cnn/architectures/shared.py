"""What the architecture checks share: an exercise on an ``nn.Module`` class, and float64 modules
loaded with the check's weights.

A module exercise (:func:`module_exercise`) has two kinds of cases (:func:`module_cases`): the parameter
count of the student's module for a configuration (the named structural mistakes are recognised here),
then outputs on random inputs after the student's module has loaded, with ``load_state_dict(strict=True)``,
a state_dict built in the check (:func:`random_state`: the reference module under ``torch.random.fork_rng``
with a local seed, BatchNorm statistics randomised so that eval-mode BatchNorm is not the identity).
Modules run in float64, in eval mode; a "train" case (batch of 2 or more) first runs one forward in train mode
(BatchNorm on batch statistics, which also updates the running statistics; dropout on, with a seed the case
fixes, under ``fork_rng``), then one in eval mode on the same input, and compares the two outputs as parts.
The student's forward must leave its input tensor unchanged (:func:`~utils.checks.rules.kept_unchanged`).

When the student's parameter names or shapes differ from the state_dict's, ``call`` raises
:class:`ParameterMismatch`, which reaches the student as a failure report listing the names / shapes
concerned (weights that differ only by size-1 dimensions, a Linear layer written as a 1×1 convolution, are
reshaped and accepted). ``call`` only runs the student's code and returns numpy arrays; references (and the
mistake variants) are computed from the case inputs alone, so the trusted grader can run them outside the
student's kernel.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn

from utils.checks.adapters import returned_array
from utils.checks.characterise import Layout
from utils.checks.compare import Tolerance
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, visible_then_hidden
from utils.checks.rules import RuleBroken, kept_unchanged
from utils.checks.seeding import case_rng

# float64 on both sides: only the order of summation differs (~1e-15 relative on outputs of order 1); the
# parameter counts are whole numbers. Both compare as exact (no tolerance is printed).
FLOAT64_MODULE = Tolerance(atol=1e-9, rtol=0.0)


class ParameterMismatch(RuntimeError):
    """The student's state_dict has other names or shapes than the reference's (raised in ``call``, so it
    reaches the student as a report naming the parameters, like any other failure)."""


class VariantDoesNotApply(Exception):
    """A reference variant whose parameters differ from the case's state_dict: that mistake cannot be
    formed on this case (``diagnose.identify`` skips it). For the reference itself this is a bug in the check."""


# --------------------------------------------------------------------------- building and loading modules


def on_meta(build: Callable[[], nn.Module]) -> nn.Module:
    """A module built on the meta device: no memory, no initialisation, no random numbers."""
    with torch.device("meta"):
        return build()


def parameter_count(module: nn.Module) -> np.ndarray:
    """``[number of parameters]``, as the one-element array a count case compares."""
    return np.array([float(sum(p.numel() for p in module.parameters()))])


def build_student(cls, config: dict, double: bool = False) -> nn.Module:
    """The student's module; built on the meta device when possible (fast, no RNG), else on the CPU."""
    with torch.random.fork_rng(devices=[]):
        try:
            module = on_meta(lambda: cls(**config))
            if not isinstance(module, nn.Module):
                return module
            return (module.double() if double else module).to_empty(device="cpu")
        except Exception:  # e.g. a shape computed with .item() in __init__: build it for real
            module = cls(**config)
            return module.double() if double and isinstance(module, nn.Module) else module


def state_tensors(state: dict) -> dict:
    """The case's state_dict as tensors that share its arrays' memory and dtypes (not float64 copies:
    AlexNet's 61 M weights stay float32 until the module copies them, counters stay integers)."""
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
    tensors = state_tensors(state)
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



# what the notebook's introduction says about every forward
INPUT_RULE = "a forward must not change its input tensor in place (notebook introduction, “How your modules " \
             "are checked”)"
TRAIN_PARTS = ("the train-mode output", "the eval-mode output after that train-mode step")


def _forward(module: nn.Module, x, inputs: dict):
    """The case's forward pass(es): eval mode; or, for a "train" case, one train-mode forward with the case's
    dropout seed (under fork_rng: the global generator is untouched), then one eval-mode forward."""
    if inputs.get("mode") != "train":
        module.eval()
        with torch.no_grad():
            return module(x)
    module.train()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(inputs["seed"])
        train = module(x)
    module.eval()
    with torch.no_grad():
        return train, module(x)


def _run_student(cls, inputs: dict, reference_name: str):
    """Build the student's module, load the case's weights, run the case's forward pass(es), float64."""
    module = build_student(cls, inputs["config"], double=True)
    if not isinstance(module, nn.Module):
        return module
    _load(module, inputs["state"], reference_name)
    x = torch.from_numpy(np.array(inputs["x"]))
    with kept_unchanged({"x": x}, rule=INPUT_RULE):
        out = _forward(module, x, inputs)
    if inputs.get("mode") != "train":
        return returned_array(out)
    train, after = (returned_array(o) for o in out)
    if not isinstance(train, np.ndarray) or not isinstance(after, np.ndarray):
        return train if not isinstance(train, np.ndarray) else after
    if train.shape != after.shape:
        raise RuleBroken("forward returns an output of the same shape in train and eval mode",
                         f"shape {train.shape} in train mode, {after.shape} in eval mode")
    return np.stack([train, after])


def _run_reference(build: Callable[[], nn.Module], inputs: dict) -> np.ndarray:
    """``build()`` in float64 with the case's weights, on the case's input, in the case's mode(s)."""
    module = on_meta(build)
    shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    if shapes != {k: np.shape(v) for k, v in inputs["state"].items()}:   # before allocating any memory
        raise VariantDoesNotApply("this variant has other parameters than the case's state_dict")
    module = module.double().to_empty(device="cpu")
    module.load_state_dict(state_tensors(inputs["state"]), strict=True)
    out = _forward(module, torch.from_numpy(np.array(inputs["x"])), inputs)
    return np.stack([o.numpy() for o in out]) if inputs.get("mode") == "train" else out.numpy()


def random_state(build: Callable[[], nn.Module], rng: np.random.Generator, keep_float32: bool = False) -> dict:
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


# --------------------------------------------------------------------------- a module exercise

_STATE_CACHE: OrderedDict[tuple, tuple] = OrderedDict()
_STATE_CACHE_BYTES = 400 * 2 ** 20   # one AlexNet (61 M float32 weights) and the small ones


def _nbytes(entry: tuple) -> int:
    state, x = entry
    return sum(np.asarray(v).nbytes for v in state.values()) + x.nbytes


def _describe_config(config: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items())


def _count_case(name: str, build: Callable[..., nn.Module], config: dict) -> Case:
    return Case(f"number of parameters of {name}({_describe_config(config)})",
                {"kind": "count", "config": config}, lambda index: "the parameter count")


def _output_case(name: str, build: Callable[..., nn.Module], number: int, config: dict, shape: tuple, salt: str,
                 keep_float32: bool, mode: str = "eval", axes: tuple[str, ...] = ()) -> Case:
    # building AlexNet's weights takes a second: keep the last ones. The key is a draw of the case's
    # generator, so it also changes with the grading salt that seeding.case_rng mixes in.
    key = (name, number, salt, int(case_rng(name, number, salt).integers(2 ** 62)))
    if key not in _STATE_CACHE:
        rng = case_rng(name, number, salt)
        _STATE_CACHE[key] = (random_state(lambda: build(**config), rng, keep_float32), rng.normal(size=shape))
        while len(_STATE_CACHE) > 1 and sum(map(_nbytes, _STATE_CACHE.values())) > _STATE_CACHE_BYTES:
            _STATE_CACHE.popitem(last=False)   # the oldest first, never the entry just made
    state, x = _STATE_CACHE[key]
    inputs = {"kind": "output", "config": config, "state": state, "x": x, "mode": mode}
    size = "×".join(map(str, shape))
    if mode != "train":
        return Case(f"{name}({_describe_config(config)}) in eval mode with the check's weights, input {size}",
                    inputs, lambda index: f"output[{', '.join(map(str, index))}]",
                    layout=Layout(axes=axes) if axes else None)
    inputs["seed"] = key[3] % 2 ** 31   # the dropout masks of the train-mode forward
    return Case(f"{name}({_describe_config(config)}) with the check's weights, input {size}: one forward in "
                "train mode, then one in eval mode", inputs,
                lambda index: f"{('train-mode', 'eval-mode')[index[0]]} output[{', '.join(map(str, index[1:]))}]",
                layout=Layout(axes=axes, parts=TRAIN_PARTS))


def module_cases(name: str, build: Callable[..., nn.Module], counts: list[dict], outputs: list[tuple],
                 hidden_counts: list[dict], hidden_outputs: list[tuple], hidden: bool,
                 keep_float32: bool = False, axes: tuple[str, ...] = ()) -> list[Case]:
    """Parameter-count cases, then output cases ``(config, input shape)`` or ``(config, input shape, "train")``
    with weights from ``build``; ``axes`` names the output's axes for the diagnosis."""
    cases = [_count_case(name, build, config) for config, _ in visible_then_hidden(counts, hidden_counts, hidden)]
    settings = visible_then_hidden(outputs, hidden_outputs, hidden)
    cases += [_output_case(name, build, number, setting[0], setting[1], salt, keep_float32,
                           setting[2] if len(setting) > 2 else "eval", axes)
              for number, (setting, salt) in enumerate(settings, start=1)]
    return cases


def module_exercise(function: str, reference_name: str, build: Callable[..., nn.Module],
                    make_cases: Callable[[bool], list[Case]], mistakes: list[tuple], hint: str,
                    forbidden: tuple[str, ...] = (), section: str = "",
                    covers: dict[str, Callable[[Case], bool]] | None = None) -> Exercise:
    """An exercise on an nn.Module class; ``mistakes`` are (name, hint, variant keywords for ``build``);
    ``forbidden``: torchvision's own modules, which the student's module must not call (Exercise.forbidden);
    ``section``: the notebook heading; ``covers``: the exercise's own properties, added to those every module
    exercise covers (:data:`MODULE_COVERS`; one mapped to None is left out)."""

    def output_of(variant: dict):
        """What a case measures on ``build(**config, **variant)``: the reference, or a known mistake."""
        def compute(inputs):
            if inputs["kind"] == "count":
                return parameter_count(on_meta(lambda: build(**inputs["config"], **variant)))
            return _run_reference(lambda: build(**inputs["config"], **variant), inputs)
        return compute

    def call(cls, inputs):
        if inputs["kind"] == "count":
            module = build_student(cls, inputs["config"])
            return parameter_count(module) if isinstance(module, nn.Module) else module
        return _run_student(cls, inputs, reference_name)

    return Exercise(
        function=function, reference_name=reference_name, make_cases=make_cases, reference=output_of({}), call=call,
        mistakes=[Mistake(name, mhint, output_of(variant)) for name, mhint, variant in mistakes],
        tolerance=FLOAT64_MODULE, hint=hint, forbidden=forbidden, section=section,
        covers={k: v for k, v in {**MODULE_COVERS, **(covers or {})}.items() if v is not None},
        exception_hints={
            "ParameterMismatch": "use the attribute names and layer order given in the exercise: the check loads "
                                 "its weights into your module by name.",
            "RuntimeError": "print the shape of the tensor after every layer of your forward on the case's input: "
                            "a mismatch usually means a wrong in_features or channel count.",
        })


# --------------------------------------------------------------------------- what the cases cover


def output_case(case: Case) -> bool:
    return case.inputs.get("kind") == "output"


def input_shape(case: Case) -> tuple:
    return tuple(np.shape(case.inputs["x"])) if output_case(case) else ()


def config_value(case: Case, key: str):
    return case.inputs["config"].get(key) if "config" in case.inputs else None


# what every module exercise covers: counts, both modes, a batch, the input rule
MODULE_COVERS: dict[str, Callable[[Case], bool]] = {
    "a parameter count": lambda c: c.inputs.get("kind") == "count",
    "eval mode (running statistics, dropout off)": output_case,   # a train case ends in eval mode too
    "train mode on a batch of 2 or more, then eval mode": lambda c: output_case(c) and c.inputs["mode"] == "train"
    and input_shape(c)[0] >= 2,
    "a batch of one image": lambda c: output_case(c) and input_shape(c)[0] == 1,
}
