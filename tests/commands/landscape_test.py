"""Tests of `tf-metaloss landscape`."""

import argparse
import json

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import tf_metaloss as tml
from tf_metaloss import cli
from tf_metaloss import diagnostics
from tf_metaloss.commands import landscape


def _parse(argv):
    parser = argparse.ArgumentParser(prog="tf-metaloss")
    landscape.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def _main(argv):
    args = _parse(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """A cross-entropy model and a learned-loss MetaModel, trained briefly on digits."""
    root = tmp_path_factory.mktemp("models")
    x, y = landscape.load_data("digits", samples=256)

    def network():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((64,))
        hidden = keras.layers.Dense(16, activation="relu")(inputs)
        return inputs, keras.layers.Dense(10)(hidden)

    plain = keras.Model(*network())
    plain.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    plain.fit(x, y, batch_size=64, epochs=1, verbose=0)
    meta = tml.MetaModel(*network())
    meta.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=tml.MetaLoss(from_logits=True),
        meta_optimizer=keras.optimizers.Adam(0.05),
        run_eagerly=True,
    )
    meta.fit(x, y, meta_split=0.25, batch_size=64, epochs=1, verbose=0)
    paths = {"ce": str(root / "ce.keras"), "learned": str(root / "learned.keras")}
    plain.save(paths["ce"])
    meta.save(paths["learned"])
    np.savez(root / "data.npz", x=x[:50], y=y[:50], labels=y[:50])
    return paths, str(root / "data.npz")


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parse(["landscape", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: tf-metaloss landscape" in out and "--directions" in out


def test_compares_two_saved_models_on_digits(saved_models, tmp_path, capsys):
    paths, _ = saved_models
    out_dir = tmp_path / "out"
    code = _main(
        [
            "landscape",
            paths["ce"],
            paths["learned"],
            "--data",
            "digits",
            "--samples",
            "200",
            "--points",
            "5",
            "--span",
            "0.5",
            "--out",
            str(out_dir),
            "--tensorboard",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert (out_dir / "landscape.png").read_bytes()[:4] == b"\x89PNG"
    report = json.loads((out_dir / "landscape.json").read_text())
    assert report["data"] == "digits" and list(report["models"]) == ["ce", "learned"]
    # The command's numbers are those of the library on the same data.
    x, y = landscape.load_data("digits", samples=200)
    for label in ("ce", "learned"):
        model = keras.models.load_model(paths[label])
        direct = diagnostics.loss_landscape(model, (x, y), points=5, span=0.5)
        entry = report["models"][label]
        np.testing.assert_allclose(entry["losses"], direct.losses, rtol=1e-6)
        assert entry["sharpness"]["curvature"] == pytest.approx(
            direct.sharpness["curvature"], rel=1e-6
        )
        assert f"  {direct.center_loss:.4g}  " in printed
    # Both evaluate cross-entropy on logits: the plain model's compiled loss and
    # the MetaModel's meta objective.
    assert report["models"]["ce"]["loss"] == "sparse_categorical_crossentropy"
    assert report["models"]["learned"]["loss"] == "mae_classification"
    ev = EventAccumulator(str(out_dir / "tensorboard"), size_guidance={"tensors": 0})
    ev.Reload()
    assert {"landscape", "landscape/ce/max_increase", "landscape/learned/max_increase"} <= set(
        ev.Tags()["tensors"]
    )


def test_npz_data_2d_and_an_explicit_loss(saved_models, tmp_path):
    paths, data = saved_models
    out_dir = tmp_path / "out"
    code = _main(
        [
            "landscape",
            paths["ce"],
            "--data",
            data,
            "--y-key",
            "labels",
            "--directions",
            "2",
            "--points",
            "3",
            "--loss",
            "mae_classification",
            "--out",
            str(out_dir),
        ]
    )
    assert code == 0
    entry = json.loads((out_dir / "landscape.json").read_text())["models"]["ce"]
    assert entry["loss"] == "mae_classification" and np.shape(entry["losses"]) == (3, 3)
    # from_logits was read from the model's loss: probabilities come from softmax.
    with np.load(data) as arrays:
        x, y = arrays["x"], arrays["y"]
    probs = keras.ops.convert_to_numpy(keras.ops.softmax(keras.models.load_model(paths["ce"])(x)))
    assert entry["center_loss"] == pytest.approx(
        float(np.abs(np.eye(10)[y] - probs).sum(axis=1).mean()), rel=1e-5
    )


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing model", "model file not found"),
        ("missing data", "--data must be 'digits' or an existing .npz"),
        ("missing key", "has no array 'images'"),
        ("three models", "expected one or two models"),
    ],
)
def test_user_errors_exit_1(saved_models, tmp_path, capsys, case, message):
    paths, data = saved_models
    models, options = [paths["ce"]], ["--data", data]
    if case == "missing model":
        models = [str(tmp_path / "missing.keras")]
    elif case == "missing data":
        options = ["--data", str(tmp_path / "nope.npz")]
    elif case == "missing key":
        options += ["--x-key", "images"]
    else:
        models = [paths["ce"]] * 3
    assert _main(["landscape", *models, *options, "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "tf-metaloss landscape: error:" in err and message in err


def test_a_file_that_is_not_a_model_exits_1(tmp_path, capsys):
    bad = tmp_path / "bad.keras"
    bad.write_text("not a model")
    assert _main(["landscape", str(bad), "--data", "digits", "--out", str(tmp_path)]) == 1
    assert "cannot load model" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["landscape", "m.keras", "--out", "d"],  # --data is required
        ["landscape", "m.keras", "--data", "digits"],  # --out is required
        ["landscape", "m.keras", "--data", "digits", "--out", "d", "--points", "2"],
        ["landscape", "m.keras", "--data", "digits", "--out", "d", "--span", "-1"],
        ["landscape", "m.keras", "--data", "digits", "--out", "d", "--directions", "3"],
    ],
)
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parse(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_runs_through_the_real_cli_main(monkeypatch, capsys):
    monkeypatch.setattr(cli, "COMMANDS", tuple(dict.fromkeys(cli.COMMANDS + ("landscape",))))
    assert cli.main(["landscape", "--help"]) == 0
    assert "usage: tf-metaloss landscape" in capsys.readouterr().out
    assert cli.main(["landscape", "--no-such-option"]) == 2
    assert "tf-metaloss landscape: error:" in capsys.readouterr().err
