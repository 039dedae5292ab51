"""`LossAuditLog`: one JSON line per meta-update of a `MetaModel`.

The values come from the step logs (see `tf_metaloss.callbacks.monitor`); phi
is read before and after each batch. Read a log back with
`tf_metaloss.callbacks.read_audit_log` and `summarize_audit_log`.
"""

import json
import os
import time

import keras
import numpy as np

from tf_metaloss import backend
from tf_metaloss.callbacks.monitor import MetaStepMonitor
from tf_metaloss.callbacks.monitor import bound_contacts
from tf_metaloss.callbacks.monitor import check_meta_model
from tf_metaloss.callbacks.monitor import element_labels
from tf_metaloss.callbacks.monitor import parameter_bounds
from tf_metaloss.callbacks.monitor import read_phi

__all__ = ["LossAuditLog"]


def _jsonable(phi):
    return {name: np.asarray(value).tolist() for name, value in phi.items()}


class LossAuditLog(keras.callbacks.Callback):
    """Writes one JSON line per meta-update of a `MetaModel` (an audit trail).

    Each `"meta_update"` line holds `step` (the optimizer step of the update),
    `epoch` and `batch` (0-based, as Keras callbacks count them), `phi_before`,
    `phi_after` (dicts of lists), `meta_objective`, `meta_grad_norm` (before
    clipping), `clipnorm`, `clipped` (norm > clipnorm), `skipped` (the step's
    update was skipped for non-finite values), `bound_hit` (elements driven
    onto a clip bound by this update), `at_bound` (elements on a bound after
    it) and `time`. A `"train_begin"` line (loss class, parameter shapes,
    labels, bounds, `meta_every`, starting phi) opens each `fit`, a
    `"train_end"` line closes it. The file is opened for appending (a later
    `fit` adds to it), and every line is flushed and fsync'd when written, so
    the trail survives a crash up to the last update.

    When `tml.callbacks.MetaBackupAndRestore` restored a backup of step `s`
    in this `fit`, the updates of steps `>= s` that the interrupted run wrote
    after its last `"train_begin"` (those the resumed run replays) are removed
    first (the file is rewritten atomically), and the new `"train_begin"`
    carries `"resumed": true`: the file then holds the `"meta_update"` records
    of an uninterrupted run, each once. Under `MultiWorkerMirroredStrategy`
    only the chief writes the file; the other workers write nothing.

    Summarise a log with `tf-metaloss audit FILE` or
    `tf_metaloss.callbacks.summarize_audit_log(read_audit_log(FILE))`.

    Args:
        path: the `.jsonl` file (parent directories are created).

    Example:

    >>> x = np.random.default_rng(0).normal(size=(128, 8)).astype("float32")
    >>> y = (x[:, 0] > 0).astype("int32")
    >>> model = tml.MetaModel(keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)]))
    >>> model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True))
    >>> history = model.fit(x, y, meta_split=0.1, epochs=1, verbose=0,
    ...                     callbacks=[tml.callbacks.LossAuditLog("runs/audit.jsonl")])
    >>> records = tml.callbacks.read_audit_log("runs/audit.jsonl")
    >>> [r["event"] for r in records]  # 4 steps, each a meta step
    ['train_begin', 'meta_update', 'meta_update', 'meta_update', 'meta_update', 'train_end']
    >>> records[1]["step"], records[1]["phi_before"]
    (0, {'correction': 0.0})
    """

    def __init__(self, path):
        super().__init__()
        if not isinstance(path, (str, os.PathLike)) or not str(path):
            raise ValueError(
                f"Invalid value for argument `path`. Expected a file path. Received: path={path!r}"
            )
        self.path = os.fspath(path)
        self._file = None
        self._monitor = MetaStepMonitor()
        self._epoch = 0
        self._batch = 0
        self._bounds = {}
        self._labels = {}

    def _write(self, record):
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def on_train_begin(self, logs=None):
        check_meta_model(self.model, "LossAuditLog")
        if self._file is not None:  # A `fit` that raised did not close it.
            self._file.close()
            self._file = None
        if not backend.is_chief(getattr(self.model, "distribute_strategy", None)):
            return  # Only the chief writes (the other workers' values are the same).
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        restored_step = getattr(self.model, "_restored_step", None)
        if restored_step is not None and os.path.exists(self.path):
            _drop_replayed_updates(self.path, restored_step)
        self._file = open(self.path, "a", encoding="utf-8")
        loss = self.model.loss
        self._bounds = parameter_bounds(loss)
        self._labels = element_labels(loss)
        phi = read_phi(loss)
        self._write(
            {
                "event": "train_begin",
                "time": time.time(),
                "step": int(self.model.optimizer.iterations.numpy()),
                "loss": type(loss).__name__,
                "parameters": {
                    name: {
                        "shape": list(value.shape),
                        "labels": self._labels[name],
                        "bounds": list(self._bounds[name]),
                    }
                    for name, value in phi.items()
                },
                "meta_every": int(self.model.meta_every),
                "clipnorm": self.model.meta_global_clipnorm,
                "phi": _jsonable(phi),
                **({"resumed": True} if restored_step is not None else {}),
            }
        )

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = int(epoch)
        self._monitor.new_epoch()

    def on_train_batch_begin(self, batch, logs=None):
        self._batch = int(batch)
        if self._file is not None:
            self._monitor.begin(self.model)

    def on_train_batch_end(self, batch, logs=None):
        record = self._monitor.end(self.model, logs)
        if record is None or record.meta_updates == 0 or self._file is None:
            return
        clipnorm = self.model.meta_global_clipnorm
        hit, at_bound = bound_contacts(
            record.phi_before, record.phi_after, self._bounds, self._labels
        )
        norm = record.meta_grad_norm
        entry = {
            "event": "meta_update",
            "step": record.step,
            "epoch": self._epoch,
            "batch": self._batch,
            "phi_before": _jsonable(record.phi_before),
            "phi_after": _jsonable(record.phi_after),
            "meta_objective": record.meta_objective,
            "meta_grad_norm": norm,
            "clipnorm": clipnorm,
            "clipped": record.clipped,
            "skipped": record.skipped > 0,
            "bound_hit": hit,
            "at_bound": at_bound,
            "time": time.time(),
        }
        if record.meta_updates > 1:
            entry["meta_updates"] = record.meta_updates
        self._write(entry)

    def on_train_end(self, logs=None):
        if self._file is None:
            return
        self._write(
            {
                "event": "train_end",
                "time": time.time(),
                "step": int(self.model.optimizer.iterations.numpy()),
            }
        )
        self._file.close()
        self._file = None


def _drop_replayed_updates(path, step):
    """Rewrites `path` without the records a resume from `step` replays.

    Those are the `"meta_update"` records with `step >= step` (and any
    `"train_end"`) after the last `"train_begin"` at a step `<= step`, and a
    last line cut short by the crash. Earlier runs in the same file are kept.
    """
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            records.append(None)  # A line cut short by the crash.
    start = 0
    for i, record in enumerate(records):
        if record and record.get("event") == "train_begin" and record.get("step", 0) <= step:
            start = i
    kept = []
    for i, (line, record) in enumerate(zip(lines, records)):
        if record is None:
            continue
        replayed = i > start and (
            record.get("event") == "train_end"
            or (record.get("event") == "meta_update" and record.get("step", -1) >= step)
        )
        if not replayed:
            kept.append(line if line.endswith("\n") else line + "\n")
    if len(kept) == len(lines):
        return
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        f.writelines(kept)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
