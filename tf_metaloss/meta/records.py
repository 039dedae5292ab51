"""`MetaUpdateRecord`: the latest meta-update's values, in the step logs."""

import keras
from keras import ops

KEYS = (
    "meta_update_step",
    "update_meta_objective",
    "update_meta_grad_norm",
    "update_clipped",
    "update_skipped",
)
LOG_KEYS = ("meta_updates",) + KEYS


class MetaUpdateRecord(keras.metrics.Metric):
    """What the latest meta-update did, for callbacks reading the step logs.

    `result()` is a dict: `meta_updates` (meta-updates made by the current
    call of the train function: 0 or 1 with `steps_per_execution=1`),
    `meta_update_step` (the optimizer step of the latest meta-update, -1
    before any), `update_meta_objective` (its meta objective),
    `update_meta_grad_norm` (its meta-gradient norm before clipping),
    `update_clipped` and `update_skipped` (1.0 or 0.0). The meta step records
    all-reduced values, the same on every replica. Keras's per-epoch metric
    reset clears the count only.

    Example:

    >>> record = tml.meta.records.MetaUpdateRecord()
    >>> record.update_state(7, 0.5, 2.0, True, False)
    >>> {k: float(v) for k, v in record.result().items()}["update_clipped"]
    1.0
    """

    def __init__(self, name="meta_update_record", **kwargs):
        super().__init__(name=name, **kwargs)
        self.count = self.add_variable(
            (), "zeros", dtype="float32", aggregation="only_first_replica", name="count"
        )
        start = [-1.0] + [float("nan")] * (len(KEYS) - 1)
        self.values = self.add_variable(
            (len(KEYS),),
            keras.initializers.Constant(start),
            dtype="float32",
            aggregation="only_first_replica",
            name="values",
        )

    def update_state(self, step, meta_objective, grad_norm, clipped, skipped):
        values = [step, meta_objective, grad_norm, clipped, skipped]
        self.values.assign(ops.stack([ops.cast(v, "float32") for v in values]))
        self.count.assign(self.count + 1.0)

    def start_call(self):
        """Zeroes the per-call count (before a call's steps)."""
        self.count.assign(0.0)

    def reset_state(self):
        self.count.assign(0.0)

    def result(self):
        values = ops.convert_to_tensor(self.values)
        result = {"meta_updates": ops.convert_to_tensor(self.count)}
        result.update({key: values[i] for i, key in enumerate(KEYS)})
        return result


class MeanOfMetaUpdates(keras.metrics.Mean):
    """A running mean over meta-updates that reads NaN, not 0, while empty.

    The meta quantities are measured on meta steps only. An epoch (or the first
    plain steps of one) without a meta step, e.g. after
    `LossParameterEarlyStopping` froze phi, has no meta objective: a 0 would
    look like a perfect score.

    Example:

    >>> mean = tml.meta.records.MeanOfMetaUpdates()
    >>> float(mean.result())
    nan
    >>> mean.update_state(2.0)
    >>> float(mean.result())
    2.0
    """

    def result(self):
        return ops.where(self.count > 0, super().result(), ops.cast(float("nan"), self.dtype))
