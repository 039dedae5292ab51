"""`GradientNormHistory`: the global L2 norm of every step's weight gradient.

A callback of `tml.evaluation.metrics` (imported there), in a module of its
own: it wraps the optimizer's `apply` differently on each backend.
"""

import keras
import numpy as np
from keras import ops

from tf_metaloss import backend


def _global_norm(grads):
    """The global L2 norm of a list of gradients (None entries left out), or None."""
    present = [g for g in grads if g is not None]
    if not present:
        return None
    squares = [ops.sum(ops.square(ops.cast(g, "float32"))) for g in present]
    return ops.sqrt(ops.sum(ops.stack(squares)))


class GradientNormHistory(keras.callbacks.Callback):
    """Records the global L2 norm of the weight gradient at every training step.

    It wraps the model optimizer's `apply` for the duration of `fit` (and
    rebuilds the train function so the wrapper is traced), so it sees exactly
    the gradients the optimizer applies, before clipping, for a plain
    `keras.Model` and for `tml.MetaModel` alike (the meta optimizer of phi is
    not wrapped). Steps whose update the model skipped (non-finite gradients)
    are not recorded. Works on one device, and on JAX under
    `keras.distribution.DataParallel` (not under `tf.distribute`). On JAX the
    norms of an epoch are appended at its end.

    Attributes:
        norms: list of floats, one per applied step.

    Example:

    >>> x = np.random.default_rng(0).normal(size=(128, 8)).astype("float32")
    >>> y = (x[:, 0] > 0).astype("int32")
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
    >>> model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(True))
    >>> norms = tml.evaluation.metrics.GradientNormHistory()
    >>> history = model.fit(x, y, epochs=3, verbose=0, callbacks=[norms])
    >>> len(norms.norms)  # 4 steps an epoch
    12
    >>> sorted(tml.evaluation.metrics.gradient_norm_stability(norms.norms))
    ['cv', 'max', 'mean', 'steps', 'variance']
    """

    def __init__(self):
        super().__init__()
        self.norms = []
        self._last = None
        self._recorded = None
        self._received = None
        self._optimizer = None

    def on_train_begin(self, logs=None):
        optimizer = self.model.optimizer
        if optimizer is None:
            raise ValueError(
                "`GradientNormHistory` needs a compiled model with an optimizer. "
                "Call `model.compile(optimizer=...)` before `fit`."
            )
        original = optimizer.apply
        if backend.name() == "jax":
            # The JAX step is a pure function: a variable it assigned would
            # lose the value, so the norm goes to the host from inside it.
            apply = self._jax_apply(original)
        else:
            apply = self._variable_apply(original)
        object.__setattr__(optimizer, "apply", apply)
        self._optimizer = optimizer
        # Re-trace so the wrapper is part of the train function.
        self.model.make_train_function(force=True)

    def _variable_apply(self, original):
        if self._last is None:
            self._last = keras.Variable(0.0, trainable=False, name="gradient_norm")
            self._recorded = keras.Variable(
                0, trainable=False, dtype="int64", name="gradient_norm_count"
            )
        last, recorded = self._last, self._recorded
        self._seen = int(ops.convert_to_numpy(recorded))

        def apply(grads, trainable_variables=None):
            norm = _global_norm(grads)
            if norm is not None:
                last.assign(norm)
                recorded.assign_add(1)
            return original(grads, trainable_variables)

        return apply

    def _jax_apply(self, original):
        # Sent with the optimizer's step number: over several devices the host
        # calls may arrive out of order (`backend.call_on_host`).
        received = self._received = []
        iterations = self.model.optimizer.iterations

        def record(step, norm):
            # A step the model skips has non-finite gradients; it is not recorded.
            if np.isfinite(norm):
                received.append((int(step), float(norm)))

        def apply(grads, trainable_variables=None):
            norm = _global_norm(grads)
            if norm is not None:
                backend.call_on_host(record, iterations.value, norm)
            return original(grads, trainable_variables)

        return apply

    def _take_received(self):
        """Appends the norms sent from the steps so far, in step order."""
        received = self._received
        if received is not None:
            backend.wait_for_host_calls()
            self.norms.extend(norm for _, norm in sorted(received))
            received.clear()

    def on_epoch_end(self, epoch, logs=None):
        self._take_received()

    def on_train_batch_end(self, batch, logs=None):
        if self._last is None:
            return
        count = int(ops.convert_to_numpy(self._recorded))
        if count != self._seen:
            self._seen = count
            self.norms.append(float(ops.convert_to_numpy(self._last)))

    def on_train_end(self, logs=None):
        self._take_received()
        if self._optimizer is not None and "apply" in vars(self._optimizer):
            object.__delattr__(self._optimizer, "apply")
        self._optimizer = None
        self.model.make_train_function(force=True)
