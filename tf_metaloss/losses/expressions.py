"""Loss expressions: trees of terminals, primitives and constants, in `keras.ops`.

An expression is a nested list, JSON as it is: a terminal is its name (a
string), a constant is a number, and a primitive applied to arguments is a list
`[name, argument, ...]`. The same tree has a small string syntax of function
calls, `neg(log(add(p_true, 0.0)))`. `Expression` parses either, checks it, and
evaluates it on a batch (one value per sample) with the constants given, so the
constants can be learned (`SymbolicLoss`) or frozen (`FormulaLoss`).

Terminals (per sample; a *vector* terminal holds one value per class or output,
and a vector-valued expression is summed over the classes, or averaged over the
regression outputs, at the end):

- classification: `p_true` and `log_p_true` (probability and log-probability of
  the labelled class), `margin` (the labelled class's log-probability minus the
  largest other one, equal to the logit margin), and the vectors `y` (one-hot
  target), `p` (probabilities) and `log_p` (log-probabilities);
- regression: the vectors `y_true`, `y_pred` and `diff` (`y_pred - y_true`).

Primitives, all defined (finite) everywhere: `add`, `sub`, `mul`, `div`
(protected: a denominator closer to 0 than 1e-6 is replaced by +-1e-6), `min`,
`max`, `pow` (`|a|^b`, `|a|` at least 1e-7: with a constant exponent, that is a
learnable power), `neg`, `log` (of `|a|`, at least 1e-7), `exp` (argument
clipped at 30), `sqrt` (of `|a|`), `abs`, `tanh`, `square`, and the reductions
over the class axis `sum_c` and `max_c` (the sum or max of a vector terminal's
values, e.g. `max_c(p)`, the prediction reduced by max).

Example:

>>> from tf_metaloss.losses import expressions
>>> e = expressions.Expression("div(sub(1.0, pow(p_true, 0.7)), 0.7)")
>>> e.constants
[1.0, 0.7, 0.7]
>>> e.formula()
'(1 - |p_true|^0.7) / 0.7'
>>> e.to_list()
['div', ['sub', 1.0, ['pow', 'p_true', 0.7]], 0.7]
"""

import json
import math
import re

from keras import ops

from tf_metaloss import backend
from tf_metaloss.losses import expression_text
from tf_metaloss.losses import functional

EPSILON = 1e-7
DIVISION_EPSILON = 1e-6
EXP_CLIP = 30.0

CLASSIFICATION_TERMINALS = ("p_true", "log_p_true", "margin", "y", "p", "log_p")
REGRESSION_TERMINALS = ("y_true", "y_pred", "diff")
VECTOR_TERMINALS = ("y", "p", "log_p", "y_true", "y_pred", "diff")
TERMINALS = CLASSIFICATION_TERMINALS + REGRESSION_TERMINALS


def _protected_div(a, b):
    small = ops.abs(b) < DIVISION_EPSILON
    safe = ops.where(b >= 0, DIVISION_EPSILON, -DIVISION_EPSILON)
    return a / ops.where(small, safe, b)


def _protected_log(a):
    return ops.log(ops.maximum(ops.abs(a), EPSILON))


def _protected_pow(a, b):
    return ops.power(ops.maximum(ops.abs(a), EPSILON), b)


def _sqrt(a):
    return ops.sqrt(ops.maximum(ops.abs(a), EPSILON))


def _over_classes(reduce, a):
    # A constant (no class axis) is its own sum or max over classes.
    if len(a.shape) < 2:
        return a
    return reduce(a, axis=-1, keepdims=True)


# name -> (arity, function of tensors)
PRIMITIVES = {
    "add": (2, lambda a, b: a + b),
    "sub": (2, lambda a, b: a - b),
    "mul": (2, lambda a, b: a * b),
    "div": (2, _protected_div),
    "min": (2, ops.minimum),
    "max": (2, ops.maximum),
    "pow": (2, _protected_pow),
    "neg": (1, lambda a: -a),
    "log": (1, _protected_log),
    "exp": (1, lambda a: ops.exp(ops.minimum(a, EXP_CLIP))),
    "sqrt": (1, _sqrt),
    "abs": (1, ops.abs),
    "tanh": (1, backend.tanh),
    "square": (1, ops.square),
    "sum_c": (1, lambda a: _over_classes(ops.sum, a)),
    "max_c": (1, lambda a: _over_classes(ops.max, a)),
}
REDUCTIONS = ("sum_c", "max_c")
COMMUTATIVE = ("add", "mul", "min", "max")

# The known losses written as expressions (cross-entropy, generalized
# cross-entropy with q = 0.7, MAE = 2 (1 - p_true), focal with gamma = 2; the
# regression ones on `diff`).
KNOWN = {
    "crossentropy": ["neg", ["log", ["add", "p_true", 0.0]]],
    "generalized_crossentropy": ["div", ["sub", 1.0, ["pow", "p_true", 0.7]], 0.7],
    "mae_classification": ["mul", 2.0, ["sub", 1.0, "p_true"]],
    "focal": ["neg", ["mul", ["pow", ["sub", 1.0, "p_true"], 2.0], "log_p_true"]],
    "mse": ["pow", "diff", 2.0],
    "mae": ["pow", "diff", 1.0],
}


class ExpressionError(ValueError):
    """An expression that cannot be parsed or does not fit its task."""


def _error(argument, expected, received, fix=None):
    message = (
        f"Invalid value for argument `{argument}`. Expected {expected}. Received: "
        f"{argument}={received!r}"
    )
    if fix:
        message += f". {fix}"
    error = ExpressionError(message)
    error.fix = fix
    return error


_EXPECTED = (
    "a nested list [primitive, argument, ...] or a string such as 'neg(log(p_true))' "
    "over terminals, numbers and primitives (listed in tf_metaloss.losses.expressions)"
)

_TOKEN = re.compile(
    r"\s*(?:([A-Za-z_][A-Za-z_0-9]*)|([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(.))"
)


def parse_string(text):
    """Parses the function-call syntax into a nested list.

    Example:

    >>> tml.losses.expressions.parse_string("add(p_true, -1.5e-1)")
    ['add', 'p_true', -0.15]
    """
    tokens = []
    for name, number, other in _TOKEN.findall(text):
        if name:
            tokens.append(("name", name))
        elif number:
            tokens.append(("number", float(number)))
        elif other.strip():
            tokens.append(("symbol", other))
    position = 0

    def fail(what):
        raise _error(
            "expression",
            _EXPECTED,
            text,
            f"Could not parse it: {what}",
        )

    def node():
        nonlocal position
        if position >= len(tokens):
            fail("it ends early")
        kind, value = tokens[position]
        position += 1
        if kind == "number":
            return value
        if kind != "name":
            fail(f"unexpected {value!r}")
        if position < len(tokens) and tokens[position] == ("symbol", "("):
            position += 1
            arguments = [node()]
            while position < len(tokens) and tokens[position] == ("symbol", ","):
                position += 1
                arguments.append(node())
            if position >= len(tokens) or tokens[position] != ("symbol", ")"):
                fail(f"missing ')' after the arguments of {value!r}")
            position += 1
            return [value, *arguments]
        return value

    tree = node()
    if position != len(tokens):
        fail(f"unexpected {tokens[position][1]!r} after the expression")
    return tree


def _check(tree, source):
    """Validates a nested list; returns it with numbers as floats."""
    if isinstance(tree, bool):
        raise _error("expression", _EXPECTED, source, f"{tree!r} is not a number")
    if isinstance(tree, (int, float)):
        if not math.isfinite(tree):
            raise _error("expression", _EXPECTED, source, f"The constant {tree!r} is not finite")
        return float(tree)
    if isinstance(tree, str):
        if tree not in TERMINALS:
            raise _error(
                "expression",
                _EXPECTED,
                source,
                f"Unknown terminal {tree!r}; the terminals are {list(TERMINALS)}",
            )
        return tree
    if isinstance(tree, (list, tuple)) and tree and isinstance(tree[0], str):
        name, arguments = tree[0], list(tree[1:])
        if name not in PRIMITIVES:
            raise _error(
                "expression",
                _EXPECTED,
                source,
                f"Unknown primitive {name!r}; the primitives are {sorted(PRIMITIVES)}",
            )
        arity = PRIMITIVES[name][0]
        if len(arguments) != arity:
            raise _error(
                "expression",
                _EXPECTED,
                source,
                f"{name!r} takes {arity} argument(s), got {len(arguments)}",
            )
        return [name, *(_check(a, source) for a in arguments)]
    raise _error("expression", _EXPECTED, source, f"Cannot read {tree!r}")


def _terminals(tree):
    if isinstance(tree, str):
        return {tree}
    if isinstance(tree, list):
        return set().union(*(_terminals(a) for a in tree[1:]))
    return set()


def _is_vector(tree):
    if isinstance(tree, str):
        return tree in VECTOR_TERMINALS
    if isinstance(tree, list):
        if tree[0] in REDUCTIONS:
            return False
        return any(_is_vector(a) for a in tree[1:])
    return False


class Expression:
    """A parsed, checked loss expression with its constants in order.

    Args:
        expression: a nested list, a string in the function-call syntax, a
            JSON string of the nested list, or an `Expression`.

    Attributes:
        tree: the nested list (numbers as floats).
        constants: the numbers in the tree, depth first, left to right: the
            values `evaluate` replaces.
        regression: True for an expression over the regression terminals,
            False for classification, None when it uses no terminal.

    Example:

    >>> e = tml.losses.expressions.Expression(["neg", ["log", ["add", "p_true", 0.0]]])
    >>> e.to_string()
    'neg(log(add(p_true, 0)))'
    >>> e.with_constants([0.1]).formula()
    '-log(p_true + 0.1)'
    """

    def __init__(self, expression):
        if isinstance(expression, Expression):
            expression = expression.tree
        source = expression
        if isinstance(expression, str):
            text = expression.strip()
            if text.startswith("["):
                try:
                    expression = json.loads(text)
                except json.JSONDecodeError as error:
                    raise _error(
                        "expression", _EXPECTED, source, f"Not valid JSON: {error}"
                    ) from None
            else:
                expression = parse_string(text)
        self.tree = _check(expression, source)
        used = _terminals(self.tree)
        if not used:
            raise _error(
                "expression",
                _EXPECTED,
                source,
                "Without a terminal it is a constant, not a loss: use at least one terminal",
            )
        classification = used & set(CLASSIFICATION_TERMINALS)
        regression = used & set(REGRESSION_TERMINALS)
        if classification and regression:
            raise _error(
                "expression",
                _EXPECTED,
                source,
                f"It mixes classification terminals {sorted(classification)} with "
                f"regression terminals {sorted(regression)}",
            )
        self.regression = bool(regression)
        self.constants = []
        self._collect(self.tree)
        self.vector = _is_vector(self.tree)

    def _collect(self, tree):
        if isinstance(tree, float):
            self.constants.append(tree)
        elif isinstance(tree, list):
            for a in tree[1:]:
                self._collect(a)

    # -- views ------------------------------------------------------------
    def __repr__(self):
        return f"Expression({self.to_string()!r})"

    def __eq__(self, other):
        return isinstance(other, Expression) and self.tree == other.tree

    def __hash__(self):
        return hash(self.to_string())

    @property
    def size(self):
        """The number of nodes."""
        return _size(self.tree)

    @property
    def depth(self):
        """The number of nodes on the longest path from the root."""
        return _depth(self.tree)

    def to_list(self, constants=None):
        """The nested list, with `constants` in place of the numbers if given."""
        return self._substitute(constants, float)

    def with_constants(self, constants):
        """A new `Expression` with the numbers replaced by `constants`."""
        return Expression(self.to_list([float(c) for c in constants]))

    def to_string(self, constants=None, digits=None):
        """The function-call syntax; `digits` rounds the constants."""

        def render(tree):
            if isinstance(tree, list):
                return f"{tree[0]}({', '.join(render(a) for a in tree[1:])})"
            if isinstance(tree, str):
                return tree
            return expression_text.number(tree, digits)

        return render(self.to_list(constants))

    def canonical(self, digits=4):
        """A string equal for trees that differ only in the order of the
        arguments of `add`, `mul`, `min`, `max` or by constants rounded to
        `digits` significant digits: a key for caching equivalent trees."""

        def render(tree):
            if isinstance(tree, list):
                arguments = [render(a) for a in tree[1:]]
                if tree[0] in COMMUTATIVE:
                    arguments.sort()
                return f"{tree[0]}({', '.join(arguments)})"
            if isinstance(tree, str):
                return tree
            return expression_text.number(tree, digits)

        return render(self.tree)

    def formula(self, constants=None, digits=4):
        """A readable infix formula (protections left out), constants rounded.

        The summation over classes (or the mean over regression outputs) that
        follows a vector-valued expression is written out.
        """
        text = expression_text.infix(self.to_list(constants), digits)[0]
        if self.vector:
            text = f"mean_outputs({text})" if self.regression else f"sum_c({text})"
        return text

    def simplified_formula(self, constants=None, digits=4):
        """The formula simplified by sympy, or `formula()` if sympy is missing
        (the `symbolic` extra) or the tree is too large to simplify quickly."""
        try:
            import sympy
        except ModuleNotFoundError:
            return self.formula(constants, digits)
        if self.size > 40:
            return self.formula(constants, digits)
        tree = self.to_list(constants)
        symbols = {name: sympy.Symbol(name, real=True) for name in _terminals(tree)}
        text = str(sympy.simplify(expression_text.to_sympy(sympy, tree, symbols, digits)))
        text = text.replace("**", "^").replace("Abs", "abs")
        if self.vector:
            text = f"mean_outputs({text})" if self.regression else f"sum_c({text})"
        return text

    def _substitute(self, constants, convert):
        if constants is None:
            return _copy(self.tree)
        constants = list(constants)
        if len(constants) != len(self.constants):
            raise _error(
                "constants",
                f"{len(self.constants)} values (one per number in {self.to_string()})",
                constants,
            )
        iterator = iter(constants)

        def substitute(tree):
            if isinstance(tree, list):
                return [tree[0], *(substitute(a) for a in tree[1:])]
            if isinstance(tree, float):
                return convert(next(iterator))
            return tree

        return substitute(self.tree)

    # -- evaluation -------------------------------------------------------
    def evaluate(self, y_true, y_pred, constants=None, from_logits=False):
        """One loss value per sample.

        Args:
            y_true, y_pred: as for a Keras loss (sparse or one-hot labels,
                logits or probabilities; regression targets and predictions).
            constants: the constants' values (a sequence of scalars or a 1-D
                tensor); `None` uses the tree's numbers.
            from_logits: whether `y_pred` holds logits (classification).
        """
        terminals = terminal_values(y_true, y_pred, from_logits, self.regression)
        dtype = terminals.dtype
        if constants is None:
            constants = [ops.convert_to_tensor(c, dtype=dtype) for c in self.constants]
        iterator = iter(range(len(self.constants)))

        def run(tree):
            if isinstance(tree, list):
                return PRIMITIVES[tree[0]][1](*(run(a) for a in tree[1:]))
            if isinstance(tree, str):
                return terminals[tree]
            return ops.cast(constants[next(iterator)], dtype)

        value = run(self.tree)
        if self.vector:
            value = ops.broadcast_to(value, ops.shape(terminals.vector_reference))
            return functional.mean(value, axis=-1) if self.regression else ops.sum(value, axis=-1)
        value = ops.broadcast_to(value, ops.shape(terminals.vector_reference[..., :1]))
        return value[..., 0]


class _Terminals:
    """The terminal values of a batch, each computed on first use."""

    def __init__(self, y_true, y_pred, from_logits, regression):
        self._y_true, self._y_pred = y_true, y_pred
        self._from_logits, self._regression = from_logits, regression
        self._values = {}
        if regression:
            target, prediction = functional.align_regression(y_true, y_pred)
            self._values.update(y_true=target, y_pred=prediction)
            self.dtype = prediction.dtype
            self.vector_reference = prediction
        else:
            one_hot, log_probs, probs = functional.classification_terms(y_true, y_pred, from_logits)
            self._values.update(y=one_hot, p=probs, log_p=log_probs)
            self.dtype = log_probs.dtype
            self.vector_reference = log_probs

    def __getitem__(self, name):
        if name not in self._values:
            self._values[name] = self._compute(name)
        return self._values[name]

    def _compute(self, name):
        v = self._values
        if name not in (REGRESSION_TERMINALS if self._regression else CLASSIFICATION_TERMINALS):
            raise _error(
                "expression",
                "terminals of the loss's task",
                name,
                "Use the regression terminals for regression and the others for classification",
            )
        if name == "diff":
            return v["y_pred"] - v["y_true"]
        if name == "p_true":
            return ops.sum(v["y"] * v["p"], axis=-1, keepdims=True)
        if name == "log_p_true":
            return ops.sum(v["y"] * v["log_p"], axis=-1, keepdims=True)
        if name == "margin":
            others = ops.where(v["y"] > 0, ops.cast(-1e9, self.dtype), v["log_p"])
            return self["log_p_true"] - ops.max(others, axis=-1, keepdims=True)
        raise KeyError(name)


def terminal_values(y_true, y_pred, from_logits=False, regression=False):
    """The terminals of a batch, as a lazy mapping `name -> tensor`."""
    return _Terminals(y_true, y_pred, from_logits, regression)


def _copy(tree):
    if isinstance(tree, list):
        return [tree[0], *(_copy(a) for a in tree[1:])]
    return tree


def _size(tree):
    if isinstance(tree, list):
        return 1 + sum(_size(a) for a in tree[1:])
    return 1


def _depth(tree):
    if isinstance(tree, list):
        return 1 + max(_depth(a) for a in tree[1:])
    return 1
