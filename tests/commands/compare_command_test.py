import argparse
import json
import shlex

import pytest

from tf_metaloss.commands import compare
from tf_metaloss.evaluation import config as config_lib
from tf_metaloss.evaluation import methods as methods_lib


def _parser():
    parser = argparse.ArgumentParser(prog="tf-metaloss")
    compare.register(parser.add_subparsers(dest="command"))
    return parser


def _parse(*argv):
    return _parser().parse_args(["compare", *argv])


def test_defaults_match_the_library_config():
    args = _parse()
    assert args.func is compare.run
    config = compare.config_from_args(args)
    expected = config_lib.CompareConfig().to_dict()
    got = config.to_dict()
    assert got.pop("command").startswith("tf-metaloss compare --dataset digits")
    expected.pop("command")
    assert got == expected


def test_arguments_reach_the_config():
    args = _parse(
        "--dataset",
        "x.npz",
        "--noise",
        "0.4",
        "--methods",
        "ce,learned",
        "--seeds",
        "3",
        "4",
        "--epochs",
        "7",
        "--model",
        "small_cnn",
        "--train-subset",
        "500",
        "--eval-split",
        "holdout",
        "--meta-labels",
        "noisy",
        "--meta-every",
        "5",
        "--meta-clipnorm",
        "1.5",
        "--regularization",
        "0.1",
        "--schedule-final",
        "crossentropy=1,mae_classification=3",
    )
    config = compare.config_from_args(args)
    assert config.noise_rate == 0.4 and config.seeds == (3, 4)
    assert config.methods == ("ce",) + methods_lib.METHOD_SETS["learned"]
    assert (config.model, config.train_subset, config.eval_split) == ("small_cnn", 500, "holdout")
    assert (config.meta_labels, config.meta_every, config.meta_clipnorm) == ("noisy", 5, 1.5)
    assert config.schedule_final == {"crossentropy": 1.0, "mae_classification": 3.0}


def test_canonical_command_reproduces_the_config():
    args = _parse(
        "--noise",
        "0.4",
        "--methods",
        "ce,gce",
        "--seeds",
        "1",
        "--meta-clipnorm",
        "2",
        "--meta-batch-size",
        "256",
        "--eval-split",
        "holdout",
        "--output-dir",
        "out dir",
    )
    config = compare.config_from_args(args)
    argv = shlex.split(config.command)
    assert argv[:2] == ["tf-metaloss", "compare"]
    again = compare.config_from_args(_parse(*argv[2:]))
    assert again.to_dict() == config.to_dict()
    assert "'out dir'" in config.command


@pytest.mark.parametrize("text", ["gce", "=1", "a=b", "a=1,,b=2"])
def test_parse_weights_rejects_malformed_text(text):
    with pytest.raises(ValueError, match="--schedule-final"):
        compare.parse_weights(text)


def test_invalid_values_raise_keras_style_errors():
    with pytest.raises(ValueError, match="Invalid value for argument `epochs`"):
        compare.config_from_args(_parse("--epochs", "0"))


@pytest.mark.integration
def test_run_writes_results_and_prints_the_table(toy_npz, tmp_path, capsys):
    path = toy_npz(tmp_path / "toy.npz", n_train=60, n_val=30, classes=3, features=4)
    out = tmp_path / "out"
    args = _parse(
        "--dataset",
        path,
        "--noise",
        "0.2",
        "--methods",
        "ce,frozen",
        "--seeds",
        "0",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--hidden-units",
        "8",
        "--output-dir",
        str(out),
    )
    assert compare.run(args) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("tf-metaloss compare --dataset ")
    assert "[1/2] seed 0 ce" in printed and "[2/2] seed 0 frozen" in printed
    assert "| cross-entropy | " in printed and "| MetaLoss frozen at phi_0 | " in printed
    assert "wrote learning_curves:" in printed
    results = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in results["runs"]] == ["ce", "frozen"]
    assert results["config"]["command"].startswith("tf-metaloss compare")
    assert (out / "results.md").read_text().startswith("# Loss comparison: toy.npz")
    assert (out / "phi.png").read_bytes()[:4] == b"\x89PNG"


def test_quiet_prints_only_the_results(toy_npz, tmp_path, capsys):
    path = toy_npz(tmp_path / "toy.npz", n_train=30, n_val=10, classes=2, features=3, seed=1)
    args = _parse(
        "--dataset",
        path,
        "--methods",
        "ce",
        "--seeds",
        "0",
        "--epochs",
        "1",
        "--quiet",
        "--no-figures",
        "--output-dir",
        str(tmp_path / "out"),
    )
    assert compare.run(args) == 0
    printed = capsys.readouterr().out
    assert "seed 0 ce" not in printed and "| cross-entropy | " in printed
    assert not (tmp_path / "out" / "learning_curves.png").exists()
