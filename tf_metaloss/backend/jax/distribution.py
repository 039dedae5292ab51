"""Replica arithmetic on JAX: one global view, nothing to reduce.

Keras on JAX distributes with `keras.distribution.DataParallel`: the step is
one jitted function over the global batch, sharded by XLA, so a loss is the
global-batch mean and a gradient the global gradient on every device. The
replica helpers of the TensorFlow backend are therefore identities here; the
worker helpers read JAX's process index (one process per host).
"""

import jax
import keras
from keras import ops


def check_supported(what):
    """Raises `NotImplementedError` for a `keras.distribution` setting the
    meta step does not run under: anything but `DataParallel` on one host."""
    setting = keras.distribution.distribution()
    if setting is None:
        return
    if not isinstance(setting, keras.distribution.DataParallel):
        raise NotImplementedError(
            f"`{what}` under keras.distribution.{type(setting).__name__} is not supported "
            "on the JAX backend: the meta step runs under keras.distribution.DataParallel "
            "(the batch split over the devices) or without a distribution. Use "
            "keras.distribution.set_distribution(keras.distribution.DataParallel())."
        )
    if jax.process_count() > 1:
        raise NotImplementedError(
            f"`{what}` on {jax.process_count()} JAX processes is not supported: "
            "keras.distribution.DataParallel runs over the devices of one host. Train "
            "on one host, or on TensorFlow with tf.distribute.MultiWorkerMirroredStrategy."
        )


def distribute_batch(batch):
    """A batch of NumPy arrays placed like Keras places training batches:
    split over the devices along the first axis under `DataParallel`, else on
    the default device."""
    setting = keras.distribution.distribution()
    if setting is None:
        return keras.tree.map_structure(jax.device_put, batch)

    devices = device_count()

    def put(array):
        if array.shape and array.shape[0] % devices:
            raise ValueError(
                f"A meta batch of {array.shape[0]} samples cannot be split over the "
                f"{devices} devices of keras.distribution.DataParallel. Expected a "
                "`meta_batch_size` that is a multiple of the device count. Received: "
                f"meta_batch_size={array.shape[0]}. Pass a multiple of {devices}."
            )
        return jax.device_put(array, setting.get_data_layout(array.shape).backend_layout)

    return keras.tree.map_structure(put, batch)


def device_count():
    """How many devices the active `keras.distribution` splits a batch over (1 without one)."""
    setting = keras.distribution.distribution()
    return 1 if setting is None else setting.device_mesh.devices.size


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
