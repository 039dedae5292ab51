"""Tests of the genetic operators on loss expressions."""

import random

import pytest

from tf_metaloss.losses import expressions
from tf_metaloss.search import genetics


def test_seeds_are_the_known_losses():
    trees = genetics.seed_trees()
    assert trees == [expressions.KNOWN[n] for n in genetics.SEEDS[False]]
    trees[0][0] = "changed"  # copies: the table is not modified
    assert expressions.KNOWN["crossentropy"][0] == "neg"
    assert genetics.seed_trees(regression=True) == [
        expressions.KNOWN["mse"],
        expressions.KNOWN["mae"],
    ]


@pytest.mark.parametrize("regression", [False, True])
def test_random_trees_are_valid_and_use_a_terminal(regression):
    rng = random.Random(0)
    for _ in range(200):
        tree = genetics.random_tree(rng, max_depth=4, regression=regression)
        expression = expressions.Expression(tree)
        assert expression.depth <= 4
        assert expression.regression == regression


def test_paths_subtree_and_replace():
    tree = ["add", "p_true", ["neg", 1.0]]
    assert genetics.paths(tree) == [(), (1,), (2,), (2, 1)]
    assert genetics.subtree(tree, (2, 1)) == 1.0
    replaced = genetics.replace(tree, (2, 1), "margin")
    assert replaced == ["add", "p_true", ["neg", "margin"]]
    assert tree == ["add", "p_true", ["neg", 1.0]]  # the original is left alone
    assert genetics.replace(tree, (), "p") == "p"


def test_crossover_takes_a_subtree_of_the_second_parent():
    rng = random.Random(1)
    first, second = ["neg", "log_p_true"], ["tanh", ["mul", 2.0, "margin"]]
    donors = [genetics.subtree(second, p) for p in genetics.paths(second)]
    for _ in range(50):
        child = genetics.crossover(rng, first, second)
        assert child in donors or (child[0] == "neg" and child[1] in donors)


def test_mutation_changes_trees_within_limits():
    rng = random.Random(2)
    tree = expressions.KNOWN["generalized_crossentropy"]
    children = [genetics.mutate(rng, tree, max_depth=5, max_size=12) for _ in range(100)]
    assert all(genetics.valid(c, max_depth=5, max_size=12) for c in children)
    assert sum(c != tree for c in children) > 80


def test_valid_rejects_wrong_task_and_large_trees():
    assert genetics.valid(["neg", "log_p_true"])
    assert not genetics.valid(["neg", "diff"])
    assert genetics.valid(["neg", "diff"], regression=True)
    assert not genetics.valid(["foo", "p_true"])
    deep = "p_true"
    for _ in range(7):
        deep = ["neg", deep]
    assert not genetics.valid(deep)


def test_tournament_returns_the_best_entrant():
    rng = random.Random(3)
    fitnesses = [5.0, 1.0, 3.0, float("inf")]
    picks = [genetics.tournament(rng, fitnesses, size=4) for _ in range(200)]
    # With 4 entrants drawn with replacement, index 1 wins whenever drawn.
    assert picks.count(1) > 100
    assert 3 not in picks or all(p == 3 for p in picks) is False
    assert genetics.tournament(rng, fitnesses, size=1) in range(4)
