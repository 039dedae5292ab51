"""`MetaLoss`: the default learnable loss of each task."""

import keras

from tf_metaloss.losses.base import LearnableLoss
from tf_metaloss.losses.blend import BlendLoss
from tf_metaloss.losses.generalized_ce import Q_MIN
from tf_metaloss.losses.generalized_ce import GeneralizedCELoss

TASKS = ("classification", "regression")

# The blends `MetaLoss` builds when asked for one (`base_losses=...`), and the
# regression default.
BLEND_BASE_LOSSES = {
    "classification": (
        "crossentropy",
        "focal",
        "label_smoothing",
        "generalized_crossentropy",
        "mae_classification",
    ),
    "regression": ("mse", "mae", "huber"),
}
_BLEND_ARGUMENTS = ("base_losses", "initial_weights", "normalize")


@keras.saving.register_keras_serializable(package="tf_metaloss")
class MetaLoss(LearnableLoss):
    """The default learnable loss: generalized cross-entropy with a learned `q`.

    Classification: `(1 - p_true^q) / q` (`GeneralizedCELoss`), starting at
    the noise-robust `q = 0.7`; the meta step moves `q` toward cross-entropy
    (`q -> 0`) when the labels are clean and keeps it near its start when they
    are noisy. `q` is kept in `[0.001, q_start]`: the one-step meta-gradient
    also pulls `q` toward the MAE end (`q = 1`), which underfits (chance
    accuracy on SST-2 from scratch); pass `bounds=(0.001, 1.0)` to allow it.
    docs/RESULTS.md compares it with fixed losses and the blend. Regression:
    a normalised blend of MSE, MAE and Huber starting as MSE (`BlendLoss`).

    Passing blend arguments (`base_losses`, `initial_weights`, `normalize`)
    makes a classification `MetaLoss` the blend of earlier versions (by
    default CE, focal, label smoothing, GCE and MAE, starting as CE); saved
    models of those versions load as that blend. The attributes of the family
    (`q`, `exponents`, or `base_losses`, `mixture_weights`) are reachable on
    the `MetaLoss`, and `family` is the family itself.

    Args:
        from_logits: whether the model outputs logits.
        task: `"classification"` (default) or `"regression"`.
        q: the starting exponent of the classification default, in `(0, 1]`.
        **kwargs: `regularization`, `bounds`, `reduction`, `name`, `dtype`
            (see `LearnableLoss`), or the blend arguments above.

    Example:

    >>> loss = tml.MetaLoss(from_logits=True)
    >>> loss.parameter_names, round(float(loss.trainable_variables[0]), 3)
    (['q'], 0.7)
    >>> model = tml.MetaModel(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]))
    >>> model.compile(optimizer="sgd", loss=loss, meta_optimizer="adam")
    >>> tml.MetaLoss(task="regression").base_losses
    ['mse', 'mae', 'huber']
    >>> tml.MetaLoss(from_logits=True, base_losses=["crossentropy", "focal"]).mixture_weights()
    <tf.Tensor: shape=(2,), dtype=float32, numpy=array([1., 0.], dtype=float32)>
    """

    def __init__(self, from_logits=False, task="classification", q=None, **kwargs):
        if task not in TASKS:
            raise ValueError(
                f"Invalid value for argument `task`. Expected one of {list(TASKS)}. "
                f"Received: task={task!r}"
            )
        blend_arguments = {k: kwargs.pop(k) for k in _BLEND_ARGUMENTS if k in kwargs}
        super().__init__(from_logits=from_logits, **kwargs)
        self.task = task
        family_kwargs = dict(kwargs, from_logits=from_logits, name=self.name)
        if task == "regression" or blend_arguments:
            if q is not None:
                raise ValueError(
                    "Invalid value for argument `q`. It sets the start of the "
                    "generalized cross-entropy default, which a regression task or the "
                    f"blend arguments replace. Received: q={q!r} with task={task!r} and "
                    f"blend arguments {sorted(blend_arguments)}. Drop `q`, or the others."
                )
            blend_arguments.setdefault("base_losses", BLEND_BASE_LOSSES[task])
            self.family = BlendLoss(**blend_arguments, **family_kwargs)
            if self.family.regression != (task == "regression"):
                raise ValueError(
                    f"Arguments `task` and `base_losses` disagree. Received: "
                    f"task={task!r} with base_losses={self.family.base_losses}. Pass "
                    "base losses of that task, or the matching task."
                )
        else:
            q = 0.7 if q is None else q
            if family_kwargs.get("bounds") is None:
                # q only moves toward cross-entropy: see the class docstring.
                family_kwargs["bounds"] = (Q_MIN, q)
            self.family = GeneralizedCELoss(q=q, **family_kwargs)
        self.regression = self.family.regression
        # phi is the family's: one set of variables, saved under this loss.
        self.loss_parameters = self.family.loss_parameters
        self._parameter_names = self.family._parameter_names
        self._initial_values = self.family._initial_values

    def __getattr__(self, name):
        # Only reached for attributes `MetaLoss` lacks: the family's own.
        family = self.__dict__.get("family")
        if family is None or name.startswith("_"):
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        return getattr(family, name)

    def compute(self, parameters, y_true, y_pred):
        return self.family.compute(parameters, y_true, y_pred)

    def element_labels(self, name, size):
        return self.family.element_labels(name, size)

    def get_config(self):
        config = super().get_config()
        config["task"] = self.task
        if isinstance(self.family, BlendLoss):
            config.update(
                {
                    "base_losses": self.family.base_losses,
                    "initial_weights": self.family.initial_weights,
                    "normalize": self.family.normalize,
                }
            )
        else:
            config["q"] = self.family.q
        return config
