"""``conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1) -> int``.

One case: a table of settings, each answered by one call; compared with the output length of
torch's own convolution. The mistakes are computed by
:func:`~utils.deformable_conv.computations.output_size_with`, imported where they are computed.
"""
from __future__ import annotations

import numpy as np

from utils.checks.adapters import torch_module
from utils.checks.characterise import Layout
from utils.checks.compare import EXACT
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.rules import int_answers

SETTING_NAMES = ("size", "kernel_size", "stride", "padding", "dilation")
DEFAULTS = (1, 0, 1)   # stride, padding, dilation when a setting leaves them out
# A setting is the arguments of one call; a shorter one leaves the last arguments at their defaults.
SETTINGS = [(5, 3), (32, 3, 1, 1, 1), (7, 3, 2, 1, 1), (6, 2, 2, 1, 2), (7, 3, 2, 1, 2),
            (10, 4, 3, 0, 1), (9, 3, 1, 2, 3)]
HIDDEN_SETTINGS = [(224, 7, 2, 3, 1), (13, 5, 2, 2, 2), (8, 1, 3, 0, 1), (11, 3, 4, 3, 5), (9, 3, 2),
                   (6, 3, 1, 1), (12, 2, 1, 0, 4)]
RULE = "conv_output_size returns an int (section 1: `conv_output_size(...) -> int`)"


def full_setting(setting) -> tuple:
    """A setting with the defaults filled in: (size, kernel_size, stride, padding, dilation)."""
    return tuple(setting) + DEFAULTS[len(setting) - 2:]


def _cases(hidden: bool) -> list[Case]:
    # No random inputs, so the salt of the hidden settings changes nothing.
    settings = [setting for setting, _ in visible_then_hidden(SETTINGS, HIDDEN_SETTINGS, hidden)]

    def describe(index):
        return f"conv_output_size({', '.join(map(str, settings[index[0]]))})"

    return [Case(f"{len(settings)} calls conv_output_size(size, kernel_size, stride, padding, dilation), some "
                 "with stride 2+, padding and dilation, some leaving the last arguments at their defaults",
                 {"settings": settings}, describe)]


def _call(fn, inputs):
    return int_answers(fn, inputs["settings"], "conv_output_size", RULE)


def torch_conv_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """The output length torch's own convolution produces for these settings."""
    torch = torch_module()
    x = torch.zeros(1, 1, size, 1, dtype=torch.float64)
    w = torch.zeros(1, 1, kernel_size, 1, dtype=torch.float64)
    out = torch.nn.functional.conv2d(x, w, stride=(stride, 1), padding=(padding, 0), dilation=(dilation, 1))
    return int(out.shape[2])


def _reference(inputs):
    return np.array([torch_conv_output_size(*setting) for setting in inputs["settings"]], dtype=np.float64)


def _sizes_computed_with(**switches):
    def compute(inputs):
        from utils.deformable_conv.computations import output_size_with

        return np.array([output_size_with(*full_setting(setting), **switches) for setting in inputs["settings"]],
                        dtype=np.float64)
    return compute


MISTAKES = [
    Mistake("your sizes are one less than expected: the `+ 1` at the end of the formula is missing",
            "the first position where the window fits counts as one output (section 1 says what the `+ 1` "
            "counts).",
            _sizes_computed_with(plus_one=False)),
    Mistake("your sizes ignore dilation: the kernel was taken to span kernel_size pixels",
            "with dilation D the taps sit D pixels apart, so a dilated kernel spans more pixels than it has "
            "taps (section 1).",
            _sizes_computed_with(dilation=False)),
    Mistake("padding is added once: it goes on both sides of the input",
            "the input is padded with `padding` zeros at its start and again at its end.",
            _sizes_computed_with(padding_twice=False)),
    Mistake("you used true division `/`: your sizes have fractions",
            "the number of positions is rounded down (the floor of section 1): divide with `//`.",
            _sizes_computed_with(true_div=True)),
]


def _calls(case: Case, holds) -> bool:
    return any(holds(*full_setting(setting), len(setting)) for setting in case.inputs["settings"])


OUTPUT_SIZE = Exercise(
    function="conv_output_size",
    reference_name="the output size of torch.nn.functional.conv2d",
    make_cases=_cases,
    reference=_reference,
    call=_call,
    mistakes=MISTAKES,
    tolerance=EXACT,
    hint="count the positions where the whole dilated window fits inside the padded input; section 1 builds the "
         "formula term by term (padding, the span of the kernel, the step, the first position).",
    section="1. How big is the output?",
    layout=Layout(axes=("call",)),
    covers={
        "stride 2 or more": lambda c: _calls(c, lambda n, k, s, p, d, given: s >= 2),
        "padding 1 or more": lambda c: _calls(c, lambda n, k, s, p, d, given: p >= 1),
        "dilation 2 or more": lambda c: _calls(c, lambda n, k, s, p, d, given: d >= 2),
        "stride, padding and dilation all different from their defaults, and from each other":
            lambda c: _calls(c, lambda n, k, s, p, d, given: s >= 2 and p >= 1 and d >= 2 and len({s, p, d}) == 3),
        "a last step that does not fit (the floor matters)":
            lambda c: _calls(c, lambda n, k, s, p, d, given: (n + 2 * p - d * (k - 1) - 1) % s != 0),
        "a kernel of one tap": lambda c: _calls(c, lambda n, k, s, p, d, given: k == 1),
        "an even kernel size": lambda c: _calls(c, lambda n, k, s, p, d, given: k % 2 == 0),
        "called with two arguments (stride, padding and dilation at their defaults)":
            lambda c: _calls(c, lambda n, k, s, p, d, given: given == 2),
        "called with three or four arguments (the others at their defaults)":
            lambda c: _calls(c, lambda n, k, s, p, d, given: given in (3, 4)),
    },
)


def check_conv_output_size(conv_output_size, hidden: bool = False) -> None:
    """Check ``conv_output_size`` against torch's convolution output sizes."""
    __tracebackhide__ = True
    show(run_check(OUTPUT_SIZE, conv_output_size, hidden))
