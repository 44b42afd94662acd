"""``init_rnn_params(V, H) -> dict``: leaf tensors W_xh (H, V), W_hh (H, H), b_xh (H,), b_hh (H,),
W_hy (V, H), b_y (V,), all with ``requires_grad``.

Compared as one row per parameter: (ndim, shape[0], shape[1], requires_grad, is_leaf).
"""
from __future__ import annotations

import numpy as np
import torch

from utils.checks.compare import EXACT
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.seeding import case_rng
from utils.rnn.shared import PARAM_NAMES, torch_rnn_modules

SIZES = [(10, 16), (4, 3), (27, 8)]   # (V, H)
RANDOM_SIZES = "random sizes"         # a hidden setting: V and H drawn for the case
HIDDEN_SIZES = [(8, 8), RANDOM_SIZES, RANDOM_SIZES]
COLUMNS = ("ndim", "shape[0]", "shape[1] (0 for vectors)", "requires_grad", "is_leaf")


def _describe_index(index):
    return f"{PARAM_NAMES[index[0]]}: {COLUMNS[index[1]]}"


def _sizes(setting, number: int, salt: str) -> tuple[int, int]:
    if setting != RANDOM_SIZES:
        return setting
    return tuple(int(v) for v in case_rng("init_rnn_params", number, salt).integers(2, 70, size=2))


def _cases(hidden: bool) -> list[Case]:
    cases = []
    for number, (setting, salt) in enumerate(visible_then_hidden(SIZES, HIDDEN_SIZES, hidden), start=1):
        V, H = _sizes(setting, number, salt)
        cases.append(Case(f"V={V}, H={H}; each row is (ndim, shape[0], shape[1], requires_grad, is_leaf) of "
                          "W_xh, W_hh, b_xh, b_hh, W_hy, b_y", {"V": V, "H": H}, _describe_index))
    return cases


def _rows(tensors):
    rows = []
    for p in tensors:
        shape = tuple(p.shape) + (0, 0)
        rows.append([p.dim(), shape[0], shape[1], float(p.requires_grad), float(p.is_leaf)])
    return np.array(rows, dtype=np.float64)


def _call(fn, inputs):
    with torch.random.fork_rng(devices=[]):
        params = fn(inputs["V"], inputs["H"])
    if not isinstance(params, dict):
        return params
    values = [params[name] for name in PARAM_NAMES]
    for v in values:
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"every parameter must be a torch.Tensor, got {type(v).__name__}")
    return _rows(values)


def _reference(inputs):
    rnn, head = torch_rnn_modules(inputs["V"], inputs["H"], device="meta")
    return _rows([rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0, head.weight, head.bias])


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


MISTAKES = [
    Mistake("transposed W_xh: it must be (H, V) so that W_xh @ x_t maps a one-hot (V,) to (H,)",
            "W_xh: (H, V), W_hh: (H, H), W_hy: (V, H): 'input-hidden-hidden'.", _parameters_made(("W_xh",))),
    Mistake("transposed W_hy: it must be (V, H) so that W_hy @ h_t gives V logits",
            "W_hy: (V, H).", _parameters_made(("W_hy",))),
    Mistake("transposed W_xh and W_hy", "W_xh: (H, V), W_hy: (V, H).", _parameters_made(("W_xh", "W_hy"))),
    Mistake("the parameters are not leaf tensors: `torch.randn(..., requires_grad=True) * 0.1` is the result "
            "of a multiplication, so an optimizer refuses it and .grad stays None",
            "scale first, then ask for gradients: (torch.randn(H, V) * 0.1).requires_grad_().",
            _parameters_made(leaf=False)),
    Mistake("requires_grad is missing: autograd cannot compute gradients for these tensors",
            "create each parameter with .requires_grad_() (or requires_grad=True on an unscaled tensor).",
            _parameters_made(requires_grad=False)),
]

INIT = Exercise(
    function="init_rnn_params",
    reference_name="the parameter shapes of torch.nn.RNN(V, H) + torch.nn.Linear(H, V)",
    make_cases=_cases,
    reference=_reference,
    call=_call,
    mistakes=MISTAKES,
    tolerance=EXACT,
    hint="W_xh (H, V), W_hh (H, H), b_xh (H,), b_hh (H,), W_hy (V, H), b_y (V,), each a leaf with requires_grad.",
    exception_hints={"KeyError": f"return a dict with the keys {', '.join(PARAM_NAMES)}."},
)


def check_init_rnn_params(init_rnn_params, hidden: bool = False) -> None:
    """Check the shapes and autograd flags of ``init_rnn_params(V, H)``."""
    show(run_check(INIT, init_rnn_params, hidden))
