"""`MetaDataTerm`: the model also trains on the meta data (`compile(train_on_meta_data=True)`).

The meta data is clean labelled data: a user of a fixed loss would train on
it. With the term on, each meta step adds to the model's weight gradient the
gradient of the loss at its start (e.g. generalized cross-entropy for the
default `MetaLoss`) on the meta batch, weighted so that over an epoch each
meta sample weighs as much as a training sample (the weight of the guard's
run, `tml.models.guard.meta_samples_per_step`). The learnable loss, and so
the meta-gradient, still see the training data only: the term does not
depend on phi. With phi at its start, the model trains exactly like the
guard's run (the starting loss on the training and the meta data).
`ForwardMode` carries its tangents through the learnable loss's part of the
update alone: the term's curvature is left out of them (an approximation).
The lookahead estimators differentiate the same lookahead as without the
term, which is constant in phi.
"""

import keras
from keras import ops
from keras import tree

from tf_metaloss import backend
from tf_metaloss.meta import gradients
from tf_metaloss.meta import lookahead
from tf_metaloss.models.objectives import unpack


class MetaDataTerm:
    """The meta batch's share of the model's loss.

    Args:
        objective: the fixed Keras loss on the meta batch (the learnable
            loss's `starting_copy()`).
        weight: a non-trainable scalar `keras.Variable`: meta samples per
            step (set by `fit`; 0 until then).
    """

    def __init__(self, objective, weight):
        self.objective = objective
        self.weight = weight

    def add_gradients(self, model, x, meta_batch, local_grads):
        """`local_grads` plus this replica's gradient of the term at the model's weights."""
        state = backend.read(model.non_trainable_variables)

        def objective(weights):
            value = weighted_meta_loss(
                model, self.objective, self.weight, weights, state, x, meta_batch
            )
            return value, ()

        _, _, term_grads = lookahead.loss_and_gradient(
            objective, backend.read(model.trainable_variables)
        )
        # A non-finite term (e.g. NaN meta inputs) is left out, not allowed to skip the
        # step's weight update: the meta data then only costs phi its update.
        # Every replica decides alike: it sums the replicas' counts of non-finite terms.
        local = ops.cast(ops.logical_not(gradients.all_finite(term_grads)), "float32")
        finite = backend.all_reduce_sum([local])[0] == 0
        return [
            ops.where(finite, g + ops.cast(t, g.dtype), g) for g, t in zip(local_grads, term_grads)
        ]


def weighted_meta_loss(model, objective, weight, weights, state, x, meta_batch):
    """`objective` on `meta_batch` at `weights`, times `weight` over the global batch size.

    The share of a step's loss that trains on the meta batch (the model's term,
    the guard's run): `weight` meta samples per step against the step's batch
    of `x` on every replica. The meta batch's pass does not move the running
    statistics (`state` is read, its update dropped).
    """
    x_meta, y_meta, sample_weight = unpack(meta_batch)
    y_pred, _ = model.stateless_call(weights, state, model._in_input_order(x_meta), training=True)
    value = objective(y_meta, y_pred, sample_weight=sample_weight)
    batch = ops.shape(tree.flatten(x)[0])[0] * model._replicas_in_sync()
    return ops.cast(weight, value.dtype) / ops.cast(batch, value.dtype) * value


def weight_variable():
    """The term's weight: a non-trainable scalar variable, 0 until `fit` sets it."""
    return keras.Variable(0.0, dtype="float32", trainable=False, name="meta_data_weight")
