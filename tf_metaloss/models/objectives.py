"""The meta step's pure functions, backend-neutral (`keras.ops` only).

A mixin of `MetaModel`: the training objective `L_phi(weights)`, the meta
objective on a meta batch, and the `MetaProblem` an estimator differentiates.
Every backend's trainer (`backend/<name>/trainer.py`) builds its steps on
them; `compute_meta_gradient` runs them directly.
"""

import collections

import keras
from keras import ops

from tf_metaloss import backend
from tf_metaloss.meta import estimators

StepOutputs = collections.namedtuple("StepOutputs", ["y_pred", "new_state"])
StepOutputs.__doc__ = "The training objective's aux outputs: predictions and updated state."


def unpack(data):
    """`(x, y, sample_weight)` of a batch, as `keras.Model.train_step` reads it."""
    return keras.utils.unpack_x_y_sample_weight(data)


class MetaObjectives:
    """Mixin: the pure objectives of the meta step and `compute_meta_gradient`."""

    def compute_meta_gradient(self, data, meta_batch):
        """The meta-gradient the meta step would compute now; changes nothing.

        Args:
            data: a training batch `(x, y)` (or `(x, y, sample_weight)`).
            meta_batch: a meta batch `(x_meta, y_meta)`.

        Returns:
            A `tf_metaloss.meta.estimators.MetaGradient`: `phi_grads` (one
            tensor per loss parameter, before clipping), `meta_objective` (the meta
            objective after the lookahead), and the training loss and gradient
            at the current weights. Call it outside a distribution strategy.

        Example:

        >>> inputs = keras.Input((4,))
        >>> model = tml.MetaModel(inputs, keras.layers.Dense(3)(inputs))
        >>> model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True))
        >>> x, y = np.random.rand(8, 4).astype("float32"), np.arange(8) % 3
        >>> result = model.compute_meta_gradient((x, y), (x, y))
        >>> [tuple(g.shape) for g in result.phi_grads]  # one per loss parameter
        [()]
        """
        return self.meta_estimator.estimate(self._meta_problem(data, meta_batch))

    def _meta_problem(self, data, meta_batch):
        x, y, sample_weight = unpack(data)
        return estimators.MetaProblem(
            training_objective=self._training_objective(x, y, sample_weight),
            meta_objective=self._meta_objective(meta_batch),
            weights=self._weight_values(),
            phi=backend.read(self.loss.trainable_variables),
            learning_rate=self._lookahead_learning_rate(),
            state=None if self.estimator_state is None else self.estimator_state.values(),
            momentum=getattr(self.optimizer, "momentum", 0.0),
        )

    def _weight_values(self):
        return backend.read(self.trainable_variables)

    def _training_objective(self, x, y, sample_weight):
        """`(weights, phi) -> (L_phi(weights), aux)`, a pure function.

        `phi=None` evaluates the loss at its variables (plain step). `aux`
        holds `y_pred` and `new_state` (the model's updated non-trainable
        state, e.g. BatchNormalization statistics).
        """
        non_trainable = backend.read(self.non_trainable_variables)

        def objective(weights, phi):
            y_pred, new_state, layer_losses = self.stateless_call(
                weights, non_trainable, x, training=True, return_losses=True
            )
            if phi is None:
                loss = self.loss(y, y_pred, sample_weight=sample_weight)
            else:
                loss = self.loss.stateless_call(phi, y, y_pred, sample_weight)
            if layer_losses:
                loss = loss + backend.replica_share(sum(layer_losses))
            return loss, StepOutputs(y_pred, new_state)

        return objective

    def _meta_objective(self, meta_batch):
        """`(weights, phi) -> (meta objective, meta objective + phi penalty)`."""
        x_meta, y_meta, sw_meta = unpack(meta_batch)
        non_trainable = backend.read(self.non_trainable_variables)

        def objective(weights, phi):
            y_pred, _ = self.stateless_call(weights, non_trainable, x_meta, training=True)
            value = self.meta_objective(y_meta, y_pred, sample_weight=sw_meta)
            penalty = backend.replica_share(self.loss.regularization_penalty(phi))
            return value, value + ops.cast(penalty, value.dtype)

        return objective

    def _lookahead_learning_rate(self):
        if self.lookahead_learning_rate is not None:
            return self.lookahead_learning_rate
        return self.optimizer.learning_rate
