"""Tests of `tf-metaloss search` (tiny mode on digits; usage errors)."""

import json
import os

import pytest

from tf_metaloss import cli
from tf_metaloss.commands import search as search_command


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("search")
    code = cli.main(["search", "--tiny", "--output", str(output)])
    return code, output


def test_tiny_search_writes_log_report_and_figure(tiny_run, capsys):
    code, output = tiny_run
    assert code == 0
    with open(output / "search_log.json") as file:
        log = json.load(file)
    assert len(log["generations"]) == search_command.TINY["generations"]
    assert all(
        len(g["candidates"]) == search_command.TINY["population"] for g in log["generations"]
    )
    assert log["task"]["n_train"] == 240 and log["task"]["epochs"] == 1
    with open(output / "report.md") as file:
        report = file.read()
    assert "| rank | formula (tuned constants) |" in report
    assert (output / "fitness.png").stat().st_size > 1000


def test_running_again_resumes_without_training(tiny_run, capsys):
    code, output = tiny_run
    before = os.path.getmtime(output / "search_log.json")
    assert cli.main(["search", "--tiny", "--output", str(output)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Resuming: digits")
    assert "generation" not in out.split("\n", 1)[1].split("Best formula")[0]
    assert os.path.getmtime(output / "search_log.json") == before
    assert "Best formula:" in out and "Report:" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--population", "0"], "argument --population: expected a positive integer"),
        (["--noise", "1"], "argument --noise: expected a noise rate in [0, 1)"),
        (["--executor", "spark"], "argument --executor: invalid choice: 'spark'"),
        (["--address", "auto"], "argument --address: only with --executor ray"),
        (["--dataset", "nothing"], "--dataset"),
    ],
)
def test_bad_options_exit_2(argv, message, capsys, tmp_path):
    assert cli.main(["search", "--tiny", "--output", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


def test_help(capsys):
    assert cli.main(["search", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--executor {local,ray}" in out and "resume" in out


@pytest.mark.integration
def test_tiny_search_on_a_local_ray(tmp_path, capsys):
    pytest.importorskip("ray")
    argv = ["search", "--tiny", "--executor", "ray", "--workers", "2", "--output", str(tmp_path)]
    assert cli.main(argv) == 0
    with open(tmp_path / "search_log.json") as file:
        log = json.load(file)
    assert len(log["generations"]) == search_command.TINY["generations"]
    assert "Best formula:" in capsys.readouterr().out
