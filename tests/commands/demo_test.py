import argparse
import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from tf_metaloss import cli
from tf_metaloss.commands import compare
from tf_metaloss.commands import demo
from tf_metaloss.evaluation import datasets
from tf_metaloss.evaluation import splits


def scalar_tags(directory):
    tags = set()
    for path in glob.glob(os.path.join(directory, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    return tags


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("demo_logs")
    return demo.run_demo(tiny=True, epochs=2, seed=0, logdir=str(logdir))


@pytest.fixture(scope="module")
def digits():
    return datasets.load_dataset("digits")


def _split(digits, **kwargs):
    seed = kwargs.get("seed", 0)
    return splits.make_split(digits, demo.demo_config(**kwargs), seed)


class TestDemoConfig:
    def test_a_preset_of_the_comparison(self):
        config = demo.demo_config()
        assert config.methods == tuple(demo.METHODS) == ("ce", "gce", "meta_loss")
        assert (config.dataset, config.model, config.hidden_units) == ("digits", "mlp", 128)
        assert (config.epochs, config.noise_rate, config.noise_kind) == (40, 0.4, "asymmetric")
        assert (config.meta_fraction, config.meta_labels, config.seeds) == (0.1, "clean", (0,))
        tiny = demo.demo_config(tiny=True, noisy_meta=True, seed=3)
        assert (tiny.epochs, tiny.hidden_units, tiny.train_subset) == (2, 16, 284)
        assert (tiny.meta_labels, tiny.seeds) == ("noisy", (3,))
        assert demo.demo_config(noise_kind="asymmetric").noise_kind == "asymmetric"

    def test_sizes_and_noise(self, digits):
        split = _split(digits, noise=0.4, noisy_meta=True, noise_kind="symmetric")
        # digits: 1,437 training images, 10% of them (144) held out as meta.
        assert len(split.x_meta) == 144 and len(split.x_train) == 1293
        assert len(split.x_eval) == 360
        # Exactly 40% of the 1,437 labels are flipped, before the meta split.
        assert int(split.noisy_mask.sum() + split.meta_noisy_mask.sum()) == round(0.4 * 1437)
        np.testing.assert_array_equal(split.noisy_mask, split.y_train != split.y_train_clean)
        # The default, asymmetric: 40% of each of the five flipped classes, no other.
        split = _split(digits, noise=0.4, noisy_meta=True)
        y, noisy = split.y_train_clean, split.y_train
        for source, target in {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}.items():
            assert set(noisy[(y == source) & (noisy != y)]) == {target}
        assert not (noisy != y)[np.isin(y, [0, 1, 6, 7, 8])].any()

    def test_meta_set_is_disjoint_from_training_and_validation(self, digits):
        split = _split(digits)
        meta_rows = set(map(bytes, split.x_meta))
        # Digits contains a few duplicate images, so allow a handful.
        assert len(meta_rows & set(map(bytes, split.x_train))) <= 2
        assert len(meta_rows & set(map(bytes, split.x_eval))) <= 2

    def test_meta_labels_clean_unless_noisy_meta(self, digits):
        clean = _split(digits, noise=0.4)
        noisy = _split(digits, noise=0.4, noisy_meta=True)
        np.testing.assert_array_equal(clean.x_meta, noisy.x_meta)
        assert not clean.meta_noisy_mask.any()
        flipped = int((clean.y_meta != noisy.y_meta).sum())
        assert flipped == int(noisy.meta_noisy_mask.sum()) > 0
        np.testing.assert_array_equal(clean.y_train, noisy.y_train)

    def test_tiny_keeps_256_training_samples(self, digits):
        split = _split(digits, tiny=True)
        assert (len(split.x_train), len(split.x_meta)) == (256, 28)


class TestRunDemo:
    def test_result_is_well_formed(self, tiny_result):
        names = [m["name"] for m in tiny_result["methods"]]
        assert names == list(demo.METHODS)
        runs = {r["method"]: r for r in tiny_result["runs"]}
        for name in names:
            final, curves = runs[name]["final"], runs[name]["curves"]
            assert 0.0 <= final["val_accuracy"] <= 1.0
            assert final["wall_time_s"] > 0
            assert len(curves["val_accuracy"]) == 2
            assert final["val_accuracy"] == curves["val_accuracy"][-1]
        c = runs["meta_loss"]["phi"]["phi/correction"]
        assert len(c) == 3  # the start and 2 epochs
        assert all(0.0 <= v <= 1.0 for v in c)
        per_seed = tiny_result["data"]["per_seed"]["0"]
        assert per_seed["num_train"] == 256
        split = splits.make_split(
            datasets.load_dataset("digits"), demo.demo_config(tiny=True), seed=0
        )
        assert round(per_seed["train_noise_rate"] * 256) == int(split.noisy_mask.sum())
        assert tiny_result["demo"]["tiny"] is True

    def test_baselines_are_fixed_and_metaloss_learns(self, tiny_result):
        runs = {r["method"]: r for r in tiny_result["runs"]}
        assert (runs["ce"]["loss"], runs["gce"]["loss"]) == ("FixedLoss", "FixedLoss")
        assert runs["ce"]["phi"] == {} and runs["gce"]["phi"] == {}
        learned = runs["meta_loss"]["phi"]
        assert runs["meta_loss"]["loss"] == "MetaLoss"
        assert list(learned) == ["phi/correction"]
        assert learned["phi/correction"][0] == 0.0
        # The weight of the correction moved (the guard may set it back at the end).
        assert max(learned["phi/correction"]) > 0.0
        # The fixed losses trained on the training and meta samples; the learned
        # loss on the training samples only.
        data = {m["name"]: m["train_data"] for m in tiny_result["methods"]}
        assert data == {"ce": "train+meta", "gce": "train+meta", "meta_loss": "train"}

    def test_writes_tensorboard_event_files(self, tiny_result):
        logdir = tiny_result["demo"]["logdir"]
        for name in demo.METHODS:
            assert "epoch_loss" in scalar_tags(os.path.join(logdir, name, "train"))
            assert "epoch_accuracy" in scalar_tags(os.path.join(logdir, name, "validation"))
        meta_tags = scalar_tags(os.path.join(logdir, "meta_loss", "train"))
        assert "epoch_phi/correction" in meta_tags
        assert "epoch_meta_objective" in meta_tags

    def test_format_result_prints_table_and_learned_phi(self, tiny_result):
        text = demo.format_result(tiny_result)
        lines = text.splitlines()
        header = lines[1]
        assert header.startswith("method ") and header.endswith(
            " | clean val accuracy | train time (s)"
        )
        for run, label in zip(tiny_result["runs"], demo.METHODS.values()):
            row = next(line for line in lines if line.startswith(label + " "))
            assert f"{run['final']['val_accuracy']:.4f}" in row
        assert "assumed clean" in text
        c = next(r for r in tiny_result["runs"] if r["method"] == "meta_loss")["phi"]
        c = c["phi/correction"]
        assert "learned loss (MetaLoss parameters over 2 epochs: start, min, max, end):" in text
        assert f"  correction  0 -> min 0 (at the start), max {max(c):.3g}" in text
        assert "train time: seconds in fit, without measuring accuracy each epoch" in text
        assert "verdict: MetaLoss (meta-learned) " in text
        assert "--tiny" in text
        assert all(len(line) <= 100 for line in text.splitlines()[5:])

    @pytest.mark.parametrize(
        "kwargs, match",
        [({"epochs": 0}, "argument `epochs`"), ({"noise": 1.0}, "argument `noise`")],
    )
    def test_bad_arguments(self, kwargs, match, tmp_path):
        with pytest.raises(ValueError, match=match):
            demo.run_demo(tiny=True, logdir=str(tmp_path / "logs"), **kwargs)
        assert not (tmp_path / "logs").exists()


class TestDemoCommand:
    def test_cli_runs_and_prints_the_table(self, tmp_path, capsys):
        logdir = tmp_path / "logs"
        code = cli.main(
            [
                "demo",
                "--tiny",
                "--epochs",
                "1",
                "--noise",
                "0.2",
                "--seed",
                "3",
                "--noisy-meta",
                "--noise-kind",
                "asymmetric",
                "--logdir",
                str(logdir),
            ]
        )
        out = capsys.readouterr().out
        assert code == 0
        assert "clean val accuracy" in out
        assert "(noisy)" in out and "--noisy-meta" in out
        split = splits.make_split(
            datasets.load_dataset("digits"),
            demo.demo_config(
                tiny=True, noise=0.2, seed=3, noisy_meta=True, noise_kind="asymmetric"
            ),
            seed=3,
        )
        assert f"{int(split.noisy_mask.sum())}/256 training labels flipped" in out
        assert "(asymmetric noise: 20% of each of the classes 2->0, 3->5, 4->7, 5->3, 9->1)" in out
        assert "training with cross-entropy, generalized CE (q=0.7), MetaLoss" in out
        assert sorted(os.listdir(logdir)) == ["ce", "gce", "meta_loss"]

    @pytest.mark.parametrize(
        "argv, message",
        [
            (["--epochs", "0"], "expected a positive integer"),
            (["--epochs", "two"], "expected a positive integer"),
            (["--noise", "1.5"], "expected a noise rate in [0, 1)"),
            (["--noise", "x"], "expected a noise rate in [0, 1)"),
            (["--noise-kind", "uniform"], "invalid choice: 'uniform'"),
        ],
    )
    def test_bad_options_exit_2(self, argv, message, capsys):
        assert cli.main(["demo", *argv]) == 2
        err = capsys.readouterr().err
        assert "tf-metaloss demo: error:" in err
        assert message in err

    def test_bad_logdir_exits_1_before_training(self, tmp_path, capsys):
        blocker = tmp_path / "a_file"
        blocker.write_text("")
        assert cli.main(["demo", "--tiny", "--logdir", str(blocker / "logs")]) == 1
        captured = capsys.readouterr()
        assert captured.err.startswith("tf-metaloss demo: error: Cannot create the log directory")
        assert "Not a directory" in captured.err
        assert "training with" not in captured.out

    def test_help(self, capsys):
        assert cli.main(["demo", "--help"]) == 0
        out = capsys.readouterr().out
        for option in ("--epochs", "--noise", "--seed", "--logdir", "--noisy-meta", "--tiny"):
            assert option in out


class TestReport:
    """What the demo says the learned loss learned, and how it did."""

    def test_the_run_records_the_bounds_of_the_learned_parameters(self, tiny_result):
        runs = {r["method"]: r for r in tiny_result["runs"]}
        assert runs["meta_loss"]["phi_bounds"] == {"phi/correction": [0.0, 1.0]}
        assert runs["ce"]["phi_bounds"] == {}

    def test_the_path_of_every_parameter_of_any_family(self):
        run = {
            "loss": "PolynomialLoss",
            "phi": {
                "phi/coefficient_1": [0.0, 0.2, 0.5, 0.1, 0.0, 0.0, 0.0],
                "phi/coefficient_2": [1.0, 1.5, 2.0, 3.0, 2.5, 2.5, 2.25],
                "phi/bias_norm": [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5],
            },
            "phi_bounds": {"phi/coefficient_1": [0.0, None], "phi/coefficient_2": [0.0, 3.0]},
        }
        lines = demo.learned_parameters(run, 6)
        assert lines == [
            "learned loss (PolynomialLoss parameters over 6 epochs: start, min, max, end):",
            "  coefficient_1  0 -> min 0 (at the start), max 0.5 (epoch 2) -> 0; at its lower "
            "bound 0 after 3 of the 6 epochs, from epoch 4 on",
            "  coefficient_2  1 -> min 1 (at the start), max 3 (epoch 3) -> 2.25; at its upper "
            "bound 3 after 1 of the 6 epochs (first after epoch 3, last after epoch 3)",
            "  bias_norm      0.5 throughout",
        ]

    def test_a_bound_left_and_reached_again(self):
        q = [0.7, 0.5, 0.7, 0.69, 0.7, 0.7]
        run = {"loss": "MetaLoss", "phi": {"phi/q": q}, "phi_bounds": {"phi/q": [0.001, 0.7]}}
        assert demo.learned_parameters(run, 5)[1].endswith(
            "at its upper bound 0.7 after 3 of the 5 epochs, from epoch 2 on (but epoch 3)"
        )

    def test_the_verdict_is_computed_from_the_accuracies(self):
        runs = {
            name: {"final": {"val_accuracy": right / 360}}
            for name, right in [("ce", 320), ("gce", 343), ("meta_loss", 343), ("other", 350)]
        }
        labels = {"ce": "cross-entropy", "meta_loss": "MetaLoss"}
        assert demo.verdict(runs, "meta_loss", ["ce", "gce", "other"], labels, 360) == (
            "verdict: MetaLoss beat cross-entropy by 6.4 points (23 of 360 validation samples), "
            "tied gce (343 of 360 right) and trailed other by 1.9 points (7 of 360 validation "
            "samples); one seed, so a gap of a few samples is noise."
        )

    def test_the_demo_times_its_methods_after_a_warm_up(self, tmp_path, monkeypatch, capsys):
        calls = []
        original = demo._warm_up
        monkeypatch.setattr(demo, "_warm_up", lambda *a: calls.append(a) or original(*a))
        assert cli.main(["demo", "--epochs", "1", "--logdir", str(tmp_path)]) == 0
        out = capsys.readouterr().out
        assert len(calls) == 1
        assert "train time: seconds in fit after an untimed warm-up run, without measuring" in out
        progress = [line for line in out.splitlines() if line.startswith("[")]
        assert len(progress) == 3 and not any(" conv " in line for line in progress)
        assert progress[0].startswith("[1/3] cross-entropy: clean val accuracy 0.")
        assert "s measuring accuracy after each epoch" in progress[0]
        # The hint for several seeds runs the same comparison.
        hint = out.split("several seeds: ", 1)[1].split("\nsettings:")[0].replace("\n  ", " ")
        argv = hint.split()[2:]
        assert argv[-4:] == ["--seeds", "0", "1", "2"]
        parser = argparse.ArgumentParser()
        compare.register(parser.add_subparsers(dest="command"))
        config = compare.config_from_args(
            parser.parse_args(["compare", *argv[:-4], "--seeds", "0"])
        )
        expected = demo.demo_config(epochs=1).to_dict()
        got = config.to_dict()
        expected.pop("command"), got.pop("command")
        assert got == expected
