"""Tests of utils/cnn/layers/: the checks of the notebook source/cnn/cnn_layers.ipynb.

What tests/test_contract.py asserts for every exercise (each catalogued mistake diagnosed as itself,
mistakes distinct, a stub reported as not implemented) is not repeated here. Here: the instructor
solution and independent correct variants (loops, vectorized, float32) pass, with the global RNGs
untouched on the hidden cases too; realistic student edits of the solution are diagnosed, and every
catalogued mistake of a layer has one; the by-hand answers' own messages; the sample mistakes of
utils/instructor/samples/cnn_layers.py apply to the notebook and are diagnosed; the grading kernel
runs the cases without torch.
"""
from __future__ import annotations

import copy
from pathlib import Path

import check_failures
import nbformat
import numpy as np
import pytest

import utils.cnn.layers as cl
from notebook_solutions import NotebookSolutions
from utils.checks.feedback import CheckFailure
from utils.cnn.layers.loss import SOFTMAX_OVERFLOW
from utils.instructor.samples.cnn_layers import MISTAKES as SAMPLES

NOTEBOOK = Path(__file__).resolve().parents[1] / "source" / "cnn" / "cnn_layers.ipynb"

FUNCTIONS = ["conv2d_forward", "conv2d_backward", "maxpool2d_forward", "maxpool2d_backward",
             "avgpool2d_forward", "avgpool2d_backward", "global_avg_pool_forward", "global_avg_pool_backward",
             "relu_forward", "relu_backward", "linear_forward", "linear_backward", "batchnorm_forward",
             "batchnorm_backward", "softmax_cross_entropy", "numerical_gradient"]
ANSWERS = ["size_answers", "param_answers", "rf_answers", "hand_answers"]
NETWORK = ["network_backward", "numpy_train_steps"]   # tested in tests/test_cnn_layers_network.py

NB = NotebookSolutions(NOTEBOOK, {"np": np})
CELLS, build, mutate = NB.cells, NB.build, NB.mutate


def check(name: str):
    return getattr(cl, f"check_{name}")


def failure(name: str, student) -> str:
    return check_failures.failure(check(name), student, hidden=True)


def mistake_name(function: str, key: str) -> str:
    names = [m.name for m in cl.EXERCISES[function].mistakes if key in m.name]
    assert len(names) == 1, (function, key, names)
    return names[0]


# --------------------------------------------------------------------------- correct variants


def conv_forward_loops(x, w, b, stride=1, padding=0):
    N, C, H, W = x.shape
    F_, _, KH, KW = w.shape
    xp = np.zeros((N, C, H + 2 * padding, W + 2 * padding))
    xp[:, :, padding:padding + H, padding:padding + W] = x
    Ho, Wo = (H + 2 * padding - KH) // stride + 1, (W + 2 * padding - KW) // stride + 1
    out = np.zeros((N, F_, Ho, Wo))
    for n in range(N):
        for f in range(F_):
            for i in range(Ho):
                for j in range(Wo):
                    out[n, f, i, j] = np.sum(xp[n, :, i * stride:i * stride + KH, j * stride:j * stride + KW]
                                             * w[f]) + b[f]
    return out


def conv_backward_loops(dout, x, w, stride=1, padding=0):
    N, C, H, W = x.shape
    F_, _, KH, KW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    dxp, dw, db = np.zeros_like(xp), np.zeros_like(w), np.zeros(F_)
    for n in range(N):
        for f in range(F_):
            for i in range(dout.shape[2]):
                for j in range(dout.shape[3]):
                    hs, ws = i * stride, j * stride
                    dw[f] += dout[n, f, i, j] * xp[n, :, hs:hs + KH, ws:ws + KW]
                    db[f] += dout[n, f, i, j]
                    dxp[n, :, hs:hs + KH, ws:ws + KW] += dout[n, f, i, j] * w[f]
    return dxp[:, :, padding:padding + H, padding:padding + W], dw, db


def conv_backward_flip(dout, x, w, stride=1, padding=0):
    """dx as a full convolution of the (stride-dilated) dout with the 180°-rotated kernel."""
    N, C, H, W = x.shape
    F_, _, KH, KW = w.shape
    Ho, Wo = dout.shape[2:]
    dil = np.zeros((N, F_, (Ho - 1) * stride + 1, (Wo - 1) * stride + 1))
    dil[:, :, ::stride, ::stride] = dout
    Hp, Wp = H + 2 * padding, W + 2 * padding
    full = np.zeros((N, F_, Hp + KH - 1, Wp + KW - 1))     # room for the rows the stride never reached
    full[:, :, KH - 1:KH - 1 + dil.shape[2], KW - 1:KW - 1 + dil.shape[3]] = dil
    rot = w[:, :, ::-1, ::-1]
    dxp = np.zeros((N, C, Hp, Wp))
    for r in range(Hp):
        for q in range(Wp):
            dxp[:, :, r, q] = np.einsum("nfab,fcab->nc", full[:, :, r:r + KH, q:q + KW], rot)
    _, dw, db = conv_backward_loops(dout, x, w, stride, padding)
    return dxp[:, :, padding:padding + H, padding:padding + W], dw, db


def pool_forward_loops(kind):
    def forward(x, kernel_size, stride):
        N, C, H, W = x.shape
        Ho, Wo = (H - kernel_size) // stride + 1, (W - kernel_size) // stride + 1
        out = np.zeros((N, C, Ho, Wo))
        for i in range(Ho):
            for j in range(Wo):
                window = x[:, :, i * stride:i * stride + kernel_size, j * stride:j * stride + kernel_size]
                out[:, :, i, j] = window.max(axis=(2, 3)) if kind == "max" else window.mean(axis=(2, 3))
        return out
    return forward


def maxpool_backward_mask(dout, x, kernel_size, stride):
    dx = np.zeros_like(x)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for i in range(dout.shape[2]):
                for j in range(dout.shape[3]):
                    window = x[n, c, i * stride:i * stride + kernel_size, j * stride:j * stride + kernel_size]
                    mask = window == window.max()
                    dx[n, c, i * stride:i * stride + kernel_size, j * stride:j * stride + kernel_size] += \
                        mask * dout[n, c, i, j]
    return dx


def avgpool_backward_loops(dout, x, kernel_size, stride):
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            for a in range(kernel_size):
                for b in range(kernel_size):
                    dx[:, :, i * stride + a, j * stride + b] += dout[:, :, i, j] / kernel_size ** 2
    return dx


def bn_forward_loops(x, gamma, beta, running_mean, running_var, momentum, eps, training):
    out = np.empty_like(x)
    rm, rv = running_mean.copy(), running_var.copy()
    for c in range(x.shape[1]):
        values = x[:, c].ravel()
        if training:
            mu, var = values.mean(), ((values - values.mean()) ** 2).sum() / len(values)
            rm[c] = (1 - momentum) * running_mean[c] + momentum * mu
            rv[c] = (1 - momentum) * running_var[c] + momentum * ((values - mu) ** 2).sum() / (len(values) - 1)
        else:
            mu, var = running_mean[c], running_var[c]
        out[:, c] = gamma[c] * (x[:, c] - mu) / np.sqrt(var + eps) + beta[c]
    return out, rm, rv


def bn_backward_three_paths(dout, x, gamma, eps):
    """The chain rule written path by path (the course notes' form), channel-wise for any ndim."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    m = x.size // x.shape[1]
    mu = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    x_hat = (x - mu) / np.sqrt(var + eps)
    dx_hat = dout * gamma.reshape(shape)
    dvar = np.sum(dx_hat * (x - mu) * -0.5 * (var + eps) ** -1.5, axis=axes, keepdims=True)
    dmu = np.sum(-dx_hat / np.sqrt(var + eps), axis=axes, keepdims=True) + \
        dvar * np.sum(-2 * (x - mu), axis=axes, keepdims=True) / m
    dx = dx_hat / np.sqrt(var + eps) + dvar * 2 * (x - mu) / m + dmu / m
    return dx, (dout * x_hat).sum(axis=axes), dout.sum(axis=axes)


def softmax_ce_loops(logits, labels):
    N, K = logits.shape
    loss, d = 0.0, np.zeros_like(logits)
    for n in range(N):
        z = logits[n] - np.max(logits[n])
        p = np.exp(z) / np.exp(z).sum()
        loss -= np.log(p[labels[n]]) / N
        d[n] = p / N
        d[n, labels[n]] -= 1 / N
    return loss, d


def numerical_gradient_flat(f, x, h=1e-5):
    flat = x.reshape(-1)       # a view: writing to it perturbs x
    grad = np.zeros(x.size)
    for i in range(x.size):
        keep = flat[i]
        flat[i] = keep + h
        up = f(x)
        flat[i] = keep - h
        down = f(x)
        flat[i] = keep
        grad[i] = (up - down) / (2 * h)
    return grad.reshape(x.shape)


def float32(fn):
    """Run ``fn`` with every float array argument cast to float32."""
    def wrapped(*args, **kwargs):
        cast = [a.astype(np.float32) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a for a in args]
        return fn(*cast, **kwargs)
    return wrapped


VARIANTS = {
    "conv2d_forward": [conv_forward_loops, float32(build("conv2d_forward"))],
    "conv2d_backward": [conv_backward_loops, conv_backward_flip, float32(build("conv2d_backward"))],
    "maxpool2d_forward": [pool_forward_loops("max"), float32(build("maxpool2d_forward"))],
    "maxpool2d_backward": [maxpool_backward_mask, float32(build("maxpool2d_backward"))],
    "avgpool2d_forward": [pool_forward_loops("avg"), float32(build("avgpool2d_forward"))],
    "avgpool2d_backward": [avgpool_backward_loops, float32(build("avgpool2d_backward"))],
    "global_avg_pool_forward": [lambda x: x.sum(axis=3).sum(axis=2) / (x.shape[2] * x.shape[3]),
                                float32(build("global_avg_pool_forward"))],
    "global_avg_pool_backward": [lambda dout, x: np.ones_like(x) * dout[:, :, None, None] / x[0, 0].size,
                                 float32(build("global_avg_pool_backward"))],
    "relu_forward": [lambda x: np.where(x > 0, x, 0.0), float32(build("relu_forward"))],
    "relu_backward": [lambda dout, x: np.where(x > 0, dout, 0.0), float32(build("relu_backward"))],
    "linear_forward": [lambda x, W, b: np.einsum("ni,io->no", x, W) + b, float32(build("linear_forward"))],
    "linear_backward": [lambda dout, x, W: (np.einsum("no,io->ni", dout, W), np.einsum("ni,no->io", x, dout),
                                            dout.sum(0)),
                        float32(build("linear_backward"))],
    "batchnorm_forward": [bn_forward_loops, float32(build("batchnorm_forward"))],
    "batchnorm_backward": [bn_backward_three_paths, float32(build("batchnorm_backward"))],
    "softmax_cross_entropy": [softmax_ce_loops, float32(build("softmax_cross_entropy"))],
    "numerical_gradient": [numerical_gradient_flat],   # float32 is not meant to pass: see the notebook
}


@pytest.mark.parametrize("name,variant", [(n, v) for n, vs in VARIANTS.items() for v in vs],
                         ids=[f"{n}-{i}" for n, vs in VARIANTS.items() for i in range(len(vs))])
def test_correct_variants_pass(name, variant, capsys):
    check(name)(variant, hidden=True)
    assert "✓" in capsys.readouterr().out


def test_float32_numerical_gradient_is_rejected():
    student = build("numerical_gradient")
    text = failure("numerical_gradient", lambda f, x, h=1e-5: student(f, x.astype(np.float32), h))
    assert "numerical_gradient does not match" in text


# --------------------------------------------------------------------------- mistakes

def _softmax_naive(logits, labels):
    N = logits.shape[0]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(N), labels]).mean()
    p[np.arange(N), labels] -= 1
    return loss, p / N


MUTANTS = [  # (function, mistake-name key, the mistaken student function)
    ("conv2d_forward", "stride was ignored", lambda: mutate("conv2d_forward", ("// stride + 1", "+ 1"),
                                                        ("::stride, ::stride", "::1, ::1"))),
    ("conv2d_forward", "padding was ignored", lambda: mutate("conv2d_forward", (
        "x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))", "x_pad = x"))),
    ("conv2d_forward", "rotated by 180°", lambda: mutate("conv2d_forward", (
        'np.einsum("ncijab,fcab->nfij", windows, w)', 'np.einsum("ncijab,fcab->nfij", windows, w[:, :, ::-1, ::-1])'))),
    ("conv2d_forward", "bias b was not added", lambda: mutate("conv2d_forward", ("return out + b[None, :, None, None]",
                                                                        "return out"))),
    ("conv2d_backward", "wrong orientation", lambda: mutate("conv2d_backward", (
        "w[:, :, a, b])", "w[:, :, K_h - 1 - a, K_w - 1 - b])"))),
    ("conv2d_backward", "divided by the batch size", lambda: mutate("conv2d_backward", (
        "return dx, dw, db", "return dx, dw / N, db / N"))),
    ("maxpool2d_forward", "moved by kernel_size", lambda: mutate("maxpool2d_forward", (
        "::stride, ::stride", "::kernel_size, ::kernel_size"))),
    ("maxpool2d_forward", "averaged instead", lambda: mutate("maxpool2d_forward", (".max(axis=(4, 5))",
                                                                                 ".mean(axis=(4, 5))"))),
    ("maxpool2d_backward", "all positions", lambda: mutate("maxpool2d_backward", (
        "dx[n_idx, c_idx, i * stride + r, j * stride + q] += dout[:, :, i, j]",
        "dx[:, :, i * stride:i * stride + k, j * stride:j * stride + k] += dout[:, :, i:i + 1, j:j + 1]"))),
    ("maxpool2d_backward", "average-pool gradient", lambda: mutate("maxpool2d_backward", (
        "dx[n_idx, c_idx, i * stride + r, j * stride + q] += dout[:, :, i, j]",
        "dx[:, :, i * stride:i * stride + k, j * stride:j * stride + k] += dout[:, :, i:i + 1, j:j + 1] / (k * k)"))),
    ("maxpool2d_backward", "overwrite", lambda: mutate("maxpool2d_backward", (
        "j * stride + q] += dout", "j * stride + q] = dout"))),
    ("maxpool2d_backward", "moved by kernel_size", lambda: mutate("maxpool2d_backward", ("i * stride", "i * k"),
                                                            ("j * stride", "j * k"))),
    ("avgpool2d_forward", "moved by kernel_size", lambda: mutate("avgpool2d_forward", (
        "::stride, ::stride", "::kernel_size, ::kernel_size"))),
    ("avgpool2d_forward", "summed, not averaged", lambda: mutate("avgpool2d_forward", (".mean(axis=(4, 5))",
                                                                            ".sum(axis=(4, 5))"))),
    ("avgpool2d_backward", "not divided by the window size", lambda: mutate("avgpool2d_backward", (" / (k * k)", ""))),
    ("avgpool2d_backward", "moved by kernel_size", lambda: mutate("avgpool2d_backward", ("i * stride", "i * k"),
                                                            ("j * stride", "j * k"))),
    ("global_avg_pool_forward", "kept the spatial axes", lambda: mutate("global_avg_pool_forward", (
        "x.mean(axis=(2, 3))", "x.mean(axis=(2, 3), keepdims=True)"))),
    ("global_avg_pool_forward", "summed over space", lambda: mutate("global_avg_pool_forward", (".mean(", ".sum("))),
    ("global_avg_pool_backward", "without dividing by H·W", lambda: mutate("global_avg_pool_backward",
                                                                        (" / (H * W)", ""))),
    ("relu_forward", "mask", lambda: mutate("relu_forward", ("np.maximum(x, 0)", "(x > 0).astype(float)"))),
    ("relu_forward", "min instead of max", lambda: mutate("relu_forward", ("np.maximum(x, 0)", "np.minimum(x, 0)"))),
    ("relu_backward", "passed through everywhere", lambda: mutate("relu_backward", ("dout * (x > 0)", "dout.copy()"))),
    ("relu_backward", "not multiplied in", lambda: mutate("relu_backward", ("dout * (x > 0)", "1.0 * (x > 0)"))),
    ("relu_backward", "positive part of x", lambda: mutate("relu_backward", ("dout * (x > 0)",
                                                                             "dout * np.maximum(x, 0)"))),
    ("linear_forward", "bias b was not added", lambda: mutate("linear_forward", ("x @ W + b", "x @ W"))),
    ("linear_forward", "W was used transposed", lambda: mutate("linear_forward", ("x @ W + b", "x @ W.T + b"))),
    ("linear_backward", "dx used W", lambda: mutate("linear_backward", ("dout @ W.T", "dout @ W"))),
    ("linear_backward", "dW is transposed", lambda: mutate("linear_backward", ("x.T @ dout", "dout.T @ x"))),
    ("linear_backward", "db was averaged", lambda: mutate("linear_backward", ("dout.sum(axis=0)",
                                                                             "dout.mean(axis=0)"))),
    ("batchnorm_forward", "unbiased variance", lambda: mutate("batchnorm_forward", (
        "var = x.var(axis=axes)  ", "var = x.var(axis=axes, ddof=1)  "), ("momentum * var * m / (m - 1)",
                                                                           "momentum * var"))),
    ("batchnorm_forward", "momentum convention is reversed", lambda: mutate("batchnorm_forward", (
        "(1 - momentum) * running_mean + momentum * mean", "momentum * running_mean + (1 - momentum) * mean"), (
        "(1 - momentum) * running_var + momentum * var * m / (m - 1)",
        "momentum * running_var + (1 - momentum) * var * m / (m - 1)"))),
    ("batchnorm_forward", "biased batch variance", lambda: mutate("batchnorm_forward", (
        "momentum * var * m / (m - 1)", "momentum * var"))),
    ("batchnorm_forward", "eval mode normalised with the batch", lambda: mutate("batchnorm_forward", (
        "mean, var = running_mean, running_var", "mean, var = x.mean(axis=axes), x.var(axis=axes)"))),
    ("batchnorm_forward", "updated in eval", lambda: mutate("batchnorm_forward", (
        "new_running_mean, new_running_var = running_mean.copy(), running_var.copy()",
        "m = x.size // x.shape[1]\n"
        "        new_running_mean = (1 - momentum) * running_mean + momentum * x.mean(axis=axes)\n"
        "        new_running_var = (1 - momentum) * running_var + momentum * x.var(axis=axes) * m / (m - 1)"))),
    ("batchnorm_forward", "eps was added outside", lambda: mutate("batchnorm_forward", (
        "np.sqrt(var.reshape(shape) + eps)", "(np.sqrt(var.reshape(shape)) + eps)"))),
    ("batchnorm_backward", "as constants", lambda: mutate("batchnorm_backward", (
        "dx = inv_std * (dx_hat - dx_hat.mean(axis=axes, keepdims=True)\n"
        "                    - x_hat * (dx_hat * x_hat).mean(axis=axes, keepdims=True))", "dx = inv_std * dx_hat"))),
    ("batchnorm_backward", "dgamma was computed from x", lambda: mutate("batchnorm_backward", (
        "(dout * x_hat).sum(axis=axes)", "(dout * x).sum(axis=axes)"))),
    ("batchnorm_backward", "unbiased variance", lambda: mutate("batchnorm_backward", (
        "x.var(axis=axes, keepdims=True)", "x.var(axis=axes, keepdims=True, ddof=1)"))),
    ("softmax_cross_entropy", "sums over the N samples", lambda: mutate("softmax_cross_entropy", (
        "].mean()", "].sum()"), ("return loss, dlogits / N", "return loss, dlogits"))),
    ("softmax_cross_entropy", "not divided by N", lambda: mutate("softmax_cross_entropy", (
        "return loss, dlogits / N", "return loss, dlogits"))),
    ("softmax_cross_entropy", "one-hot", lambda: mutate("softmax_cross_entropy", (
        "dlogits[np.arange(N), labels] -= 1", "pass"))),
    ("softmax_cross_entropy", "wrong sign", lambda: mutate("softmax_cross_entropy", (
        "return loss, dlogits / N", "return loss, -dlogits / N"))),
    ("numerical_gradient", "one-sided (forward) difference", lambda: mutate("numerical_gradient", (
        "x[idx] = old - h\n        f_minus = f(x)\n        x[idx] = old\n"
        "        grad[idx] = (f_plus - f_minus) / (2 * h)",
        "x[idx] = old\n        grad[idx] = (f_plus - f(x)) / h"))),
    ("numerical_gradient", "divided by h:", lambda: mutate("numerical_gradient", ("/ (2 * h)", "/ h"))),
    ("numerical_gradient", "not restored", lambda: mutate("numerical_gradient", ("x[idx] = old\n        grad",
                                                                                  "grad"))),
]


@pytest.mark.parametrize("function,key,make", MUTANTS, ids=[f"{f}-{k}" for f, k, _ in MUTANTS])
def test_mistake_is_named(function, key, make):
    text = failure(function, make())
    assert mistake_name(function, key) in text, text


def test_every_catalogued_mistake_is_tested():
    tested = {(f, mistake_name(f, k)) for f, k, _ in MUTANTS}
    for function in FUNCTIONS:
        for mistake in cl.EXERCISES[function].mistakes:
            assert (function, mistake.name) in tested, f"{function}: untested mistake {mistake.name!r}"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # the overflow is the point of this test
@pytest.mark.parametrize("student", [_softmax_naive, lambda: mutate("softmax_cross_entropy", (
    "shifted = logits - logits.max(axis=1, keepdims=True)", "shifted = logits"))], ids=["naive", "log-softmax"])
def test_softmax_overflow_is_named(student):
    student = student if student is _softmax_naive else student()
    text = failure("softmax_cross_entropy", student)
    assert SOFTMAX_OVERFLOW in text and "NaN or infinite" in text


def test_wrong_return_kind_is_explained():
    text = failure("conv2d_backward", lambda dout, x, w, stride=1, padding=0: conv_backward_loops(dout, x, w, stride,
                                                                                                   padding)[0])
    assert "must return a tuple (dx, dw, db)" in text


# --------------------------------------------------------------------------- by-hand answers


def _solution_answers(name):
    return build(name, namespace={})


def test_answers_match_the_course_values():
    size, params = _solution_answers("size_answers"), _solution_answers("param_answers")
    assert params["mlp_block_params"] == 4_722_432 and params["conv_block_params"] == 221_696
    assert params["lenet5_params"] == 44_426 and size["lenet_flatten"] == 256


@pytest.mark.parametrize("name", ANSWERS)
def test_wrong_answer_names_its_key(name):
    answers = copy.deepcopy(_solution_answers(name))
    key = list(answers)[-1]
    answers[key] = (np.asarray(answers[key], dtype=float) + 7).tolist()
    assert f"{name}[{key!r}]" in failure(name, answers)


@pytest.mark.parametrize("name", ANSWERS)
def test_missing_key_is_explained(name):
    answers = copy.deepcopy(_solution_answers(name))
    answers.pop(list(answers)[0])
    assert "keep every key of the template" in failure(name, answers)


# --------------------------------------------------------------------------- the notebook and its samples


def test_notebook_cells_are_the_checked_ones():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    tests = {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")}
    for name in FUNCTIONS + ANSWERS + NETWORK:
        assert name in CELLS and f"test_{name}" in tests
        assert tests[f"test_{name}"].source.startswith(f"check_{name}({name})\n### BEGIN HIDDEN TESTS")
        assert 1 <= tests[f"test_{name}"].metadata["nbgrader"]["points"] <= 3
    assert set(cl.EXERCISES) == set(FUNCTIONS + ANSWERS + NETWORK)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # the softmax sample overflows on purpose
@pytest.mark.parametrize("sample", SAMPLES, ids=[s.student for s in SAMPLES])
def test_sample_mistake_applies_and_is_diagnosed(sample):
    assert sample.student.startswith("cnn_") and sample.notebook == "cnn_layers"
    text = failure(sample.cell, NB.run(NB.apply(sample))[sample.cell])
    assert sample.diagnosis in text, text


# --------------------------------------------------------------------------- the trusted-grading split

_KERNEL_SIDE = r'''
import json, pickle, sys
import numpy as np
import utils.cnn.layers as cl
with open({cells!r}) as f:
    CELLS, NAMES = json.load(f)   # the notebook's solution cells
from utils.checks.exercise import Case, produce
with open({inputs!r}, "rb") as f:
    all_cases = pickle.load(f)
arrays, errors = {{}}, []
for name in NAMES:
    namespace = {{"np": np}}
    exec(CELLS[name], namespace)
    for index, (description, inputs) in enumerate(all_cases[name]):
        produced = produce(cl.EXERCISES[name], namespace[name], Case(description, inputs), "case")
        if produced.error is not None:
            errors.append(f"{{name}} {{index}}: {{produced.error}}")
        else:
            arrays[f"{{name}}|{{index}}"] = np.asarray(produced.value)
np.savez({outputs!r}, **arrays)
print(json.dumps({{"torch_imported": "torch" in sys.modules, "errors": errors}}))
'''


def test_kernel_side_runs_without_torch_and_grader_side_accepts(tmp_path):
    """make_cases/call run in a kernel without torch; references are computed outside it."""
    import json
    import pickle
    import subprocess
    import sys

    from utils.checks.exercise import Produced, evaluate
    from utils.checks.feedback import CheckResult
    from utils.checks.seeding import grading_salt

    with grading_salt("a course secret"):
        cases = {name: cl.EXERCISES[name].make_cases(True) for name in FUNCTIONS + ANSWERS}
    inputs, outputs, cells = tmp_path / "inputs.pkl", tmp_path / "outputs.npz", tmp_path / "cells.json"
    inputs.write_bytes(pickle.dumps({n: [(c.description, c.inputs) for c in cs] for n, cs in cases.items()}))
    cells.write_text(json.dumps([CELLS, FUNCTIONS + ANSWERS]))
    script = _KERNEL_SIDE.format(cells=str(cells), inputs=str(inputs), outputs=str(outputs))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"torch_imported": False, "errors": []}
    with np.load(outputs) as data:
        arrays = {k: data[k] for k in data.files}
    for name, cs in cases.items():
        verdict = evaluate(cl.EXERCISES[name], cs,
                           lambda index, case, label, name=name: Produced(value=arrays[f"{name}|{index}"]))
        assert isinstance(verdict, CheckResult), (name, verdict)


# --------------------------------------------------------------------------- rules the notebook states (issue 15)

IN_PLACE = [  # (function, the array changed in place, a realistic in-place edit of the solution)
    ("relu_forward", "x", lambda: lambda x: (x.__setitem__(x < 0, 0.0), x)[1]),
    ("relu_backward", "dout", lambda: lambda dout, x: (dout.__setitem__(x <= 0, 0.0), dout)[1]),
    ("softmax_cross_entropy", "logits", lambda: mutate("softmax_cross_entropy", (
        "shifted = logits - logits.max(axis=1, keepdims=True)",
        "logits -= logits.max(axis=1, keepdims=True)\n    shifted = logits"))),
    ("batchnorm_forward", "running_mean", lambda: mutate("batchnorm_forward", (
        "new_running_mean = (1 - momentum) * running_mean + momentum * mean",
        "running_mean *= 1 - momentum\n        running_mean += momentum * mean\n"
        "        new_running_mean = running_mean"))),
    ("batchnorm_forward", "x", lambda: mutate("batchnorm_forward", (
        "x_hat = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)",
        "x -= mean.reshape(shape)\n    x_hat = x / np.sqrt(var.reshape(shape) + eps)"))),
    ("batchnorm_backward", "dout", lambda: mutate("batchnorm_backward", (
        "dx_hat = dout * gamma.reshape(shape)", "dx_hat = dout\n    dx_hat *= gamma.reshape(shape)"))),
    ("maxpool2d_backward", "x", lambda: lambda dout, x, k, s: (x.fill(0.0),
                                                               build("maxpool2d_backward")(dout, x, k, s))[1]),
]


@pytest.mark.parametrize("function,array,make", IN_PLACE, ids=[f"{f}-{a}" for f, a, _ in IN_PLACE])
def test_changing_a_given_array_in_place_breaks_the_stated_rule(function, array, make):
    text = failure(function, make())
    assert f"{function} breaks a rule of the exercise" in text and f"Seen: {array} was changed in place" in text, text
    assert "Rule:" in text and ("Conventions used throughout" in text or "do not modify the arrays" in text)


def test_eval_mode_must_return_copies_of_the_running_statistics():
    text = failure("batchnorm_forward", mutate("batchnorm_forward", (
        "new_running_mean, new_running_var = running_mean.copy(), running_var.copy()",
        "new_running_mean, new_running_var = running_mean, running_var")))
    assert "Seen: new_running_mean is the array running_mean you were given" in text and "eval mode" in text, text


PART_SHAPES = [  # (function, edit, the part named with its own shape)
    ("conv2d_backward", ("return dx, dw, db", "return dx, dw.transpose(1, 0, 2, 3), db"),
     "dw has shape (3, 4, 3, 3), expected (4, 3, 3, 3)"),
    ("linear_backward", ("db = dout.sum(axis=0)", "db = dout.sum()"), "db has shape (), expected (2,)"),
    ("softmax_cross_entropy", ("loss = -log_probs[np.arange(N), labels].mean()",
                               "loss = -log_probs[np.arange(N), labels]"), "loss has shape (2,), expected ()"),
    ("batchnorm_forward", ("return out, new_running_mean, new_running_var",
                           "return out, new_running_mean[None], new_running_var"),
     "new_running_mean has shape (1, 3), expected (3,)"),
    ("batchnorm_backward", ("dbeta = dout.sum(axis=axes)", "dbeta = dout.sum(axis=0)"),
     "dbeta has shape (4, 3, 3), expected (4,)"),
]


@pytest.mark.parametrize("function,edit,seen", PART_SHAPES, ids=[p[0] for p in PART_SHAPES])
def test_each_part_of_a_result_is_held_to_its_own_shape(function, edit, seen):
    text = failure(function, mutate(function, edit))
    assert seen in text and "breaks a rule" in text, text
    assert "values differ" not in text and "Yours has" not in text   # never the packed vector's length


def test_padding_kept_in_dx_is_named_by_the_shape_rule():
    text = failure("conv2d_backward", mutate("conv2d_backward", (
        "dx = dx_pad[:, :, padding:padding + H, padding:padding + W]", "dx = dx_pad")))
    assert "dx has shape (2, 3, 7, 7), the shape of the padded input, expected (2, 3, 5, 5)" in text, text


def test_numerical_gradient_must_be_float64():
    text = failure("numerical_gradient", mutate("numerical_gradient", (
        "np.zeros_like(x, dtype=np.float64)", "np.zeros_like(x, dtype=np.float32)")))
    assert "Rule: work in float64" in text and "grad has dtype float32" in text, text


# --------------------------------------------------------------------------- each new case can fail (issue 15)

def _passes(function, student) -> bool:
    try:
        check(function)(student, hidden=True)
    except CheckFailure:
        return False
    return True


def _only_hidden_catches(function, student, case_words):
    """The variant passes the visible check and fails the hidden one, at the case described by case_words."""
    check(function)(student)   # the visible cases do not see it
    text = failure(function, student)
    assert case_words in text, text
    return text


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_single_global_maximum_fails_where_rows_sit_far_apart():
    text = failure("softmax_cross_entropy", mutate("softmax_cross_entropy", (
        "logits - logits.max(axis=1, keepdims=True)", "logits - logits.max()")))
    assert "row maxima of both signs" in text and "NaN or infinite" in text and "Likely cause" not in text, text


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_shifting_only_beyond_float64s_range_fails_on_float32_logits():
    student = mutate("softmax_cross_entropy", (
        "shifted = logits - logits.max(axis=1, keepdims=True)",
        "shifted = logits - logits.max(axis=1, keepdims=True) if np.abs(logits).max() > 709 else logits"))
    text = _only_hidden_catches("softmax_cross_entropy", student, "float32 logits")
    assert "NaN or infinite" in text


def test_labels_of_any_integer_dtype_are_asked():
    cases = cl.EXERCISES["softmax_cross_entropy"].make_cases(True)
    assert {str(c.inputs["labels"].dtype) for c in cases} >= {"int64", "int32", "uint8"}
    # a variant that assumes int64 labels fails there
    student = mutate("softmax_cross_entropy", ("labels] -= 1", "labels.view(np.int64)] -= 1"))
    assert not _passes("softmax_cross_entropy", student)


def test_relu_gradient_at_exactly_zero_is_zero():
    text = _only_hidden_catches("relu_backward", lambda dout, x: dout * (x >= 0), "exactly 0")
    assert "All the differences are in positions where x is exactly 0" in text and "Likely cause" not in text, text


def test_a_maximum_started_at_zero_fails_on_negative_windows():
    def student(x, kernel_size, stride):
        windows = np.lib.stride_tricks.sliding_window_view(x, (kernel_size, kernel_size), axis=(2, 3))
        return np.maximum(windows[:, :, ::stride, ::stride].max(axis=(4, 5)), 0.0)
    text = failure("maxpool2d_forward", student)
    assert "All the differences are in windows whose maximum is negative" in text and "Likely cause" not in text, text


def test_eps_left_out_in_eval_mode_fails_where_running_var_is_about_eps():
    student = mutate("batchnorm_forward", ("np.sqrt(var.reshape(shape) + eps)",
                                           "np.sqrt(var.reshape(shape) + (eps if training else 0.0))"))
    text = _only_hidden_catches("batchnorm_forward", student, "running_var about eps")
    assert "All the differences are in the values of out" in text, text


def test_a_hard_coded_eps_fails():
    student = mutate("batchnorm_forward", ("np.sqrt(var.reshape(shape) + eps)", "np.sqrt(var.reshape(shape) + 1e-5)"))
    assert "far below eps" in failure("batchnorm_forward", student)
    backward = mutate("batchnorm_backward", ("x.var(axis=axes, keepdims=True) + eps",
                                             "x.var(axis=axes, keepdims=True) + 1e-5"))
    assert "eps=0.001" in failure("batchnorm_backward", backward)   # variance 1e-6 far below eps


def test_a_step_other_than_h_fails_on_the_large_step():
    student = mutate("numerical_gradient", ("grad = np.zeros_like(x, dtype=np.float64)",
                                            "grad = np.zeros_like(x, dtype=np.float64)\n    h = 1e-5"))
    text = _only_hidden_catches("numerical_gradient", student, "h=0.1")
    assert "Likely cause" not in text


def test_the_declared_properties_hold_on_hidden_cases_only_where_said():
    """The eval-mode eps and float32 properties are hidden-only; the row-spread one is visible to help students."""
    sce = cl.EXERCISES["softmax_cross_entropy"]
    visible = sce.make_cases(False)
    assert any(sce.covers["row maxima of both signs, different per row"](c) for c in visible)
    bn = cl.EXERCISES["batchnorm_forward"]
    assert not any(bn.covers["eval mode with running_var comparable to eps"](c) for c in bn.make_cases(False))


# --------------------------------------------------------------------------- off-catalogue variants (issue 15)

OFF_CATALOGUE = [  # (function, edits, the catalogued cause that must be named, or None: no cause at all)
    ("softmax_cross_entropy", [("].mean()", "].sum()")], None),                    # loss summed, dlogits mean
    ("softmax_cross_entropy", [("return loss, dlogits / N", "return loss, -dlogits")], None),
    ("batchnorm_forward", [("(1 - momentum) * running_var + momentum * var * m / (m - 1)",
                            "momentum * running_var + (1 - momentum) * var * m / (m - 1)")], None),
    ("batchnorm_forward", [("var = x.var(axis=axes)  ", "var = x.var(axis=axes, ddof=1)  "),
                           ("(1 - momentum) * running_mean + momentum * mean",
                            "momentum * running_mean + (1 - momentum) * mean")], None),
    ("batchnorm_forward", [("x_hat = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)",
                            "std = np.sqrt(var.reshape(shape))\n    x_hat = (x - mean.reshape(shape)) / (std + eps)")],
     "eps was added outside"),                                                     # the same idea, written differently
    ("conv2d_backward", [("return dx, dw, db", "return dx, dw / N, db")], None),
    ("conv2d_forward", [("return out + b[None, :, None, None]", "return out + 0 * b.reshape(1, -1, 1, 1)")],
     "bias b was not added"),
    ("linear_backward", [("dW = x.T @ dout", "dW = x.T @ dout / x.shape[0]")], None),
    # windows kernel_size apart never overlap, so = and += agree: the stride mistake explains every case
    ("maxpool2d_backward", [("j * stride + q] += dout", "j * stride + q] = dout"), ("i * stride", "i * k"),
                            ("j * stride", "j * k")], "moved by kernel_size"),
    ("avgpool2d_backward", [(" / (k * k)", " / k")], None),
    ("numerical_gradient", [("x[idx] = old - h\n        f_minus = f(x)\n        x[idx] = old\n",
                             "x[idx] = old - h\n        f_minus = f(x)\n")], "not restored"),
    ("numerical_gradient", [("/ (2 * h)", "/ (3 * h)")], None),
    ("global_avg_pool_forward", [("x.mean(axis=(2, 3))", "x.mean(axis=(2, 3)) * 0.5")], None),
]


@pytest.mark.parametrize("function,edits,cause", OFF_CATALOGUE, ids=[f"{f}-{i}" for i, (f, _, _) in
                                                                     enumerate(OFF_CATALOGUE)])
def test_off_catalogue_variants_never_get_a_wrong_cause(function, edits, cause):
    text = failure(function, mutate(function, *edits))
    if cause is None:
        assert "Likely cause" not in text, text
    else:
        assert "Likely cause" in text and mistake_name(function, cause) in text, text


def test_a_generic_diagnosis_names_the_part_that_differs():
    text = failure("conv2d_backward", mutate("conv2d_backward", ("return dx, dw, db", "return dx, dw / N, db")))
    assert "All the differences are in the values of dw; the rest matches" in text, text
    assert "expected × 0.5" in text


def test_by_hand_answers_are_exact_whole_numbers_and_never_given_away():
    size = dict(_solution_answers("size_answers"))
    size["lenet_flatten"] = 255
    text = failure("size_answers", size)
    assert "Yours 255 is not right." in text and "allowed" not in text and "Shape OK" not in text, text
    assert "256" not in text and "1 less" not in text, text
    rf = dict(_solution_answers("rf_answers"))
    rf["rf_blocks"] = [4, 10, 22]
    text = failure("rf_answers", rf)
    assert "Yours has 3 values, expected 4." in text and ".0" not in text.split("Hint")[0], text
