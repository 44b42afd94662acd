"""Checks for the notebook "CNN layers from scratch" (assignment ``cnn``, notebook ``cnn_layers``).

The student writes every layer of a small CNN in numpy, forward and backward. Signatures
(all arrays are numpy, float64 unless said otherwise; ``stride`` and ``padding`` are ints used
for both spatial axes):

* ``conv2d_forward(x, w, b, stride=1, padding=0) -> out``
  x (N, C_in, H, W), w (C_out, C_in, K_h, K_w), b (C_out,) -> out (N, C_out, H_out, W_out),
  a cross-correlation as ``torch.nn.functional.conv2d``.
* ``conv2d_backward(dout, x, w, stride=1, padding=0) -> (dx, dw, db)``
  dout (N, C_out, H_out, W_out) -> dx like x, dw like w, db (C_out,).
* ``maxpool2d_forward(x, kernel_size, stride) -> out`` and ``maxpool2d_backward(dout, x, kernel_size, stride) -> dx``,
  ``avgpool2d_forward`` / ``avgpool2d_backward`` with the same signatures (no padding, square windows).
* ``global_avg_pool_forward(x) -> out`` (N, C, H, W) -> (N, C);
  ``global_avg_pool_backward(dout, x) -> dx`` dout (N, C) -> dx (N, C, H, W).
* ``relu_forward(x) -> out``; ``relu_backward(dout, x) -> dx`` (x is the forward input; any shape).
* ``linear_forward(x, W, b) -> out`` x (N, D_in), W (D_in, D_out), b (D_out,) -> out = x @ W + b (N, D_out);
  ``linear_backward(dout, x, W) -> (dx, dW, db)``.
* ``batchnorm_forward(x, gamma, beta, running_mean, running_var, momentum, eps, training)
  -> (out, new_running_mean, new_running_var)`` for x (N, C) or (N, C, H, W), statistics per channel C,
  PyTorch's conventions: normalise with the biased batch variance; running = (1 − momentum)·running
  + momentum·batch, with the *unbiased* batch variance for running_var; eval mode uses the running
  statistics and leaves them unchanged.
* ``batchnorm_backward(dout, x, gamma, eps) -> (dx, dgamma, dbeta)`` (training mode).
* ``softmax_cross_entropy(logits, labels) -> (loss, dlogits)`` logits (N, K), labels (N,) ints;
  loss is the batch mean, as ``torch.nn.functional.cross_entropy``.
* ``numerical_gradient(f, x, h=1e-5) -> grad``: centred differences, x restored afterwards.
* four dicts of by-hand answers: ``size_answers``, ``param_answers``, ``rf_answers``, ``hand_answers``.

A function returning several arrays is compared as one vector (its outputs flattened and
concatenated in order); failure messages name the element, e.g. ``dw[1, 0, 2, 2]``.
References are torch (autograd for the backward passes) in float64; the known mistakes
are the same computation done wrongly.
"""
from __future__ import annotations

import functools
import importlib

import numpy as np

from utils.checks.exercise import Case, Exercise, run_check
from utils.checks.compare import Tolerance, to_numpy
from utils.checks.feedback import show
from utils.checks.diagnose import Mistake
from utils.checks.seeding import case_rng


class _LazyModule:
    """Imports a module on first attribute access: importing torch costs seconds, and the grading
    kernel (which only runs ``Exercise.call`` and ``make_cases``) never needs it."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr):
        return getattr(importlib.import_module(self._name), attr)


torch = _LazyModule("torch")
F = _LazyModule("torch.nn.functional")
nn = _LazyModule("torch.nn")


class WrongReturnValue(Exception):
    """The student's function returned something of the wrong kind (not the documented tuple)."""


_RETURN_HINT = {"WrongReturnValue": "return exactly what the docstring says, e.g. `return dx, dw, db`."}

# --------------------------------------------------------------------------- helpers


def _t(a, grad: bool = False) -> torch.Tensor:
    return torch.tensor(np.array(a, dtype=np.float64)).requires_grad_(grad)


def _flat(*parts) -> np.ndarray:
    return np.concatenate([np.asarray(p.detach() if hasattr(p, "detach") else p, dtype=np.float64).ravel()
                           for p in parts])


def _unpack(result, names: tuple[str, ...], function: str) -> np.ndarray:
    """The student's tuple of outputs as one flat float vector (outputs in order)."""
    if not isinstance(result, (tuple, list)) or len(result) != len(names):
        got = type(result).__name__
        if isinstance(result, (tuple, list)):
            got += f" of length {len(result)}"
        raise WrongReturnValue(f"{function} must return a tuple ({', '.join(names)}); it returned a {got}.")
    parts = []
    for name, part in zip(names, result):
        array = to_numpy(part)
        if array is None:
            raise WrongReturnValue(f"{name} is {'None' if part is None else type(part).__name__}, "
                                   "expected a numpy array (or a number).")
        parts.append(np.asarray(array, dtype=np.float64).ravel())
    return np.concatenate(parts)


def _describe_parts(parts: list[tuple[str, tuple]]):
    """Name an element of a packed vector: 'dw[1, 0, 2, 2]'."""
    def describe(index):
        i = index[0]
        for name, shape in parts:
            n = int(np.prod(shape, dtype=int))
            if i < n:
                if not shape:
                    return name
                return f"{name}[{', '.join(str(int(v)) for v in np.unravel_index(i, shape))}]"
            i -= n
        return f"element {index[0]}"
    return describe


def _describe_array(name: str, axes: str):
    return lambda index: f"{name}[{', '.join(map(str, index))}] ({axes})"


def _shapes(parts) -> str:
    return ", ".join(f"{name} {tuple(shape)}" for name, shape in parts)


def _cases(function: str, settings, hidden_settings, hidden: bool, build) -> list[Case]:
    """``build(rng, setting, number) -> Case`` for each setting, visible ones first."""
    chosen = [(s, "") for s in settings] + ([(s, "hidden") for s in hidden_settings] if hidden else [])
    return [build(case_rng(function, number, salt), setting, number if not salt else 0)
            for number, (setting, salt) in enumerate(chosen, start=1)]


def _out_size(size, k, stride, padding):
    return (size + 2 * padding - k) // stride + 1


# Seed examples (course notes, CNN solutions part 1-5): small integers to check by hand.
SEED_CONV_X = np.array([[1, 2, 3, 0], [0, 1, 2, 3], [3, 0, 1, 2], [2, 3, 0, 1]], dtype=np.float64)
SEED_CONV_W = np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], dtype=np.float64)
SEED_POOL_X = np.array([[1, 3, 2, 4], [5, 6, 7, 8], [9, 2, 3, 1], [4, 5, 6, 7]], dtype=np.float64)
SEED_POOL_DOUT = np.array([[1, 2], [3, 4]], dtype=np.float64)
SEED_BACK_X = np.arange(1, 10, dtype=np.float64).reshape(3, 3)
SEED_BACK_W = np.array([[1, 0], [0, 1]], dtype=np.float64)
SEED_BN_X = np.arange(1, 13, dtype=np.float64).reshape(4, 3)

# --------------------------------------------------------------------------- convolution

# (N, C_in, C_out, H, W, K_h, K_w, stride, padding)
_CONV_SETTINGS = [
    (1, 1, 1, 4, 4, 3, 3, 1, 0),
    (2, 3, 4, 5, 5, 3, 3, 1, 1),
    (2, 2, 3, 7, 6, 3, 3, 2, 1),
    (1, 3, 2, 6, 7, 2, 3, 2, 0),
    (2, 2, 2, 8, 8, 5, 5, 3, 2),
]
_CONV_HIDDEN = [(3, 4, 5, 9, 7, 3, 2, 2, 2), (1, 1, 1, 5, 5, 1, 1, 1, 0), (2, 3, 2, 6, 6, 4, 4, 1, 3)]


def _conv_inputs(rng, setting, number, backward: bool) -> dict:
    N, C_in, C_out, H, W, K_h, K_w, stride, padding = setting
    H_out, W_out = _out_size(H, K_h, stride, padding), _out_size(W, K_w, stride, padding)
    if number == 1 and not backward:   # the worked example of the course notes
        x, w, b = SEED_CONV_X.reshape(1, 1, 4, 4), SEED_CONV_W.reshape(1, 1, 3, 3), np.zeros(1)
    else:
        x = rng.normal(size=(N, C_in, H, W))
        w = rng.normal(size=(C_out, C_in, K_h, K_w))
        b = rng.normal(size=C_out)
    inputs = {"x": x, "w": w, "b": b, "stride": stride, "padding": padding}
    if backward:
        inputs.pop("b")
        inputs["dout"] = rng.normal(size=(N, C_out, H_out, W_out))
    return inputs


def _conv_description(setting, number, backward: bool) -> str:
    N, C_in, C_out, H, W, K_h, K_w, stride, padding = setting
    H_out, W_out = _out_size(H, K_h, stride, padding), _out_size(W, K_w, stride, padding)
    text = (f"N={N}, C_in={C_in}, C_out={C_out}, {H}×{W} input, {K_h}×{K_w} kernel, stride={stride}, "
            f"padding={padding} (output {H_out}×{W_out})")
    if number == 1 and not backward:
        text = "the course-notes example: 4×4 input, kernel [[1,0,−1]]×3, no bias, " + text
    return text


def _conv_forward_cases(hidden: bool) -> list[Case]:
    def build(rng, setting, number):
        return Case(_conv_description(setting, number, False), _conv_inputs(rng, setting, number, False),
                    _describe_array("out", "n, c_out, h_out, w_out"))
    return _cases("conv2d_forward", _CONV_SETTINGS, _CONV_HIDDEN, hidden, build)


def torch_conv2d(x, w, b, stride, padding) -> np.ndarray:
    with torch.no_grad():
        return F.conv2d(_t(x), _t(w), None if b is None else _t(b), stride=stride, padding=padding).numpy()


def _conv_fwd_variant(flip=False, use_stride=True, use_padding=True, use_bias=True):
    def compute(inputs):
        w = inputs["w"][:, :, ::-1, ::-1] if flip else inputs["w"]
        return torch_conv2d(inputs["x"], w, inputs["b"] if use_bias else None,
                            inputs["stride"] if use_stride else 1, inputs["padding"] if use_padding else 0)
    return compute


CONV_FORWARD = Exercise(
    function="conv2d_forward",
    forbidden=("torch.nn.functional.conv2d", "torch.conv2d", "torch.nn.Conv2d"),
    reference_name="torch.nn.functional.conv2d",
    make_cases=_conv_forward_cases,
    reference=lambda i: torch_conv2d(i["x"], i["w"], i["b"], i["stride"], i["padding"]),
    call=lambda fn, i: fn(i["x"], i["w"], i["b"], stride=i["stride"], padding=i["padding"]),
    mistakes=[
        Mistake("conv stride ignored: your output is the stride-1 convolution",
                "output (h_out, w_out) reads the window whose top-left corner is (h_out·stride, w_out·stride) "
                "of the padded input, and H_out = (H + 2·padding − K_h) // stride + 1.",
                _conv_fwd_variant(use_stride=False)),
        Mistake("padding ignored: the input was not zero-padded",
                "pad x with `padding` zeros on each side of both spatial axes first (np.pad).",
                _conv_fwd_variant(use_padding=False)),
        Mistake("kernel flipped in the forward pass: deep-learning 'convolution' is a cross-correlation",
                "out[n, f, i, j] = Σ_c Σ_a Σ_b x_pad[n, c, i·s + a, j·s + b] · w[f, c, a, b], no flip.",
                _conv_fwd_variant(flip=True)),
        Mistake("bias missing: b[c_out] must be added to every output of channel c_out",
                "add b[None, :, None, None] to the output.", _conv_fwd_variant(use_bias=False)),
    ],
    hint="pad x, then out[n, f, i, j] = Σ_{c,a,b} x_pad[n, c, i·stride + a, j·stride + b] · w[f, c, a, b] + b[f], "
         "with H_out = (H + 2·padding − K_h) // stride + 1.",
)


def _conv_backward_cases(hidden: bool) -> list[Case]:
    def build(rng, setting, number):
        if number == 1:   # the course-notes backward example: 3×3 input, identity-diagonal kernel, dY = 1
            setting = (1, 1, 1, 3, 3, 2, 2, 1, 0)
            inputs = {"x": SEED_BACK_X.reshape(1, 1, 3, 3), "w": SEED_BACK_W.reshape(1, 1, 2, 2),
                      "stride": 1, "padding": 0, "dout": np.ones((1, 1, 2, 2))}
            text = "the course-notes example: X = 1..9 as 3×3, W = [[1,0],[0,1]], dout = ones(2×2)"
        else:
            inputs = _conv_inputs(rng, setting, number, True)
            text = _conv_description(setting, number, True)
        parts = [("dx", inputs["x"].shape), ("dw", inputs["w"].shape), ("db", (inputs["w"].shape[0],))]
        return Case(f"{text}; returns {_shapes(parts)}", inputs, _describe_parts(parts))
    return _cases("conv2d_backward", _CONV_SETTINGS, _CONV_HIDDEN, hidden, build)


def torch_conv2d_grads(x, w, dout, stride, padding, flip_dx=False, keep_padding=False, average=False):
    """(dx, dw, db) of conv2d from autograd, flattened; the flags give the named mistakes."""
    xt = _t(np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding))) if keep_padding else x, True)
    wt, bt = _t(w, True), _t(np.zeros(w.shape[0]), True)
    F.conv2d(xt, wt, bt, stride=stride, padding=0 if keep_padding else padding).backward(_t(dout))
    dx, dw, db = xt.grad, wt.grad, bt.grad
    if flip_dx:   # dx of a convolution with the kernel flipped = "full convolution without the flip"
        x2 = _t(x, True)
        F.conv2d(x2, _t(w[:, :, ::-1, ::-1]), stride=stride, padding=padding).backward(_t(dout))
        dx = x2.grad
    if average:
        dw, db = dw / x.shape[0], db / x.shape[0]
    return _flat(dx, dw, db)


def _conv_bwd_variant(**kw):
    return lambda i: torch_conv2d_grads(i["x"], i["w"], i["dout"], i["stride"], i["padding"], **kw)


CONV_BACKWARD = Exercise(
    function="conv2d_backward",
    forbidden=("torch.nn.functional.conv2d", "torch.conv2d", "torch.nn.Conv2d"),
    reference_name="torch autograd through torch.nn.functional.conv2d",
    make_cases=_conv_backward_cases,
    reference=_conv_bwd_variant(),
    call=lambda fn, i: _unpack(fn(i["dout"], i["x"], i["w"], stride=i["stride"], padding=i["padding"]),
                               ("dx", "dw", "db"), "conv2d_backward"),
    mistakes=[
        Mistake("conv backward with unflipped kernel (for dX): dx must be the full convolution of dout with "
                "the kernel rotated by 180°",
                "every output (i, j) sends dout[n, f, i, j] · w[f, c, a, b] back to x_pad[n, c, i·s + a, j·s + b]: "
                "the same (a, b) as in the forward pass.", _conv_bwd_variant(flip_dx=True)),
        Mistake("padding not removed from dX: dx has the shape of the padded input",
                "compute dx_pad on the padded input, then return dx_pad[:, :, p:p + H, p:p + W].",
                _conv_bwd_variant(keep_padding=True)),
        Mistake("dw and db are divided by the batch size: the loss already carries any averaging, "
                "the layer's backward must not average again",
                "dw = Σ_n Σ_{i,j} dout[n, f, i, j] · window, db = dout.sum(axis=(0, 2, 3)), no division.",
                _conv_bwd_variant(average=True)),
    ],
    hint="db = Σ over n, i, j of dout; dw[f, c, a, b] = Σ_{n,i,j} dout[n, f, i, j] · x_pad[n, c, i·s + a, j·s + b]; "
         "dx_pad[n, c, i·s + a, j·s + b] += dout[n, f, i, j] · w[f, c, a, b], then remove the padding.",
    exception_hints=_RETURN_HINT,
)

# --------------------------------------------------------------------------- pooling

# (N, C, H, W, kernel_size, stride)
_POOL_SETTINGS = [(1, 1, 4, 4, 2, 2), (2, 3, 6, 6, 2, 2), (2, 2, 9, 7, 2, 3), (2, 2, 7, 7, 3, 2),
                  (1, 3, 5, 8, 3, 1)]
_POOL_HIDDEN = [(3, 2, 10, 9, 3, 3), (2, 4, 8, 8, 4, 2), (2, 2, 6, 5, 2, 1)]


def _pool_cases(function: str, backward: bool, hidden: bool) -> list[Case]:
    def build(rng, setting, number):
        N, C, H, W, k, s = setting
        H_out, W_out = _out_size(H, k, s, 0), _out_size(W, k, s, 0)
        if number == 1:
            x = SEED_POOL_X.reshape(1, 1, 4, 4)
            text = "the course-notes 4×4 example, 2×2 windows, stride 2"
        else:
            x = rng.normal(size=(N, C, H, W))
            overlap = " (overlapping windows)" if s < k else (" (gaps between windows)" if s > k else "")
            text = f"N={N}, C={C}, {H}×{W} input, kernel_size={k}, stride={s}{overlap}"
        inputs = {"x": x, "kernel_size": k, "stride": s}
        if backward:
            inputs["dout"] = SEED_POOL_DOUT.reshape(1, 1, 2, 2) if number == 1 else rng.normal(size=(N, C, H_out, W_out))
            if number == 1:
                text += ", dout = [[1, 2], [3, 4]]"
            return Case(text, inputs, _describe_array("dx", "n, c, h, w"))
        return Case(text + f" (output {H_out}×{W_out})", inputs, _describe_array("out", "n, c, h_out, w_out"))
    return _cases(function, _POOL_SETTINGS, _POOL_HIDDEN, hidden, build)


def torch_pool(kind: str, x, k, s) -> np.ndarray:
    pool = F.max_pool2d if kind == "max" else F.avg_pool2d
    with torch.no_grad():
        return pool(_t(x), k, s).numpy()


def torch_pool_grad(kind: str, x, dout, k, s) -> np.ndarray:
    xt = _t(x, True)
    (F.max_pool2d if kind == "max" else F.avg_pool2d)(xt, k, s).backward(_t(dout))
    return xt.grad.numpy()


def pool_backward_numpy(x, dout, k, step, mode="max", assign=False) -> np.ndarray:
    """Pooling backward by loops, windows ``step`` apart (clipped at the border like numpy slices).

    mode "max": dout to the argmax; "avg": dout / k² to every position; "all": dout to every position.
    ``assign=True`` writes with = instead of +=, so overlapping windows overwrite each other.
    """
    dx = np.zeros_like(x, dtype=np.float64)
    N, C, H_out, W_out = dout.shape
    for n in range(N):
        for c in range(C):
            for a in range(H_out):
                for b in range(W_out):
                    rows, cols = slice(a * step, a * step + k), slice(b * step, b * step + k)
                    window = x[n, c, rows, cols]
                    if mode == "max":
                        r, q = np.unravel_index(np.argmax(window), window.shape)
                        if assign:
                            dx[n, c, a * step + r, b * step + q] = dout[n, c, a, b]
                        else:
                            dx[n, c, a * step + r, b * step + q] += dout[n, c, a, b]
                    else:
                        dx[n, c, rows, cols] += dout[n, c, a, b] / (k * k if mode == "avg" else 1)
    return dx


def _pool_bwd_variant(mode, assign=False, stride_is_kernel=False):
    return lambda i: pool_backward_numpy(i["x"], i["dout"], i["kernel_size"],
                                         i["kernel_size"] if stride_is_kernel else i["stride"], mode, assign)


_POOL_STRIDE_MISTAKE = ("stride ignored: the windows were moved by kernel_size instead of stride",
                        "window (i, j) starts at (i·stride, j·stride); H_out = (H − kernel_size) // stride + 1.")

MAXPOOL_FORWARD = Exercise(
    function="maxpool2d_forward",
    forbidden=("torch.nn.functional.max_pool2d", "torch.max_pool2d", "torch.nn.MaxPool2d"),
    reference_name="torch.nn.functional.max_pool2d",
    make_cases=lambda hidden: _pool_cases("maxpool2d_forward", False, hidden),
    reference=lambda i: torch_pool("max", i["x"], i["kernel_size"], i["stride"]),
    call=lambda fn, i: fn(i["x"], i["kernel_size"], i["stride"]),
    mistakes=[
        Mistake(*_POOL_STRIDE_MISTAKE, lambda i: torch_pool("max", i["x"], i["kernel_size"], i["kernel_size"])),
        Mistake("your output is the window average, not the window maximum", "take .max over each window.",
                lambda i: torch_pool("avg", i["x"], i["kernel_size"], i["stride"])),
    ],
    hint="out[n, c, i, j] = max of x[n, c, i·s : i·s + k, j·s : j·s + k].",
)

MAXPOOL_BACKWARD = Exercise(
    function="maxpool2d_backward",
    reference_name="torch autograd through torch.nn.functional.max_pool2d",
    make_cases=lambda hidden: _pool_cases("maxpool2d_backward", True, hidden),
    reference=lambda i: torch_pool_grad("max", i["x"], i["dout"], i["kernel_size"], i["stride"]),
    call=lambda fn, i: fn(i["dout"], i["x"], i["kernel_size"], i["stride"]),
    mistakes=[
        Mistake("pooling gradient sent to all positions of the window instead of only the argmax",
                "only the input that was the maximum of its window receives dout[n, c, i, j]; the others get 0.",
                _pool_bwd_variant("all")),
        Mistake("the average-pool gradient (dout / window size) was used for max pooling",
                "max pooling routes the whole dout[n, c, i, j] to the argmax of its window.",
                _pool_bwd_variant("avg")),
        Mistake("overlapping windows overwrite each other: the gradient is assigned (=) instead of added (+=)",
                "an input that is the maximum of two windows receives the sum of both gradients: use +=.",
                _pool_bwd_variant("max", assign=True)),
        Mistake(_POOL_STRIDE_MISTAKE[0], _POOL_STRIDE_MISTAKE[1], _pool_bwd_variant("max", stride_is_kernel=True)),
    ],
    hint="dx = 0; for each window (i, j): dx[argmax position] += dout[n, c, i, j].",
)

AVGPOOL_FORWARD = Exercise(
    function="avgpool2d_forward",
    forbidden=("torch.nn.functional.avg_pool2d", "torch.nn.AvgPool2d"),
    reference_name="torch.nn.functional.avg_pool2d",
    make_cases=lambda hidden: _pool_cases("avgpool2d_forward", False, hidden),
    reference=lambda i: torch_pool("avg", i["x"], i["kernel_size"], i["stride"]),
    call=lambda fn, i: fn(i["x"], i["kernel_size"], i["stride"]),
    mistakes=[
        Mistake(*_POOL_STRIDE_MISTAKE, lambda i: torch_pool("avg", i["x"], i["kernel_size"], i["kernel_size"])),
        Mistake("window sum instead of the window mean: not divided by the window size",
                "divide each window's sum by kernel_size².",
                lambda i: torch_pool("avg", i["x"], i["kernel_size"], i["stride"]) * i["kernel_size"] ** 2),
    ],
    hint="out[n, c, i, j] = mean of x[n, c, i·s : i·s + k, j·s : j·s + k].",
)

AVGPOOL_BACKWARD = Exercise(
    function="avgpool2d_backward",
    reference_name="torch autograd through torch.nn.functional.avg_pool2d",
    make_cases=lambda hidden: _pool_cases("avgpool2d_backward", True, hidden),
    reference=lambda i: torch_pool_grad("avg", i["x"], i["dout"], i["kernel_size"], i["stride"]),
    call=lambda fn, i: fn(i["dout"], i["x"], i["kernel_size"], i["stride"]),
    mistakes=[
        Mistake("average-pool gradient not divided by window size",
                "each of the kernel_size² inputs of a window contributed 1/kernel_size² of its output.",
                _pool_bwd_variant("all")),
        Mistake(_POOL_STRIDE_MISTAKE[0], _POOL_STRIDE_MISTAKE[1], _pool_bwd_variant("avg", stride_is_kernel=True)),
    ],
    hint="dx = 0; for each window (i, j): dx[window] += dout[n, c, i, j] / kernel_size² (+= for overlaps).",
)

# --------------------------------------------------------------------------- global average pooling

_GAP_SETTINGS = [(1, 1, 4, 4), (2, 3, 5, 4), (3, 4, 7, 7), (2, 2, 1, 3)]
_GAP_HIDDEN = [(4, 5, 3, 6), (1, 8, 2, 2)]


def _gap_cases(function: str, backward: bool, hidden: bool) -> list[Case]:
    def build(rng, setting, number):
        N, C, H, W = setting
        x = SEED_POOL_X.reshape(1, 1, 4, 4) if number == 1 else rng.normal(size=setting)
        inputs = {"x": x}
        text = "the course-notes 4×4 example" if number == 1 else f"N={N}, C={C}, {H}×{W} input"
        if backward:
            inputs["dout"] = rng.normal(size=(N, C))
            return Case(text, inputs, _describe_array("dx", "n, c, h, w"))
        return Case(text, inputs, _describe_array("out", "n, c"))
    return _cases(function, _GAP_SETTINGS, _GAP_HIDDEN, hidden, build)


def torch_gap(x) -> np.ndarray:
    with torch.no_grad():
        return F.adaptive_avg_pool2d(_t(x), 1).flatten(1).numpy()


def torch_gap_grad(x, dout) -> np.ndarray:
    xt = _t(x, True)
    F.adaptive_avg_pool2d(xt, 1).flatten(1).backward(_t(dout))
    return xt.grad.numpy()


GAP_FORWARD = Exercise(
    function="global_avg_pool_forward",
    reference_name="torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)",
    make_cases=lambda hidden: _gap_cases("global_avg_pool_forward", False, hidden),
    reference=lambda i: torch_gap(i["x"]),
    call=lambda fn, i: fn(i["x"]),
    mistakes=[
        Mistake("the output kept the spatial axes: (N, C, 1, 1) instead of (N, C)",
                "use x.mean(axis=(2, 3)) without keepdims.", lambda i: torch_gap(i["x"])[:, :, None, None]),
        Mistake("spatial sum instead of the mean: not divided by H·W", "divide by H·W.",
                lambda i: torch_gap(i["x"]) * i["x"].shape[2] * i["x"].shape[3]),
    ],
    hint="out[n, c] = mean of x[n, c, :, :].",
)

GAP_BACKWARD = Exercise(
    function="global_avg_pool_backward",
    reference_name="torch autograd through adaptive_avg_pool2d(x, 1)",
    make_cases=lambda hidden: _gap_cases("global_avg_pool_backward", True, hidden),
    reference=lambda i: torch_gap_grad(i["x"], i["dout"]),
    call=lambda fn, i: fn(i["dout"], i["x"]),
    mistakes=[
        Mistake("global-average-pool gradient not divided by H·W",
                "every one of the H·W inputs contributed 1/(H·W) of the mean.",
                lambda i: torch_gap_grad(i["x"], i["dout"]) * i["x"].shape[2] * i["x"].shape[3]),
    ],
    hint="dx[n, c, h, w] = dout[n, c] / (H·W) for every h, w; dx has the shape of x.",
)

# --------------------------------------------------------------------------- ReLU

_RELU_SHAPES = [(6,), (2, 3, 4, 4), (5, 7)]
_RELU_HIDDEN = [(2, 2, 3, 3, 2), (40,)]


def _relu_cases(function: str, backward: bool, hidden: bool) -> list[Case]:
    def build(rng, shape, number):
        if number == 1:
            x = np.array([-2.0, -0.5, 0.25, 1.0, 3.0, -1e-3])
            text = "x = [−2, −0.5, 0.25, 1, 3, −0.001]"
        else:
            x = rng.normal(size=shape)
            text = f"x of shape {shape}, about half of it negative"
        inputs = {"x": x}
        if backward:
            inputs["dout"] = rng.normal(size=x.shape)
            return Case(text + ", random dout", inputs, _describe_array("dx", "index"))
        return Case(text, inputs, _describe_array("out", "index"))
    return _cases(function, _RELU_SHAPES, _RELU_HIDDEN, hidden, build)


def torch_relu_grad(x, dout) -> np.ndarray:
    xt = _t(x, True)
    F.relu(xt).backward(_t(dout))
    return xt.grad.numpy()


RELU_FORWARD = Exercise(
    function="relu_forward",
    reference_name="torch.nn.functional.relu",
    make_cases=lambda hidden: _relu_cases("relu_forward", False, hidden),
    reference=lambda i: F.relu(_t(i["x"])).numpy(),
    call=lambda fn, i: fn(i["x"]),
    mistakes=[
        Mistake("your output is the mask (x > 0), not the activation",
                "relu(x) = max(x, 0): return the values, e.g. np.maximum(x, 0).",
                lambda i: (i["x"] > 0).astype(np.float64)),
        Mistake("negative inputs pass through and positive ones are zeroed (min instead of max)",
                "relu(x) = max(x, 0).", lambda i: np.minimum(i["x"], 0)),
    ],
    hint="relu(x) = max(x, 0) element-wise.",
)

RELU_BACKWARD = Exercise(
    function="relu_backward",
    reference_name="torch autograd through torch.nn.functional.relu",
    make_cases=lambda hidden: _relu_cases("relu_backward", True, hidden),
    reference=lambda i: torch_relu_grad(i["x"], i["dout"]),
    call=lambda fn, i: fn(i["dout"], i["x"]),
    mistakes=[
        Mistake("ReLU gradient passed where x<0: dx = dout everywhere",
                "relu is flat for x < 0, so no gradient passes there: dx = dout · (x > 0).",
                lambda i: np.array(i["dout"], dtype=np.float64)),
        Mistake("dout was not multiplied in: dx = (x > 0) is only the local derivative",
                "chain rule: dx = dout · (x > 0).", lambda i: (i["x"] > 0).astype(np.float64)),
        Mistake("dx = dout · x: the local derivative of relu is 1 (x > 0) or 0, not x",
                "dx = dout · (x > 0).", lambda i: i["dout"] * np.maximum(i["x"], 0)),
    ],
    hint="dx = dout · (x > 0).",
)

# --------------------------------------------------------------------------- linear layer

_LINEAR_SETTINGS = [(2, 2, 2), (4, 3, 3), (5, 4, 6), (3, 8, 2)]   # (N, D_in, D_out); square ones first
_LINEAR_HIDDEN = [(6, 5, 5), (2, 10, 7)]


def _linear_cases(function: str, backward: bool, hidden: bool) -> list[Case]:
    def build(rng, setting, number):
        N, D_in, D_out = setting
        if number == 1:
            x, W, b = np.array([[1.0, 2.0], [3.0, -1.0]]), np.array([[1.0, 2.0], [0.0, -1.0]]), np.array([0.5, -0.5])
            text = "x = [[1, 2], [3, −1]], W = [[1, 2], [0, −1]], b = [0.5, −0.5]"
        else:
            x, W, b = rng.normal(size=(N, D_in)), rng.normal(size=(D_in, D_out)), rng.normal(size=D_out)
            text = f"N={N}, D_in={D_in}, D_out={D_out}"
        if backward:
            dout = np.array([[1.0, 0.0], [2.0, -1.0]]) if number == 1 else rng.normal(size=(N, D_out))
            parts = [("dx", x.shape), ("dW", W.shape), ("db", b.shape)]
            text += (", dout = [[1, 0], [2, −1]]" if number == 1 else ", random dout") + f"; returns {_shapes(parts)}"
            return Case(text, {"dout": dout, "x": x, "W": W}, _describe_parts(parts))
        return Case(text, {"x": x, "W": W, "b": b}, _describe_array("out", "n, d_out"))
    return _cases(function, _LINEAR_SETTINGS, _LINEAR_HIDDEN, hidden, build)


def torch_linear(x, W, b) -> np.ndarray:
    with torch.no_grad():
        return F.linear(_t(x), _t(W).T, None if b is None else _t(b)).numpy()


def torch_linear_grads(dout, x, W, transposed_dx=False, transposed_dW=False, average_db=False) -> np.ndarray:
    xt, Wt, bt = _t(x, True), _t(W, True), _t(np.zeros(W.shape[1]), True)
    F.linear(xt, Wt.T, bt).backward(_t(dout))
    dx, dW, db = xt.grad, Wt.grad, bt.grad
    if transposed_dx:
        dx = _t(dout) @ _t(W)
    if transposed_dW:
        dW = dW.T
    if average_db:
        db = db / x.shape[0]
    return _flat(dx, dW, db)


LINEAR_FORWARD = Exercise(
    function="linear_forward",
    reference_name="torch.nn.functional.linear (with weight W.T)",
    make_cases=lambda hidden: _linear_cases("linear_forward", False, hidden),
    reference=lambda i: torch_linear(i["x"], i["W"], i["b"]),
    call=lambda fn, i: fn(i["x"], i["W"], i["b"]),
    mistakes=[
        Mistake("bias missing", "out = x @ W + b.", lambda i: torch_linear(i["x"], i["W"], None)),
        Mistake("x @ W.T: here W has shape (D_in, D_out), so out = x @ W + b",
                "W[i, j] connects input i to output j.", lambda i: torch_linear(i["x"], i["W"].T, i["b"])),
    ],
    hint="out = x @ W + b with W of shape (D_in, D_out).",
)

LINEAR_BACKWARD = Exercise(
    function="linear_backward",
    reference_name="torch autograd through x @ W + b",
    make_cases=lambda hidden: _linear_cases("linear_backward", True, hidden),
    reference=lambda i: torch_linear_grads(i["dout"], i["x"], i["W"]),
    call=lambda fn, i: _unpack(fn(i["dout"], i["x"], i["W"]), ("dx", "dW", "db"), "linear_backward"),
    mistakes=[
        Mistake("linear backward with transposed W: dx = dout @ W instead of dout @ W.T",
                "dx has the shape of x (N, D_in): dx = dout @ W.T.",
                lambda i: torch_linear_grads(i["dout"], i["x"], i["W"], transposed_dx=True)),
        Mistake("dW is transposed: dout.T @ x instead of x.T @ dout",
                "dW has the shape of W (D_in, D_out): dW = x.T @ dout.",
                lambda i: torch_linear_grads(i["dout"], i["x"], i["W"], transposed_dW=True)),
        Mistake("db is averaged over the batch: it is the sum dout.sum(axis=0)",
                "each sample adds its dout to db; any averaging is already in dout.",
                lambda i: torch_linear_grads(i["dout"], i["x"], i["W"], average_db=True)),
    ],
    hint="dx = dout @ W.T, dW = x.T @ dout, db = dout.sum(axis=0).",
    exception_hints=_RETURN_HINT,
)

# --------------------------------------------------------------------------- batch normalization

# (shape, training, momentum, eps, special)
_BN_SETTINGS = [
    ((4, 3), True, 0.1, 1e-5, "seed"),
    ((8, 5), True, 0.1, 1e-5, ""),
    ((4, 3, 5, 5), True, 0.3, 1e-5, ""),
    ((6, 4), False, 0.1, 1e-5, ""),
    ((3, 2, 4, 3), False, 0.1, 1e-5, ""),
    ((6, 3), True, 0.1, 1e-3, "tiny"),
]
_BN_HIDDEN = [((10, 6), True, 0.05, 1e-5, ""), ((2, 3, 3, 3), False, 0.2, 1e-5, ""),
              ((7, 2, 2, 2), True, 0.1, 1e-4, "")]


def _axes(x):
    return (0,) + tuple(range(2, np.ndim(x)))


def _bcast(v, x):
    return np.reshape(v, (1, -1) + (1,) * (np.ndim(x) - 2))


def _bn_x(rng, shape, special):
    if special == "seed":
        return SEED_BN_X.copy()
    x = rng.normal(loc=0.5, scale=2.0, size=shape)
    if special == "tiny":   # a channel whose variance is far below eps: shows where eps goes
        x[:, 1] = 0.5 + 1e-3 * rng.normal(size=shape[0])
    return x


def _bn_forward_cases(hidden: bool) -> list[Case]:
    def build(rng, setting, number):
        shape, training, momentum, eps, special = setting
        C = shape[1]
        x = _bn_x(rng, shape, special)
        if special == "seed":
            gamma, beta, rm, rv = np.ones(C), np.zeros(C), np.zeros(C), np.ones(C)
            text = ("the course-notes batch x = 1..12 as 4×3, γ = 1, β = 0, running_mean = 0, running_var = 1, "
                    "training, momentum=0.1, eps=1e-5")
        else:
            gamma, beta = rng.uniform(0.5, 2.0, C), rng.normal(size=C)
            rm, rv = rng.normal(size=C), rng.uniform(0.5, 3.0, C)
            text = (f"x of shape {shape}, {'training' if training else 'eval'} mode, momentum={momentum}, eps={eps:g}, "
                    "random γ, β and running statistics")
            if special == "tiny":
                text += "; channel 1 has a variance (1e-6) far below eps"
        inputs = {"x": x, "gamma": gamma, "beta": beta, "running_mean": rm, "running_var": rv,
                  "momentum": momentum, "eps": eps, "training": training}
        parts = [("out", shape), ("new_running_mean", (C,)), ("new_running_var", (C,))]
        return Case(text + f"; returns {_shapes(parts)}", inputs, _describe_parts(parts))
    return _cases("batchnorm_forward", _BN_SETTINGS, _BN_HIDDEN, hidden, build)


def torch_batchnorm(x, gamma, beta, running_mean, running_var, momentum, eps, training) -> np.ndarray:
    rm, rv = _t(running_mean), _t(running_var)
    with torch.no_grad():
        out = F.batch_norm(_t(x), rm, rv, _t(gamma), _t(beta), training=training, momentum=momentum, eps=eps)
    return _flat(out, rm, rv)


def batchnorm_variant(x, gamma, beta, running_mean, running_var, momentum, eps, training, *, ddof=0,
                      reversed_momentum=False, biased_running=False, batch_stats_in_eval=False,
                      update_in_eval=False, eps_outside=False) -> np.ndarray:
    """numpy batch norm; the keyword flags reproduce the named mistakes."""
    x = np.asarray(x, dtype=np.float64)
    axes = _axes(x)
    mean, var = x.mean(axis=axes), x.var(axis=axes, ddof=ddof)
    m = x.size // mean.size
    unbiased = x.var(axis=axes) * m / (m - 1)
    batch_var_for_running = x.var(axis=axes) if biased_running else unbiased
    if training or update_in_eval:
        keep, take = (momentum, 1 - momentum) if reversed_momentum else (1 - momentum, momentum)
        new_rm = keep * running_mean + take * mean
        new_rv = keep * running_var + take * batch_var_for_running
    else:
        new_rm, new_rv = np.array(running_mean, dtype=np.float64), np.array(running_var, dtype=np.float64)
    if not training and not batch_stats_in_eval:
        mean, var = np.asarray(running_mean), np.asarray(running_var)
    shape_mean, shape_var = _bcast(mean, x), _bcast(var, x)
    denom = np.sqrt(shape_var) + eps if eps_outside else np.sqrt(shape_var + eps)
    out = _bcast(gamma, x) * (x - shape_mean) / denom + _bcast(beta, x)
    return _flat(out, new_rm, new_rv)


def _bn_variant(**kw):
    return lambda i: batchnorm_variant(**i, **kw)


BN_FORWARD = Exercise(
    function="batchnorm_forward",
    forbidden=("torch.nn.functional.batch_norm", "torch.batch_norm", "torch.nn.BatchNorm2d"),
    reference_name="torch.nn.functional.batch_norm",
    make_cases=_bn_forward_cases,
    reference=lambda i: torch_batchnorm(**i),
    call=lambda fn, i: _unpack(fn(i["x"], i["gamma"], i["beta"], i["running_mean"], i["running_var"],
                                  i["momentum"], i["eps"], i["training"]),
                               ("out", "new_running_mean", "new_running_var"), "batchnorm_forward"),
    mistakes=[
        Mistake("BN using unbiased variance (ddof=1) to normalise: the batch is normalised with the biased variance",
                "var = x.var(axis=axes) (divide by m, not m − 1) inside the normalisation.",
                _bn_variant(ddof=1)),
        Mistake("BN running stats updated with the wrong momentum convention: PyTorch keeps (1 − momentum) of the "
                "old value", "new_running = (1 − momentum)·running + momentum·batch_statistic.",
                _bn_variant(reversed_momentum=True)),
        Mistake("BN running_var updated with the biased batch variance: PyTorch stores the unbiased one",
                "new_running_var = (1 − momentum)·running_var + momentum·var·m/(m − 1), m = values per channel.",
                _bn_variant(biased_running=True)),
        Mistake("BN using batch statistics in eval mode: eval must normalise with running_mean and running_var",
                "if not training: use the running statistics and return them unchanged.",
                _bn_variant(batch_stats_in_eval=True)),
        Mistake("BN running statistics updated in eval mode: they must come back unchanged",
                "only training mode updates running_mean and running_var.", _bn_variant(update_in_eval=True)),
        Mistake("eps added outside the square root: divide by sqrt(var + eps)",
                "x_hat = (x − mean) / np.sqrt(var + eps).", _bn_variant(eps_outside=True)),
    ],
    hint="training: mean, var (biased) over every axis but 1; out = γ·(x − mean)/sqrt(var + eps) + β; "
         "running = (1 − momentum)·running + momentum·(mean, unbiased var). eval: use the running statistics.",
    exception_hints=_RETURN_HINT,
)

_BN_BACK_SETTINGS = [((4, 3), 1e-5, "seed"), ((8, 5), 1e-5, ""), ((3, 4, 3, 3), 1e-5, ""), ((5, 2), 1e-3, "")]
_BN_BACK_HIDDEN = [((6, 2, 5, 4), 1e-5, ""), ((16, 3), 1e-4, "")]


def _bn_backward_cases(hidden: bool) -> list[Case]:
    def build(rng, setting, number):
        shape, eps, special = setting
        C = shape[1]
        x = _bn_x(rng, shape, special)
        gamma = np.ones(C) if special == "seed" else rng.uniform(0.5, 2.0, C)
        dout = rng.normal(size=shape)
        text = ("the course-notes batch x = 1..12 as 4×3, γ = 1, random dout" if special == "seed"
                else f"x of shape {shape}, random γ and dout, eps={eps:g}")
        parts = [("dx", shape), ("dgamma", (C,)), ("dbeta", (C,))]
        return Case(text + f"; returns {_shapes(parts)}", {"dout": dout, "x": x, "gamma": gamma, "eps": eps},
                    _describe_parts(parts))
    return _cases("batchnorm_backward", _BN_BACK_SETTINGS, _BN_BACK_HIDDEN, hidden, build)


def torch_batchnorm_grads(dout, x, gamma, eps) -> np.ndarray:
    """(dx, dgamma, dbeta) of F.batch_norm in training mode, from autograd, flattened."""
    xt, gt, bt = _t(x, True), _t(gamma, True), _t(np.zeros(len(gamma)), True)
    F.batch_norm(xt, None, None, gt, bt, training=True, eps=eps).backward(_t(dout))
    return _flat(xt.grad, gt.grad, bt.grad)


def batchnorm_backward_variant(dout, x, gamma, eps, *, ddof=1, constant_stats=False,
                               dgamma_from_x=False) -> np.ndarray:
    """The compact batch-norm backward formula in numpy, done wrongly as the flags say."""
    axes = _axes(x)
    mean = x.mean(axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(x.var(axis=axes, keepdims=True, ddof=ddof) + eps)
    x_hat = (x - mean) * inv_std
    dx_hat = dout * _bcast(gamma, x)
    if constant_stats:
        dx = dx_hat * inv_std
    else:
        dx = inv_std * (dx_hat - dx_hat.mean(axis=axes, keepdims=True)
                        - x_hat * (dx_hat * x_hat).mean(axis=axes, keepdims=True))
    dgamma = (dout * (x if dgamma_from_x else x_hat)).sum(axis=axes)
    return _flat(dx, dgamma, dout.sum(axis=axes))


def _bn_bwd_variant(**kw):
    return lambda i: batchnorm_backward_variant(i["dout"], i["x"], i["gamma"], i["eps"], **kw)


BN_BACKWARD = Exercise(
    function="batchnorm_backward",
    reference_name="torch autograd through torch.nn.functional.batch_norm (training mode)",
    make_cases=_bn_backward_cases,
    reference=lambda i: torch_batchnorm_grads(i["dout"], i["x"], i["gamma"], i["eps"]),
    call=lambda fn, i: _unpack(fn(i["dout"], i["x"], i["gamma"], i["eps"]), ("dx", "dgamma", "dbeta"),
                               "batchnorm_backward"),
    mistakes=[
        Mistake("BN backward treats the batch mean and variance as constants: dx = dout·γ/sqrt(var + eps) misses "
                "the paths through mean and var",
                "dx = (dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)) / sqrt(var + eps), dx̂ = dout·γ, means over the batch axes.",
                _bn_bwd_variant(ddof=0, constant_stats=True)),
        Mistake("dgamma computed with x instead of the normalised x̂", "dgamma = Σ dout · x̂ over the batch axes.",
                _bn_bwd_variant(ddof=0, dgamma_from_x=True)),
        Mistake("BN using unbiased variance (ddof=1): the forward pass normalises with the biased variance",
                "var = x.var(axis=axes), dividing by m.", _bn_bwd_variant()),
    ],
    hint="x̂ = (x − mean)/sqrt(var + eps); dbeta = Σ dout; dgamma = Σ dout·x̂; "
         "dx = (dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)) / sqrt(var + eps) with dx̂ = dout·γ (sums/means over axes 0, 2, 3).",
    exception_hints=_RETURN_HINT,
)

# --------------------------------------------------------------------------- softmax cross-entropy

SOFTMAX_OVERFLOW = ("softmax without subtracting the max: np.exp overflows on large logits (inf/inf = NaN); "
                    "subtract each row's maximum before exponentiating")
_SCE_SETTINGS = [(2, 3, ""), (5, 4, ""), (8, 10, ""), (3, 4, "large")]
_SCE_HIDDEN = [(16, 7, ""), (3, 5, "negative")]


def _sce_cases(hidden: bool) -> list[Case]:
    def build(rng, setting, number):
        N, K, special = setting
        if number == 1:
            logits, labels = np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]]), np.array([2, 0])
            text = "logits [[1, 2, 3], [1, 1, 1]], labels [2, 0]"
        else:
            logits, labels = rng.normal(scale=2.0, size=(N, K)), rng.integers(0, K, size=N)
            text = f"N={N}, K={K}, random logits"
            if special == "large":
                logits = logits * 300 + 1000
                text = f"N={N}, K={K}, large logits around 1000 (exp overflows unless the max is subtracted)"
            elif special == "negative":
                logits = logits * 300 - 1000
                text = f"N={N}, K={K}, logits around −1000 (exp underflows to 0 unless the max is subtracted)"
        parts = [("loss", ()), ("dlogits", (N, K))]
        return Case(text + f"; returns {_shapes(parts)}", {"logits": logits, "labels": labels},
                    _describe_parts(parts))
    return _cases("softmax_cross_entropy", _SCE_SETTINGS, _SCE_HIDDEN, hidden, build)


def torch_cross_entropy(logits, labels, reduction="mean", grad_scale=1.0, no_onehot=False, sign=1.0) -> np.ndarray:
    zt = _t(logits, True)
    loss = F.cross_entropy(zt, torch.as_tensor(np.asarray(labels), dtype=torch.long), reduction=reduction)
    loss.backward()
    grad = zt.grad * grad_scale
    if no_onehot:
        grad = torch.softmax(_t(logits), dim=1) / (len(labels) if reduction == "mean" else 1)
    return _flat(loss, sign * grad)


SOFTMAX_CE = Exercise(
    function="softmax_cross_entropy",
    reference_name="torch.nn.functional.cross_entropy (mean over the batch) and its autograd gradient",
    make_cases=_sce_cases,
    reference=lambda i: torch_cross_entropy(i["logits"], i["labels"]),
    call=lambda fn, i: _unpack(fn(i["logits"], i["labels"]), ("loss", "dlogits"), "softmax_cross_entropy"),
    mistakes=[
        Mistake("cross-entropy not averaged over the batch: loss and dlogits are sums over the N samples",
                "loss = mean over samples of −log p[label]; dlogits = (p − onehot) / N.",
                lambda i: torch_cross_entropy(i["logits"], i["labels"], reduction="sum")),
        Mistake("the loss is averaged but dlogits is not divided by N",
                "the gradient of a mean carries the 1/N: dlogits = (p − onehot) / N.",
                lambda i: torch_cross_entropy(i["logits"], i["labels"], grad_scale=len(i["labels"]))),
        Mistake("dlogits = softmax(logits): the one-hot of the label was not subtracted",
                "dlogits = (p − onehot) / N.", lambda i: torch_cross_entropy(i["logits"], i["labels"], no_onehot=True)),
        Mistake("dlogits has the wrong sign: it is (p − onehot)/N, not (onehot − p)/N",
                "increasing the correct logit lowers the loss, so that entry of dlogits is negative.",
                lambda i: torch_cross_entropy(i["logits"], i["labels"], sign=-1.0)),
    ],
    hint=f"if you see NaN or inf: {SOFTMAX_OVERFLOW}. loss = mean_n(−log softmax(logits)[n, label_n]); "
         "dlogits = (softmax(logits) − onehot(labels)) / N.",
    exception_hints={**_RETURN_HINT, "IndexError": "labels holds one class index per sample: p[np.arange(N), labels]."},
)

# --------------------------------------------------------------------------- numerical gradient

_A = np.array([[0.5, -1.0, 2.0], [1.5, 0.3, -0.7], [-0.2, 0.8, 1.1], [1.0, -1.3, 0.4]])


def _fn_pairs():
    """name -> (numpy function, torch function, description)."""
    return {
        "square": (lambda x: float(np.sum(x ** 2)), lambda x: torch.sum(x ** 2), "f(x) = Σ x²"),
        "sin": (lambda x: float(np.sum(np.sin(x) * x ** 2)), lambda x: torch.sum(torch.sin(x) * x ** 2),
                "f(x) = Σ sin(x)·x²"),
        "tanh_layer": (lambda W: float(np.sum(np.tanh(_A @ W)) + 0.5 * np.sum(W ** 2)),
                       lambda W: torch.sum(torch.tanh(_t(_A) @ W)) + 0.5 * torch.sum(W ** 2),
                       "f(W) = Σ tanh(A @ W) + ½ Σ W² with a fixed 4×3 matrix A"),
        "logsumexp": (lambda x: float(np.log(np.sum(np.exp(x)))), lambda x: torch.logsumexp(x, dim=0),
                      "f(x) = log Σ exp(x)"),
        "cubic": (lambda x: float(np.sum(x[0] * x[1:] ** 3)), lambda x: torch.sum(x[0] * x[1:] ** 3),
                  "f(x) = Σ_i x[0]·x[i]³ (rows coupled)"),
    }


_NG_SETTINGS = [("square", (3,), 1e-3), ("sin", (3, 4), 1e-3), ("tanh_layer", (3, 2), 1e-3), ("logsumexp", (5,), 1e-4)]
_NG_HIDDEN = [("cubic", (3, 3), 1e-3), ("sin", (2, 2, 3), 1e-4)]


def _ng_cases(hidden: bool) -> list[Case]:
    def build(rng, setting, number):
        name, shape, h = setting
        x = np.array([1.0, -2.0, 3.0]) if number == 1 else rng.normal(size=shape)
        parts = [("grad", shape), ("x after your call", shape)]
        return Case(f"{_fn_pairs()[name][2]}, x of shape {shape}, h={h:g}; your function must also leave x unchanged",
                    {"f": name, "x": x, "h": h}, _describe_parts(parts))
    return _cases("numerical_gradient", _NG_SETTINGS, _NG_HIDDEN, hidden, build)


def _ng_call(fn, inputs):
    x = inputs["x"]   # inputs are a deep copy: the student may modify x in place
    grad = fn(_fn_pairs()[inputs["f"]][0], x, inputs["h"])
    array = to_numpy(grad)
    if array is None:
        return grad
    if array.shape != x.shape:
        raise WrongReturnValue(f"grad has shape {array.shape}; it must have the shape of x, {x.shape}.")
    return _flat(array, x)


def _ng_reference(inputs):
    xt = _t(inputs["x"], True)
    _fn_pairs()[inputs["f"]][1](xt).backward()
    return _flat(xt.grad, inputs["x"])


def numerical_gradient_variant(f, x, h, rule="centred") -> np.ndarray:
    """Finite differences done in row-major order; ``rule`` gives the named mistakes."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + h
        f_plus = f(x)
        if rule == "forward":
            x[idx] = old
            grad[idx] = (f_plus - f(x)) / h
            continue
        x[idx] = old - h
        f_minus = f(x)
        if rule != "no_restore":
            x[idx] = old
        grad[idx] = (f_plus - f_minus) / (h if rule == "one_h" else 2 * h)
    return _flat(grad, x)


def _ng_variant(rule):
    return lambda i: numerical_gradient_variant(_fn_pairs()[i["f"]][0], i["x"], i["h"], rule)


NUMERICAL_GRADIENT = Exercise(
    function="numerical_gradient",
    reference_name="the exact gradient from torch autograd",
    make_cases=_ng_cases,
    reference=_ng_reference,
    call=_ng_call,
    mistakes=[
        Mistake("forward difference (f(x + h) − f(x)) / h: its error is O(h), the centred difference's O(h²)",
                "grad[i] = (f(x + h·e_i) − f(x − h·e_i)) / (2h).", _ng_variant("forward")),
        Mistake("centred difference divided by h instead of 2h: every entry is twice the gradient",
                "the two points are 2h apart: divide by 2·h.", _ng_variant("one_h")),
        Mistake("x is not restored after perturbing an entry: later entries are evaluated at a shifted point",
                "save old = x[idx], and put x[idx] = old back after the two evaluations.", _ng_variant("no_restore")),
    ],
    hint="for each index i (np.ndindex(x.shape)): x[i] += h, f₊ = f(x); x[i] −= 2h, f₋ = f(x); restore x[i]; "
         "grad[i] = (f₊ − f₋)/(2h). Work in float64.",
    exception_hints=_RETURN_HINT,
)

# --------------------------------------------------------------------------- by-hand answers


class _Answers:
    """A by-hand exercise: one case per key of the student's dict, values from torch modules."""

    def __init__(self, name: str, questions: dict):
        self.name = name
        self.questions = questions   # key -> (description, reference(), [(mistake name, hint, wrong value())])

    def cases(self, hidden: bool) -> list[Case]:
        return [Case(f"{self.name}[{key!r}]: {description}", {"key": key},
                     lambda index, key=key: f"{self.name}[{key!r}]" + (f"[{', '.join(map(str, index))}]" if index else ""))
                for key, (description, _, _) in self.questions.items()]

    def reference(self, inputs) -> np.ndarray:
        return np.asarray(self.questions[inputs["key"]][1](), dtype=np.float64)

    def call(self, obj, inputs):
        answers = obj() if callable(obj) else obj
        if not isinstance(answers, dict):
            raise WrongReturnValue(f"{self.name} must be a dict of answers, got {type(answers).__name__}.")
        key = inputs["key"]
        if key not in answers:
            raise KeyError(f"{self.name} has no key {key!r}")
        value = answers[key]
        if value is None or value is Ellipsis:
            raise NotImplementedError(key)
        return np.asarray(value, dtype=np.float64)

    def mistakes(self) -> list[Mistake]:
        out = []
        for key, (_, _, wrongs) in self.questions.items():
            for name, hint, value in wrongs:
                out.append(Mistake(f"{self.name}[{key!r}]: {name}", hint,
                                   lambda inputs, key=key, value=value: _only(inputs, key, value)))
        return out

    def exercise(self, tolerance: Tolerance, hint: str) -> Exercise:
        return Exercise(function=self.name, reference_name="the values computed from torch modules",
                        make_cases=self.cases, reference=self.reference, call=self.call,
                        mistakes=self.mistakes(), tolerance=tolerance, hint=hint,
                        exception_hints={"KeyError": "keep every key of the template dict and fill in its value.",
                                         "WrongReturnValue": "pass the dict itself.",
                                         "ValueError": "each value is a number, or a list/tuple of numbers."})


def _only(inputs, key, value):
    if inputs["key"] != key:
        raise LookupError("this mistake belongs to another question")
    return np.asarray(value(), dtype=np.float64)


def _output_shape(layers, shape) -> tuple:
    """Output shape of the real modules on a zero input of ``shape`` (their initialisation's RNG draws undone)."""
    with torch.random.fork_rng():
        net = nn.Sequential(*layers())
    with torch.no_grad():
        return tuple(net(torch.zeros(shape)).shape)


def _n_params(layers, only_trainable=True, with_buffers=False) -> int:
    with torch.random.fork_rng():
        net = nn.Sequential(*layers())
    count = sum(p.numel() for p in net.parameters() if p.requires_grad or not only_trainable)
    if with_buffers:
        count += sum(b.numel() for name, b in net.named_buffers() if "running" in name)
    return int(count)


def _lenet(flatten=256):
    return lambda: [nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Flatten(), nn.Linear(flatten, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10)]


def _two_blocks(bias=True):
    return lambda: [nn.Conv2d(1, 4, 3, padding=1, bias=bias), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Conv2d(4, 8, 3, padding=1, bias=bias), nn.ReLU(), nn.MaxPool2d(2)]


def _seed_classifier_features(ceil_mode=False):
    return lambda: [nn.Conv2d(3, 64, 3), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=ceil_mode), nn.Conv2d(64, 128, 3),
                    nn.ReLU(), nn.MaxPool2d(2, ceil_mode=ceil_mode), nn.Flatten()]


def _mlp_block(bias=True):
    return lambda: [nn.Linear(768, 3072, bias=bias), nn.GELU(), nn.Linear(3072, 768, bias=bias)]


def _conv_block(bias=True, bn=True):
    return lambda: ([nn.Conv2d(64, 128, 3, padding=1, bias=bias)] + ([nn.BatchNorm2d(128)] if bn else [])
                    + [nn.Conv2d(128, 128, 3, padding=1, bias=bias)])


def _spatial(layers, size, channels=1):
    return _output_shape(layers, (1, channels, size, size))[2]


SIZE_QUESTIONS = {
    "conv_4x4_k3": ("side of the output of a 3×3 convolution on a 4×4 input, no padding, stride 1",
                    lambda: _spatial(lambda: [nn.Conv2d(1, 1, 3)], 4),
                    [("the `+ 1` is missing", "out = (n + 2p − k) // s + 1.", lambda: 1)]),
    "conv_4x4_k3_pad1": ("side of the output of the same convolution with padding=1",
                         lambda: _spatial(lambda: [nn.Conv2d(1, 1, 3, padding=1)], 4),
                         [("padding added on one side only", "the padded input is n + 2p wide.", lambda: 3)]),
    "conv_5x5_k3_stride2": ("side of the output of a 3×3 convolution on a 5×5 input, stride 2, no padding",
                            lambda: _spatial(lambda: [nn.Conv2d(1, 1, 3, stride=2)], 5),
                            [("stride ignored", "out = (n − k) // s + 1.", lambda: 3)]),
    "two_block_shape": ("(C, H, W) after [Conv 3×3 (4 filters, pad 1) → ReLU → MaxPool 2] → "
                        "[Conv 3×3 (8 filters, pad 1) → ReLU → MaxPool 2] on an 8×8×1 input",
                        lambda: _output_shape(_two_blocks(), (1, 1, 8, 8))[1:],
                        [("the shape is written channels-last (H, W, C); give (C, H, W)", "PyTorch order is (C, H, W).",
                          lambda: (2, 2, 8))]),
    "lenet_conv2_shape": ("(C, H, W) after LeNet-5's second convolution (Conv 5×5, 16 filters) on a 28×28×1 input",
                          lambda: _output_shape(lambda: _lenet()()[:4], (1, 1, 28, 28))[1:],
                          [("the shape is written channels-last (H, W, C); give (C, H, W)",
                            "PyTorch order is (C, H, W).", lambda: (8, 8, 16))]),
    "lenet_flatten": ("number of features LeNet-5 flattens before its first Linear layer (28×28×1 input)",
                      lambda: _output_shape(lambda: _lenet()()[:7], (1, 1, 28, 28))[1],
                      [("400 is the classic LeNet-5 on 32×32 inputs; this one sees 28×28",
                        "28 → 24 → 12 → 8 → 4, so 16·4·4.", lambda: 400)]),
    "classifier_flatten": ("in_features of the Linear layer after Conv 3×3 (64) → ReLU → MaxPool 2 → Conv 3×3 (128) "
                           "→ ReLU → MaxPool 2 on a 224×224×3 input (no padding)",
                           lambda: _output_shape(_seed_classifier_features(), (1, 3, 224, 224))[1],
                           [("pooling rounded up (109 / 2 → 55): MaxPool2d rounds down",
                             "MaxPool2d(2) on 109 gives 54.", lambda: _output_shape(_seed_classifier_features(True),
                                                                                 (1, 3, 224, 224))[1])]),
}

PARAM_QUESTIONS = {
    "single_conv_params": ("parameters of Conv2d(1, 2, kernel_size=3) (a 5×5×1 input, 2 filters)",
                           lambda: _n_params(lambda: [nn.Conv2d(1, 2, 3)]),
                           [("biases forgotten", "each filter has one bias.", lambda: 18)]),
    "mults_per_output": ("multiplications for one output value of a 3×3 kernel on a 3×3×2 input",
                         lambda: _n_params(lambda: [nn.Conv2d(2, 1, 3, bias=False)]),
                         [("only one channel counted: the kernel spans all input channels", "k·k·C_in.",
                           lambda: 9)]),
    "two_block_params": ("parameters of the two conv blocks of 'two_block_shape' (Conv 1→4 and Conv 4→8, 3×3)",
                         lambda: _n_params(_two_blocks()),
                         [("biases forgotten", "each filter has one bias.", lambda: _n_params(_two_blocks(False)))]),
    "lenet5_params": ("parameters of LeNet-5 on 28×28×1 input (conv 6, conv 16, Linear 256→120→84→10)",
                      lambda: _n_params(_lenet()),
                      [("you counted the 32×32-input LeNet-5 (400 flattened features)", "on 28×28 the flatten is 256.",
                        lambda: _n_params(_lenet(400))),
                       ("biases forgotten", "every conv filter and every Linear output unit has a bias.",
                        lambda: 44426 - (6 + 16 + 120 + 84 + 10))]),
    "mlp_block_params": ("parameters of Linear(768, 3072) → GELU → Linear(3072, 768)",
                         lambda: _n_params(_mlp_block()),
                         [("biases forgotten", "Linear(in, out) has in·out + out parameters.",
                           lambda: _n_params(_mlp_block(False)))]),
    "conv_block_params": ("parameters of Conv2d(64, 128, 3, padding=1) → BatchNorm2d(128) → Conv2d(128, 128, 3, padding=1)",
                          lambda: _n_params(_conv_block()),
                          [("BatchNorm's running_mean and running_var counted as parameters: they are buffers",
                            "BatchNorm2d(C) has 2·C parameters (γ, β).", lambda: _n_params(_conv_block(), with_buffers=True)),
                           ("256 parameters missing: BatchNorm's γ and β not counted, or the two convolutions' biases "
                            "(128 each) forgotten — both are 256", "BatchNorm2d(C) has 2·C trainable parameters and "
                            "Conv2d(in, out, k) has in·out·k·k + out.", lambda: _n_params(_conv_block(bn=False)))]),
    "two_3x3_params_c64": ("weights (no bias) of two stacked Conv2d(64, 64, 3)",
                           lambda: _n_params(lambda: [nn.Conv2d(64, 64, 3, bias=False), nn.Conv2d(64, 64, 3, bias=False)]),
                           [("only one of the two convolutions counted", "two layers of 64·64·3·3 weights each.",
                             lambda: 64 * 64 * 9)]),
    "one_5x5_params_c64": ("weights (no bias) of one Conv2d(64, 64, 5), the same receptive field",
                           lambda: _n_params(lambda: [nn.Conv2d(64, 64, 5, bias=False)]), []),
}


@functools.lru_cache(maxsize=None)
def measured_receptive_field(blocks: tuple) -> int:
    """Receptive field (side) of the centre output pixel, measured with autograd on real modules.

    ``blocks`` is a tuple of (kind, kernel, stride, dilation), kind "conv" or "pool". The layers are
    the 1-D versions (Conv1d, AvgPool1d): with square kernels a 2-D receptive field is the same along
    each axis. All conv weights are 1, so every input position that can influence the output gets a
    positive gradient. Max pooling routes its gradient to one position only, so a pool is measured
    with an average pool of the same window (the same geometry).
    """
    with torch.random.fork_rng():   # module initialisation draws from torch's global generator
        net = nn.Sequential(*[nn.Conv1d(1, 1, k, stride=s, dilation=d, padding=d * (k - 1) // 2, bias=False)
                              if kind == "conv" else nn.AvgPool1d(k, s) for kind, k, s, d in blocks]).double()
    with torch.no_grad():
        for layer in net:
            if isinstance(layer, nn.Conv1d):
                layer.weight.fill_(1.0)
    x = torch.ones(1, 1, 1024, dtype=torch.float64, requires_grad=True)
    out = net(x)
    out[0, 0, out.shape[2] // 2].backward()
    where = torch.nonzero(x.grad[0, 0] != 0).flatten()
    return int(where.max() - where.min() + 1)


def _conv_pool_blocks(n, dilated=(), pool=True):
    blocks = []
    for i in range(1, n + 1):
        blocks.append(("conv", 3, 1, 2 if i in dilated else 1))
        if pool:
            blocks.append(("pool", 2, 2, 1))
    return tuple(blocks)


def _rf_list(dilated=()):
    return [measured_receptive_field(_conv_pool_blocks(n, dilated)) for n in range(1, 5)]


def _blocks_needed(target, dilated=()):
    n = 1
    while measured_receptive_field(_conv_pool_blocks(n, dilated)) < target:
        n += 1
    return n


def _rf_ignoring_pool(n, dilated=()):
    """The receptive field with each pool's window left out (pools only multiply the jump)."""
    rf, jump = 1, 1
    for i in range(1, n + 1):
        rf += (2 * (2 if i in dilated else 1)) * jump
        jump *= 2
    return rf


_POOL_WINDOW_MISTAKE = ("the 2×2 max-pool window was not counted: it widens the receptive field by (2 − 1)·jump",
                        "walk the layers: RF += (k_eff − 1)·jump for every conv AND every pool, then jump *= stride.")

RF_QUESTIONS = {
    "rf_two_3x3": ("receptive field (side) of two stacked 3×3 convolutions, stride 1",
                   lambda: measured_receptive_field((("conv", 3, 1, 1),) * 2), []),
    "rf_three_3x3": ("receptive field of three stacked 3×3 convolutions, stride 1",
                     lambda: measured_receptive_field((("conv", 3, 1, 1),) * 3),
                     [("kernel sizes added up (3 + 3 + 3)", "RF = 1 + Σ (k − 1) at stride 1.", lambda: 9)]),
    "rf_dilated_3x3": ("receptive field of one 3×3 convolution with dilation 2",
                       lambda: measured_receptive_field((("conv", 3, 1, 2),)),
                       [("dilation ignored", "effective kernel k + (k − 1)(d − 1).", lambda: 3)]),
    "rf_blocks": ("[RF after 1, 2, 3, 4 blocks] of Conv 3×3 (stride 1, pad 1) → ReLU → MaxPool 2×2 (stride 2)",
                  lambda: _rf_list(),
                  [(_POOL_WINDOW_MISTAKE[0], _POOL_WINDOW_MISTAKE[1],
                    lambda: [_rf_ignoring_pool(n) for n in range(1, 5)])]),
    "blocks_needed_64": ("the fewest such blocks whose receptive field is at least 64",
                         lambda: _blocks_needed(64),
                         [(_POOL_WINDOW_MISTAKE[0], _POOL_WINDOW_MISTAKE[1], lambda: 6)]),
    "rf_blocks_dilated": ("[RF after 1, 2, 3, 4 blocks] when the convolutions of blocks 3 and 4 use dilation 2",
                          lambda: _rf_list(dilated=(3, 4)),
                          [(_POOL_WINDOW_MISTAKE[0], _POOL_WINDOW_MISTAKE[1],
                            lambda: [_rf_ignoring_pool(n, (3, 4)) for n in range(1, 5)])]),
    "blocks_needed_64_dilated": ("the fewest blocks reaching a receptive field of 64 with dilation 2 from block 3 on",
                                 lambda: _blocks_needed(64, dilated=(3, 4, 5, 6, 7, 8)),
                                 [(_POOL_WINDOW_MISTAKE[0], _POOL_WINDOW_MISTAKE[1], lambda: 5)]),
}


def _hand_pool(kind):
    return lambda: torch_pool(kind, SEED_POOL_X.reshape(1, 1, 4, 4), 2, 2)[0, 0]


def _hand_bn_running(reversed_momentum=False, biased=False):
    bn = nn.BatchNorm1d(3, momentum=0.1).double()
    with torch.no_grad():
        bn.train()(_t(SEED_BN_X))
    rm, rv = bn.running_mean.numpy(), bn.running_var.numpy()
    if reversed_momentum:   # 0.9·batch + 0.1·old, from the same batch statistics
        rm = 0.9 * SEED_BN_X.mean(0)
        rv = 0.1 * 1.0 + 0.9 * SEED_BN_X.var(0, ddof=1)
    if biased:
        rv = 0.9 * 1.0 + 0.1 * SEED_BN_X.var(0)
    return rm, rv


def _hand_bn_out():
    with torch.no_grad():
        return nn.BatchNorm1d(3, eps=1e-5).double().train()(_t(SEED_BN_X)).numpy()


HAND_QUESTIONS = {
    "conv_output": ("2×2 output of the 4×4 input [[1,2,3,0],[0,1,2,3],[3,0,1,2],[2,3,0,1]] with the kernel "
                    "[[1,0,−1],[1,0,−1],[1,0,−1]], no padding, stride 1",
                    lambda: torch_conv2d(SEED_CONV_X[None, None], SEED_CONV_W[None, None], None, 1, 0)[0, 0],
                    [("the kernel was flipped: deep-learning convolution does not flip", "multiply window and kernel "
                      "element by element as they are.", lambda: torch_conv2d(SEED_CONV_X[None, None],
                                                                              SEED_CONV_W[None, None, ::-1, ::-1],
                                                                              None, 1, 0)[0, 0])]),
    "maxpool_output": ("2×2 max pooling (stride 2) of [[1,3,2,4],[5,6,7,8],[9,2,3,1],[4,5,6,7]]", _hand_pool("max"), []),
    "avgpool_output": ("2×2 average pooling (stride 2) of the same input", _hand_pool("avg"),
                       [("window sums instead of means", "divide by 4.", lambda: _hand_pool("avg")() * 4)]),
    "maxpool_grad": ("4×4 gradient dX of that max pooling for dY = [[1, 2], [3, 4]]",
                     lambda: torch_pool_grad("max", SEED_POOL_X[None, None], SEED_POOL_DOUT[None, None], 2, 2)[0, 0],
                     [("the gradient of the bottom-right window went to the wrong pixel: its maximum 7 is at row 3, "
                       "column 3", "find the argmax of [[3, 1], [6, 7]].",
                       lambda: np.array([[0, 0, 0, 0], [0, 1, 0, 2], [3, 0, 0, 4], [0, 0, 0, 0]])),
                      ("the gradient was sent to all positions of each window, not only the maximum",
                       "only the max of each window receives dY.",
                       lambda: np.kron(SEED_POOL_DOUT, np.ones((2, 2))))]),
    "conv_dw": ("2×2 dW for X = [[1,2,3],[4,5,6],[7,8,9]], W = [[1,0],[0,1]], dY = ones(2×2)",
                lambda: torch_conv2d_grads(SEED_BACK_X[None, None], SEED_BACK_W[None, None], np.ones((1, 1, 2, 2)),
                                           1, 0)[9:13].reshape(2, 2), []),
    "conv_dx": ("3×3 dX for the same X, W and dY",
                lambda: torch_conv2d_grads(SEED_BACK_X[None, None], SEED_BACK_W[None, None], np.ones((1, 1, 2, 2)),
                                           1, 0)[:9].reshape(3, 3),
                [("dX filled with dY everywhere: each input receives dY·w from every window that covers it",
                  "count, for each input pixel, the windows where it meets a weight of 1.", lambda: np.ones((3, 3)))]),
    "bn_mean": ("per-feature batch mean of x = [[1,2,3],[4,5,6],[7,8,9],[10,11,12]]",
                lambda: _t(SEED_BN_X).mean(0).numpy(), []),
    "bn_var": ("per-feature variance BatchNorm normalises with (training mode)",
               lambda: _t(SEED_BN_X).var(0, correction=0).numpy(),
               [("unbiased variance (÷ 3): BatchNorm normalises with the biased one (÷ 4)", "divide by N = 4.",
                 lambda: SEED_BN_X.var(0, ddof=1))]),
    "bn_xhat_first_row": ("first row of the BatchNorm output with γ = 1, β = 0, eps = 1e-5 (3 decimals are enough)",
                          lambda: _hand_bn_out()[0],
                          [("normalised with the unbiased variance", "x̂ = (x − μ)/sqrt(σ² + eps), σ² ÷ 4.",
                            lambda: (SEED_BN_X[0] - SEED_BN_X.mean(0)) / np.sqrt(SEED_BN_X.var(0, ddof=1) + 1e-5))]),
    "bn_running_mean": ("running_mean after this one training step of BatchNorm1d(3, momentum=0.1) (starts at 0)",
                        lambda: _hand_bn_running()[0],
                        [("momentum convention reversed: PyTorch keeps 0.9 of the old value", "0.9·0 + 0.1·μ.",
                          lambda: _hand_bn_running(reversed_momentum=True)[0])]),
    "bn_running_var": ("running_var after the same step (starts at 1)",
                       lambda: _hand_bn_running()[1],
                       [("running_var updated with the biased variance: PyTorch stores the unbiased one (÷ N − 1)",
                         "0.9·1 + 0.1·(45/3).", lambda: _hand_bn_running(biased=True)[1]),
                        ("momentum convention reversed: PyTorch keeps 0.9 of the old value", "0.9·1 + 0.1·σ²_unbiased.",
                         lambda: _hand_bn_running(reversed_momentum=True)[1])]),
}

_EXACT = Tolerance(atol=1e-6, rtol=0.0)
_HAND = Tolerance(atol=2e-3, rtol=0.0)   # by-hand decimals: 3 decimals are enough

SIZE_ANSWERS = _Answers("size_answers", SIZE_QUESTIONS).exercise(
    _EXACT, "out = (n + 2·padding − kernel) // stride + 1 per convolution or pooling; shapes as (C, H, W).")
PARAM_ANSWERS = _Answers("param_answers", PARAM_QUESTIONS).exercise(
    _EXACT, "Conv2d(in, out, k): in·out·k·k + out; Linear(in, out): in·out + out; BatchNorm(C): 2·C; "
            "ReLU, GELU, pooling: 0.")
RF_ANSWERS = _Answers("rf_answers", RF_QUESTIONS).exercise(
    _EXACT, "start with RF = 1, jump = 1; for each conv or pool: RF += (k_eff − 1)·jump, jump *= stride; "
            "k_eff = k + (k − 1)(dilation − 1).")
HAND_ANSWERS = _Answers("hand_answers", HAND_QUESTIONS).exercise(
    _HAND, "work it out on paper as in the notebook's worked examples; arrays as nested lists.")

EXERCISES = {e.function: e for e in (
    CONV_FORWARD, CONV_BACKWARD, MAXPOOL_FORWARD, MAXPOOL_BACKWARD, AVGPOOL_FORWARD, AVGPOOL_BACKWARD,
    GAP_FORWARD, GAP_BACKWARD, RELU_FORWARD, RELU_BACKWARD, LINEAR_FORWARD, LINEAR_BACKWARD,
    BN_FORWARD, BN_BACKWARD, SOFTMAX_CE, NUMERICAL_GRADIENT,
    SIZE_ANSWERS, PARAM_ANSWERS, RF_ANSWERS, HAND_ANSWERS)}


def _dict(answers):
    """run_check expects a callable: a dict of answers is passed as a function returning it."""
    return answers if callable(answers) else (lambda: answers)


# --------------------------------------------------------------------------- the checks


def check_conv2d_forward(conv2d_forward, hidden: bool = False) -> None:
    """Check ``conv2d_forward(x, w, b, stride, padding)`` against ``torch.nn.functional.conv2d``."""
    show(run_check(CONV_FORWARD, conv2d_forward, hidden))


def check_conv2d_backward(conv2d_backward, hidden: bool = False) -> None:
    """Check ``conv2d_backward(dout, x, w, stride, padding) -> (dx, dw, db)`` against torch autograd."""
    show(run_check(CONV_BACKWARD, conv2d_backward, hidden))


def check_maxpool2d_forward(maxpool2d_forward, hidden: bool = False) -> None:
    """Check ``maxpool2d_forward(x, kernel_size, stride)`` against ``F.max_pool2d``."""
    show(run_check(MAXPOOL_FORWARD, maxpool2d_forward, hidden))


def check_maxpool2d_backward(maxpool2d_backward, hidden: bool = False) -> None:
    """Check ``maxpool2d_backward(dout, x, kernel_size, stride) -> dx`` against torch autograd."""
    show(run_check(MAXPOOL_BACKWARD, maxpool2d_backward, hidden))


def check_avgpool2d_forward(avgpool2d_forward, hidden: bool = False) -> None:
    """Check ``avgpool2d_forward(x, kernel_size, stride)`` against ``F.avg_pool2d``."""
    show(run_check(AVGPOOL_FORWARD, avgpool2d_forward, hidden))


def check_avgpool2d_backward(avgpool2d_backward, hidden: bool = False) -> None:
    """Check ``avgpool2d_backward(dout, x, kernel_size, stride) -> dx`` against torch autograd."""
    show(run_check(AVGPOOL_BACKWARD, avgpool2d_backward, hidden))


def check_global_avg_pool_forward(global_avg_pool_forward, hidden: bool = False) -> None:
    """Check ``global_avg_pool_forward(x) -> (N, C)``."""
    show(run_check(GAP_FORWARD, global_avg_pool_forward, hidden))


def check_global_avg_pool_backward(global_avg_pool_backward, hidden: bool = False) -> None:
    """Check ``global_avg_pool_backward(dout, x) -> dx``."""
    show(run_check(GAP_BACKWARD, global_avg_pool_backward, hidden))


def check_relu_forward(relu_forward, hidden: bool = False) -> None:
    """Check ``relu_forward(x)`` against ``F.relu``."""
    show(run_check(RELU_FORWARD, relu_forward, hidden))


def check_relu_backward(relu_backward, hidden: bool = False) -> None:
    """Check ``relu_backward(dout, x) -> dx`` against torch autograd."""
    show(run_check(RELU_BACKWARD, relu_backward, hidden))


def check_linear_forward(linear_forward, hidden: bool = False) -> None:
    """Check ``linear_forward(x, W, b) = x @ W + b``."""
    show(run_check(LINEAR_FORWARD, linear_forward, hidden))


def check_linear_backward(linear_backward, hidden: bool = False) -> None:
    """Check ``linear_backward(dout, x, W) -> (dx, dW, db)`` against torch autograd."""
    show(run_check(LINEAR_BACKWARD, linear_backward, hidden))


def check_batchnorm_forward(batchnorm_forward, hidden: bool = False) -> None:
    """Check ``batchnorm_forward(...) -> (out, new_running_mean, new_running_var)`` against ``F.batch_norm``."""
    show(run_check(BN_FORWARD, batchnorm_forward, hidden))


def check_batchnorm_backward(batchnorm_backward, hidden: bool = False) -> None:
    """Check ``batchnorm_backward(dout, x, gamma, eps) -> (dx, dgamma, dbeta)`` against torch autograd."""
    show(run_check(BN_BACKWARD, batchnorm_backward, hidden))


def check_softmax_cross_entropy(softmax_cross_entropy, hidden: bool = False) -> None:
    """Check ``softmax_cross_entropy(logits, labels) -> (loss, dlogits)`` against ``F.cross_entropy``."""
    show(run_check(SOFTMAX_CE, softmax_cross_entropy, hidden))


def check_numerical_gradient(numerical_gradient, hidden: bool = False) -> None:
    """Check ``numerical_gradient(f, x, h)`` against exact gradients (torch autograd) of known functions."""
    show(run_check(NUMERICAL_GRADIENT, numerical_gradient, hidden))


def check_size_answers(size_answers, hidden: bool = False) -> None:
    """Check the dict of output sizes against shapes torch modules produce."""
    show(run_check(SIZE_ANSWERS, _dict(size_answers), hidden))


def check_param_answers(param_answers, hidden: bool = False) -> None:
    """Check the dict of parameter counts against ``sum(p.numel())`` of torch modules."""
    show(run_check(PARAM_ANSWERS, _dict(param_answers), hidden))


def check_rf_answers(rf_answers, hidden: bool = False) -> None:
    """Check the dict of receptive fields against fields measured with autograd on torch modules."""
    show(run_check(RF_ANSWERS, _dict(rf_answers), hidden))


def check_hand_answers(hand_answers, hidden: bool = False) -> None:
    """Check the dict of hand-computed convolution, pooling and BatchNorm numbers against torch."""
    show(run_check(HAND_ANSWERS, _dict(hand_answers), hidden))
