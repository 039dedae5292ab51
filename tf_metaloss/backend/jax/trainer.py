"""The JAX training loop of `MetaModel`: not implemented yet.

What runs on JAX today is everything below the loop: the loss families, the
estimators and `MetaModel.compute_meta_gradient` (the meta step's pure
functions, `tf_metaloss.models.objectives`), and `predict`. `fit`,
`evaluate` and `train_on_batch` raise one error that says so, instead of a
traceback from inside `jax.jit`.
"""

import contextlib

from tf_metaloss.models.objectives import MetaObjectives

_NOT_YET = (
    "`MetaModel.{method}` is not implemented on the JAX backend yet. On JAX, "
    "tf_metaloss computes meta-gradients (`model.compute_meta_gradient`) and "
    "runs the learnable losses; training runs on TensorFlow. Set "
    "KERAS_BACKEND=tensorflow before Python imports keras to train a MetaModel."
)


class MetaTrainer(MetaObjectives):
    """Mixin giving `MetaModel` its JAX training loop (not implemented yet)."""

    def _variable_scope(self):
        """Where the model's own extra variables are created (no scope on JAX)."""
        return contextlib.nullcontext()

    def _replicas_in_sync(self):
        return 1  # a jitted step sees the global batch

    def _check_fit_supported(self, method):
        raise NotImplementedError(_NOT_YET.format(method=method))

    def _set_device_meta_every(self, value):
        pass

    def make_test_function(self, force=False):
        raise NotImplementedError(_NOT_YET.format(method="evaluate"))
