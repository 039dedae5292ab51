"""Tests of a candidate's fitness: the screen, constant tuning and the proxy run."""

import numpy as np
import pytest

import tf_metaloss as tml
from tf_metaloss.losses import expressions
from tf_metaloss.search import fitness


@pytest.fixture(scope="module")
def task():
    digits = tml.evaluation.load_digits()
    return tml.search.make_task(
        digits, train_subset=300, hidden_units=8, epochs=2, tune_epochs=1, batch_size=32
    )


@pytest.mark.parametrize(
    "text, reason",
    [
        ("pow(p_true, -100)", "non-finite loss"),
        ("mul(0, log_p_true)", "no gradient"),
        ("log(pow(p_true, 0))", "no gradient"),
        ("neg(log_p_true)", None),
        ("margin", None),
    ],
)
def test_screen(text, reason):
    result = fitness.screen(expressions.Expression(text), num_classes=10)
    if reason is None:
        assert result is None
    else:
        assert reason in result


def test_a_candidate_is_tuned_then_scored_on_the_holdout(task):
    record = fitness.evaluate_candidate(expressions.KNOWN["generalized_crossentropy"], task)
    assert record["status"] == "ok" and record["reason"] is None
    tuned = expressions.Expression(record["tuned"])
    assert tuned.constants != [1.0, 0.7, 0.7]  # tuned by the meta-gradient
    assert record["formula"] == tuned.formula()
    assert 0.0 <= record["accuracy"] <= 1.0 and 0.0 <= record["fitness"] <= 2.0
    again = fitness.evaluate_candidate(expressions.KNOWN["generalized_crossentropy"], task)
    assert again["fitness"] == pytest.approx(record["fitness"], rel=1e-5)


def test_without_tuning_the_constants_stay(task):
    import dataclasses

    untuned = dataclasses.replace(task, tune_epochs=0, objective="error")
    record = fitness.evaluate_candidate(["div", ["sub", 1.0, ["pow", "p_true", 0.7]], 0.7], untuned)
    assert record["tuned"] == [["div", ["sub", 1.0, ["pow", "p_true", 0.7]], 0.7]][0]
    assert record["fitness"] == pytest.approx(1.0 - record["accuracy"])


@pytest.mark.parametrize(
    "tree, reason",
    [
        (["foo", "p_true"], "invalid expression"),
        (["neg", "diff"], "regression expression"),
        (["pow", "p_true", -100.0], "non-finite loss"),
    ],
)
def test_rejections_name_the_reason(task, tree, reason):
    record = fitness.evaluate_candidate(tree, task)
    assert record["status"] == "rejected" and reason in record["reason"]
    assert record["fitness"] is None and record["seconds"] >= 0


def test_task_summary_and_checks(task):
    summary = task.summary()
    assert (summary["n_train"], summary["n_meta"], summary["n_holdout"]) == (240, 30, 30)
    assert "x_train" not in summary and summary["epochs"] == 2
    np.testing.assert_array_equal(np.unique(task.y_meta).size > 1, True)
    with pytest.raises(ValueError, match="argument `objective`"):
        fitness.ProxyTask(**{**_arrays(task), "num_classes": 10, "objective": "accuracy"})
    with pytest.raises(ValueError, match="argument `x_meta`.*0 samples"):
        fitness.ProxyTask(**{**_arrays(task), "x_meta": task.x_meta[:0], "num_classes": 10})


def _arrays(task):
    names = ("train", "meta", "holdout")
    return {f"{p}_{n}": getattr(task, f"{p}_{n}") for n in names for p in ("x", "y")}


def test_make_task_holds_out_clean_labels_from_the_training_split():
    digits = tml.evaluation.load_digits()
    task = tml.search.make_task(digits, noise=0.4, seed=1)
    n = len(digits.x_train)
    assert len(task.x_train) + len(task.x_meta) + len(task.x_holdout) == n
    # The meta and holdout labels are clean: they match the dataset's labels.
    rows = {x.tobytes(): y for x, y in zip(digits.x_train, digits.y_train)}
    assert all(rows[x.tobytes()] == y for x, y in zip(task.x_holdout, task.y_holdout))
    assert all(rows[x.tobytes()] == y for x, y in zip(task.x_meta, task.y_meta))
    wrong = np.mean([rows[x.tobytes()] != y for x, y in zip(task.x_train, task.y_train)])
    assert wrong == pytest.approx(0.4, abs=0.01)
    with pytest.raises(ValueError, match="argument `noise`"):
        tml.search.make_task(digits, noise=1.5)


def test_an_error_while_training_rejects_the_candidate(task, monkeypatch):
    def broken(expression, task):
        raise RuntimeError("the device is on fire\nsecond line")

    monkeypatch.setattr(fitness, "tune_constants", broken)
    record = fitness.evaluate_candidate(expressions.KNOWN["generalized_crossentropy"], task)
    assert record["status"] == "rejected"
    assert record["reason"] == "error: RuntimeError: the device is on fire"
