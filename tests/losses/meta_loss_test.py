import keras
import numpy as np
import pytest

import tf_metaloss as tml
from tf_metaloss.losses import BlendLoss
from tf_metaloss.losses import GeneralizedCELoss
from tf_metaloss.losses import MetaLoss
from tf_metaloss.losses import NoiseCorrectedLoss
from tf_metaloss.losses.meta_loss import BLEND_BASE_LOSSES

LABELS = np.array([0, 2, 1, 1])
LOGITS = np.array(
    [[2.0, 0.0, -1.0], [0.5, -0.3, 1.2], [-1.0, 2.5, 0.1], [0.0, 0.0, 0.0]],
    dtype="float32",
)


class TestMetaLoss:
    def test_classification_default_is_noise_corrected_starting_as_gce(self):
        loss = MetaLoss(from_logits=True, reduction=None)
        assert isinstance(loss.family, NoiseCorrectedLoss) and loss.family_name == "noise_corrected"
        assert loss.parameter_names == ["correction"] and loss.q == 0.7
        np.testing.assert_allclose(loss.trainable_variables[0], 0.0)
        assert loss.reference_objective == "crossentropy"
        p_true = keras.ops.convert_to_numpy(keras.ops.softmax(LOGITS))[np.arange(4), LABELS]
        np.testing.assert_allclose(loss(LABELS, LOGITS), (1 - p_true**0.7) / 0.7, rtol=1e-5)
        # c = 1 without an estimate (C = identity): cross-entropy.
        loss.trainable_variables[0].assign(1.0)
        np.testing.assert_allclose(loss(LABELS, LOGITS), -np.log(p_true), rtol=1e-5)
        loss.reset_parameters()
        np.testing.assert_allclose(loss.family.trainable_variables[0], 0.0)

    def test_old_configs_load_as_the_learned_q_family(self):
        config = MetaLoss(from_logits=True, family="generalized_ce").get_config()
        del config["family"]  # as saved by version 0.3
        assert isinstance(MetaLoss.from_config(config).family, GeneralizedCELoss)
        loss = MetaLoss(from_logits=True, num_classes=3)
        restored = MetaLoss.from_config(loss.get_config())
        assert restored.family_name == "noise_corrected" and restored.num_classes == 3

    def test_family_errors(self):
        with pytest.raises(ValueError, match="`family`"):
            MetaLoss(family="nope")
        with pytest.raises(ValueError, match="`family`"):
            MetaLoss(task="regression", family="generalized_ce")
        with pytest.raises(ValueError, match="num_classes"):
            MetaLoss(family="generalized_ce", num_classes=3)

    def test_learned_q_family(self):
        loss = MetaLoss(from_logits=True, reduction=None, family="generalized_ce")
        assert isinstance(loss.family, GeneralizedCELoss)
        assert loss.task == "classification" and not loss.regression
        assert loss.parameter_names == ["q"] and loss.q == 0.7
        np.testing.assert_allclose(loss.trainable_variables[0], 0.7)
        p_true = keras.ops.convert_to_numpy(keras.ops.softmax(LOGITS))[np.arange(4), LABELS]
        np.testing.assert_allclose(loss(LABELS, LOGITS), (1 - p_true**0.7) / 0.7, rtol=1e-5)
        # phi is the family's, saved and reset under the MetaLoss.
        loss.trainable_variables[0].assign(0.2)
        np.testing.assert_allclose(loss(LABELS, LOGITS), (1 - p_true**0.2) / 0.2, rtol=1e-5)
        loss.reset_parameters()
        np.testing.assert_allclose(loss.family.trainable_variables[0], 0.7)

    def test_starting_q(self):
        loss = MetaLoss(from_logits=True, q=0.3, family="generalized_ce")
        np.testing.assert_allclose(loss.trainable_variables[0], 0.3)
        assert MetaLoss.from_config(loss.get_config()).q == 0.3

    def test_probabilities(self):
        probs = keras.ops.softmax(LOGITS)
        np.testing.assert_allclose(
            MetaLoss()(LABELS, probs),
            GeneralizedCELoss(q=0.7)(LABELS, probs),
            rtol=1e-6,
        )

    def test_blend_of_earlier_versions_starts_as_crossentropy(self):
        loss = MetaLoss(from_logits=True, base_losses=BLEND_BASE_LOSSES["classification"])
        assert isinstance(loss.family, BlendLoss)
        assert loss.base_losses == [
            "crossentropy",
            "focal",
            "label_smoothing",
            "generalized_crossentropy",
            "mae_classification",
        ]
        np.testing.assert_array_equal(loss.trainable_variables[0], [1, 0, 0, 0, 0])
        np.testing.assert_allclose(
            loss(LABELS, LOGITS),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True)(LABELS, LOGITS),
            rtol=1e-6,
        )

    def test_saved_blend_config_of_earlier_versions_loads_as_the_blend(self):
        config = {
            "name": "meta_loss",
            "reduction": "sum_over_batch_size",
            "from_logits": True,
            "regularization": 0.0,
            "bounds": None,
            "dtype": "float32",
            "base_losses": list(BLEND_BASE_LOSSES["classification"]),
            "initial_weights": [1.0, 0.0, 0.0, 0.0, 0.0],
            "normalize": True,
            "task": "classification",
        }
        loss = keras.saving.deserialize_keras_object(
            {"module": None, "class_name": "tf_metaloss>MetaLoss", "config": config}
        )
        assert isinstance(loss.family, BlendLoss)
        assert loss.get_config() == config

    def test_q_with_blend_arguments_is_an_error(self):
        with pytest.raises(ValueError, match="argument `q`.*base_losses"):
            MetaLoss(q=0.5, base_losses=["crossentropy"])
        with pytest.raises(ValueError, match="argument `q`"):
            MetaLoss(task="regression", q=0.5)

    def test_missing_attribute_names_the_class(self):
        with pytest.raises(AttributeError, match="no attribute 'mixture_weights'"):
            MetaLoss().mixture_weights()

    def test_regression_blend_starts_as_mse(self):
        y_true = np.array([[1.0, 2.0], [0.5, -1.0]], dtype="float32")
        y_pred = np.array([[1.5, 0.0], [3.0, -1.2]], dtype="float32")
        loss = MetaLoss(task="regression")
        assert loss.regression and loss.base_losses == ["mse", "mae", "huber"]
        np.testing.assert_allclose(
            loss(y_true, y_pred), keras.losses.MeanSquaredError()(y_true, y_pred)
        )

    def test_blend_arguments_pass_through(self):
        loss = MetaLoss(
            from_logits=True,
            initial_weights=[1, 1, 0, 0, 0],
            regularization=0.1,
            bounds=(0.0, 1.0),
        )
        np.testing.assert_allclose(loss.mixture_weights(), [0.5, 0.5, 0, 0, 0], rtol=1e-6)
        assert loss.regularization == 0.1 and loss.bounds == (0.0, 1.0)
        loss = MetaLoss(base_losses=["crossentropy", "poly1"])
        assert loss.base_losses == ["crossentropy", "poly1"]

    def test_config_keeps_the_task(self):
        loss = MetaLoss(task="regression", name="meta")
        config = loss.get_config()
        assert config["task"] == "regression"
        clone = keras.losses.get({"class_name": "tf_metaloss>MetaLoss", "config": config})
        assert isinstance(clone, MetaLoss)
        assert clone.task == "regression" and clone.base_losses == ["mse", "mae", "huber"]
        assert clone.get_config() == config

    @pytest.mark.parametrize("task", ["segmentation", "Regression", None])
    def test_bad_task(self, task):
        with pytest.raises(ValueError, match="argument `task`.*Received"):
            MetaLoss(task=task)

    def test_mixed_base_losses(self):
        with pytest.raises(ValueError, match="argument `base_losses`.*cannot be mixed"):
            MetaLoss(task="regression", base_losses=["mse", "crossentropy"])


def test_task_and_base_losses_must_agree():
    with pytest.raises(ValueError, match="`task` and `base_losses` disagree"):
        tml.MetaLoss(task="regression", base_losses=["crossentropy"])


def test_default_q_only_moves_toward_crossentropy():
    loss = MetaLoss(from_logits=True, q=0.5, family="generalized_ce")
    (q,) = loss.trainable_variables
    assert float(q.constraint(keras.ops.convert_to_tensor(0.9))) == pytest.approx(0.5)
    assert float(q.constraint(keras.ops.convert_to_tensor(0.0))) == pytest.approx(0.001)
    full_range = MetaLoss(from_logits=True, bounds=(0.001, 1.0), family="generalized_ce")
    full_range = full_range.trainable_variables[0]
    assert float(full_range.constraint(keras.ops.convert_to_tensor(0.9))) == pytest.approx(0.9)
