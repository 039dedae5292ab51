"""Running functions on JAX: compiled, and on the host from a compiled step."""

import jax


def compile_function(fn):
    """`fn` compiled with `jax.jit` (traced again for new shapes or structures)."""
    return jax.jit(fn)


def call_on_host(fn, *values):
    """Calls `fn(*arrays)` in Python with `values` as NumPy arrays.

    Works eagerly and inside `jax.jit` (a `jax.debug.callback`, ordered
    with the other host calls of the step).
    """
    jax.debug.callback(fn, *values, ordered=True)
