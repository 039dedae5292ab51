"""The differentiable lookahead: K inner SGD steps as a pure function.

Everything here is a function of tensors. The model runs with weight tensors
in place of its variables (`stateless_call`) and the inner update returns new
tensors instead of assigning, so an outer differentiation (see
`tf_metaloss.meta.estimators`) sees the whole unrolled computation and
differentiates it with respect to the loss parameters phi.
"""

import collections

from keras import ops

from tf_metaloss import backend

LookaheadResult = collections.namedtuple(
    "LookaheadResult",
    ["weights", "loss", "grads", "local_grads", "aux"],
)
LookaheadResult.__doc__ = """What `unroll` returns.

- weights: the weights after the K inner steps (differentiable w.r.t. phi);
- loss, grads, local_grads, aux: the training loss, its all-reduced and
  per-replica gradients and the objective's auxiliary outputs at the *first*
  step, i.e. exactly what a plain training step computes, so the real weight
  update can reuse them.
"""


def sgd_update(weights, grads, learning_rate):
    """The pure inner update `w - learning_rate * g` (tensors in, tensors out).

    Example:

    >>> from tf_metaloss.meta.lookahead import sgd_update
    >>> weights = [keras.ops.convert_to_tensor([1.0, 2.0])]
    >>> grads = [keras.ops.convert_to_tensor([0.5, 1.0])]
    >>> updated = keras.ops.convert_to_numpy(sgd_update(weights, grads, 0.1)[0])
    >>> [round(v, 6) for v in updated.tolist()]
    [0.95, 1.9]
    """
    return [w - _in_dtype(learning_rate, ops.dtype(w)) * g for w, g in zip(weights, grads)]


def _in_dtype(value, dtype):
    # A Python number converts exactly; a float32 tensor would round first.
    if isinstance(value, (int, float)):
        return ops.convert_to_tensor(value, dtype=dtype)
    return ops.cast(value, dtype)


def loss_and_gradient(objective, weights):
    """`objective(weights) -> (loss, aux)`, and its per-replica weight gradient.

    Returns `(loss, aux, local_grads)`.
    """
    (loss, aux), local_grads = backend.value_and_grad(objective, has_aux=True)(weights)
    return loss, aux, local_grads


def unroll(objective, weights, learning_rate, steps, first_order=False):
    """Runs `steps` differentiable SGD steps on `objective` from `weights`.

    Args:
        objective: `weights -> (loss, aux)`, a pure function of the weight
            tensors that reads phi (so an outer differentiation records it).
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
        point = [ops.stop_gradient(w) for w in weights] if first_order else weights
        loss, aux, local_grads = loss_and_gradient(objective, point)
        grads = backend.all_reduce_sum(local_grads)
        if first is None:
            first = (loss, grads, local_grads, aux)
        weights = sgd_update(weights, grads, learning_rate)
    return LookaheadResult(weights, *first)
