"""Replica arithmetic under `tf.distribute` (the one place that knows it).

Keras losses return each replica's share of the global-batch mean (the
replica's mean divided by the number of replicas), so that summing the
replicas' gradients gives the global-batch gradient. These helpers convert
between the two and guard updates against non-finite values. The worker
helpers (`is_chief`, `worker_index`) tell callbacks which process of a
multi-worker job may write files.
"""

import tensorflow as tf
from keras import tree


def num_replicas():
    """Replicas in sync under the current strategy (1 without one)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def replica_share(value):
    """This replica's share of a global mean: `value / num_replicas()`."""
    replicas = num_replicas()
    return value if replicas == 1 else value / replicas


def global_value(share):
    """The replica's own mean from its share: `share * num_replicas()`."""
    replicas = num_replicas()
    return share if replicas == 1 else share * replicas


def all_reduce_sum(values):
    """Sums a list of tensors across replicas (a no-op on one replica).

    Differentiable: the gradient of an all-reduced sum is the all-reduced
    gradient, so a lookahead built on all-reduced gradients sees the global
    batch on every replica.
    """
    values = list(values)
    if num_replicas() == 1:
        return values
    context = tf.distribute.get_replica_context()
    return context.all_reduce(tf.distribute.ReduceOp.SUM, values)


def apply_if_finite(optimizer, grads, variables, finite):
    """Applies `grads` with `optimizer` only when `finite` is True.

    When it is False nothing changes (variables, slots) except
    `optimizer.iterations`, which advances so that step-based schedules stay
    aligned. `finite` must be the same on every replica (compute it from
    all-reduced values). The `cond` wraps only the update, not the step.
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


def local_value(structure):
    """Replaces each distributed value in `structure` by this worker's first replica's.

    Keras builds a model from the first batch reduced across replicas, eagerly,
    which fails across workers (keras-team/keras#20585); building needs only
    the shapes, which the local replica's batch has.
    """

    def local(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return tf.distribute.get_strategy().experimental_local_results(value)[0]
        return value

    return tree.map_structure(local, structure)


def _cluster(strategy):
    """`(task_type, task_id, cluster dict)` of a multi-worker strategy, else None."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return None
    cluster = resolver.cluster_spec().as_dict()
    if not cluster:
        return None
    return resolver.task_type, int(resolver.task_id or 0), cluster


def is_chief(strategy=None):
    """Whether this process is the chief of its job (True without a cluster).

    The chief is the `"chief"` task, or worker 0 when the cluster has no
    `"chief"` task (as in `MultiWorkerMirroredStrategy` with only workers).
    Only the chief writes backups, audit logs and summaries.
    """
    info = _cluster(strategy or tf.distribute.get_strategy())
    if info is None:
        return True
    task_type, task_id, cluster = info
    if "chief" in cluster:
        return task_type == "chief"
    return task_type == "worker" and task_id == 0


def worker_index(strategy=None):
    """This process's index among the job's workers (0 without a cluster)."""
    info = _cluster(strategy or tf.distribute.get_strategy())
    if info is None:
        return 0
    task_type, task_id, cluster = info
    if "chief" in cluster:
        return 0 if task_type == "chief" else task_id + 1
    return task_id
