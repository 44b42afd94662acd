"""Tests of utils/cnn/layers/network.py: the network and training-step checks of source/cnn/cnn_layers.ipynb.

What tests/test_contract.py asserts for every exercise is not repeated here. Here: independent correct answers
pass (plain loops with their own layers, float32, another way to undo the flatten, SGD on copies); realistic
edits of the solution are named; a ReLU mask applied before the max-pool's backward is *not* a mistake in this
network (the check agrees); the rules (inputs kept, shapes, the return value) speak clearly; a wrong or
unfinished layer is named as the cause; the sample mistakes are diagnosed in the notebook's namespace; and the
grading kernel's half of both checks runs without torch.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import check_failures
import numpy as np
import pytest

import utils.cnn.layers as cl
from notebook_solutions import NotebookSolutions
from utils.checks.feedback import NotImplementedYet
from utils.instructor.samples.cnn_layers import MISTAKES as SAMPLES

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # tiny networks: one thread is faster

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "source" / "cnn" / "cnn_layers.ipynb"
NB = NotebookSolutions(NOTEBOOK, {"np": np})
SOLVED = NB.run()


def edited(cell: str, *pairs: tuple[str, str], **replaced_cells: str) -> dict:
    """The notebook's namespace with ``cell`` edited as a student would (and other cells replaced)."""
    return NB.run({**NB.cells, **replaced_cells, cell: NB.edit(cell, *pairs, once=True)})


def failure(name: str, student) -> str:
    return check_failures.failure(getattr(cl, f"check_{name}"), student, hidden=True)


def named(function: str, key: str) -> str:
    names = [m.name for m in cl.EXERCISES[function].mistakes if key in m.name]
    assert len(names) == 1, (function, key, names)
    return names[0]


def passes(name: str, student) -> None:
    check = getattr(cl, f"check_{name}")
    check(student)
    check(student, hidden=True)


# --------------------------------------------------------------------------- correct answers


def conv_loops(x, w, b):
    N, C, H, W = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((N, w.shape[0], H, W))
    for i in range(H):
        for j in range(W):
            out[:, :, i, j] = np.einsum("nchw,fchw->nf", xp[:, :, i:i + 3, j:j + 3], w) + b
    return out, xp


def network_loops(params, x, y):
    """The whole network with its own loop layers, none of the notebook's functions."""
    w1, b1, W2, b2 = (params[k] for k in ("w1", "b1", "W2", "b2"))
    N, C, H, W = x.shape
    a1, xp = conv_loops(x, w1, b1)
    r1 = np.where(a1 > 0, a1, 0.0)
    Hp, Wp = H // 2, W // 2
    p1, where = np.zeros((N, w1.shape[0], Hp, Wp)), {}
    for n, f, i, j in np.ndindex(p1.shape):
        window = r1[n, f, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
        r, q = divmod(int(np.argmax(window)), 2)
        p1[n, f, i, j], where[n, f, i, j] = window[r, q], (2 * i + r, 2 * j + q)
    flat = np.stack([p1[n].ravel() for n in range(N)])
    z = flat @ W2 + b2
    z = z - z.max(axis=1, keepdims=True)
    prob = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(prob[np.arange(N), y]))
    dz = prob.copy()
    dz[np.arange(N), y] -= 1
    dz /= N
    dW2, db2, dflat = flat.T @ dz, dz.sum(axis=0), dz @ W2.T
    dp1 = np.stack([dflat[n].reshape(p1.shape[1:]) for n in range(N)])
    dr1 = np.zeros_like(r1)
    for (n, f, i, j), (r, q) in where.items():
        dr1[n, f, r, q] += dp1[n, f, i, j]
    da1 = dr1 * (a1 > 0)
    dxp, dw1 = np.zeros_like(xp), np.zeros_like(w1)
    for i in range(H):
        for j in range(W):
            dw1 += np.einsum("nf,nchw->fchw", da1[:, :, i, j], xp[:, :, i:i + 3, j:j + 3])
            dxp[:, :, i:i + 3, j:j + 3] += np.einsum("nf,fchw->nchw", da1[:, :, i, j], w1)
    grads = {"w1": dw1, "b1": da1.sum(axis=(0, 2, 3)), "W2": dW2, "b2": db2}
    return loss, grads, dxp[:, :, 1:-1, 1:-1]


def test_the_solution_and_an_independent_loop_network_pass():
    passes("network_backward", SOLVED["network_backward"])
    passes("network_backward", network_loops)


def test_float32_and_another_way_to_undo_the_flatten_pass():
    solution = SOLVED["network_backward"]

    def in_float32(params, x, y):
        loss, grads, dx = solution({k: v.astype(np.float32) for k, v in params.items()}, x.astype(np.float32), y)
        return np.float32(loss), grads, dx

    passes("network_backward", in_float32)
    namespace = edited("network_backward", ("dp1 = dflat.reshape(p1.shape)",
                                            "dp1 = np.stack([row.reshape(p1.shape[1:]) for row in dflat])"))
    passes("network_backward", namespace["network_backward"])


def test_sgd_on_copies_in_place_and_a_list_of_losses_pass():
    network_backward = SOLVED["network_backward"]

    def on_copies(params, x, y, lr, steps):
        params = {k: v.copy() for k, v in params.items()}
        losses = []
        for _ in range(steps):
            loss, grads, _ = network_backward(params, x, y)
            losses.append(float(loss))
            for k in params:
                params[k] -= lr * grads[k]   # in place, but on the copies
        return losses, params

    passes("numpy_train_steps", on_copies)
    passes("numpy_train_steps", SOLVED["numpy_train_steps"])


def test_relu_mask_before_the_pooling_backward_is_equivalent_here():
    """Masking dp1 with (p1 > 0) before the max-pool's backward gives the same gradients: the max of a window is
    positive exactly where the ReLU let its position through. The check must not call it a mistake."""
    namespace = edited("network_backward",
                       ("dr1 = maxpool2d_backward(dp1, r1, 2, 2)",
                        "dr1 = maxpool2d_backward(dp1 * (p1 > 0), r1, 2, 2)"),
                       ("da1 = relu_backward(dr1, a1)", "da1 = dr1"))
    passes("network_backward", namespace["network_backward"])


# --------------------------------------------------------------------------- realistic mistakes are named


NETWORK_EDITS = [
    ("a second time", [("return loss, {", "N = len(y)\n    dw1, db1, dW2, db2 = dw1 / N, db1 / N, dW2 / N, db2 / N\n"
                                     "    return loss, {")]),
    ("summed loss", [("loss, dlogits = softmax_cross_entropy(logits, y)",
                      "loss, dlogits = softmax_cross_entropy(logits, y)\n    dlogits = dlogits * len(y)")]),
    ("output instead of its input", [("conv2d_backward(da1, x,", "conv2d_backward(da1, a1,")]),
    ("channels last", [("dp1 = dflat.reshape(p1.shape)",
                        "dp1 = dflat.reshape(len(y), p1.shape[2], p1.shape[3], -1).transpose(0, 3, 1, 2)")]),
    ("ReLU's backward was skipped", [("da1 = relu_backward(dr1, a1)", "da1 = dr1")]),
    ("dx is the gradient at", [("}, dx", "}, da1")]),
]


@pytest.mark.parametrize("key, pairs", NETWORK_EDITS, ids=[k for k, _ in NETWORK_EDITS])
def test_network_mistakes_are_named(key, pairs):
    namespace = edited("network_backward", *pairs)
    text = failure("network_backward", namespace["network_backward"])
    assert f"Likely cause: {named('network_backward', key)}" in " ".join(text.split()), text


TRAIN_EDITS = [
    ("gradient ascent", [("params[name] - lr * grads[name]", "params[name] + lr * grads[name]")]),
    ("twice", [("params[name] - lr * grads[name]", "params[name] - lr * lr * grads[name]")]),
    ("half-updated", [("        params = {name: params[name] - lr * grads[name] for name in params}\n",
                       "        for name in list(params):\n"
                       "            grads = network_backward(params, x, y)[1]\n"
                       "            params = {**params, name: params[name] - lr * grads[name]}\n")]),
    ("after its update", [("        losses.append(loss)\n",
                           "        losses.append(network_backward(params, x, y)[0])\n")]),
]


@pytest.mark.parametrize("key, pairs", TRAIN_EDITS, ids=[k for k, _ in TRAIN_EDITS])
def test_training_mistakes_are_named(key, pairs):
    namespace = edited("numpy_train_steps", *pairs)
    text = failure("numpy_train_steps", namespace["numpy_train_steps"])
    assert f"Likely cause: {named('numpy_train_steps', key)}" in " ".join(text.split()), text


def test_a_mistake_outside_the_catalogue_is_described():
    doubled = NB.cells["network_backward"].replace('"W2": dW2,', '"W2": 2 * dW2,')
    namespace = NB.run({**NB.cells, "network_backward": doubled})
    text = " ".join(failure("network_backward", namespace["network_backward"]).split())
    assert "Likely cause" not in text and "All the differences are in the values of grads['W2']" in text, text


# --------------------------------------------------------------------------- rules and odd returns


def test_changing_the_callers_params_in_place_breaks_a_rule():
    network_backward = SOLVED["network_backward"]

    def in_place(params, x, y, lr, steps):
        losses = []
        for _ in range(steps):
            loss, grads, _ = network_backward(params, x, y)
            losses.append(loss)
            for k in params:
                params[k] -= lr * grads[k]
        return np.array(losses), params

    text = " ".join(failure("numpy_train_steps", in_place).split())
    assert "breaks a rule" in text and "leaves the params it is given unchanged" in text
    assert "params['w1'] was changed in place" in text


@pytest.mark.parametrize("result, expected", [
    (lambda loss, grads, dx: (loss, grads), "must return a tuple (loss, grads, dx); it returned a tuple of length 2"),
    (lambda loss, grads, dx: (loss, list(grads.values()), dx), "grads must be a dict with the keys of params"),
    (lambda loss, grads, dx: (loss, {k: v for k, v in grads.items() if k != "b2"}, dx), "grads has no key 'b2'"),
    (lambda loss, grads, dx: (loss, {**grads, "W2": grads["W2"].T}, dx), "grads['W2'] has shape"),
    (lambda loss, grads, dx: (loss, grads, dx[:, :, :-1]), "dx has shape"),
    (lambda loss, grads, dx: (np.array([loss, loss]), grads, dx), "loss must be one number"),
])
def test_odd_returns_of_the_network_get_clear_messages(result, expected):
    solution = SOLVED["network_backward"]
    text = " ".join(failure("network_backward", lambda p, x, y: result(*solution(p, x, y))).split())
    assert expected in text, text


def test_odd_returns_of_the_training_steps_get_clear_messages():
    solution = SOLVED["numpy_train_steps"]
    text = " ".join(failure("numpy_train_steps", lambda *a: solution(*a)[0]).split())
    assert "must return a tuple (losses, new_params)" in text, text
    text = " ".join(failure("numpy_train_steps", lambda *a: (solution(*a)[0][1:], solution(*a)[1])).split())
    assert "losses has shape" in text and "one entry per step" in text, text


# --------------------------------------------------------------------------- which layer is wrong


def test_a_wrong_layer_is_named_as_the_cause():
    namespace = NB.run({**NB.cells, "relu_backward": "def relu_backward(dout, x):\n    return dout * 1.0\n"})
    text = " ".join(failure("network_backward", namespace["network_backward"]).split())
    assert "Likely cause: your relu_backward fails its own check" in text, text
    assert "fix relu_backward first" in text
    text = " ".join(failure("numpy_train_steps", namespace["numpy_train_steps"]).split())
    assert "Likely cause: your relu_backward fails its own check" in text, text


def test_a_wrong_network_is_named_as_the_cause_of_wrong_training():
    namespace = edited("network_backward", ("da1 = relu_backward(dr1, a1)", "da1 = dr1"))
    text = " ".join(failure("numpy_train_steps", namespace["numpy_train_steps"]).split())
    assert "Likely cause: your network_backward fails its own check" in text, text


def test_an_unfinished_layer_is_not_reported_as_an_unfinished_network():
    stub = "def maxpool2d_backward(dout, x, kernel_size, stride):\n    raise NotImplementedError()\n"
    namespace = NB.run({**NB.cells, "maxpool2d_backward": stub})
    text = " ".join(failure("network_backward", namespace["network_backward"]).split())
    assert "maxpool2d_backward is not implemented yet, and network_backward calls it" in text, text
    stub = "def network_backward(params, x, y):\n    raise NotImplementedError()\n"
    with pytest.raises(NotImplementedYet, match="network_backward is not implemented yet"):
        cl.check_network_backward(NB.run({**NB.cells, "network_backward": stub})["network_backward"])


def test_a_torch_network_is_not_from_scratch():
    import torch

    def with_torch(params, x, y):
        p = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
        xt = torch.tensor(x, requires_grad=True)
        a = torch.nn.functional.max_pool2d(torch.relu(torch.nn.functional.conv2d(xt, p["w1"], p["b1"], padding=1)), 2)
        loss = torch.nn.functional.cross_entropy(a.flatten(1) @ p["W2"] + p["b2"], torch.as_tensor(y))
        loss.backward()
        return loss.item(), {k: v.grad.numpy() for k, v in p.items()}, xt.grad.numpy()

    text = failure("network_backward", with_torch)
    assert "from scratch" in text, text


# --------------------------------------------------------------------------- samples and the grading kernel


@pytest.mark.parametrize("sample", [s for s in SAMPLES if s.cell in ("network_backward", "numpy_train_steps")],
                         ids=lambda s: s.student)
def test_the_sample_mistakes_are_diagnosed_in_the_notebooks_namespace(sample):
    namespace = NB.run(NB.apply(sample))
    assert sample.diagnosis in " ".join(failure(sample.cell, namespace[sample.cell]).split())


_KERNEL_SIDE = r'''
import json, sys
sys.modules["torch"] = None                                 # the grading kernel cannot import torch
sys.modules["utils.cnn.layers.computations"] = None         # nor the course's NumPy reference
import numpy as np
from utils.checks.exercise import produce
import utils.cnn.layers as cl
namespace = {"np": np}
for code in json.load(open(sys.argv[1])):
    exec(code, namespace)
for name in ("network_backward", "numpy_train_steps"):
    exercise = cl.EXERCISES[name]
    for case in exercise.make_cases(True):
        produced = produce(exercise, namespace[name], case, name)
        assert produced.error is None, produced.error
        assert np.all(np.isfinite(produced.value))
print("ok")
'''


def test_the_grading_kernel_runs_both_answers_without_torch(tmp_path):
    cells = tmp_path / "cells.json"
    cells.write_text(json.dumps(list(NB.cells.values())))
    proc = subprocess.run([sys.executable, "-c", _KERNEL_SIDE, str(cells)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
