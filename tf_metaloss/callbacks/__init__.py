"""Keras callbacks that show and control what the loss learns during `fit`.

- `MetaTensorBoard`: TensorBoard scalars, histograms and loss-curve images.
- `LossAuditLog`: one JSON line per meta-update (`tf-metaloss audit FILE`).
- `LossParameterEarlyStopping`: freezes phi when the meta objective stalls.
- `MetaBackupAndRestore`: backs up the whole training state every few steps
  and resumes an interrupted `fit` exactly, mid-epoch.
- `MetaProgbarLogger`: the progress bar `MetaModel.fit` shows (the loss, the
  metrics and the meta objective).

Under `MultiWorkerMirroredStrategy` only the chief writes files.

Example:

>>> x = np.random.default_rng(0).normal(size=(128, 8)).astype("float32")
>>> y = (x[:, 0] > 0).astype("int32")
>>> model = tml.MetaModel(keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)]))
>>> model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True))
>>> history = model.fit(x, y, meta_split=0.1, epochs=2, verbose=0, callbacks=[
...     tml.callbacks.MetaTensorBoard("runs/exp1"),
...     tml.callbacks.LossAuditLog("runs/exp1/audit.jsonl"),
...     tml.callbacks.LossParameterEarlyStopping(patience=50, window=10),
... ])
>>> records = tml.callbacks.read_audit_log("runs/exp1/audit.jsonl")
>>> tml.callbacks.summarize_audit_log(records)["updates"]  # 4 steps per epoch, each a meta step
8
"""

from tf_metaloss.callbacks.audit import LossAuditLog
from tf_metaloss.callbacks.audit_reader import AuditLogError
from tf_metaloss.callbacks.audit_reader import read_audit_log
from tf_metaloss.callbacks.audit_reader import summarize_audit_log
from tf_metaloss.callbacks.backup import MetaBackupAndRestore
from tf_metaloss.callbacks.early_stopping import LossParameterEarlyStopping
from tf_metaloss.callbacks.monitor import MetaStepMonitor
from tf_metaloss.callbacks.monitor import MetaStepRecord
from tf_metaloss.callbacks.tensorboard import MetaTensorBoard
from tf_metaloss.callbacks.tensorboard import learned_loss_curve
from tf_metaloss.models.progress import MetaProgbarLogger

__all__ = [
    "AuditLogError",
    "LossAuditLog",
    "LossParameterEarlyStopping",
    "MetaBackupAndRestore",
    "MetaProgbarLogger",
    "MetaStepMonitor",
    "MetaStepRecord",
    "MetaTensorBoard",
    "learned_loss_curve",
    "read_audit_log",
    "summarize_audit_log",
]
