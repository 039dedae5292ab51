"""The contract every learnable loss family keeps (`LearnableLoss`)."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_metaloss.losses import BlendLoss
from tf_metaloss.losses import ClipConstraint
from tf_metaloss.losses import FixedLoss
from tf_metaloss.losses import LearnableLoss
from tf_metaloss.losses import MetaLoss
from tf_metaloss.losses import NeuralLoss
from tf_metaloss.losses import PolynomialLoss
from tf_metaloss.losses import SampleWeightedLoss

# name -> (factory, the base loss it starts as). Classification factories
# default to from_logits=True; keyword arguments override.
FAMILIES = {
    "blend": (lambda **kw: BlendLoss(**{"from_logits": True, **kw}), "crossentropy"),
    "blend_regression": (lambda **kw: BlendLoss(["mse", "mae", "huber"], **kw), "mse"),
    "polynomial": (
        lambda **kw: PolynomialLoss(**{"from_logits": True, **kw}),
        "crossentropy",
    ),
    "polynomial_one_minus_p": (
        lambda **kw: PolynomialLoss(
            degree=2, expansion="one_minus_p", **{"from_logits": True, **kw}
        ),
        "crossentropy",
    ),
    "polynomial_regression": (lambda **kw: PolynomialLoss("mse", **kw), "mse"),
    "neural": (
        lambda **kw: NeuralLoss(hidden_units=(4,), seed=1, **{"from_logits": True, **kw}),
        "crossentropy",
    ),
    "neural_regression": (
        lambda **kw: NeuralLoss("mse", hidden_units=(4,), seed=1, **kw),
        "mse",
    ),
    "sample_weighted": (
        lambda **kw: SampleWeightedLoss(hidden_units=(4,), seed=1, **{"from_logits": True, **kw}),
        "crossentropy",
    ),
    "meta_loss": (lambda **kw: MetaLoss(**{"from_logits": True, **kw}), "crossentropy"),
    "meta_loss_regression": (lambda **kw: MetaLoss(task="regression", **kw), "mse"),
}
CLASSIFICATION = [k for k in FAMILIES if not k.endswith("regression")]

RNG = np.random.default_rng(0)
CLASS_LABELS = np.array([0, 2, 1, 3, 3, 0])
CLASS_LOGITS = RNG.normal(size=(6, 4)).astype("float32") * 2
REG_TARGETS = RNG.normal(size=(6, 2)).astype("float32")
REG_PREDS = RNG.normal(size=(6, 2)).astype("float32")
SAMPLE_WEIGHT = np.array([1.0, 0.5, 2.0, 0.0, 1.5, 1.0], dtype="float32")


def make(case, **kwargs):
    return FAMILIES[case][0](**kwargs)


def data(loss):
    if loss.regression:
        return REG_TARGETS, REG_PREDS
    return CLASS_LABELS, CLASS_LOGITS


def perturbations(loss, scale=0.3, seed=0):
    """Non-negative offsets for phi (they keep default lower bounds of 0)."""
    rng = np.random.default_rng(seed)
    return [
        np.abs(rng.normal(size=v.shape)).astype(v.dtype) * scale for v in loss.trainable_variables
    ]


def perturbed_values(loss, seed=0):
    return [v.numpy() + d for v, d in zip(loss.trainable_variables, perturbations(loss, seed=seed))]


def assign(loss, values):
    for variable, value in zip(loss.trainable_variables, values):
        variable.assign(value)


families = pytest.mark.parametrize("case", list(FAMILIES))


@families
class TestLearnableLossContract:
    def test_is_a_keras_loss(self, case):
        loss = make(case)
        assert isinstance(loss, LearnableLoss)
        assert isinstance(loss, keras.losses.Loss)
        assert loss.regression == case.endswith("regression")
        assert len(loss.trainable_variables) == len(loss.parameter_names) > 0
        assert set(loss.parameters()) == set(loss.parameter_names)

    def test_starts_as_its_base_loss(self, case):
        loss = make(case, reduction=None)
        y_true, y_pred = data(loss)
        base = FixedLoss(FAMILIES[case][1], from_logits=loss.from_logits, reduction=None)
        np.testing.assert_allclose(loss(y_true, y_pred), base(y_true, y_pred), rtol=1e-6, atol=1e-7)

    def test_get_config_from_config_round_trip(self, case):
        loss = make(case, regularization=0.25, name="my_loss", reduction="sum")
        config = loss.get_config()
        clone = type(loss).from_config(config)
        assert type(clone) is type(loss)
        assert clone.get_config() == config
        assert config["regularization"] == 0.25 and config["name"] == "my_loss"
        y_true, y_pred = data(loss)
        np.testing.assert_allclose(clone(y_true, y_pred), loss(y_true, y_pred), rtol=1e-6)

    def test_serialize_deserialize_round_trip(self, case):
        loss = make(case, bounds=(0.0, 5.0))
        serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(loss)))
        clone = keras.saving.deserialize_keras_object(serialized)
        assert type(clone) is type(loss)
        assert clone.get_config() == loss.get_config()
        assert clone.bounds == (0.0, 5.0)

    def test_registered_with_keras(self, case):
        loss = make(case)
        registered_name = f"tf_metaloss>{type(loss).__name__}"
        assert keras.saving.get_registered_object(registered_name) is type(loss)
        resolved = keras.losses.get({"class_name": registered_name, "config": loss.get_config()})
        assert type(resolved) is type(loss)
        assert resolved.get_config() == loss.get_config()

    def test_reductions(self, case):
        y_true, y_pred = data(make(case))
        per_sample = make(case, reduction=None)(y_true, y_pred)
        assert per_sample.shape == (6,)
        np.testing.assert_allclose(
            make(case, reduction="none")(y_true, y_pred), per_sample, rtol=1e-6
        )
        np.testing.assert_allclose(
            make(case, reduction="sum")(y_true, y_pred), np.sum(per_sample), rtol=1e-6
        )
        np.testing.assert_allclose(
            make(case, reduction="sum_over_batch_size")(y_true, y_pred),
            np.mean(per_sample),
            rtol=1e-6,
        )

    def test_sample_weight(self, case):
        loss = make(case)
        y_true, y_pred = data(loss)
        per_sample = make(case, reduction=None)(y_true, y_pred)
        np.testing.assert_allclose(
            loss(y_true, y_pred, sample_weight=SAMPLE_WEIGHT),
            np.sum(per_sample * SAMPLE_WEIGHT) / 6,
            rtol=1e-6,
        )
        np.testing.assert_allclose(loss(y_true, y_pred, sample_weight=np.zeros(6, "float32")), 0.0)

    def test_float64(self, case):
        loss = make(case, dtype="float64")
        assert loss.dtype == "float64"
        assert all(v.dtype == "float64" for v in loss.variables)
        y_true, y_pred = data(loss)
        value = loss(y_true, y_pred.astype("float64"))
        assert keras.backend.standardize_dtype(value.dtype) == "float64"
        np.testing.assert_allclose(value, make(case)(y_true, y_pred), rtol=1e-5)
        clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
        assert all(v.dtype == "float64" for v in clone.trainable_variables)

    def test_assigning_parameters_changes_the_loss(self, case):
        loss = make(case)
        y_true, y_pred = data(loss)
        start = float(loss(y_true, y_pred))
        values = perturbed_values(loss)
        assign(loss, values)
        for variable, value in zip(loss.trainable_variables, values):
            np.testing.assert_array_equal(variable.numpy(), value)
        for name, value in zip(loss.parameter_names, values):
            np.testing.assert_array_equal(loss.parameters()[name], value)
        assert abs(float(loss(y_true, y_pred)) - start) > 1e-4

    def test_reset_parameters(self, case):
        loss = make(case)
        y_true, y_pred = data(loss)
        initial = [v.numpy().copy() for v in loss.trainable_variables]
        start = loss(y_true, y_pred)
        assign(loss, perturbed_values(loss))
        loss.reset_parameters()
        for variable, value in zip(loss.trainable_variables, initial):
            np.testing.assert_array_equal(variable.numpy(), value)
        np.testing.assert_allclose(loss(y_true, y_pred), start, rtol=1e-7)

    def test_stateless_call_matches_call(self, case):
        loss = make(case)
        y_true, y_pred = data(loss)
        initial = [v.numpy().copy() for v in loss.trainable_variables]
        values = perturbed_values(loss)
        stateless = loss.stateless_call(values, y_true, y_pred)
        weighted = loss.stateless_call(values, y_true, y_pred, sample_weight=SAMPLE_WEIGHT)
        # Nothing was assigned.
        for variable, value in zip(loss.trainable_variables, initial):
            np.testing.assert_array_equal(variable.numpy(), value)
        assign(loss, values)
        np.testing.assert_allclose(stateless, loss(y_true, y_pred), rtol=1e-6)
        np.testing.assert_allclose(
            weighted, loss(y_true, y_pred, sample_weight=SAMPLE_WEIGHT), rtol=1e-6
        )

    def test_stateless_call_is_differentiable_in_the_values(self, case):
        loss = make(case)
        y_true, y_pred = data(loss)
        values = [tf.constant(v) for v in perturbed_values(loss)]
        with tf.GradientTape() as tape:
            tape.watch(values)
            value = loss.stateless_call(values, y_true, y_pred)
        grads = tape.gradient(value, values)
        assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
        assert any(np.abs(g.numpy()).max() > 0 for g in grads)

    def test_parameter_summary(self, case):
        loss = make(case)
        summary = loss.parameter_summary()
        assert summary and all(key.startswith("phi/") for key in summary)
        assert all(np.isfinite(float(v)) for v in summary.values())

    def test_regularization_penalty(self, case):
        loss = make(case, regularization=0.5)
        np.testing.assert_allclose(loss.regularization_penalty(), 0.0)
        offsets = perturbations(loss)
        values = [v.numpy() + d for v, d in zip(loss.trainable_variables, offsets)]
        expected = 0.5 * sum(float(np.sum(d.astype("float64") ** 2)) for d in offsets)
        np.testing.assert_allclose(loss.regularization_penalty(values), expected, rtol=1e-5)
        assign(loss, values)
        np.testing.assert_allclose(loss.regularization_penalty(), expected, rtol=1e-5)
        np.testing.assert_allclose(
            loss.regularization_penalty([loss._initial_values[n] for n in loss.parameter_names]),
            0.0,
        )

    def test_regularization_disabled_by_default(self, case):
        loss = make(case)
        assert loss.regularization == 0.0
        assign(loss, perturbed_values(loss))
        np.testing.assert_allclose(loss.regularization_penalty(), 0.0)

    def test_bounds_clip_parameters_after_optimizer_update(self, case):
        loss = make(case, bounds=(-0.25, 0.25))
        assert loss.bounds == (-0.25, 0.25)
        for variable in loss.trainable_variables:
            assert np.all(np.abs(variable.numpy()) <= 0.25)
        rng = np.random.default_rng(1)
        grads = [
            (rng.choice([-10.0, 10.0], size=v.shape)).astype(v.dtype)
            for v in loss.trainable_variables
        ]
        keras.optimizers.SGD(learning_rate=1.0).apply(grads, loss.trainable_variables)
        for variable, grad in zip(loss.trainable_variables, grads):
            # A step of 10 crosses the bound: every element sits on it.
            np.testing.assert_allclose(variable.numpy(), -0.025 * grad)

    def test_common_argument_errors(self, case):
        bad_arguments = [
            ({"from_logits": "yes"}, "from_logits"),
            ({"from_logits": 1}, "from_logits"),
            ({"regularization": -1.0}, "regularization"),
            ({"regularization": "strong"}, "regularization"),
            ({"bounds": 5}, "bounds"),
            ({"bounds": (1.0, 0.0)}, "bounds"),
            ({"bounds": (0.0, 1.0, 2.0)}, "bounds"),
            ({"bounds": ("low", 1.0)}, "bounds"),
            ({"reduction": "average"}, "reduction"),
        ]
        for kwargs, argument in bad_arguments:
            with pytest.raises(ValueError, match=f"Invalid value for argument `{argument}`"):
                make(case, **kwargs)


@pytest.mark.parametrize("case", CLASSIFICATION)
def test_starts_as_its_base_loss_on_probabilities(case):
    loss = make(case, from_logits=False)
    probs = keras.ops.softmax(CLASS_LOGITS)
    expected = FixedLoss(FAMILIES[case][1])(CLASS_LABELS, probs)
    np.testing.assert_allclose(loss(CLASS_LABELS, probs), expected, rtol=1e-6)
    # ... and the same value as on the logits.
    logits_loss = make(case, from_logits=True)
    np.testing.assert_allclose(logits_loss(CLASS_LABELS, CLASS_LOGITS), expected, rtol=1e-5)


@families
def test_works_frozen_in_a_plain_keras_model(case):
    loss = make(case)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(32, 3)).astype("float32")
    if loss.regression:
        y, units = rng.normal(size=(32, 2)).astype("float32"), 2
    else:
        y, units = rng.integers(0, 4, size=(32,)), 4
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(units)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    weights = [w.numpy().copy() for w in model.trainable_weights]
    phi = [v.numpy().copy() for v in loss.trainable_variables]
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert len(model.trainable_weights) == 2  # phi is not a model weight
    for before, after in zip(weights, model.trainable_weights):
        assert not np.allclose(before, after.numpy())
    for before, after in zip(phi, loss.trainable_variables):
        np.testing.assert_array_equal(before, after.numpy())


class TestClipConstraint:
    def test_clips(self):
        c = ClipConstraint(low=0.0, high=2.0)
        np.testing.assert_array_equal(c(np.array([-1.0, 1.0, 3.0])), [0.0, 1.0, 2.0])

    def test_open_ends(self):
        x = np.array([-1.0, 1.0, 3.0])
        np.testing.assert_array_equal(ClipConstraint(low=0.0)(x), [0.0, 1.0, 3.0])
        np.testing.assert_array_equal(ClipConstraint(high=0.0)(x), [-1.0, 0.0, 0.0])
        np.testing.assert_array_equal(ClipConstraint()(x), x)

    def test_serialization(self):
        c = ClipConstraint(low=-1.0, high=1.0)
        clone = keras.saving.deserialize_keras_object(
            json.loads(json.dumps(keras.saving.serialize_keras_object(c)))
        )
        assert isinstance(clone, ClipConstraint)
        assert clone.get_config() == {"low": -1.0, "high": 1.0}
        assert (
            keras.constraints.get(
                {"class_name": "tf_metaloss>ClipConstraint", "config": c.get_config()}
            ).get_config()
            == c.get_config()
        )


def test_base_class_requires_compute():
    class Bare(LearnableLoss):
        pass

    with pytest.raises(NotImplementedError):
        Bare()(np.array([0]), np.array([[1.0, 0.0]]))


def test_parameters_live_in_a_tracked_layer():
    loss = BlendLoss()
    assert isinstance(loss.loss_parameters, keras.layers.Layer)
    # phi plus its frozen start values.
    assert len(loss.variables) == 2 * len(loss.trainable_variables)
    assert [v.name for v in loss.non_trainable_variables] == ["blend_weights_initial"]
    assert all(not v.trainable for v in loss.non_trainable_variables)
