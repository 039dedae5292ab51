"""A learned loss network f_phi(y, y_pred) (ML3 / AdaLFL style)."""

import keras
from keras import ops

from tf_metaloss.losses import functional
from tf_metaloss.losses import mlp
from tf_metaloss.losses.base import LearnableLoss


@keras.saving.register_keras_serializable(package="tf_metaloss")
class NeuralLoss(LearnableLoss):
    """A small MLP over `(y, y_pred)` that reshapes a base loss.

    `loss = base(y, y_pred) * 2 * sigmoid(h_phi(y, y_pred))`, where `h_phi`
    averages an MLP applied to each output's pair `(y_c, p_c)` (classification:
    one-hot label and predicted probability of class `c`; regression: target,
    prediction and residual). The output is non-negative, works for any number
    of classes, and, with the MLP's last layer starting at zero, the loss starts
    exactly as the base loss (an identity initialisation that avoids the
    collapse seen when a random network is meta-learned from scratch).

    Args:
        base_loss: name of the base loss (`"crossentropy"` or, for regression,
            `"mse"`, `"mae"`, `"huber"`, ...).
        hidden_units: widths of the hidden layers, e.g. `(16,)` or `(32, 32)`.
        seed: seed of the hidden layers' random initialisation.
        **kwargs: see `LearnableLoss`.

    Example:

    >>> loss = tf_metaloss.losses.NeuralLoss(hidden_units=(8,), from_logits=True)
    >>> len(loss.trainable_variables)
    4

    Reference: Raymond et al., "Online loss function learning" (AdaLFL, 2023);
    Bechtle et al., "Meta-learning via learned loss" (ML3, ICPR 2021).
    """

    def __init__(self, base_loss="crossentropy", hidden_units=(16,), seed=None, **kwargs):
        super().__init__(**kwargs)
        functional.get(base_loss)
        self.base_loss = base_loss
        self.hidden_units = mlp.check_hidden_units(hidden_units)
        self.seed = seed
        self.regression = functional.is_regression(base_loss)
        input_dim = 3 if self.regression else 2
        mlp.add_mlp_parameters(self, input_dim, self.hidden_units, seed)

    def features(self, y_true, y_pred):
        """Per-output features `(batch, outputs, d)` fed to the MLP."""
        if self.regression:
            y_true, y_pred = functional.align_regression(y_true, y_pred)
            return ops.stack([y_true, y_pred, y_pred - y_true], axis=-1)
        one_hot, _, probs = functional.classification_terms(y_true, y_pred, self.from_logits)
        return ops.stack([one_hot, probs], axis=-1)

    def scale(self, parameters, y_true, y_pred):
        """The learned multiplier in `[0, 2]` (1 at initialisation)."""
        h = mlp.apply_mlp(parameters, self.features(y_true, y_pred), len(self.hidden_units))
        return 2.0 * ops.sigmoid(functional.mean(h, axis=-1))

    def compute(self, parameters, y_true, y_pred):
        base = functional.get(self.base_loss)(y_true, y_pred, from_logits=self.from_logits)
        return base * self.scale(parameters, y_true, y_pred)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "base_loss": self.base_loss,
                "hidden_units": list(self.hidden_units),
                "seed": self.seed,
            }
        )
        return config
