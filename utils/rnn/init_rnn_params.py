"""``init_rnn_params(V, H, scale=0.1) -> dict``: leaf tensors W_xh (H, V), W_hh (H, H), b_xh (H,), b_hh (H,),
W_hy (V, H), b_y (V,), all with ``requires_grad``; weights N(0, 1)·scale, biases zero.

Compared as one row per parameter: (ndim, shape[0], shape[1], requires_grad, is_leaf, values as asked).
"values as asked" is 1 for a bias that is all zeros and for a weight matrix whose root-mean-square is within a
factor 4 of ``scale`` (every matrix of every case has 9 or more entries, so a correct N(0, scale²) draw misses
that band with probability below 1e-4; the draw is seeded per case). The visible cases call
``init_rnn_params(V, H)`` (the default scale 0.1), some hidden ones pass another ``scale``.
"""
from __future__ import annotations

import numpy as np
import torch

from utils.checks.characterise import Layout
from utils.checks.compare import EXACT
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.seeding import case_rng
from utils.rnn.shared import PARAM_NAMES, torch_rnn_modules

DEFAULT_SCALE = 0.1
SIZES = [(10, 16, None), (4, 3, None), (27, 8, None), (5, 6, 1.0)]   # (V, H, scale): None calls without scale
RANDOM_SIZES = "random sizes"         # a hidden setting: V and H drawn for the case
HIDDEN_SIZES = [(8, 8, None), (6, 5, 1.0), (12, 4, 0.01), RANDOM_SIZES, RANDOM_SIZES]
COLUMNS = ("ndim", "shape[0]", "shape[1] (0 for vectors)", "requires_grad", "is_leaf",
           "values as asked (biases zero, weights of spread ≈ scale)")
WEIGHTS = ("W_xh", "W_hh", "W_hy")


def _mask(rows=None, columns=None):
    m = np.zeros((len(PARAM_NAMES), len(COLUMNS)), dtype=bool)
    m[np.ix_([PARAM_NAMES.index(n) for n in rows] if rows else range(len(PARAM_NAMES)),
             columns if columns else range(len(COLUMNS)))] = True
    return m


REGIONS = {"the biases": _mask(rows=("b_xh", "b_hh", "b_y"))}


def _describe_index(index):
    return f"{PARAM_NAMES[index[0]]}: {COLUMNS[index[1]]}"


def _setting(setting, number: int, salt: str) -> tuple[int, int, float | None]:
    if setting != RANDOM_SIZES:
        return setting
    rng = case_rng("init_rnn_params", number, salt)
    V, H = (int(v) for v in rng.integers(3, 70, size=2))
    return V, H, float(rng.choice([0.05, 0.3, 2.0]))


def _cases(hidden: bool) -> list[Case]:
    cases = []
    for number, (setting, salt) in enumerate(visible_then_hidden(SIZES, HIDDEN_SIZES, hidden), start=1):
        V, H, scale = _setting(setting, number, salt)
        how = "scale left at its default (0.1)" if scale is None else f"scale={scale}"
        seed = int(case_rng("init_rnn_params seed", number, salt).integers(2 ** 31))
        cases.append(Case(f"V={V}, H={H}, {how}", {"V": V, "H": H, "scale": scale, "seed": seed},
                          _describe_index, regions=REGIONS))
    return cases


def _as_asked(name: str, p, scale: float) -> float:
    values = p.detach().double()
    if name in WEIGHTS:
        rms = float(values.pow(2).mean().sqrt()) if values.numel() else 0.0
        return float(scale / 4 <= rms <= scale * 4)
    return float(bool((values == 0).all()))


def _rows(tensors, values_ok):
    rows = []
    for p, ok in zip(tensors, values_ok, strict=True):
        shape = tuple(p.shape) + (0, 0)
        rows.append([p.dim(), shape[0], shape[1], float(p.requires_grad), float(p.is_leaf), ok])
    return np.array(rows, dtype=np.float64)


def _call(fn, inputs):
    V, H, scale = inputs["V"], inputs["H"], inputs["scale"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(inputs["seed"])
        params = fn(V, H) if scale is None else fn(V, H, scale=scale)
    if not isinstance(params, dict):
        return params
    values = [params[name] for name in PARAM_NAMES]
    for v in values:
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"every parameter must be a torch.Tensor, got {type(v).__name__}")
    scale = DEFAULT_SCALE if scale is None else scale
    return _rows(values, [_as_asked(name, v, scale) for name, v in zip(PARAM_NAMES, values, strict=True)])


def _reference(inputs):
    rnn, head = torch_rnn_modules(inputs["V"], inputs["H"], device="meta")
    shapes = [rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0, head.weight, head.bias]
    return _rows(shapes, [1.0] * len(shapes))


def _parameters_made(transpose=(), requires_grad=True, leaf=True):
    def compute(inputs):
        rows = _reference(inputs)
        for name in transpose:
            i = PARAM_NAMES.index(name)
            rows[i, 1], rows[i, 2] = rows[i, 2], rows[i, 1]
        rows[:, 3] = float(requires_grad)
        rows[:, 4] = float(leaf)
        return rows
    return compute


def _scale_ignored(inputs):
    """The weights drawn with the default scale whatever scale is passed (biases right)."""
    rows = _reference(inputs)
    scale = inputs["scale"]
    if scale is not None and not scale / 4 <= DEFAULT_SCALE <= scale * 4:
        rows[[PARAM_NAMES.index(n) for n in WEIGHTS], 5] = 0.0
    return rows


MISTAKES = [
    Mistake("W_xh is transposed: it must be (H, V), mapping a one-hot (V,) to (H,)",
            "read each shape off the table above Exercise 1.3: a matrix maps from its second dimension "
            "to its first.", _parameters_made(("W_xh",))),
    Mistake("W_hy is transposed: it must be (V, H), giving one score per character",
            "read each shape off the table above Exercise 1.3: a matrix maps from its second dimension "
            "to its first.", _parameters_made(("W_hy",))),
    Mistake("W_xh and W_hy are both transposed",
            "read each shape off the table above Exercise 1.3: a matrix maps from its second dimension "
            "to its first.", _parameters_made(("W_xh", "W_hy"))),
    Mistake("the parameters are not leaf tensors: requires_grad was set before multiplying by scale, so the "
            "product is a new tensor that an optimizer refuses",
            "scale first, then switch gradients on for the scaled tensor (the trap described above "
            "Exercise 1.3).", _parameters_made(leaf=False)),
    Mistake("requires_grad is missing: autograd cannot compute gradients for these tensors",
            "every parameter must have requires_grad=True (set on the final, scaled tensor).",
            _parameters_made(requires_grad=False)),
    Mistake("the scale argument is ignored: the weights keep the default spread 0.1 whatever scale is passed",
            "multiply the N(0, 1) draws by the scale you are given, not by a fixed 0.1.", _scale_ignored),
]

INIT = Exercise(
    function="init_rnn_params",
    reference_name="the parameters of torch.nn.RNN(V, H) + torch.nn.Linear(H, V), initialised as Exercise 1.3 asks",
    make_cases=_cases,
    reference=_reference,
    call=_call,
    mistakes=MISTAKES,
    tolerance=EXACT,
    hint="check the shapes against the table above Exercise 1.3; weights are N(0, 1) draws times scale, biases "
         "are zero, and each returned tensor is a leaf with requires_grad=True.",
    exception_hints={"KeyError": f"return a dict with the keys {', '.join(PARAM_NAMES)}.",
                     "TypeError": "the signature is init_rnn_params(V, H, scale=0.1): accept scale as a keyword "
                                  "argument."},
    section="Exercise 1.3",
    layout=Layout(axes=("parameter", "column")),
    covers={
        "V ≠ H": lambda c: c.inputs["V"] != c.inputs["H"],
        "V = H": lambda c: c.inputs["V"] == c.inputs["H"],
        "the default scale (argument left out)": lambda c: c.inputs["scale"] is None,
        "a scale larger than the default": lambda c: (c.inputs["scale"] or 0) >= 1.0,
        "a scale smaller than the default": lambda c: c.inputs["scale"] is not None and c.inputs["scale"] <= 0.01,
    },
)


def check_init_rnn_params(init_rnn_params, hidden: bool = False) -> None:
    """Check the shapes, autograd flags and values of ``init_rnn_params(V, H, scale)``."""
    show(run_check(INIT, init_rnn_params, hidden))
