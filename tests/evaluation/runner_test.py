"""End-to-end runs of the comparison on toy data."""

import json
import types

import keras
import numpy as np
import pytest

from tf_metaloss.evaluation import imbalance
from tf_metaloss.evaluation import methods
from tf_metaloss.evaluation import report
from tf_metaloss.evaluation import runner
from tf_metaloss.evaluation import splits
from tf_metaloss.meta import estimators

# One method of each kind of training: plain Keras model, the two-stage
# baselines, meta-learned blend, meta-learned sample weights (paused inner
# tape), frozen, hand schedule, oracle.
E2E_METHODS = (
    "ce",
    "gce",
    "finetune",
    "glc",
    "forward",
    "meta_loss",
    "sample_weighted",
    "frozen",
    "schedule",
    "oracle",
)


def _check_end_to_end(toy_dataset, small_config, tmp_path, names):
    config = small_config(
        noise_rate=0.4,
        methods=names,
        epochs=2,
        finetune_epochs=1,
        schedule_final={"mae_classification": 1.0},
    )
    lines = []
    results = runner.run_comparison(config, progress=lines.append, data=toy_dataset())
    assert [m["name"] for m in results["methods"]] == list(names)
    assert len(results["runs"]) == len(names) == len(lines)
    assert lines[0].startswith(f"[{1:>{len(str(len(names)))}}/{len(names)}] seed 0 ce")
    runs = {r["method"]: r for r in results["runs"]}
    for name, run in runs.items():
        final = run["final"]
        epochs = 3 if name == "finetune" else 2  # + 1 fine-tuning epoch on the meta set
        assert 0.0 <= final["val_accuracy"] <= 1.0
        assert 1 <= final["convergence_epoch"] <= epochs
        assert len(run["curves"]["val_accuracy"]) == epochs
        # 108 training samples (7 batches of 16) and 12 meta samples (1 batch):
        # the meta-learned methods take a step per training batch (the meta
        # batch rides along in their meta steps), every other method on both
        # (8 batches); fine-tuning adds 1 epoch of 1 batch.
        train_steps = 7 if methods.METHODS[name].train_data == "train" else 8
        assert run["grad_norm_steps"] == 2 * train_steps + (1 if name == "finetune" else 0)
        assert final["grad_norm_variance"] >= 0 and final["wall_time_s"] > 0
        assert final["wall_time_s"] == pytest.approx(sum(s["wall_time_s"] for s in run["stages"]))
    # Same model, initial weights, data and seed: the frozen MetaLoss
    # (generalized cross-entropy, q = 0.7 at phi_0) trains exactly like the
    # fixed GCE baseline.
    np.testing.assert_allclose(
        runs["frozen"]["curves"]["loss"], runs["gce"]["curves"]["loss"], rtol=1e-5
    )
    assert runs["frozen"]["curves"]["val_accuracy"] == runs["gce"]["curves"]["val_accuracy"]
    # The hand schedule ends at its final phi; the meta-learned phi moved.
    assert runs["schedule"]["phi"]["mix/mae_classification"][-1] == pytest.approx(1.0)
    # The default MetaLoss records its correction weight per epoch, in [0, 1].
    correction = runs["meta_loss"]["phi"]["phi/correction"]
    assert len(correction) == 3 and correction[0] == 0.0
    assert all(0.0 <= c <= 1.0 for c in correction)
    assert runs["ce"]["phi"] == {}
    # The guard's comparison is recorded per epoch, and whether it took its run.
    guard = runs["meta_loss"]["curves"]
    assert len(guard["guard_objective"]) == len(guard["guard_start_objective"]) == 2
    assert guard["guard_reverted"][-1] == runs["meta_loss"]["final"]["guard_reverted"]
    assert "guard_reverted" not in runs["ce"]["final"]
    assert (runs["ce"]["loss"], runs["meta_loss"]["loss"]) == ("FixedLoss", "MetaLoss")
    assert runs["glc"]["loss"] == runs["forward"]["loss"] == "ForwardCorrectedLoss"
    # Noise: memorization is measured except for the oracle (clean labels).
    assert "memorized" in runs["ce"]["final"] and "memorized" not in runs["oracle"]["final"]
    assert results["data"]["per_seed"]["0"]["train_noise_rate"] > 0.3

    paths = report.write_results(results, str(tmp_path / "out"))
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
    } <= set(loaded)
    assert "checks" not in loaded  # a user's report shows results, not the project's goals
    assert loaded["schema_version"] == runner.SCHEMA_VERSION
    assert loaded["config"]["seeds"] == [0] and loaded["config"]["noise_rate"] == 0.4
    assert set(loaded["runs"][0]) == {
        "method",
        "seed",
        "loss",
        "final",
        "curves",
        "phi",
        "phi_bounds",
        "grad_norm_steps",
        "stages",
        "diagnostics",
    }
    assert set(loaded["summary"]["ce"]["val_accuracy"]) == {"mean", "std", "n"}
    with open(paths["markdown"]) as f:
        markdown = f.read()
    tables = [
        [line for line in block.splitlines() if line.startswith("| ")]
        for block in markdown.split("\n\n")
        if block.startswith("| ")
    ]
    assert [t[0].split(" | ")[1] for t in tables] == ["trains on", "val acc %", "vs cross-entropy"]
    methods_table, table, paired = tables
    assert table[0].startswith("| method | val acc % | vs CE (pts) | macro-F1 %")
    for rows in (methods_table, table):
        assert len(rows) == 1 + len(names)  # header + one row per method
        assert all(line.count("|") == rows[0].count("|") for line in rows)
    assert "| cross-entropy | noisy training part + meta set | - |" in methods_table
    assert any(
        r.startswith("| MetaLoss (meta) | noisy training part; meta-learned: also the meta set")
        for r in methods_table
    )
    # Paired differences: every method that is not a baseline against each baseline.
    baselines = [n for n in names if methods.METHODS[n].group == "baseline"]
    assert paired[0].count(" | vs ") == len(baselines)
    assert len(paired) == 1 + len(names) - len(baselines)
    assert "| cross-entropy | " in markdown and "Targets" not in markdown
    for key in ("learning_curves", "phi"):
        with open(paths[key], "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.integration
def test_run_comparison_end_to_end_and_result_files(toy_dataset, small_config, tmp_path):
    _check_end_to_end(toy_dataset, small_config, tmp_path, E2E_METHODS)


@pytest.mark.slow
def test_run_comparison_end_to_end_every_method(toy_dataset, small_config, tmp_path):
    _check_end_to_end(toy_dataset, small_config, tmp_path, methods.DEFAULT_METHODS)


def test_run_comparison_without_noise_drops_the_oracle(toy_dataset, small_config):
    config = small_config(noise_rate=0.0, methods="ce,oracle", epochs=1)
    saved = []
    results = runner.run_comparison(
        config, data=toy_dataset(), on_run_end=lambda r: saved.append(len(r["runs"]))
    )
    assert [m["name"] for m in results["methods"]] == ["ce"]
    assert saved == [1]
    assert "memorized" not in results["runs"][0]["final"]


# -- what each method trains on ------------------------------------------------------


@pytest.fixture
def fits(monkeypatch):
    """Records the arrays, epochs and learning rate of every training stage."""
    calls, rates = [], []
    original_dataset, original_optimizer = splits.training_dataset, runner._optimizer

    def dataset(x, y, batch_size, epochs, seed):
        calls.append({"x": np.array(x), "y": np.array(y), "epochs": epochs})
        return original_dataset(x, y, batch_size, epochs, seed)

    def optimizer(learning_rate, config):
        rates.append(learning_rate)
        return original_optimizer(learning_rate, config)

    monkeypatch.setattr(splits, "training_dataset", dataset)
    monkeypatch.setattr(runner, "_optimizer", optimizer)
    return types.SimpleNamespace(calls=calls, rates=rates)


@pytest.fixture
def noisy_split(toy_dataset, small_config):
    config = small_config(noise_rate=0.4, epochs=1, finetune_epochs=2)
    return splits.make_split(toy_dataset(), config, seed=0), config


def _run(name, noisy_split):
    split, config = noisy_split
    return runner.run_method(methods.METHODS[name], split, config, seed=0)


@pytest.mark.parametrize(
    "settings, expected",
    [
        ({}, estimators.Unrolled(steps=1)),
        ({"unroll_steps": 2}, estimators.Unrolled(steps=2)),
        ({"meta_method": "first_order"}, estimators.Unrolled(first_order=True)),
        ({"meta_method": "neumann"}, estimators.Neumann()),
        (
            {"meta_method": estimators.ConjugateGradient(iterations=2)},
            estimators.ConjugateGradient(iterations=2),
        ),
    ],
)
def test_meta_learned_methods_compile_with_the_meta_method(
    noisy_split, small_config, settings, expected
):
    split, _ = noisy_split
    config = small_config(noise_rate=0.4, **settings)
    for name in ("meta_loss", "sample_weighted"):
        model, _, fit_kwargs = runner._compiled_model(methods.METHODS[name], split, config, 0)
        assert model.meta_estimator == expected and model.meta_every == config.meta_every
        assert "meta_data" in fit_kwargs


def test_baselines_train_on_noisy_plus_clean_data(fits, noisy_split):
    split, _ = noisy_split
    both_x = np.concatenate([split.x_train, split.x_meta])
    for name, labels in (
        ("ce", np.concatenate([split.y_train, split.y_meta])),
        ("frozen", np.concatenate([split.y_train, split.y_meta])),
        ("oracle", np.concatenate([split.y_train_clean, split.y_meta])),
    ):
        fits.calls.clear()
        record = _run(name, noisy_split)
        (call,) = fits.calls
        np.testing.assert_array_equal(call["x"], both_x)
        np.testing.assert_array_equal(call["y"], labels)
        assert record["stages"] == [
            {**record["stages"][0], "name": "train", "data": "train+meta", "samples": len(both_x)}
        ]
    assert not split.meta_noisy_mask.any() and split.noisy_mask.any()


def test_meta_learned_losses_train_on_the_noisy_part_only(fits, noisy_split):
    split, _ = noisy_split
    record = _run("meta_loss", noisy_split)
    (call,) = fits.calls
    np.testing.assert_array_equal(call["x"], split.x_train)
    np.testing.assert_array_equal(call["y"], split.y_train)
    assert record["stages"][0]["data"] == "train"


def test_finetune_runs_its_second_stage_on_the_clean_meta_set_only(fits, noisy_split):
    split, config = noisy_split
    record = _run("finetune", noisy_split)
    first, second = fits.calls
    np.testing.assert_array_equal(first["x"], np.concatenate([split.x_train, split.x_meta]))
    assert first["epochs"] == config.epochs
    np.testing.assert_array_equal(second["x"], split.x_meta)
    np.testing.assert_array_equal(second["y"], split.y_meta)
    assert second["epochs"] == config.finetune_epochs == 2
    # A fresh SGD for the second stage, at the fine-tuning learning rate.
    assert fits.rates == [config.learning_rate, config.finetune_learning_rate]
    assert [(s["name"], s["data"], s["epochs"]) for s in record["stages"]] == [
        ("train", "train+meta", 1),
        ("finetune", "meta", 2),
    ]
    # Curves and time cover both stages.
    assert len(record["curves"]["val_accuracy"]) == 3
    assert record["stages"][1]["val_accuracy"] == record["final"]["val_accuracy"]
    assert record["grad_norm_steps"] == 8 + 2 * 1  # 120 samples, then 12, batch 16
    stage_times = [s["wall_time_s"] for s in record["stages"]]
    assert min(stage_times) > 0
    assert record["final"]["wall_time_s"] == pytest.approx(sum(stage_times))


def test_glc_estimates_on_the_noisy_part_and_trusts_the_meta_set(fits, noisy_split):
    split, _ = noisy_split
    record = _run("glc", noisy_split)
    first, second = fits.calls
    # Stage 1: cross-entropy on the untrusted noisy part only.
    np.testing.assert_array_equal(first["x"], split.x_train)
    np.testing.assert_array_equal(first["y"], split.y_train)
    # Stage 2: noisy part + meta set, the meta samples flagged as trusted.
    np.testing.assert_array_equal(second["x"], np.concatenate([split.x_train, split.x_meta]))
    np.testing.assert_array_equal(second["y"][:, 0], np.concatenate([split.y_train, split.y_meta]))
    np.testing.assert_array_equal(
        second["y"][:, 1], np.arange(len(second["y"])) >= len(split.x_train)
    )
    assert [(s["name"], s["data"]) for s in record["stages"]] == [
        ("estimate", "train"),
        ("corrected", "train+meta"),
    ]
    assert record["stages"][1]["trusted_samples"] == len(split.x_meta)
    matrix = np.array(record["diagnostics"]["transition_matrix"])
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=1e-6)
    assert record["final"]["transition_distance"] == pytest.approx(
        0.5 * np.abs(matrix - split.noise_transition).sum(axis=1).mean()
    )
    assert record["final"]["wall_time_s"] == pytest.approx(
        sum(s["wall_time_s"] for s in record["stages"])
    )


def test_forward_correction_estimates_on_all_data_and_trusts_nothing(fits, noisy_split):
    split, _ = noisy_split
    record = _run("forward", noisy_split)
    first, second = fits.calls
    both_x = np.concatenate([split.x_train, split.x_meta])
    both_y = np.concatenate([split.y_train, split.y_meta])
    for call in (first, second):
        np.testing.assert_array_equal(call["x"], both_x)
    np.testing.assert_array_equal(first["y"], both_y)
    np.testing.assert_array_equal(second["y"][:, 0], both_y)
    assert not second["y"][:, 1].any()
    assert record["stages"][1]["trusted_samples"] == 0
    assert "transition_distance" in record["final"]


def test_sample_weighted_runs_record_the_weight_auc(noisy_split):
    record = _run("sample_weighted", noisy_split)
    assert 0.0 <= record["final"]["weight_auc"] <= 1.0
    assert record["final"]["weight_clean_mean"] > 0
    assert "weight_auc" not in _run("ce", noisy_split)["final"]


def test_results_hold_the_true_noise_transition_matrix(toy_dataset, small_config):
    config = small_config(noise_rate=0.4, noise_kind="symmetric", methods="ce", epochs=1)
    results = runner.run_comparison(config, data=toy_dataset())
    np.testing.assert_allclose(
        results["data"]["noise_transition"], [[0.6, 0.2, 0.2], [0.2, 0.6, 0.2], [0.2, 0.2, 0.6]]
    )
    realised = np.array(results["data"]["per_seed"]["0"]["noise_transition"])
    np.testing.assert_allclose(realised.sum(axis=1), 1.0)
    assert results["methods"][0]["train_data"] == "train+meta"


def test_make_callbacks_reach_every_run(toy_dataset, small_config):
    seen = []

    class Record(keras.callbacks.Callback):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def on_epoch_end(self, epoch, logs=None):
            # The metric callbacks ran first: the clean-label metrics are in the logs.
            seen.append((self.name, "val_accuracy" in logs))

    config = small_config(methods="ce,finetune", epochs=1, finetune_epochs=1)
    runner.run_comparison(
        config, data=toy_dataset(), make_callbacks=lambda name, seed: [Record(f"{name}/{seed}")]
    )
    # Fine-tuning has two monitored stages of one epoch each.
    assert seen == [("ce/0", True), ("finetune/0", True), ("finetune/0", True)]


@pytest.mark.integration
def test_the_baselines_that_use_the_meta_set_on_digits(small_config):
    config = small_config(
        dataset="digits",
        noise_rate=0.4,
        noise_kind="asymmetric",
        methods="ce,finetune,glc,forward,oracle",
        epochs=4,
        hidden_units=32,
        batch_size=32,
        train_subset=600,
        finetune_epochs=2,
    )
    results = runner.run_comparison(config)
    runs = {r["method"]: r for r in results["runs"]}
    truth = np.array(results["data"]["per_seed"]["0"]["noise_transition"])
    for name in ("glc", "forward"):
        matrix = np.array(runs[name]["diagnostics"]["transition_matrix"])
        assert matrix.shape == (10, 10)
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=1e-5)
        assert runs[name]["final"]["transition_distance"] < 1.0
    assert truth[3, 5] > 0.3  # cat -> dog: asymmetric noise
    for run in runs.values():
        assert run["final"]["val_accuracy"] > 0.3  # well above chance (0.1)


def test_adam_and_the_lookahead_learning_rate_reach_every_model(toy_dataset, small_config):
    config = small_config(noise_rate=0.4, optimizer="adam", lookahead_learning_rate=0.2)
    split = splits.make_split(toy_dataset(), config, seed=0)
    fixed, _, _ = runner._compiled_model(methods.METHODS["gce"], split, config, seed=0)
    meta, _, _ = runner._compiled_model(methods.METHODS["meta_loss"], split, config, seed=0)
    for model in (fixed, meta):
        assert isinstance(model.optimizer, keras.optimizers.Adam)
        assert float(model.optimizer.learning_rate) == pytest.approx(config.learning_rate)
    assert meta.lookahead_learning_rate == 0.2
    sgd = runner._optimizer(0.1, small_config())
    assert isinstance(sgd, keras.optimizers.SGD) and float(sgd.momentum) == 0.9


def test_imbalanced_comparison_reports_balanced_and_rare_class_accuracy(toy_dataset, small_config):
    config = small_config(
        methods="imbalance",
        imbalance_ratio=10,
        meta_per_class=5,
        meta_objective="crossentropy",
        meta_sampler="class_balanced",
        epochs=3,
    )
    results = runner.run_comparison(config, data=toy_dataset(n_train=300, classes=3))
    assert [r["method"] for r in results["runs"]] == list(methods.METHOD_SETS["imbalance"])
    counts = results["data"]["per_seed"]["0"]["train_class_counts"]
    assert counts == [95, 30, 9]
    for run in results["runs"]:
        final = run["final"]
        assert 0.0 <= final["val_rare3_accuracy"] <= 1.0
        per_class = run["diagnostics"]["val_class_accuracy"]
        assert final["val_balanced_accuracy"] == pytest.approx(np.mean(per_class))
        # 3 classes: the 3 rarest are all of them.
        assert final["val_rare3_accuracy"] == pytest.approx(np.mean(per_class))
    runs = {r["method"]: r for r in results["runs"]}
    # The learned loss moved its per-class offsets; LDAM-DRW re-weighted.
    assert runs["class_adjusted"]["loss"] == "ClassAdjustedLoss"
    offsets = [v for k, v in runs["class_adjusted"]["phi"].items() if k.startswith("phi/offset/")]
    assert len(offsets) == 3 and any(abs(curve[-1]) > 0 for curve in offsets)
    assert "balanced acc %" in report.format_table(results)


def test_imbalance_baselines_are_built_from_the_training_counts(toy_dataset, small_config):
    config = small_config(
        methods="cb_ce,logit_adjusted,ldam_drw", imbalance_ratio=10, meta_per_class=5
    )
    split = splits.make_split(toy_dataset(n_train=300, classes=3), config, seed=0)
    x, y, _ = splits.training_data(split, "train+meta")
    counts = np.bincount(y, minlength=3)
    # The baselines train on the long-tailed part plus the balanced meta set.
    assert counts.tolist() == [95 + 5, 30 + 5, 9 + 5]
    losses = {}
    for name in ("cb_ce", "logit_adjusted", "ldam_drw"):
        _, loss, _ = runner._compiled_model(methods.METHODS[name], split, config, 0, counts)
        losses[name] = loss
    np.testing.assert_allclose(
        losses["cb_ce"].weights, imbalance.class_balanced_weights(counts), rtol=1e-6
    )
    np.testing.assert_allclose(
        losses["logit_adjusted"].offsets, np.log(counts / counts.sum()), rtol=1e-6
    )
    np.testing.assert_allclose(losses["ldam_drw"].margins, imbalance.ldam_margins(counts))
    (drw,) = methods.METHODS["ldam_drw"].make_callbacks(losses["ldam_drw"], config, counts)
    assert drw.start_epoch == int(0.8 * config.epochs)


def test_retrain_freezes_the_averaged_phi_and_retrains_on_all_the_data(
    toy_dataset, small_config, monkeypatch
):
    from tf_metaloss.losses import ClassAdjustedLoss

    built = []

    def make(config, seed, class_counts):
        built.append(list(class_counts))
        return ClassAdjustedLoss(3, from_logits=True, class_counts=list(class_counts))

    method = methods.Method(
        "tau_retrain", "tau, retrained", "learned", make, "retrain", uses_class_counts=True
    )
    monkeypatch.setitem(methods.METHODS, "tau_retrain", method)
    config = small_config(
        methods="tau_retrain",
        imbalance_ratio=10,
        meta_per_class=5,
        meta_objective="crossentropy",
        meta_learning_rate=0.5,
        epochs=4,
    )
    results = runner.run_comparison(config, data=toy_dataset(n_train=300, classes=3))
    (run,) = results["runs"]
    # Stage 1 is built from the long-tailed training part's counts.
    assert built == [[95, 30, 9]]
    meta, retrain = run["stages"]
    assert (meta["name"], meta["data"], meta["samples"]) == ("meta", "train", 134)
    assert (retrain["name"], retrain["data"], retrain["samples"]) == ("retrain", "train+meta", 149)
    # Stage 1 moved tau, without a guard to take it back; stage 2 trains with
    # the mean of its values at the ends of epochs 3 and 4 (the second half).
    path = run["phi"]["phi/tau"]
    assert len(path) == 5 and path[0] == 1.0 and path[-1] != 1.0
    assert retrain["phi"]["phi/tau"] == pytest.approx(np.mean(path[3:]), rel=1e-5)
    # Stage 2's curves: 4 epochs of 10 batches of 16 (149 samples), phi frozen.
    assert len(run["curves"]["val_accuracy"]) == 4
    assert run["grad_norm_steps"] == 4 * 10
