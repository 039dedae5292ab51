import json

import keras
import numpy as np
import pytest

from tf_metaloss.losses import FixedLoss
from tf_metaloss.losses import functional

LABELS = np.array([0, 2, 1, 1])
LOGITS = np.array(
    [[2.0, 0.0, -1.0], [0.5, -0.3, 1.2], [-1.0, 2.5, 0.1], [0.0, 0.0, 0.0]],
    dtype="float32",
)
Y_TRUE = np.array([[1.0, 2.0], [0.5, -1.0]], dtype="float32")
Y_PRED = np.array([[1.5, 0.0], [3.0, -1.2]], dtype="float32")


def data(name):
    if functional.is_regression(name):
        return Y_TRUE, Y_PRED
    return LABELS, LOGITS


class TestFixedLoss:
    @pytest.mark.parametrize("name", sorted(functional.BASE_LOSSES))
    def test_matches_functional(self, name):
        y_true, y_pred = data(name)
        loss = FixedLoss(name, from_logits=True)
        assert loss.name == name
        assert loss.regression == functional.is_regression(name)
        expected = functional.get(name)(y_true, y_pred, from_logits=True)
        np.testing.assert_allclose(loss(y_true, y_pred), np.mean(expected), rtol=1e-6)

    def test_matches_keras_crossentropy(self):
        np.testing.assert_allclose(
            FixedLoss(from_logits=True)(LABELS, LOGITS),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True)(LABELS, LOGITS),
            rtol=1e-6,
        )

    def test_options_are_forwarded(self):
        loss = FixedLoss("generalized_crossentropy", from_logits=True, q=0.3, reduction=None)
        np.testing.assert_allclose(
            loss(LABELS, LOGITS),
            functional.generalized_crossentropy(LABELS, LOGITS, True, q=0.3),
            rtol=1e-6,
        )
        assert loss.options == {"q": 0.3}

    def test_reductions_and_sample_weight(self):
        per_sample = FixedLoss("focal", reduction=None, from_logits=True)(LABELS, LOGITS)
        assert per_sample.shape == (4,)
        np.testing.assert_allclose(
            FixedLoss("focal", reduction="sum", from_logits=True)(LABELS, LOGITS),
            np.sum(per_sample),
            rtol=1e-6,
        )
        weight = np.array([1.0, 0.0, 2.0, 0.5], "float32")
        np.testing.assert_allclose(
            FixedLoss("focal", from_logits=True)(LABELS, LOGITS, sample_weight=weight),
            np.sum(per_sample * weight) / 4,
            rtol=1e-6,
        )

    def test_config_round_trip(self):
        loss = FixedLoss("symmetric_crossentropy", from_logits=True, alpha=0.5, beta=2.0)
        config = loss.get_config()
        assert config["alpha"] == 0.5 and config["beta"] == 2.0
        clone = FixedLoss.from_config(config)
        assert clone.get_config() == config
        np.testing.assert_allclose(clone(LABELS, LOGITS), loss(LABELS, LOGITS))

    def test_serialization_and_registration(self):
        loss = FixedLoss("huber", delta=0.5, name="h")
        serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(loss)))
        clone = keras.saving.deserialize_keras_object(serialized)
        assert isinstance(clone, FixedLoss) and clone.options == {"delta": 0.5}
        assert keras.saving.get_registered_object("tf_metaloss>FixedLoss") is FixedLoss
        resolved = keras.losses.get(
            {"class_name": "tf_metaloss>FixedLoss", "config": loss.get_config()}
        )
        np.testing.assert_allclose(resolved(Y_TRUE, Y_PRED), loss(Y_TRUE, Y_PRED))

    @pytest.mark.parametrize("name", ["nonsense", "categorical_crossentropy"])
    def test_bad_base_loss(self, name):
        with pytest.raises(ValueError, match="argument `base_loss`.*Received"):
            FixedLoss(name)


def test_fixed_loss_rejects_unknown_options_and_non_bool_from_logits():
    with pytest.raises(ValueError, match="Invalid options for base_loss='crossentropy'.*\\['q'\\]"):
        FixedLoss("crossentropy", q=0.7)
    with pytest.raises(ValueError, match="argument `from_logits`. Expected a bool"):
        FixedLoss("crossentropy", from_logits="yes")
