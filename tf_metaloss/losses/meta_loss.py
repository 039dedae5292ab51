"""`MetaLoss`: the default learnable loss of each task."""

import keras

from tf_metaloss.losses.base import LearnableLoss
from tf_metaloss.losses.blend import BlendLoss
from tf_metaloss.losses.generalized_ce import Q_MIN
from tf_metaloss.losses.generalized_ce import GeneralizedCELoss
from tf_metaloss.losses.noise_corrected import NoiseCorrectedLoss

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
# The classification families `MetaLoss(family=...)` builds; the first is the default.
CLASSIFICATION_FAMILIES = ("noise_corrected", "generalized_ce")


@keras.saving.register_keras_serializable(package="tf_metaloss")
class MetaLoss(LearnableLoss):
    """The default learnable loss of each task.

    Classification: generalized cross-entropy blended with a forward noise
    correction, `(1 - c) * GCE_q + c * CE(p @ C, y)` (`NoiseCorrectedLoss`).
    It starts as GCE with `q = 0.7` (`c = 0`), and the meta step learns the
    weight `c` of the correction, whose noise estimate `C` comes from a
    reference copy of the model trained with cross-entropy beside it (run by
    `MetaModel`). Under class-dependent label noise `c` rises toward 1; under
    uniform noise or clean labels it stays near 0. With `MetaModel`'s guard
    (`compile(meta_guard="auto")`) the model also ends no worse than the GCE
    run it started from, on held-out meta data. docs/RESULTS.md has the
    numbers.

    `family="generalized_ce"` is the learned-`q` default of version 0.3
    (`GeneralizedCELoss` with `q` kept in `[0.001, q_start]`; its saved models
    load as it). Passing blend arguments (`base_losses`, `initial_weights`,
    `normalize`) makes the blend of earlier versions (by default CE, focal,
    label smoothing, GCE and MAE, starting as CE). Regression: a normalised
    blend of MSE, MAE and Huber starting as MSE (`BlendLoss`). The attributes
    of the family (`q`, `confusion`, `base_losses`, ...) are reachable on the
    `MetaLoss`, and `family` is the family itself.

    Args:
        from_logits: whether the model outputs logits.
        task: `"classification"` (default) or `"regression"`.
        q: the exponent of the GCE term (or the start of the learned `q`), in
            `(0, 1]`; default 0.7.
        family: `"noise_corrected"` (default) or `"generalized_ce"`, for
            classification without blend arguments.
        **kwargs: `regularization`, `bounds`, `reduction`, `name`, `dtype`
            (see `LearnableLoss`), `num_classes` and `confusion_momentum`
            (`NoiseCorrectedLoss`), or the blend arguments above.

    Example:

    >>> loss = tml.MetaLoss(from_logits=True)
    >>> loss.parameter_names, float(loss.trainable_variables[0])
    (['correction'], 0.0)
    >>> model = tml.MetaModel(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]))
    >>> model.compile(optimizer="sgd", loss=loss, meta_optimizer="adam")
    >>> loss.num_classes  # set from the model's output
    3
    >>> tml.MetaLoss(from_logits=True, family="generalized_ce").parameter_names
    ['q']
    >>> tml.MetaLoss(task="regression").base_losses
    ['mse', 'mae', 'huber']
    >>> loss = tml.MetaLoss(from_logits=True, base_losses=["crossentropy", "focal"])
    >>> keras.ops.convert_to_numpy(loss.mixture_weights())
    array([1., 0.], dtype=float32)
    """

    def __init__(self, from_logits=False, task="classification", q=None, family=None, **kwargs):
        if task not in TASKS:
            raise ValueError(
                f"Invalid value for argument `task`. Expected one of {list(TASKS)}. "
                f"Received: task={task!r}"
            )
        if family is not None and family not in CLASSIFICATION_FAMILIES:
            raise ValueError(
                "Invalid value for argument `family`. Expected one of "
                f"{list(CLASSIFICATION_FAMILIES)} or None (the default, "
                f"{CLASSIFICATION_FAMILIES[0]!r}). Received: family={family!r}"
            )
        blend_arguments = {k: kwargs.pop(k) for k in _BLEND_ARGUMENTS if k in kwargs}
        state_arguments = {
            k: kwargs.pop(k) for k in ("num_classes", "confusion_momentum") if k in kwargs
        }
        super().__init__(from_logits=from_logits, **kwargs)
        self.task = task
        family_kwargs = dict(kwargs, from_logits=from_logits, name=self.name)
        if (task == "regression" or blend_arguments) and family is not None:
            raise ValueError(
                "Invalid value for argument `family`. It chooses a classification family, "
                "which a regression task or the blend arguments replace. Received: "
                f"family={family!r} with task={task!r} and blend arguments "
                f"{sorted(blend_arguments)}. Drop `family`, or the others."
            )
        family = family or CLASSIFICATION_FAMILIES[0]
        noise_corrected = task == "classification" and not blend_arguments
        noise_corrected = noise_corrected and family == "noise_corrected"
        if state_arguments and not noise_corrected:
            raise ValueError(
                f"Invalid arguments {sorted(state_arguments)}: they configure the "
                "'noise_corrected' classification family. Received them with "
                f"task={task!r}, family={family!r}. Drop them, or use that family."
            )
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
        elif family == "noise_corrected":
            q = 0.7 if q is None else q
            self.family = NoiseCorrectedLoss(q=q, **state_arguments, **family_kwargs)
        else:
            q = 0.7 if q is None else q
            if family_kwargs.get("bounds") is None:
                # q only moves toward cross-entropy: see the class docstring.
                family_kwargs["bounds"] = (Q_MIN, q)
            self.family = GeneralizedCELoss(q=q, **family_kwargs)
        self.family_name = None if isinstance(self.family, BlendLoss) else family
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

    @property
    def reference_objective(self):
        return self.family.reference_objective

    def build_state(self, num_classes):
        self.family.build_state(num_classes)

    def reference_statistics(self, y_true, reference_y_pred):
        return self.family.reference_statistics(y_true, reference_y_pred)

    def update_from_reference(self, statistics):
        self.family.update_from_reference(statistics)

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
            config["family"] = self.family_name
            if self.family_name == "noise_corrected":
                config["num_classes"] = self.family.num_classes
                config["confusion_momentum"] = self.family.confusion_momentum
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("task", "classification") == "classification" and "q" in config:
            # Saved before the noise-corrected default: the learned-q family.
            config.setdefault("family", "generalized_ce")
        return cls(**config)
