"""Argument checks with the library's one error format.

Every check raises `ValueError("Invalid value for argument `name`. Expected
... Received: name=...")` and returns the value (converted where the check
says so), so a constructor can write `self.steps = check_int("steps", steps,
minimum=1)`.

Example:

>>> from tf_metaloss.validation import check_int
>>> check_int("meta_every", 3, minimum=0)
3
>>> check_int("steps", 0, minimum=1)
Traceback (most recent call last):
...
ValueError: Invalid value for argument `steps`. Expected an integer >= 1. Received: steps=0
"""

import math
import numbers

import numpy as np


def invalid(name, value, expected, fix=None):
    """Raises the library's `ValueError` for argument `name`.

    The error also carries `argument`, `value`, `expected` and `fix`, so a
    command line can word it for the option the user typed.
    """
    message = (
        f"Invalid value for argument `{name}`. Expected {expected}. Received: {name}={value!r}"
    )
    if fix:
        message += f". {fix}"
    error = ValueError(message)
    error.argument, error.value, error.expected, error.fix = name, value, expected, fix
    raise error


def is_number(value):
    """A finite real number that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_int(name, value, minimum=None, expected=None, allow_none=False):
    """An integer (not a bool) `>= minimum`; returns it as `int`."""
    if allow_none and value is None:
        return None
    if (
        not isinstance(value, numbers.Integral)
        or isinstance(value, bool)
        or (minimum is not None and value < minimum)
    ):
        if expected is None:
            expected = "an integer" if minimum is None else f"an integer >= {minimum}"
            if allow_none:
                expected += " or None"
        invalid(name, value, expected)
    return int(value)


def check_positive_int(name, value, allow_none=False):
    """A positive integer; returns it as `int`."""
    expected = "a positive integer" + (" or None" if allow_none else "")
    return check_int(name, value, minimum=1, expected=expected, allow_none=allow_none)


def check_bool(name, value):
    """A Python bool."""
    if not isinstance(value, bool):
        invalid(name, value, "a bool (True or False)")
    return value


def check_positive(name, value, allow_none=False):
    """A finite number `> 0`; returns it as `float`."""
    if allow_none and value is None:
        return None
    if not is_number(value) or not value > 0:
        invalid(name, value, "a positive number" + (" or None" if allow_none else ""))
    return float(value)


def check_non_negative(name, value):
    """A finite number `>= 0`; returns it as `float`."""
    if not is_number(value) or not value >= 0:
        invalid(name, value, "a non-negative number")
    return float(value)


def check_fraction(name, value, low_closed=False, high_closed=False):
    """A number in the interval between 0 and 1 (open unless said closed)."""
    ok = is_number(value) and (
        (0.0 <= value if low_closed else 0.0 < value)
        and (value <= 1.0 if high_closed else value < 1.0)
    )
    if not ok:
        interval = ("[" if low_closed else "(") + "0, 1" + ("]" if high_closed else ")")
        invalid(name, value, f"a float in {interval}")
    return float(value)


def check_choice(name, value, choices):
    """One of `choices`."""
    if value not in choices:
        invalid(name, value, f"one of {tuple(choices)}")
    return value


def check_int_list(name, value, minimum=None, distinct=False):
    """A non-empty list, tuple, range or 1-D array of integers `>= minimum`, as a tuple.

    Example:

    >>> from tf_metaloss.validation import check_int_list
    >>> check_int_list("seeds", [0, 1], minimum=0, distinct=True)
    (0, 1)
    """
    bound = "" if minimum is None else f" >= {minimum}"
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = value.tolist()
    if isinstance(value, range):
        value = list(value)
    if (
        not isinstance(value, (list, tuple))
        or not value
        or not all(
            isinstance(v, numbers.Integral)
            and not isinstance(v, bool)
            and (minimum is None or v >= minimum)
            for v in value
        )
    ):
        invalid(name, value, f"a non-empty list of integers{bound}")
    values = tuple(int(v) for v in value)
    if distinct and len(set(values)) != len(values):
        invalid(name, value, f"distinct integers{bound}")
    return values


def check_stochastic_matrix(name, value, atol=1e-3):
    """A square matrix of non-negative numbers whose rows sum to 1 (within `atol`).

    Returns it as a float64 numpy array. Row `i` is a probability
    distribution, e.g. `P(noisy label = j | true label = i)`.

    Example:

    >>> from tf_metaloss.validation import check_stochastic_matrix
    >>> check_stochastic_matrix("transition", [[0.9, 0.1], [0.2, 0.8]]).shape
    (2, 2)
    """
    try:
        matrix = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        matrix = None
    if (
        matrix is None
        or matrix.ndim != 2
        or matrix.shape[0] != matrix.shape[1]
        or matrix.shape[0] < 1
        or not np.all(np.isfinite(matrix))
        or np.any(matrix < 0)
        or not np.allclose(matrix.sum(axis=1), 1.0, atol=atol)
    ):
        shown = value if matrix is None or matrix.size <= 16 else f"array of shape {matrix.shape}"
        invalid(
            name,
            shown,
            "a square matrix of non-negative numbers whose rows sum to 1",
        )
    return matrix
