"""Tests of the probes: what a trained method's loss knows about the noise."""

import types

import keras
import numpy as np
import pytest

import tf_metaloss as tml
from tf_metaloss.evaluation import correction
from tf_metaloss.evaluation import probes


class _Model:
    """Predicts fixed logits (the probes only call `predict`)."""

    def __init__(self, logits):
        self.logits = logits

    def predict(self, x, batch_size=None, verbose=0):
        return self.logits[: len(x)]


def _split(mask, transition=None):
    n = len(mask)
    return types.SimpleNamespace(
        x_train=np.zeros((n, 2), "float32"),
        y_train=np.arange(n) % 3,
        noisy_mask=np.asarray(mask, bool),
        noise_transition=transition,
    )


class _WeightingLoss:
    def __init__(self, weights):
        self.weights = weights

    def sample_weights(self, y_true, y_pred):
        assert len(y_true) == len(y_pred) == len(self.weights)
        return keras.ops.convert_to_tensor(self.weights)


def test_sample_weight_separation():
    mask = np.array([False, False, True, True, False])
    model = _Model(np.zeros((5, 3), "float32"))
    # Clean samples weigh more than corrupted ones: perfect separation.
    result = probes.sample_weight_separation(
        model, _WeightingLoss([1.2, 1.1, 0.3, 0.5, 1.0]), _split(mask)
    )
    assert result["weight_auc"] == 1.0
    assert result["weight_clean_mean"] == pytest.approx(1.1)
    assert result["weight_noisy_mean"] == pytest.approx(0.4)
    # Reversed weights: AUC 0.
    reversed_ = probes.sample_weight_separation(
        model, _WeightingLoss([0.1, 0.2, 0.9, 0.8, 0.3]), _split(mask)
    )
    assert reversed_["weight_auc"] == 0.0


def test_sample_weight_separation_runs_only_where_it_can():
    model = _Model(np.zeros((4, 3), "float32"))
    ce = tml.losses.FixedLoss("crossentropy", from_logits=True)
    assert probes.sample_weight_separation(model, ce, _split([True, False, True, False])) == {}
    weighting = _WeightingLoss([1.0] * 4)
    assert probes.sample_weight_separation(model, weighting, _split([False] * 4)) == {}


def test_sample_weight_separation_of_a_sample_weighted_loss():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(40, 3)).astype("float32")
    loss = tml.SampleWeightedLoss(from_logits=True, seed=0)
    mask = rng.random(40) < 0.4
    result = probes.sample_weight_separation(_Model(logits), loss, _split(mask))
    # The weight network starts at zero: every weight is 1, AUC is exactly chance.
    assert result["weight_auc"] == 0.5
    assert result["weight_clean_mean"] == pytest.approx(1.0)


def test_transition_estimate():
    truth = np.array([[0.6, 0.4, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    loss = correction.ForwardCorrectedLoss(np.eye(3))
    result = probes.transition_estimate(None, loss, _split([False], truth))
    assert result["transition_matrix"] == np.eye(3).tolist()
    assert result["transition_distance"] == pytest.approx(0.4 / 3)
    exact = probes.transition_estimate(
        None, correction.ForwardCorrectedLoss(truth), _split([0], truth)
    )
    assert exact["transition_distance"] == 0.0
    # Without a truth of the same shape, only the matrix is recorded.
    assert set(probes.transition_estimate(None, loss, _split([False]))) == {"transition_matrix"}
    assert probes.transition_estimate(None, tml.MetaLoss(), _split([False], truth)) == {}
