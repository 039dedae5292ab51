"""Tests of the forward-corrected loss and the transition-matrix estimates."""

import keras
import numpy as np
import pytest

from tf_metaloss.evaluation import correction

T = np.array([[0.6, 0.4, 0.0], [0.1, 0.7, 0.2], [0.0, 0.3, 0.7]])


def _softmax(logits):
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def test_forward_corrected_loss_by_hand():
    logits = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.3], [-0.5, 0.2, 1.5], [1.0, 1.0, 1.0]])
    labels = np.array([1, 2, 0, 1])
    trusted = np.array([False, False, True, True])
    p = _softmax(logits)
    noisy = p @ T
    expected = np.where(
        trusted,
        -np.log(p[np.arange(4), labels]),
        -np.log(noisy[np.arange(4), labels]),
    )
    loss = correction.ForwardCorrectedLoss(T)
    y_true = correction.pack_labels(labels, trusted)
    values = keras.ops.convert_to_numpy(loss.call(keras.ops.convert_to_tensor(y_true), logits))
    np.testing.assert_allclose(values, expected, rtol=1e-6)
    # The Keras reduction and sample weights apply as for any loss.
    assert float(loss(y_true, logits)) == pytest.approx(expected.mean(), rel=1e-6)
    weights = np.array([1.0, 0.0, 2.0, 1.0])
    assert float(loss(y_true, logits, sample_weight=weights)) == pytest.approx(
        (expected * weights).mean(), rel=1e-6
    )
    # Probabilities instead of logits give the same values.
    probabilities = correction.ForwardCorrectedLoss(T, from_logits=False)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(
            probabilities.call(keras.ops.convert_to_tensor(y_true), p.astype("float32"))
        ),
        expected,
        rtol=1e-5,
    )


def test_identity_correction_is_crossentropy_and_plain_labels_are_untrusted():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 3)).astype("float32")
    labels = rng.integers(0, 3, 6)
    crossentropy = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    identity = correction.ForwardCorrectedLoss(np.eye(3))
    np.testing.assert_allclose(identity.call(labels, logits), crossentropy, rtol=1e-5)
    corrected = correction.ForwardCorrectedLoss(T)
    packed = correction.pack_labels(labels)  # nothing trusted
    for y_true in (labels, labels[:, None].astype("float32")):
        np.testing.assert_allclose(
            corrected.call(keras.ops.convert_to_tensor(y_true), logits),
            corrected.call(keras.ops.convert_to_tensor(packed), logits),
            rtol=1e-6,
        )
    with pytest.raises(ValueError, match="argument `y_true`"):
        corrected.call(keras.ops.zeros((6, 3)), logits)


def test_serialization_round_trip():
    loss = correction.ForwardCorrectedLoss(T, from_logits=False, reduction="sum", name="fc")
    clone = correction.ForwardCorrectedLoss.from_config(loss.get_config())
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    for other in (clone, again):
        assert isinstance(other, correction.ForwardCorrectedLoss)
        np.testing.assert_array_equal(other.transition_matrix(), T)
        assert (other.from_logits, other.reduction, other.name) == (False, "sum", "fc")
    assert loss.get_config()["transition"] == T.tolist()


def test_trains_a_model_with_packed_labels():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss=correction.ForwardCorrectedLoss([[0.8, 0.2], [0.2, 0.8]]))
    history = model.fit(x, correction.pack_labels(y, y == 0), epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"transition": [[0.5, 0.4], [0.0, 1.0]]}, "argument `transition`"),
        ({"transition": np.eye(2)[:1]}, "argument `transition`"),
        ({"transition": np.eye(2), "from_logits": 1}, "argument `from_logits`"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        correction.ForwardCorrectedLoss(**kwargs)


def test_pack_labels():
    packed = correction.pack_labels(np.array([3, 1]), np.array([False, True]))
    assert packed.dtype == np.float32 and packed.tolist() == [[3, 0], [1, 1]]
    with pytest.raises(ValueError, match="argument `trusted`"):
        correction.pack_labels([1, 2], [1, 0])
    with pytest.raises(ValueError, match="argument `labels`"):
        correction.pack_labels([[1, 2]])


def test_gold_estimate_recovers_a_known_matrix():
    # A noisy-label model whose predictions on trusted samples of class i
    # scatter around T[i]: the mean over each class is exactly T[i].
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    scatter = rng.normal(scale=0.05, size=(20, 3))
    scatter -= scatter.mean(axis=1, keepdims=True)  # rows still sum to 1
    probabilities = np.concatenate(
        [T[i] + sign * np.abs(scatter) * (T[i] > 0) for i in range(3) for sign in (1, -1)]
    )
    probabilities = np.clip(probabilities, 0, None)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    estimate = correction.gold_transition_matrix(probabilities, labels)
    np.testing.assert_allclose(estimate.sum(axis=1), 1.0)
    expected = np.stack([probabilities[labels == i].mean(axis=0) for i in range(3)])
    np.testing.assert_allclose(estimate, expected)
    assert np.abs(estimate - T).max() < 0.02
    # Exact when the predictions are exactly T's rows.
    np.testing.assert_allclose(correction.gold_transition_matrix(T[labels], labels), T[:3])


def test_gold_estimate_without_trusted_samples_of_a_class_keeps_it_uncorrected():
    estimate = correction.gold_transition_matrix(T[[0, 0, 2]], np.array([0, 0, 2]))
    np.testing.assert_allclose(estimate, [T[0], [0, 1, 0], T[2]])
    with pytest.raises(ValueError, match="argument `labels`"):
        correction.gold_transition_matrix(T, np.array([0, 1, 3]))
    with pytest.raises(ValueError, match="argument `labels`"):
        correction.gold_transition_matrix(T, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="argument `probabilities`"):
        correction.gold_transition_matrix(T * 2, np.array([0, 1, 2]))


def test_anchor_estimate_recovers_the_matrix_from_perfect_anchors():
    # Clean-label posteriors: one perfect anchor per class, the rest mixtures;
    # a model of the noisy labels predicts p_clean @ T.
    rng = np.random.default_rng(1)
    clean = np.concatenate([np.eye(3), rng.dirichlet(np.ones(3), size=50)])
    estimate = correction.anchor_transition_matrix(clean @ T)
    np.testing.assert_allclose(estimate, T, atol=1e-12)
