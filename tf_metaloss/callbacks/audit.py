"""`LossAuditLog`: one JSON line per meta-update, and the tools that read it.

What a meta-update did is recovered from outside the model, between the
`on_train_batch_begin` and `on_train_batch_end` hooks:

- the loss parameters phi are read before and after the step;
- the step's meta loss and meta-gradient norm are the changes of the model's
  `meta_loss_tracker` / `meta_grad_norm_tracker` (running means: the change of
  `total` divided by the change of `count`); a meta step is recognised by its
  `meta_grad_norm_tracker.count` advancing, which the model does on every meta
  step, skipped or not (`optimizer.iterations` advances on skipped steps too, so
  it cannot tell);
- skipped updates are the change of `skipped_updates_tracker`;
- the meta-gradient norm is the norm *before* clipping; the step was clipped
  when it exceeds `model.meta_clipnorm`.

`MetaStepMonitor` does this bookkeeping; `MetaTensorBoard` and
`LossParameterEarlyStopping` reuse it.

Limits of reading running means from outside: after a step with a non-finite
meta loss or norm the trackers' totals stay NaN until Keras resets them at the
next epoch, so the later meta-updates of that epoch are logged without a meta
loss and norm (`null`); the totals are float32, so in very long epochs a
step's value carries a rounding error of about `1e-7 * epoch total`. With
`steps_per_execution > 1` one record covers several steps (values averaged).
"""

import dataclasses
import json
import math
import os
import time

import keras
import numpy as np

from tf_metaloss.losses.base import ClipConstraint

__all__ = [
    "AuditLogError",
    "LossAuditLog",
    "MetaStepMonitor",
    "MetaStepRecord",
    "read_audit_log",
    "summarize_audit_log",
]

# Parameters with at most this many elements are reported element by element.
SMALL_PARAMETER = 8


# -- recovering a step from the model's trackers --------------------------------
@dataclasses.dataclass
class MetaStepRecord:
    """What happened between one `on_train_batch_begin` and its `..._end`.

    Attributes:
        step: the optimizer step index at the batch's start (the step number of
            the meta-update when `steps_per_execution=1`).
        steps: optimizer steps the batch covered (`steps_per_execution`).
        meta_updates: meta steps among them (0 on a plain step).
        meta_loss: the meta objective of these meta steps (mean if several),
            `None` when no meta step ran or the value is not finite.
        meta_grad_norm: the meta-gradient norm before clipping (mean if
            several), `None` likewise.
        skipped: steps whose update was skipped (non-finite values).
        phi_before, phi_after: dicts `name -> np.ndarray` of phi.
    """

    step: int
    steps: int
    meta_updates: int
    meta_loss: object
    meta_grad_norm: object
    skipped: int
    phi_before: dict
    phi_after: dict


def _phi(loss):
    return {
        name: np.array(variable.numpy(), dtype=np.float64)
        for name, variable in zip(loss.parameter_names, loss.trainable_variables)
    }


def _finite_or_none(value):
    value = float(value)
    return value if math.isfinite(value) else None


def check_meta_model(model, who):
    """Raises a clear error unless `model` is a compiled `MetaModel`."""
    missing = [
        name
        for name in ("meta_loss_tracker", "meta_grad_norm_tracker", "skipped_updates_tracker")
        if not hasattr(model, name)
    ]
    if missing or not hasattr(getattr(model, "loss", None), "parameter_names"):
        raise ValueError(
            f"`{who}` needs a compiled `tf_metaloss.MetaModel` (with a learnable "
            f"loss and its meta trackers). Received: model of type "
            f"{type(model).__name__}. Compile a `MetaModel` before calling fit."
        )


class MetaStepMonitor:
    """Recovers each train step's meta-update from a `MetaModel`'s trackers.

    Call `begin(model)` in `on_train_batch_begin` and `end(model)` in
    `on_train_batch_end`; `end` returns a `MetaStepRecord`.
    """

    def __init__(self):
        self._start = None

    @staticmethod
    def _counters(model):
        return (
            int(model.optimizer.iterations.numpy()),
            float(model.meta_loss_tracker.total.numpy()),
            float(model.meta_loss_tracker.count.numpy()),
            float(model.meta_grad_norm_tracker.total.numpy()),
            float(model.meta_grad_norm_tracker.count.numpy()),
            float(model.skipped_updates_tracker.total.numpy()),
        )

    def begin(self, model):
        self._start = (self._counters(model), _phi(model.loss))

    def end(self, model):
        if self._start is None:
            return None
        (it0, lt0, lc0, nt0, nc0, sk0), phi_before = self._start
        self._start = None
        it1, lt1, lc1, nt1, nc1, sk1 = self._counters(model)
        updates = int(round(nc1 - nc0))
        meta_loss = meta_grad_norm = None
        if updates > 0:
            meta_loss = _finite_or_none((lt1 - lt0) / max(lc1 - lc0, 1.0))
            meta_grad_norm = _finite_or_none((nt1 - nt0) / (nc1 - nc0))
        return MetaStepRecord(
            step=it0,
            steps=it1 - it0,
            meta_updates=updates,
            meta_loss=meta_loss,
            meta_grad_norm=meta_grad_norm,
            skipped=int(round(sk1 - sk0)) if math.isfinite(sk1 - sk0) else 0,
            phi_before=phi_before,
            phi_after=_phi(model.loss),
        )


def parameter_bounds(loss):
    """Dict `name -> (low, high)` of each parameter's clip bounds (None: open)."""
    bounds = {}
    for name, variable in zip(loss.parameter_names, loss.trainable_variables):
        constraint = getattr(variable, "constraint", None)
        if isinstance(constraint, ClipConstraint):
            bounds[name] = (constraint.low, constraint.high)
        else:
            bounds[name] = (None, None)
    return bounds


def element_labels(loss):
    """Dict `name -> list of element labels` for the small parameters."""
    labels = {}
    for name, variable in zip(loss.parameter_names, loss.trainable_variables):
        size = int(np.prod(variable.shape))
        labels[name] = loss.element_labels(name, size) if size <= SMALL_PARAMETER else None
    return labels


def element_label(labels, name, index):
    """`"name/label"` for element `index` of parameter `name` (`"name[i]"`)."""
    if labels and labels.get(name):
        return f"{name}/{labels[name][index]}"
    return f"{name}[{index}]"


def bound_contacts(phi_before, phi_after, bounds, labels=None):
    """Returns `(hit, at_bound)`: lists of element labels at a clip bound.

    `at_bound`: elements lying on a bound after the update. `hit`: those of
    them that were not on that bound before it (the update drove them there).
    """
    hit, at_bound = [], []
    for name, after in phi_after.items():
        low, high = bounds.get(name, (None, None))
        before = phi_before[name].reshape(-1)
        for i, value in enumerate(after.reshape(-1)):
            for bound in (low, high):
                if bound is None:
                    continue
                bound = np.float32(bound)
                if np.float32(value) == bound:
                    at_bound.append(element_label(labels, name, i))
                    if np.float32(before[i]) != bound:
                        hit.append(element_label(labels, name, i))
    return hit, at_bound


def _jsonable(phi):
    return {name: np.asarray(value).tolist() for name, value in phi.items()}


# -- the callback -----------------------------------------------------------------
class LossAuditLog(keras.callbacks.Callback):
    """Writes one JSON line per meta-update of a `MetaModel` (an audit trail).

    Each `"meta_update"` line holds `step` (the optimizer step of the update),
    `epoch` and `batch` (0-based, as Keras callbacks count them), `phi_before`,
    `phi_after` (dicts of lists), `meta_loss`, `meta_grad_norm` (before
    clipping), `clipnorm`, `clipped` (norm > clipnorm), `skipped` (the step's
    update was skipped for non-finite values), `bound_hit` (elements driven
    onto a clip bound by this update), `at_bound` (elements on a bound after
    it) and `time`. A `"train_begin"` line (loss class, parameter shapes,
    labels, bounds, `meta_every`, starting phi) opens each `fit`, a
    `"train_end"` line closes it. The file is opened for appending (resuming
    training never truncates it), and every line is flushed and fsync'd when
    written, so the trail survives a crash up to the last update.

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
    (0, {'blend_weights': [1.0, 0.0, 0.0, 0.0, 0.0]})
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
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")
        loss = self.model.loss
        self._bounds = parameter_bounds(loss)
        self._labels = element_labels(loss)
        phi = _phi(loss)
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
                "clipnorm": getattr(self.model, "meta_clipnorm", None),
                "phi": _jsonable(phi),
            }
        )

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = int(epoch)

    def on_train_batch_begin(self, batch, logs=None):
        self._batch = int(batch)
        self._monitor.begin(self.model)

    def on_train_batch_end(self, batch, logs=None):
        record = self._monitor.end(self.model)
        if record is None or record.meta_updates == 0 or self._file is None:
            return
        clipnorm = getattr(self.model, "meta_clipnorm", None)
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
            "meta_loss": record.meta_loss,
            "meta_grad_norm": norm,
            "clipnorm": clipnorm,
            "clipped": bool(clipnorm is not None and norm is not None and norm > clipnorm),
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


# -- reading and summarising ------------------------------------------------------
class AuditLogError(ValueError):
    """A missing, unreadable or corrupt audit log (the message says where)."""


_REQUIRED = ("step", "epoch", "phi_before", "phi_after")


def read_audit_log(path):
    """Reads an audit log; returns its records (dicts), in file order.

    Blank lines are ignored. Raises `AuditLogError` naming the file and line
    number of the first line that is not a JSON object with an `"event"` field,
    or of a `"meta_update"` line missing one of `step`, `epoch`, `phi_before`,
    `phi_after`.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise AuditLogError(f"Audit log not found: {path}")
    if os.path.isdir(path):
        raise AuditLogError(f"Expected an audit log file, got a directory: {path}")
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise AuditLogError(
                    f"{path}, line {number}: not valid JSON ({error.msg}). "
                    "The file may be truncated or not an audit log."
                ) from None
            if not isinstance(record, dict) or "event" not in record:
                raise AuditLogError(
                    f"{path}, line {number}: expected a JSON object with an "
                    f"'event' field. Received: {line.strip()[:80]}"
                )
            if record["event"] == "meta_update":
                missing = [k for k in _REQUIRED if k not in record]
                if missing:
                    raise AuditLogError(
                        f"{path}, line {number}: a 'meta_update' record lacks {missing}."
                    )
                record["_line"] = number
            records.append(record)
    return records


def _flat(phi):
    return np.concatenate([np.asarray(v, dtype=np.float64).reshape(-1) for v in phi.values()])


def summarize_audit_log(records, top=3):
    """Summarises audit records (from `read_audit_log`) as a JSON-able dict.

    Keys: `sessions` (fits started), `updates`, `steps` / `epochs`
    (`[first, last]`), `meta_loss` (first, last, min and its step),
    `meta_grad_norm` (mean, max and its step), `movement` (`l2`: the L2
    distance between phi before the first and after the last update;
    `path_length`: the sum of every update's L2 move; `parameters`: per
    parameter the L2 move and, for small ones, every element first -> last),
    `largest_moves` (the `top` updates that moved phi most: step, epoch, l2),
    `clipnorm` (of the last update), `skipped` / `clipped` / `bound_hits`
    (steps), `at_bound` (after the last update) and `warnings`
    (human-readable strings).
    """
    updates = [r for r in records if r.get("event") == "meta_update"]
    begins = [r for r in records if r.get("event") == "train_begin"]
    labels = {}
    for begin in begins:
        for name, info in begin.get("parameters", {}).items():
            if info.get("labels"):
                labels[name] = info["labels"]
    summary = {
        "sessions": len(begins),
        "updates": len(updates),
        "warnings": [],
    }
    if not updates:
        summary["warnings"].append("No meta-updates recorded.")
        return summary

    summary["steps"] = [updates[0]["step"], updates[-1]["step"]]
    summary["epochs"] = [updates[0]["epoch"], updates[-1]["epoch"]]

    losses = [(r["step"], r.get("meta_loss")) for r in updates]
    finite = [(s, v) for s, v in losses if v is not None]
    if finite:
        best = min(finite, key=lambda item: item[1])
        summary["meta_loss"] = {
            "first": finite[0][1],
            "last": finite[-1][1],
            "min": best[1],
            "min_step": best[0],
        }
    norms = [(r["step"], r.get("meta_grad_norm")) for r in updates]
    norms = [(s, v) for s, v in norms if v is not None]
    if norms:
        peak = max(norms, key=lambda item: item[1])
        summary["meta_grad_norm"] = {
            "mean": float(np.mean([v for _, v in norms])),
            "max": peak[1],
            "max_step": peak[0],
        }

    first, last = updates[0]["phi_before"], updates[-1]["phi_after"]
    parameters = {}
    for name in first:
        if name not in last:
            continue
        a = np.asarray(first[name], dtype=np.float64).reshape(-1)
        b = np.asarray(last[name], dtype=np.float64).reshape(-1)
        if a.shape != b.shape:
            continue
        entry = {"l2": float(np.linalg.norm(b - a)), "size": int(a.size)}
        if a.size <= SMALL_PARAMETER:
            entry["elements"] = [
                {"label": element_label(labels, name, i), "first": float(a[i]), "last": float(b[i])}
                for i in range(a.size)
            ]
        else:
            entry["norm_first"] = float(np.linalg.norm(a))
            entry["norm_last"] = float(np.linalg.norm(b))
        parameters[name] = entry
    moves = []
    for r in updates:
        try:
            move = float(np.linalg.norm(_flat(r["phi_after"]) - _flat(r["phi_before"])))
        except ValueError:
            move = float("nan")
        moves.append((move, r["step"], r["epoch"]))
    summary["movement"] = {
        "l2": float(np.sqrt(sum(p["l2"] ** 2 for p in parameters.values()))),
        "path_length": float(np.nansum([m for m, _, _ in moves])),
        "parameters": parameters,
    }
    ranked = sorted((m for m in moves if math.isfinite(m[0])), key=lambda m: -m[0])
    summary["largest_moves"] = [{"step": s, "epoch": e, "l2": m} for m, s, e in ranked[:top]]

    skipped = [r["step"] for r in updates if r.get("skipped")]
    clipped = [r["step"] for r in updates if r.get("clipped")]
    hits = [
        {"step": r["step"], "epoch": r["epoch"], "elements": r["bound_hit"]}
        for r in updates
        if r.get("bound_hit")
    ]
    summary["skipped"] = skipped
    summary["clipnorm"] = updates[-1].get("clipnorm")
    summary["clipped"] = clipped
    summary["bound_hits"] = hits
    summary["at_bound"] = list(updates[-1].get("at_bound", []))

    warnings = summary["warnings"]
    if skipped:
        warnings.append(
            f"{len(skipped)} of {len(updates)} meta-updates were skipped "
            f"(non-finite loss or meta-gradient), at steps {_steps_text(skipped)}."
        )
    if hits:
        elements = sorted({e for h in hits for e in h["elements"]})
        warnings.append(
            f"A parameter bound was hit in {len(hits)} update(s), at steps "
            f"{_steps_text([h['step'] for h in hits])}: {', '.join(elements)}."
        )
    backwards = [b["step"] for a, b in zip(updates, updates[1:]) if b["step"] <= a["step"]]
    if backwards:
        warnings.append(
            "The step count goes backwards at steps "
            f"{_steps_text(backwards)}: the file may hold several independent "
            "runs appended to each other."
        )
    if len(finite) < len(updates):
        warnings.append(f"{len(updates) - len(finite)} meta-update(s) have no finite meta loss.")
    return summary


def _steps_text(steps, limit=8):
    shown = ", ".join(str(s) for s in steps[:limit])
    return shown + (f" ... ({len(steps)} in all)" if len(steps) > limit else "")
