"""Hidden inputs per student: derived from the course secret and the student, identical on regrading."""
import pickle

import numpy as np
import pytest

from utils.grading.trusted import HiddenCases, cell_salt

SECRET = "0123456789abcdef0123456789abcdef"


def _arrays(value):
    """Every array in a pickled inputs structure, flattened, in order."""
    if isinstance(value, dict):
        return [a for v in value.values() for a in _arrays(v)]
    if isinstance(value, (list, tuple)):
        return [a for v in value for a in _arrays(v)]
    array = np.asarray(value) if not isinstance(value, str) else None
    return [array.ravel()] if array is not None and array.dtype.kind in "fiu" else []


def test_salts_differ_per_student_and_cell_and_repeat_for_the_same_ones():
    salts = {(s, c): cell_salt(SECRET, s, c) for s in ("alice", "bob") for c in ("test_a", "test_b")}
    assert len(set(salts.values())) == 4
    assert cell_salt(SECRET, "alice", "test_a") == salts[("alice", "test_a")]
    assert cell_salt("another secret", "alice", "test_a") != salts[("alice", "test_a")]
    assert SECRET not in salts[("alice", "test_a")]
    # no ambiguity between (student, cell) splits that would concatenate to the same text
    assert cell_salt(SECRET, "ab", "c") != cell_salt(SECRET, "a", "bc")


@pytest.mark.parametrize("check", ["check_deform_conv2d", "check_conv2d_forward", "check_lstm_cell",
                                   "check_scaled_dot_product_attention"])
def test_two_students_get_different_hidden_inputs_and_regrading_repeats_them(check):
    cases = HiddenCases()
    alice = pickle.loads(cases.pickled_inputs([check], cell_salt(SECRET, "alice", "test_x")))
    bob = pickle.loads(cases.pickled_inputs([check], cell_salt(SECRET, "bob", "test_x")))
    again = pickle.loads(HiddenCases().pickled_inputs([check], cell_salt(SECRET, "alice", "test_x")))
    alice_arrays, bob_arrays = _arrays(alice), _arrays(bob)
    assert [a.tolist() for a in _arrays(again)] == [a.tolist() for a in alice_arrays]
    # the visible cases are shared by design; the hidden ones (drawn with the salt) must differ
    pairs = zip(alice_arrays, bob_arrays, strict=False)   # the same cases, unless a shape was drawn differently
    differing = sum(not (a.shape == b.shape and np.array_equal(a, b)) for a, b in pairs)
    assert differing > 0 and len(alice_arrays) > 0


def test_the_case_cache_does_not_grow_with_the_class():
    cases = HiddenCases(keep=3)
    for student in range(10):
        cases.cases("check_conv_output_size", cell_salt(SECRET, f"s{student}", "test_size"))
    assert len(cases._cases) == 3
