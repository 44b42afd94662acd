"""The check core on toy exercises: the generic diagnosis (utils.checks.characterise), the rules a call enforces
(utils.checks.rules), the wording of a comparison, and when a catalogued mistake may be named."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from utils.checks.characterise import Layout, describe_difference, describe_shape
from utils.checks.compare import DEFAULT_TOLERANCE, EXACT, compare
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, Produced, evaluate, run_check
from utils.checks.feedback import CheckFailure, Report
from utils.checks.rules import RuleBroken, kept_unchanged, require_dtype, require_shape

RNG = np.random.default_rng(0)
SEQ = RNG.normal(size=(2, 5, 3))       # (batch, time step, unit)
SEQ_LAYOUT = Layout(axes=("batch", "time step", "unit"))


def difference(actual, expected=SEQ, layout=SEQ_LAYOUT, regions=None) -> str:
    return " ".join(describe_difference(actual, expected, DEFAULT_TOLERANCE, layout, regions)).lower()


# --------------------------------------------------------------------------- what kind of difference

@pytest.mark.parametrize("shape, axes, factor, meaning", [
    ((2, 5, 3), ("batch", "time step", "unit"), 0.5, "1/2"),
    ((4, 8), ("query", "key dimension"), 1 / np.sqrt(8), "1/√8"),
    ((2, 5, 3), ("batch", "time step", "unit"), 3.0, "3, the number of units"),
    ((2, 5, 3), ("batch", "time step", "unit"), 1.7, "")])
def test_a_constant_factor_is_named_with_its_value_and_meaning(shape, axes, factor, meaning):
    expected = RNG.normal(size=shape)
    text = difference(expected * factor, expected, Layout(axes=axes))
    assert "a constant factor" in text, text
    assert (f"(= {meaning})" in text) if meaning else "(=" not in text, text


def test_sign_offset_zeros_and_rounding_are_named():
    assert "wrong sign" in difference(-SEQ)
    assert "constant offset" in difference(SEQ + 0.25) and "+0.25" in difference(SEQ + 0.25)
    assert "all your values are 0" in difference(np.zeros_like(SEQ))
    assert "whole numbers" in difference(np.round(SEQ * 3))


def test_axes_in_another_order_a_shift_and_a_reversal_are_named():
    square = RNG.normal(size=(4, 4))
    text = " ".join(describe_difference(square.T, square, DEFAULT_TOLERANCE, Layout(axes=("query", "key"))))
    assert "query and key axes swapped" in text, text
    shifted = SEQ.copy()
    shifted[:, 1:] = SEQ[:, :-1]
    assert "shifted by one time step" in difference(shifted), difference(shifted)
    assert "reverse time step order" in difference(SEQ[:, ::-1])


def test_where_it_differs_is_localised_along_named_axes():
    late = SEQ.copy()
    late[:, 3:] += 1.0
    assert "from time step 3 on" in difference(late), difference(late)
    last = SEQ.copy()
    last[1] *= 2
    text = difference(last)
    assert "only at batch 1" in text and "× 2" in text, text
    unit = SEQ.copy()
    unit[..., 0] = 0
    assert "only at unit 0" in difference(unit), difference(unit)


def test_parts_say_which_result_differs_and_when_several_things_are_wrong():
    hc = RNG.normal(size=(2, 3, 4))
    layout = Layout(axes=("batch", "unit"), parts=("h", "c"))
    only_c = hc.copy()
    only_c[1] *= 2
    text = " ".join(describe_difference(only_c, hc, DEFAULT_TOLERANCE, layout))
    assert "Only c differs; h matches." in text and "In c:" in text and "× 2" in text, text
    both = hc.copy()
    both[0] *= -1
    both[1, 2] += 1.0
    text = " ".join(describe_difference(both, hc, DEFAULT_TOLERANCE, layout))
    assert "More than one thing is wrong" in text and "In h: every value has the wrong sign" in text, text
    assert "In c: only the last batch (2); yours = expected +1: a constant offset." in text, text


def test_a_difference_confined_to_a_named_region_is_reported():
    mask = np.zeros((4, 4), dtype=bool)
    mask[np.triu_indices(4, 1)] = True
    expected = RNG.normal(size=(4, 4))
    actual = np.where(mask, expected + 1, expected)
    assert "all the differences are in masked positions; the rest matches" in " ".join(
        describe_difference(actual, expected, DEFAULT_TOLERANCE, regions={"masked positions": mask})).lower()
    actual = np.where(~mask, expected + 1, expected)
    assert "nothing differs in masked positions." in " ".join(
        describe_difference(actual, expected, DEFAULT_TOLERANCE, regions={"masked positions": mask})).lower()


def test_nan_and_inf_say_where_they_start():
    broken = SEQ.copy()
    broken[:, 2:] = np.nan
    text = difference(broken)
    assert "nan or infinite values (18 of 30): from time step 2 on" in text, text


def test_a_difference_with_no_pattern_gets_no_invented_one():
    noisy = SEQ + RNG.normal(size=SEQ.shape)
    assert difference(noisy) == ""


# --------------------------------------------------------------------------- shapes

def test_shape_differences_are_described():
    layout = Layout(axes=("batch", "time step", "unit"))
    assert "axes are in another order" in describe_shape((5, 2, 3), (2, 5, 3), layout)[0]
    assert "extra axis of length 1" in describe_shape((2, 1, 5, 3), (2, 5, 3), layout)[0]
    assert "missing axis of length 1" in describe_shape((2, 5), (2, 1, 5))[0]
    assert "Along time step: yours has 4, expected 5 (one too few" in describe_shape((2, 4, 3), (2, 5, 3), layout)[0]
    norms = np.array([0.5, 0.25, 0.125, 0.0625])
    lines = describe_shape((3,), (4,), None, np.delete(norms, 2), norms)
    assert lines[-1] == "Entry 2 (expected 0.125) is missing; the others match.", lines
    lines = describe_shape((5,), (4,), None, np.insert(norms, 1, 9.0), norms)
    assert lines[-1] == "Your entry 1 (9) is extra; the others match.", lines


# --------------------------------------------------------------------------- the comparison's wording

def test_whole_number_answers_read_as_whole_numbers_without_a_tolerance():
    mismatch, _ = compare(np.array([7.0, 8, 9]), np.array([7.0, 8, 10]), EXACT)
    text = " ".join(mismatch.details)
    assert "Shape OK" not in text and "allowed" not in text and ".0" not in text, text
    assert "yours 9, expected 10" in text, text
    mismatch, _ = compare(np.float64(123456.0), np.float64(123457.0), EXACT)
    assert mismatch.details == ["Yours 123456, expected 123457."], mismatch.details


def test_a_float_answer_states_its_tolerance_and_shape_only_where_it_helps():
    mismatch, _ = compare(np.zeros((2, 3)), np.ones((2, 3)), DEFAULT_TOLERANCE)
    assert mismatch.details[0].startswith("Shape OK (2, 3). 6 of 6 values differ."), mismatch.details
    assert f"(allowed {DEFAULT_TOLERANCE.describe()})" in mismatch.details[1]
    mismatch, _ = compare(np.zeros(7), np.ones(7), DEFAULT_TOLERANCE)
    assert "Shape OK" not in " ".join(mismatch.details)
    mismatch, _ = compare(np.zeros(4), np.ones(5), DEFAULT_TOLERANCE)
    assert mismatch.details == ["Yours has 4 values, expected 5."]


def test_values_can_be_shown_as_characters_and_parts_by_name():
    mismatch, _ = compare(np.array([97.0, 98.0]), np.array([97.0, 99.0]), EXACT,
                          describe_value=lambda v: repr(chr(int(v))))
    assert "yours 'b', expected 'c'" in " ".join(mismatch.details), mismatch.details
    mismatch, _ = compare(np.zeros((2, 3, 4)), np.ones((2, 3, 5)), DEFAULT_TOLERANCE, parts=("h", "c"))
    assert mismatch.details == ["Shape of each of h, c: yours (3, 4), expected (3, 5)."]


# --------------------------------------------------------------------------- rules a call enforces

def test_kept_unchanged_sees_in_place_changes_of_arrays_tensors_models_and_optimizers():
    x, t = np.ones(3), torch.ones(3)
    with pytest.raises(RuleBroken, match="x was changed in place"):
        with kept_unchanged({"x": x}, "do not modify x"):
            x += 1
    with pytest.raises(RuleBroken, match=r"inputs\['t'\] was changed in place"):
        with kept_unchanged({"inputs": {"t": t}}, "do not modify the inputs"):
            t.mul_(2)
    with pytest.raises(RuleBroken, match="x.requires_grad was switched on"):
        with kept_unchanged({"x": t}, "leave x as it is"):
            t.requires_grad_()
    with torch.random.fork_rng():
        model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    with pytest.raises(RuleBroken, match="model was left in eval mode"):
        with kept_unchanged({"model": model}, "leave the caller's model in its mode"):
            model.eval()
    model.train()
    with pytest.raises(RuleBroken, match=r"model's 1\.running_mean"):
        with kept_unchanged({"model": model}, "do not update the running statistics"):
            model(torch.randn(4, 2, generator=torch.Generator().manual_seed(0)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(RuleBroken, match="optimizer's settings"):
        with kept_unchanged({"optimizer": optimizer}, "do not change the optimizer"):
            optimizer.param_groups[0]["lr"] = 0.2


def test_kept_unchanged_accepts_code_that_only_reads_even_with_nans():
    x = torch.tensor([1.0, float("nan")])
    with torch.random.fork_rng():
        model = torch.nn.Linear(2, 1)
    with kept_unchanged({"x": x, "model": model, "list": [np.zeros(2)]}, "read only"):
        model(x.nan_to_num())
        _ = x * 2


def test_dtype_and_shape_rules():
    assert require_dtype(torch.tensor([1, 2]), "integer", "targets", "r") is not None
    with pytest.raises(RuleBroken, match="targets has dtype float32"):
        require_dtype(torch.tensor([1.0]), "integer", "targets", "targets are class indices")
    with pytest.raises(RuleBroken, match="result has dtype float32"):
        require_dtype(np.zeros(2, dtype=np.float32), "float64", "result", "float64 is asked for")
    require_dtype(np.zeros(2), "float64", "result", "r")
    require_dtype(None, "integer", "x", "r")   # not an array: the comparison names its type
    with pytest.raises(RuleBroken, match=r"dW has shape \(4, 3\), expected \(3, 4\)"):
        require_shape(np.zeros((4, 3)), (3, 4), "dW", "dW has the shape of W")


# --------------------------------------------------------------------------- a named cause is the cause

def toy_exercise(mistakes, call=lambda fn, inputs: fn(inputs["x"])) -> Exercise:
    def cases(hidden):
        return [Case("all positive", {"x": np.array([1.0, 2.0, 3.0])}),
                Case("mixed signs", {"x": np.array([-1.0, 2.0, -3.0])})]
    return Exercise(function="double", reference_name="2·x", make_cases=cases, reference=lambda i: 2 * i["x"],
                    call=call, mistakes=mistakes, hint="the general hint", section="1. Doubling")


def run(exercise, fn) -> Report:
    cases = exercise.make_cases(True)
    return evaluate(exercise, cases, lambda index, case, label: Produced(value=fn(case.inputs["x"])))


def test_a_mistake_that_explains_only_the_first_failing_case_is_not_named():
    times_three = Mistake("tripled", "double, do not triple", lambda i: 3 * i["x"])
    exercise = toy_exercise([times_three])
    # 3·|x| equals 3·x where x > 0 (case 1) but not on case 2: not the tripling mistake
    report = run(exercise, lambda x: 3 * np.abs(x))
    assert isinstance(report, Report) and report.likely_cause == "" and report.hint == "the general hint", report
    assert any("constant factor" in line for line in report.pattern), report.pattern
    report = run(exercise, lambda x: 3 * x)
    assert report.likely_cause == "tripled" and report.hint == "double, do not triple"
    assert "See the notebook section “1. Doubling”." in report.text()


def test_a_broken_rule_is_reported_with_the_rule():
    def call(fn, inputs):
        with kept_unchanged({"x": inputs["x"]}, "do not modify x in place"):
            return fn(inputs["x"])

    def in_place(x):
        x *= 2
        return x
    with pytest.raises(CheckFailure) as info:
        run_check(toy_exercise([], call), in_place)
    text = str(info.value)
    assert "double breaks a rule of the exercise" in text and "Rule: do not modify x in place." in text, text
    assert "Seen: x was changed in place." in text, text
