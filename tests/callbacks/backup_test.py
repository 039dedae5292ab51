"""`MetaBackupAndRestore`: an interrupted `fit` resumes exactly, mid-epoch.

The crash here is an exception in one process; tests/distributed has the
`kill -9` of a real process, on one and on two workers. Like the rest of the
suite, CI also runs it under KERAS_BACKEND=jax.
"""

import json
import os

import keras
import numpy as np
import pytest

import tf_metaloss as tml
from tf_metaloss import backend
from tf_metaloss.callbacks import audit


class Crash(Exception):
    pass


class CrashAt(keras.callbacks.Callback):
    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_begin(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.step:
            raise Crash


class CrashAtEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise Crash


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 1)
    return x, y, x[:40].copy(), y[:40].copy()


def _model(dropout=True, **compile_kwargs):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, activation="tanh")(inputs)
    if dropout:
        hidden = keras.layers.Dropout(0.2)(hidden)
    model = tml.MetaModel(inputs, keras.layers.Dense(3)(hidden))
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        loss=tml.MetaLoss(from_logits=True),
        meta_optimizer=keras.optimizers.Adam(0.05),
        meta_every=2,
        meta_seed=0,
        **compile_kwargs,
    )
    return model


def _fit(model, data, callbacks, epochs=3):
    x, y, x_meta, y_meta = _data()
    if data == "resumable":
        inputs = {"x": tml.meta.data.resumable_dataset(x, y, batch_size=16, seed=0)}
        inputs["steps_per_epoch"] = 6
    else:  # the same batches every epoch: a new iterator each epoch
        inputs = {"x": x, "y": y, "batch_size": 16}
    return model.fit(
        **inputs,
        epochs=epochs,
        shuffle=False,
        meta_data=(x_meta, y_meta),
        meta_batch_size=8,
        verbose=0,
        callbacks=callbacks,
    )


def _state(model):
    variables = tml.callbacks.backup.training_state_variables(model)
    return [keras.ops.convert_to_numpy(v) for v in variables]


def _records(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _updates(path):
    records = _records(path)
    return [
        {k: v for k, v in r.items() if k != "time"} for r in records if r["event"] == "meta_update"
    ]


@pytest.mark.parametrize(
    "data, steps_per_execution, save_freq, crash_at, restored",
    [
        # Backups at steps 3, 6 (epoch end), 9; crash before 11: replays 9 and 10.
        ("resumable", 1, 3, 11, 9),
        # Calls of 2 steps; backups at 4, 8 (2 steps into epoch 1); crash before 10.
        ("resumable", 2, 4, 10, 8),
        # Arrays without shuffling; backups at 4, 8, crash before 11.
        ("arrays", 1, 4, 11, 8),
    ],
)
def test_interrupted_fit_resumes_exactly_mid_epoch(
    tmp_path, data, steps_per_execution, save_freq, crash_at, restored
):
    reference = _model(steps_per_execution=steps_per_execution)
    _fit(reference, data, [tml.callbacks.LossAuditLog(tmp_path / "reference.jsonl")])

    backup = tml.callbacks.MetaBackupAndRestore(tmp_path / "backup", save_freq=save_freq)
    log = tml.callbacks.LossAuditLog(tmp_path / "audit.jsonl")
    with pytest.raises(Crash):
        crashing = _model(steps_per_execution=steps_per_execution)
        _fit(crashing, data, [log, backup, CrashAt(crash_at)])
    assert max(u["step"] for u in _updates(tmp_path / "audit.jsonl")) >= restored

    resumed = _model(steps_per_execution=steps_per_execution)
    history = _fit(resumed, data, [log, backup])
    assert backup.restored["step"] == restored
    # Weights, dropout seed state, phi, both optimizers' variables: bit for bit.
    for a, b in zip(_state(resumed), _state(reference), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(resumed.meta_optimizer.iterations.numpy()) == 9  # meta batches used
    assert len(history.history["loss"]) == 3 - restored // 6
    assert _updates(tmp_path / "audit.jsonl") == _updates(tmp_path / "reference.jsonl")
    events = _records(tmp_path / "audit.jsonl")
    assert [e["event"] for e in events].count("train_begin") == 2
    assert events[-1]["event"] == "train_end" and events[-1]["step"] == 18
    assert not (tmp_path / "backup").exists()


def test_keras_backup_and_restore_resumes_meta_batches_at_epoch_boundaries(tmp_path):
    # Keras's callback backs up weights, phi and both optimizers after each
    # epoch; the meta iterator, built after the restore, goes on with the
    # next meta batch. Exact for a model without dropout (Keras does not back
    # up seed states) on data that is the same every epoch.
    reference = _model(dropout=False)
    _fit(reference, "arrays", [])
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "keras_backup"))
    with pytest.raises(Crash):
        _fit(_model(dropout=False), "arrays", [CrashAtEpoch(2), backup])
    resumed = _model(dropout=False)
    history = _fit(resumed, "arrays", [backup])
    assert len(history.history["loss"]) == 1
    for a, b in zip(_state(resumed), _state(reference), strict=True):
        np.testing.assert_array_equal(a, b)


def test_backups_are_complete_and_only_the_latest_is_kept(tmp_path):
    # Every 3 steps; the last (step 6) ends the epoch.
    backup = tml.callbacks.MetaBackupAndRestore(tmp_path, save_freq=3, delete_checkpoint=False)
    model = _model()
    _fit(model, "resumable", [backup], epochs=1)
    assert sorted(os.listdir(tmp_path)) == ["latest.json", "step-000000006"]
    with open(tmp_path / "step-000000006" / "metadata.json") as f:
        metadata = json.load(f)
    assert metadata["step"] == 6 and metadata["epoch"] == 1 and metadata["epoch_steps"] == 0
    assert metadata["data_batches"] == 6  # the iterator goes on into epoch 2
    assert len(metadata["variables"]) == len(_state(model))

    # A finished run's backup starts a later `fit` where it ended.
    again = _model()
    history = _fit(again, "resumable", [backup], epochs=2)
    assert len(history.history["loss"]) == 1
    assert int(again.optimizer.iterations.numpy()) == 12


def test_a_backup_of_another_model_is_refused(tmp_path):
    backup = tml.callbacks.MetaBackupAndRestore(
        tmp_path, save_freq="epoch", delete_checkpoint=False
    )
    _fit(_model(), "arrays", [backup], epochs=1)
    keras.utils.set_random_seed(0)
    other = tml.MetaModel(keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)]))
    other.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True))
    with pytest.raises(ValueError, match="does not match this model.*another `backup_dir`"):
        _fit(other, "arrays", [backup], epochs=1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"backup_dir": ""}, "argument `backup_dir`. Expected a directory path"),
        ({"backup_dir": "b", "save_freq": 0}, "argument `save_freq`. Expected 'epoch' or a"),
        ({"backup_dir": "b", "save_freq": "batch"}, "Received: save_freq='batch'"),
    ],
)
def test_argument_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tml.callbacks.MetaBackupAndRestore(**kwargs)


def test_only_the_chief_writes_files(tmp_path, monkeypatch):
    monkeypatch.setattr(backend, "is_chief", lambda strategy=None: False)
    callbacks = [
        tml.callbacks.MetaBackupAndRestore(tmp_path / "backup", save_freq=1),
        tml.callbacks.LossAuditLog(tmp_path / "audit.jsonl"),
        tml.callbacks.MetaTensorBoard(tmp_path / "tb", image_freq=0),
    ]
    model = _model()
    _fit(model, "resumable", callbacks, epochs=1)
    assert int(model.meta_optimizer.iterations.numpy()) == 3
    assert os.listdir(tmp_path) == []


def _line(event, step, **extra):
    return json.dumps({"event": event, "step": step, **extra}) + "\n"


def test_audit_log_drops_what_a_resume_replays(tmp_path):
    path = tmp_path / "audit.jsonl"
    earlier_run = [_line("train_begin", 0)] + [_line("meta_update", s) for s in (0, 1, 2)]
    earlier_run += [_line("train_end", 3)]
    crashed = [_line("train_begin", 0)] + [_line("meta_update", s) for s in range(6)]
    path.write_text("".join(earlier_run + crashed) + '{"event": "meta_up')  # cut by the crash
    audit._drop_replayed_updates(str(path), 4)
    assert path.read_text() == "".join(earlier_run + crashed[:5])
    # A second crash after the resume: only the latest run is cut.
    resumed = [_line("train_begin", 4, resumed=True), _line("meta_update", 4)]
    resumed += [_line("meta_update", 5)]
    path.write_text("".join(earlier_run + crashed[:5] + resumed))
    audit._drop_replayed_updates(str(path), 5)
    assert path.read_text() == "".join(earlier_run + crashed[:5] + resumed[:2])
