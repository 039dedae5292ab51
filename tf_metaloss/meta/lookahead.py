"""The differentiable lookahead: K inner SGD steps through `stateless_call`.

Everything here is a function of tensors: the model runs with weight tensors in
place of its variables, and the inner update returns new tensors instead of
assigning, so an outer `tf.GradientTape` sees the whole unrolled computation
and differentiates it with respect to the loss parameters phi.
"""

import collections

import tensorflow as tf

from tf_metaloss.meta import updates

LookaheadResult = collections.namedtuple(
    "LookaheadResult",
    ["weights", "loss", "grads", "local_grads", "y_pred", "new_state"],
)
LookaheadResult.__doc__ = """What `unroll` returns.

- weights: the weights after the K inner steps (differentiable w.r.t. phi);
- loss, grads, local_grads, y_pred, new_state: the training loss, its
  all-reduced and per-replica gradients, the predictions and the updated
  non-trainable state at the *first* step, i.e. exactly what a plain training
  step computes, so the real weight update can reuse them.
"""


def sgd_update(weights, grads, learning_rate):
    """The pure inner update `w - learning_rate * g` (tensors in, tensors out)."""
    return [w - tf.cast(learning_rate, w.dtype) * g for w, g in zip(weights, grads)]


def loss_and_gradient(objective, weights):
    """Evaluates `objective(weights, pause) -> (loss, aux)` and its gradient.

    `pause` is `tape.stop_recording` of the inner tape: what the objective
    computes under it is constant for the weight gradient, yet recorded by any
    outer tape.
    """
    with tf.GradientTape() as tape:
        tape.watch(weights)
        loss, aux = objective(weights, tape.stop_recording)
    local_grads = tape.gradient(loss, weights)
    local_grads = [
        tf.zeros_like(w) if g is None else tf.convert_to_tensor(g)
        for w, g in zip(weights, local_grads)
    ]
    return loss, aux, local_grads


def unroll(objective, weights, learning_rate, steps, first_order=False):
    """Runs `steps` differentiable SGD steps on `objective` from `weights`.

    Args:
        objective: `(weights, pause) -> (loss, (y_pred, new_state))`, a pure function
            of the weight tensors that reads phi (so the outer tape records it).
        weights: list of weight tensors to start from.
        learning_rate: inner step size.
        steps: number of unrolled steps K (truncated backpropagation).
        first_order: drop the second-order terms through the weights: each
            step's gradient is taken at weights treated as constants, so
            `d w_K / d phi = -lr * sum_k d g_k / d phi`. Identical to the exact
            meta-gradient when `steps == 1`.

    Returns:
        A `LookaheadResult`.
    """
    first = None
    for _ in range(steps):
        point = [tf.stop_gradient(w) for w in weights] if first_order else weights
        loss, aux, local_grads = loss_and_gradient(objective, point)
        grads = updates.all_reduce_sum(local_grads)
        if first is None:
            first = (loss, grads, local_grads) + tuple(aux)
        weights = sgd_update(weights, grads, learning_rate)
    return LookaheadResult(weights, *first)
