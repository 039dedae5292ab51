"""Generalized cross-entropy with a learnable exponent q."""

import keras
from keras import ops

from tf_metaloss.losses import functional
from tf_metaloss.losses.base import LearnableLoss
from tf_metaloss.validation import check_bool
from tf_metaloss.validation import check_fraction

# The smallest q: the loss is cross-entropy up to a relative error of ~q*loss/2.
Q_MIN = 1e-3


@keras.saving.register_keras_serializable(package="tf_metaloss")
class GeneralizedCELoss(LearnableLoss):
    """`(1 - p_true^q) / q` with a learnable exponent `q` in `[0, 1]`.

    Generalized cross-entropy (Zhang & Sabuncu 2018) interpolates between
    cross-entropy (`q -> 0`) and the bounded MAE term `1 - p_true` (`q = 1`).
    Its gradient is cross-entropy's weighted by `p_true^q`: samples the model
    finds implausible (often the mislabelled ones) count less, the more so the
    larger `q`. Learning `q` lets the meta step choose how robust the loss is:
    the noise-robust value 0.7 where the labels are noisy, cross-entropy where
    they are clean. `q` is kept in `[0.001, 1]`; the loss is computed as
    `-expm1(q log p) / q`, which is exact for small `q`.

    Args:
        q: the starting exponent, in `(0, 1]` (default 0.7, the robust value
            of Zhang & Sabuncu).
        per_class: learn one exponent per class of the label (phi then has
            `num_classes` values), e.g. for class-dependent noise.
        num_classes: number of classes, with `per_class=True`.
        **kwargs: see `LearnableLoss`.

    Example:

    >>> loss = tml.losses.GeneralizedCELoss(q=0.7, from_logits=True)
    >>> y, logits = np.array([0, 1]), np.array([[2.0, 0.0], [2.0, 0.0]], "float32")
    >>> p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    >>> expected = (1 - p[[0, 1], [0, 1]] ** 0.7) / 0.7
    >>> np.allclose(loss(y, logits), expected.mean())
    True

    Reference: Zhang and Sabuncu, "Generalized cross entropy loss for training
    deep neural networks with noisy labels" (NeurIPS 2018); Shu et al.,
    "Learning adaptive loss for robust learning with noisy labels" (2020).
    """

    def __init__(self, q=0.7, per_class=False, num_classes=None, **kwargs):
        super().__init__(**kwargs)
        check_fraction("q", q, high_closed=True)
        check_bool("per_class", per_class)
        if per_class and (
            not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2
        ):
            raise ValueError(
                "Invalid value for argument `num_classes`. Expected an integer >= 2 with "
                f"per_class=True. Received: num_classes={num_classes!r}"
            )
        self.q = float(q)
        self.per_class = per_class
        self.num_classes = num_classes
        self.regression = False
        self.add_parameter(
            "q",
            shape=(num_classes,) if per_class else (),
            initializer=keras.initializers.Constant(max(self.q, Q_MIN)),
            default_bounds=(Q_MIN, 1.0),
        )

    def exponents(self, y_true, parameters=None):
        """The exponent applied to each sample (its label's `q` with `per_class`)."""
        q = (parameters or self.parameters())["q"]
        if not self.per_class:
            return q
        one_hot = functional.to_one_hot(y_true, self.num_classes, q.dtype)
        return ops.sum(one_hot * q, axis=-1)

    def sample_weights(self, y_true, y_pred, parameter_values=None):
        """`p_true^q`: each sample's gradient weight relative to cross-entropy.

        The gradient of `(1 - p^q) / q` is `p^q` times cross-entropy's, so
        this is the per-sample weighting GCE applies implicitly (for
        inspection, e.g. how it separates clean from mislabelled samples).
        """
        y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
        _, q_log_p = self._exponent_and_log_power(self.parameters(parameter_values), y_true, y_pred)
        return ops.exp(q_log_p)

    def compute(self, parameters, y_true, y_pred):
        q, q_log_p = self._exponent_and_log_power(parameters, y_true, y_pred)
        return -ops.expm1(q_log_p) / q

    def _exponent_and_log_power(self, parameters, y_true, y_pred):
        """Each sample's `q` and `q * log p_true` (the log of `p_true^q`)."""
        one_hot, log_probs, _ = functional.classification_terms(y_true, y_pred, self.from_logits)
        q = self.exponents(y_true, parameters)
        return q, q * ops.sum(one_hot * log_probs, axis=-1)

    def element_labels(self, name, size):
        if self.per_class:
            return [f"q_class_{i}" for i in range(size)]
        return ["q"]

    def get_config(self):
        config = super().get_config()
        config.update({"q": self.q, "per_class": self.per_class, "num_classes": self.num_classes})
        return config
