import keras
import numpy as np
import pytest

from tf_metaloss.losses import BlendLoss
from tf_metaloss.losses import functional

LABELS = np.array([0, 2, 1, 1])
LOGITS = np.array(
    [[2.0, 0.0, -1.0], [0.5, -0.3, 1.2], [-1.0, 2.5, 0.1], [0.0, 0.0, 0.0]],
    dtype="float32",
)
Y_TRUE = np.array([[1.0, 2.0], [0.5, -1.0], [0.0, 3.0]], dtype="float32")
Y_PRED = np.array([[1.5, 0.0], [3.0, -1.2], [0.1, 1.0]], dtype="float32")


def base(name, y_true=LABELS, y_pred=LOGITS, from_logits=True):
    return keras.ops.convert_to_numpy(functional.get(name)(y_true, y_pred, from_logits=from_logits))


class TestBlendLoss:
    def test_defaults(self):
        loss = BlendLoss()
        assert loss.base_losses == [
            "crossentropy",
            "focal",
            "mae_classification",
            "label_smoothing",
        ]
        assert loss.initial_weights == [1.0, 0.0, 0.0, 0.0]
        assert loss.normalize and not loss.from_logits and not loss.regression
        assert loss.parameter_names == ["blend_weights"]
        np.testing.assert_array_equal(loss.trainable_variables[0], [1, 0, 0, 0])

    def test_single_name_is_a_one_element_blend(self):
        loss = BlendLoss("focal", from_logits=True, reduction=None)
        assert loss.base_losses == ["focal"]
        np.testing.assert_allclose(loss(LABELS, LOGITS), base("focal"), rtol=1e-6)

    def test_normalized_mixture_golden(self):
        loss = BlendLoss(["crossentropy", "focal"], from_logits=True, reduction=None)
        loss.trainable_variables[0].assign([3.0, 1.0])
        np.testing.assert_allclose(loss.mixture_weights(), [0.75, 0.25], rtol=1e-6)
        expected = 0.75 * base("crossentropy") + 0.25 * base("focal")
        np.testing.assert_allclose(loss(LABELS, LOGITS), expected, rtol=1e-6)

    def test_normalization_removes_the_scale(self):
        loss = BlendLoss(["crossentropy", "focal"], from_logits=True)
        loss.trainable_variables[0].assign([3.0, 1.0])
        value = loss(LABELS, LOGITS)
        loss.trainable_variables[0].assign([30.0, 10.0])
        np.testing.assert_allclose(loss(LABELS, LOGITS), value, rtol=1e-6)

    def test_unnormalized_mixture_golden(self):
        loss = BlendLoss(
            ["crossentropy", "generalized_crossentropy"],
            initial_weights=[2.0, 0.5],
            normalize=False,
            from_logits=True,
            reduction=None,
        )
        np.testing.assert_array_equal(loss.mixture_weights(), [2.0, 0.5])
        expected = 2.0 * base("crossentropy") + 0.5 * base("generalized_crossentropy")
        np.testing.assert_allclose(loss(LABELS, LOGITS), expected, rtol=1e-6)

    def test_unnormalized_all_zero_weights_is_zero(self):
        loss = BlendLoss(["crossentropy", "focal"], initial_weights=[0, 0], normalize=False)
        np.testing.assert_allclose(loss(LABELS, keras.ops.softmax(LOGITS)), 0.0)

    def test_custom_initial_weights_start_and_reset(self):
        loss = BlendLoss(
            ["crossentropy", "mae_classification"],
            initial_weights=[1.0, 1.0],
            from_logits=True,
            reduction=None,
        )
        expected = 0.5 * base("crossentropy") + 0.5 * base("mae_classification")
        np.testing.assert_allclose(loss(LABELS, LOGITS), expected, rtol=1e-6)
        loss.trainable_variables[0].assign([0.0, 4.0])
        loss.reset_parameters()
        np.testing.assert_array_equal(loss.trainable_variables[0], [1.0, 1.0])

    def test_weights_are_non_negative_by_default(self):
        loss = BlendLoss(["crossentropy", "focal", "poly1"])
        assert loss.bounds is None
        keras.optimizers.SGD(1.0).apply(
            [np.array([2.0, -0.5, 0.3], "float32")], loss.trainable_variables
        )
        np.testing.assert_allclose(loss.trainable_variables[0], [0.0, 0.5, 0.0])

    def test_regression(self):
        loss = BlendLoss(["mse", "mae", "huber"], reduction=None)
        assert loss.regression
        expected = keras.losses.mean_squared_error(Y_TRUE, Y_PRED)
        np.testing.assert_allclose(loss(Y_TRUE, Y_PRED), expected, rtol=1e-6)
        loss.trainable_variables[0].assign([0.0, 1.0, 0.0])
        expected = keras.losses.mean_absolute_error(Y_TRUE, Y_PRED)
        np.testing.assert_allclose(loss(Y_TRUE, Y_PRED), expected, rtol=1e-6)
        loss.trainable_variables[0].assign([0.0, 0.0, 2.0])
        expected = keras.losses.Huber(reduction=None)(Y_TRUE, Y_PRED)
        np.testing.assert_allclose(loss(Y_TRUE, Y_PRED), expected, rtol=1e-6)
        loss.trainable_variables[0].assign([1.0, 1.0, 2.0])
        expected = (
            0.25 * base("mse", Y_TRUE, Y_PRED)
            + 0.25 * base("mae", Y_TRUE, Y_PRED)
            + 0.5 * base("huber", Y_TRUE, Y_PRED)
        )
        np.testing.assert_allclose(loss(Y_TRUE, Y_PRED), expected, rtol=1e-6)

    def test_parameter_summary(self):
        loss = BlendLoss(["crossentropy", "focal", "poly1"])
        loss.trainable_variables[0].assign([0.5, 2.0, 0.0])
        summary = loss.parameter_summary()
        assert list(summary) == ["phi/crossentropy", "phi/focal", "phi/poly1"]
        # The raw (unnormalised) weights.
        np.testing.assert_allclose([float(v) for v in summary.values()], [0.5, 2.0, 0.0])

    def test_regularization_penalty_by_hand(self):
        loss = BlendLoss(["crossentropy", "focal"], regularization=2.0)
        loss.trainable_variables[0].assign([0.5, 0.5])
        # 2 * ((0.5 - 1)^2 + (0.5 - 0)^2)
        np.testing.assert_allclose(loss.regularization_penalty(), 1.0, rtol=1e-6)
        np.testing.assert_allclose(
            loss.regularization_penalty([np.array([1.0, 3.0], "float32")]),
            18.0,
            rtol=1e-6,
        )

    def test_config(self):
        config = BlendLoss(["mse", "huber"], initial_weights=[0.2, 0.8]).get_config()
        assert config["base_losses"] == ["mse", "huber"]
        assert config["initial_weights"] == [0.2, 0.8]
        assert config["normalize"] is True


class TestBlendLossErrors:
    @pytest.mark.parametrize(
        "base_losses, match",
        [
            ([], "non-empty"),
            (["crossentropy", "nonsense"], "'nonsense'"),
            (["categorical_crossentropy"], "Expected names from"),
            (["crossentropy", "mse"], "cannot be mixed"),
            (["huber", "focal"], "cannot be mixed"),
        ],
    )
    def test_bad_base_losses(self, base_losses, match):
        with pytest.raises(ValueError, match=f"argument `base_losses`.*{match}"):
            BlendLoss(base_losses)

    @pytest.mark.parametrize(
        "initial_weights",
        [[1.0], [1.0, 0.0, 0.0], [1.0, -0.5], ["a", "b"], 3.0, [float("nan"), 1.0]],
    )
    def test_bad_initial_weights(self, initial_weights):
        with pytest.raises(ValueError, match="argument `initial_weights`.*Received"):
            BlendLoss(["crossentropy", "focal"], initial_weights=initial_weights)

    def test_all_zero_weights_need_normalize_false(self):
        with pytest.raises(ValueError, match="argument `initial_weights`.*normalize"):
            BlendLoss(["crossentropy", "focal"], initial_weights=[0.0, 0.0])
