"""Tests of loss expressions: parsing, printing, evaluation, protection."""

import json

import numpy as np
import pytest

from tf_metaloss.losses import expressions
from tf_metaloss.losses import functional
from tf_metaloss.losses.expressions import Expression

LABELS = np.array([0, 2, 1, 3])
LOGITS = (np.random.default_rng(0).normal(size=(4, 4)) * 2).astype("float32")
TARGETS = np.random.default_rng(1).normal(size=(4, 2)).astype("float32")
PREDICTIONS = np.random.default_rng(2).normal(size=(4, 2)).astype("float32")


@pytest.mark.parametrize("name", sorted(expressions.KNOWN))
def test_known_losses_equal_the_base_losses(name):
    expression = Expression(expressions.KNOWN[name])
    if expression.regression:
        data = (TARGETS, PREDICTIONS)
    else:
        data = (LABELS, LOGITS)
    np.testing.assert_allclose(
        expression.evaluate(*data, from_logits=True),
        functional.get(name)(*data, from_logits=True),
        rtol=1e-5,
        atol=1e-6,
    )


def test_vector_terminals_are_summed_over_classes():
    ce = Expression("neg(sum_c(mul(y, log_p)))").evaluate(LABELS, LOGITS, from_logits=True)
    np.testing.assert_allclose(ce, functional.crossentropy(LABELS, LOGITS, True), rtol=1e-6)
    mae = Expression("abs(sub(y, p))")
    assert mae.vector and mae.formula() == "sum_c(|y - p|)"
    np.testing.assert_allclose(
        mae.evaluate(LABELS, LOGITS, from_logits=True),
        functional.mae_classification(LABELS, LOGITS, True),
        rtol=1e-6,
    )
    # A constant is its own sum or max over the classes.
    np.testing.assert_allclose(
        Expression("add(p_true, max_c(0.5))").evaluate(LABELS, LOGITS, from_logits=True),
        Expression("add(p_true, 0.5)").evaluate(LABELS, LOGITS, from_logits=True),
    )
    p_max = Expression("max_c(p)").evaluate(LABELS, LOGITS, from_logits=True)
    probs = np.exp(LOGITS) / np.exp(LOGITS).sum(-1, keepdims=True)
    np.testing.assert_allclose(p_max, probs.max(-1), rtol=1e-6)


def test_margin_is_the_logit_margin():
    margin = Expression("margin").evaluate(LABELS, LOGITS, from_logits=True)
    true = LOGITS[np.arange(4), LABELS]
    others = np.where(np.eye(4)[LABELS] > 0, -np.inf, LOGITS).max(-1)
    np.testing.assert_allclose(margin, true - others, rtol=1e-5)


def test_regression_terminals_are_averaged_over_outputs():
    e = Expression("mul(0.5, abs(diff))")
    assert e.regression and e.formula() == "mean_outputs(0.5 * |diff|)"
    np.testing.assert_allclose(
        e.evaluate(TARGETS, PREDICTIONS), 0.5 * np.abs(PREDICTIONS - TARGETS).mean(-1), rtol=1e-6
    )
    np.testing.assert_allclose(
        Expression("sum_c(y_true)").evaluate(TARGETS, PREDICTIONS), TARGETS.sum(-1), rtol=1e-6
    )


def test_string_and_list_round_trip():
    text = "add(div(sub(1, pow(p_true, 0.7)), 0.7), mul(-0.25, tanh(margin)))"
    e = Expression(text)
    assert e.to_string() == text
    assert Expression(e.to_list()) == e
    assert Expression(json.dumps(e.to_list())) == e
    assert e.constants == [1.0, 0.7, 0.7, -0.25]
    assert (e.size, e.depth) == (12, 5)
    assert e.with_constants([2, 0.5, 0.5, 0]).to_string() == (
        "add(div(sub(2, pow(p_true, 0.5)), 0.5), mul(0, tanh(margin)))"
    )
    with pytest.raises(ValueError, match="argument `constants`.*4 values"):
        e.with_constants([1.0])


def test_formula_precedence():
    assert Expression("sub(p_true, sub(1, p_true))").formula() == "p_true - (1 - p_true)"
    assert Expression("div(mul(2, p_true), mul(3, margin))").formula() == (
        "2 * p_true / (3 * margin)"
    )
    assert Expression("neg(add(log_p_true, 1))").formula() == "-(log_p_true + 1)"
    assert Expression("square(add(p_true, 1))").formula() == "(p_true + 1)^2"
    assert (
        Expression("min(exp(margin), sqrt(p_true))").formula() == "min(exp(margin), sqrt(p_true))"
    )
    assert Expression("mul(0.123456, p_true)").formula(digits=3) == "0.123 * p_true"
    assert Expression("add(p_true, -0.5)").formula() == "p_true - 0.5"
    assert Expression("sub(p_true, -0.5)").formula() == "p_true + 0.5"


def test_canonical_ignores_argument_order_and_rounding():
    a = Expression("add(mul(p_true, 2.00001), margin)")
    b = Expression("add(margin, mul(2, p_true))")
    assert a.canonical() == b.canonical()
    assert a.canonical() != Expression("sub(margin, mul(2, p_true))").canonical()


@pytest.mark.parametrize(
    "text",
    [
        "div(p_true, sub(p_true, p_true))",
        "log(sub(p_true, p_true))",
        "exp(mul(1000, margin))",
        "sqrt(neg(p_true))",
        "pow(sub(p_true, p_true), -2)",
    ],
)
def test_primitives_are_protected(text):
    logits = np.array([[100.0, -100.0, 0.0], [0.0, 0.0, 0.0]], "float32")
    value = Expression(text).evaluate(np.array([0, 1]), logits, from_logits=True)
    assert np.isfinite(np.asarray(value)).all(), value


def test_simplified_formula_uses_sympy():
    pytest.importorskip("sympy")
    e = Expression(expressions.KNOWN["crossentropy"])
    assert e.simplified_formula() == "-log(p_true)"
    assert Expression("add(p_true, p_true)").simplified_formula() == "2*p_true"


def test_terminal_of_the_other_task_is_an_error():
    e = Expression("p_true")
    with pytest.raises(ValueError, match="terminals of the loss's task"):
        expressions.terminal_values(TARGETS, PREDICTIONS, regression=True)["p_true"]
    assert not e.regression


@pytest.mark.parametrize(
    "expression, message",
    [
        ("foo(p_true)", "Unknown primitive 'foo'"),
        ("neg()", "unexpected '\\)'"),
        ("p_true p", "unexpected 'p' after the expression"),
        (["neg", True], "True is not a number"),
        (["neg", float("nan")], "not finite"),
        ([], "Cannot read"),
    ],
)
def test_bad_expressions(expression, message):
    with pytest.raises(ValueError, match=f"argument `expression`.*Received.*{message}"):
        Expression(expression)
