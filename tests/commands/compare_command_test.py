import argparse
import json
import shlex

import pytest

from tf_metaloss.commands import arguments
from tf_metaloss.commands import compare
from tf_metaloss.commands import compare_types
from tf_metaloss.evaluation import config as config_lib
from tf_metaloss.evaluation import methods as methods_lib
from tf_metaloss.evaluation import report
from tf_metaloss.meta import estimators
from tf_metaloss.models.meta_model import MetaModel


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
        compare_types.parse_weights(text)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs", "0"], "argument --epochs: expected a positive integer, got '0'"),
        (["--noise", "1.5"], "argument --noise: expected a number in [0, 1], got '1.5'"),
        (["--seeds", "-1"], "argument --seeds: expected an integer >= 0, got '-1'"),
        (["--meta-every", "0"], "argument --meta-every: expected an integer >= 1, got '0'"),
        (["--momentum", "-0.1"], "argument --momentum: expected a non-negative number"),
        (["--dataset", "mnist"], "argument --dataset: expected 'digits', 'cifar10' (TFDS), "),
        (["--methods", "ce,nope"], "argument --methods: expected comma-separated names from"),
        (["--schedule-final", "gce"], "argument --schedule-final: expected 'name=weight"),
    ],
)
def test_invalid_values_are_usage_errors_naming_the_option(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parse(*argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seeds", "0", "0"], "argument --seeds: expected distinct integers >= 0, got (0, 0)"),
        (
            ["--meta-method", "neumann", "--unroll-steps", "2"],
            "Arguments --unroll-steps and --meta-method conflict: --unroll-steps=2 applies to "
            "--meta-method in ['second_order', 'first_order'] only. Received: "
            "--meta-method='neumann'.",
        ),
    ],
)
def test_settings_that_conflict_are_usage_errors_naming_the_options(argv, message):
    with pytest.raises(arguments.UsageError) as error:
        compare.config_from_args(_parse(*argv))
    assert message in str(error.value)


@pytest.mark.parametrize("name", sorted(estimators.ALIASES))
def test_meta_method_takes_the_registered_names(name):
    config = compare.config_from_args(_parse("--meta-method", name))
    assert config.meta_method == name
    assert f"--meta-method {name} " in config.command


def test_meta_method_takes_an_estimator_config_as_json():
    text = json.dumps(estimators.serialize(estimators.FiniteDifference(epsilon=0.01)))
    config = compare.config_from_args(_parse("--meta-method", text))
    assert config.estimator() == estimators.FiniteDifference(epsilon=0.01)
    assert config.meta_method == estimators.serialize(estimators.FiniteDifference(epsilon=0.01))


@pytest.mark.parametrize(
    "text, detail",
    [
        ("third_order", "got 'third_order'\n"),
        ("{terms: 2}", "got '{terms: 2}': Expecting property name"),
        (
            '{"class_name": "tf_metaloss>Neumann", "config": {"terms": -1}}',
            "Invalid value for argument `terms`. Expected an integer >= 0. Received: terms=-1",
        ),
    ],
)
def test_meta_method_rejects_other_values_with_a_usage_error(text, detail, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parse("--meta-method", text)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "argument --meta-method: expected one of ['second_order', 'first_order'," in error
    assert detail in error


def test_run_trains_the_learned_losses_with_the_meta_method(toy_npz, tmp_path, capsys, monkeypatch):
    """`--meta-method` reaches `MetaModel.compile` and the results files."""
    compiled = []
    original_compile = MetaModel.compile

    def compile(self, *args, **kwargs):
        original_compile(self, *args, **kwargs)
        compiled.append(self.meta_estimator)

    monkeypatch.setattr(MetaModel, "compile", compile)
    path = toy_npz(tmp_path / "toy.npz", n_train=40, n_val=10, classes=2, features=3, seed=2)
    out = tmp_path / "out"
    args = _parse(
        "--dataset",
        path,
        "--methods",
        "meta_loss",
        "--meta-method",
        "finite_difference",
        "--seeds",
        "0",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--hidden-units",
        "4",
        "--quiet",
        "--no-figures",
        "--output-dir",
        str(out),
    )
    assert compare.run(args) == 0
    assert compiled == [estimators.FiniteDifference()]
    results = report.read_results(out / "results.json")
    assert results["config"]["meta_method"] == "finite_difference"
    assert "--meta-method finite_difference" in results["config"]["command"]
    (run,) = results["runs"]
    # phi per epoch: its start (correction weight 0), then after the one epoch of meta steps.
    assert run["phi"]["phi/correction"][0] == pytest.approx(0.0)
    assert run["phi"]["phi/correction"][1] != run["phi"]["phi/correction"][0]
    assert run["final"]["skipped_updates"] == 0
    assert "meta-gradient finite_difference, unroll 1" in (out / "results.md").read_text()


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
    assert printed.startswith("2 methods x 1 seeds on ")
    assert f"go to {out}/results.json and results.md" in printed.splitlines()[0]
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


def test_a_preset_sets_what_is_not_given():
    args = _parse(
        "--preset",
        "cifar10-dev-full",
        "--dataset",
        "cifar10_dev.npz",
        "--noise",
        "0.4",
        "--noise-kind",
        "asymmetric",
        "--seeds",
        "0",
        "--methods",
        "glc,meta_loss",
    )
    config = compare.config_from_args(args)
    expected = config_lib.CompareConfig.from_preset(
        "cifar10-dev-full",
        dataset="cifar10_dev.npz",
        noise_rate=0.4,
        noise_kind="asymmetric",
        seeds=(0,),
        methods="glc,meta_loss",
    ).to_dict()
    got = config.to_dict()
    assert got.pop("command").startswith("tf-metaloss compare --preset cifar10-dev-full ")
    expected.pop("command")
    assert got == expected
    assert (config.model, config.hidden_units, config.epochs, config.batch_size) == (
        "cnn",
        128,
        30,
        128,
    )
    # Every option overrides the preset, including a subset of the training data.
    small = compare.config_from_args(
        _parse(
            "--preset",
            "cifar10-dev-full",
            "--dataset",
            "x.npz",
            "--epochs",
            "1",
            "--train-subset",
            "1000",
        )
    )
    assert (small.epochs, small.train_subset, small.model) == (1, 1000, "cnn")
    whole = compare.config_from_args(
        _parse("--preset", "cifar10-dev-smoke", "--dataset", "x.npz", "--train-subset", "all")
    )
    assert whole.train_subset is None and whole.model == "small_cnn"


def test_a_preset_without_its_dataset_is_an_error():
    with pytest.raises(
        arguments.UsageError,
        match="argument --dataset: expected a dataset for the preset 'cifar10-dev-full'"
        ".*--dataset /path/cifar10_dev.npz, got None",
    ):
        compare.config_from_args(_parse("--preset", "cifar10-dev-full"))


@pytest.mark.parametrize(
    "argv",
    [
        ("--preset", "cifar10-dev-full", "--dataset", "a b.npz", "--seeds", "2"),
        ("--preset", "cifar10-dev-smoke", "--dataset", "x.npz", "--train-subset", "all"),
        ("--preset", "digits-smoke", "--methods", "finetune", "--finetune-epochs", "3"),
        ("--preset", "cifar10-dev-imbalance", "--dataset", "x.npz"),
        ("--preset", "cifar10-dev-imbalance", "--dataset", "x.npz", "--imbalance", "100"),
        ("--methods", "ce", "--finetune-learning-rate", "0.2"),
        ("--meta-method", "conjugate_gradient"),
        ("--meta-method", '{"class_name": "tf_metaloss>Neumann", "config": {"terms": 2}}'),
        ("--meta-method", "first_order", "--unroll-steps", "2"),
        ("--preset", "sst2-tiny", "--dataset", "{sst2_dir}", "--noise", "0.3"),
        ("--dataset", "sst2", "--optimizer", "adam", "--lookahead-learning-rate", "0.1"),
    ],
)
def test_canonical_command_of_a_preset_reproduces_the_config(argv, tmp_path):
    sst2_dir = tmp_path / "glue sst2"  # a directory of SST-2 files, with a space
    sst2_dir.mkdir()
    (sst2_dir / "sst2_train.jsonl").write_text("")
    argv = [a.replace("{sst2_dir}", str(sst2_dir)) for a in argv]
    config = compare.config_from_args(_parse(*argv))
    again = compare.config_from_args(_parse(*shlex.split(config.command)[2:]))
    assert again.to_dict() == config.to_dict()


@pytest.mark.integration
def test_merge_combines_runs_split_by_method_and_seed(toy_npz, tmp_path, capsys):
    path = toy_npz(tmp_path / "toy.npz", n_train=60, n_val=30, classes=3, features=4)
    common = [
        "--dataset",
        path,
        "--noise",
        "0.4",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--hidden-units",
        "8",
        "--no-figures",
        "--quiet",
    ]
    parts = []
    for method, seed in (("ce", 0), ("meta_loss", 0), ("ce", 1), ("meta_loss", 1)):
        out = tmp_path / f"{method}_{seed}"
        argv = [*common, "--methods", method, "--seeds", str(seed), "--output-dir", str(out)]
        assert compare.run(_parse(*argv)) == 0
        parts.append(str(out / "results.json"))
    capsys.readouterr()
    merged_dir = tmp_path / "merged"
    assert (
        compare.run(_parse("--merge", *parts, "--output-dir", str(merged_dir), "--no-figures")) == 0
    )
    printed = capsys.readouterr().out
    assert printed.startswith("merged 4 runs from 4 files")
    assert "| MetaLoss (meta) | " in printed and "Paired differences" in printed
    merged = json.loads((merged_dir / "results.json").read_text())
    assert merged["config"]["seeds"] == [0, 1]
    assert [m["name"] for m in merged["methods"]] == ["ce", "meta_loss"]
    assert len(merged["runs"]) == 4 and len(merged["sources"]) == 4
    paired = merged["summary"]["meta_loss"]["paired"]["ce"]
    assert paired["n"] == 2 and set(paired["per_seed"]) == {"0", "1"}
    accuracy = {(r["method"], r["seed"]): r["final"]["val_accuracy"] for r in merged["runs"]}
    for seed in (0, 1):
        assert paired["per_seed"][str(seed)] == pytest.approx(
            accuracy["meta_loss", seed] - accuracy["ce", seed], abs=1e-6
        )
    assert "Merged from 4 result files" in (merged_dir / "results.md").read_text()
    # Merging a run with itself is refused.
    with pytest.raises(ValueError, match="is in both"):
        compare.run(_parse("--merge", parts[0], parts[0], "--output-dir", str(merged_dir)))


def test_merge_takes_no_training_options():
    with pytest.raises(ValueError, match="Received also: --epochs"):
        compare.run(_parse("--merge", "a.json", "--epochs", "3"))
    with pytest.raises(ValueError, match="Received also: --preset"):
        compare.run(_parse("--merge", "a.json", "--preset", "digits-smoke"))


@pytest.mark.integration
def test_sst2_from_jsonl_files_with_class_flip_noise(tmp_path, capsys):
    rows = [("a good , moving film", 1), ("dull and far too long", 0), ("great fun", 1)]
    rows += [("the plot is a mess", 0)]
    directory = tmp_path / "glue_sst2"
    directory.mkdir()
    for name, n in (("sst2_train.jsonl", 48), ("sst2_dev.jsonl", 8)):
        lines = [
            json.dumps({"sentence": rows[i % 4][0], "label": rows[i % 4][1]}) for i in range(n)
        ]
        (directory / name).write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    argv = ["--preset", "sst2-tiny", "--dataset", str(directory), "--noise", "0.5"]
    argv += ["--noise-kind", "asymmetric", "--methods", "ce,meta_loss", "--seeds", "0"]
    argv += ["--epochs", "1", "--hidden-units", "32", "--sequence-length", "12"]
    argv += ["--no-figures", "--quiet", "--output-dir", str(out)]
    assert compare.run(_parse(*argv)) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["data"]["name"] == "sst2" and results["data"]["input_shape"] == [12]
    assert 5 < results["data"]["vocabulary_size"] < 200  # words and word pieces
    # Class flip: half of the training positives labelled negative, no negative touched.
    transition = results["data"]["noise_transition"]
    assert transition[0] == [1.0, 0.0] and 0.3 < transition[1][0] < 0.7
    assert [r["method"] for r in results["runs"]] == ["ce", "meta_loss"]
    for run in results["runs"]:
        assert 0.0 <= run["final"]["val_accuracy"] <= 1.0
        assert 0.0 <= run["final"]["val_macro_f1"] <= 1.0
    assert "tiny_bert" in (out / "results.md").read_text()
    assert "| MetaLoss (meta) | " in capsys.readouterr().out


def test_imbalance_sets_its_methods_and_meta_objective_and_is_reproduced():
    args = _parse("--imbalance", "50", "--meta-per-class", "10", "--meta-sampler", "class_balanced")
    config = compare.config_from_args(args)
    assert (config.imbalance_ratio, config.meta_per_class) == (50.0, 10)
    assert config.methods == methods_lib.METHOD_SETS["imbalance"]
    assert config.meta_objective == "crossentropy" and config.meta_sampler == "class_balanced"
    argv = shlex.split(config.command)
    assert argv[argv.index("--imbalance") + 1] == "50" and "--meta-fraction" not in argv
    again = compare.config_from_args(_parse(*argv[2:]))
    assert again.to_dict() == config.to_dict()
    # Given options win over the imbalance defaults.
    chosen = compare.config_from_args(
        _parse("--imbalance", "10", "--methods", "ce", "--meta-objective", "focal")
    )
    assert chosen.methods == ("ce",) and chosen.meta_objective == "focal"
    assert compare.config_from_args(_parse()).imbalance_ratio is None


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--imbalance", "0.5"], "argument --imbalance: expected a number >= 1"),
        (["--meta-per-class", "0"], "argument --meta-per-class: expected a positive integer"),
        (["--meta-sampler", "x"], "argument --meta-sampler: invalid choice"),
    ],
)
def test_imbalance_options_reject_bad_values(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parse(*argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_meta_per_class_needs_imbalance():
    with pytest.raises(arguments.UsageError, match="--meta-per-class"):
        compare.config_from_args(_parse("--meta-per-class", "5"))


def test_run_with_imbalance_prints_the_rare_class_columns(toy_npz, tmp_path, capsys):
    path = toy_npz(tmp_path / "toy.npz", n_train=150, n_val=30, classes=3, features=4)
    args = _parse(
        "--dataset",
        path,
        "--imbalance",
        "5",
        "--meta-per-class",
        "4",
        "--methods",
        "ce,logit_adjusted,class_adjusted",
        "--seeds",
        "0",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--hidden-units",
        "8",
        "--no-figures",
        "--output-dir",
        str(tmp_path / "out"),
    )
    assert compare.run(args) == 0
    printed = capsys.readouterr().out
    assert "balanced acc %" in printed and "3 rarest classes acc %" in printed
    assert "| logit adjustment (tau=1) | " in printed
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["data"]["per_seed"]["0"]["train_class_counts"] == [46, 20, 9]


# -- the method "formula" --------------------------------------------------------------


def test_formula_trains_a_fixed_formula_beside_the_baselines(toy_npz, tmp_path, capsys):
    path = toy_npz(tmp_path / "toy.npz", n_train=40, n_val=10, classes=2, features=3, seed=3)
    out = tmp_path / "out"
    args = _parse(
        "--dataset",
        path,
        "--methods",
        "ce,formula",
        "--formula",
        "neg(log(add(p_true, 0.25)))",
        "--seeds",
        "0",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--hidden-units",
        "4",
        "--quiet",
        "--no-figures",
        "--output-dir",
        str(out),
    )
    assert compare.run(args) == 0
    assert "| formula: -log(p_true + 0.25) | " in capsys.readouterr().out
    results = report.read_results(out / "results.json")
    assert results["config"]["formula"] == "neg(log(add(p_true, 0.25)))"
    assert "--formula 'neg(log(add(p_true, 0.25)))'" in results["config"]["command"]
    ce, formula = results["runs"]
    assert (ce["method"], formula["method"]) == ("ce", "formula")
    assert formula["loss"] == "FormulaLoss"
    # Cross-entropy and the formula train from the same weights on the same data, and differ.
    assert ce["curves"]["loss"] != formula["curves"]["loss"]


def test_formula_takes_the_best_formula_of_a_search_log(tmp_path):
    from tf_metaloss.search import search as search_lib

    def candidate(key, tuned, fitness):
        record = {"status": "ok", "fitness": fitness, "tuned": tuned}
        return {"key": key, "record": record}

    log = {
        "version": search_lib.LOG_VERSION,
        "generations": [
            {
                "generation": 0,
                "candidates": [
                    candidate("ce", ["neg", "log_p_true"], 2.0),
                    candidate("truncated", ["neg", ["log", ["add", "p_true", 0.5]]], 1.0),
                ],
            }
        ],
    }
    path = tmp_path / "search_log.json"
    path.write_text(json.dumps(log))
    config = compare.config_from_args(_parse("--methods", "formula", "--formula", str(path)))
    assert config.formula == "neg(log(add(p_true, 0.5)))"


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--formula", "foo(p_true)"],
            "argument --formula: expected a loss formula in the function-call syntax",
        ),
        (
            ["--formula", "square(diff)"],
            "argument --formula: expected a classification formula",
        ),
    ],
)
def test_formula_rejects_what_is_not_a_classification_formula(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parse(*argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err, err


def test_the_method_formula_needs_a_formula():
    with pytest.raises(arguments.UsageError, match="--formula"):
        compare.config_from_args(_parse("--methods", "ce,formula"))
