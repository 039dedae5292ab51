import json
import math
import os

import keras
import numpy as np
import pytest

import tf_metaloss as tml
from tf_metaloss.evaluation import compare
from tf_metaloss.evaluation import datasets


def _toy_dataset(n_train=120, n_val=60, classes=3, features=6, seed=0):
    """Separable Gaussian blobs: a tiny model learns them in a couple of epochs."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(classes, features))

    def draw(n):
        y = np.arange(n) % classes
        x = centers[y] + rng.normal(size=(n, features))
        return x.astype("float32"), y.astype("int64")

    x_train, y_train = draw(n_train)
    x_val, y_val = draw(n_val)
    return datasets.Dataset(x_train, y_train, x_val, y_val, classes, "toy")


def _config(**kwargs):
    defaults = dict(
        dataset="toy", epochs=2, batch_size=16, seeds=(0,), hidden_units=8, learning_rate=0.05
    )
    defaults.update(kwargs)
    return compare.CompareConfig(**defaults)


# -- methods and configuration ------------------------------------------------------


def test_methods_cover_the_issue():
    groups = {name: m.group for name, m in compare.METHODS.items()}
    assert [n for n, g in groups.items() if g == "baseline"] == [
        "ce",
        "focal",
        "label_smoothing",
        "poly1",
        "gce",
        "sce",
    ]
    assert [n for n, g in groups.items() if g == "learned"] == [
        "meta_loss",
        "blend",
        "polynomial",
        "neural",
        "sample_weighted",
    ]
    assert compare.METHODS["frozen"].training == "frozen"
    assert compare.METHODS["schedule"].training == "schedule"
    assert compare.METHODS["oracle"].clean_labels
    config = _config()
    for name, method in compare.METHODS.items():
        loss = method.make_loss(config, 0)
        assert loss.from_logits
        assert isinstance(loss, tml.LearnableLoss) == (method.training != "fixed"), name
    # The fixed baselines carry the settings the issue asks for.
    assert compare.METHODS["focal"].make_loss(config, 0).options == {"gamma": 2.0}
    assert compare.METHODS["gce"].make_loss(config, 0).options == {"q": 0.7}


def test_method_validates_group_and_training():
    make = compare.METHODS["ce"].make_loss
    with pytest.raises(ValueError, match="`group`"):
        compare.Method("x", "x", "fancy", make)
    with pytest.raises(ValueError, match="`training`"):
        compare.Method("x", "x", "baseline", make, training="online")


def test_resolve_methods():
    assert compare.resolve_methods("ce, gce,ce") == ("ce", "gce")
    assert compare.resolve_methods(["ablations"]) == ("frozen", "schedule")
    assert compare.resolve_methods("all") == compare.DEFAULT_METHODS
    with pytest.raises(ValueError, match="Received: 'nope'"):
        compare.resolve_methods("ce,nope")
    with pytest.raises(ValueError, match="at least one"):
        compare.resolve_methods("")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"seeds": ()}, "seeds"),
        ({"seeds": (0, 0)}, "distinct"),
        ({"epochs": 0}, "epochs"),
        ({"noise_rate": 1.5}, "noise_rate"),
        ({"noise_kind": "pairs"}, "noise_kind"),
        ({"eval_split": "test"}, "eval_split"),
        ({"meta_fraction": 0.0}, "meta_fraction"),
        ({"meta_every": 0}, "frozen ablation"),
        ({"meta_learning_rate": -1.0}, "meta_learning_rate"),
        ({"meta_clipnorm": 0.0}, "meta_clipnorm"),
        ({"model": "resnet"}, "model"),
        ({"schedule_final": {}}, "schedule_final"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _config(**kwargs)


# -- data ------------------------------------------------------------------------


def test_make_split_sizes_noise_and_clean_meta_labels():
    data = _toy_dataset(n_train=200)
    split = compare.make_split(data, _config(noise_rate=0.4, meta_fraction=0.1), seed=3)
    assert len(split.x_meta) == 20 and len(split.x_train) == 180
    assert len(split.x_eval) == 60
    np.testing.assert_array_equal(split.x_eval, data.x_val)
    # 40% of the 200 labels were flipped before the meta split.
    total_noisy = split.noisy_mask.sum() + 0  # train part
    assert split.noisy_mask.dtype == bool
    np.testing.assert_array_equal(split.noisy_mask, split.y_train != split.y_train_clean)
    assert 0.3 < split.noisy_mask.mean() < 0.5 and total_noisy > 0
    # Clean meta labels: nothing flipped there.
    assert not split.meta_noisy_mask.any()
    noisy_meta = compare.make_split(data, _config(noise_rate=0.4, meta_labels="noisy"), seed=3)
    assert noisy_meta.meta_noisy_mask.any()
    np.testing.assert_array_equal(noisy_meta.x_train, split.x_train)


def test_make_split_holdout_never_uses_the_validation_split():
    data = _toy_dataset(n_train=100)
    data.x_val = np.full_like(data.x_val, np.nan)
    data.y_val = np.full_like(data.y_val, -1)
    split = compare.make_split(data, _config(eval_split="holdout", holdout_fraction=0.2), seed=0)
    assert len(split.x_eval) == 20 and len(split.x_train) + len(split.x_meta) == 80
    assert np.isfinite(split.x_eval).all() and (split.y_eval >= 0).all()
    # The holdout is disjoint from the training and meta inputs.
    rows = {tuple(r) for r in np.concatenate([split.x_train, split.x_meta])}
    assert not any(tuple(r) in rows for r in split.x_eval)


def test_make_split_train_subset_is_the_same_for_every_seed():
    data = _toy_dataset(n_train=100)
    a = compare.make_split(data, _config(train_subset=50), seed=0)
    b = compare.make_split(data, _config(train_subset=50), seed=1)
    assert len(a.x_train) + len(a.x_meta) == 50
    rows = lambda s: {tuple(r) for r in np.concatenate([s.x_train, s.x_meta])}  # noqa
    assert rows(a) == rows(b)


def test_training_dataset_order_depends_only_on_the_seed():
    x = np.arange(10, dtype="float32")[:, None]
    y = np.arange(10)

    def batches(seed):
        dataset, steps = compare.training_dataset(x, y, batch_size=4, epochs=2, seed=seed)
        return steps, [b[1].numpy().tolist() for b in dataset]

    steps, first = batches(0)
    assert steps == 3 and [len(b) for b in first] == [4, 4, 2, 4, 4, 2]
    # Each epoch is a permutation, reshuffled between epochs.
    epoch_1, epoch_2 = sum(first[:3], []), sum(first[3:], [])
    assert sorted(epoch_1) == sorted(epoch_2) == list(range(10))
    assert epoch_1 != epoch_2
    assert batches(0)[1] == first and batches(1)[1] != first


def test_build_model():
    assert compare.build_model("auto", (5,), 3).output.shape == (None, 3)
    assert compare.build_model("auto", (8, 8, 1), 4).name == "compared_cnn"
    assert compare.build_model("small_cnn", (8, 8, 3), 2).output.shape == (None, 2)
    with pytest.raises(ValueError, match="image inputs"):
        compare.build_model("cnn", (5,), 3)


# -- the hand schedule -------------------------------------------------------------


def test_schedule_targets():
    loss = tml.MetaLoss(from_logits=True)
    target = compare.schedule_targets(loss, {"generalized_crossentropy": 2.0})
    np.testing.assert_array_equal(target["blend_weights"], [0, 0, 0, 2, 0])
    with pytest.raises(ValueError, match="base losses of the blend"):
        compare.schedule_targets(loss, {"poly1": 1.0})
    with pytest.raises(ValueError, match="positive sum"):
        compare.schedule_targets(loss, {"crossentropy": 0.0})
    with pytest.raises(ValueError, match="needs a blend"):
        compare.schedule_targets(tml.NeuralLoss(from_logits=True), {"crossentropy": 1})


def test_linear_parameter_schedule_moves_phi_from_start_to_final():
    x = np.random.default_rng(0).normal(size=(20, 3)).astype("float32")
    y = np.arange(20) % 2
    inputs = keras.Input((3,))
    model = tml.MetaModel(inputs, keras.layers.Dense(2)(inputs))
    loss = tml.BlendLoss(["crossentropy", "mae_classification"], from_logits=True)
    model.compile(optimizer="sgd", loss=loss, meta_every=0)
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(loss.trainable_variables[0].numpy().tolist())

    schedule = compare.LinearParameterSchedule({"blend_weights": [0.0, 1.0]}, 5)
    # 20 samples, batch 4: 5 steps; the schedule runs before the recorder.
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[schedule, Record()])
    np.testing.assert_allclose(
        seen, [[1.0, 0.0], [0.75, 0.25], [0.5, 0.5], [0.25, 0.75], [0.0, 1.0]]
    )


def test_linear_parameter_schedule_rejects_unknown_parameters():
    inputs = keras.Input((3,))
    model = tml.MetaModel(inputs, keras.layers.Dense(2)(inputs))
    model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True), meta_every=0)
    schedule = compare.LinearParameterSchedule({"blend_weights": [1.0, 0.0]}, 5)
    with pytest.raises(ValueError, match="Expected parameters of MetaLoss"):
        model.fit(np.zeros((4, 3)), np.zeros(4), epochs=1, verbose=0, callbacks=[schedule])


# -- summaries -------------------------------------------------------------------


def test_mean_std_and_summarize():
    assert compare.mean_std([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2)), 2)
    assert compare.mean_std([5.0, float("nan")]) == (5.0, 0.0, 1)
    runs = [
        {"method": "ce", "seed": 0, "final": {"val_accuracy": 0.5}},
        {"method": "ce", "seed": 1, "final": {"val_accuracy": 0.7}},
        {"method": "gce", "seed": 0, "final": {"val_accuracy": 0.6}},
        {"method": "gce", "seed": 1, "final": {"val_accuracy": 0.9}},
    ]
    summary = compare.summarize(runs)
    assert "epochs_to_common_target" not in summary["ce"]  # no curves given
    assert summary["ce"]["val_accuracy"]["mean"] == pytest.approx(0.6)
    # Paired differences 0.1 and 0.2.
    assert summary["gce"]["delta_vs_ce"]["mean"] == pytest.approx(0.15)
    assert summary["gce"]["delta_vs_ce"]["std"] == pytest.approx(0.1 / math.sqrt(2))


def test_summarize_epochs_to_common_target():
    # Best mean final accuracy: gce 0.9 -> target 0.81 for every method.
    runs = [
        {
            "method": "ce",
            "seed": 0,
            "final": {"val_accuracy": 0.6},
            "curves": {"val_accuracy": [0.82, 0.7, 0.6]},
        },
        {
            "method": "ce",
            "seed": 1,
            "final": {"val_accuracy": 0.6},
            "curves": {"val_accuracy": [0.5, 0.6, 0.6]},
        },
        {
            "method": "gce",
            "seed": 0,
            "final": {"val_accuracy": 0.9},
            "curves": {"val_accuracy": [0.5, 0.85, 0.9]},
        },
        {
            "method": "gce",
            "seed": 1,
            "final": {"val_accuracy": 0.9},
            "curves": {"val_accuracy": [0.5, 0.6, 0.9]},
        },
    ]
    summary = compare.summarize(runs)
    ce, gce = summary["ce"]["epochs_to_common_target"], summary["gce"]["epochs_to_common_target"]
    assert (ce["mean"], ce["n"], ce["of"]) == (1.0, 1, 2)
    assert (gce["mean"], gce["n"], gce["of"]) == (2.5, 2, 2)
    assert gce["target"] == pytest.approx(0.81)
    assert compare._cell(ce, 1.0, 1) == "1.0 ± 0.0 (1/2 runs)"
    assert compare._cell(gce, 1.0, 1) == "2.5 ± 0.7"
    assert (
        compare._cell({"mean": float("nan"), "std": float("nan"), "n": 0, "of": 2}, 1.0, 1)
        == "never"
    )
    # The oracle (clean labels) does not set the common target.
    runs.append(
        {
            "method": "oracle",
            "seed": 0,
            "final": {"val_accuracy": 1.0},
            "curves": {"val_accuracy": [1.0, 1.0, 1.0]},
        }
    )
    with_oracle = compare.summarize(runs)
    assert with_oracle["gce"]["epochs_to_common_target"]["target"] == pytest.approx(0.81)


def _results_with(accuracies, noise_rate, convergence=None):
    convergence = convergence or {}
    methods = [
        {"name": n, "label": n, "group": g}
        for n, g in (
            ("ce", "baseline"),
            ("gce", "baseline"),
            ("sce", "baseline"),
            ("focal", "baseline"),
            ("label_smoothing", "baseline"),
            ("meta_loss", "learned"),
            ("neural", "learned"),
            ("frozen", "ablation"),
            ("schedule", "ablation"),
            ("oracle", "oracle"),
        )
    ]
    summary = {
        n: {
            "val_accuracy": {"mean": a, "std": 0.0, "n": 3},
            "convergence_epoch": {"mean": convergence.get(n, 10.0), "std": 0.0, "n": 3},
        }
        for n, a in accuracies.items()
    }
    return {"summary": summary, "methods": methods, "config": {"noise_rate": noise_rate}}


def test_target_checks_noisy():
    results = _results_with(
        {
            "ce": 0.60,
            "gce": 0.70,
            "sce": 0.69,
            "meta_loss": 0.72,
            "neural": 0.65,
            "frozen": 0.60,
            "schedule": 0.66,
            "oracle": 0.80,
        },
        noise_rate=0.4,
        convergence={"meta_loss": 7.0},
    )
    checks = {c["target"]: c for c in compare.target_checks(results)}
    assert checks["best learned family"]["value"].startswith("meta_loss")
    assert checks[">= +6.5 pts over cross-entropy"]["met"] is True
    assert checks["beats gce"]["met"] and checks["beats sce"]["met"]
    gap = checks["closes most (> 50%) of the CE-to-oracle gap"]
    assert gap["met"] is True and gap["value"].startswith("60%")
    assert checks["convergence epochs <= 0.75x cross-entropy's"]["met"] is True
    assert checks["ablation order meta > schedule > frozen (MetaLoss)"]["met"] is True


def test_target_checks_clean():
    results = _results_with(
        {
            "ce": 0.90,
            "focal": 0.91,
            "label_smoothing": 0.89,
            "meta_loss": 0.905,
            "neural": 0.80,
            "frozen": 0.90,
            "schedule": 0.91,
        },
        noise_rate=0.0,
    )
    checks = {c["target"]: c for c in compare.target_checks(results)}
    assert checks["no worse than ce"]["met"] is True
    assert checks["no worse than focal"]["met"] is False
    assert checks["no worse than label_smoothing"]["met"] is True
    assert checks["convergence epochs <= 0.75x cross-entropy's"]["met"] is False
    assert checks["ablation order meta > schedule > frozen (MetaLoss)"]["met"] is False


# -- end to end --------------------------------------------------------------------


# One method of each kind of training: plain Keras model, meta-learned blend,
# meta-learned sample weights (paused inner tape), frozen, hand schedule, oracle.
E2E_METHODS = ("ce", "gce", "meta_loss", "sample_weighted", "frozen", "schedule", "oracle")


def _check_end_to_end(tmp_path, methods):
    config = _config(
        noise_rate=0.4, methods=methods, epochs=2, schedule_final={"mae_classification": 1.0}
    )
    lines = []
    results = compare.run_comparison(config, progress=lines.append, data=_toy_dataset())
    names = [m["name"] for m in results["methods"]]
    assert names == list(methods)
    assert len(results["runs"]) == len(names) == len(lines)
    assert lines[0].startswith(f"[{1:>{len(str(len(names)))}}/{len(names)}] seed 0 ce")
    runs = {r["method"]: r for r in results["runs"]}
    for run in runs.values():
        final = run["final"]
        assert 0.0 <= final["val_accuracy"] <= 1.0
        assert final["convergence_epoch"] in (1, 2)
        assert len(run["curves"]["val_accuracy"]) == 2
        assert run["grad_norm_steps"] == 2 * 7  # 108 training samples, batch 16
        assert final["grad_norm_variance"] >= 0 and final["wall_time_s"] > 0
    # Same model, initial weights, data and seed: the frozen MetaLoss (pure
    # cross-entropy at phi_0) trains exactly like the plain cross-entropy model.
    np.testing.assert_allclose(
        runs["frozen"]["curves"]["loss"], runs["ce"]["curves"]["loss"], rtol=1e-5
    )
    assert runs["frozen"]["curves"]["val_accuracy"] == runs["ce"]["curves"]["val_accuracy"]
    # The hand schedule ends at its final phi; the meta-learned phi moved.
    assert runs["schedule"]["phi"]["mix/mae_classification"][-1] == pytest.approx(1.0)
    assert runs["meta_loss"]["phi"]["phi/crossentropy"][-1] != 1.0
    assert runs["ce"]["phi"] == {}
    # Noise: memorization is measured except for the oracle (clean labels).
    assert "memorized" in runs["ce"]["final"] and "memorized" not in runs["oracle"]["final"]
    assert results["data"]["per_seed"]["0"]["train_noise_rate"] > 0.3

    paths = compare.write_results(results, str(tmp_path / "out"))
    with open(paths["json"]) as f:
        loaded = json.load(f)
    assert {
        "schema_version",
        "created",
        "config",
        "environment",
        "data",
        "methods",
        "runs",
        "summary",
        "checks",
    } <= set(loaded)
    assert loaded["schema_version"] == compare.SCHEMA_VERSION
    assert loaded["config"]["seeds"] == [0] and loaded["config"]["noise_rate"] == 0.4
    assert set(loaded["runs"][0]) == {"method", "seed", "final", "curves", "phi", "grad_norm_steps"}
    assert set(loaded["summary"]["ce"]["val_accuracy"]) == {"mean", "std", "n"}
    with open(paths["markdown"]) as f:
        markdown = f.read()
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| method | val acc % | vs CE (pts) | macro-F1 %")
    assert len(table) == 1 + len(names)  # header + one row per method
    assert all(line.count("|") == table[0].count("|") for line in table)
    assert "| cross-entropy | " in markdown and "Targets:" in markdown
    for key in ("learning_curves", "phi"):
        with open(paths[key], "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.integration
def test_run_comparison_end_to_end_and_result_files(tmp_path):
    _check_end_to_end(tmp_path, E2E_METHODS)


@pytest.mark.slow
def test_run_comparison_end_to_end_every_method(tmp_path):
    _check_end_to_end(tmp_path, compare.DEFAULT_METHODS)


def test_run_comparison_without_noise_drops_the_oracle():
    config = _config(noise_rate=0.0, methods="ce,oracle", epochs=1)
    saved = []
    results = compare.run_comparison(
        config, data=_toy_dataset(), on_run_end=lambda r: saved.append(len(r["runs"]))
    )
    assert [m["name"] for m in results["methods"]] == ["ce"]
    assert saved == [1]
    assert "memorized" not in results["runs"][0]["final"]


def test_to_json_writes_non_finite_numbers_as_null():
    text = compare.to_json(
        {
            "a": float("nan"),
            "b": [np.float32(1.5), np.int64(2)],
            "c": np.bool_(True),
            "d": 2.0 / 3.0,
        }
    )
    assert json.loads(text) == {"a": None, "b": [1.5, 2], "c": True, "d": 0.6666667}


def test_write_results_without_figures(tmp_path):
    results = compare.run_comparison(_config(methods="ce", epochs=1), data=_toy_dataset())
    paths = compare.write_results(results, str(tmp_path), figures=False)
    assert sorted(paths) == ["json", "markdown"]
    assert not os.path.exists(tmp_path / "learning_curves.png")
