"""Replica arithmetic on JAX: one global view, nothing to reduce.

Keras on JAX distributes with `keras.distribution.DataParallel`: the step is
one jitted function over the global batch, sharded by XLA, so a loss is the
global-batch mean and a gradient the global gradient on every device. The
replica helpers of the TensorFlow backend are therefore identities here; the
worker helpers read JAX's process index (one process per host).
"""

import jax
from keras import ops


def num_replicas():
    """Always 1: a jitted step sees the global batch (see the module docstring)."""
    return 1


def replica_share(value):
    """`value` (the step computes global means)."""
    return value


def global_value(share):
    """`share` (the step computes global means)."""
    return share


def all_reduce_sum(values):
    """`values` as a list (gradients are already global)."""
    return list(values)


def is_chief(strategy=None):
    """Whether this is process 0 of a multi-host job (True on one host)."""
    return jax.process_index() == 0


def worker_index(strategy=None):
    """This process's index among the job's hosts (0 on one host)."""
    return jax.process_index()


def apply_if_finite(optimizer, grads, variables, finite):
    """Applies `grads` with `optimizer`, keeping the update only where `finite`.

    Inside the jitted step (a `keras.StatelessScope`) both outcomes are
    computed and `finite` picks one: when it is False nothing changes
    (variables, slots) except `optimizer.iterations`, which advances so that
    step-based schedules stay aligned, as on TensorFlow.
    """
    variables = list(variables)
    kept = [v for v in optimizer.variables if v is not optimizer.iterations]
    before = [v.value for v in variables + kept]
    optimizer.apply(list(grads), variables)
    for variable, old in zip(variables + kept, before):
        variable.assign(ops.where(finite, variable.value, old))
