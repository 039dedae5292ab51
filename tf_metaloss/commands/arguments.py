"""argparse `type`s for the subcommands, built on `tf_metaloss.validation`.

Each parser converts the text, runs the library's check on the value and turns
a failure into argparse's usage error (exit code 2), e.g.
`error: argument --epochs: expected a positive integer, got '0'`.

Example:

>>> from tf_metaloss.commands import arguments
>>> arguments.positive_int("3")
3
>>> arguments.noise_rate("1.5")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: expected a noise rate in [0, 1), got '1.5'
"""

import argparse

from tf_metaloss import validation


def argument_type(convert, check, expected):
    """An argparse `type`: `check(convert(text))`, or a usage error.

    Args:
        convert: turns the text into a value, e.g. `int`.
        check: a check from `tf_metaloss.validation` applied to the value;
            it returns the value or raises `ValueError`.
        expected: what the argument must be, for the message ("a positive
            integer").
    """

    def parse(text):
        try:
            return check(convert(text))
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None

    return parse


def int_at_least(minimum):
    """An integer `>= minimum`."""
    return argument_type(
        int,
        lambda value: validation.check_int("value", value, minimum=minimum),
        f"an integer >= {minimum}",
    )


positive_int = argument_type(
    int, lambda value: validation.check_positive_int("value", value), "a positive integer"
)
positive_number = argument_type(
    float, lambda value: validation.check_positive("value", value), "a positive number"
)
noise_rate = argument_type(
    float,
    lambda value: validation.check_fraction("noise", value, low_closed=True),
    "a noise rate in [0, 1)",
)
