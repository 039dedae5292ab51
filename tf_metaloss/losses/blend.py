"""A learnable non-negative mixture of base losses."""

import keras
from keras import ops

from tf_metaloss.losses import functional
from tf_metaloss.losses.base import LearnableLoss
from tf_metaloss.losses.base import check_base_losses


@keras.saving.register_keras_serializable(package="tf_metaloss")
class BlendLoss(LearnableLoss):
    """`sum_i w_i * loss_i(y_true, y_pred)` with learnable weights `w >= 0`.

    The weights start at `initial_weights` (by default all weight on the first
    base loss, so training starts exactly on it). With `normalize=True` the
    weights are divided by their sum, so the meta step can change the loss's
    shape but not its overall scale (which would act like a learning rate).

    Args:
        base_losses: names of the base losses, from
            `tf_metaloss.losses.functional.BASE_LOSSES`. Classification:
            `"crossentropy"`, `"focal"`, `"mae_classification"`,
            `"label_smoothing"`, `"generalized_crossentropy"`,
            `"symmetric_crossentropy"`, `"poly1"`. Regression: `"mse"`, `"mae"`,
            `"huber"`.
        initial_weights: starting weights (non-negative, one per base loss).
        normalize: divide the weights by their sum.
        **kwargs: `from_logits`, `regularization`, `bounds`, `reduction`,
            `name`, `dtype` (see `LearnableLoss`).

    Example:

    >>> loss = tf_metaloss.losses.BlendLoss(
    ...     ["crossentropy", "mae_classification"], from_logits=True)
    >>> loss.trainable_variables[0].numpy().tolist()
    [1.0, 0.0]

    Reference: Raymond et al., "Learning symbolic model-agnostic loss
    functions via meta-learning" (2023) and Bechtle et al., "Meta-learning via
    learned loss" (ML3, 2021).
    """

    def __init__(
        self,
        base_losses=("crossentropy", "focal", "mae_classification", "label_smoothing"),
        initial_weights=None,
        normalize=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.base_losses = check_base_losses("base_losses", base_losses)
        self.regression = functional.is_regression(self.base_losses[0])
        if initial_weights is None:
            initial_weights = [1.0] + [0.0] * (len(self.base_losses) - 1)
        try:
            weights = [float(w) for w in initial_weights]
        except (TypeError, ValueError):
            weights = None
        if (
            weights is None
            or len(weights) != len(self.base_losses)
            or not all(w >= 0 for w in weights)
        ):
            raise ValueError(
                "Invalid value for argument `initial_weights`. Expected "
                f"{len(self.base_losses)} non-negative numbers (one per base "
                f"loss {self.base_losses}). Received: "
                f"initial_weights={initial_weights!r}"
            )
        initial_weights = weights
        if normalize and sum(initial_weights) <= 0:
            raise ValueError(
                "Invalid value for argument `initial_weights`. With "
                "normalize=True at least one weight must be positive. "
                f"Received: initial_weights={initial_weights!r}"
            )
        self.initial_weights = initial_weights
        self.normalize = bool(normalize)
        self.add_parameter(
            "blend_weights",
            shape=(len(self.base_losses),),
            initializer=keras.initializers.Constant(initial_weights),
            default_bounds=(0.0, None),
        )

    def mixture_weights(self, parameters=None):
        """The effective weights (normalised when `normalize=True`)."""
        weights = (parameters or self.parameters())["blend_weights"]
        if self.normalize:
            weights = weights / ops.maximum(ops.sum(weights), functional.EPSILON)
        return weights

    def compute(self, parameters, y_true, y_pred):
        weights = self.mixture_weights(parameters)
        total = 0.0
        for i, name in enumerate(self.base_losses):
            term = functional.get(name)(y_true, y_pred, from_logits=self.from_logits)
            total = total + weights[i] * term
        return total

    def element_labels(self, name, size):
        return list(self.base_losses)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "base_losses": self.base_losses,
                "initial_weights": self.initial_weights,
                "normalize": self.normalize,
            }
        )
        return config
