"""Genetic programming on loss expressions: random trees, crossover, mutation.

Trees are the nested lists of `tf_metaloss.losses.expressions` (a terminal is
a string, a constant a float, a primitive `[name, argument, ...]`). Every
operator takes a `random.Random`, so a search is reproducible from its seed
and resumable from the generator's saved state.

Example:

>>> import random
>>> from tf_metaloss.search import genetics
>>> rng = random.Random(0)
>>> tree = genetics.random_tree(rng, max_depth=3)
>>> child = genetics.mutate(rng, tree)
>>> tml.losses.expressions.Expression(child).depth <= genetics.MAX_DEPTH
True
"""

import copy

from tf_metaloss.losses import expressions

MAX_DEPTH = 6
MAX_SIZE = 30
# Candidate constants of a new tree or mutation (tuned later by the meta-gradient).
CONSTANTS = (0.1, 0.5, 1.0, 2.0)

# The loss families a search starts from, written as expressions.
SEEDS = {
    False: ("crossentropy", "generalized_crossentropy", "mae_classification", "focal"),
    True: ("mse", "mae"),
}

UNARY = tuple(name for name, (arity, _) in expressions.PRIMITIVES.items() if arity == 1)
BINARY = tuple(name for name, (arity, _) in expressions.PRIMITIVES.items() if arity == 2)


def terminals(regression=False):
    """The terminal names of a task."""
    return expressions.REGRESSION_TERMINALS if regression else expressions.CLASSIFICATION_TERMINALS


def seed_trees(regression=False):
    """The known losses of a task as trees: the search's first candidates."""
    return [copy.deepcopy(expressions.KNOWN[name]) for name in SEEDS[regression]]


def random_leaf(rng, regression=False, constant_rate=0.25):
    """A terminal, or with probability `constant_rate` a constant."""
    if rng.random() < constant_rate:
        return float(rng.choice(CONSTANTS))
    return rng.choice(terminals(regression))


def random_tree(rng, max_depth=3, regression=False):
    """A random tree of depth at most `max_depth` ("grow" initialisation)
    that uses at least one terminal."""
    while True:
        tree = _grow(rng, max_depth, regression)
        if _has_terminal(tree):
            return tree


def _grow(rng, depth, regression):
    if depth <= 1 or (depth < 3 and rng.random() < 0.3):
        return random_leaf(rng, regression)
    if rng.random() < 0.4:
        return [rng.choice(UNARY), _grow(rng, depth - 1, regression)]
    return [
        rng.choice(BINARY),
        _grow(rng, depth - 1, regression),
        _grow(rng, depth - 1, regression),
    ]


def _has_terminal(tree):
    if isinstance(tree, str):
        return True
    if isinstance(tree, list):
        return any(_has_terminal(a) for a in tree[1:])
    return False


def paths(tree, prefix=()):
    """Every node's path: the argument indices from the root (`()` is the root)."""
    result = [prefix]
    if isinstance(tree, list):
        for i, argument in enumerate(tree[1:], start=1):
            result += paths(argument, prefix + (i,))
    return result


def subtree(tree, path):
    """The node at `path`."""
    for i in path:
        tree = tree[i]
    return tree


def replace(tree, path, new):
    """A copy of `tree` with the node at `path` replaced by `new`."""
    if not path:
        return copy.deepcopy(new)
    tree = copy.deepcopy(tree)
    parent = subtree(tree, path[:-1])
    parent[path[-1]] = copy.deepcopy(new)
    return tree


def valid(tree, regression=False, max_depth=MAX_DEPTH, max_size=MAX_SIZE):
    """Whether `tree` parses, fits the task and the size limits."""
    try:
        expression = expressions.Expression(tree)
    except ValueError:
        return False
    return (
        expression.regression == regression
        and expression.depth <= max_depth
        and expression.size <= max_size
    )


def crossover(rng, first, second):
    """`first` with a random subtree replaced by a random subtree of `second`."""
    target = rng.choice(paths(first))
    donor = subtree(second, rng.choice(paths(second)))
    return replace(first, target, donor)


def mutate(rng, tree, regression=False, max_depth=MAX_DEPTH, max_size=MAX_SIZE, attempts=20):
    """A valid mutant of `tree` (or a copy of it if no attempt is valid).

    One of: a random subtree in place of a node; a primitive replaced by
    another of the same arity, a leaf by another leaf; a constant scaled by a
    random factor; a node wrapped in a unary primitive; a tree replaced by one
    of its subtrees (hoist).
    """
    for _ in range(attempts):
        child = _mutate_once(rng, tree, regression)
        if valid(child, regression, max_depth, max_size):
            return child
    return copy.deepcopy(tree)


def _mutate_once(rng, tree, regression):
    path = rng.choice(paths(tree))
    node = subtree(tree, path)
    kind = rng.choice(("subtree", "point", "constant", "wrap", "hoist"))
    if kind == "subtree":
        return replace(tree, path, random_tree(rng, max_depth=3, regression=regression))
    if kind == "point":
        if isinstance(node, list):
            pool = UNARY if len(node) == 2 else BINARY
            return replace(tree, path, [rng.choice(pool), *node[1:]])
        return replace(tree, path, random_leaf(rng, regression))
    if kind == "constant":
        constants = [p for p in paths(tree) if isinstance(subtree(tree, p), float)]
        if not constants:
            return replace(tree, path, ["mul", float(rng.choice(CONSTANTS)), node])
        target = rng.choice(constants)
        return replace(
            tree, target, subtree(tree, target) * rng.choice((0.5, 0.8, 1.25, 2.0, -1.0))
        )
    if kind == "wrap":
        return replace(tree, path, [rng.choice(UNARY), node])
    inner = [p for p in paths(tree) if p and isinstance(subtree(tree, p), list)]
    return copy.deepcopy(subtree(tree, rng.choice(inner))) if inner else copy.deepcopy(tree)


def tournament(rng, fitnesses, size=3):
    """The index of the best (lowest fitness) of `size` random entrants."""
    entrants = [rng.randrange(len(fitnesses)) for _ in range(size)]
    return min(entrants, key=lambda i: fitnesses[i])
