"""The guard: a meta-learned model never ends worse than its starting loss.

`MetaModel.compile(meta_guard=...)` trains a second copy of the network on
the learnable loss frozen at its start (e.g. generalized cross-entropy for
the default `MetaLoss`) beside the model, on the training data and the meta
data together (what a user of that fixed loss would train on), and holds out
part of the meta data as *check data* that neither sees. At the end of each epoch
`GuardCheck` scores both on the check data with the meta objective; if the
meta-learned model is worse at the end of training (or for `patience` epochs
in a row), the model takes the copy's weights and optimizer state, phi goes
back to its start and the loss is frozen: from then on the model is the run
of the starting loss.
"""

import keras
import numpy as np

from tf_metaloss.validation import check_fraction
from tf_metaloss.validation import check_int
from tf_metaloss.validation import invalid


class Guard:
    """Settings of `MetaModel`'s guard (`compile(meta_guard=Guard(...))`).

    Args:
        check_fraction: the fraction of the meta data held out as check data.
        patience: revert as soon as the model has been worse than the
            starting loss's run at the end of this many epochs in a row
            (`None`: compare only at the end of training).
        seed: seed of the choice of check samples (array meta data).

    Example:

    >>> guard = tml.models.Guard(check_fraction=0.2)
    >>> guard.check_fraction, guard.patience
    (0.2, None)
    """

    def __init__(self, check_fraction=0.2, patience=None, seed=0):
        self.check_fraction = _fraction("check_fraction", check_fraction)
        self.patience = check_int("patience", patience, minimum=1, allow_none=True)
        self.seed = check_int("seed", seed, minimum=0)

    def __repr__(self):
        return (
            f"Guard(check_fraction={self.check_fraction}, patience={self.patience}, "
            f"seed={self.seed})"
        )

    def get_config(self):
        return {"check_fraction": self.check_fraction, "patience": self.patience, "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _fraction(name, value):
    return check_fraction(name, value)


def get(value):
    """`"auto"` or `True`: `Guard()`; `None` or `False`: no guard; a `Guard` or its config."""
    if isinstance(value, Guard):
        return value
    if value is None or value is False:
        return None
    if value is True or value == "auto":
        return Guard()
    if isinstance(value, dict):
        return Guard.from_config(value)
    invalid(
        "meta_guard",
        value,
        "'auto', True, False, None, a `tml.models.Guard` or its config",
    )


def split_check_data(meta_data, guard):
    """`(meta data, check data)`: holds `guard.check_fraction` of the meta data out.

    Arrays: a seeded random subset of the samples. A batched dataset of known
    length: its first batches. Returns `(meta_data, None)` when the meta data
    is too small to spare any (fewer than 10 samples, or fewer than 2 batches).
    """
    import tensorflow as tf

    if isinstance(meta_data, tf.data.Dataset):
        batches = int(meta_data.cardinality())
        if batches < 2:
            return meta_data, None
        held = max(1, int(round(batches * guard.check_fraction)))
        return meta_data.skip(held), meta_data.take(held)
    x, y = meta_data[0], meta_data[1]
    rest = tuple(meta_data[2:])
    n = len(keras.tree.flatten(y)[0])
    held = int(round(n * guard.check_fraction))
    if n < 10 or held < 1 or held >= n:
        return meta_data, None
    order = np.random.default_rng(guard.seed).permutation(n)
    check, keep = np.sort(order[:held]), np.sort(order[held:])

    def pick(value, index):
        return keras.tree.map_structure(lambda t: np.asarray(t)[index], value)

    meta = (pick(x, keep), pick(y, keep)) + tuple(pick(r, keep) for r in rest)
    checked = (pick(x, check), pick(y, check)) + tuple(pick(r, check) for r in rest)
    return meta, checked


def meta_samples_per_step(x, meta_data, meta_every, fit_arguments):
    """How many meta samples the guard's run trains on per training step.

    `n_meta * meta_every / steps_per_epoch`: each step the run adds its
    loss on the meta batch weighted by this over the step's batch size, so
    over an epoch each meta sample weighs as much as a training sample, as
    when the fixed loss trains on the training data and the meta data
    together. The steps per epoch come from `fit`'s `steps_per_epoch`, the
    size of array data and `batch_size`, or a dataset's known cardinality.
    `0.0` (the run trains on the training data alone) when the meta data is
    not arrays or the steps per epoch are unknown.

    >>> from tf_metaloss.models.guard import meta_samples_per_step
    >>> meta = (np.zeros((100, 2)), np.zeros(100))
    >>> meta_samples_per_step(np.zeros((900, 2)), meta, 1, {"batch_size": 90})
    10.0
    """
    n_meta = _array_length(meta_data[0]) if isinstance(meta_data, tuple) else None
    steps = _steps_per_epoch(x, fit_arguments)
    if not n_meta or not steps:
        return 0.0
    return n_meta * max(int(meta_every), 1) / steps


def _steps_per_epoch(x, fit_arguments):
    steps = fit_arguments.get("steps_per_epoch")
    if steps:
        return int(steps)
    n_train = _array_length(x)
    if n_train:
        n_train -= int(n_train * (fit_arguments.get("validation_split") or 0.0))
        batch_size = fit_arguments.get("batch_size") or 32
        return -(-max(n_train, 1) // batch_size)
    import tensorflow as tf

    if isinstance(x, tf.data.Dataset):
        cardinality = int(x.cardinality())
        return cardinality if cardinality > 0 else None
    return None


def _array_length(x):
    import tensorflow as tf

    leaves = keras.tree.flatten(x) if x is not None else []
    if not leaves or isinstance(leaves[0], tf.data.Dataset):
        return None
    if not hasattr(leaves[0], "shape") or not hasattr(leaves[0], "__len__"):
        return None
    return len(leaves[0])


class GuardCheck(keras.callbacks.Callback):
    """Compares the model with the starting loss's run on the check data.

    Logs `guard_objective` (the model's meta objective on the check data) and
    `guard_start_objective` (the starting loss's run's) each epoch, and
    `guard_reverted` (1 once the model has taken the run's weights).
    """

    def __init__(self, check_data, guard, batch_size=256):
        super().__init__()
        self.check_data = check_data
        self.guard = guard
        self.batch_size = batch_size
        self._worse = 0
        self._checked_epoch = None

    def _batches(self):
        import tensorflow as tf

        if isinstance(self.check_data, tf.data.Dataset):
            for batch in self.check_data:
                yield keras.utils.unpack_x_y_sample_weight(batch)
            return
        x, y = self.check_data[0], self.check_data[1]
        n = len(keras.tree.flatten(y)[0])
        for start in range(0, n, self.batch_size):
            part = slice(start, start + self.batch_size)

            def take(t, part=part):
                return t[part]

            yield keras.tree.map_structure(take, x), keras.tree.map_structure(take, y), None

    def objectives(self):
        """`(model's, starting run's)` mean meta objective on the check data."""
        model = self.model
        run = model.guard_reference
        totals, count = np.zeros(2), 0
        for x, y, sample_weight in self._batches():
            size = len(keras.tree.flatten(y)[0])
            for i, y_pred in enumerate(
                (model(x, training=False), run.predict_on(model, model._in_input_order(x)))
            ):
                value = model.meta_objective(y, y_pred, sample_weight=sample_weight)
                totals[i] += float(keras.ops.convert_to_numpy(value)) * size
            count += size
        return tuple(totals / max(count, 1))

    def _check(self, epoch, logs, final):
        model = self.model
        if model.guard_reverted:
            if logs is not None:
                logs["guard_reverted"] = 1.0
            return
        mine, start = self.objectives()
        self._checked_epoch = epoch
        worse = mine > start
        self._worse = self._worse + 1 if worse else 0
        patience = self.guard.patience
        if worse and (final or (patience is not None and self._worse >= patience)):
            model.revert_to_guard_reference()
        if logs is not None:
            logs["guard_objective"] = mine
            logs["guard_start_objective"] = start
            logs["guard_reverted"] = float(model.guard_reverted)

    def on_epoch_end(self, epoch, logs=None):
        final = epoch + 1 >= (self.params or {}).get("epochs", float("inf"))
        self._check(epoch, logs, final)

    def on_train_end(self, logs=None):
        # Stopped early (e.g. by EarlyStopping): the last epoch was not final.
        if not self.model.guard_reverted and self._checked_epoch is not None:
            epochs = (self.params or {}).get("epochs")
            if epochs is not None and self._checked_epoch + 1 < epochs:
                self._check(self._checked_epoch, None, final=True)
