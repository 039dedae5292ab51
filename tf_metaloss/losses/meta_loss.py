"""`MetaLoss`: the default learnable loss."""

import keras

from tf_metaloss.losses.blend import BlendLoss

TASKS = {
    "classification": (
        "crossentropy",
        "focal",
        "label_smoothing",
        "generalized_crossentropy",
        "mae_classification",
    ),
    "regression": ("mse", "mae", "huber"),
}


@keras.saving.register_keras_serializable(package="tf_metaloss")
class MetaLoss(BlendLoss):
    """The default learnable loss: a normalised blend that starts as CE (or MSE).

    Classification blends cross-entropy, focal loss, label-smoothed
    cross-entropy, generalized cross-entropy (q=0.7) and the bounded MAE term,
    with all weight on cross-entropy at the start: the model trains exactly as
    with cross-entropy until the meta step finds a better mixture, for example
    shifting weight to the noise-robust terms when labels are noisy. The
    weights are normalised (a shape, not a scale, is learned). Regression blends
    MSE, MAE and Huber, starting as MSE.

    Args:
        from_logits: whether the model outputs logits.
        task: `"classification"` (default) or `"regression"`.
        **kwargs: any `BlendLoss` argument (`initial_weights`, `regularization`,
            `bounds`, ...).

    Example:

    >>> loss = tml.MetaLoss(from_logits=True)
    >>> loss.base_losses
    ['crossentropy', 'focal', 'label_smoothing', 'generalized_crossentropy', 'mae_classification']
    >>> [round(float(w), 3) for w in loss.mixture_weights()]  # pure cross-entropy at the start
    [1.0, 0.0, 0.0, 0.0, 0.0]
    >>> model = tml.MetaModel(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]))
    >>> model.compile(optimizer="sgd", loss=loss, meta_optimizer="adam")
    >>> tml.MetaLoss(task="regression").base_losses
    ['mse', 'mae', 'huber']
    """

    def __init__(self, from_logits=False, task="classification", **kwargs):
        if task not in TASKS:
            raise ValueError(
                f"Invalid value for argument `task`. Expected one of "
                f"{sorted(TASKS)}. Received: task={task!r}"
            )
        kwargs.setdefault("base_losses", TASKS[task])
        super().__init__(from_logits=from_logits, **kwargs)
        if self.regression != (task == "regression"):
            raise ValueError(
                f"Arguments `task` and `base_losses` disagree. Received: "
                f"task={task!r} with base_losses={self.base_losses}. Pass "
                "base losses of that task, or the matching task."
            )
        self.task = task

    def get_config(self):
        config = super().get_config()
        config["task"] = self.task
        return config
