import keras
import numpy as np
import pytest

import tf_metaloss as tml
from tf_metaloss.losses import NeuralLoss
from tf_metaloss.losses import functional

LABELS = np.array([0, 2, 1, 1])
LOGITS = np.array(
    [[2.0, 0.0, -1.0], [0.5, -0.3, 1.2], [-1.0, 2.5, 0.1], [0.0, 0.0, 0.0]],
    dtype="float32",
)
CE = keras.ops.convert_to_numpy(functional.crossentropy(LABELS, LOGITS, from_logits=True))
Y_TRUE = np.array([[1.0, 2.0], [0.5, -1.0], [0.0, 3.0]], dtype="float32")
Y_PRED = np.array([[1.5, 0.0], [3.0, -1.2], [0.1, 1.0]], dtype="float32")


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def reference_scale(params, features):
    """NumPy version of the documented multiplier 2 * sigmoid(mean_c h(x_c))."""
    h = np.tanh(features @ params["kernel_0"] + params["bias_0"])
    out = (h @ params["kernel_out"] + params["bias_out"])[..., 0]
    return 2 * sigmoid(out.mean(axis=-1))


def randomize(loss, seed=0):
    rng = np.random.default_rng(seed)
    for v in loss.trainable_variables:
        v.assign(rng.normal(size=v.shape).astype("float32"))
    return {n: v.numpy() for n, v in zip(loss.parameter_names, loss.trainable_variables)}


class TestNeuralLoss:
    def test_defaults(self):
        loss = NeuralLoss()
        assert loss.base_loss == "crossentropy" and loss.hidden_units == (16,)
        assert loss.parameter_names == ["kernel_0", "bias_0", "kernel_out", "bias_out"]
        assert [tuple(v.shape) for v in loss.trainable_variables] == [
            (2, 16),
            (16,),
            (16, 1),
            (1,),
        ]
        # The output layer starts at zero: the scale is exactly 1.
        np.testing.assert_array_equal(loss.trainable_variables[2], 0.0)
        np.testing.assert_array_equal(loss.trainable_variables[3], 0.0)

    def test_scale_starts_at_one(self):
        loss = NeuralLoss(hidden_units=(8, 8), seed=3, from_logits=True)
        params = loss.parameters()
        np.testing.assert_array_equal(loss.scale(params, LABELS, LOGITS), 1.0)

    def test_output_bias_golden(self):
        loss = NeuralLoss(hidden_units=(4,), seed=0, from_logits=True, reduction=None)
        loss.trainable_variables[3].assign([0.7])
        np.testing.assert_allclose(loss(LABELS, LOGITS), CE * 2 * sigmoid(0.7), rtol=1e-6)

    def test_classification_matches_reference(self):
        loss = NeuralLoss(hidden_units=(5,), from_logits=True, reduction=None)
        params = randomize(loss)
        features = np.stack([np.eye(3)[LABELS], softmax(LOGITS)], axis=-1)
        expected = CE * reference_scale(params, features)
        np.testing.assert_allclose(loss(LABELS, LOGITS), expected, rtol=1e-5)

    def test_regression_matches_reference(self):
        loss = NeuralLoss("mse", hidden_units=(5,), reduction=None)
        assert loss.regression
        assert tuple(loss.trainable_variables[0].shape) == (3, 5)
        np.testing.assert_allclose(
            loss(Y_TRUE, Y_PRED),
            keras.losses.mean_squared_error(Y_TRUE, Y_PRED),
            rtol=1e-6,
        )
        params = randomize(loss, seed=1)
        features = np.stack([Y_TRUE, Y_PRED, Y_PRED - Y_TRUE], axis=-1)
        mse = ((Y_PRED - Y_TRUE) ** 2).mean(axis=-1)
        np.testing.assert_allclose(
            loss(Y_TRUE, Y_PRED), mse * reference_scale(params, features), rtol=1e-5
        )

    def test_scale_is_within_zero_and_two(self):
        loss = NeuralLoss(hidden_units=(4,), from_logits=True, reduction=None)
        rng = np.random.default_rng(0)
        for v in loss.trainable_variables:
            v.assign(rng.normal(size=v.shape).astype("float32") * 5)
        values = keras.ops.convert_to_numpy(loss(LABELS, LOGITS))
        assert np.all(values >= 0) and np.all(values <= 2 * CE + 1e-6)

    def test_works_for_any_number_of_classes(self):
        loss = NeuralLoss(hidden_units=(4,), from_logits=True, reduction=None)
        randomize(loss)
        for classes in (1, 2, 7):
            logits = np.linspace(-1, 1, 3 * classes, dtype="float32").reshape(3, classes)
            assert loss(np.array([0, 1, 0]), logits).shape == (3,)

    def test_seed(self):
        a = NeuralLoss(hidden_units=(4,), seed=7).trainable_variables[0].numpy()
        b = NeuralLoss(hidden_units=(4,), seed=7).trainable_variables[0].numpy()
        c = NeuralLoss(hidden_units=(4,), seed=8).trainable_variables[0].numpy()
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(a, c)

    def test_int_hidden_units(self):
        loss = NeuralLoss(hidden_units=3)
        assert loss.hidden_units == (3,)
        assert loss.get_config()["hidden_units"] == [3]

    def test_parameter_summary(self):
        summary = NeuralLoss(hidden_units=(4,)).parameter_summary()
        assert list(summary) == (
            [f"phi/kernel_0_{i}" for i in range(8)]
            + [f"phi/bias_0_{i}" for i in range(4)]
            + [f"phi/kernel_out_{i}" for i in range(4)]
            + ["phi/bias_out_0"]
        )
        # Larger parameters are summarised by their norm.
        loss = NeuralLoss(hidden_units=(16,))
        summary = loss.parameter_summary()
        assert list(summary) == [
            "phi/kernel_0_norm",
            "phi/bias_0_norm",
            "phi/kernel_out_norm",
            "phi/bias_out_0",
        ]
        np.testing.assert_allclose(
            summary["phi/kernel_0_norm"],
            np.linalg.norm(loss.trainable_variables[0].numpy()),
            rtol=1e-6,
        )

    def test_config(self):
        loss = NeuralLoss("huber", hidden_units=(4, 2), seed=5)
        config = loss.get_config()
        assert config["base_loss"] == "huber"
        assert config["hidden_units"] == [4, 2]
        assert config["seed"] == 5
        clone = NeuralLoss.from_config(config)
        assert clone.get_config() == config
        # The seed rebuilds the original's initial network, every layer of it,
        # so the clone computes the same loss as the original.
        assert clone.parameter_names == loss.parameter_names
        for original, cloned in zip(loss.trainable_variables, clone.trainable_variables):
            np.testing.assert_array_equal(cloned.numpy(), original.numpy())
        np.testing.assert_allclose(clone(Y_TRUE, Y_PRED), loss(Y_TRUE, Y_PRED), rtol=1e-6)
        # A different seed gives a different network (so the check above can fail).
        other = NeuralLoss.from_config({**config, "seed": 6})
        assert not np.array_equal(other.trainable_variables[0], loss.trainable_variables[0])


class TestNeuralLossErrors:
    @pytest.mark.parametrize("hidden_units", [(), (0,), (8, -1), (2.5,), (True,), None, "16"])
    def test_bad_hidden_units(self, hidden_units):
        with pytest.raises(ValueError, match="argument `hidden_units`.*Received"):
            NeuralLoss(hidden_units=hidden_units)

    @pytest.mark.parametrize("base_loss", ["nonsense", "sparse_categorical_crossentropy"])
    def test_bad_base_loss(self, base_loss):
        with pytest.raises(ValueError, match="argument `base_loss`.*Received"):
            NeuralLoss(base_loss)


@pytest.mark.parametrize("cls", [tml.NeuralLoss, tml.SampleWeightedLoss])
def test_seed_must_be_an_integer(cls):
    with pytest.raises(ValueError, match="argument `seed`. Expected an integer or None"):
        cls(seed="a")
