"""Per-step meta-update records for callbacks, read from the step logs.

A `MetaModel`'s train step logs what its latest meta-update did (see
`tf_metaloss.meta.records.MetaUpdateRecord`): `meta_updates` (how many the
call of the train function made), `meta_update_step`,
`update_meta_objective`, `update_meta_grad_norm` (before clipping),
`update_clipped`, `update_skipped`, and the epoch's running `skipped_updates`.
`MetaStepMonitor` turns those logs, plus phi read before and after the batch,
into one `MetaStepRecord` per batch. With `steps_per_execution > 1` a batch
covers several steps and the record holds the latest meta-update among them
(`meta_updates` says how many there were).
"""

import dataclasses
import math

import numpy as np

from tf_metaloss.losses.base import ClipConstraint

__all__ = ["MetaStepMonitor", "MetaStepRecord", "check_meta_model"]

# Parameters with at most this many elements are reported element by element.
SMALL_PARAMETER = 8


@dataclasses.dataclass
class MetaStepRecord:
    """What happened between one `on_train_batch_begin` and its `..._end`.

    Attributes:
        step: the optimizer step of the latest meta-update in the batch (the
            batch's first step when it made none).
        steps: optimizer steps the batch covered (`steps_per_execution`).
        meta_updates: meta-updates among them (0 on a plain step).
        meta_objective: the meta objective of the latest meta-update, `None`
            when none ran or the value is not finite.
        meta_grad_norm: its meta-gradient norm before clipping, `None` likewise.
        clipped: whether its meta-gradient was clipped.
        skipped: steps of the batch whose update was skipped (non-finite values).
        phi_before, phi_after: dicts `name -> np.ndarray` of phi.
    """

    step: int
    steps: int
    meta_updates: int
    meta_objective: object
    meta_grad_norm: object
    clipped: bool
    skipped: int
    phi_before: dict
    phi_after: dict


def read_phi(loss):
    """Dict `name -> np.ndarray` (float64) of a learnable loss's phi."""
    return {
        name: np.array(variable.numpy(), dtype=np.float64)
        for name, variable in zip(loss.parameter_names, loss.trainable_variables)
    }


def _finite_or_none(value):
    value = float(value)
    return value if math.isfinite(value) else None


def check_meta_model(model, who):
    """Raises a clear error unless `model` is a compiled `MetaModel`."""
    if not hasattr(model, "meta_update_record") or not hasattr(
        getattr(model, "loss", None), "parameter_names"
    ):
        raise ValueError(
            f"`{who}` needs a compiled `tf_metaloss.MetaModel` (with a learnable "
            f"loss). Received: model of type {type(model).__name__}. Compile a "
            "`MetaModel` before calling fit."
        )


class MetaStepMonitor:
    """Builds a `MetaStepRecord` per batch from a `MetaModel`'s step logs.

    Call `begin(model)` in `on_train_batch_begin` and `end(model, logs)` in
    `on_train_batch_end`, and `new_epoch()` in `on_epoch_begin` (Keras resets
    the running `skipped_updates` every epoch). With `read_phi=False` phi is
    not read (the record's `phi_*` are empty), which saves two host reads per
    batch for callbacks that do not need it.
    """

    def __init__(self, read_phi=True):
        self.read_phi = read_phi
        self._start = None
        self._skipped_total = 0.0

    def new_epoch(self):
        self._skipped_total = 0.0

    def begin(self, model):
        phi = read_phi(model.loss) if self.read_phi else {}
        self._start = (int(model.optimizer.iterations.numpy()), phi)

    def end(self, model, logs):
        if self._start is None or not logs or "meta_updates" not in logs:
            return None
        first_step, phi_before = self._start
        self._start = None
        steps = int(model.optimizer.iterations.numpy()) - first_step
        skipped_total = float(logs.get("skipped_updates", 0.0))
        skipped = skipped_total - self._skipped_total
        self._skipped_total = skipped_total
        updates = int(round(float(logs["meta_updates"])))
        meta_objective = meta_grad_norm = None
        clipped = False
        step = first_step
        if updates > 0:
            step = int(round(float(logs["meta_update_step"])))
            meta_objective = _finite_or_none(logs["update_meta_objective"])
            meta_grad_norm = _finite_or_none(logs["update_meta_grad_norm"])
            clipped = bool(float(logs["update_clipped"]) > 0.5)
        return MetaStepRecord(
            step=step,
            steps=steps,
            meta_updates=updates,
            meta_objective=meta_objective,
            meta_grad_norm=meta_grad_norm,
            clipped=clipped,
            skipped=int(round(skipped)) if math.isfinite(skipped) else 0,
            phi_before=phi_before,
            phi_after=read_phi(model.loss) if self.read_phi else {},
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
