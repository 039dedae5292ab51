"""`EstimatorState`: the variables of a stateful meta-gradient estimator."""

import keras

from tf_metaloss.models.saved_variables import SavedVariables


class EstimatorState(SavedVariables):
    """Holds a stateful estimator's state (e.g. `ForwardMode`'s tangents) for a model.

    `MetaModel` creates it from `estimator.initial_state(weights, phi)` once the
    model is built, hands the values to each meta step and stores the state the
    step returns when its weight update is applied. Saved and restored with the
    model (`model.save()`, `MetaBackupAndRestore`), out of the model's own
    weights.

    Args:
        model: the built, compiled `MetaModel`.
    """

    saved_what = "estimator state"
    compiled_with = "the same loss and `meta_method`"

    def __init__(self, model):
        estimator = model.meta_estimator
        values = estimator.initial_state(
            [keras.ops.convert_to_tensor(v) for v in model.trainable_variables],
            [keras.ops.convert_to_tensor(v) for v in model.loss.trainable_variables],
        )
        self.name = f"{type(estimator).__name__}_state"
        self.variables = [
            keras.Variable(v, dtype=v.dtype, trainable=False, name=f"estimator_state_{i}")
            for i, v in enumerate(values)
        ]

    def values(self):
        return [keras.ops.convert_to_tensor(v) for v in self.variables]

    def assign(self, values, applied):
        """Stores `values` where `applied` (a boolean scalar) is true."""
        for variable, value in zip(self.variables, values):
            variable.assign(keras.ops.where(applied, value, keras.ops.convert_to_tensor(variable)))
