"""Tests of the executors: this process, local worker processes and Ray."""

import pytest

import tf_metaloss as tml
from tf_metaloss.losses import expressions
from tf_metaloss.search import executors

TREES = [
    expressions.KNOWN["crossentropy"],
    expressions.KNOWN["mae_classification"],
    ["pow", "p_true", -100.0],  # rejected by the screen
    ["neg", "log_p_true"],
]


@pytest.fixture(scope="module")
def task():
    digits = tml.evaluation.load_digits()
    return tml.search.make_task(
        digits, train_subset=200, hidden_units=8, epochs=1, tune_epochs=1, batch_size=32
    )


@pytest.fixture(scope="module")
def serial(task):
    with executors.SerialExecutor().start(task) as executor:
        return executor.evaluate(TREES)


def _same(records, expected):
    assert [r["status"] for r in records] == [r["status"] for r in expected]
    assert [r["reason"] for r in records] == [r["reason"] for r in expected]
    for r, e in zip(records, expected):
        if e["status"] == "ok":
            assert r["fitness"] == pytest.approx(e["fitness"], rel=1e-4)
            assert r["accuracy"] == pytest.approx(e["accuracy"])


def test_get():
    assert isinstance(executors.get("local", workers=1), executors.SerialExecutor)
    assert executors.get("local", workers=2).workers == 2
    assert isinstance(executors.get("ray", address="auto"), executors.RayExecutor)
    with pytest.raises(ValueError, match="argument `executor`"):
        executors.get("spark")
    with pytest.raises(ValueError, match="argument `workers`"):
        executors.get("local", workers=0)


def test_serial_records(serial):
    assert [r["status"] for r in serial] == ["ok", "ok", "rejected", "ok"]


@pytest.mark.integration
def test_worker_processes_give_the_serial_results(task, serial):
    with executors.ProcessExecutor(workers=2).start(task) as executor:
        _same(executor.evaluate(TREES), serial)


@pytest.mark.integration
def test_ray_gives_the_serial_results(task, serial):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with executors.RayExecutor(address=None).start(task) as executor:
            _same(executor.evaluate(TREES), serial)
    finally:
        ray.shutdown()
