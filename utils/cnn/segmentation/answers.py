"""``unet_answers``: a dict of shapes and parameter counts of one U-Net, worked out by hand (section 3).

The configuration is ``UNet(in_channels=3, num_classes=4, base_channels=16, depth=4)`` on a 3×128×192 image. Each
key is one case; its answer is measured on the reference network of :mod:`~utils.cnn.segmentation.shared` built
on the meta device when the check runs (shapes from forward hooks, counts from ``parameters()``). The attention
keys count tokens and score-matrix entries of one head on the bottleneck's map and on the full-resolution one.
"""
from __future__ import annotations

import functools

import torch

from utils.checks.compare import EXACT
from utils.checks.exercise import Exercise, run_check
from utils.checks.feedback import show
from utils.cnn.layers.by_hand import ByHandAnswers, Question, WrongAnswer
from utils.cnn.segmentation.shared import UNetReference

CONFIG = dict(in_channels=3, num_classes=4, base_channels=16, depth=4)
IMAGE = (3, 128, 192)
SECTION = "3. Shapes and parameters, scale by scale"


def _network(**variant) -> UNetReference:
    with torch.device("meta"):
        return UNetReference(**CONFIG, **variant)


@functools.cache
def _block_shapes(kind: str) -> dict[str, tuple]:
    """(C, H, W) of what each block of ``kind`` receives ("in") or gives ("out"), by block name."""
    net = _network()
    seen = {}

    def hook(name):
        def record(module, args, out):
            seen[name] = tuple((args[0] if kind == "in" else out).shape[1:])
        return record
    for name in [*(f"down.{k}" for k in range(4)), "bottleneck", *(f"dec.{k}" for k in range(4)), "head"]:
        net.get_submodule(name).register_forward_hook(hook(name))
    with torch.no_grad():
        net.eval()(torch.empty(1, *IMAGE, device="meta"))
    return seen


def _shapes(prefix: str, kind: str = "out"):
    def answer():
        seen = _block_shapes(kind)
        names = [prefix] if prefix in ("bottleneck", "head") else [f"{prefix}.{k}" for k in range(4)]
        values = [seen[n] for n in names]
        return values[0] if len(values) == 1 else values
    return answer


def _params(*prefixes: str, **variant):
    """Parameters of the blocks named, per scale k for "down"/"dec" (with "up" added to "dec"), else one count."""
    def answer():
        net = _network(**variant)

        def count(name):
            return sum(p.numel() for p in net.get_submodule(name).parameters())
        if prefixes[0] in ("down", "dec"):
            return [sum(count(f"{p}.{k}") for p in prefixes) for k in range(4)]
        if prefixes[0] == "total":
            return sum(p.numel() for p in net.parameters())
        return count(prefixes[0])
    return answer


def _without(prefix: str):
    """The total without the blocks of ``prefix``."""
    def answer():
        net = _network()
        return sum(p.numel() for name, p in net.named_parameters() if not name.startswith(prefix))
    return answer


def _with_running_stats(prefix: str):
    def answer():
        net = _network()
        return [sum(t.numel() for t in net.get_submodule(f"{prefix}.{k}").state_dict().values()
                    if t.dtype.is_floating_point) for k in range(4)]
    return answer


def _tokens():
    shape = _block_shapes("out")["bottleneck"]
    return shape[1] * shape[2]


def _score_ratio():
    return (IMAGE[1] * IMAGE[2]) ** 2 // _tokens() ** 2


def _reversed(answer):
    return lambda: list(reversed(answer()))


def _channels_last(answer):
    return lambda: [(h, w, c) for c, h, w in answer()]


QUESTIONS = {
    "encoder_shapes": Question(
        "(C, H, W) of the outputs of down[0], …, down[3] (the skips)", _shapes("down"),
        (WrongAnswer("the shapes are written channels-last (H, W, C); give (C, H, W)",
                     "give each shape as (channels, height, width), as torch stores it.",
                     _channels_last(_shapes("down"))),
         WrongAnswer("the list runs from the lowest resolution up; give down[0] (full resolution) first",
                     "index k of the list is scale k: down[0] first.", _reversed(_shapes("down"))))),
    "bottleneck_shape": Question("(C, H, W) of the bottleneck's output", _shapes("bottleneck"),
                                 (WrongAnswer("the bottleneck was placed before the last pooling",
                                              "the bottleneck comes after depth poolings, each halving H and W.",
                                              (256, 16, 24)),)),
    "decoder_input_shapes": Question(
        "(C, H, W) of what dec[0], …, dec[3] receive (after the concatenation)", _shapes("dec", "in"),
        (WrongAnswer("the skip's channels were not added: a decoder block receives the skip and the up-sampled "
                     "map joined", "count the channels of both tensors the concatenation joins.",
                     lambda: [(c // 2, h, w) for c, h, w in _shapes("dec", "in")()]),
         WrongAnswer("the list runs from the lowest resolution up; give dec[0] (full resolution) first",
                     "index k of the list is scale k: dec[0] first.", _reversed(_shapes("dec", "in"))))),
    "output_shape": Question("(C, H, W) of the logits", _shapes("head"),
                             (WrongAnswer("the logits have num_classes channels, not base_channels",
                                          "the 1×1 head maps C_0 channels to one score per class.", (16, 128, 192)),)),
    "encoder_params": Question(
        "parameters of down[0], …, down[3]", _params("down"),
        (WrongAnswer("BatchNorm's running mean and variance were counted: they are buffers, not parameters",
                     "count what parameters() yields: BatchNorm has a weight and a bias per channel.",
                     _with_running_stats("down")),
         WrongAnswer("the convolutions were given biases: they have none before a BatchNorm",
                     "section 2's convolutions have bias=False.", _params("down", bias=True)))),
    "bottleneck_params": Question("parameters of the bottleneck", _params("bottleneck"),
                                  (WrongAnswer("BatchNorm's weight and bias were not counted",
                                               "each BatchNorm2d(C) has 2·C parameters.", 884736),)),
    "decoder_params": Question(
        "parameters of up[k] and dec[k] together, for k = 0, …, 3", _params("dec", "up"),
        (WrongAnswer("the transposed convolution up[k] was not counted",
                     "scale k of the decoder has two parts: the up-sampling convolution and the double convolution.",
                     _params("dec")),
         WrongAnswer("dec[k]'s first convolution was counted with C_k input channels: it reads 2·C_k",
                     "the first 3×3 convolution of a decoder block reads the skip and the up-sampled map joined.",
                     _params("dec", "up", skip="add")))),
    "head_params": Question("parameters of the 1×1 head", _params("head"),
                            (WrongAnswer("the head's bias was not counted", "the 1×1 head has a bias per class.",
                                         64),)),
    "total_params": Question("parameters of the whole network", _params("total"),
                             (WrongAnswer("the transposed convolutions were left out of the total",
                                          "the total counts every block of the table, the up-sampling ones too.",
                                          _without("up.")),)),
    "bottleneck_tokens": Question("tokens an attention layer at the bottleneck would attend over (h·w)", _tokens,
                                  (WrongAnswer("the bottleneck's channels were counted as tokens",
                                               "a token is one position of the h×w map; its C values are its features.",
                                               256),)),
    "score_ratio": Question(
        "how many times more attention scores (per head) at full resolution than at the bottleneck",
        _score_ratio,
        (WrongAnswer("the ratio of token counts: the score matrix grows with the square of the tokens",
                     "one head's score matrix has N × N entries for N tokens.",
                     lambda: IMAGE[1] * IMAGE[2] // _tokens()),)),
}

_ANSWERS = ByHandAnswers("unet_answers", QUESTIONS)

ANSWERS = Exercise(
    function="unet_answers", reference_name="the values measured on the reference U-Net", make_cases=_ANSWERS.cases,
    reference=_ANSWERS.reference, call=_ANSWERS.call, mistakes=_ANSWERS.mistakes(), tolerance=EXACT,
    hint="go through section 3's table one block at a time: what each block receives, what it gives, and the "
         "weights and biases of each of its layers.",
    section=SECTION, covers=_ANSWERS.covers(), reveal_expected=False,
    exception_hints={"KeyError": "keep every key of the template dict and fill in its value.",
                     "WrongReturnValue": "pass the dict itself.",
                     "ValueError": "each value is a number, a (C, H, W) tuple, or a list of them as the template "
                                   "says."})


def check_unet_answers(unet_answers, hidden: bool = False) -> None:
    """Check the dict ``unet_answers`` against the shapes and counts of the reference U-Net."""
    show(run_check(ANSWERS, unet_answers, hidden))
