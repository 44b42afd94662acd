"""The by-hand answers: four dicts the student fills in, checked one key at a time.

* ``size_answers``: output sizes and shapes of convolutions, poolings and small networks;
* ``param_answers``: parameter counts;
* ``rf_answers``: receptive fields;
* ``hand_answers``: the course notes' worked examples of convolution, pooling and BatchNorm.

Each key is one case. Its answer is computed from real torch modules (shapes from a forward pass,
counts from ``parameters()``, receptive fields measured with autograd), on first use: the student's
kernel never computes it. A wrong answer a student typically gives is catalogued as a mistake of
that key only.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from utils.checks.adapters import float64_tensor, torch_module
from utils.checks.characterise import Layout
from utils.checks.compare import EXACT, Tolerance
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check
from utils.checks.feedback import show
from utils.cnn.layers.batchnorm import SEED_BN_X
from utils.cnn.layers.conv2d import SEED_BACK_W, SEED_BACK_X, SEED_CONV_W, SEED_CONV_X, torch_conv2d, torch_conv2d_grads
from utils.cnn.layers.pooling import SEED_POOL_DOUT, SEED_POOL_X, torch_pool, torch_pool_grad
from utils.cnn.layers.shared import WrongReturnValue

# Answers worked out on paper with decimals (BatchNorm's x̂): 3 decimals are enough.
BY_HAND_DECIMALS = Tolerance(atol=2e-3, rtol=0.0)


class WrongAnswer(NamedTuple):
    name: str
    hint: str
    value: Any   # the wrong answer, or a function computing it with torch


class Question(NamedTuple):
    description: str
    answer: Callable[[], Any]          # computes the answer with torch modules
    wrong: tuple[WrongAnswer, ...] = ()


# How a diagnosis names the axes of an answer that is a list or an array (a number has none).
AXES = {"two_block_shape": ("entry of (C, H, W)",), "lenet_conv2_shape": ("entry of (C, H, W)",),
        "rf_blocks": ("entry of the list",), "rf_blocks_dilated": ("entry of the list",),
        **{key: ("row", "column") for key in ("conv_output", "maxpool_output", "avgpool_output", "maxpool_grad",
                                              "conv_dw", "conv_dx")},
        **{key: ("feature",) for key in ("bn_mean", "bn_var", "bn_xhat_first_row", "bn_running_mean",
                                         "bn_running_var")}}


def _answer_array(value) -> np.ndarray:
    """An answer as a float64 array: the value itself, or what its function computes.

    Building a module draws its initial weights from torch's global generator, so a function runs
    with that generator's state restored afterwards: a check leaves the global RNG state untouched.
    """
    if not callable(value):
        return np.asarray(value, dtype=np.float64)
    with torch_module().random.fork_rng():
        return np.asarray(value(), dtype=np.float64)


def _answer_to(key: str, value, inputs: dict) -> np.ndarray:
    """A wrong answer to question ``key``, as a mistake's output; it does not apply to other questions."""
    if inputs["key"] != key:
        raise LookupError("this mistake belongs to another question")
    return _answer_array(value)


def _describe_answer(name: str, key: str) -> Callable[[tuple], str]:
    """Names an element of one answer: "hand_answers['conv_output'][0, 1]"."""
    def describe(index: tuple) -> str:
        return f"{name}[{key!r}]" + (f"[{', '.join(map(str, index))}]" if index else "")
    return describe


ON_PAPER = "7. On paper: sizes, parameters, receptive fields"


class ByHandAnswers:
    """A by-hand exercise: one case per key of the student's dict, the answers computed with torch."""

    def __init__(self, name: str, questions: dict[str, Question]):
        self.name = name
        self.questions = questions

    def cases(self, hidden: bool) -> list[Case]:
        """One case per key, the same with ``hidden=True``: the questions are the notebook's."""
        return [Case(f"{self.name}[{key!r}]: {question.description}", {"key": key},
                     _describe_answer(self.name, key), layout=Layout(axes=AXES[key]) if key in AXES else None)
                for key, question in self.questions.items()]

    def reference(self, inputs: dict) -> np.ndarray:
        return _answer_array(self.questions[inputs["key"]].answer)

    def call(self, answers, inputs: dict) -> np.ndarray:
        answers = answers() if callable(answers) else answers
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
        return [Mistake(f"{self.name}[{key!r}]: {wrong.name}", wrong.hint,
                        functools.partial(_answer_to, key, wrong.value))
                for key, question in self.questions.items() for wrong in question.wrong]

    def covers(self) -> dict:
        """Every question of the notebook's dict is asked."""
        return {f"the question {key!r}": (lambda case, key=key: case.inputs["key"] == key) for key in self.questions}

    def exercise(self, tolerance: Tolerance, hint: str) -> Exercise:
        return Exercise(function=self.name, reference_name="the values computed from torch modules",
                        make_cases=self.cases, reference=self.reference, call=self.call,
                        mistakes=self.mistakes(), tolerance=tolerance, hint=hint, section=ON_PAPER,
                        covers=self.covers(), reveal_expected=False,
                        exception_hints={"KeyError": "keep every key of the template dict and fill in its value.",
                                         "WrongReturnValue": "pass the dict itself.",
                                         "ValueError": "each value is a number, or a list/tuple of numbers."})


# --------------------------------------------------------------------------- output sizes and parameter counts


def _nn():
    return torch_module().nn


def _output_shape(layers: list, input_shape: tuple) -> tuple:
    """Output shape of ``nn.Sequential(*layers)`` on a zero input of ``input_shape``."""
    torch = torch_module()
    with torch.no_grad():
        return tuple(torch.nn.Sequential(*layers)(torch.zeros(input_shape)).shape)


def _output_side(layers: list, side: int) -> int:
    """Height of the output of ``layers`` on a one-channel side × side input."""
    return _output_shape(layers, (1, 1, side, side))[2]


def _n_params(layers: list, with_buffers: bool = False) -> int:
    """Trainable parameters of ``layers``; ``with_buffers`` also counts BatchNorm's running statistics."""
    net = _nn().Sequential(*layers)
    count = sum(p.numel() for p in net.parameters() if p.requires_grad)
    if with_buffers:
        count += sum(b.numel() for name, b in net.named_buffers() if "running" in name)
    return int(count)


def _lenet(flatten: int = 256) -> list:
    """LeNet-5 for 28×28×1 inputs (``flatten=400`` is the classic one, for 32×32 inputs)."""
    nn = _nn()
    return [nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(flatten, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10)]


def _two_blocks(bias: bool = True) -> list:
    nn = _nn()
    return [nn.Conv2d(1, 4, 3, padding=1, bias=bias), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 8, 3, padding=1, bias=bias), nn.ReLU(), nn.MaxPool2d(2)]


def _classifier_features(ceil_mode: bool = False) -> list:
    nn = _nn()
    return [nn.Conv2d(3, 64, 3), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=ceil_mode), nn.Conv2d(64, 128, 3),
            nn.ReLU(), nn.MaxPool2d(2, ceil_mode=ceil_mode), nn.Flatten()]


def _mlp_block(bias: bool = True) -> list:
    nn = _nn()
    return [nn.Linear(768, 3072, bias=bias), nn.GELU(), nn.Linear(3072, 768, bias=bias)]


def _conv_block(bias: bool = True, batchnorm: bool = True) -> list:
    nn = _nn()
    return ([nn.Conv2d(64, 128, 3, padding=1, bias=bias)] + ([nn.BatchNorm2d(128)] if batchnorm else [])
            + [nn.Conv2d(128, 128, 3, padding=1, bias=bias)])


def _convs_without_bias(count: int, kernel_size: int) -> list:
    return [_nn().Conv2d(64, 64, kernel_size, bias=False) for _ in range(count)]


_CHANNELS_LAST = "the shape is written channels-last (H, W, C); give (C, H, W)"
_BIASES_FORGOTTEN = "biases forgotten"

SIZE_QUESTIONS = {
    "conv_4x4_k3": Question(
        "side of the output of a 3×3 convolution on a 4×4 input, no padding, stride 1",
        lambda: _output_side([_nn().Conv2d(1, 1, 3)], 4),
        (WrongAnswer("the `+ 1` is missing", "the first window position counts too: one more output than the "
                     "number of steps the window takes.", 1),)),
    "conv_4x4_k3_pad1": Question(
        "side of the output of the same convolution with padding=1",
        lambda: _output_side([_nn().Conv2d(1, 1, 3, padding=1)], 4),
        (WrongAnswer("padding added on one side only", "padding adds zeros on both sides of each axis.", 3),)),
    "conv_5x5_k3_stride2": Question(
        "side of the output of a 3×3 convolution on a 5×5 input, stride 2, no padding",
        lambda: _output_side([_nn().Conv2d(1, 1, 3, stride=2)], 5),
        (WrongAnswer("stride ignored", "with stride 2 the window moves two pixels at a time.", 3),)),
    "two_block_shape": Question(
        "(C, H, W) after [Conv 3×3 (4 filters, pad 1) → ReLU → MaxPool 2] → "
        "[Conv 3×3 (8 filters, pad 1) → ReLU → MaxPool 2] on an 8×8×1 input",
        lambda: _output_shape(_two_blocks(), (1, 1, 8, 8))[1:],
        (WrongAnswer(_CHANNELS_LAST, "PyTorch writes the channels first.", (2, 2, 8)),)),
    "lenet_conv2_shape": Question(
        "(C, H, W) after LeNet-5's second convolution (Conv 5×5, 16 filters) on a 28×28×1 input",
        lambda: _output_shape(_lenet()[:4], (1, 1, 28, 28))[1:],
        (WrongAnswer(_CHANNELS_LAST, "PyTorch writes the channels first.", (8, 8, 16)),)),
    "lenet_flatten": Question(
        "number of features LeNet-5 flattens before its first Linear layer (28×28×1 input)",
        lambda: _output_shape(_lenet()[:7], (1, 1, 28, 28))[1],
        (WrongAnswer("400 is the classic LeNet-5 on 32×32 inputs; this one sees 28×28",
                     "follow the side through each convolution and pooling, starting from 28.", 400),)),
    "classifier_flatten": Question(
        "in_features of the Linear layer after Conv 3×3 (64) → ReLU → MaxPool 2 → Conv 3×3 (128) "
        "→ ReLU → MaxPool 2 on a 224×224×3 input (no padding)",
        lambda: _output_shape(_classifier_features(), (1, 3, 224, 224))[1],
        (WrongAnswer("a pooling of an odd side was rounded up: MaxPool2d rounds down",
                     "pooling an odd side by 2 drops its last row and column (section 7, output sizes).",
                     lambda: _output_shape(_classifier_features(ceil_mode=True), (1, 3, 224, 224))[1]),)),
}

PARAM_QUESTIONS = {
    "single_conv_params": Question(
        "parameters of Conv2d(1, 2, kernel_size=3) (a 5×5×1 input, 2 filters)",
        lambda: _n_params([_nn().Conv2d(1, 2, 3)]),
        (WrongAnswer(_BIASES_FORGOTTEN, "each filter has one bias.", 18),)),
    "mults_per_output": Question(
        "multiplications for one output value of a 3×3 kernel on a 3×3×2 input",
        lambda: _n_params([_nn().Conv2d(2, 1, 3, bias=False)]),
        (WrongAnswer("only one input channel counted: the kernel spans all input channels",
                     "one output value reads the kernel's taps in every input channel.", 9),)),
    "two_block_params": Question(
        "parameters of the two conv blocks of 'two_block_shape' (Conv 1→4 and Conv 4→8, 3×3)",
        lambda: _n_params(_two_blocks()),
        (WrongAnswer(_BIASES_FORGOTTEN, "each filter has one bias.", lambda: _n_params(_two_blocks(bias=False))),)),
    "lenet5_params": Question(
        "parameters of LeNet-5 on 28×28×1 input (conv 6, conv 16, Linear 256→120→84→10)",
        lambda: _n_params(_lenet()),
        (WrongAnswer("you counted the 32×32-input LeNet-5 (400 flattened features)",
                     "on 28×28 inputs fewer features reach the first Linear layer (your 'lenet_flatten').",
                     lambda: _n_params(_lenet(flatten=400))),
         WrongAnswer(_BIASES_FORGOTTEN, "every conv filter and every Linear output unit has a bias.",
                     lambda: _n_params(_lenet()) - (6 + 16 + 120 + 84 + 10)))),
    "mlp_block_params": Question(
        "parameters of Linear(768, 3072) → GELU → Linear(3072, 768)",
        lambda: _n_params(_mlp_block()),
        (WrongAnswer(_BIASES_FORGOTTEN, "each Linear layer has one bias per output unit.",
                     lambda: _n_params(_mlp_block(bias=False))),)),
    "conv_block_params": Question(
        "parameters of Conv2d(64, 128, 3, padding=1) → BatchNorm2d(128) → Conv2d(128, 128, 3, padding=1)",
        lambda: _n_params(_conv_block()),
        (WrongAnswer("BatchNorm's running_mean and running_var counted as parameters: they are buffers",
                     "only γ and β are trained.", lambda: _n_params(_conv_block(), with_buffers=True)),
         WrongAnswer("256 parameters missing: BatchNorm's γ and β not counted, or the two convolutions' biases "
                     "(128 each) forgotten — both are 256",
                     "count BatchNorm's γ and β and the bias of each convolution.",
                     lambda: _n_params(_conv_block(batchnorm=False))))),
    "two_3x3_params_c64": Question(
        "weights (no bias) of two stacked Conv2d(64, 64, 3)",
        lambda: _n_params(_convs_without_bias(2, kernel_size=3)),
        (WrongAnswer("only one of the two convolutions counted", "there are two layers of the same size.",
                     64 * 64 * 9),)),
    "one_5x5_params_c64": Question(
        "weights (no bias) of one Conv2d(64, 64, 5), the same receptive field",
        lambda: _n_params(_convs_without_bias(1, kernel_size=5))),
}


# --------------------------------------------------------------------------- receptive fields


@functools.cache
def measured_receptive_field(blocks: tuple) -> int:
    """Receptive field (side) of the centre output pixel, measured with autograd on real modules.

    ``blocks`` is a tuple of (kind, kernel, stride, dilation), kind "conv" or "pool". The layers are
    the 1-D versions (Conv1d, AvgPool1d): with square kernels a 2-D receptive field is the same along
    each axis. All conv weights are 1, so every input position that can influence the output gets a
    positive gradient. Max pooling routes its gradient to one position only, so a pool is measured
    with an average pool of the same window (the same geometry).
    """
    torch = torch_module()
    nn = torch.nn
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


def _conv_pool_blocks(n: int, dilated=()) -> tuple:
    """n blocks of Conv 3×3 (dilation 2 in the blocks listed in ``dilated``) → MaxPool 2×2, stride 2."""
    blocks = []
    for i in range(1, n + 1):
        blocks.append(("conv", 3, 1, 2 if i in dilated else 1))
        blocks.append(("pool", 2, 2, 1))
    return tuple(blocks)


def _rf_after_blocks(dilated=()) -> list[int]:
    """The receptive field after 1, 2, 3 and 4 blocks."""
    return [measured_receptive_field(_conv_pool_blocks(n, dilated)) for n in range(1, 5)]


def _blocks_needed(target: int, dilated=()) -> int:
    n = 1
    while measured_receptive_field(_conv_pool_blocks(n, dilated)) < target:
        n += 1
    return n


def _rf_ignoring_pool(n: int, dilated=()) -> int:
    """The receptive field of n blocks with each pool's window left out (pools only multiply the jump)."""
    rf, jump = 1, 1
    for i in range(1, n + 1):
        rf += (2 * (2 if i in dilated else 1)) * jump
        jump *= 2
    return rf


_POOL_WINDOW_IGNORED = ("the 2×2 max-pool window was not counted: only the convolutions widened the field",
                        "a pooling window widens the receptive field too, like a convolution's (section 7, "
                        "“Receptive field”).")
_CONV_3X3 = ("conv", 3, 1, 1)

RF_QUESTIONS = {
    "rf_two_3x3": Question(
        "receptive field (side) of two stacked 3×3 convolutions, stride 1",
        lambda: measured_receptive_field((_CONV_3X3,) * 2)),
    "rf_three_3x3": Question(
        "receptive field of three stacked 3×3 convolutions, stride 1",
        lambda: measured_receptive_field((_CONV_3X3,) * 3),
        (WrongAnswer("kernel sizes added up (3 + 3 + 3)", "at stride 1 each further 3×3 layer widens the field by "
                     "less than 3: neighbouring windows share pixels.", 9),)),
    "rf_dilated_3x3": Question(
        "receptive field of one 3×3 convolution with dilation 2",
        lambda: measured_receptive_field((("conv", 3, 1, 2),)),
        (WrongAnswer("dilation ignored", "dilation 2 spreads the kernel's 3 taps 2 pixels apart.", 3),)),
    "rf_blocks": Question(
        "[RF after 1, 2, 3, 4 blocks] of Conv 3×3 (stride 1, pad 1) → ReLU → MaxPool 2×2 (stride 2)",
        _rf_after_blocks,
        (WrongAnswer(*_POOL_WINDOW_IGNORED, [_rf_ignoring_pool(n) for n in range(1, 5)]),)),
    "blocks_needed_64": Question(
        "the fewest such blocks whose receptive field is at least 64",
        lambda: _blocks_needed(64),
        (WrongAnswer(*_POOL_WINDOW_IGNORED, 6),)),
    "rf_blocks_dilated": Question(
        "[RF after 1, 2, 3, 4 blocks] when the convolutions of blocks 3 and 4 use dilation 2",
        lambda: _rf_after_blocks(dilated=(3, 4)),
        (WrongAnswer(*_POOL_WINDOW_IGNORED, [_rf_ignoring_pool(n, dilated=(3, 4)) for n in range(1, 5)]),)),
    "blocks_needed_64_dilated": Question(
        "the fewest blocks reaching a receptive field of 64 with dilation 2 from block 3 on",
        lambda: _blocks_needed(64, dilated=(3, 4, 5, 6, 7, 8)),
        (WrongAnswer(*_POOL_WINDOW_IGNORED, 5),)),
}


# --------------------------------------------------------------------------- the worked examples by hand


def _seed_conv_output(flip: bool = False) -> np.ndarray:
    w = SEED_CONV_W[None, None, ::-1, ::-1] if flip else SEED_CONV_W[None, None]
    return torch_conv2d(SEED_CONV_X[None, None], w, None, 1, 0)[0, 0]


def _seed_conv_grads() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, dw, db) of the course notes' backward example: dY = ones(2×2)."""
    return torch_conv2d_grads(SEED_BACK_X[None, None], SEED_BACK_W[None, None], np.ones((1, 1, 2, 2)), 1, 0)


def _seed_pool(kind: str) -> np.ndarray:
    return torch_pool(kind, SEED_POOL_X.reshape(1, 1, 4, 4), 2, 2)[0, 0]


def _seed_batchnorm1d():
    """BatchNorm1d(3, momentum=0.1, eps=1e-5) after one training step on the seed batch, and its output."""
    bn = _nn().BatchNorm1d(3, momentum=0.1, eps=1e-5).double().train()
    with torch_module().no_grad():
        out = bn(float64_tensor(SEED_BN_X))
    return bn, out.numpy()


_MOMENTUM_REVERSED = "momentum convention reversed: PyTorch keeps 0.9 of the old value"

HAND_QUESTIONS = {
    "conv_output": Question(
        "2×2 output of the 4×4 input [[1,2,3,0],[0,1,2,3],[3,0,1,2],[2,3,0,1]] with the kernel "
        "[[1,0,−1],[1,0,−1],[1,0,−1]], no padding, stride 1",
        _seed_conv_output,
        (WrongAnswer("the kernel was flipped: deep-learning convolution does not flip",
                     "multiply window and kernel element by element as they stand.",
                     lambda: _seed_conv_output(flip=True)),)),
    "maxpool_output": Question(
        "2×2 max pooling (stride 2) of [[1,3,2,4],[5,6,7,8],[9,2,3,1],[4,5,6,7]]",
        lambda: _seed_pool("max")),
    "avgpool_output": Question(
        "2×2 average pooling (stride 2) of the same input",
        lambda: _seed_pool("avg"),
        (WrongAnswer("window sums instead of means", "each window holds four values.",
                     lambda: _seed_pool("avg") * 4),)),
    "maxpool_grad": Question(
        "4×4 gradient dX of that max pooling for dY = [[1, 2], [3, 4]]",
        lambda: torch_pool_grad("max", SEED_POOL_X[None, None], SEED_POOL_DOUT[None, None], 2, 2)[0, 0],
        (WrongAnswer("the gradient of the bottom-right window went to the wrong pixel",
                     "look again for the largest value of the bottom-right window.",
                     [[0, 0, 0, 0], [0, 1, 0, 2], [3, 0, 0, 4], [0, 0, 0, 0]]),
         WrongAnswer("the gradient was sent to all positions of each window, not only the maximum",
                     "only the largest value of each window receives its dY.",
                     np.kron(SEED_POOL_DOUT, np.ones((2, 2)))))),
    "conv_dw": Question(
        "2×2 dW for X = [[1,2,3],[4,5,6],[7,8,9]], W = [[1,0],[0,1]], dY = ones(2×2)",
        lambda: _seed_conv_grads()[1][0, 0]),
    "conv_dx": Question(
        "3×3 dX for the same X, W and dY",
        lambda: _seed_conv_grads()[0][0, 0],
        (WrongAnswer("dX filled with dY everywhere",
                     "count, for each input pixel, the windows where it meets a weight of 1.", np.ones((3, 3))),)),
    "bn_mean": Question(
        "per-feature batch mean of x = [[1,2,3],[4,5,6],[7,8,9],[10,11,12]]",
        lambda: float64_tensor(SEED_BN_X).mean(0).numpy()),
    "bn_var": Question(
        "per-feature variance BatchNorm normalises with (training mode)",
        lambda: float64_tensor(SEED_BN_X).var(0, correction=0).numpy(),
        (WrongAnswer("unbiased variance (÷ 3): BatchNorm normalises with the biased one (÷ 4)",
                     "divide by the number of samples.",
                     SEED_BN_X.var(0, ddof=1)),)),
    "bn_xhat_first_row": Question(
        "first row of the BatchNorm output with γ = 1, β = 0, eps = 1e-5 (3 decimals are enough)",
        lambda: _seed_batchnorm1d()[1][0],
        (WrongAnswer("normalised with the unbiased variance", "normalise with the biased variance, as in 'bn_var'.",
                     (SEED_BN_X[0] - SEED_BN_X.mean(0)) / np.sqrt(SEED_BN_X.var(0, ddof=1) + 1e-5)),)),
    "bn_running_mean": Question(
        "running_mean after this one training step of BatchNorm1d(3, momentum=0.1) (starts at 0)",
        lambda: _seed_batchnorm1d()[0].running_mean.numpy(),
        (WrongAnswer(_MOMENTUM_REVERSED, "momentum 0.1 is the weight of the new batch mean.",
                     0.9 * SEED_BN_X.mean(0)),)),
    "bn_running_var": Question(
        "running_var after the same step (starts at 1)",
        lambda: _seed_batchnorm1d()[0].running_var.numpy(),
        (WrongAnswer("running_var updated with the biased variance: PyTorch stores the unbiased one (÷ N − 1)",
                     "running_var blends in the unbiased batch variance.", 0.9 * 1.0 + 0.1 * SEED_BN_X.var(0)),
         WrongAnswer(_MOMENTUM_REVERSED, "momentum 0.1 is the weight of the new batch variance.",
                     0.1 * 1.0 + 0.9 * SEED_BN_X.var(0, ddof=1)))),
}

SIZE_ANSWERS = ByHandAnswers("size_answers", SIZE_QUESTIONS).exercise(
    EXACT, "apply the section's output-size rule to each convolution and pooling in turn; shapes as (C, H, W).")
PARAM_ANSWERS = ByHandAnswers("param_answers", PARAM_QUESTIONS).exercise(
    EXACT, "count weights and biases layer by layer with the section's rules; ReLU, GELU and pooling have none.")
RF_ANSWERS = ByHandAnswers("rf_answers", RF_QUESTIONS).exercise(
    EXACT, "walk through the layers keeping the field and the jump, as the section describes; pooling windows "
           "count too.")
HAND_ANSWERS = ByHandAnswers("hand_answers", HAND_QUESTIONS).exercise(
    BY_HAND_DECIMALS, "work it out on paper as in the notebook's worked examples; arrays as nested lists.")


def check_size_answers(size_answers, hidden: bool = False) -> None:
    """Check the dict of output sizes against shapes torch modules produce."""
    show(run_check(SIZE_ANSWERS, size_answers, hidden))


def check_param_answers(param_answers, hidden: bool = False) -> None:
    """Check the dict of parameter counts against ``sum(p.numel())`` of torch modules."""
    show(run_check(PARAM_ANSWERS, param_answers, hidden))


def check_rf_answers(rf_answers, hidden: bool = False) -> None:
    """Check the dict of receptive fields against fields measured with autograd on torch modules."""
    show(run_check(RF_ANSWERS, rf_answers, hidden))


def check_hand_answers(hand_answers, hidden: bool = False) -> None:
    """Check the dict of hand-computed convolution, pooling and BatchNorm numbers against torch."""
    show(run_check(HAND_ANSWERS, hand_answers, hidden))
