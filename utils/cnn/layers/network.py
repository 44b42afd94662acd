"""The layers meet: one small CNN's forward and backward pass, then a few SGD steps, all in NumPy.

The network (section 9 of the notebook), always the same layers; only the sizes change from case to case:
x (N, C, H, W) → conv 3×3 (stride 1, padding 1, F filters) → ReLU → max-pool 2×2 (stride 2) → flatten (N, D),
D = F·(H // 2)·(W // 2) in (channel, row, column) order, as ``reshape(N, -1)`` → linear (D → K) → softmax
cross-entropy (mean over the batch) with the labels y (N,).

* ``network_backward(params, x, y) -> (loss, grads, dx)``: params is a dict of arrays ``"w1"`` (F, C, 3, 3),
  ``"b1"`` (F,), ``"W2"`` (D, K), ``"b2"`` (K,); loss a float, grads a dict with the same keys and shapes,
  dx (N, C, H, W) the gradient of the loss with respect to x;
* ``numpy_train_steps(params, x, y, lr, steps) -> (losses, new_params)``: ``steps`` steps of plain SGD on the
  whole batch (p ← p − lr·∂L/∂p, every gradient of a step taken at the same params); losses (steps,) holds the
  loss each step's forward pass computed (before its update); new_params a new dict with the same keys;
  ``params`` is left unchanged.

The student builds both from the layer functions written earlier in the notebook. The references are the same
network in torch (autograd, ``torch.optim.SGD``) in float64; the known mistakes are the same computation done
wrongly. When a check fails, the visible check (in the student's kernel) also runs the visible checks of the
layers the answer uses and says which of them fails; grading has the layers' own cells for that.
"""
from __future__ import annotations

import traceback

import numpy as np

from utils.checks.adapters import float64_tensor, to_numpy, torch_module
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, evaluate, produce
from utils.checks.feedback import CheckFailure, NotImplementedYet, Report, quiet, raise_failure, show
from utils.checks.rules import RuleBroken
from utils.cnn.layers.conv2d import CONV_BACKWARD, CONV_FORWARD
from utils.cnn.layers.linear_relu import LINEAR_BACKWARD, LINEAR_FORWARD, RELU_BACKWARD, RELU_FORWARD
from utils.cnn.layers.loss import SOFTMAX_CE
from utils.cnn.layers.pooling import MAXPOOL_BACKWARD, MAXPOOL_FORWARD
from utils.cnn.layers.shared import (
    INPUTS_KEPT,
    PACKED,
    WrongReturnValue,
    build_cases,
    calling,
    describe_parts,
    flatten,
    functional,
    not_sharing,
    part_regions,
    return_hint,
    shapes_text,
)

KEYS = ("w1", "b1", "W2", "b2")
SECTION = "9. The layers meet"
# The layers a network answer uses, in the order the forward and then the backward pass calls them.
LAYERS = {e.function: e for e in (CONV_FORWARD, RELU_FORWARD, MAXPOOL_FORWARD, LINEAR_FORWARD, SOFTMAX_CE,
                                  LINEAR_BACKWARD, MAXPOOL_BACKWARD, RELU_BACKWARD, CONV_BACKWARD)}
FORBIDDEN = ("torch.nn.functional.conv2d", "torch.conv2d", "torch.nn.Conv2d", "torch.nn.functional.max_pool2d",
             "torch.max_pool2d", "torch.nn.MaxPool2d")

# (N, C, F, H, W, K, special); "dead": filter 0 has a large negative bias, so many of its pooling windows are
# all negative after the convolution and ReLU zeroes them whole.
NETWORK_SETTINGS = [(2, 2, 2, 4, 6, 3, ""), (3, 1, 4, 6, 5, 4, ""), (4, 3, 3, 5, 8, 5, "dead"),
                    (2, 3, 2, 6, 6, 2, "")]
NETWORK_HIDDEN = [(5, 2, 3, 7, 7, 3, "dead"), (3, 4, 4, 4, 10, 6, ""), (2, 1, 1, 2, 2, 2, "")]

# (N, C, F, H, W, K, lr, steps)
TRAIN_SETTINGS = [(4, 1, 2, 6, 6, 3, 0.1, 3), (6, 2, 3, 5, 8, 4, 0.05, 5), (8, 3, 2, 8, 6, 2, 0.2, 4)]
TRAIN_HIDDEN = [(5, 2, 2, 7, 6, 3, 0.1, 6), (3, 1, 4, 4, 4, 5, 0.5, 2)]


def _param_shapes(C: int, F: int, H: int, W: int, K: int) -> dict[str, tuple]:
    D = F * (H // 2) * (W // 2)
    return {"w1": (F, C, 3, 3), "b1": (F,), "W2": (D, K), "b2": (K,)}


def _draw(rng, setting) -> tuple[dict, np.ndarray, np.ndarray, str]:
    """params, x, y and the case's description (sizes, the layer shapes)."""
    N, C, F, H, W, K = setting[:6]
    shapes = _param_shapes(C, F, H, W, K)
    params = {"w1": rng.normal(scale=1 / np.sqrt(9 * C), size=shapes["w1"]),
              "b1": rng.normal(scale=0.1, size=F),
              "W2": rng.normal(scale=1 / np.sqrt(shapes["W2"][0]), size=shapes["W2"]),
              "b2": rng.normal(scale=0.1, size=K)}
    x = rng.normal(size=(N, C, H, W))
    y = rng.integers(0, K, size=N)
    y[:2] = [0, K - 1]   # at least two different labels
    text = (f"N={N}, C={C}, F={F} filters, {H}×{W} input (pooled to {H // 2}×{W // 2}, D={shapes['W2'][0]}), "
            f"K={K} classes")
    if len(setting) > 6 and setting[6] == "dead":
        params["b1"][0] = -2.5
        text += ", filter 0 with bias −2.5 (whole pooling windows negative before the ReLU)"
    return params, x, y, text


# --------------------------------------------------------------------------- the network in torch


def _torch_params(params: dict) -> dict:
    return {k: float64_tensor(params[k], True) for k in KEYS}


def _forward(p: dict, xt, y):
    """(loss, intermediate tensors) of the network in torch; every intermediate keeps its gradient."""
    torch, F = torch_module(), functional()
    a1 = F.conv2d(xt, p["w1"], p["b1"], stride=1, padding=1)
    r1 = F.relu(a1)
    p1 = F.max_pool2d(r1, 2, 2)
    flat = p1.reshape(p1.shape[0], -1)
    logits = flat @ p["W2"] + p["b2"]
    loss = F.cross_entropy(logits, torch.as_tensor(np.asarray(y), dtype=torch.long))
    for t in (a1, r1, p1, flat, logits):
        t.retain_grad()
    return loss, {"a1": a1, "r1": r1, "p1": p1, "flat": flat, "logits": logits}


def torch_network(params: dict, x, y) -> tuple:
    """(loss, grads dict, dx, intermediates) by autograd, as float64 tensors."""
    p, xt = _torch_params(params), float64_tensor(x, True)
    loss, inter = _forward(p, xt, y)
    loss.backward()
    return loss.detach(), {k: p[k].grad for k in KEYS}, xt.grad, inter


def _packed(loss, grads: dict, dx) -> np.ndarray:
    return flatten(loss, *(grads[k] for k in KEYS), dx)


def network_reference(inputs: dict) -> np.ndarray:
    loss, grads, dx, _ = torch_network(inputs["params"], inputs["x"], inputs["y"])
    return _packed(loss, grads, dx)


def _through_conv(params: dict, x, da1, conv_input=None) -> tuple:
    """(dw1, db1, dx) of the convolution for the gradient da1 at its output; with ``conv_input``, the
    convolution's backward is computed at that array instead of x."""
    torch, F = torch_module(), functional()
    xt = float64_tensor(x if conv_input is None else conv_input, True)
    w1, b1 = float64_tensor(params["w1"], True), float64_tensor(params["b1"], True)
    out = F.conv2d(xt, w1, b1, stride=1, padding=1)
    dw1, db1, dx = torch.autograd.grad(out, (w1, b1, xt), grad_outputs=da1)
    return dw1, db1, dx


def _with_conv_gradient(inputs: dict, da1, conv_input=None) -> np.ndarray:
    loss, grads, _, _ = torch_network(inputs["params"], inputs["x"], inputs["y"])
    dw1, db1, dx = _through_conv(inputs["params"], inputs["x"], da1, conv_input)
    return _packed(loss, {**grads, "w1": dw1, "b1": db1}, dx)


def network_grads_averaged_again(inputs: dict) -> np.ndarray:
    """Every parameter gradient divided by N once more (dx left as it is)."""
    loss, grads, dx, _ = torch_network(inputs["params"], inputs["x"], inputs["y"])
    N = inputs["x"].shape[0]
    return _packed(loss, {k: g / N for k, g in grads.items()}, dx)


def network_dlogits_not_divided(inputs: dict) -> np.ndarray:
    """The mean loss, but every gradient of the summed loss: dlogits = p − onehot, without 1/N."""
    loss, grads, dx, _ = torch_network(inputs["params"], inputs["x"], inputs["y"])
    N = inputs["x"].shape[0]
    return _packed(loss, {k: g * N for k, g in grads.items()}, dx * N)


def network_conv_cache_is_output(inputs: dict) -> np.ndarray:
    """The convolution's backward given its output a1 in place of its input x (shapes agree only when C = F)."""
    x, w1 = inputs["x"], inputs["params"]["w1"]
    if w1.shape[0] != x.shape[1]:
        raise ValueError("the conv output has another number of channels than x: this mistake raises an error")
    _, _, _, inter = torch_network(inputs["params"], x, inputs["y"])
    return _with_conv_gradient(inputs, inter["a1"].grad, conv_input=inter["a1"].detach())


def network_unflattened_channels_last(inputs: dict) -> np.ndarray:
    """dflat reshaped back as (N, H/2, W/2, F) and moved to (N, F, H/2, W/2): not the forward flatten's order."""
    _, _, _, inter = torch_network(inputs["params"], inputs["x"], inputs["y"])
    p1, dflat = inter["p1"], inter["flat"].grad
    N, F_, Hp, Wp = p1.shape
    dp1 = dflat.reshape(N, Hp, Wp, F_).permute(0, 3, 1, 2)
    r1 = inter["r1"].detach().requires_grad_(True)
    dr1, = torch_module().autograd.grad(functional().max_pool2d(r1, 2, 2), r1, grad_outputs=dp1)
    da1 = dr1 * (inter["a1"].detach() > 0)
    return _with_conv_gradient(inputs, da1)


def network_relu_backward_skipped(inputs: dict) -> np.ndarray:
    """The pooling's gradient sent straight into the convolution's backward, without ReLU's mask.

    Where a whole pooling window is ≤ 0 before the ReLU, the ReLU's outputs there tie at 0: like the
    notebook's max-pool backward (``argmax``), the first of them in row-major order gets the gradient.
    """
    _, _, _, inter = torch_network(inputs["params"], inputs["x"], inputs["y"])
    r1, dp1 = inter["r1"].detach().numpy(), inter["p1"].grad.numpy()
    N, F_, Hp, Wp = dp1.shape
    da1 = np.zeros_like(r1)
    for i in range(Hp):
        for j in range(Wp):
            window = r1[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].reshape(N, F_, 4)
            r, q = np.unravel_index(window.argmax(axis=2), (2, 2))
            n_idx, f_idx = np.meshgrid(np.arange(N), np.arange(F_), indexing="ij")
            da1[n_idx, f_idx, 2 * i + r, 2 * j + q] += dp1[:, :, i, j]
    return _with_conv_gradient(inputs, float64_tensor(da1))


def network_dx_at_conv_output(inputs: dict) -> np.ndarray:
    """dx returned as the gradient at the convolution's output a1 (shapes agree only when C = F)."""
    x = inputs["x"]
    if inputs["params"]["w1"].shape[0] != x.shape[1]:
        raise ValueError("a1 has another number of channels than x: this mistake has another shape")
    loss, grads, _, inter = torch_network(inputs["params"], x, inputs["y"])
    return _packed(loss, grads, inter["a1"].grad)


# --------------------------------------------------------------------------- cases and calls


def _network_case(rng, setting, number: int) -> Case:
    params, x, y, text = _draw(rng, setting)
    parts = [("loss", ()), *((f"grads[{k!r}]", params[k].shape) for k in KEYS), ("dx", x.shape)]
    return Case(f"{text}; returns {shapes_text(parts)}", {"params": params, "x": x, "y": y},
                describe_parts(parts), regions=part_regions(parts))


def network_backward_cases(hidden: bool) -> list[Case]:
    return build_cases("network_backward", NETWORK_SETTINGS, NETWORK_HIDDEN, hidden, _network_case)


class LayerNotImplemented(Exception):
    """A layer the answer calls still raises NotImplementedError."""


def _calling_layers(fn, own: str, given: dict, *args, rule: str = INPUTS_KEPT):
    """``fn(*args)`` (the inputs kept unchanged); a NotImplementedError raised in another function of the
    notebook (a layer) is reported as that layer's, not as ``own``'s."""
    try:
        return calling(fn, given, *args, rule=rule)
    except NotImplementedError as exc:
        frames = traceback.extract_tb(exc.__traceback__)
        where = frames[-1].name if frames else own
        if where != own and where in (*LAYERS, "network_backward"):
            raise LayerNotImplemented(f"{where} is not implemented yet, and {own} calls it") from None
        raise


def _params_given(params: dict) -> dict:
    return {f"params[{k!r}]": params[k] for k in KEYS}


def _unpack_grads(grads, params: dict, what: str, rule: str) -> list:
    if not isinstance(grads, dict):
        raise WrongReturnValue(f"{what} must be a dict with the keys of params; it is a {type(grads).__name__}.")
    missing = [k for k in KEYS if k not in grads]
    if missing:
        raise WrongReturnValue(f"{what} has no key {missing[0]!r}: it needs one entry per key of params, "
                               f"{', '.join(map(repr, KEYS))}.")
    arrays = []
    for k in KEYS:
        array = to_numpy(grads[k])
        if array is None:
            raise WrongReturnValue(f"{what}[{k!r}] is {type(grads[k]).__name__}, expected a numpy array.")
        if array.shape != params[k].shape:
            raise RuleBroken(rule, f"{what}[{k!r}] has shape {array.shape}, expected {params[k].shape}")
        arrays.append(array)
    return arrays


NETWORK_SHAPES = ("network_backward returns (loss, grads, dx): grads has one entry per key of params, each with "
                  "that parameter's shape, and dx has the shape of x (Task: `network_backward`)")


def call_network_backward(fn, inputs: dict) -> np.ndarray:
    params, x, y = inputs["params"], inputs["x"], inputs["y"]
    result = _calling_layers(fn, "network_backward", {**_params_given(params), "x": x, "y": y}, params, x, y)
    if not isinstance(result, (tuple, list)) or len(result) != 3:
        got = type(result).__name__ + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else "")
        raise WrongReturnValue(f"network_backward must return a tuple (loss, grads, dx); it returned a {got}.")
    loss, grads, dx = result
    loss_array, dx_array = to_numpy(loss), to_numpy(dx)
    if loss_array is None or loss_array.size != 1:
        raise WrongReturnValue(f"loss must be one number; it is a {type(loss).__name__}.")
    if dx_array is None:
        raise WrongReturnValue(f"dx is {type(dx).__name__}, expected a numpy array.")
    if dx_array.shape != x.shape:
        raise RuleBroken(NETWORK_SHAPES, f"dx has shape {dx_array.shape}, expected {x.shape}")
    return flatten(loss_array, *_unpack_grads(grads, params, "grads", NETWORK_SHAPES), dx_array)


NETWORK_HINT = ("first make sure every layer check above passes (this check uses your layers). Then follow the "
                "backward pass of section 9 from the loss down: each layer's backward gets the gradient at its "
                "output and the array its forward pass was given, and the flattened gradient goes back to the "
                "pooled shape in the order the forward pass flattened it.")

NETWORK_BACKWARD = Exercise(
    function="network_backward",
    forbidden=FORBIDDEN,
    reference_name="torch autograd through the same network (conv → ReLU → max-pool → linear → cross-entropy)",
    make_cases=network_backward_cases,
    reference=network_reference,
    call=call_network_backward,
    mistakes=[
        Mistake("every parameter gradient was divided by the batch size N a second time",
                "the loss is already the batch mean, so its dlogits carries the 1/N; the layers' backward passes "
                "then sum over the batch, and nothing is divided again.",
                network_grads_averaged_again),
        Mistake("the gradient of the summed loss was used: dlogits lacks the 1/N of the mean loss",
                "the loss you return is a mean over the batch, so its gradient carries the same 1/N (section 5).",
                network_dlogits_not_divided),
        Mistake("the convolution's backward was given the convolution's output instead of its input x",
                "a layer's backward needs what its forward pass received (its input), not what it produced.",
                network_conv_cache_is_output),
        Mistake("the gradient of the flattened features was reshaped back in another order (channels last) "
                "than the forward pass flattened them",
                "undo the flatten exactly: the backward reshape must put each value back at the (channel, row, "
                "column) it came from, which is the pooled output's own shape.",
                network_unflattened_channels_last),
        Mistake("the ReLU's backward was skipped: the pooling's gradient went straight into the convolution's "
                "backward",
                "max pooling can send gradient to a position where the ReLU output 0 (a window of non-positive "
                "values); the ReLU's backward, at the convolution's output, must block it there.",
                network_relu_backward_skipped),
        Mistake("dx is the gradient at the convolution's output, not at the network's input x",
                "dx is what the convolution's backward returns for its input: one more step down the chain.",
                network_dx_at_conv_output),
    ],
    hint=NETWORK_HINT,
    exception_hints={**return_hint("loss", "grads", "dx"),
                     "LayerNotImplemented": "write the layer named above (its own section) and run its check; "
                                            "then run this check again."},
    section=SECTION,
    layout=PACKED,
    covers={
        "a batch of 2 or more": lambda c: c.inputs["x"].shape[0] >= 2,
        "a single input channel": lambda c: c.inputs["x"].shape[1] == 1,
        "several input channels": lambda c: c.inputs["x"].shape[1] >= 2,
        "a single filter": lambda c: c.inputs["params"]["w1"].shape[0] == 1,
        "as many filters as input channels (a wrong cache has the right shape)":
            lambda c: c.inputs["params"]["w1"].shape[0] == c.inputs["x"].shape[1] >= 2,
        "a non-square input": lambda c: c.inputs["x"].shape[2] != c.inputs["x"].shape[3],
        "an odd side: pooling drops the last row or column":
            lambda c: c.inputs["x"].shape[2] % 2 == 1 or c.inputs["x"].shape[3] % 2 == 1,
        "K different from N": lambda c: c.inputs["params"]["W2"].shape[1] != c.inputs["x"].shape[0],
        "a pooling window that is ≤ 0 before the ReLU": lambda c: _dead_window(c),
    },
)


def _dead_window(case: Case) -> bool:
    _, _, _, inter = torch_network(case.inputs["params"], case.inputs["x"], case.inputs["y"])
    a1 = inter["a1"].detach()
    return bool((functional().max_pool2d(a1, 2, 2) <= 0).any())


# --------------------------------------------------------------------------- training steps


def _train_case(rng, setting, number: int) -> Case:
    lr, steps = setting[6:]
    params, x, y, text = _draw(rng, setting[:6])
    parts = [("losses", (steps,)), *((f"new_params[{k!r}]", params[k].shape) for k in KEYS)]
    return Case(f"{text}, lr={lr:g}, steps={steps}; returns {shapes_text(parts)}",
                {"params": params, "x": x, "y": y, "lr": lr, "steps": steps},
                describe_parts(parts), regions=part_regions(parts))


def numpy_train_steps_cases(hidden: bool) -> list[Case]:
    return build_cases("numpy_train_steps", TRAIN_SETTINGS, TRAIN_HIDDEN, hidden, _train_case)


def torch_sgd(inputs: dict) -> tuple[list[float], dict]:
    """The losses and final params of ``steps`` steps of ``torch.optim.SGD`` on the network."""
    torch = torch_module()
    p = _torch_params(inputs["params"])
    optimizer = torch.optim.SGD([p[k] for k in KEYS], lr=inputs["lr"])
    xt, losses = float64_tensor(inputs["x"]), []
    for _ in range(inputs["steps"]):
        optimizer.zero_grad()
        loss, _ = _forward(p, xt, inputs["y"])
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses, {k: p[k].detach() for k in KEYS}


def train_reference(inputs: dict) -> np.ndarray:
    losses, params = torch_sgd(inputs)
    return flatten(np.array(losses), *(params[k] for k in KEYS))


def _sgd(inputs: dict, update, *, per_parameter: bool = False, loss_after: bool = False) -> np.ndarray:
    """SGD done by hand in torch: ``update(p, g, lr)`` gives a parameter's new value. ``per_parameter``: the
    gradients recomputed after each parameter's update (key order), the step's loss from its first pass;
    ``loss_after``: each step records the loss at the params after its update."""
    params = {k: float64_tensor(v) for k, v in inputs["params"].items()}
    xt, y, lr, losses = float64_tensor(inputs["x"]), inputs["y"], inputs["lr"], []

    def loss_and_grads(current: dict):
        p = {k: v.clone().requires_grad_(True) for k, v in current.items()}
        loss, _ = _forward(p, xt, y)
        loss.backward()
        return float(loss.detach()), {k: p[k].grad for k in KEYS}

    for _ in range(inputs["steps"]):
        loss, grads = loss_and_grads(params)
        if per_parameter:
            for k in KEYS:
                _, grads = loss_and_grads(params)
                params = {**params, k: update(params[k], grads[k], lr)}
        else:
            params = {k: update(params[k], grads[k], lr) for k in KEYS}
        losses.append(loss_and_grads(params)[0] if loss_after else loss)
    return flatten(np.array(losses), *(params[k] for k in KEYS))


def train_gradient_added(inputs: dict) -> np.ndarray:
    return _sgd(inputs, lambda p, g, lr: p + lr * g)


def train_lr_twice(inputs: dict) -> np.ndarray:
    return _sgd(inputs, lambda p, g, lr: p - lr * lr * g)


def train_half_updated(inputs: dict) -> np.ndarray:
    return _sgd(inputs, lambda p, g, lr: p - lr * g, per_parameter=True)


def train_loss_after_update(inputs: dict) -> np.ndarray:
    return _sgd(inputs, lambda p, g, lr: p - lr * g, loss_after=True)


TRAIN_KEEPS = ("numpy_train_steps leaves the params it is given unchanged and returns new arrays "
               "(Task: `numpy_train_steps`)")
TRAIN_SHAPES = ("numpy_train_steps returns (losses, new_params): losses has one entry per step, new_params one "
                "array per key of params with that parameter's shape (Task: `numpy_train_steps`)")


def call_numpy_train_steps(fn, inputs: dict) -> np.ndarray:
    params, x, y, steps = inputs["params"], inputs["x"], inputs["y"], inputs["steps"]
    given = _params_given(params)
    result = _calling_layers(fn, "numpy_train_steps", {**given, "x": x, "y": y}, params, x, y, inputs["lr"], steps,
                             rule=TRAIN_KEEPS)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        got = type(result).__name__ + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else "")
        raise WrongReturnValue(f"numpy_train_steps must return a tuple (losses, new_params); it returned a {got}.")
    losses, new_params = result
    losses_array = to_numpy(losses)
    if losses_array is None or losses_array.dtype.kind not in "iuf":
        raise WrongReturnValue(f"losses must be a list or array of numbers; it is a {type(losses).__name__}.")
    losses_array = losses_array.reshape(-1) if losses_array.ndim > 1 and losses_array.size == steps else losses_array
    if losses_array.shape != (steps,):
        raise RuleBroken(TRAIN_SHAPES, f"losses has shape {losses_array.shape}, expected ({steps},) for "
                                       f"steps={steps}")
    arrays = _unpack_grads(new_params, params, "new_params", TRAIN_SHAPES)
    if isinstance(new_params, dict):
        for k in KEYS:
            not_sharing(new_params[k], given, f"new_params[{k!r}]", TRAIN_KEEPS)
    return flatten(losses_array, *arrays)


def _loss_goes_down(case: Case) -> bool:
    losses, _ = torch_sgd(case.inputs)
    return losses[-1] < losses[0]


NUMPY_TRAIN_STEPS = Exercise(
    function="numpy_train_steps",
    forbidden=FORBIDDEN,
    reference_name="torch.optim.SGD on the same network (losses per step and the final params)",
    make_cases=numpy_train_steps_cases,
    reference=train_reference,
    call=call_numpy_train_steps,
    mistakes=[
        Mistake("the gradient was added to the parameters (gradient ascent): the loss goes up",
                "the gradient points to where the loss grows fastest; a descent step moves against it.",
                train_gradient_added),
        Mistake("the learning rate was applied twice (the step is lr² times the gradient)",
                "each update scales the gradient by lr exactly once.", train_lr_twice),
        Mistake("the step used half-updated weights: the gradients were computed again after each parameter's "
                "update",
                "compute every gradient of a step from the same params (one forward and one backward pass), and "
                "only then update all of them.",
                train_half_updated),
        Mistake("each step recorded the loss after its update instead of the loss its forward pass computed",
                "losses[t] is the loss of the forward pass of step t, at the params before that step's update.",
                train_loss_after_update),
    ],
    hint="first make sure network_backward passes its check. Then each step is one call of network_backward at the "
         "current params, its loss appended, and one update of every parameter against its gradient, scaled "
         "by lr (section 9, “Task: `numpy_train_steps`”).",
    exception_hints={**return_hint("losses", "new_params"),
                     "LayerNotImplemented": "write the function named above and run its check; then run this "
                                            "check again."},
    section=SECTION,
    layout=PACKED,
    covers={
        "a batch of 2 or more": lambda c: c.inputs["x"].shape[0] >= 2,
        "2 or more steps": lambda c: c.inputs["steps"] >= 2,
        "5 or more steps": lambda c: c.inputs["steps"] >= 5,
        "a learning rate of 0.5 or more": lambda c: c.inputs["lr"] >= 0.5,
        "a learning rate below 0.1": lambda c: c.inputs["lr"] < 0.1,
        "a non-square input": lambda c: c.inputs["x"].shape[2] != c.inputs["x"].shape[3],
        "an odd side: pooling drops the last row or column":
            lambda c: c.inputs["x"].shape[2] % 2 == 1 or c.inputs["x"].shape[3] % 2 == 1,
        "the loss goes down over the steps (with the reference)": _loss_goes_down,
    },
)


# --------------------------------------------------------------------------- which layer is wrong


def failing_prerequisite(fn, names: tuple[str, ...]) -> tuple[str, Report] | None:
    """The first of ``names`` (functions of the notebook that ``fn`` uses, found in its namespace) whose own
    visible check fails, with that check's report; None when all of them pass (or none is found)."""
    namespace = getattr(fn, "__globals__", None)
    if not isinstance(namespace, dict):
        return None
    checks = {**LAYERS, "network_backward": NETWORK_BACKWARD}
    for name in names:
        function = namespace.get(name)
        if not callable(function) or function is fn:
            continue
        try:
            with quiet():
                _run(checks[name], function, False, ())
        except CheckFailure as failure:
            return name, failure.report
    return None


def _run(exercise: Exercise, fn, hidden: bool, uses: tuple[str, ...]):
    """``run_check``, and on a failure of the answer's own values: which function it uses fails its own check."""
    __tracebackhide__ = True
    verdict = evaluate(exercise, exercise.make_cases(hidden), lambda index, case, label: produce(exercise, fn, case,
                                                                                                  label))
    if not isinstance(verdict, Report):
        return verdict
    if uses and verdict.diagnosis() in ("named", "described", "values", "raised"):
        found = failing_prerequisite(fn, uses)
        if found is not None:
            name, report = found
            verdict.likely_cause = (f"your {name} fails its own check ({report.headline}), and "
                                    f"{exercise.function} uses it")
            verdict.hint = f"fix {name} first (its check says how), then run this check again."
            verdict.pattern = []
    raise_failure(verdict, NotImplementedYet if verdict.headline.endswith("not implemented yet") else CheckFailure)


def check_network_backward(network_backward, hidden: bool = False) -> None:
    """Check ``network_backward(params, x, y) -> (loss, grads, dx)`` against torch autograd on the same network."""
    show(_run(NETWORK_BACKWARD, network_backward, hidden, tuple(LAYERS)))


def check_numpy_train_steps(numpy_train_steps, hidden: bool = False) -> None:
    """Check ``numpy_train_steps(params, x, y, lr, steps) -> (losses, new_params)`` against ``torch.optim.SGD``."""
    show(_run(NUMPY_TRAIN_STEPS, numpy_train_steps, hidden, (*LAYERS, "network_backward")))
