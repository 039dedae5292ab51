"""Per-sample weights from a small network of each sample's loss (noisy labels)."""

import keras
from keras import ops

from tf_metaloss import backend
from tf_metaloss.losses import functional
from tf_metaloss.losses import mlp
from tf_metaloss.losses.base import LearnableLoss


@keras.saving.register_keras_serializable(package="tf_metaloss")
class SampleWeightedLoss(LearnableLoss):
    """`w_phi(l_i) * l_i`: a base loss reweighted per sample (Meta-Weight-Net).

    The weight network sees each sample's base loss value with its gradient
    stopped (so it cannot learn a shortcut through it), ends in a sigmoid, and
    its weights are divided by their batch mean (`normalize=True`), so the
    average weight is 1. Its output layer starts at zero: all weights start
    equal and the loss starts as the base loss. Samples whose labels look wrong
    (large loss) can then be down-weighted by the meta step.

    The batch-mean normalisation is computed on each replica's own batch under
    `tf.distribute`.

    Args:
        base_loss: name of the base loss, e.g. `"crossentropy"`.
        hidden_units: widths of the weight network's hidden layers.
        normalize: divide the weights by their batch mean.
        seed: seed of the hidden layers' random initialisation.
        **kwargs: see `LearnableLoss`.

    Example:

    >>> loss = tf_metaloss.losses.SampleWeightedLoss(from_logits=True)
    >>> w = loss.sample_weights(np.array([0, 1]), np.array([[3., 0.], [3., 0.]]))
    >>> keras.ops.convert_to_numpy(w).tolist()
    [1.0, 1.0]

    Reference: Shu et al., "Meta-Weight-Net: learning an explicit mapping for
    sample weighting" (NeurIPS 2019).
    """

    def __init__(
        self, base_loss="crossentropy", hidden_units=(32,), normalize=True, seed=None, **kwargs
    ):
        super().__init__(**kwargs)
        functional.get(base_loss)
        self.base_loss = base_loss
        self.regression = functional.is_regression(base_loss)
        self.hidden_units = mlp.check_hidden_units(hidden_units)
        self.normalize = bool(normalize)
        self.seed = seed
        mlp.add_mlp_parameters(self, 1, self.hidden_units, seed)

    def _weights(self, parameters, base):
        # The weight network's input is constant for the weight gradient (no
        # shortcut through it) but stays differentiable for the meta-gradient.
        return self._weights_of(parameters, backend.stop_weight_gradient(base))

    def _weights_of(self, parameters, base):
        features = ops.expand_dims(base, -1)
        weights = ops.sigmoid(mlp.apply_mlp(parameters, features, len(self.hidden_units)))
        if self.normalize:
            mean = functional.mean(weights, axis=None)
            weights = weights / ops.maximum(mean, functional.EPSILON)
        return weights

    def sample_weights(self, y_true, y_pred, parameter_values=None):
        """The per-sample weights the loss applies (for inspection)."""
        y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
        base = functional.get(self.base_loss)(y_true, y_pred, from_logits=self.from_logits)
        return self._weights(self.parameters(parameter_values), base)

    def compute(self, parameters, y_true, y_pred):
        base = functional.get(self.base_loss)(y_true, y_pred, from_logits=self.from_logits)
        return self._weights(parameters, base) * base

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "base_loss": self.base_loss,
                "hidden_units": list(self.hidden_units),
                "normalize": self.normalize,
                "seed": self.seed,
            }
        )
        return config
