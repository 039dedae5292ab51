"""Running functions on JAX: compiled, and on the host from a compiled step."""

import jax

from tf_metaloss.backend.jax.distribution import device_count


def compile_function(fn):
    """`fn` compiled with `jax.jit` (traced again for new shapes or structures)."""
    return jax.jit(fn)


def call_on_host(fn, *values):
    """Calls `fn(*arrays)` in Python with `values` as NumPy arrays.

    Works eagerly and inside `jax.jit` (a `jax.debug.callback`). On one
    device the host calls run in program order. Under a `keras.distribution`
    over several devices JAX cannot order them (it has no ordered host calls
    across devices): they run unordered, so pass a step number along where the
    order matters. `wait_for_host_calls()` returns once every call has run.
    """
    jax.debug.callback(fn, *values, ordered=device_count() == 1)


def wait_for_host_calls():
    """Blocks until every host call of the steps dispatched so far has run."""
    jax.effects_barrier()
