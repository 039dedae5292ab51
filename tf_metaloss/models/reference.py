"""`ReferenceRun`: a copy of a model trained beside it on a fixed loss."""

import keras

from tf_metaloss.models.saved_variables import SavedVariables


class ReferenceRun(SavedVariables):
    """The weights, state and optimizer of a plain run of a model's network.

    `MetaModel` keeps up to two: the loss's reference (e.g. cross-entropy on
    the noisy labels, whose predictions on the meta data estimate the noise
    for `NoiseCorrectedLoss`) and the guard's (the loss at its start, the run
    a user of the fixed loss would get). Each starts from the model's weights
    when it is created and then trains on the same batches with a copy of the
    model's optimizer; the network is the model's own, called with these
    weights through `stateless_call`. The run is saved and restored with the
    model (`model.save()`, backups), so a resumed or reloaded model goes on
    with it.

    A run made with `trains_on_meta=True` (the guard's) also trains on each
    meta batch, its loss weighted by `meta_weight` over the step's global
    batch size (`fit` sets `meta_weight` to the meta samples per step, see
    `tml.models.guard.meta_samples_per_step`), as a user of the fixed loss
    would train on the clean meta data too.

    Args:
        model: the (built) `MetaModel`.
        objective: the Keras loss the run trains on.
        name: the run's name in logs and saved files.
        trains_on_meta: whether the run also trains on the meta batches.
    """

    compiled_with = "the same loss and `meta_guard`"

    def __init__(self, model, objective, name, trains_on_meta=False):
        self.name = name
        self.objective = objective
        self.meta_weight = (
            keras.Variable(0.0, dtype="float32", trainable=False, name=f"{name}_meta_weight")
            if trains_on_meta
            else None
        )
        self.weights = [
            keras.Variable(_copy(v), dtype=v.dtype, trainable=False, name=f"{name}_{_short(v)}")
            for v in model.trainable_variables
        ]
        self.state = [
            keras.Variable(_copy(v), dtype=v.dtype, trainable=False, name=f"{name}_{_short(v)}")
            for v in model.non_trainable_variables
        ]
        optimizer = model.optimizer
        self.optimizer = optimizer.__class__.from_config(optimizer.get_config())
        self.optimizer.build(self.weights)

    @property
    def variables(self):
        return self.weights + self.state

    def copy_from(self, model):
        """Sets the weights and state to the model's (the optimizer restarts its step)."""
        for target, source in zip(self.variables, _model_variables(model)):
            target.assign(_copy(source))

    def copy_to(self, model):
        """Sets the model's weights, state and optimizer slots to this run's."""
        for target, source in zip(_model_variables(model), self.variables):
            target.assign(_copy(source))
        for target, source in zip(model.optimizer.variables, self.optimizer.variables):
            if tuple(target.shape) == tuple(source.shape):
                target.assign(_copy(source))

    def predict_on(self, model, x):
        """The run's predictions for `x` (inference mode)."""
        y_pred, _ = model.stateless_call(
            [keras.ops.convert_to_tensor(v) for v in self.weights],
            [keras.ops.convert_to_tensor(v) for v in self.state],
            x,
            training=False,
        )
        return y_pred

    @property
    def saved_what(self):
        return f"reference run {self.name!r}"


def _copy(variable):
    """The variable's value in a buffer of its own.

    Keras on JAX donates the model's buffers to its jitted functions: a value
    shared between the model and a run would be deleted under the other.
    """
    return keras.ops.copy(keras.ops.convert_to_tensor(variable))


def _short(variable):
    return variable.path.replace("/", "_")


def _model_variables(model):
    return list(model.trainable_variables) + list(model.non_trainable_variables)
