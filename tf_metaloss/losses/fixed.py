"""`FixedLoss`: any base loss of `functional` as an ordinary Keras loss."""

import inspect

import keras

from tf_metaloss.losses import functional


@keras.saving.register_keras_serializable(package="tf_metaloss")
class FixedLoss(keras.losses.Loss):
    """A base loss with fixed settings, e.g. a baseline or a meta objective.

    Accepts sparse or one-hot labels, logits or probabilities, like the
    learnable families; it has no trainable parameters.

    Args:
        base_loss: a name from `tf_metaloss.losses.functional.BASE_LOSSES`,
            e.g. `"crossentropy"`, `"generalized_crossentropy"`.
        from_logits: whether `y_pred` holds logits.
        **options: keyword options of that base loss (e.g. `q=0.7`, `gamma=2`).
        reduction, name, dtype: as in `keras.losses.Loss`.

    Example:

    >>> gce = tf_metaloss.losses.FixedLoss("generalized_crossentropy", q=0.7,
    ...                                    from_logits=True)
    """

    def __init__(
        self,
        base_loss="crossentropy",
        from_logits=False,
        reduction="sum_over_batch_size",
        name=None,
        dtype=None,
        **options,
    ):
        super().__init__(name=name or base_loss, reduction=reduction, dtype=dtype)
        self.fn = functional.get(base_loss)
        if not isinstance(from_logits, bool):
            raise ValueError(
                "Invalid value for argument `from_logits`. Expected a bool. "
                f"Received: from_logits={from_logits!r}"
            )
        accepted = set(inspect.signature(self.fn).parameters) - {"y_true", "y_pred", "from_logits"}
        unknown = sorted(set(options) - accepted)
        if unknown:
            raise ValueError(
                f"Invalid options for base_loss={base_loss!r}. Expected keyword "
                f"options among {sorted(accepted)}. Received: {unknown}."
            )
        self.base_loss = base_loss
        self.from_logits = from_logits
        self.options = options
        self.regression = functional.is_regression(base_loss)

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred, from_logits=self.from_logits, **self.options)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"base_loss": self.base_loss, "from_logits": self.from_logits, **self.options}
        )
        return config
