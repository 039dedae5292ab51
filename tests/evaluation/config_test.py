"""Tests of `CompareConfig`."""

import json

import pytest

from tf_metaloss.evaluation.config import PRESETS
from tf_metaloss.evaluation.config import CompareConfig
from tf_metaloss.evaluation.methods import METHOD_SETS
from tf_metaloss.meta import estimators


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
def test_config_validation(small_config, kwargs, match):
    with pytest.raises(ValueError, match=match):
        small_config(**kwargs)


def test_finetune_settings_are_checked(small_config):
    config = small_config()
    assert (config.finetune_epochs, config.finetune_learning_rate) == (10, 0.01)
    with pytest.raises(ValueError, match="`finetune_epochs`"):
        small_config(finetune_epochs=0)
    with pytest.raises(ValueError, match="`finetune_learning_rate`"):
        small_config(finetune_learning_rate=0.0)


def test_full_length_preset():
    config = CompareConfig.from_preset("cifar10-dev-full", dataset="cifar10_dev.npz")
    # The whole training split (9,000 + 1,000 meta of cifar10_dev's 10,000),
    # conv32-64 + dense 128, batch 128, 30 epochs, SGD 0.05 m0.9, 3 seeds,
    # evaluated on the file's validation images.
    assert (config.model, config.hidden_units, config.batch_size, config.epochs) == (
        "cnn",
        128,
        128,
        30,
    )
    assert (config.learning_rate, config.momentum, config.meta_fraction) == (0.05, 0.9, 0.1)
    assert (config.train_subset, config.eval_split, config.seeds) == (None, "val", (0, 1, 2))
    assert config.preset == "cifar10-dev-full" and config.to_dict()["preset"] == config.preset
    # Every fixed robust loss, the baselines that use the meta set, forward
    # correction with an estimated T, the default learned loss and the oracle.
    baselines = set(METHOD_SETS["baselines"])
    assert baselines <= set(config.methods)
    assert {"finetune", "glc", "forward", "meta_loss", "oracle"} <= set(config.methods)


def test_presets_are_overridable_and_need_their_dataset():
    config = CompareConfig.from_preset(
        "cifar10-dev-full",
        dataset="x.npz",
        noise_rate=0.4,
        noise_kind="asymmetric",
        seeds=(2,),
        methods="glc",
        epochs=1,
        train_subset=1000,
    )
    assert (config.noise_rate, config.noise_kind, config.seeds) == (0.4, "asymmetric", (2,))
    assert (config.methods, config.epochs, config.train_subset) == (("glc",), 1, 1000)
    assert config.model == "cnn"  # not overridden
    with pytest.raises(ValueError, match=r"argument `dataset`.*cifar10_dev\.npz"):
        CompareConfig.from_preset("cifar10-dev-full")
    with pytest.raises(ValueError, match="argument `preset`"):
        CompareConfig.from_preset("imagenet")
    with pytest.raises(ValueError, match="argument `preset`"):
        CompareConfig(preset="imagenet")
    smoke = CompareConfig.from_preset("digits-smoke")
    assert (smoke.dataset, smoke.model, smoke.epochs, smoke.preset) == (
        "digits",
        "mlp",
        60,
        "digits-smoke",
    )
    assert CompareConfig.from_preset("cifar10-dev-smoke", dataset="x.npz").train_subset == 5000


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_a_valid_config(name):
    config = CompareConfig.from_preset(name, dataset="data.npz")
    assert config.preset == name and PRESETS[name].description


def test_meta_method_defaults_to_the_exact_one_step_meta_gradient(small_config):
    config = small_config()
    assert config.meta_method == "second_order"
    assert config.estimator() == estimators.Unrolled(steps=1)
    assert small_config(unroll_steps=3).estimator() == estimators.Unrolled(steps=3)
    assert small_config(meta_method="first_order", unroll_steps=2).estimator() == (
        estimators.Unrolled(steps=2, first_order=True)
    )


@pytest.mark.parametrize("name", sorted(estimators.ALIASES))
def test_meta_method_takes_every_registered_name(small_config, name):
    config = small_config(meta_method=name)
    assert config.meta_method == name and config.to_dict()["meta_method"] == name
    assert config.estimator() == estimators.get(name)


def test_meta_method_estimators_are_recorded_by_their_config(small_config):
    estimator = estimators.ConjugateGradient(iterations=2, damping=0.5)
    config = small_config(meta_method=estimator)
    assert config.meta_method == estimators.serialize(estimator)
    # The short form `tml.meta.estimators.get` accepts is recorded in full.
    short = {"class_name": "tf_metaloss>ConjugateGradient", "config": {"iterations": 2}}
    assert small_config(meta_method=short).meta_method == estimators.serialize(
        estimators.ConjugateGradient(iterations=2)
    )
    # The recorded settings (JSON) give the same config and estimator back.
    again = CompareConfig(**json.loads(json.dumps(config.to_dict())))
    assert again.to_dict() == config.to_dict()
    assert again.estimator() == estimator


@pytest.mark.parametrize(
    "meta_method, match",
    [
        ("third_order", r"argument `meta_method`.*Received: meta_method='third_order'"),
        (3, r"argument `meta_method`.*Received: meta_method=3"),
        (
            {"class_name": "tf_metaloss>Nope", "config": {}},
            r"argument `meta_method`.*Could not locate class 'tf_metaloss>Nope'",
        ),
        (
            {"class_name": "tf_metaloss>Neumann", "config": {"termz": 2}},
            r"argument `meta_method`.*unexpected keyword argument 'termz'",
        ),
        (
            {"class_name": "tf_metaloss>Neumann", "config": {"terms": -1}},
            r"argument `terms`.*Received: terms=-1",
        ),
    ],
)
def test_meta_method_errors_name_the_argument(small_config, meta_method, match):
    with pytest.raises(ValueError, match=match):
        small_config(meta_method=meta_method)


@pytest.mark.parametrize("meta_method", ["neumann", estimators.FiniteDifference()])
def test_unroll_steps_apply_to_the_unrolled_methods_only(small_config, meta_method):
    with pytest.raises(
        ValueError, match=r"`unroll_steps` and `meta_method` conflict: unroll_steps=2"
    ):
        small_config(meta_method=meta_method, unroll_steps=2)


def test_sst2_preset_is_sized_for_two_cores():
    config = CompareConfig.from_preset("sst2-tiny", dataset="glue_sst2")
    assert (config.model, config.hidden_units, config.sequence_length) == ("tiny_bert", 64, 64)
    assert (config.optimizer, config.learning_rate, config.lookahead_learning_rate) == (
        "adam",
        1e-3,
        0.05,
    )
    assert (config.train_subset, config.epochs, config.seeds) == (4000, 4, (0, 1, 2))
    assert {"ce", "gce", "meta_loss"} <= set(config.methods)
    with pytest.raises(ValueError, match=r"argument `dataset`.*sst2_train\.jsonl"):
        CompareConfig.from_preset("sst2-tiny")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"optimizer": "rmsprop"}, "argument `optimizer`"),
        ({"lookahead_learning_rate": 0.0}, "argument `lookahead_learning_rate`"),
        ({"vocabulary_size": 0}, "argument `vocabulary_size`"),
        ({"sequence_length": -1}, "argument `sequence_length`"),
    ],
)
def test_text_and_optimizer_settings_are_checked(small_config, kwargs, match):
    with pytest.raises(ValueError, match=match):
        small_config(**kwargs)
