"""Formula trees as text: numbers, infix notation and sympy expressions.

Trees are `tml.losses.expressions.Expression`'s nested lists
(`["add", "p_true", 1.0]`); see `Expression.to_string` and `simplified`.
"""


def number(value, digits=None):
    """`value` as short text, rounded to `digits` significant digits if given."""
    value = float(value)
    if digits is not None:
        value = float(f"{value:.{digits}g}")
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value) if digits is None else f"{value:.{digits}g}"


_INFIX = {"add": ("+", 1), "sub": ("-", 1), "mul": ("*", 2), "div": ("/", 2)}
_FUNCTIONS = {"log": "log", "exp": "exp", "sqrt": "sqrt", "tanh": "tanh", "sum_c": "sum_c"}


def infix(tree, digits):
    """Returns `(text, precedence)`; higher precedence binds tighter."""
    if isinstance(tree, str):
        return tree, 9
    if isinstance(tree, float):
        text = number(tree, digits)
        return text, (9 if not text.startswith("-") else 3)
    name, arguments = tree[0], tree[1:]
    parts = [infix(a, digits) for a in arguments]
    if name in ("add", "sub") and isinstance(arguments[1], float) and arguments[1] < 0:
        # a + -c reads a - c, and a - -c reads a + c.
        name = "sub" if name == "add" else "add"
        parts[1] = (number(-arguments[1], digits), 9)
    if name in _INFIX:
        symbol, level = _INFIX[name]
        left = parts[0][0] if parts[0][1] >= level else f"({parts[0][0]})"
        # The right operand of - and / needs parentheses at equal precedence.
        right_level = level + (1 if name in ("sub", "div") else 0)
        right = parts[1][0] if parts[1][1] >= right_level else f"({parts[1][0]})"
        return f"{left} {symbol} {right}", level
    if name == "neg":
        inner = parts[0][0] if parts[0][1] >= 3 else f"({parts[0][0]})"
        return f"-{inner}", 3
    if name == "pow":
        base = f"|{parts[0][0]}|"
        exponent = parts[1][0] if parts[1][1] >= 9 else f"({parts[1][0]})"
        return f"{base}^{exponent}", 8
    if name == "square":
        base = parts[0][0] if parts[0][1] >= 9 else f"({parts[0][0]})"
        return f"{base}^2", 8
    if name == "abs":
        return f"|{parts[0][0]}|", 9
    if name in ("min", "max", "max_c"):
        return f"{name}({', '.join(p[0] for p in parts)})", 9
    return f"{_FUNCTIONS[name]}({parts[0][0]})", 9


def to_sympy(sympy, tree, symbols, digits):
    """The sympy expression of `tree` (`symbols`: terminal name -> sympy symbol)."""
    if isinstance(tree, str):
        return symbols[tree]
    if isinstance(tree, float):
        value = float(number(tree, digits))
        return sympy.Integer(int(value)) if value.is_integer() else sympy.Float(value, digits or 15)
    a = [to_sympy(sympy, x, symbols, digits) for x in tree[1:]]
    name = tree[0]
    table = {
        "add": lambda: a[0] + a[1],
        "sub": lambda: a[0] - a[1],
        "mul": lambda: a[0] * a[1],
        "div": lambda: a[0] / a[1],
        "min": lambda: sympy.Min(a[0], a[1]),
        "max": lambda: sympy.Max(a[0], a[1]),
        "pow": lambda: sympy.Abs(a[0]) ** a[1],
        "neg": lambda: -a[0],
        "log": lambda: sympy.log(a[0]),
        "exp": lambda: sympy.exp(a[0]),
        "sqrt": lambda: sympy.sqrt(sympy.Abs(a[0])),
        "abs": lambda: sympy.Abs(a[0]),
        "tanh": lambda: sympy.tanh(a[0]),
        "square": lambda: a[0] ** 2,
        "sum_c": lambda: sympy.Function("sum_c")(a[0]),
        "max_c": lambda: sympy.Function("max_c")(a[0]),
    }
    return table[name]()
