"""``conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1) -> int``.

One case: a table of settings, each answered by one call; compared with the output length of
torch's own convolution. The mistakes are computed by
:func:`~utils.deformable_conv.computations.output_size_with`, imported where they are computed.
"""
from __future__ import annotations

import numpy as np

from utils.checks.adapters import numbers, torch_module
from utils.checks.compare import EXACT
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show

SETTING_NAMES = ("size", "kernel_size", "stride", "padding", "dilation")
SETTINGS = [(5, 3, 1, 0, 1), (32, 3, 1, 1, 1), (7, 3, 2, 1, 1), (6, 2, 2, 1, 2), (7, 3, 2, 1, 2),
            (10, 4, 3, 0, 1), (9, 3, 1, 2, 3)]
HIDDEN_SETTINGS = [(224, 7, 2, 3, 1), (13, 5, 2, 2, 2), (8, 1, 3, 0, 1), (11, 3, 4, 3, 5)]


def _cases(hidden: bool) -> list[Case]:
    # No random inputs, so the salt of the hidden settings changes nothing.
    settings = [setting for setting, _ in visible_then_hidden(SETTINGS, HIDDEN_SETTINGS, hidden)]

    def describe(index):
        values = settings[index[0]]
        return "conv_output_size(" + ", ".join(f"{n}={v}" for n, v in zip(SETTING_NAMES, values, strict=True)) + ")"

    return [Case(f"{len(settings)} settings of ({', '.join(SETTING_NAMES)}), some with stride 2+, padding and dilation",
                 {"settings": settings}, describe)]


def _call(fn, inputs):
    return numbers([fn(*setting) for setting in inputs["settings"]])


def torch_conv_output_size(size: int, kernel_size: int, stride: int, padding: int, dilation: int) -> int:
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

        return np.array([output_size_with(*setting, **switches) for setting in inputs["settings"]], dtype=np.float64)
    return compute


MISTAKES = [
    Mistake("your sizes are one less than expected: the `+ 1` at the end of the formula is missing",
            "a kernel that fits exactly once gives one output: (size + 2·padding − dilation·(K−1) − 1) // stride + 1.",
            _sizes_computed_with(plus_one=False)),
    Mistake("your sizes ignore dilation: the kernel's span is dilation·(K − 1) + 1, not K",
            "with dilation d the taps sit d pixels apart, so a K-tap kernel spans d·(K−1)+1 pixels.",
            _sizes_computed_with(dilation=False)),
    Mistake("padding is added once: it goes on both sides of the input",
            "use size + 2·padding.", _sizes_computed_with(padding_twice=False)),
    Mistake("you used true division `/`: the number of positions is rounded down",
            "use integer division `//`.", _sizes_computed_with(true_div=True)),
]

OUTPUT_SIZE = Exercise(
    function="conv_output_size",
    reference_name="the output size of torch.nn.functional.conv2d",
    make_cases=_cases,
    reference=_reference,
    call=_call,
    mistakes=MISTAKES,
    tolerance=EXACT,
    hint="out = (size + 2·padding − dilation·(kernel_size − 1) − 1) // stride + 1.",
)


def check_conv_output_size(conv_output_size, hidden: bool = False) -> None:
    """Check ``conv_output_size`` against torch's convolution output sizes."""
    __tracebackhide__ = True
    show(run_check(OUTPUT_SIZE, conv_output_size, hidden))
