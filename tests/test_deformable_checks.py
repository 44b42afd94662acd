"""Tests of the deformable-convolution checks in ``utils/deformable_conv/``.

What is tested, for the four checks (conv_output_size, bilinear_interpolate,
sampling_positions, deform_conv2d):

1. correct alternatives pass, visible and hidden: the nested-loop seed style, vectorized numpy,
   float32 arithmetic, torch tensors, numpy scalars / 0-d arrays, tuples or lists;
2. realistic wrong implementations, written the way a student writes them, fail with the right
   "Likely cause", the case line and the tolerance; and every catalogued Mistake, returned
   verbatim, is diagnosed as itself on the first case where it differs from the reference;
3. stubs, exceptions, missing ``return`` and wrong shapes give readable feedback;
4. the numpy re-implementations behind the mistakes agree with torchvision when told to be correct;
5. checks are deterministic and leave the global random generators alone;
6. checks do not mutate their case inputs, and a student mutating inputs cannot change the reference;
7. the visible cases contain what their descriptions (and the lecture) promise.

That no two catalogued mistakes coincide on every case, and that their names are unique, is
tested for every exercise in ``tests/test_contract.py``.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import random

import numpy as np
import pytest
import torch
from deformable_students import (
    CORRECT,
    REALISTIC,
    REALISTIC_IDS,
    bilinear_ceil,
    bilinear_clamp,
    bilinear_corner_mix,
    bilinear_float32,
    bilinear_grid_sample,
    bilinear_seed,
    bilinear_swapped_arguments,
    bilinear_wrap,
    conv_output_size_float32,
    conv_output_size_seed,
    deform_float32,
    deform_mask_ignored,
    deform_seed,
    deform_vectorized,
    deform_with,
    positions_no_dilation,
    positions_no_padding,
    positions_seed,
    positions_swap_yx,
    positions_vectorized,
    size_no_dilation,
    size_padding_once,
    size_true_division,
)

import utils.deformable_conv as D
import utils.deformable_conv.computations as C
from utils.checks.compare import agrees
from utils.checks.exercise import run_check
from utils.checks.feedback import CheckFailure, NotImplementedYet
from utils.checks.seeding import grading_salt
from utils.instructor.bench import DEFORMABLE_NOTEBOOK
from utils.instructor.samples import mistakes_for
from utils.instructor.solutions import NotebookSolutions

EX = D.EXERCISES
# The trusted grader mixes a secret into every seed: the checks must work for any salt.
SECRET = "a grading secret|test_cell"
SALTS = pytest.mark.parametrize("salt", ["", SECRET], ids=["unsalted", "salted"])


def salted(params, hidden_last=True):
    """Each pytest.param (check name first, ``hidden`` last) unsalted, and salted where it adds something.

    Salted runs are hidden runs only (the hidden cases begin with the visible ones), and never
    for conv_output_size, whose cases hold no random numbers (test_output_size_cases_ignore_the_salt).
    """
    out = []
    for p in params:
        out.append(pytest.param(*p.values, "", marks=p.marks, id=f"unsalted-{p.id}"))
        if p.values[0] != "conv_output_size" and (not hidden_last or p.values[-1] is True):
            out.append(pytest.param(*p.values, SECRET, marks=p.marks, id=f"salted-{p.id}"))
    return out
CHECKS = {
    "conv_output_size": D.check_conv_output_size,
    "bilinear_interpolate": D.check_bilinear_interpolate,
    "sampling_positions": D.check_sampling_positions,
    "deform_conv2d": D.check_deform_conv2d,
}


# =============================================================================================
# Helpers
# =============================================================================================

def failure_text(check_name, fn, hidden=False) -> str:
    with pytest.raises(CheckFailure) as info:
        CHECKS[check_name](fn, hidden=hidden)
    return str(info.value)


def catalogue_mistake(check_name, substring):
    """The one Mistake of the check's catalogue whose name contains ``substring``."""
    found = [m for m in EX[check_name].mistakes if substring in m.name]
    assert len(found) == 1, f"{substring!r} names {len(found)} mistakes of {check_name}"
    return found[0]


@functools.cache
def cases_and_references(check_name, hidden, salt=""):
    """The check's cases under a grading salt, each with its reference (computed once per test session)."""
    exercise = EX[check_name]
    with grading_salt(salt):
        cases = exercise.make_cases(hidden)
    return tuple((case, exercise.reference(case.inputs)) for case in cases)


def first_differing_case(check_name, mistake, hidden, salt=""):
    """(1-based case number, case, number of cases) of the first case the mistake changes."""
    exercise = EX[check_name]
    pairs = cases_and_references(check_name, hidden, salt)
    for number, (case, expected) in enumerate(pairs, start=1):
        if not agrees(mistake.compute(case.inputs), expected, exercise.tolerance):
            return number, case, len(pairs)
    return None, None, len(pairs)


def assert_diagnosis(text, check_name, mistake, hidden, salt=""):
    """The failure names ``mistake`` on the first case it changes, with the case line and the tolerance."""
    exercise = EX[check_name]
    number, case, total = first_differing_case(check_name, mistake, hidden, salt)
    assert number is not None, f"no case of {check_name} exposes: {mistake.name}"
    assert f"✗ {check_name} does not match {exercise.reference_name}" in text
    assert f"\n  Case {number} of {total}: {case.description}\n" in text, text
    assert f"\n  Likely cause: {mistake.name}\n" in text, text
    assert f"\n  Hint: {mistake.hint}" in text, text
    if exercise.tolerance.exact:   # whole numbers: yours and the expected value, no tolerance
        assert "First difference at " in text and "expected " in text and "allowed" not in text, text
    elif "Shape: yours" in text:  # a size mistake: the shapes are reported instead of values
        expected = np.shape(exercise.reference(case.inputs))
        assert f"expected {expected}." in text, text
    else:
        assert f"(allowed {exercise.tolerance.describe()})" in text, text
        assert "Largest difference at " in text and "values differ" in text, text


def student_returning(check_name, mistake):
    """A student whose function returns exactly ``mistake.compute`` of the inputs it is given."""
    if check_name == "conv_output_size":
        def fn(size, kernel_size, stride=1, padding=0, dilation=1):
            value = mistake.compute({"settings": [(size, kernel_size, stride, padding, dilation)]})[0]
            return int(value) if value == int(value) else value   # a size is an int (section 1)
    elif check_name == "bilinear_interpolate":
        def fn(a_l, q_y, q_x):
            return mistake.compute({"a_l": a_l, "points": np.array([[q_y, q_x]])})[0]
    elif check_name == "sampling_positions":
        def fn(delta, kernel_size, stride=1, padding=0, dilation=1):
            p = mistake.compute({"delta": delta, "weight": np.zeros((1, 1) + tuple(kernel_size)),
                                 "stride": stride, "padding": padding, "dilation": dilation})
            return p[0], p[1]
    else:
        def fn(a_l, delta, mask, weight, stride=1, padding=0, dilation=1):
            return mistake.compute({"a_l": a_l, "delta": delta, "mask": mask, "weight": weight,
                                    "stride": stride, "padding": padding, "dilation": dilation})
    return fn


def rng_states():
    return np.random.get_state(), random.getstate(), torch.get_rng_state()


@pytest.fixture
def distinctive_global_rng():
    """Global generators in a state no check would restore by seeding; the old state comes back after."""
    saved = rng_states()
    np.random.seed(918273)
    random.seed(918273)
    torch.manual_seed(918273)
    np.random.random(3), random.random(), torch.rand(3)   # and not a freshly seeded state either
    yield
    np.random.set_state(saved[0])
    random.setstate(saved[1])
    torch.set_rng_state(saved[2])


def assert_same_rng_states(before, after):
    (np_before, py_before, torch_before), (np_after, py_after, torch_after) = before, after
    assert np_before[0] == np_after[0] and np.array_equal(np_before[1], np_after[1])
    assert np_before[2:] == np_after[2:]
    assert py_before == py_after
    assert torch.equal(torch_before, torch_after)


def assert_same_inputs(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray):
            assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


def recording(exercise):
    """The exercise, with every case it makes kept in ``made`` for inspection after the check."""
    made = []

    def make_cases(hidden):
        cases = exercise.make_cases(hidden)
        made.extend(cases)
        return cases

    return dataclasses.replace(exercise, make_cases=make_cases), made


def line_of(fn, marker):
    """(line number, stripped text) of the first line of ``fn``'s source that contains ``marker``."""
    lines, start = inspect.getsourcelines(fn)
    for offset, line in enumerate(lines):
        if marker in line:
            return start + offset, line.strip()
    raise AssertionError(f"{marker!r} not in {fn.__name__}")


# =============================================================================================
# 1. Correct alternatives pass
# =============================================================================================

@pytest.mark.parametrize("check_name, fn, hidden, salt", salted(
    [pytest.param(c, f, h, id=f"{f.__name__}-{'hidden' if h else 'visible'}")
     for c, fns in CORRECT.items() for f in fns for h in (False, True) if f is not conv_output_size_float32]))
def test_correct_alternative_passes(check_name, fn, hidden, salt, capsys):
    with grading_salt(salt):
        assert CHECKS[check_name](fn, hidden=hidden) is None
    printed = capsys.readouterr().out
    n_cases = len(EX[check_name].make_cases(hidden))
    assert printed.startswith(f"✓ {check_name} matches {EX[check_name].reference_name} on all {n_cases} cases")
    tolerance = EX[check_name].tolerance
    assert ("(exactly)" if tolerance.exact else f"allowed {tolerance.describe()}") in printed


def test_a_size_that_is_not_an_int_breaks_the_rule():
    """Section 1 asks for an int (np.zeros((N, C, H_out, W_out)) needs one): a whole-number float is rejected
    as such; a fractional one goes on to the comparison, which names true division."""
    text = failure_text("conv_output_size", conv_output_size_float32)
    assert "breaks a rule of the exercise" in text and "Rule: conv_output_size returns an int" in text, text
    assert "Seen: conv_output_size(5, 3) returned 3.0, a float32." in text, text
    text = failure_text("conv_output_size", lambda size, k, stride=1, padding=0, dilation=1:
                        float((size + 2 * padding - dilation * (k - 1) - 1) // stride + 1))
    assert "returned 3.0, a float." in text, text
    text = failure_text("conv_output_size", size_true_division)
    assert "Likely cause: you used true division `/`" in text, text


def conv_output_size_torch(size, kernel_size, stride=1, padding=0, dilation=1):
    span = torch.tensor(size + 2 * padding - dilation * (kernel_size - 1) - 1)
    return torch.div(span, stride, rounding_mode="floor") + 1


def bilinear_torch_scalar(a_l, q_y, q_x):
    """Bilinear interpolation written with torch operations; returns a 0-d torch tensor."""
    image = torch.as_tensor(a_l, dtype=torch.float64)
    H, W = image.shape
    y0, x0 = int(np.floor(q_y)), int(np.floor(q_x))
    total = torch.zeros((), dtype=torch.float64)
    for y, wy in ((y0, 1 - (q_y - y0)), (y0 + 1, q_y - y0)):
        for x, wx in ((x0, 1 - (q_x - x0)), (x0 + 1, q_x - x0)):
            if 0 <= y < H and 0 <= x < W:
                total = total + wy * wx * image[y, x]
    return total


@pytest.mark.parametrize("check_name, fn", [("conv_output_size", conv_output_size_torch),
                                            ("bilinear_interpolate", bilinear_torch_scalar)],
                         ids=["conv_output_size_torch", "bilinear_torch_scalar"])
def test_a_torch_scalar_is_accepted_as_a_number(check_name, fn, capsys):
    CHECKS[check_name](fn, hidden=True)
    assert capsys.readouterr().out.startswith(f"✓ {check_name}")


def test_bilinear_through_grid_sample_is_not_from_scratch():
    with pytest.raises(CheckFailure, match=r"must be written from scratch, but it called "
                                           r"torch\.nn\.functional\.grid_sample"):
        CHECKS["bilinear_interpolate"](bilinear_grid_sample)


def test_float32_alternatives_really_compute_in_float32():
    case = EX["deform_conv2d"].make_cases(False)[3].inputs
    out = deform_float32(case["a_l"], case["delta"], case["mask"], case["weight"],
                         case["stride"], case["padding"], case["dilation"])
    assert out.dtype == np.float32
    expected = EX["deform_conv2d"].reference(case)
    assert 0 < np.abs(out - expected).max() < 1e-4   # float32 rounding is visible, and allowed
    assert bilinear_float32(np.eye(3), 0.3, 0.7).dtype == np.float32


def test_output_size_cases_ignore_the_salt():
    for hidden in (False, True):
        with grading_salt(SECRET):
            salted_cases = EX["conv_output_size"].make_cases(hidden)
        assert [c.inputs for c in salted_cases] == [c.inputs for c in EX["conv_output_size"].make_cases(hidden)]


@pytest.mark.parametrize("check_name", ["bilinear_interpolate", "sampling_positions", "deform_conv2d"])
def test_the_salt_changes_the_random_cases(check_name):
    plain = cases_and_references(check_name, True)
    salted_ = cases_and_references(check_name, True, SECRET)
    assert len(plain) == len(salted_)
    changed = [not np.array_equal(a.inputs["a_l"], b.inputs["a_l"])
               for (a, _), (b, _) in zip(plain, salted_, strict=True)]
    assert any(changed)


def test_hidden_adds_cases_and_keeps_the_visible_ones():
    for name, exercise in EX.items():
        visible, hidden = exercise.make_cases(False), exercise.make_cases(True)
        if name == "conv_output_size":   # one case holding a table of settings
            assert len(visible) == len(hidden) == 1
            settings, more = visible[0].inputs["settings"], hidden[0].inputs["settings"]
            assert len(more) > len(settings) and more[:len(settings)] == settings
            continue
        assert len(hidden) > len(visible)
        for a, b in zip(visible, hidden, strict=False):   # the hidden cases begin with the visible ones
            assert a.description == b.description
            assert_same_inputs(a.inputs, b.inputs)


# =============================================================================================
# 2. Realistic mistakes are rejected and named
# =============================================================================================

@pytest.mark.parametrize("check_name, fn, substring, hidden, salt", salted(
    [pytest.param(*r, h,
                  id=f"{i}-{'hidden' if h else 'visible'}")
     for r, i in zip(REALISTIC, REALISTIC_IDS, strict=True) for h in (False, True)]))
def test_realistic_mistake_is_named(check_name, fn, substring, hidden, salt):
    mistake = catalogue_mistake(check_name, substring)
    with grading_salt(salt):
        text = failure_text(check_name, fn, hidden)
    assert_diagnosis(text, check_name, mistake, hidden, salt)


def test_swapped_arguments_are_named_on_the_hand_checkable_case():
    text = failure_text("bilinear_interpolate", bilinear_swapped_arguments)
    assert "Case 1 of 5:" in text and "q_y and q_x are swapped" in text


_ALL_MISTAKES = [(name, index, mistake) for name, exercise in EX.items()
                 for index, mistake in enumerate(exercise.mistakes)]


def _mistake_param(name, index, mistake, hidden):
    return pytest.param(name, mistake, hidden,
                        id=f"{name}-{index}-{'hidden' if hidden else 'visible'}-{mistake.name[:30].strip()}")


@pytest.mark.parametrize("check_name, mistake, hidden, salt",
                         salted([_mistake_param(n, i, m, h) for n, i, m in _ALL_MISTAKES for h in (False, True)]))
def test_every_catalogued_mistake_is_diagnosed_as_itself(check_name, mistake, hidden, salt):
    with grading_salt(salt):
        text = failure_text(check_name, student_returning(check_name, mistake), hidden)
    assert_diagnosis(text, check_name, mistake, hidden, salt)


@pytest.mark.parametrize("check_name, salt", salted([pytest.param(name, id=name) for name in EX], hidden_last=False))
def test_every_mistake_is_exposed_by_a_visible_case(check_name, salt):
    for mistake in EX[check_name].mistakes:
        number, _, _ = first_differing_case(check_name, mistake, False, salt)
        assert number is not None, f"no visible case exposes: {mistake.name}"


# =============================================================================================
# 3. Stubs, exceptions, missing return, wrong shapes
# =============================================================================================

def _stub(*args, **kwargs):
    # YOUR CODE HERE
    raise NotImplementedError()


def bilinear_no_bounds(a_l, q_y, q_x):
    y0, x0 = int(np.floor(q_y)), int(np.floor(q_x))
    dy, dx = q_y - y0, q_x - x0
    v1 = a_l[y0 + 1, x0] * (1 - dx) + a_l[y0 + 1, x0 + 1] * dx   # marker: y0 + 1 can be H, x0 + 1 can be W
    v0 = a_l[y0, x0] * (1 - dx) + a_l[y0, x0 + 1] * dx
    return v0 * (1 - dy) + v1 * dy


def positions_out_of_range(delta, kernel_size, stride=1, padding=0, dilation=1):
    N, _, H_out, W_out = delta.shape
    K_h, K_w = kernel_size
    p_y = np.zeros((N, K_h * K_w, H_out, W_out))
    p_x = np.zeros_like(p_y)
    for k in range(K_h * K_w):
        p_y[:, k] = delta[:, 2 * k + 2]   # marker: one channel too far
        p_x[:, k] = delta[:, 2 * k + 1]
    return p_y, p_x


deform_no_bounds = deform_with(bilinear_interpolate=bilinear_no_bounds)


def conv_output_size_tuple_kernel(size, kernel_size, stride=1, padding=0, dilation=1):
    return (size + 2 * padding - dilation * (kernel_size[0] - 1) - 1) // stride + 1   # marker


@pytest.mark.parametrize("check_name, fn, error, where", [
    ("conv_output_size", conv_output_size_tuple_kernel, "TypeError", conv_output_size_tuple_kernel),
    ("bilinear_interpolate", bilinear_no_bounds, "IndexError", bilinear_no_bounds),
    ("sampling_positions", positions_out_of_range, "IndexError", positions_out_of_range),
    ("deform_conv2d", deform_no_bounds, "IndexError", bilinear_no_bounds),
], ids=["conv_output_size", "bilinear_interpolate", "sampling_positions", "deform_conv2d"])
def test_an_exception_names_the_student_line(check_name, fn, error, where):
    text = failure_text(check_name, fn)
    lineno, code = line_of(where, "marker")
    assert f"✗ {check_name} raised an error" in text
    assert f"Your function raised {error}: " in text
    assert f"At line {lineno}, in {where.__name__} → {code}" in text, text
    assert "\n  Case " in text
    assert "utils/" not in text and "Traceback" not in text
    if error == "IndexError" and check_name in ("bilinear_interpolate", "deform_conv2d"):
        assert EX[check_name].exception_hints["IndexError"] in text


def _returns_none(*args, **kwargs):
    result = 0.0   # computed, then forgot to return it  # noqa: F841


@pytest.mark.parametrize("check_name", list(CHECKS))
def test_missing_return_is_explained(check_name):
    text = failure_text(check_name, _returns_none)
    assert "got None (did you forget `return`?)" in text, text
    assert "Case 1 of " in text


def positions_kernel_axes_kept(delta, kernel_size, stride=1, padding=0, dilation=1):
    p_y, p_x = positions_vectorized(delta, kernel_size, stride, padding, dilation)
    N, K, H_out, W_out = p_y.shape
    return p_y.reshape(N, *kernel_size, H_out, W_out), p_x.reshape(N, *kernel_size, H_out, W_out)


def deform_channels_last(a_l, delta, mask, weight, stride=1, padding=0, dilation=1):
    return np.transpose(deform_vectorized(a_l, delta, mask, weight, stride, padding, dilation), (0, 2, 3, 1))


@pytest.mark.parametrize("check_name, fn", [("sampling_positions", positions_kernel_axes_kept),
                                            ("deform_conv2d", deform_channels_last)])
def test_wrong_shape_is_reported_with_both_shapes(check_name, fn):
    text = failure_text(check_name, fn)
    case = EX[check_name].make_cases(False)[0]
    expected = np.shape(EX[check_name].reference(case.inputs))
    assert f"Case 1 of {len(EX[check_name].make_cases(False))}: {case.description}" in text
    if check_name == "sampling_positions":   # two results: each one's shape, never their stack's
        assert "breaks a rule of the exercise" in text and "Rule: " + D.deform_conv2d.SHAPE_RULE in text, text
        assert f"Seen: p_y has shape {fn(case.inputs['delta'], (2, 2))[0].shape}, expected {expected[1:]}." in text
        return
    actual = np.shape(EX[check_name].call(fn, copy.deepcopy(case.inputs)))
    assert actual != expected
    assert f"Shape: yours {actual}, expected {expected}." in text, text


def test_positions_returning_one_array_of_wrong_shape():
    def sampling_positions(delta, kernel_size, stride=1, padding=0, dilation=1):
        p_y, p_x = positions_vectorized(delta, kernel_size, stride, padding, dilation)
        return np.concatenate([p_y, p_x], axis=1)   # one array (N, 2K, H_out, W_out)

    text = failure_text("sampling_positions", sampling_positions)
    assert "Shape: yours (1, 8, 3, 3), expected (2, 1, 4, 3, 3)." in text, text


@pytest.mark.parametrize("check_name, fn", [
    ("conv_output_size", lambda size, kernel_size, stride=1, padding=0, dilation=1: (size, size)),
    ("bilinear_interpolate", lambda a_l, q_y, q_x: np.array([q_y, q_x])),
])
def test_a_non_scalar_where_a_number_is_expected_is_rejected(check_name, fn):
    text = failure_text(check_name, fn)
    assert "Case 1 of " in text
    assert "Expected a single number, got " in text and "of shape (2,)" in text, text


def test_passing_something_else_than_a_function():
    # checks accept any student object (some assignments pass dicts), so calling it is what fails
    text = failure_text("deform_conv2d", np.zeros((1, 1, 3, 3)))
    assert "✗ deform_conv2d raised an error" in text
    assert "TypeError: 'numpy.ndarray' object is not callable" in text


# =============================================================================================
# 4. The numpy re-implementations used for mistakes agree with torchvision when correct
# =============================================================================================

@pytest.mark.parametrize("exercise_name", ["sampling_positions", "deform_conv2d"])
def test_deform_conv2d_numpy_equals_torchvision_on_every_case(exercise_name):
    for case in EX[exercise_name].make_cases(True):
        inputs = case.inputs
        inputs = {k: v for k, v in inputs.items() if k != "defaults"}
        expected = C.torchvision_deform_conv2d(**inputs)
        ours = C.deform_conv2d_numpy(**inputs, rule="correct")
        assert ours.shape == expected.shape
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12, err_msg=case.description)


def test_bilinear_numpy_equals_torchvision_bilinear():
    point_sets = [(c.inputs["a_l"], c.inputs["points"]) for c in EX["bilinear_interpolate"].make_cases(True)]
    rng = np.random.default_rng(0)   # a local generator: extra points across and outside the border
    image = rng.normal(size=(5, 6))
    points = np.column_stack([rng.uniform(-2, 7, 200), rng.uniform(-2, 8, 200)])
    points[::3] = np.round(points[::3] * 2) / 2
    point_sets.append((image, points))
    for a_l, pts in point_sets:
        expected = C.torchvision_bilinear(a_l, pts)
        ours = C.bilinear_numpy(a_l[None], pts[:, 0], pts[:, 1], "correct")[0]
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)


def test_positions_numpy_equals_the_seed_loop():
    for case in EX["sampling_positions"].make_cases(True):
        i = case.inputs
        p_y, p_x = positions_seed(i["delta"], i["weight"].shape[2:], i["stride"], i["padding"], i["dilation"])
        np.testing.assert_array_equal(C.positions_numpy(i["delta"], i["weight"].shape[2:], i["stride"],
                                                        i["padding"], i["dilation"]), np.stack([p_y, p_x]))


def test_torchvision_bilinear_by_hand():
    # 2×2 image [[1, 2], [3, 4]]: centre 2.5; (0.25, 0.75): rows 1.75 and 3.75 → 2.25; far outside 0.
    got = C.torchvision_bilinear(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[0.5, 0.5], [0.25, 0.75], [5, 5]]))
    np.testing.assert_allclose(got, [2.5, 2.25, 0.0], atol=1e-15)


# =============================================================================================
# 5. Determinism and the global random generators
# =============================================================================================

@pytest.mark.parametrize("check_name", list(EX))
def test_cases_are_identical_on_every_run(check_name):
    for hidden in (False, True):
        first, second = EX[check_name].make_cases(hidden), EX[check_name].make_cases(hidden)
        assert [c.description for c in first] == [c.description for c in second]
        for a, b in zip(first, second, strict=True):
            assert_same_inputs(a.inputs, b.inputs)


@pytest.mark.parametrize("check_name, fn", [("bilinear_interpolate", bilinear_wrap),
                                            ("deform_conv2d", deform_mask_ignored),
                                            ("sampling_positions", positions_no_padding)])
def test_failure_text_is_identical_on_every_run(check_name, fn):
    assert failure_text(check_name, fn) == failure_text(check_name, fn)
    assert failure_text(check_name, fn, hidden=True) == failure_text(check_name, fn, hidden=True)


@pytest.mark.parametrize("check_name, good, bad", [
    ("conv_output_size", conv_output_size_seed, size_no_dilation),
    ("bilinear_interpolate", bilinear_seed, bilinear_clamp),
    ("sampling_positions", positions_seed, positions_swap_yx),
    ("deform_conv2d", deform_vectorized, deform_mask_ignored),
])
def test_global_random_state_is_untouched(check_name, good, bad, distinctive_global_rng, capsys):
    before = rng_states()
    CHECKS[check_name](good)
    CHECKS[check_name](good, hidden=True)
    assert_same_rng_states(before, rng_states())
    with pytest.raises(CheckFailure):
        CHECKS[check_name](bad, hidden=True)
    with pytest.raises(NotImplementedYet):
        CHECKS[check_name](_stub)
    assert_same_rng_states(before, rng_states())


# =============================================================================================
# 6. Inputs are not mutated
# =============================================================================================

@pytest.mark.parametrize("check_name, good, bad", [
    ("conv_output_size", conv_output_size_seed, size_padding_once),
    ("bilinear_interpolate", bilinear_seed, bilinear_corner_mix),
    ("sampling_positions", positions_seed, positions_no_dilation),
    ("deform_conv2d", deform_seed, deform_with(bilinear_interpolate=bilinear_ceil)),
])
def test_the_check_does_not_mutate_case_inputs(check_name, good, bad, capsys):
    for fn, fails in ((good, False), (bad, True)):
        exercise, made = recording(EX[check_name])
        if fails:   # the mistakes are evaluated on the case inputs too
            with pytest.raises(CheckFailure):
                run_check(exercise, fn, hidden=True)
        else:
            run_check(exercise, fn, hidden=True)
        fresh = EX[check_name].make_cases(True)
        assert made
        for case in made:
            match = fresh[[c.description for c in fresh].index(case.description)]
            assert_same_inputs(case.inputs, match.inputs)


def deform_then_vandalize(a_l, delta, mask, weight, stride=1, padding=0, dilation=1):
    out = deform_vectorized(a_l, delta, mask, weight, stride, padding, dilation)
    a_l[...] = 0.0
    delta += 100.0
    mask *= -1.0
    weight[...] = np.nan
    return out


def deform_mask_ignored_then_vandalize(a_l, delta, mask, weight, stride=1, padding=0, dilation=1):
    out = deform_mask_ignored(a_l, delta, mask, weight, stride, padding, dilation)
    a_l[...] = 0.0
    mask[...] = 1.0   # would make "mask ignored" the correct answer if the check reused this array
    return out


def positions_then_vandalize(delta, kernel_size, stride=1, padding=0, dilation=1):
    p_y, p_x = positions_vectorized(delta, kernel_size, stride, padding, dilation)
    delta[...] = 0.0
    return p_y, p_x


def bilinear_then_vandalize(a_l, q_y, q_x):
    value = bilinear_seed(a_l, q_y, q_x)
    a_l[0, 0] += 1.0   # a "scratch" write into the caller's image
    return value


@pytest.mark.parametrize("check_name, fn, seen", [
    ("deform_conv2d", deform_then_vandalize, "a_l was changed in place"),
    ("deform_conv2d", deform_mask_ignored_then_vandalize, "a_l was changed in place"),
    ("sampling_positions", positions_then_vandalize, "delta was changed in place"),
    ("bilinear_interpolate", bilinear_then_vandalize, "a_l was changed in place"),
])
def test_a_student_modifying_inputs_breaks_the_notebooks_rule(check_name, fn, seen):
    """The notebook's introduction forbids modifying the arrays a function is given: the check says so (and a
    modified array can never change the reference: each case's inputs are copies)."""
    text = failure_text(check_name, fn)
    assert f"✗ {check_name} breaks a rule of the exercise" in text, text
    assert "must not modify the arrays they are given" in text and f"Seen: {seen}." in text, text
    assert "\n  Case " in text


def test_a_copy_then_modified_is_fine(capsys):
    def bilinear_on_a_copy(a_l, q_y, q_x):
        image = a_l.copy()
        image[image == 0] = 0.0   # writes into its own copy only
        return bilinear_seed(image, q_y, q_x)

    D.check_bilinear_interpolate(bilinear_on_a_copy, hidden=True)
    assert capsys.readouterr().out.startswith("✓ bilinear_interpolate")


# =============================================================================================
# 7. The visible cases contain what they promise
# =============================================================================================

def _positions(inputs):
    """(p_y, p_x) of every sample, from the seed loop (independent of utils)."""
    return positions_seed(inputs["delta"], inputs["weight"].shape[2:], inputs["stride"], inputs["padding"],
                          inputs["dilation"])


@SALTS
@pytest.mark.parametrize("exercise_name", ["sampling_positions", "deform_conv2d"])
def test_visible_deform_cases_cover_the_lecture(exercise_name, salt):
    cases = [c.inputs for c, _ in cases_and_references(exercise_name, False, salt)]
    shapes = [(i["a_l"].shape, i["weight"].shape) for i in cases]
    assert any(a[0] >= 2 for a, w in shapes), "batch ≥ 2"
    assert any(a[1] != w[0] for a, w in shapes), "C_in ≠ C_out"
    assert any(w[2] != w[3] for a, w in shapes), "a non-square kernel"
    assert any(i["stride"] == 2 for i in cases), "stride 2"
    assert any(i["padding"] >= 1 for i in cases), "padding ≥ 1"
    assert any(i["dilation"] == 2 for i in cases), "dilation 2"
    assert any(not np.all(i["mask"] == 1) for i in cases), "a mask that is not all ones"
    assert any(np.all(i["mask"] == 1) for i in cases), "a mask of ones"
    assert any(np.all(i["delta"] == 0) for i in cases), "an ordinary convolution"
    negative_fractional = exact_integer = outside = partly_outside = False
    for i in cases:
        H, W = i["a_l"].shape[2:]
        p_y, p_x = _positions(i)
        negative_fractional |= bool(np.any(((p_y < 0) & (p_y != np.floor(p_y))) |
                                           ((p_x < 0) & (p_x != np.floor(p_x)))))
        nonzero = np.any(i["delta"] != 0)
        exact_integer |= bool(nonzero and np.any((p_y == np.round(p_y)) & (p_x == np.round(p_x))
                                                 & (i["delta"][:, 0::2] != 0)))
        # every corner outside: the sample is exactly zero
        outside |= bool(np.any((p_y <= -1) | (p_y >= H) | (p_x <= -1) | (p_x >= W)))
        # some corners inside, some outside
        partly_outside |= bool(np.any(((p_y > -1) & (p_y < 0)) | ((p_y > H - 1) & (p_y < H))))
    assert negative_fractional, "sampling positions < 0 with a fractional part"
    assert exact_integer, "exact integer positions reached through non-zero offsets"
    assert outside, "positions entirely outside the image"
    assert partly_outside, "positions straddling the border"


@SALTS
def test_visible_fractional_deform_cases_include_exact_integer_offsets(salt):
    """The source promises 'a few exact integer offsets in every random case'."""
    for case, _ in cases_and_references("deform_conv2d", False, salt):
        d = case.inputs["delta"]
        if np.any(d != 0):
            assert np.any((d == np.round(d)) & (d != 0)), case.description
            assert np.any(d != np.round(d)) or "integer offsets" in case.description, case.description


@SALTS
@pytest.mark.parametrize("exercise_name", ["sampling_positions", "deform_conv2d"])
def test_deform_case_descriptions_match_their_inputs(exercise_name, salt):
    for case, _ in cases_and_references(exercise_name, True, salt):
        i = case.inputs
        N, C_in, H, W = i["a_l"].shape
        C_out, _, K_h, K_w = i["weight"].shape
        settings = ("stride, padding and dilation left at their defaults (not passed)" if i["defaults"] else
                    f"stride={i['stride']}, padding={i['padding']}, dilation={i['dilation']}")
        assert case.description.startswith(
            f"N={N}, C_in={C_in}, C_out={C_out}, {H}×{W} input, {K_h}×{K_w} kernel, {settings}, "), case.description
        if i["defaults"]:
            assert (i["stride"], i["padding"], i["dilation"]) == (1, 0, 1)
        H_out = conv_output_size_seed(H, K_h, i["stride"], i["padding"], i["dilation"])
        W_out = conv_output_size_seed(W, K_w, i["stride"], i["padding"], i["dilation"])
        assert i["delta"].shape == (N, 2 * K_h * K_w, H_out, W_out)
        assert i["mask"].shape == (N, K_h * K_w, H_out, W_out)
        assert np.all((i["mask"] >= 0) & (i["mask"] <= 1))
        assert ("mask of ones" in case.description) == bool(np.all(i["mask"] == 1))
        if "zero offsets" in case.description:
            assert np.all(i["delta"] == 0)
        if "integer offsets" in case.description:
            assert np.all(i["delta"] == np.round(i["delta"])) and np.any(i["delta"] != 0)
        if "some outside the image" in case.description:
            p_y, p_x = _positions(i)
            assert np.any((p_y <= -1) | (p_y >= H) | (p_x <= -1) | (p_x >= W))


def test_first_deform_case_is_hand_checkable():
    case = EX["deform_conv2d"].make_cases(False)[0].inputs
    assert np.array_equal(case["a_l"], np.arange(16.0).reshape(1, 1, 4, 4))
    assert np.array_equal(case["weight"], np.array([[[[1.0, 0.0], [0.0, -1.0]]]]))
    # zero offsets: a[y, x] − a[y+1, x+1] = −5 everywhere
    np.testing.assert_allclose(EX["deform_conv2d"].reference(case), np.full((1, 1, 3, 3), -5.0), atol=1e-12)


@SALTS
def test_visible_bilinear_cases_contain_what_they_promise(salt):
    pairs = cases_and_references("bilinear_interpolate", False, salt)
    cases = [case for case, _ in pairs]
    by_text = {c.description: (c.inputs, expected) for c, expected in pairs}
    first = cases[0].inputs
    assert np.array_equal(first["a_l"], [[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_allclose(EX["bilinear_interpolate"].reference(first), [2.5, 2.25, 1.5, 3.5], atol=1e-12)
    q = first["points"]
    assert np.any(np.floor(q[:, 0]) != np.floor(q[:, 1]))   # so that swapping q_y and q_x shows
    for text, (inputs, expected) in by_text.items():
        q, (H, W) = inputs["points"], inputs["a_l"].shape
        if "exact integer positions" in text:
            assert np.all(q == np.round(q))
            assert {(0, 0), (H - 1, W - 1)} <= {tuple(p) for p in q.astype(int)}
        if "negative fractional" in text:
            assert np.any((q < 0) & (q != np.floor(q)))
        if "fractional points inside" in text:
            assert np.all((q >= 0) & (q <= [H - 1, W - 1])) and np.all(q != np.round(q))
        if "must give exactly 0" in text:
            corners_outside = (q[:, 0] <= -1) | (q[:, 0] >= H) | (q[:, 1] <= -1) | (q[:, 1] >= W)
            assert np.all(corners_outside)
            assert np.all(expected == 0.0)


def test_output_size_cases_cover_stride_padding_dilation():
    given = EX["conv_output_size"].make_cases(False)[0].inputs["settings"]
    assert any(len(s) == 2 for s in given), "a call that leaves stride, padding and dilation at their defaults"
    settings = np.array([D.conv_output_size.full_setting(s) for s in given])
    size, kernel, stride, padding, dilation = settings.T
    assert np.any(stride >= 2) and np.any(padding >= 1) and np.any(dilation >= 2)
    assert np.any((stride >= 2) & (padding >= 1) & (dilation >= 2))
    # a setting where true division leaves a fraction, so `/` is caught
    assert np.any((size + 2 * padding - dilation * (kernel - 1) - 1) % stride != 0)


# =============================================================================================
# The instructor solution and the sample submissions
# =============================================================================================

@pytest.mark.parametrize("sample", mistakes_for("deformable_conv"), ids=lambda m: m.student)
def test_sample_mistake_applies_and_is_diagnosed(sample):
    solutions = NotebookSolutions(DEFORMABLE_NOTEBOOK, imports=True)
    namespace = solutions.run(solutions.apply(sample))   # each edit found exactly once, inside the solution
    text = failure_text(sample.cell, namespace[sample.cell])
    assert sample.diagnosis in text, text
    assert "Likely cause: " in text


# =============================================================================================
# Issue 15: declared input space, rules, and no wrong cause for mistakes outside the catalogue
# =============================================================================================

def size_default_stride_2(size, kernel_size, stride=2, padding=0, dilation=1):
    return conv_output_size_seed(size, kernel_size, stride, padding, dilation)


def size_ceil_division(size, kernel_size, stride=1, padding=0, dilation=1):
    return -(-(size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride) + 1


def bilinear_row_0_outside(a_l, q_y, q_x):
    """Bounds written 0 < y instead of 0 <= y: row 0 counts as outside."""
    H, W = a_l.shape
    y0, x0 = int(np.floor(q_y)), int(np.floor(q_x))

    def pixel(y, x):
        return a_l[y, x] if 0 < y < H and 0 <= x < W else 0.0
    dy, dx = q_y - y0, q_x - x0
    top = pixel(y0, x0) * (1 - dx) + pixel(y0, x0 + 1) * dx
    bottom = pixel(y0 + 1, x0) * (1 - dx) + pixel(y0 + 1, x0 + 1) * dx
    return float(top * (1 - dy) + bottom * dy)


def bilinear_round_corner(a_l, q_y, q_x):
    """round() for the first corner instead of floor."""
    H, W = a_l.shape
    y0, x0 = int(round(q_y)), int(round(q_x))

    def pixel(y, x):
        return a_l[y, x] if 0 <= y < H and 0 <= x < W else 0.0
    dy, dx = q_y - y0, q_x - x0
    top = pixel(y0, x0) * (1 - dx) + pixel(y0, x0 + 1) * dx
    bottom = pixel(y0 + 1, x0) * (1 - dx) + pixel(y0 + 1, x0 + 1) * dx
    return float(top * (1 - dy) + bottom * dy)


def positions_taps_column_by_column(delta, kernel_size, stride=1, padding=0, dilation=1):
    """Tap k numbered column by column (k = kw·K_h + kh) when reading delta."""
    N, _, H_out, W_out = delta.shape
    K_h, K_w = kernel_size
    p_y = np.zeros((N, K_h * K_w, H_out, W_out))
    p_x = np.zeros_like(p_y)
    for kh in range(K_h):
        for kw in range(K_w):
            k = kw * K_h + kh
            p_y[:, kh * K_w + kw] = np.arange(H_out)[:, None] * stride - padding + kh * dilation + delta[:, 2 * k]
            p_x[:, kh * K_w + kw] = np.arange(W_out)[None, :] * stride - padding + kw * dilation + delta[:, 2 * k + 1]
    return p_y, p_x


def positions_stride_for_dilation(delta, kernel_size, stride=1, padding=0, dilation=1):
    return positions_seed(delta, kernel_size, dilation, padding, stride)


def positions_padding_added(delta, kernel_size, stride=1, padding=0, dilation=1):
    p_y, p_x = positions_seed(delta, kernel_size, stride, 0, dilation)
    return p_y + padding, p_x + padding


def deform_first_input_channel_only(a_l, delta, mask, weight, stride=1, padding=0, dilation=1):
    return deform_seed(a_l[:, :1], delta, mask, weight[:, :1], stride, padding, dilation)


def deform_true_convolution(a_l, delta, mask, weight, stride=1, padding=0, dilation=1):
    """The kernel flipped (a mathematician's convolution, not cross-correlation)."""
    return deform_seed(a_l, delta, mask, weight[:, :, ::-1, ::-1], stride, padding, dilation)


def deform_mask_taps_column_by_column(a_l, delta, mask, weight, stride=1, padding=0, dilation=1):
    K_h, K_w = weight.shape[2:]
    N, K, H_out, W_out = mask.shape
    swapped = mask.reshape(N, K_w, K_h, H_out, W_out).transpose(0, 2, 1, 3, 4).reshape(N, K, H_out, W_out)
    return deform_seed(a_l, delta, swapped, weight, stride, padding, dilation)


def deform_default_padding_1(a_l, delta, mask, weight, stride=1, padding=1, dilation=1):
    return deform_seed(a_l, delta, mask, weight, stride, padding, dilation)


OFF_CATALOGUE = [
    ("conv_output_size", size_default_stride_2, "First difference at conv_output_size(5, 3): yours 2, expected 3."),
    ("conv_output_size", size_ceil_division, "conv_output_size(6, 2, 2, 1, 2): yours 4, expected 3."),
    ("bilinear_interpolate", bilinear_row_0_outside, "Case 1 of"),
    ("bilinear_interpolate", bilinear_round_corner, "query (q_y=0.25, q_x=0.75)"),
    ("sampling_positions", positions_taps_column_by_column, "In p_y: at 6 of 9 tap k indices."),
    ("sampling_positions", positions_stride_for_dilation, "stride=2, padding=2, dilation=1"),
    ("sampling_positions", positions_padding_added, "In p_y: yours = expected +2: a constant offset."),
    ("deform_conv2d", deform_first_input_channel_only, "C_in=2"),
    ("deform_conv2d", deform_true_convolution, "Every value has the wrong sign (yours = −expected)."),
    ("deform_conv2d", deform_mask_taps_column_by_column, "random mask"),
    ("deform_conv2d", deform_default_padding_1, "left at their defaults (not passed)"),
]


@pytest.mark.parametrize("check_name, fn, words", OFF_CATALOGUE, ids=[f.__name__ for _, f, _ in OFF_CATALOGUE])
def test_an_off_catalogue_mistake_is_caught_visibly_and_given_no_wrong_cause(check_name, fn, words):
    text = failure_text(check_name, fn)   # the visible cases catch it: the student sees it before grading
    assert words in text, text
    assert "Likely cause" not in text, text
    assert f"See the notebook section “{EX[check_name].section}”." in text


def test_a_positions_shape_is_reported_per_part():
    def sampling_positions(delta, kernel_size, stride=1, padding=0, dilation=1):
        p_y, p_x = positions_vectorized(delta, kernel_size, stride, padding, dilation)
        return p_y, p_x[:, :, :-1]
    text = failure_text("sampling_positions", sampling_positions)
    assert "Seen: p_x has shape (1, 4, 2, 3), expected (1, 4, 3, 3)." in text, text


@pytest.mark.parametrize("check_name", list(CHECKS))
def test_no_hint_states_the_sampling_formula_or_code(check_name):
    """Beyond the contract's 7-token rule: neither the sampling formula nor the output-size formula nor code."""
    exercise = EX[check_name]
    texts = [exercise.hint, exercise.reference_name, *exercise.exception_hints.values(),
             *(m.name for m in exercise.mistakes), *(m.hint for m in exercise.mistakes)]
    for text in texts:
        for formula in ("h_out·stride − padding", "stride − padding +", "kh·dilation + Δ", "− 1) // stride",
                        "delta[n, 2", "* m_k * sample", "weight[c_out, c_in", "np.floor", "0 <= y < H"):
            assert formula not in text, f"{check_name}: {text!r} holds {formula!r}"


def test_the_hidden_zero_mask_case_has_taps_switched_off():
    zeros = [c for c in EX["deform_conv2d"].make_cases(True) if "some zeros" in c.description]
    assert len(zeros) == 1 and np.any(zeros[0].inputs["mask"] == 0)
    assert np.any((zeros[0].inputs["mask"] > 0) & (zeros[0].inputs["mask"] < 1))
