"""`LossParameterEarlyStopping`: freeze the learned loss when meta-learning stalls."""

import collections
import warnings

import keras
import numpy as np

from tf_metaloss.callbacks.monitor import MetaStepMonitor
from tf_metaloss.callbacks.monitor import check_meta_model

__all__ = ["LossParameterEarlyStopping"]

MONITORS = ("meta_objective",)


class LossParameterEarlyStopping(keras.callbacks.Callback):
    """Freezes the loss parameters phi once the meta objective stops improving.

    Tracked per meta-update, not per epoch: after each meta step the step's
    meta objective (from the step logs, see `tf_metaloss.callbacks.monitor`),
    averaged over the last `window` updates, is compared with the best so
    far. After `patience` meta-updates without an improvement of more than
    `min_delta`, the callback sets `model.meta_every = 0`, which the compiled
    training loop reads at every step, so no further meta-update happens and
    training goes on with the loss frozen. The weights keep training; use
    `keras.callbacks.EarlyStopping` to stop those.

    With `restore_best=True` phi is set back to its best value when frozen:
    the value phi had *before* the best meta step, because a step's meta
    objective is measured after a lookahead taken with that phi. The
    meta-optimizer's state is left alone.

    Attributes set when it fires: `frozen_step` (optimizer step),
    `best_step`, `best_value`, `frozen` (bool).

    The freeze lasts for later `fit` calls of the same model too (they start
    with `meta_every == 0`), but not through `model.save()`/`load_model`,
    which restore the compiled `meta_every`.

    Args:
        monitor: `"meta_objective"` (the only quantity available per
            meta-update; `"meta_loss"` is its deprecated name).
        patience: meta-updates without improvement before freezing (>= 1).
        min_delta: minimum decrease that counts as an improvement (>= 0).
        restore_best: set phi back to its best value when freezing.
        window: average the per-update meta objective over this many updates
            (>= 1; 1 compares raw values, which are noisy because each meta
            step sees another meta batch).
        verbose: 1 prints a line when the loss is frozen.

    Example:

    >>> x = np.random.default_rng(0).normal(size=(128, 8)).astype("float32")
    >>> y = (x[:, 0] > 0).astype("int32")
    >>> model = tml.MetaModel(keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)]))
    >>> model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True))
    >>> stop = tml.callbacks.LossParameterEarlyStopping(patience=2, min_delta=10.0)
    >>> history = model.fit(x, y, meta_split=0.1, epochs=2, verbose=0, callbacks=[stop])
    >>> stop.frozen, stop.best_step, stop.frozen_step  # no update lowered the objective by 10
    (True, 0, 2)
    >>> model.meta_every  # frozen: the second epoch (steps 4 to 7) ran no meta step
    0
    >>> history.history["meta_objective"][-1]
    nan
    """

    def __init__(
        self,
        monitor="meta_objective",
        patience=10,
        min_delta=0.0,
        restore_best=True,
        window=1,
        verbose=0,
    ):
        super().__init__()
        if monitor == "meta_loss":
            warnings.warn(
                "`monitor='meta_loss'` is deprecated; use `monitor='meta_objective'`.",
                DeprecationWarning,
                stacklevel=2,
            )
            monitor = "meta_objective"
        if monitor not in MONITORS:
            raise ValueError(
                f"Invalid value for argument `monitor`. Expected one of {MONITORS} "
                f"(tracked per meta-update). Received: monitor={monitor!r}"
            )
        for name, value, minimum in (("patience", patience, 1), ("window", window, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(
                    f"Invalid value for argument `{name}`. Expected an integer >= "
                    f"{minimum}. Received: {name}={value!r}"
                )
        if not isinstance(min_delta, (int, float)) or isinstance(min_delta, bool) or min_delta < 0:
            raise ValueError(
                "Invalid value for argument `min_delta`. Expected a non-negative "
                f"float. Received: min_delta={min_delta!r}"
            )
        self.monitor = monitor
        self.patience = patience
        self.min_delta = float(min_delta)
        self.restore_best = bool(restore_best)
        self.window = window
        self.verbose = verbose
        self._monitor = MetaStepMonitor()
        self._recent = collections.deque(maxlen=window)
        self.best_value = np.inf
        self.best_step = None
        self.best_phi = None
        self.wait = 0
        self.frozen = False
        self.frozen_step = None

    def on_train_begin(self, logs=None):
        check_meta_model(self.model, "LossParameterEarlyStopping")

    def on_epoch_begin(self, epoch, logs=None):
        self._monitor.new_epoch()

    def on_train_batch_begin(self, batch, logs=None):
        if not self.frozen:
            self._monitor.begin(self.model)

    def on_train_batch_end(self, batch, logs=None):
        if self.frozen:
            return
        record = self._monitor.end(self.model, logs)
        if record is None or record.meta_updates == 0 or record.meta_objective is None:
            return
        self._recent.append(record.meta_objective)
        value = float(np.mean(self._recent))
        if value < self.best_value - self.min_delta:
            self.best_value = value
            self.best_step = record.step
            self.best_phi = [np.array(v) for v in record.phi_before.values()]
            self.wait = 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self._freeze(record.step)

    def _freeze(self, step):
        self.model.meta_every = 0
        self.frozen = True
        self.frozen_step = step
        if self.restore_best and self.best_phi is not None:
            for variable, value in zip(self.model.loss.trainable_variables, self.best_phi):
                variable.assign(value.astype(variable.dtype))
        if self.verbose:
            print(
                f"LossParameterEarlyStopping: {self.monitor} did not improve for "
                f"{self.patience} meta-updates; loss frozen at step {step}"
                + (f", phi restored from step {self.best_step}" if self.restore_best else "")
                + f" (best {self.monitor} {self.best_value:.6g})."
            )
