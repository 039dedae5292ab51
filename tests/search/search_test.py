"""Tests of the search loop: evolution, the cache, the log, resuming, the report."""

import json

import pytest

import tf_metaloss as tml
from tf_metaloss.losses import expressions
from tf_metaloss.search import search


class CountingExecutor:
    """Scores a tree by its size (smaller is better) and counts what it scores."""

    def __init__(self):
        self.scored = []

    def start(self, task):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def evaluate(self, trees):
        records = []
        for tree in trees:
            self.scored.append(expressions.Expression(tree).canonical())
            expression = expressions.Expression(tree)
            reject = "margin" in expression.to_string()
            records.append(
                {
                    "expression": tree,
                    "status": "rejected" if reject else "ok",
                    "reason": "margin is not allowed here" if reject else None,
                    "fitness": None if reject else float(expression.size),
                    "accuracy": None if reject else 1.0 / expression.size,
                    "tuned": tree,
                    "formula": expression.formula(),
                    "seconds": 0.0,
                }
            )
        return records


class FakeTask:
    def summary(self):
        return {
            "n_train": 10,
            "n_meta": 2,
            "n_holdout": 2,
            "epochs": 1,
            "tune_epochs": 0,
            "objective": "error",
        }


CONFIG = dict(population=8, tournament=2, elite=2, seed=3)


def test_first_generation_starts_from_the_known_losses():
    executor = CountingExecutor()
    log = search.run_search(
        FakeTask(), search.SearchConfig(generations=1, **CONFIG), executor=executor
    )
    first = [c["expression"] for c in log["generations"][0]["candidates"]]
    assert first[:4] == [
        expressions.KNOWN[n]
        for n in ("crossentropy", "generalized_crossentropy", "mae_classification", "focal")
    ]
    assert len(first) == 8


def test_equivalent_trees_are_scored_once_and_the_best_survives(tmp_path):
    executor = CountingExecutor()
    config = search.SearchConfig(generations=4, **CONFIG)
    log = search.run_search(FakeTask(), config, str(tmp_path / "log.json"), executor=executor)
    assert len(executor.scored) == len(set(executor.scored))
    assert sum(g["evaluated"] for g in log["generations"]) == len(executor.scored)
    cached = [c for g in log["generations"][1:] for c in g["candidates"] if c["cached"]]
    assert len(cached) >= 2 * 3  # at least the two elite in every later generation
    curve = search.fitness_curves(log)["best so far"]
    assert curve == sorted(curve, reverse=True)  # elitism: never worse
    best = search.best_candidates(log, 3)
    assert [b["fitness"] for b in best] == sorted(b["fitness"] for b in best)
    rejected = [
        c
        for g in log["generations"]
        for c in g["candidates"]
        if c["record"]["status"] == "rejected"
    ]
    assert all(c["record"]["reason"] == "margin is not allowed here" for c in rejected)


def test_a_resumed_search_continues_as_if_never_stopped(tmp_path):
    straight = search.run_search(
        FakeTask(), search.SearchConfig(generations=3, **CONFIG), executor=CountingExecutor()
    )
    path = str(tmp_path / "log.json")
    search.run_search(
        FakeTask(), search.SearchConfig(generations=1, **CONFIG), path, executor=CountingExecutor()
    )
    second = CountingExecutor()
    resumed = search.run_search(
        FakeTask(), search.SearchConfig(generations=3, **CONFIG), path, executor=second
    )
    assert [g["candidates"] for g in resumed["generations"]] == [
        g["candidates"] for g in straight["generations"]
    ]
    # Only generations 1 and 2 ran again; the cache came back from the log.
    assert len(second.scored) == sum(g["evaluated"] for g in straight["generations"][1:])
    assert search.load_log(path)["generations"][-1]["generation"] == 2


def test_resume_needs_the_same_settings_and_a_search_log(tmp_path):
    path = tmp_path / "log.json"
    search.run_search(
        FakeTask(),
        search.SearchConfig(generations=1, **CONFIG),
        str(path),
        executor=CountingExecutor(),
    )
    with pytest.raises(ValueError, match="argument `config`.*evolution settings"):
        search.run_search(
            FakeTask(),
            search.SearchConfig(generations=2, population=9, seed=3),
            str(path),
            executor=CountingExecutor(),
        )
    restarted = search.run_search(
        FakeTask(),
        search.SearchConfig(generations=1, population=9, seed=3),
        str(path),
        executor=CountingExecutor(),
        resume=False,
    )
    assert len(restarted["generations"][0]["candidates"]) == 9
    path.write_text(json.dumps({"something": "else"}))
    with pytest.raises(ValueError, match="argument `log_path`.*search log"):
        search.load_log(str(path))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"population": 3}, "argument `population`"),
        ({"elite": 12}, "argument `elite`"),
        ({"crossover_rate": 1.5}, "argument `crossover_rate`"),
        ({"generations": 0}, "argument `generations`"),
    ],
)
def test_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        search.SearchConfig(**kwargs)


def test_report_lists_the_best_formulas_and_draws_the_curve(tmp_path):
    log = search.run_search(
        FakeTask(), search.SearchConfig(generations=2, **CONFIG), executor=CountingExecutor()
    )
    paths = tml.search.write_report(log, str(tmp_path))
    with open(paths["report"]) as file:
        text = file.read()
    best = search.best_candidates(log, 1)[0]
    assert "# Loss search report" in text and f"{best['fitness']:.4f}" in text
    assert "- crossentropy: fitness" in text
    with open(paths["figure"], "rb") as file:
        assert file.read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_real_search_on_digits(tmp_path):
    digits = tml.evaluation.load_digits()
    task = tml.search.make_task(digits, train_subset=200, hidden_units=8, epochs=1, tune_epochs=0)
    log = search.run_search(
        task, search.SearchConfig(population=4, generations=2, elite=1), str(tmp_path / "log.json")
    )
    assert len(log["generations"]) == 2
    statuses = {c["record"]["status"] for g in log["generations"] for c in g["candidates"]}
    assert "ok" in statuses
    assert search.load_log(str(tmp_path / "log.json"))["generations"] == json.loads(
        json.dumps(log["generations"])
    )
