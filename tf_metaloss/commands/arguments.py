"""argparse `type`s for the subcommands, built on `tf_metaloss.validation`.

Each parser converts the text, runs the library's check on the value and turns
a failure into argparse's usage error (exit code 2), e.g.
`error: argument --epochs: expected a positive integer, got '0'`. A mistake
found only after parsing (options that conflict) raises `UsageError`, which
the command line reports the same way.

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
import re

from tf_metaloss import validation


class UsageError(ValueError):
    """A command-line mistake found after parsing: printed with the command's
    usage and exit code 2, as argparse does for the mistakes it finds."""


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
non_negative_number = argument_type(
    float, lambda value: validation.check_non_negative("value", value), "a non-negative number"
)


def fraction(low_closed=False, high_closed=False):
    """A number between 0 and 1 (the ends included when said closed)."""
    interval = ("[" if low_closed else "(") + "0, 1" + ("]" if high_closed else ")")
    return argument_type(
        float,
        lambda value: validation.check_fraction("value", value, low_closed, high_closed),
        f"a number in {interval}",
    )


def usage_error(error, flags):
    """A library `ValueError` about settings, worded for the options typed.

    Args:
        error: raised by a check of `tf_metaloss.validation` (it names the
            argument) or another check that names arguments in backquotes.
        flags: dict `argument name -> option`, e.g. `{"epochs": "--epochs"}`.

    Returns:
        A `UsageError`: `argument --epochs: expected ..., got ...` for a single
        argument, else the message with each argument named by its option.

    Example:

    >>> from tf_metaloss import validation
    >>> from tf_metaloss.commands import arguments
    >>> try:
    ...     validation.check_int_list("seeds", [0, 0], minimum=0, distinct=True)
    ... except ValueError as error:
    ...     print(arguments.usage_error(error, {"seeds": "--seeds"}))
    argument --seeds: expected distinct integers >= 0, got [0, 0]
    """
    name = getattr(error, "argument", None)
    if name in flags:
        fix = f". {error.fix}" if error.fix else ""
        return UsageError(
            f"argument {flags[name]}: expected {error.expected}, got {error.value!r}{fix}"
        )
    message = str(error)
    for name, flag in flags.items():
        # `name`, and names like meta_method (an underscore: not a plain word).
        pattern = rf"`{re.escape(name)}`" + (rf"|\b{re.escape(name)}\b" if "_" in name else "")
        message = re.sub(pattern, flag, message)
    return UsageError(message)
