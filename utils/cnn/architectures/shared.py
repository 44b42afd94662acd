"""What the architecture checks share: an exercise on an ``nn.Module`` class, and float64 modules
loaded with the check's weights.

A module exercise (:func:`module_exercise`) has two kinds of cases (:func:`module_cases`): the parameter
count of the student's module for a configuration (the named structural mistakes are recognised here),
then outputs on random inputs after the student's module has loaded, with ``load_state_dict(strict=True)``,
a state_dict built in the check (:func:`random_state`: the reference module under ``torch.random.fork_rng``
with a local seed, BatchNorm statistics randomised so that eval-mode BatchNorm is not the identity).
Modules run in eval mode, in float64.

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
from utils.checks.compare import Tolerance
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, visible_then_hidden
from utils.checks.seeding import case_rng

# float64 on both sides: only the order of summation differs
FLOAT64_MODULE = Tolerance(atol=1e-10, rtol=1e-10)


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



def _run_student(cls, inputs: dict, reference_name: str):
    """Build the student's module, load the case's weights, run it in eval mode, float64."""
    module = build_student(cls, inputs["config"], double=True)
    if not isinstance(module, nn.Module):
        return module
    _load(module, inputs["state"], reference_name)
    module.eval()
    with torch.no_grad():
        return returned_array(module(torch.from_numpy(np.array(inputs["x"]))))


def _run_reference(build: Callable[[], nn.Module], inputs: dict) -> np.ndarray:
    """``build()`` in float64 eval mode with the case's weights, on the case's input."""
    module = on_meta(build)
    shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    if shapes != {k: np.shape(v) for k, v in inputs["state"].items()}:   # before allocating any memory
        raise VariantDoesNotApply("this variant has other parameters than the case's state_dict")
    module = module.double().to_empty(device="cpu")
    module.load_state_dict(state_tensors(inputs["state"]), strict=True)
    module.eval()
    with torch.no_grad():
        return module(torch.from_numpy(np.array(inputs["x"]))).numpy()


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
    expected = int(parameter_count(on_meta(lambda: build(**config)))[0])
    return Case(f"number of parameters of {name}({_describe_config(config)}), expected {expected:,}",
                {"kind": "count", "config": config}, lambda index: "the parameter count")


def _output_case(name: str, build: Callable[..., nn.Module], number: int, config: dict, shape: tuple, salt: str,
                 keep_float32: bool) -> Case:
    # building AlexNet's weights takes a second: keep the last ones. The key is a draw of the case's
    # generator, so it also changes with the grading salt that seeding.case_rng mixes in.
    key = (name, number, salt, int(case_rng(name, number, salt).integers(2 ** 62)))
    if key not in _STATE_CACHE:
        rng = case_rng(name, number, salt)
        _STATE_CACHE[key] = (random_state(lambda: build(**config), rng, keep_float32), rng.normal(size=shape))
        while len(_STATE_CACHE) > 1 and sum(map(_nbytes, _STATE_CACHE.values())) > _STATE_CACHE_BYTES:
            _STATE_CACHE.popitem(last=False)   # the oldest first, never the entry just made
    state, x = _STATE_CACHE[key]
    return Case(f"{name}({_describe_config(config)}) in eval mode with the check's weights, "
                f"input of shape {shape}", {"kind": "output", "config": config, "state": state, "x": x},
                lambda index: f"output[{', '.join(map(str, index))}]")


def module_cases(name: str, build: Callable[..., nn.Module], counts: list[dict], outputs: list[tuple],
                 hidden_counts: list[dict], hidden_outputs: list[tuple], hidden: bool,
                 keep_float32: bool = False) -> list[Case]:
    """Parameter-count cases, then output cases ``(config, input shape)`` with weights from ``build``."""
    cases = [_count_case(name, build, config) for config, _ in visible_then_hidden(counts, hidden_counts, hidden)]
    settings = visible_then_hidden(outputs, hidden_outputs, hidden)
    cases += [_output_case(name, build, number, config, shape, salt, keep_float32)
              for number, ((config, shape), salt) in enumerate(settings, start=1)]
    return cases


def module_exercise(function: str, reference_name: str, build: Callable[..., nn.Module],
                    make_cases: Callable[[bool], list[Case]], mistakes: list[tuple], hint: str,
                    forbidden: tuple[str, ...] = ()) -> Exercise:
    """An exercise on an nn.Module class; ``mistakes`` are (name, hint, variant keywords for ``build``);
    ``forbidden``: torchvision's own modules, which the student's module must not call (Exercise.forbidden)."""

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
        tolerance=FLOAT64_MODULE, hint=hint, forbidden=forbidden,
        exception_hints={
            "ParameterMismatch": "use the attribute names and layer order given in the exercise: the check loads "
                                 "its weights into your module by name.",
            "RuntimeError": "print the shape of the tensor after every layer of your forward on the case's input: "
                            "a mismatch usually means a wrong in_features or channel count.",
        })
