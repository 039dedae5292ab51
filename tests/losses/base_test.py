"""The contract every learnable loss family keeps (`LearnableLoss`)."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf  # noqa: F401

import tf_metaloss as tml
from tf_metaloss.losses import BlendLoss
from tf_metaloss.losses import ClipConstraint
from tf_metaloss.losses import FixedLoss
from tf_metaloss.losses import LearnableLoss
from tf_metaloss.losses import MetaLoss
from tf_metaloss.losses import NeuralLoss
from tf_metaloss.losses import PolynomialLoss
from tf_metaloss.losses import SampleWeightedLoss
from tf_metaloss.losses import functional

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
    "meta_loss": (lambda **kw: MetaLoss(**{"from_logits": True, **kw}), "generalized_crossentropy"),
    "meta_loss_blend": (
        lambda **kw: MetaLoss(base_losses=["crossentropy", "focal"], **{"from_logits": True, **kw}),
        "crossentropy",
    ),
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
def test_every_family_keeps_the_public_contract(case):
    factory, base = FAMILIES[case]
    tml.testing.run_learnable_loss_test(factory, starts_as=base)


@families
class TestLearnableLossContract:
    def test_is_a_keras_loss(self, case):
        loss = make(case)
        assert isinstance(loss, LearnableLoss)
        assert isinstance(loss, keras.losses.Loss)
        assert loss.regression == case.endswith("regression")
        assert len(loss.trainable_variables) == len(loss.parameter_names) > 0
        assert set(loss.parameters()) == set(loss.parameter_names)

    def test_registered_with_keras(self, case):
        loss = make(case)
        registered_name = f"tf_metaloss>{type(loss).__name__}"
        assert keras.saving.get_registered_object(registered_name) is type(loss)
        resolved = keras.losses.get({"class_name": registered_name, "config": loss.get_config()})
        assert type(resolved) is type(loss)
        assert resolved.get_config() == loss.get_config()

    def test_regularization_disabled_by_default(self, case):
        loss = make(case)
        assert loss.regularization == 0.0
        assign(loss, perturbed_values(loss))
        np.testing.assert_allclose(loss.regularization_penalty(), 0.0)

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


# -- the public contract helper fails on broken families -----------------------------


@keras.saving.register_keras_serializable(package="tf_metaloss_tests")
class ScaledCrossEntropy(LearnableLoss):
    """A minimal correct family: `scale * CE`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.regression = False
        self.add_parameter("scale", (), keras.initializers.Constant(1.0))

    def compute(self, parameters, y_true, y_pred):
        return parameters["scale"] * functional.crossentropy(y_true, y_pred, self.from_logits)


@keras.saving.register_keras_serializable(package="tf_metaloss_tests")
class IgnoresStatelessValues(ScaledCrossEntropy):
    def stateless_call(self, parameter_values, y_true, y_pred, sample_weight=None):
        return self(y_true, y_pred, sample_weight=sample_weight)


@keras.saving.register_keras_serializable(package="tf_metaloss_tests")
class MeanNotPerSample(ScaledCrossEntropy):
    def compute(self, parameters, y_true, y_pred):
        return keras.ops.mean(super().compute(parameters, y_true, y_pred))


class Unregistered(ScaledCrossEntropy):
    pass


def test_contract_helper_passes_a_correct_custom_family():
    tml.testing.run_learnable_loss_test(
        lambda **kw: ScaledCrossEntropy(from_logits=True, **kw), starts_as="crossentropy"
    )


@pytest.mark.parametrize(
    "cls, message",
    [
        (IgnoresStatelessValues, "stateless_call"),
        (MeanNotPerSample, "one value per sample"),
        (Unregistered, "register_keras_serializable"),
    ],
)
def test_contract_helper_names_what_is_broken(cls, message):
    with pytest.raises(AssertionError, match=message):
        tml.testing.run_learnable_loss_test(lambda **kw: cls(from_logits=True, **kw))


def test_contract_helper_detects_a_wrong_starting_loss():
    with pytest.raises(AssertionError, match="must start as focal"):
        tml.testing.run_learnable_loss_test(
            lambda **kw: ScaledCrossEntropy(from_logits=True, **kw), starts_as="focal"
        )
