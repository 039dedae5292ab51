import keras
import numpy as np
import pytest

import tf_metaloss as tml
from tf_metaloss.losses import FixedLoss
from tf_metaloss.losses import SampleWeightedLoss
from tf_metaloss.losses import functional

# Three confident correct samples and one confidently wrong (high loss) one.
LABELS = np.array([0, 1, 2, 0])
LOGITS = np.array(
    [[3.0, 0.0, 0.0], [0.0, 2.5, 0.0], [0.0, 0.0, 2.0], [0.0, 4.0, 0.0]],
    dtype="float32",
)
CE = keras.ops.convert_to_numpy(functional.crossentropy(LABELS, LOGITS, from_logits=True))


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def randomize(loss, seed=0):
    rng = np.random.default_rng(seed)
    for v in loss.trainable_variables:
        v.assign(rng.normal(size=v.shape).astype("float32"))


class TestSampleWeightedLoss:
    def test_defaults(self):
        loss = SampleWeightedLoss()
        assert loss.base_loss == "crossentropy" and loss.hidden_units == (32,)
        assert loss.normalize
        assert [tuple(v.shape) for v in loss.trainable_variables] == [
            (1, 32),
            (32,),
            (32, 1),
            (1,),
        ]

    def test_weights_start_equal_to_one(self):
        loss = SampleWeightedLoss(hidden_units=(4,), seed=0, from_logits=True)
        weights = loss.sample_weights(LABELS, LOGITS)
        assert weights.shape == (4,)
        np.testing.assert_allclose(weights, 1.0, rtol=1e-6)

    def test_unnormalized_weights_start_at_one_half(self):
        loss = SampleWeightedLoss(
            hidden_units=(4,), normalize=False, from_logits=True, reduction=None
        )
        np.testing.assert_allclose(loss.sample_weights(LABELS, LOGITS), 0.5)
        np.testing.assert_allclose(loss(LABELS, LOGITS), 0.5 * CE, rtol=1e-6)

    def test_normalized_weights_have_mean_one(self):
        loss = SampleWeightedLoss(hidden_units=(4,), from_logits=True)
        for seed in range(3):
            randomize(loss, seed)
            weights = keras.ops.convert_to_numpy(loss.sample_weights(LABELS, LOGITS))
            np.testing.assert_allclose(weights.mean(), 1.0, rtol=1e-5)
            assert weights.std() > 1e-3  # ... and differ between samples.
            assert np.all(weights > 0)

    def test_high_loss_samples_can_be_down_weighted(self):
        loss = SampleWeightedLoss(hidden_units=(1,), from_logits=True)
        # w(l) = sigmoid(-5 * tanh(l)): decreasing in the sample's loss.
        loss.trainable_variables[0].assign([[1.0]])
        loss.trainable_variables[1].assign([0.0])
        loss.trainable_variables[2].assign([[-5.0]])
        loss.trainable_variables[3].assign([0.0])
        raw = sigmoid(-5 * np.tanh(CE))
        expected = raw / raw.mean()
        weights = keras.ops.convert_to_numpy(loss.sample_weights(LABELS, LOGITS))
        np.testing.assert_allclose(weights, expected, rtol=1e-5)
        assert np.argmax(CE) == 3 and np.argmin(weights) == 3
        assert weights[3] < 0.1 and np.all(weights[:3] > 0.9)
        np.testing.assert_allclose(loss(LABELS, LOGITS), np.mean(expected * CE), rtol=1e-5)
        assert float(loss(LABELS, LOGITS)) < CE.mean() / 2

    def test_sample_weights_at_given_values(self):
        loss = SampleWeightedLoss(hidden_units=(2,), from_logits=True)
        values = [v.numpy() for v in loss.trainable_variables]
        values[3] = np.array([1.5], "float32")
        values[2] = np.array([[1.0], [-1.0]], "float32")
        stateless = loss.sample_weights(LABELS, LOGITS, parameter_values=values)
        for v, value in zip(loss.trainable_variables, values):
            v.assign(value)
        np.testing.assert_allclose(stateless, loss.sample_weights(LABELS, LOGITS))

    def test_weights_do_not_pass_gradient_to_the_model(self):
        # The weight network sees each loss with its gradient stopped: the
        # gradient is that of the base loss weighted by constant weights.
        loss = SampleWeightedLoss(hidden_units=(4,), from_logits=True)
        randomize(loss)
        weights = loss.sample_weights(LABELS, LOGITS)
        reference_loss = FixedLoss("crossentropy", from_logits=True)
        # Gradients with respect to the logits, as the model's weight gradient sees them.
        value, (gradient,) = tml.backend.value_and_grad(lambda w: loss(LABELS, w[0]))(
            [keras.ops.convert_to_tensor(LOGITS)]
        )
        reference, (reference_gradient,) = tml.backend.value_and_grad(
            lambda w: reference_loss(LABELS, w[0], sample_weight=weights)
        )([keras.ops.convert_to_tensor(LOGITS)])
        np.testing.assert_allclose(value, reference, rtol=1e-6)
        np.testing.assert_allclose(gradient, reference_gradient, rtol=1e-5, atol=1e-7)

    def test_regression(self):
        y_true = np.array([[0.0], [1.0], [2.0]], dtype="float32")
        y_pred = np.array([[0.5], [1.0], [5.0]], dtype="float32")
        loss = SampleWeightedLoss("mae", hidden_units=(2,), reduction=None)
        assert loss.regression
        np.testing.assert_allclose(loss(y_true, y_pred), [0.5, 0.0, 3.0], rtol=1e-6)

    def test_parameter_summary(self):
        summary = SampleWeightedLoss(hidden_units=(2,)).parameter_summary()
        assert list(summary) == [
            "phi/kernel_0_0",
            "phi/kernel_0_1",
            "phi/bias_0_0",
            "phi/bias_0_1",
            "phi/kernel_out_0",
            "phi/kernel_out_1",
            "phi/bias_out_0",
        ]

    def test_config(self):
        config = SampleWeightedLoss(
            "focal", hidden_units=(3,), normalize=False, seed=4
        ).get_config()
        assert config["base_loss"] == "focal"
        assert config["hidden_units"] == [3]
        assert config["normalize"] is False
        assert config["seed"] == 4


class TestSampleWeightedLossErrors:
    @pytest.mark.parametrize("hidden_units", [(), (0,), (4, 0), (1.5,), None])
    def test_bad_hidden_units(self, hidden_units):
        with pytest.raises(ValueError, match="argument `hidden_units`.*Received"):
            SampleWeightedLoss(hidden_units=hidden_units)

    def test_bad_base_loss(self):
        with pytest.raises(ValueError, match="argument `base_loss`.*Received"):
            SampleWeightedLoss("weighted_crossentropy")
