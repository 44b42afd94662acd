"""``bilinear_interpolate(a_l, q_y, q_x) -> float`` with ``a_l`` of shape (H, W), zero outside the image.

Each case is an image and a set of query points, one call per point; compared with torchvision's
sampling (a 1×1 deformable convolution, :func:`~utils.deformable_conv.computations.torchvision_bilinear`).
The reference and the mistakes come from :mod:`~utils.deformable_conv.computations`, imported where
they are computed: the kernel that grades this notebook only calls the student's function.
"""
from __future__ import annotations

import numpy as np

from utils.checks.adapters import numbers
from utils.checks.characterise import Layout
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.rules import kept_unchanged
from utils.checks.seeding import case_rng

# rule of computations.bilinear_numpy -> (mistake name, hint), shared by bilinear_interpolate and deform_conv2d
SAMPLING_MISTAKES = {
    "clamp": ("pixels outside the image are clamped to the border instead of being zero",
              "a corner outside the image contributes 0 (zero padding), not the nearest border pixel "
              "(section 2, “Outside the image”)."),
    "trunc": ("`int()` is used instead of floor: for negative coordinates int(-0.5) = 0 but floor(-0.5) = -1",
              "int() rounds towards zero; the top-left corner must be at or before q, also for negative q "
              "(section 2, the first trap)."),
    "wrap": ("negative indices wrap around: a_l[-1, x] reads the last row instead of giving 0",
             "Python's negative indexing does not raise: decide whether a corner is inside the image before "
             "you read it (section 2, the second trap)."),
    "bounds_on_q": ("a sample is zeroed whenever q itself is outside [0, H−1]×[0, W−1], "
                    "but corners inside the image must still contribute",
                    "decide inside/outside for each of the four corners, not for the query point."),
    "corner_mix": ("the corners are mixed up when interpolating Y first (the top-right corner is weighted by the "
                   "x-fraction of the left column and v_11 is missing)",
                   "all four corners take part: blend along x within the top row and within the bottom row, "
                   "then blend the two rows along y (section 2's table names the corners)."),
    "corner_mix_diagonal": ("the x-fraction is applied to the vertical neighbours: v_00 and v_10 are blended by dx",
                            "v_01 is the right neighbour (same row, next column); "
                            "v_10 is the one below (next row, same column)."),
    "ceil": ("at exact integer positions a corner is counted twice: ceil(q) equals floor(q) there",
             "the second corner is always one pixel after the first, also when q is a whole number."),
    "swap_yx": ("q_y and q_x are swapped: rows are indexed with x and columns with y",
                "the first index of a_l is the row (y), the second the column (x)."),
}

EXERCISE = "bilinear_interpolate"
HAND_IMAGE = [[1.0, 2.0], [3.0, 4.0]]
# Drawn once for the visible cases from case 2's generator: a 4×5 image, then 6 fractional points inside it.
RANDOM_IMAGE, RANDOM_POINTS_INSIDE = "the random 4×5 image", "6 random points inside"

# (description, image, points)
SETTINGS = [
    ("2×2 image [[1, 2], [3, 4]] at its centre, at two fractional points and on its bottom edge "
     "(check these by hand)", HAND_IMAGE, [(0.5, 0.5), (0.25, 0.75), (0.0, 0.5), (1.0, 0.5)]),
    ("4×5 image, fractional points inside", RANDOM_IMAGE, RANDOM_POINTS_INSIDE),
    ("4×5 image, exact integer positions (corners and edges included)", RANDOM_IMAGE,
     [(0, 0), (3, 4), (2, 1), (0, 4), (3, 0), (1.0, 3.0)]),
    ("4×5 image, negative fractional coordinates and points just outside the border", RANDOM_IMAGE,
     [(-0.5, 1.25), (1.5, -0.75), (-0.3, -0.6), (3.4, 2.0), (1.0, 4.5), (-0.999, 2.5)]),
    ("4×5 image, points far outside (must give exactly 0)", RANDOM_IMAGE,
     [(-1.0, 2.0), (-2.5, 1.0), (5.0, 2.0), (1.0, -1.5), (1.0, 6.0)]),
]
# the number of random points on a random image of random size, inside, across and outside the border
HIDDEN_SETTINGS = [12, 12]


def _case(description, a_l, points) -> Case:
    points = np.asarray(points, dtype=np.float64)
    return Case(description, {"a_l": np.asarray(a_l, dtype=np.float64), "points": points},
                lambda index: f"query (q_y={points[index[0], 0]:g}, q_x={points[index[0], 1]:g})")


def _random_image_case(number: int, salt: str, n_points: int) -> Case:
    rng = case_rng(EXERCISE, number, salt)
    H, W = rng.integers(3, 8, size=2)
    points = np.column_stack([rng.uniform(-1.5, H + 0.5, n_points), rng.uniform(-1.5, W + 0.5, n_points)])
    points[::4] = np.round(points[::4])
    return _case(f"{H}×{W} random image, {n_points} random points inside, across and outside the border",
                 rng.normal(size=(H, W)), points)


def _cases(hidden: bool) -> list[Case]:
    rng = case_rng(EXERCISE, 2)
    random_image = rng.normal(size=(4, 5))
    inside = np.column_stack([rng.uniform(0, 3, 6), rng.uniform(0, 4, 6)])
    cases = []
    for number, (setting, salt) in enumerate(visible_then_hidden(SETTINGS, HIDDEN_SETTINGS, hidden), start=1):
        if salt:   # a hidden setting: a number of random points on a random image
            cases.append(_random_image_case(number, salt, setting))
            continue
        description, image, points = setting
        cases.append(_case(description, random_image if image == RANDOM_IMAGE else image,
                           inside if points == RANDOM_POINTS_INSIDE else points))
    return cases


RULE = "bilinear_interpolate leaves a_l as it is (the notebook's introduction: your functions must not modify " \
       "the arrays they are given)"


def _call(fn, inputs):
    a_l = inputs["a_l"]
    with kept_unchanged({"a_l": a_l}, rule=RULE):
        return numbers([fn(a_l, float(q_y), float(q_x)) for q_y, q_x in inputs["points"]])


def _reference(inputs):
    from utils.deformable_conv.computations import torchvision_bilinear

    return torchvision_bilinear(inputs["a_l"], inputs["points"])


def _sampled_with(rule):
    def compute(inputs):
        from utils.deformable_conv.computations import bilinear_numpy

        points = inputs["points"]
        return bilinear_numpy(inputs["a_l"][None], points[:, 0], points[:, 1], rule)[0]
    return compute


MISTAKES = [Mistake(name, hint, _sampled_with(rule)) for rule, (name, hint) in SAMPLING_MISTAKES.items()]


def _points(case: Case, holds) -> bool:
    H, W = case.inputs["a_l"].shape
    return any(holds(float(q_y), float(q_x), H, W) for q_y, q_x in case.inputs["points"])


def _fractional(v: float) -> bool:
    return v != float(np.floor(v))

BILINEAR = Exercise(
    function="bilinear_interpolate",
    forbidden=("torch.nn.functional.grid_sample",),
    reference_name="torchvision's bilinear sampling (torchvision.ops.deform_conv2d)",
    make_cases=_cases,
    reference=_reference,
    call=_call,
    mistakes=MISTAKES,
    hint="compare your corners, fractions and blending order with section 2's table and formulas; a corner "
         "outside the image contributes 0 while the corners inside still count.",
    exception_hints={"IndexError": "a corner outside the image must give 0: decide whether it is inside before "
                                   "reading a_l (section 2, “Outside the image”)."},
    section="2. Bilinear interpolation",
    layout=Layout(axes=("query point",)),
    covers={
        "points strictly inside, with fractional coordinates":
            lambda c: _points(c, lambda y, x, H, W: 0 < y < H - 1 and 0 < x < W - 1 and _fractional(y)
                              and _fractional(x)),
        "exact integer positions": lambda c: _points(c, lambda y, x, H, W: not _fractional(y) and not _fractional(x)),
        "the last row and the last column": lambda c: _points(c, lambda y, x, H, W: y == H - 1 and x == W - 1),
        "a negative fractional coordinate (above or left of the image, some corners inside)":
            lambda c: _points(c, lambda y, x, H, W: (-1 < y < 0 and -1 < x < W) or (-1 < x < 0 and -1 < y < H)),
        "past the bottom border, some corners inside": lambda c: _points(c, lambda y, x, H, W: H - 1 < y < H),
        "past the right border, some corners inside": lambda c: _points(c, lambda y, x, H, W: W - 1 < x < W),
        "points far outside on every side": lambda c: all(
            _points(c, test) for test in (lambda y, x, H, W: y <= -1, lambda y, x, H, W: x <= -1,
                                          lambda y, x, H, W: y >= H, lambda y, x, H, W: x >= W)),
        "a non-square image": lambda c: c.inputs["a_l"].shape[0] != c.inputs["a_l"].shape[1],
        "pixel values of both signs": lambda c: bool(np.any(c.inputs["a_l"] < 0) and np.any(c.inputs["a_l"] > 0)),
    },
)


def check_bilinear_interpolate(bilinear_interpolate, hidden: bool = False) -> None:
    """Check ``bilinear_interpolate(a_l, q_y, q_x)`` against torchvision's sampling, in float64."""
    __tracebackhide__ = True
    show(run_check(BILINEAR, bilinear_interpolate, hidden))
