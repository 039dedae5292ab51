"""Tests of the argparse types shared by the subcommands."""

import argparse

import pytest

from tf_metaloss.commands import arguments


@pytest.mark.parametrize(
    "parse, text, value",
    [
        (arguments.positive_int, "3", 3),
        (arguments.positive_number, "0.5", 0.5),
        (arguments.noise_rate, "0", 0.0),
        (arguments.noise_rate, "0.4", 0.4),
        (arguments.int_at_least(3), "3", 3),
    ],
)
def test_valid_values(parse, text, value):
    assert parse(text) == value


@pytest.mark.parametrize(
    "parse, text, message",
    [
        (arguments.positive_int, "0", "expected a positive integer, got '0'"),
        (arguments.positive_int, "two", "expected a positive integer, got 'two'"),
        (arguments.positive_int, "1.5", "expected a positive integer, got '1.5'"),
        (arguments.positive_number, "0", "expected a positive number, got '0'"),
        (arguments.positive_number, "nan", "expected a positive number, got 'nan'"),
        (arguments.noise_rate, "1", "expected a noise rate in [0, 1), got '1'"),
        (arguments.noise_rate, "-0.1", "expected a noise rate in [0, 1), got '-0.1'"),
        (arguments.int_at_least(3), "2", "expected an integer >= 3, got '2'"),
    ],
)
def test_invalid_values_are_usage_errors(parse, text, message):
    with pytest.raises(argparse.ArgumentTypeError) as error:
        parse(text)
    assert str(error.value) == message
