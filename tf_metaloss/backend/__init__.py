"""The backend seam: everything that depends on the Keras backend.

The loss families (`tf_metaloss.losses`) and the meta-gradient estimators
(`tf_metaloss.meta.estimators`) are written in `keras.ops` and call the few
functions below for what `keras.ops` cannot express: differentiation that the
meta step nests (`value_and_grad`, `vjp`, `jvp`, `stop_weight_gradient`), the
values of variables as differentiable tensors (`read`), `tanh` in its input's
dtype (Keras's rounds float64 to float32 on JAX), and the replica
arithmetic of distributed training (`num_replicas`, `all_reduce_sum`,
`replica_share`, `global_value`), an optimizer update kept only when the
step's values are finite (`apply_if_finite`), and which process of a multi-worker job
writes files (`is_chief`, `worker_index`), and running a function compiled
(`compile_function`) or on the host from inside a compiled step
(`call_on_host`, `wait_for_host_calls`).

The functions come from `backend/<name>/` for the active Keras backend
(`tensorflow` or `jax`). This package imports nothing above it: the training
loops (`backend/<name>/trainer.py`, `MetaTrainer`) sit above the estimators
they call and are picked by `tf_metaloss.models`, the way Keras picks its
per-backend trainer in `keras.Model`. A third backend adds `backend/<name>/`
with these functions and a trainer, and its name to `SUPPORTED_BACKENDS`.

Importing `tf_metaloss` under another Keras backend raises one
`ImportError` that says what to do.
"""

import keras

SUPPORTED_BACKENDS = ("tensorflow", "jax")

_backend = keras.backend.backend()
if _backend not in SUPPORTED_BACKENDS:
    raise ImportError(
        "tf_metaloss runs on the Keras backend(s) "
        f"{', '.join(repr(b) for b in SUPPORTED_BACKENDS)}. The active Keras "
        f"backend is {_backend!r}. Set the environment variable "
        "KERAS_BACKEND=tensorflow (or jax) before Python imports keras (or "
        '"backend": "tensorflow" in ~/.keras/keras.json).'
    )

if _backend == "jax":
    from tf_metaloss.backend.jax.differentiation import jvp  # noqa: E402
    from tf_metaloss.backend.jax.differentiation import read  # noqa: E402
    from tf_metaloss.backend.jax.differentiation import stop_weight_gradient  # noqa: E402
    from tf_metaloss.backend.jax.differentiation import tanh  # noqa: E402
    from tf_metaloss.backend.jax.differentiation import value_and_grad  # noqa: E402
    from tf_metaloss.backend.jax.differentiation import vjp  # noqa: E402
    from tf_metaloss.backend.jax.distribution import all_reduce_sum  # noqa: E402
    from tf_metaloss.backend.jax.distribution import apply_if_finite  # noqa: E402
    from tf_metaloss.backend.jax.distribution import global_value  # noqa: E402
    from tf_metaloss.backend.jax.distribution import is_chief  # noqa: E402
    from tf_metaloss.backend.jax.distribution import num_replicas  # noqa: E402
    from tf_metaloss.backend.jax.distribution import replica_share  # noqa: E402
    from tf_metaloss.backend.jax.distribution import worker_index  # noqa: E402
    from tf_metaloss.backend.jax.execution import call_on_host  # noqa: E402
    from tf_metaloss.backend.jax.execution import compile_function  # noqa: E402
    from tf_metaloss.backend.jax.execution import wait_for_host_calls  # noqa: E402
else:
    from tf_metaloss.backend.tensorflow.differentiation import jvp  # noqa: E402
    from tf_metaloss.backend.tensorflow.differentiation import read  # noqa: E402
    from tf_metaloss.backend.tensorflow.differentiation import stop_weight_gradient  # noqa: E402
    from tf_metaloss.backend.tensorflow.differentiation import tanh  # noqa: E402
    from tf_metaloss.backend.tensorflow.differentiation import value_and_grad  # noqa: E402
    from tf_metaloss.backend.tensorflow.differentiation import vjp  # noqa: E402
    from tf_metaloss.backend.tensorflow.distribution import all_reduce_sum  # noqa: E402
    from tf_metaloss.backend.tensorflow.distribution import apply_if_finite  # noqa: E402
    from tf_metaloss.backend.tensorflow.distribution import global_value  # noqa: E402
    from tf_metaloss.backend.tensorflow.distribution import is_chief  # noqa: E402
    from tf_metaloss.backend.tensorflow.distribution import num_replicas  # noqa: E402
    from tf_metaloss.backend.tensorflow.distribution import replica_share  # noqa: E402
    from tf_metaloss.backend.tensorflow.distribution import worker_index  # noqa: E402
    from tf_metaloss.backend.tensorflow.execution import call_on_host  # noqa: E402
    from tf_metaloss.backend.tensorflow.execution import compile_function  # noqa: E402
    from tf_metaloss.backend.tensorflow.execution import wait_for_host_calls  # noqa: E402


def name():
    """The active Keras backend's name (`"tensorflow"` or `"jax"`)."""
    return _backend


__all__ = [
    "SUPPORTED_BACKENDS",
    "all_reduce_sum",
    "apply_if_finite",
    "call_on_host",
    "compile_function",
    "global_value",
    "is_chief",
    "jvp",
    "name",
    "num_replicas",
    "read",
    "replica_share",
    "stop_weight_gradient",
    "tanh",
    "value_and_grad",
    "vjp",
    "wait_for_host_calls",
    "worker_index",
]
