import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from tf_metaloss import cli
from tf_metaloss.commands import demo


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


class TestPrepareData:
    def test_sizes_and_noise(self):
        data = demo.prepare_data(noise=0.4, seed=0)
        # digits: 1,437 training images, 10% of them (144) held out as meta.
        assert len(data.x_meta) == 144 and len(data.x_train) == 1293
        assert len(data.x_val) == 360
        assert int(data.noise_mask.sum()) == round(0.4 * 1293)
        np.testing.assert_array_equal(data.noise_mask, data.y_train != data.y_train_clean)

    def test_meta_set_is_disjoint_from_training_and_validation(self):
        data = demo.prepare_data(seed=0)
        meta_rows = set(map(bytes, data.x_meta))
        # Digits contains a few duplicate images, so allow a handful.
        assert len(meta_rows & set(map(bytes, data.x_train))) <= 2
        assert len(meta_rows & set(map(bytes, data.x_val))) <= 2

    def test_meta_labels_clean_unless_noisy_meta(self):
        clean = demo.prepare_data(noise=0.4, seed=0)
        noisy = demo.prepare_data(noise=0.4, seed=0, noisy_meta=True)
        np.testing.assert_array_equal(clean.x_meta, noisy.x_meta)
        flipped = int((clean.y_meta != noisy.y_meta).sum())
        assert flipped == round(0.4 * len(clean.y_meta))
        np.testing.assert_array_equal(clean.y_train, noisy.y_train)

    def test_tiny_keeps_256_training_samples(self):
        assert len(demo.prepare_data(tiny=True).x_train) == 256


class TestRunDemo:
    def test_result_is_well_formed(self, tiny_result):
        names = [m.name for m in tiny_result.methods]
        assert names == [demo.CE, demo.GCE, demo.META]
        for method in tiny_result.methods:
            assert 0.0 <= method.val_accuracy <= 1.0
            assert method.train_time > 0
            assert len(method.history["val_accuracy"]) == 2
            assert method.val_accuracy == method.history["val_accuracy"][-1]
            assert sum(method.phi.values()) == pytest.approx(1.0, abs=1e-5)
        assert tiny_result.num_train == 256
        assert tiny_result.num_flipped == round(0.4 * 256)
        assert tiny_result.settings["tiny"] is True

    def test_baselines_stay_frozen_and_metaloss_learns(self, tiny_result):
        ce = tiny_result.method(demo.CE).phi
        assert ce["crossentropy"] == 1.0
        assert all(v == 0.0 for k, v in ce.items() if k != "crossentropy")
        assert tiny_result.method(demo.GCE).phi == {"generalized_crossentropy": 1.0}
        learned = tiny_result.method(demo.META).phi
        assert set(learned) == set(ce)
        assert learned != ce
        assert "meta_objective" in tiny_result.method(demo.META).history

    def test_writes_tensorboard_event_files(self, tiny_result):
        for method in tiny_result.methods:
            assert "epoch_loss" in scalar_tags(os.path.join(method.logdir, "train"))
            assert "epoch_accuracy" in scalar_tags(os.path.join(method.logdir, "validation"))
        meta_tags = scalar_tags(os.path.join(tiny_result.method(demo.META).logdir, "train"))
        assert "epoch_phi/crossentropy" in meta_tags
        assert "epoch_meta_objective" in meta_tags

    def test_format_result_prints_table_and_learned_phi(self, tiny_result):
        text = demo.format_result(tiny_result)
        assert "method" in text and "clean val accuracy" in text
        assert "train time (s)" in text
        for method in tiny_result.methods:
            assert method.name in text
            assert f"{method.val_accuracy:.4f}" in text
        assert "assumed clean" in text
        assert "mae_classification" in text
        assert "--tiny" in text

    @pytest.mark.parametrize(
        "kwargs, match",
        [({"epochs": 0}, "argument `epochs`"), ({"noise": 1.0}, "argument `noise`")],
    )
    def test_bad_arguments(self, kwargs, match, tmp_path):
        with pytest.raises(ValueError, match=match):
            demo.run_demo(tiny=True, logdir=str(tmp_path), **kwargs)


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
                "--logdir",
                str(logdir),
            ]
        )
        out = capsys.readouterr().out
        assert code == 0
        assert "clean val accuracy" in out
        assert "(noisy)" in out and "--noisy-meta" in out
        assert "51/256 training labels flipped" in out
        assert sorted(os.listdir(logdir)) == ["cross_entropy", "generalized_ce", "metaloss"]

    @pytest.mark.parametrize(
        "argv, message",
        [
            (["--epochs", "0"], "expected a positive integer"),
            (["--epochs", "two"], "expected a positive integer"),
            (["--noise", "1.5"], "expected a noise rate in [0, 1)"),
            (["--noise", "x"], "expected a noise rate in [0, 1)"),
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
