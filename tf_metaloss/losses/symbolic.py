"""`SymbolicLoss`: a loss given by a formula whose constants learn."""

import keras

from tf_metaloss.losses import expressions
from tf_metaloss.losses.base import LearnableLoss


def _check_regression(regression):
    if regression is not None and not isinstance(regression, bool):
        raise ValueError(
            "Invalid value for argument `regression`. Expected True, False or None "
            f"(taken from the expression). Received: regression={regression!r}"
        )


def _expression(expression, regression):
    """The `Expression` of a loss; `None` is cross-entropy (squared error)."""
    _check_regression(regression)
    if expression is None:
        return expressions.Expression(expressions.KNOWN["mse" if regression else "crossentropy"])
    parsed = expressions.Expression(expression)
    if regression is not None and parsed.regression != regression:
        task = "regression" if parsed.regression else "classification"
        raise ValueError(
            f"Invalid value for argument `regression`. The expression is a {task} "
            f"loss. Received: regression={regression!r} with "
            f"expression={parsed.to_string()!r}. Leave regression=None or use the "
            f"{'classification' if parsed.regression else 'regression'} terminals."
        )
    return parsed


@keras.saving.register_keras_serializable(package="tf_metaloss")
class SymbolicLoss(LearnableLoss):
    """A loss written as a formula, with the formula's constants as phi.

    The formula is an expression tree over per-sample terminals (the
    probability and log-probability of the labelled class, the margin, the
    one-hot target, the predicted probabilities; for regression the target, the
    prediction and their difference) and protected primitives (+, -, *, /, log,
    exp, sqrt, abs, min, max, tanh, square, pow, sums and maxima over classes);
    `tf_metaloss.losses.expressions` lists them. Every number in it is a
    learnable constant, so a `MetaModel` tunes the constants online like any
    other family's phi, and `formula()` reads out what was learned.

    With no expression the loss starts as cross-entropy written as one,
    `-log(p_true + c)` with `c = 0` (a positive `c` bounds the loss, as
    truncated losses do); for regression it is `|diff|^e` with `e = 2`, the
    squared error (a learnable power).

    Args:
        expression: a nested list such as `["neg", ["log", "p_true"]]`, the
            same as a string `"neg(log(p_true))"`, or an `Expression`. `None`:
            cross-entropy (regression: squared error).
        regression: whether the loss is a regression loss. `None` (default)
            takes it from the expression's terminals (classification when no
            expression is given).
        **kwargs: see `LearnableLoss` (`from_logits`, `regularization`,
            `bounds`, `reduction`, `name`, `dtype`).

    Example:

    >>> loss = tml.losses.SymbolicLoss(from_logits=True)
    >>> loss.formula()
    '-log(p_true + 0)'
    >>> gce = tml.losses.SymbolicLoss("div(sub(1, pow(p_true, 0.7)), 0.7)",
    ...                               from_logits=True)
    >>> [round(c, 3) for c in gce.current_constants()]
    [1.0, 0.7, 0.7]
    >>> fixed = gce.to_fixed()      # an ordinary Keras loss, constants frozen
    >>> fixed.formula()
    '(1 - |p_true|^0.7) / 0.7'

    Reference: Raymond et al., "Learning Symbolic Model-Agnostic Loss
    Functions via Meta-Learning" (TPAMI 2023).
    """

    def __init__(self, expression=None, regression=None, **kwargs):
        super().__init__(**kwargs)
        self.expression = _expression(expression, regression)
        self.regression = self.expression.regression
        self.add_parameter(
            "constants",
            shape=(len(self.expression.constants),),
            initializer=keras.initializers.Constant(self.expression.constants),
        )

    def compute(self, parameters, y_true, y_pred):
        constants = parameters["constants"]
        values = [constants[i] for i in range(len(self.expression.constants))]
        return self.expression.evaluate(y_true, y_pred, values, from_logits=self.from_logits)

    def current_constants(self):
        """The constants' current values, as Python floats."""
        return [float(c) for c in keras.ops.convert_to_numpy(self.trainable_variables[0])]

    def current_expression(self):
        """The `Expression` with the current constants in place."""
        return self.expression.with_constants(self.current_constants())

    def formula(self, simplify=False, digits=4):
        """The readable formula with the current constants.

        Args:
            simplify: simplify with sympy (the `symbolic` extra; without sympy
                the formula is returned as it is).
            digits: significant digits of the constants.
        """
        expression = self.current_expression()
        if simplify:
            return expression.simplified_formula(digits=digits)
        return expression.formula(digits=digits)

    def to_fixed(self, name=None):
        """An ordinary Keras loss computing the formula with the current
        constants, frozen (`FormulaLoss`); it saves and loads like any loss."""
        return FormulaLoss(
            self.current_expression().to_list(),
            from_logits=self.from_logits,
            reduction=self.reduction,
            name=name or f"{self.name}_fixed",
            dtype=self.dtype,
        )

    def element_labels(self, name, size):
        return [f"constant_{i}" for i in range(size)]

    def get_config(self):
        config = super().get_config()
        config.update({"expression": self.expression.to_list(), "regression": self.regression})
        return config


@keras.saving.register_keras_serializable(package="tf_metaloss")
class FormulaLoss(keras.losses.Loss):
    """A loss given by a formula with fixed constants (no parameters).

    What `SymbolicLoss.to_fixed()` returns, and a way to train with a formula
    found by `tml.search`.

    Args:
        expression: as for `SymbolicLoss` (required).
        from_logits: whether `y_pred` holds logits (classification).
        reduction, name, dtype: as in `keras.losses.Loss`.

    Example:

    >>> loss = tml.losses.FormulaLoss("neg(log(add(p_true, 0.05)))", from_logits=True)
    >>> round(float(loss(np.array([0]), np.array([[0.0, 0.0]], "float32"))), 4)
    0.5978
    """

    def __init__(
        self,
        expression,
        from_logits=False,
        reduction="sum_over_batch_size",
        name="formula_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not isinstance(from_logits, bool):
            raise ValueError(
                "Invalid value for argument `from_logits`. Expected a bool. "
                f"Received: from_logits={from_logits!r}"
            )
        self.expression = expressions.Expression(expression)
        self.regression = self.expression.regression
        self.from_logits = from_logits

    def call(self, y_true, y_pred):
        return self.expression.evaluate(y_true, y_pred, from_logits=self.from_logits)

    def formula(self, simplify=False, digits=4):
        """The readable formula (sympy-simplified if `simplify` and installed)."""
        if simplify:
            return self.expression.simplified_formula(digits=digits)
        return self.expression.formula(digits=digits)

    def get_config(self):
        config = super().get_config()
        config.update({"expression": self.expression.to_list(), "from_logits": self.from_logits})
        return config
