import math

import keras
import numpy as np
import pytest

from tf_metaloss.losses import functional

# Hand-made case: two samples, three classes, probabilities that sum to 1.
LABELS = np.array([0, 2])
PROBS = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]], dtype="float32")
P_TRUE = np.array([0.7, 0.3])
CE = -np.log(P_TRUE)

LOGITS = np.array(
    [[2.0, 0.0, -1.0], [0.5, -0.3, 1.2], [-1.0, 2.5, 0.1], [0.0, 0.0, 0.0]],
    dtype="float32",
)
LOGIT_LABELS = np.array([0, 2, 1, 1])

CLASSIFICATION = list(functional.CLASSIFICATION_LOSSES)
REGRESSION = list(functional.REGRESSION_LOSSES)


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype("float32")


def one_hot(labels, classes=3):
    return np.eye(classes, dtype="float32")[labels]


class TestClassificationGolden:
    def test_crossentropy(self):
        np.testing.assert_allclose(functional.crossentropy(LABELS, PROBS), CE, rtol=1e-6)

    def test_crossentropy_matches_keras_sparse_and_categorical(self):
        expected = keras.losses.sparse_categorical_crossentropy(
            LOGIT_LABELS, LOGITS, from_logits=True
        )
        np.testing.assert_allclose(
            functional.crossentropy(LOGIT_LABELS, LOGITS, from_logits=True),
            expected,
            rtol=1e-6,
        )
        expected = keras.losses.categorical_crossentropy(
            one_hot(LOGIT_LABELS), LOGITS, from_logits=True
        )
        np.testing.assert_allclose(
            functional.crossentropy(one_hot(LOGIT_LABELS), LOGITS, from_logits=True),
            expected,
            rtol=1e-6,
        )

    def test_soft_labels_match_keras_categorical_crossentropy(self):
        soft = np.array(
            [[0.6, 0.3, 0.1], [0.0, 0.5, 0.5], [0.2, 0.2, 0.6], [1, 0, 0]],
            dtype="float32",
        )
        expected = keras.losses.categorical_crossentropy(soft, LOGITS, from_logits=True)
        np.testing.assert_allclose(
            functional.crossentropy(soft, LOGITS, from_logits=True),
            expected,
            rtol=1e-6,
        )

    def test_focal_by_hand(self):
        expected = -((1 - P_TRUE) ** 2) * np.log(P_TRUE)
        np.testing.assert_allclose(functional.focal(LABELS, PROBS), expected, rtol=1e-6)
        expected = -((1 - P_TRUE) ** 0.5) * np.log(P_TRUE)
        np.testing.assert_allclose(functional.focal(LABELS, PROBS, gamma=0.5), expected, rtol=1e-6)

    def test_focal_matches_keras_categorical_focal_crossentropy(self):
        # Keras's version with alpha=1 is the same formula.
        keras_focal = keras.losses.CategoricalFocalCrossentropy(
            alpha=1.0, gamma=2.0, from_logits=True, reduction=None
        )
        np.testing.assert_allclose(
            functional.focal(LOGIT_LABELS, LOGITS, from_logits=True),
            keras_focal(one_hot(LOGIT_LABELS), LOGITS),
            rtol=1e-5,
        )

    def test_focal_with_gamma_zero_is_crossentropy(self):
        np.testing.assert_allclose(
            functional.focal(LOGIT_LABELS, LOGITS, from_logits=True, gamma=0.0),
            functional.crossentropy(LOGIT_LABELS, LOGITS, from_logits=True),
            rtol=1e-6,
        )

    def test_mae_classification_is_twice_one_minus_p_true(self):
        np.testing.assert_allclose(
            functional.mae_classification(LABELS, PROBS), 2 * (1 - P_TRUE), rtol=1e-6
        )

    def test_label_smoothing_by_hand(self):
        smoothed = one_hot(LABELS) * 0.9 + 0.1 / 3
        expected = -(smoothed * np.log(PROBS)).sum(axis=-1)
        np.testing.assert_allclose(functional.label_smoothing(LABELS, PROBS), expected, rtol=1e-6)

    def test_label_smoothing_matches_keras(self):
        keras_ls = keras.losses.CategoricalCrossentropy(
            label_smoothing=0.2, from_logits=True, reduction=None
        )
        np.testing.assert_allclose(
            functional.label_smoothing(LOGIT_LABELS, LOGITS, from_logits=True, smoothing=0.2),
            keras_ls(one_hot(LOGIT_LABELS), LOGITS),
            rtol=1e-6,
        )

    def test_generalized_crossentropy_by_hand(self):
        expected = (1 - P_TRUE**0.7) / 0.7
        np.testing.assert_allclose(
            functional.generalized_crossentropy(LABELS, PROBS), expected, rtol=1e-6
        )
        expected = (1 - P_TRUE**0.3) / 0.3
        np.testing.assert_allclose(
            functional.generalized_crossentropy(LABELS, PROBS, q=0.3),
            expected,
            rtol=1e-6,
        )

    def test_generalized_crossentropy_tends_to_crossentropy_as_q_goes_to_zero(self):
        np.testing.assert_allclose(
            functional.generalized_crossentropy(LABELS, PROBS, q=1e-3),
            CE,
            rtol=2e-3,
        )

    def test_symmetric_crossentropy_by_hand(self):
        # RCE = -log_zero * (1 - p_true) for hard labels.
        expected = 0.1 * CE + 1.0 * 4.0 * (1 - P_TRUE)
        np.testing.assert_allclose(
            functional.symmetric_crossentropy(LABELS, PROBS), expected, rtol=1e-6
        )
        expected = 0.5 * CE + 2.0 * 6.0 * (1 - P_TRUE)
        np.testing.assert_allclose(
            functional.symmetric_crossentropy(LABELS, PROBS, alpha=0.5, beta=2.0, log_zero=-6.0),
            expected,
            rtol=1e-6,
        )

    def test_poly1_by_hand(self):
        np.testing.assert_allclose(functional.poly1(LABELS, PROBS), CE + (1 - P_TRUE), rtol=1e-6)
        np.testing.assert_allclose(
            functional.poly1(LABELS, PROBS, epsilon=-0.5),
            CE - 0.5 * (1 - P_TRUE),
            rtol=1e-6,
        )

    def test_true_class_probability(self):
        np.testing.assert_allclose(
            functional.true_class_probability(LABELS, PROBS), P_TRUE, rtol=1e-6
        )
        np.testing.assert_allclose(
            functional.true_class_probability(LOGIT_LABELS, LOGITS, from_logits=True),
            softmax(LOGITS)[np.arange(4), LOGIT_LABELS],
            rtol=1e-6,
        )

    def test_perfect_prediction_is_near_zero(self):
        probs = one_hot(LABELS)
        for name in CLASSIFICATION:
            if name == "label_smoothing":
                continue  # smoothed targets keep a positive floor
            values = functional.get(name)(LABELS, probs)
            np.testing.assert_allclose(values, 0.0, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("name", CLASSIFICATION)
class TestClassificationLabelAndOutputFormats:
    def test_sparse_equals_one_hot_equals_column_labels(self, name):
        fn = functional.get(name)
        sparse = fn(LOGIT_LABELS, LOGITS, from_logits=True)
        dense = fn(one_hot(LOGIT_LABELS), LOGITS, from_logits=True)
        column = fn(LOGIT_LABELS[:, None], LOGITS, from_logits=True)
        assert sparse.shape == (4,)
        np.testing.assert_allclose(dense, sparse, rtol=1e-6)
        np.testing.assert_allclose(column, sparse, rtol=1e-6)

    def test_logits_equal_probabilities_after_softmax(self, name):
        fn = functional.get(name)
        np.testing.assert_allclose(
            fn(LOGIT_LABELS, LOGITS, from_logits=True),
            fn(LOGIT_LABELS, softmax(LOGITS)),
            rtol=1e-5,
            atol=1e-6,
        )

    def test_single_output_unit_is_binary(self, name):
        fn = functional.get(name)
        labels = np.array([1, 0, 1])
        logit = np.array([[1.2], [-0.4], [-2.0]], dtype="float32")
        two_class = np.concatenate([np.zeros_like(logit), logit], axis=-1)
        np.testing.assert_allclose(
            fn(labels, logit, from_logits=True),
            fn(labels, two_class, from_logits=True),
            rtol=1e-6,
        )
        prob = 1 / (1 + np.exp(-logit))
        np.testing.assert_allclose(
            fn(labels, prob),
            fn(labels, np.concatenate([1 - prob, prob], axis=-1)),
            rtol=1e-5,
        )

    def test_float64(self, name):
        values = functional.get(name)(LOGIT_LABELS, LOGITS.astype("float64"), True)
        assert keras.backend.standardize_dtype(values.dtype) == "float64"


def test_single_output_unit_crossentropy_matches_keras_binary():
    labels = np.array([1.0, 0.0, 1.0], dtype="float32")[:, None]
    logit = np.array([[1.2], [-0.4], [-2.0]], dtype="float32")
    np.testing.assert_allclose(
        functional.crossentropy(labels, logit, from_logits=True),
        keras.losses.binary_crossentropy(labels, logit, from_logits=True),
        rtol=1e-6,
    )
    prob = np.array([[0.8], [0.3], [0.5]], dtype="float32")
    np.testing.assert_allclose(
        functional.crossentropy(labels, prob),
        [-math.log(0.8), -math.log(0.7), -math.log(0.5)],
        rtol=1e-6,
    )


def test_probabilities_are_clipped():
    probs = np.array([[1.0, 0.0]], dtype="float32")
    value = functional.crossentropy(np.array([1]), probs)
    assert np.isfinite(value).all()
    np.testing.assert_allclose(value, -math.log(functional.EPSILON), rtol=1e-3)


class TestRegression:
    Y_TRUE = np.array([[1.0, 2.0], [0.5, -1.0]], dtype="float32")
    Y_PRED = np.array([[1.5, 0.0], [3.0, -1.2]], dtype="float32")

    def test_mse(self):
        np.testing.assert_allclose(
            functional.mse(self.Y_TRUE, self.Y_PRED), [2.125, 3.145], rtol=1e-6
        )
        np.testing.assert_allclose(
            functional.mse(self.Y_TRUE, self.Y_PRED),
            keras.losses.mean_squared_error(self.Y_TRUE, self.Y_PRED),
            rtol=1e-6,
        )

    def test_mae(self):
        np.testing.assert_allclose(
            functional.mae(self.Y_TRUE, self.Y_PRED), [1.25, 1.35], rtol=1e-6
        )
        np.testing.assert_allclose(
            functional.mae(self.Y_TRUE, self.Y_PRED),
            keras.losses.mean_absolute_error(self.Y_TRUE, self.Y_PRED),
            rtol=1e-6,
        )

    def test_huber(self):
        # errors (0.5, 2.0) and (2.5, 0.2), delta 1.
        expected = [(0.125 + 1.5) / 2, (2.0 + 0.02) / 2]
        np.testing.assert_allclose(functional.huber(self.Y_TRUE, self.Y_PRED), expected, rtol=1e-6)
        np.testing.assert_allclose(
            functional.huber(self.Y_TRUE, self.Y_PRED, delta=0.5),
            keras.losses.Huber(delta=0.5, reduction=None)(self.Y_TRUE, self.Y_PRED),
            rtol=1e-6,
        )

    @pytest.mark.parametrize("name", REGRESSION)
    def test_rank_one_targets_match_column_targets(self, name):
        fn = functional.get(name)
        y_true = np.array([1.0, -2.0, 0.5], dtype="float32")
        y_pred = np.array([[0.0], [-1.0], [3.0]], dtype="float32")
        np.testing.assert_allclose(fn(y_true, y_pred), fn(y_true[:, None], y_pred), rtol=1e-6)
        assert fn(y_true, y_pred).shape == (3,)


class TestRegistry:
    def test_get_returns_the_function(self):
        for name, fn in functional.BASE_LOSSES.items():
            assert functional.get(name) is fn

    def test_get_passes_callables_through(self):
        assert functional.get(functional.mse) is functional.mse

    @pytest.mark.parametrize("bad", ["nonsense", "categorical_crossentropy", ["mse"], None])
    def test_get_bad_name(self, bad):
        with pytest.raises(ValueError, match="argument `base_loss`.*Received"):
            functional.get(bad)

    def test_is_regression(self):
        assert [functional.is_regression(n) for n in REGRESSION] == [True] * 3
        assert not any(functional.is_regression(n) for n in CLASSIFICATION)
        assert set(CLASSIFICATION) | set(REGRESSION) == set(functional.BASE_LOSSES)


def test_soft_binary_labels_match_keras_binary_crossentropy():
    y_true = np.array([[0.9], [0.2]], "float32")
    y_pred = np.array([[0.8], [0.4]], "float32")
    expected = keras.ops.convert_to_numpy(keras.losses.binary_crossentropy(y_true, y_pred))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(functional.crossentropy(y_true, y_pred)), expected, rtol=1e-5
    )


@pytest.mark.parametrize("true_shape, pred_shape", [((3, 1), (3,)), ((3,), (3, 1)), ((3,), (3,))])
def test_regression_targets_never_broadcast_across_the_batch(true_shape, pred_shape):
    y_true = np.arange(3, dtype="float32").reshape(true_shape)
    y_pred = np.arange(3, dtype="float32").reshape(pred_shape)
    for fn in (functional.mse, functional.mae, functional.huber):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(fn(y_true, y_pred)), [0.0, 0.0, 0.0]
        )
