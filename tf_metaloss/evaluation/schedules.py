"""A hand schedule for a frozen learnable loss: the ablation a meta-learned phi should beat."""

import keras
import numpy as np

from tf_metaloss import validation


def schedule_targets(loss, final):
    """Final phi for `LinearParameterSchedule` from `{base loss: weight}`.

    Only blends (`BlendLoss`, a `MetaLoss` with `base_losses`) have named weights; unnamed base
    losses get weight 0.

    Example:

    >>> loss = tml.BlendLoss(["crossentropy", "generalized_crossentropy"], from_logits=True)
    >>> targets = tml.evaluation.schedules.schedule_targets(loss, {"generalized_crossentropy": 1.0})
    >>> targets["blend_weights"]
    array([0., 1.], dtype=float32)
    """
    if not hasattr(loss, "base_losses") or "blend_weights" not in loss.parameter_names:
        raise ValueError(
            "A hand schedule needs a blend (`BlendLoss`, or `MetaLoss` with "
            f"`base_losses`). Received: {type(loss).__name__} with parameters "
            f"{loss.parameter_names}"
        )
    unknown = sorted(set(final) - set(loss.base_losses))
    if unknown:
        raise ValueError(
            "Invalid value for argument `schedule_final`. Expected base losses "
            f"of the blend {loss.base_losses}. Received: {unknown}"
        )
    weights = np.array([float(final.get(n, 0.0)) for n in loss.base_losses], np.float32)
    if np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(
            "Invalid value for argument `schedule_final`. Expected non-negative "
            f"weights with a positive sum. Received: {final!r}"
        )
    return {"blend_weights": weights}


class LinearParameterSchedule(keras.callbacks.Callback):
    """A hand schedule: phi moves linearly from its start to `final` during training.

    Before step `t` (counted by the optimizer, from 0) it sets
    `phi = phi_0 + min(1, t / (total_steps - 1)) * (final - phi_0)`, so the
    first step uses phi_0 and the last uses `final`. Use it with a frozen
    loss (`meta_every=0`) as the baseline a meta-learned phi should beat.

    Args:
        final: dict `parameter name -> final value` (see `schedule_targets`).
        total_steps: number of training steps of the whole `fit`.

    Example:

    >>> x = np.random.default_rng(0).normal(size=(128, 8)).astype("float32")
    >>> y = (x[:, 0] > 0).astype("int32")
    >>> loss = tml.BlendLoss(["crossentropy", "generalized_crossentropy"], from_logits=True)
    >>> model = tml.MetaModel(keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)]))
    >>> model.compile(optimizer="sgd", loss=loss, meta_every=0)
    >>> targets = tml.evaluation.schedules.schedule_targets(loss, {"generalized_crossentropy": 1.0})
    >>> schedule = tml.evaluation.schedules.LinearParameterSchedule(targets, total_steps=8)
    >>> history = model.fit(x, y, epochs=2, verbose=0, callbacks=[schedule])  # 4 steps an epoch
    >>> [round(float(w), 3) for w in loss.mixture_weights()]  # the last step used `final`
    [0.0, 1.0]
    """

    def __init__(self, final, total_steps):
        super().__init__()
        self.final = {k: np.asarray(v, np.float32) for k, v in final.items()}
        self.total_steps = validation.check_positive_int("total_steps", total_steps)
        self._start = None

    def on_train_begin(self, logs=None):
        loss = self.model.loss
        variables = dict(zip(loss.parameter_names, loss.trainable_variables))
        for name, value in self.final.items():
            if name not in variables or tuple(variables[name].shape) != value.shape:
                raise ValueError(
                    "Invalid value for argument `final`. Expected parameters of "
                    f"{type(loss).__name__}: "
                    f"{ {n: tuple(v.shape) for n, v in variables.items()} }. "
                    f"Received: {name!r} of shape {value.shape}"
                )
        self._variables = variables
        self._start = {n: variables[n].numpy().copy() for n in self.final}

    def on_train_batch_begin(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        progress = min(1.0, step / max(1, self.total_steps - 1))
        for name, final in self.final.items():
            start = self._start[name]
            self._variables[name].assign(start + progress * (final - start))
