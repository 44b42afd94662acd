"""``block_gradient_norms(blocks, x, grad_output) -> np.ndarray``: ‖∂L/∂h_k‖ for h_0 = x,
h_k = blocks[k-1](h_{k-1}), with L = ⟨h_L, grad_output⟩; shape (len(blocks) + 1,).

A case hands the student a float64 stack of plain or residual blocks (two 3×3 convolutions each) loaded with
the check's weights; the reference computes the norms with ``torch.autograd.grad``.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.checks.adapters import returned_array
from utils.checks.characterise import Layout
from utils.checks.compare import Tolerance
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.rules import RuleBroken, kept_unchanged
from utils.checks.seeding import case_rng
from utils.cnn.architectures.shared import on_meta, random_state, state_tensors

# float64 autograd on both sides; the norms are of order one, a mistake changes them by far more
FLOAT64_NORMS = Tolerance(atol=1e-9, rtol=1e-8)


class PlainBlock(nn.Module):
    """conv 3×3 → ReLU → conv 3×3 → ReLU, no skip connection."""

    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return F.relu(self.conv2(F.relu(self.conv1(x))))


class ResidualBlock(PlainBlock):
    """The same two convolutions with an identity skip connection: relu(x + F(x))."""

    def forward(self, x):
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


def gradient_network(kind: str, depth: int, channels: int) -> nn.Sequential:
    """``depth`` plain or residual blocks of ``channels`` channels: the network a case hands the student."""
    block = PlainBlock if kind == "plain" else ResidualBlock
    return nn.Sequential(*[block(channels) for _ in range(depth)])


def reference_gradient_norms(blocks: nn.Module, x: np.ndarray, grad_output: np.ndarray, *, metric="l2",
                             upstream="given", order="input_first", include_output=True) -> np.ndarray:
    """‖∂L/∂h_k‖ for k = 0..L with autograd in float64; the keywords reproduce known mistakes."""
    h = [torch.from_numpy(np.array(x)).requires_grad_()]
    for block in blocks:
        h.append(block(h[-1]))
    g = torch.from_numpy(np.array(grad_output))
    if upstream == "sum":
        g = torch.ones_like(h[-1])
    elif upstream == "mean":
        g = torch.ones_like(h[-1]) / h[-1].numel()
    grads = torch.autograd.grad(h[-1], h, g)
    values = {"l2": lambda t: t.norm(), "mean_abs": lambda t: t.abs().mean(),
              "squared": lambda t: (t ** 2).sum()}[metric]
    norms = np.array([float(values(t)) for t in grads])
    if not include_output:
        norms = norms[:-1]
    return norms[::-1].copy() if order == "output_first" else norms


def _gradient_case(number: int, kind: str, depth: int, channels: int, shape: tuple, salt: str) -> Case:
    rng = case_rng("block_gradient_norms", number, salt)
    state = random_state(lambda: gradient_network(kind, depth, channels), rng)
    inputs = {"kind": kind, "depth": depth, "channels": channels, "state": state,
              "x": rng.normal(size=shape), "grad_output": rng.normal(size=shape)}
    return Case(f"{depth} {kind} block{'s' if depth > 1 else ''} of {channels} channels, input "
                f"{'×'.join(map(str, shape))}, random grad_output", inputs,
                lambda index: f"norm of ∂L/∂h_{index[0]}")


def _gradient_cases(hidden: bool) -> list[Case]:
    settings = visible_then_hidden(
        # several blocks first: a dropped entry there is located (with one block, any drop is the last entry)
        [("residual", 3, 3, (2, 3, 4, 4)), ("plain", 1, 2, (1, 2, 3, 3)), ("plain", 4, 3, (2, 3, 5, 4))],
        [("residual", 6, 2, (1, 2, 6, 6)), ("plain", 2, 4, (3, 4, 3, 5))], hidden)
    return [_gradient_case(number, *setting, salt) for number, (setting, salt) in enumerate(settings, start=1)]


def _gradient_blocks(inputs) -> nn.Sequential:
    """The case's network (the test input, not a reference), float64."""
    net = on_meta(lambda: gradient_network(inputs["kind"], inputs["depth"], inputs["channels"]))
    net = net.to_empty(device="cpu").double()
    net.load_state_dict(state_tensors(inputs["state"]))
    return net


# what section 8's task states about the caller's objects
_UNCHANGED_RULE = "block_gradient_norms leaves blocks (weights and train/eval mode), x and grad_output as it " \
                  "found them (section 8's task)"


_RETURNS_RULE = "block_gradient_norms returns a numpy array of shape (len(blocks) + 1,) (section 8's task)"


def _gradient_call(fn, inputs):
    blocks = _gradient_blocks(inputs)
    x = torch.from_numpy(np.array(inputs["x"]))
    grad_output = torch.from_numpy(np.array(inputs["grad_output"]))
    with kept_unchanged({"blocks": blocks, "x": x, "grad_output": grad_output}, rule=_UNCHANGED_RULE):
        norms = fn(blocks, x, grad_output)
    if torch.is_tensor(norms):   # e.g. torch.stack of the norms: still attached to the graph, not what is asked
        raise RuleBroken(_RETURNS_RULE, "it returned a torch tensor")
    return returned_array(norms)


def _gradient_variant(**kw):
    return lambda inputs: reference_gradient_norms(_gradient_blocks(inputs), inputs["x"], inputs["grad_output"], **kw)


_IGNORED_GRAD_OUTPUT_HINT = "back-propagate grad_output itself from h_L (L = ⟨h_L, grad_output⟩), not a tensor " \
                            "of ones: it is random in the check."

GRADIENT = Exercise(
    function="block_gradient_norms",
    reference_name="‖∂L/∂h_k‖ computed with torch.autograd.grad",
    make_cases=_gradient_cases,
    reference=_gradient_variant(),
    call=_gradient_call,
    mistakes=[
        Mistake("mean of |gradient| instead of the L2 norm",
                "entry k is the L2 norm of the whole gradient ∂L/∂h_k (section 8): the square root of a sum of "
                "squares, not a mean.", _gradient_variant(metric="mean_abs")),
        Mistake("squared norm: the square root is missing", "the L2 norm takes the square root of the sum of "
                "squares.", _gradient_variant(metric="squared")),
        Mistake("grad_output is ignored: you back-propagated h_L.sum() instead of ⟨h_L, grad_output⟩",
                _IGNORED_GRAD_OUTPUT_HINT, _gradient_variant(upstream="sum")),
        Mistake("grad_output is ignored: you back-propagated h_L.mean() instead of ⟨h_L, grad_output⟩",
                _IGNORED_GRAD_OUTPUT_HINT, _gradient_variant(upstream="mean")),
        Mistake("the norms are in reverse order: index 0 must be the network's input x = h_0",
                "entry 0 is the input h_0 = x and the last entry the output h_L.",
                _gradient_variant(order="output_first")),
        Mistake("the last entry ‖∂L/∂h_L‖ (= ‖grad_output‖) is missing",
                "there are len(blocks) + 1 activations, h_0 = x to h_L; the last one's gradient is grad_output "
                "itself.", _gradient_variant(include_output=False)),
    ],
    tolerance=FLOAT64_NORMS,
    hint="entry k is the L2 norm of ∂L/∂h_k for L = ⟨h_L, grad_output⟩, from the input h_0 = x to the output h_L "
         "(section 8): check the activations you keep, the gradient you start from, the norm and the order.",
    exception_hints={"RuntimeError": "read the line the error points to. From autograd it usually means a tensor "
                                     "that is not in the graph: a gradient with respect to an activation exists "
                                     "only for the tensors you passed from block to block (section 8's task)."},
    section="8. Gradient flow",
    layout=Layout(axes=("activation",)),
    covers={"a single block": lambda c: c.inputs["depth"] == 1,
            "several blocks": lambda c: c.inputs["depth"] >= 3,
            "residual blocks": lambda c: c.inputs["kind"] == "residual",
            "plain blocks": lambda c: c.inputs["kind"] == "plain",
            "a batch of 2 or more": lambda c: np.shape(c.inputs["x"])[0] >= 2,
            "a non-square input": lambda c: np.shape(c.inputs["x"])[2] != np.shape(c.inputs["x"])[3],
            "a random grad_output (not all ones)": lambda c: np.ptp(c.inputs["grad_output"]) > 0},
)


def check_block_gradient_norms(block_gradient_norms, hidden: bool = False) -> None:
    """Check ``block_gradient_norms(blocks, x, grad_output)``."""
    show(run_check(GRADIENT, block_gradient_norms, hidden))
