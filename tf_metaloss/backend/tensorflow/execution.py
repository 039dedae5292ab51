"""Running functions on TensorFlow: compiled, and on the host from a compiled step."""

import tensorflow as tf


def compile_function(fn):
    """`fn` as a `tf.function` (traced again only for new input signatures)."""
    return tf.function(fn, reduce_retracing=True)


def call_on_host(fn, *values):
    """Calls `fn(*arrays)` in Python with `values` as NumPy arrays.

    Works eagerly and inside a `tf.function` (a `tf.py_function`, run in
    program order), not inside an XLA-compiled function.
    """

    def run(*tensors):
        fn(*[t.numpy() for t in tensors])
        return []

    tf.py_function(run, list(values), Tout=[])


def wait_for_host_calls():
    """Returns at once: a `tf.py_function` has run when its step returns."""
