"""Exercise 3: ``clip_gradients(parameters, max_norm) -> total_norm``.

The rules of section 2.1, from scratch (``torch.nn.utils.clip_grad_norm_`` is what the check compares with):

* ``parameters`` is an iterable of tensors (a list, or a generator such as ``model.parameters()``); those whose
  ``.grad`` is None are skipped;
* the total norm is the L2 norm of all gradients together, ``sqrt(sum over parameters of ||g||²)``, measured
  before clipping, and returned;
* every gradient is multiplied in place by ``min(1, max_norm / (total_norm + 1e-6))``: the direction is kept,
  and nothing changes when the total is at most ``max_norm``;
* the explosion guard: when the total norm is not finite (inf or NaN), no gradient is changed; the total is
  returned all the same, and the caller skips that optimizer step.

A case builds float64 parameters with the case's gradients, calls the student's function and compares the
returned total and every gradient afterwards (:func:`clip_output`). Non-finite values are compared as codes
(:data:`NON_FINITE`), shown as "inf" and "NaN". The parameters themselves must not change.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from utils.checks.adapters import NotANumber, float64_tensor, to_numpy
from utils.checks.characterise import Layout
from utils.checks.compare import Tolerance, _fmt
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, visible_then_hidden
from utils.checks.rules import RuleBroken, kept_unchanged
from utils.checks.seeding import case_rng
from utils.cnn.pipeline.shared import check_on_one_thread

EPS = 1e-6
# float64 on both sides; tight enough to see the 1e-6 of the clipping coefficient's denominator
FLOAT64_CLIP = Tolerance(atol=1e-12, rtol=1e-9)
# non-finite values as codes far beyond any gradient of a case, so that they compare as numbers
NON_FINITE = {"NaN": 1e30, "inf": 2e30, "-inf": -2e30}
PARAMETERS_RULE = "clip_gradients changes the gradients (.grad) in place and nothing else (section 2.1)"


def _coded(array) -> np.ndarray:
    array = np.array(array, dtype=np.float64).ravel()
    return np.nan_to_num(array, nan=NON_FINITE["NaN"], posinf=NON_FINITE["inf"], neginf=NON_FINITE["-inf"])


def _describe_value(x: float) -> str:
    names = {code: name for name, code in NON_FINITE.items()}
    return names.get(float(x), _fmt(x))


def _parameters(inputs) -> list:
    params = [float64_tensor(v, requires_grad=True) for v in inputs["values"]]
    for p, g in zip(params, inputs["grads"], strict=True):
        p.grad = None if g is None else float64_tensor(g)
    return params


def _gradients(params, inputs) -> list[np.ndarray]:
    out = []
    for k, (p, g) in enumerate(zip(params, inputs["grads"], strict=True)):
        if g is None:
            continue
        if p.grad is None:
            raise RuleBroken(PARAMETERS_RULE, f"the gradient of parameter {k} was set to None")
        out.append(p.grad.detach().numpy())
    return out


def clip_output(fn, inputs) -> Any:
    """``[returned total norm, every gradient afterwards (flattened)]``, non-finite values as codes."""
    params = _parameters(inputs)
    argument = (p for p in params) if inputs["generator"] else params
    with kept_unchanged({"parameters": params}, rule=PARAMETERS_RULE):
        total = fn(argument, inputs["max_norm"])
    value = None if total is None or isinstance(total, str) else to_numpy(total)
    if value is None or value.size != 1 or value.dtype.kind not in "biuf":
        return None if total is None else NotANumber(total)
    return np.concatenate([_coded(value.reshape(1))] + [_coded(g) for g in _gradients(params, inputs)])


def reference_clip(inputs) -> np.ndarray:
    """``torch.nn.utils.clip_grad_norm_`` on a copy, its gradients put back when the total is not finite."""
    params = _parameters(inputs)
    with_grad = [p for p in params if p.grad is not None]
    before = [p.grad.clone() for p in with_grad]
    total = float(torch.nn.utils.clip_grad_norm_(params, inputs["max_norm"]))
    if not np.isfinite(total):
        for p, g in zip(with_grad, before, strict=True):
            p.grad = g
    return np.concatenate([_coded([total])] + [_coded(g) for g in _gradients(params, inputs)])


def mistaken_clip(inputs, rule: str) -> np.ndarray:
    """The output of a known mistake (NumPy, float64)."""
    grads = [np.array(g, dtype=np.float64) for g in inputs["grads"] if g is not None]
    max_norm = inputs["max_norm"]
    with np.errstate(all="ignore"):
        norms = np.array([np.sqrt((g ** 2).sum()) for g in grads])
        total = float(np.sqrt((norms ** 2).sum()))
        if rule == "squared":
            total = float((norms ** 2).sum())
        if rule == "sum_of_norms":
            total = float(norms.sum())
        returned = total
        if not np.isfinite(total) and rule != "no_guard":
            return np.concatenate([_coded([total])] + [_coded(g) for g in grads])
        coef = min(1.0, max_norm / (total + EPS))
        if rule == "no_eps":
            coef = min(1.0, max_norm / total)
        if rule == "always":
            coef = max_norm / (total + EPS)
        if rule == "by_value":
            clipped = [np.clip(g, -max_norm, max_norm) for g in grads]
        elif rule == "per_parameter":
            clipped = [g * min(1.0, max_norm / (n + EPS)) for g, n in zip(grads, norms, strict=True)]
        elif rule == "unscaled" or (rule == "generator" and inputs["generator"]):
            clipped = grads
        else:
            clipped = [g * coef for g in grads]
        if rule == "after":
            returned = float(np.sqrt(sum((g ** 2).sum() for g in clipped)))
    return np.concatenate([_coded([returned])] + [_coded(g) for g in clipped])


def _variant(rule: str):
    return lambda inputs: mistaken_clip(inputs, rule)


_SHAPES = [(4, 3), (4,), (2, 2, 3, 3)]


def _clip_cases(hidden: bool) -> list[Case]:
    # (description, shapes, gradient scale, index without a gradient, generator, max_norm or a fraction of the
    #  total ("x0.9"), a non-finite entry)
    visible = [
        ("a list of 3 parameters (4×3, 4, 2×2×3×3), total norm about 6, max_norm=1 (clipped)",
         _SHAPES, 1.0, None, False, 1.0, None),
        ("a generator of 4 parameters, the second without a gradient, total norm about 0.5, max_norm=5 "
         "(not clipped)", [(3, 5), (5,), (2, 3), (2,)], 0.1, 1, True, 5.0, None),
        ("a generator of 3 parameters (4×3, 4, 2×2×3×3), the first without a gradient, total norm about 12, "
         "max_norm=0.5 (clipped)", _SHAPES, 2.0, 0, True, 0.5, None),
        ("a list of 3 parameters, one gradient entry is inf (an exploded gradient), max_norm=1",
         _SHAPES, 1.0, None, False, 1.0, "inf"),
    ]
    hidden_only = [
        ("a list of 1 parameter (6×4), max_norm 10 % below the total norm (clipped a little)",
         [(6, 4)], 1.0, None, False, "x0.9", None),
        ("a generator of 3 parameters, one gradient entry is NaN, max_norm=1", _SHAPES, 1.0, None, True, 1.0, "nan"),
        ("a list of 5 parameters, the last without a gradient, max_norm 5 % above the total norm (not clipped)",
         [(8, 2), (8,), (3, 8), (3,), (2, 2)], 0.3, 4, False, "x1.05", None),
    ]
    cases = []
    for number, ((desc, shapes, scale, no_grad, generator, max_norm, special), salt) in enumerate(
            visible_then_hidden(visible, hidden_only, hidden), start=1):
        rng = case_rng("clip_gradients", number, salt)
        values = [rng.normal(size=s) for s in shapes]
        grads = [None if k == no_grad else rng.normal(0, scale, size=s) for k, s in enumerate(shapes)]
        if special:
            grads[-1].flat[1] = np.inf if special == "inf" else np.nan
        if isinstance(max_norm, str):
            total = np.sqrt(sum((g ** 2).sum() for g in grads if g is not None))
            max_norm = float(total * float(max_norm[1:]))
        inputs = {"values": values, "grads": grads, "generator": generator, "max_norm": max_norm}
        sizes = [int(np.prod(s)) for s, g in zip(shapes, grads, strict=True) if g is not None]
        cases.append(Case(desc, inputs, _index_namer(shapes, grads), _describe_value,
                          regions={"the returned total norm": np.arange(1 + sum(sizes)) == 0,
                                   "the gradients": np.arange(1 + sum(sizes)) > 0}))
    return cases


def _index_namer(shapes, grads):
    owners = [(k, s) for k, (s, g) in enumerate(zip(shapes, grads, strict=True)) if g is not None]

    def describe(index) -> str:
        i = index[0]
        if i == 0:
            return "the returned total norm"
        i -= 1
        for k, shape in owners:
            size = int(np.prod(shape))
            if i < size:
                return f"parameter {k}'s gradient at {list(np.unravel_index(i, shape))}"
            i -= size
        return f"entry {index[0]}"
    return describe


def _total(case: Case) -> float:
    with np.errstate(all="ignore"):
        return float(np.sqrt(sum((np.asarray(g) ** 2).sum() for g in case.inputs["grads"] if g is not None)))


M_PER_PARAMETER = "each parameter's gradient is clipped by its own norm, not by the norm of all gradients together"
M_BY_VALUE = "every entry is clamped to [-max_norm, max_norm] (clipping by value): the direction changes"
M_ALWAYS = "the gradients are rescaled to max_norm even when their total norm is already below it"
M_NO_EPS = f"the clipping factor divides by the total norm without adding {EPS:g}"
M_UNSCALED = "the gradients are not changed: the scaled values never reach .grad (scale it in place)"
M_GENERATOR = ("a generator of parameters is read twice: the second pass (the scaling) finds it empty, so a "
               "generator's gradients are never clipped")
M_AFTER = "the returned total norm is measured after clipping, not before"
M_SQUARED = "the total norm is the sum of the squares, without the square root"
M_SUM_OF_NORMS = "the total norm adds up the parameters' norms instead of taking the root of the sum of squares"
M_NO_GUARD = "no explosion guard: with a non-finite total norm the gradients are scaled anyway (to 0 or NaN)"

CLIP = Exercise(
    function="clip_gradients",
    reference_name="torch.nn.utils.clip_grad_norm_ with an explosion guard",
    make_cases=_clip_cases,
    reference=reference_clip,
    call=clip_output,
    mistakes=[
        Mistake(M_PER_PARAMETER, "one norm for the whole model: the squares of every gradient entry of every "
                                 "parameter, summed, then the root (section 2.1).", _variant("per_parameter")),
        Mistake(M_BY_VALUE, "scale every gradient by one common factor, so that the direction is kept.",
                _variant("by_value")),
        Mistake(M_ALWAYS, "the factor is capped at 1: gradients whose total norm is at most max_norm stay as they "
                          "are.", _variant("always")),
        Mistake(M_NO_EPS, "section 2.1 adds a small constant to the denominator of the factor, as torch does.",
                _variant("no_eps")),
        Mistake(M_UNSCALED, "multiply the tensor .grad itself in place (mul_ or *=); `g = g * factor` only "
                            "rebinds a local name.", _variant("unscaled")),
        Mistake(M_GENERATOR, "turn `parameters` into a list first: a generator such as model.parameters() can "
                             "be iterated only once.", _variant("generator")),
        Mistake(M_AFTER, "remember the total norm before you scale, and return that one: it tells the caller how "
                         "large the gradient was.", _variant("after")),
        Mistake(M_SQUARED, "the L2 norm is the square root of the sum of squares.", _variant("squared")),
        Mistake(M_SUM_OF_NORMS, "square each parameter's norm (or each entry), add, then take one root.",
                _variant("sum_of_norms")),
        Mistake(M_NO_GUARD, "check whether the total norm is finite first; if not, leave every gradient as it "
                            "is and return the total (section 2.1).", _variant("no_guard")),
    ],
    tolerance=FLOAT64_CLIP,
    hint="section 2.1: one total norm over all gradients, one factor min(1, max_norm / (total + eps)) applied "
         "to every gradient in place, nothing changed when the total is not finite, the total before clipping "
         "returned.",
    exception_hints={"AttributeError": "some parameters have no gradient (.grad is None): skip them.",
                     "TypeError": "some parameters have no gradient (.grad is None): skip them; and return the "
                                  "total norm as a number."},
    forbidden=("torch.nn.utils.clip_grad_norm_", "torch.nn.utils.clip_grad_norm", "torch.nn.utils.clip_grad_value_",
               "torch.nn.utils.clip_grads_with_norm_", "torch.nn.utils.get_total_norm"),
    section="2.1 Gradient clipping",
    layout=Layout(axes=("entry",)),
    covers={
        "a total norm above max_norm (clipped)": lambda case: case.inputs["max_norm"] < _total(case) < np.inf,
        "a total norm below max_norm (unchanged)": lambda case: _total(case) < case.inputs["max_norm"],
        "a parameter without a gradient": lambda case: any(g is None for g in case.inputs["grads"]),
        "a generator of parameters": lambda case: case.inputs["generator"],
        "a generator that must be clipped": lambda case: case.inputs["generator"] and
            case.inputs["max_norm"] < _total(case) < np.inf,
        "an infinite gradient": lambda case: _total(case) == np.inf,
        "a NaN gradient": lambda case: bool(np.isnan(_total(case))),
        "parameters of several shapes (matrix, vector, 4-d)": lambda case: len({np.ndim(v) for v in
                                                                                 case.inputs["values"]}) >= 3,
        "a single parameter": lambda case: len(case.inputs["values"]) == 1,
    },
)


def check_clip_gradients(clip_gradients, hidden: bool = False) -> None:
    """Check ``clip_gradients(parameters, max_norm)`` against torch.nn.utils.clip_grad_norm_ (with the guard)."""
    check_on_one_thread(CLIP, clip_gradients, hidden)
