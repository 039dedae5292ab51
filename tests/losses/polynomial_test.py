import keras
import numpy as np
import pytest

from tf_metaloss.losses import PolynomialLoss
from tf_metaloss.losses import functional

LABELS = np.array([0, 2, 1, 1])
LOGITS = np.array(
    [[2.0, 0.0, -1.0], [0.5, -0.3, 1.2], [-1.0, 2.5, 0.1], [0.0, 0.0, 0.0]],
    dtype="float32",
)
CE = keras.ops.convert_to_numpy(functional.crossentropy(LABELS, LOGITS, from_logits=True))
GAP = keras.ops.convert_to_numpy(1.0 - functional.true_class_probability(LABELS, LOGITS, True))


class TestPowerExpansion:
    def test_defaults(self):
        loss = PolynomialLoss()
        assert (loss.base_loss, loss.degree, loss.expansion) == ("crossentropy", 3, "power")
        assert loss.parameter_names == ["coefficients"]
        np.testing.assert_array_equal(loss.trainable_variables[0], [1.0, 0.0, 0.0])

    def test_golden(self):
        loss = PolynomialLoss(degree=3, from_logits=True, reduction=None)
        loss.trainable_variables[0].assign([1.0, 0.5, 0.25])
        expected = CE + 0.5 * CE**2 + 0.25 * CE**3
        np.testing.assert_allclose(loss(LABELS, LOGITS), expected, rtol=1e-6)

    def test_other_base_loss(self):
        loss = PolynomialLoss("focal", degree=2, from_logits=True, reduction=None)
        focal = keras.ops.convert_to_numpy(functional.focal(LABELS, LOGITS, from_logits=True))
        np.testing.assert_allclose(loss(LABELS, LOGITS), focal, rtol=1e-6)
        loss.trainable_variables[0].assign([0.0, 2.0])
        np.testing.assert_allclose(loss(LABELS, LOGITS), 2 * focal**2, rtol=1e-6)

    def test_regression(self):
        y_true = np.array([[1.0], [0.0], [-2.0]], dtype="float32")
        y_pred = np.array([[0.0], [2.0], [-2.5]], dtype="float32")
        loss = PolynomialLoss("mse", degree=2, reduction=None)
        assert loss.regression
        np.testing.assert_allclose(loss(y_true, y_pred), [1.0, 4.0, 0.25], rtol=1e-6)
        loss.trainable_variables[0].assign([0.5, 1.0])
        np.testing.assert_allclose(loss(y_true, y_pred), [1.5, 18.0, 0.1875], rtol=1e-6)

    def test_coefficients_are_non_negative_by_default(self):
        loss = PolynomialLoss(degree=2)
        keras.optimizers.SGD(1.0).apply([np.array([0.5, 1.0], "float32")], loss.trainable_variables)
        np.testing.assert_allclose(loss.trainable_variables[0], [0.5, 0.0])


class TestOneMinusPExpansion:
    def test_starts_at_zero_as_crossentropy(self):
        loss = PolynomialLoss(degree=2, expansion="one_minus_p", from_logits=True, reduction=None)
        np.testing.assert_array_equal(loss.trainable_variables[0], [0.0, 0.0])
        np.testing.assert_allclose(loss(LABELS, LOGITS), CE, rtol=1e-6)

    def test_golden(self):
        loss = PolynomialLoss(degree=2, expansion="one_minus_p", from_logits=True, reduction=None)
        loss.trainable_variables[0].assign([0.3, -0.2])
        expected = CE + 0.3 * GAP - 0.2 * GAP**2
        np.testing.assert_allclose(loss(LABELS, LOGITS), expected, rtol=1e-6)

    def test_degree_one_is_poly1(self):
        loss = PolynomialLoss(degree=1, expansion="one_minus_p", from_logits=True, reduction=None)
        loss.trainable_variables[0].assign([2.0])
        np.testing.assert_allclose(
            loss(LABELS, LOGITS),
            functional.poly1(LABELS, LOGITS, from_logits=True, epsilon=2.0),
            rtol=1e-6,
        )

    def test_coefficients_are_unbounded_by_default(self):
        loss = PolynomialLoss(degree=1, expansion="one_minus_p")
        assert loss.trainable_variables[0].constraint is None
        keras.optimizers.SGD(1.0).apply([np.array([3.0], "float32")], loss.trainable_variables)
        np.testing.assert_allclose(loss.trainable_variables[0], [-3.0])


def test_parameter_summary():
    loss = PolynomialLoss(degree=3)
    loss.trainable_variables[0].assign([1.0, 0.5, 0.0])
    summary = loss.parameter_summary()
    assert list(summary) == ["phi/coefficient_1", "phi/coefficient_2", "phi/coefficient_3"]
    np.testing.assert_allclose([float(v) for v in summary.values()], [1.0, 0.5, 0.0])


def test_config():
    config = PolynomialLoss("huber", degree=2).get_config()
    assert (config["base_loss"], config["degree"], config["expansion"]) == (
        "huber",
        2,
        "power",
    )


class TestPolynomialLossErrors:
    @pytest.mark.parametrize("base_loss", ["nonsense", "binary_crossentropy", None])
    def test_bad_base_loss(self, base_loss):
        with pytest.raises(ValueError, match="argument `base_loss`"):
            PolynomialLoss(base_loss)

    @pytest.mark.parametrize("degree", [0, -1, 2.0, True, "3", None])
    def test_bad_degree(self, degree):
        with pytest.raises(ValueError, match="argument `degree`.*Received"):
            PolynomialLoss(degree=degree)

    @pytest.mark.parametrize("expansion", ["taylor", "", None])
    def test_bad_expansion(self, expansion):
        with pytest.raises(ValueError, match="argument `expansion`.*Received"):
            PolynomialLoss(expansion=expansion)

    def test_one_minus_p_needs_classification(self):
        with pytest.raises(ValueError, match="argument `expansion`.*regression"):
            PolynomialLoss("mse", expansion="one_minus_p")
