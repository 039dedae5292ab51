"""A learnable polynomial of a base loss."""

import keras
from keras import ops

from tf_metaloss.losses import functional
from tf_metaloss.losses.base import LearnableLoss

EXPANSIONS = ("power", "one_minus_p")


@keras.saving.register_keras_serializable(package="tf_metaloss")
class PolynomialLoss(LearnableLoss):
    """A polynomial with learnable coefficients, starting as the base loss.

    - `expansion="power"`: `sum_{i=1..degree} phi_i * l^i` over a base loss
      `l` (any name in `functional.BASE_LOSSES`); phi starts at `(1, 0, ...)`
      and is kept non-negative, so the loss stays non-negative.
    - `expansion="one_minus_p"` (PolyLoss-style, classification):
      `CE + sum_{j=1..degree} phi_j * (1 - p_true)^j`; phi starts at 0, so the
      loss starts as cross-entropy. `degree=1` is Poly-1.

    Args:
        base_loss: the base loss name (`"power"` expansion only).
        degree: number of coefficients (>= 1).
        expansion: `"power"` or `"one_minus_p"`.
        **kwargs: see `LearnableLoss`.

    Example:

    >>> loss = tf_metaloss.losses.PolynomialLoss(degree=3, from_logits=True)
    >>> loss.trainable_variables[0].numpy().tolist()
    [1.0, 0.0, 0.0]

    Reference: Leng et al., "PolyLoss: a polynomial expansion perspective of
    classification loss functions" (ICLR 2022).
    """

    def __init__(self, base_loss="crossentropy", degree=3, expansion="power", **kwargs):
        super().__init__(**kwargs)
        functional.get(base_loss)
        if not isinstance(degree, int) or isinstance(degree, bool) or degree < 1:
            raise ValueError(
                "Invalid value for argument `degree`. Expected an integer >= 1. "
                f"Received: degree={degree!r}"
            )
        if expansion not in EXPANSIONS:
            raise ValueError(
                f"Invalid value for argument `expansion`. Expected one of "
                f"{EXPANSIONS}. Received: expansion={expansion!r}"
            )
        if expansion == "one_minus_p" and functional.is_regression(base_loss):
            raise ValueError(
                "Invalid value for argument `expansion`. 'one_minus_p' expands "
                "cross-entropy and needs a classification problem. Received: "
                f"expansion={expansion!r} with base_loss={base_loss!r}. Use "
                "expansion='power' for regression."
            )
        self.base_loss = base_loss
        self.regression = functional.is_regression(base_loss)
        self.degree = degree
        self.expansion = expansion
        if expansion == "power":
            initial = [1.0] + [0.0] * (degree - 1)
            self.add_parameter(
                "coefficients",
                shape=(degree,),
                initializer=keras.initializers.Constant(initial),
                default_bounds=(0.0, None),
            )
        else:
            self.add_parameter("coefficients", shape=(degree,), initializer="zeros")

    def compute(self, parameters, y_true, y_pred):
        coefficients = parameters["coefficients"]
        if self.expansion == "power":
            base = functional.get(self.base_loss)(y_true, y_pred, from_logits=self.from_logits)
            total, power = 0.0, 1.0
            for i in range(self.degree):
                power = power * base
                total = total + coefficients[i] * power
            return total
        one_hot, log_probs, probs = functional.classification_terms(
            y_true, y_pred, self.from_logits
        )
        total = -ops.sum(one_hot * log_probs, axis=-1)
        gap = 1.0 - ops.sum(one_hot * probs, axis=-1)
        power = 1.0
        for j in range(self.degree):
            power = power * gap
            total = total + coefficients[j] * power
        return total

    def element_labels(self, name, size):
        return [f"coefficient_{i + 1}" for i in range(size)]

    def get_config(self):
        config = super().get_config()
        config.update(
            {"base_loss": self.base_loss, "degree": self.degree, "expansion": self.expansion}
        )
        return config
