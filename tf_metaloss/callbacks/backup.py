"""`MetaBackupAndRestore`: back up a `MetaModel`'s training state and resume exactly."""

import json
import os
import shutil

import keras
import numpy as np

from tf_metaloss import backend
from tf_metaloss.callbacks.monitor import check_meta_model
from tf_metaloss.validation import invalid

__all__ = ["MetaBackupAndRestore"]

FORMAT = 1
LATEST = "latest.json"


def training_state_variables(model):
    """Every variable of a `MetaModel`'s training state, in a fixed order.

    The model's variables (weights, BatchNormalization statistics and the
    `SeedGenerator` states of dropout layers), the loss parameters phi and
    their start values, and both optimizers' variables (step counters, slots).
    The metrics are not included: a resumed epoch's logged means cover the
    steps run after the restore.
    """
    variables, seen = [], set()
    groups = (
        model.variables,
        model.loss.variables,
        model.optimizer.variables,
        model.meta_optimizer.variables,
        # The runs trained beside the model (`MetaModel.reference_runs`).
        *[run.variables + list(run.optimizer.variables) for run in model.reference_runs],
        # A stateful estimator's state (`MetaModel.estimator_state`).
        [] if model.estimator_state is None else model.estimator_state.variables,
    )
    for group in groups:
        for variable in group:
            if id(variable) not in seen:
                seen.add(id(variable))
                variables.append(variable)
    return variables


def _fsync_write(path, write):
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


class MetaBackupAndRestore(keras.callbacks.Callback):
    """Backs up a `MetaModel`'s training state every few steps; resumes `fit` exactly.

    Like `keras.callbacks.BackupAndRestore`, but a `fit` interrupted at any
    point (an exception, `kill -9`, a preempted machine) and started again
    with the same script goes on from the last backup *mid-epoch*, and ends
    with the weights, phi, both optimizers' states, the meta-batch position and
    the `LossAuditLog` records of an uninterrupted run. A backup holds:

    - every variable of the training state: the weights (with
      BatchNormalization statistics), the dropout layers' `SeedGenerator`
      states, phi and its start value, both optimizers' variables;
    - the position: optimizer step, epoch, steps done in that epoch, batches
      the training data iterator had produced, and `meta_every` (which
      `LossParameterEarlyStopping` may have set to 0).

    On restore (`on_train_begin`; `MetaModel.fit` runs this callback before the
    others) the variables are assigned, `fit` starts at the backed-up epoch,
    the steps of that epoch that already ran train nothing while the data
    iterator discards the batches it had produced, and the meta iterator is
    built to skip the meta batches already used. The result is exact when the
    training data yields the same batches in every process: a seeded, endless
    `tf.data` pipeline with `steps_per_epoch` (e.g.
    `tml.meta.data.resumable_dataset`), or data that is the same every epoch
    (`shuffle=False`). Keras reshuffles array inputs with an unseeded shuffle,
    which no restore can replay. The epoch's logged means (`loss`, ...) after a
    mid-epoch restore cover the steps run since.

    Writes are atomic (a complete backup directory is renamed into place and
    `latest.json` replaced), so a process killed while writing leaves the
    previous backup. Under `MultiWorkerMirroredStrategy` only the chief
    writes, and every worker restores from `backup_dir`, which must be on a
    file system they share (the paths are those of the same directory).

    Args:
        backup_dir: the directory of the backups (used by this run only).
        save_freq: `"epoch"` (after every epoch) or a positive integer: a
            backup every `save_freq` training steps.
        delete_checkpoint: remove `backup_dir` when `fit` ends normally.

    Example:

    >>> x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
    >>> y = (x[:, 0] > 0).astype("int32")
    >>> def run(callbacks):
    ...     keras.utils.set_random_seed(0)
    ...     model = tml.MetaModel(keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)]))
    ...     model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True), meta_seed=0)
    ...     model.fit(tml.meta.data.resumable_dataset(x, y, batch_size=16, seed=0),
    ...               steps_per_epoch=4, epochs=3, shuffle=False, meta_data=(x, y),
    ...               verbose=0, callbacks=callbacks)
    ...     return model
    >>> class Crash(keras.callbacks.Callback):
    ...     def on_train_batch_begin(self, batch, logs=None):
    ...         if int(self.model.optimizer.iterations.numpy()) == 7:
    ...             raise KeyboardInterrupt  # or kill -9
    >>> backup = tml.callbacks.MetaBackupAndRestore("backup", save_freq=3)
    >>> try:
    ...     run([backup, Crash()])
    ... except KeyboardInterrupt:
    ...     pass
    >>> resumed = run([backup])  # goes on from the backup of step 6 (epoch 1, 2 steps in)
    >>> reference = run([])
    >>> all(np.array_equal(a, b) for a, b in zip(resumed.get_weights(), reference.get_weights()))
    True
    >>> np.array_equal(resumed.loss.trainable_variables[0], reference.loss.trainable_variables[0])
    True
    """

    restores_training_state = True

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint=True):
        super().__init__()
        if not isinstance(backup_dir, (str, os.PathLike)) or not str(backup_dir):
            invalid("backup_dir", backup_dir, "a directory path")
        if save_freq != "epoch" and (
            not isinstance(save_freq, int) or isinstance(save_freq, bool) or save_freq < 1
        ):
            invalid("save_freq", save_freq, "'epoch' or a positive integer (training steps)")
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq
        self.delete_checkpoint = bool(delete_checkpoint)
        self.restored = None
        self._chief = True
        self._epoch = 0
        self._epoch_steps = 0
        self._steps_since_save = 0
        self._skip_until = None

    # -- fit hooks -----------------------------------------------------------------
    def on_train_begin(self, logs=None):
        check_meta_model(self.model, "MetaBackupAndRestore")
        self._chief = backend.is_chief(getattr(self.model, "distribute_strategy", None))
        self._steps_since_save = 0
        self._skip_until = None
        self.restored = self._restore()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = int(epoch)
        self._epoch_steps = 0
        if self.restored is not None and self.restored["epoch"] == epoch:
            self._epoch_steps = self._skip_until = self.restored["epoch_steps"]

    def on_train_batch_end(self, batch, logs=None):
        if self._skip_until is not None:
            if batch < self._skip_until:  # a step that ran before the backup
                return
            self._skip_until = None
        self._steps_since_save += batch + 1 - self._epoch_steps
        self._epoch_steps = batch + 1
        if self.save_freq != "epoch" and self._steps_since_save >= self.save_freq:
            steps = self.params.get("steps")
            if steps and self._epoch_steps >= steps:
                return  # The epoch's last step: `on_epoch_end` backs it up.
            self._save(self._epoch, self._epoch_steps, epoch_end=False)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch" or self._steps_since_save >= self.save_freq:
            self._save(epoch + 1, 0, epoch_end=True)

    def on_train_end(self, logs=None):
        self.model._initial_epoch = None
        if self.delete_checkpoint and self._chief and os.path.isdir(self.backup_dir):
            shutil.rmtree(self.backup_dir, ignore_errors=True)

    # -- backup ----------------------------------------------------------------------
    def _save(self, epoch, epoch_steps, epoch_end):
        self._steps_since_save = 0
        if not self._chief:
            return
        model = self.model
        variables = training_state_variables(model)
        step = int(model.optimizer.iterations.numpy())
        metadata = {
            "format": FORMAT,
            "step": step,
            "epoch": int(epoch),
            "epoch_steps": int(epoch_steps),
            "data_batches": int(model._data_position(epoch_end=epoch_end)),
            "meta_every": int(model.meta_every),
            "variables": [v.path for v in variables],
        }
        arrays = {f"v{i:05d}": keras.ops.convert_to_numpy(v) for i, v in enumerate(variables)}
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"step-{step:09d}"
        staging = os.path.join(self.backup_dir, f".{name}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging)
        _fsync_write(os.path.join(staging, "state.npz"), lambda f: np.savez(f, **arrays))
        _fsync_write(
            os.path.join(staging, "metadata.json"),
            lambda f: f.write(json.dumps(metadata).encode("utf-8")),
        )
        target = os.path.join(self.backup_dir, name)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
        pointer = os.path.join(self.backup_dir, LATEST + ".tmp")
        _fsync_write(pointer, lambda f: f.write(json.dumps({"backup": name}).encode("utf-8")))
        os.replace(pointer, os.path.join(self.backup_dir, LATEST))
        for entry in os.listdir(self.backup_dir):
            if entry.startswith("step-") and entry != name:
                shutil.rmtree(os.path.join(self.backup_dir, entry), ignore_errors=True)

    # -- restore ---------------------------------------------------------------------
    def _restore(self):
        pointer = os.path.join(self.backup_dir, LATEST)
        if not os.path.exists(pointer):
            return None
        with open(pointer, encoding="utf-8") as f:
            directory = os.path.join(self.backup_dir, json.load(f)["backup"])
        with open(os.path.join(directory, "metadata.json"), encoding="utf-8") as f:
            metadata = json.load(f)
        model = self.model
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        variables = training_state_variables(model)
        saved = metadata["variables"]
        if metadata.get("format") != FORMAT or len(saved) != len(variables):
            raise ValueError(
                f"The backup in {self.backup_dir} does not match this model: it holds "
                f"{len(saved)} variables, the model's training state has "
                f"{len(variables)}. A backup directory belongs to one training run; "
                "remove it or pass another `backup_dir`."
            )
        # Variable names depend on what else the process built (`dense_1`, ...):
        # the order and the shapes identify the state.
        with np.load(os.path.join(directory, "state.npz")) as arrays:
            values = [arrays[f"v{i:05d}"] for i in range(len(variables))]
        for variable, value, path in zip(variables, values, saved):
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(
                    f"The backup in {self.backup_dir} does not match this model: "
                    f"{variable.path} has shape {tuple(variable.shape)}, the backup's "
                    f"{path} {tuple(value.shape)}. Remove it or pass another `backup_dir`."
                )
        for variable, value in zip(variables, values):
            variable.assign(value)
        model.meta_every = metadata["meta_every"]
        model._initial_epoch = metadata["epoch"]
        model._set_resume_point(metadata["epoch_steps"], metadata["data_batches"])
        model._restored_step = metadata["step"]
        return metadata
