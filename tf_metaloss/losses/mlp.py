"""A tiny pure MLP whose weights are loss parameters (shared by two families)."""

import keras
from keras import ops

from tf_metaloss import backend


def check_hidden_units(hidden_units):
    """Validates `hidden_units`; returns it as a tuple of positive ints."""
    if isinstance(hidden_units, int):
        hidden_units = (hidden_units,)
    units = tuple(hidden_units) if isinstance(hidden_units, (tuple, list)) else ()
    if not units or any(not isinstance(u, int) or isinstance(u, bool) or u < 1 for u in units):
        raise ValueError(
            "Invalid value for argument `hidden_units`. Expected a non-empty "
            "tuple of positive integers, e.g. (16,). Received: "
            f"hidden_units={hidden_units!r}"
        )
    return units


def add_mlp_parameters(loss, input_dim, hidden_units, seed=None):
    """Creates the MLP's weights on `loss`; the output layer starts at zero."""
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ValueError(
            "Invalid value for argument `seed`. Expected an integer or None. "
            f"Received: seed={seed!r}"
        )
    sizes = (input_dim,) + tuple(hidden_units)
    for i in range(len(hidden_units)):
        loss.add_parameter(
            f"kernel_{i}",
            shape=(sizes[i], sizes[i + 1]),
            initializer=keras.initializers.GlorotUniform(seed=None if seed is None else seed + i),
        )
        loss.add_parameter(f"bias_{i}", shape=(sizes[i + 1],), initializer="zeros")
    loss.add_parameter("kernel_out", shape=(sizes[-1], 1), initializer="zeros")
    loss.add_parameter("bias_out", shape=(1,), initializer="zeros")


def apply_mlp(parameters, inputs, num_hidden):
    """`(..., input_dim) -> (...)`: tanh hidden layers, linear output."""
    x = inputs
    for i in range(num_hidden):
        x = backend.tanh(ops.matmul(x, parameters[f"kernel_{i}"]) + parameters[f"bias_{i}"])
    out = ops.matmul(x, parameters["kernel_out"]) + parameters["bias_out"]
    return ops.squeeze(out, axis=-1)
