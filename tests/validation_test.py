"""Tests of `tf_metaloss.validation`, the one home of argument checks."""

import numpy as np
import pytest

from tf_metaloss import validation


def test_invalid_uses_the_library_format():
    with pytest.raises(ValueError) as error:
        validation.invalid("steps", -1, "an integer >= 0", fix="Pass 0 to turn it off")
    assert str(error.value) == (
        "Invalid value for argument `steps`. Expected an integer >= 0. "
        "Received: steps=-1. Pass 0 to turn it off"
    )


@pytest.mark.parametrize("value", [0, 3, np.int64(2)])
def test_check_int_accepts_integers(value):
    assert validation.check_int("n", value, minimum=0) == int(value)
    assert type(validation.check_int("n", value)) is int


@pytest.mark.parametrize("value", [True, 1.0, "1", -1, None])
def test_check_int_rejects(value):
    with pytest.raises(ValueError, match=r"Invalid value for argument `n`\. Expected an integer"):
        validation.check_int("n", value, minimum=0)


def test_check_int_allow_none_and_custom_expectation():
    assert validation.check_int("n", None, allow_none=True) is None
    with pytest.raises(ValueError, match="Expected 1 or 2"):
        validation.check_int("n", 0, minimum=1, expected="1 or 2")
    with pytest.raises(ValueError, match="Expected a positive integer or None"):
        validation.check_positive_int("n", 0, allow_none=True)


def test_numbers_and_fractions():
    assert validation.check_positive("lr", np.float32(0.5)) == 0.5
    assert validation.check_non_negative("m", 0) == 0.0
    for bad in (0, float("nan"), float("inf"), True, "1"):
        with pytest.raises(ValueError, match="a positive number"):
            validation.check_positive("lr", bad)
    assert validation.check_fraction("p", 0.0, low_closed=True) == 0.0
    with pytest.raises(ValueError, match=r"a float in \(0, 1\]"):
        validation.check_fraction("p", 0.0, high_closed=True)
    with pytest.raises(ValueError, match=r"a float in \[0, 1\)"):
        validation.check_fraction("p", 1.0, low_closed=True)


def test_check_choice_and_bool():
    assert validation.check_choice("kind", "a", ("a", "b")) == "a"
    with pytest.raises(ValueError, match=r"Expected one of \('a', 'b'\)\. Received: kind='c'"):
        validation.check_choice("kind", "c", ("a", "b"))
    with pytest.raises(ValueError, match="a bool"):
        validation.check_bool("flag", 1)


def test_check_int_list():
    assert validation.check_int_list("seeds", [np.int64(2), 0], minimum=0) == (2, 0)
    for bad in ([], (), [-1], [1.5], [True], "01", None):
        with pytest.raises(ValueError, match="a non-empty list of integers >= 0"):
            validation.check_int_list("seeds", bad, minimum=0)
    with pytest.raises(ValueError, match="distinct integers"):
        validation.check_int_list("seeds", (0, 0), distinct=True)


def test_check_stochastic_matrix():
    matrix = validation.check_stochastic_matrix("t", [[1, 0], [0.25, 0.75]])
    assert matrix.dtype == np.float64 and matrix.shape == (2, 2)
    for bad in (
        [[0.5, 0.5]],  # not square
        [[1.5, -0.5], [0, 1]],  # negative entry
        [[0.5, 0.4], [0, 1]],  # a row that does not sum to 1
        [[np.nan, 1], [0, 1]],
        np.eye(3)[:, :, None],
        "identity",
    ):
        with pytest.raises(ValueError, match="Invalid value for argument `t`. Expected a square"):
            validation.check_stochastic_matrix("t", bad)
    # Large matrices are described by their shape, not printed.
    with pytest.raises(ValueError, match=r"Received: t='array of shape \(5, 5\)'"):
        validation.check_stochastic_matrix("t", np.zeros((5, 5)))
