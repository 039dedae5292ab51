"""Gradient plumbing that must know about `tf.distribute` (TensorFlow only)."""

import tensorflow as tf
from keras import ops


def num_replicas():
    """Replicas in sync under the current strategy (1 without one)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def all_reduce_sum(values):
    """Sums a list of tensors across replicas (a no-op on one replica).

    Differentiable: the gradient of an all-reduced sum is the all-reduced
    gradient, so a lookahead built on all-reduced gradients sees the global
    batch on every replica.
    """
    if num_replicas() == 1:
        return list(values)
    context = tf.distribute.get_replica_context()
    return context.all_reduce(tf.distribute.ReduceOp.SUM, list(values))


def global_norm(tensors):
    """Euclidean norm of all tensors together."""
    return ops.sqrt(sum(ops.sum(ops.square(t)) for t in tensors))


def all_finite(tensors):
    """Scalar bool: every element of every tensor is finite."""
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(t)) for t in tensors])


def clip_by_global_norm(tensors, clipnorm, norm):
    """Scales `tensors` so their global norm is at most `clipnorm`."""
    if clipnorm is None:
        return list(tensors)
    clipnorm = tf.cast(clipnorm, norm.dtype)
    scale = tf.minimum(tf.ones_like(norm), clipnorm / tf.maximum(norm, 1e-12))
    return [t * tf.cast(scale, t.dtype) for t in tensors]


def apply_if_finite(optimizer, grads, variables, finite):
    """Applies `grads` with `optimizer` only when `finite` is True.

    When it is False, nothing changes (weights, slots, and the counters stay as
    they were) except `optimizer.iterations`, which advances so that step-based
    schedules stay aligned. `finite` must be the same on every replica (compute
    it from all-reduced values). The `cond` wraps only the update, not the step.
    """
    grads_and_vars = list(zip(grads, variables))

    def skip():
        optimizer.iterations.assign_add(1)

    if num_replicas() == 1 and not tf.distribute.in_cross_replica_context():

        def apply():
            optimizer.apply_gradients(grads_and_vars)

        tf.cond(finite, apply, skip)
        return

    def cross_replica(distribution, grads_and_vars, finite):
        finite = distribution.experimental_local_results(finite)[0]

        def apply():
            distribution.extended.call_for_each_replica(
                optimizer.apply_gradients, args=(grads_and_vars,)
            )

        # A cond whose branch calls merge_call must run in cross-replica context.
        tf.cond(finite, apply, skip)

    tf.distribute.get_replica_context().merge_call(cross_replica, args=(grads_and_vars, finite))
