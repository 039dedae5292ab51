"""Nestable differentiation on JAX, with the signatures of the TensorFlow backend.

`value_and_grad`, `vjp` and `jvp` are `jax.value_and_grad`, `jax.vjp` and
`jax.jvp` over lists of arrays; they nest like JAX's own transformations, so an
outer differentiation with respect to the loss parameters sees through an inner
weight gradient (second-order meta-gradients).

`stop_weight_gradient(x)` treats `x` as a constant for the innermost gradient
with respect to the model's weights only: it removes the perturbation of that
one transformation (the tracer's primal) and keeps every outer one, so the
loss parameters' gradient still flows through `x` (`jax.lax.stop_gradient`
would cut them all). It reads the tracer's `primal`, a JAX internal; the
backend tests check it numerically against the TensorFlow backend.
"""

import threading

import jax

_state = threading.local()


def _weight_traces():
    if not hasattr(_state, "weight_traces"):
        _state.weight_traces = []
    return _state.weight_traces


def _trace_of(values):
    for value in values:
        if isinstance(value, jax.core.Tracer):
            return value._trace
    return None


def _recording_weights(fn, wrt_weights):
    """`fn` that, when `wrt_weights`, registers the weights' trace while it runs."""
    if not wrt_weights:
        return fn

    def recorded(wrt, *args):
        _weight_traces().append(_trace_of(wrt))
        try:
            return fn(wrt, *args)
        finally:
            _weight_traces().pop()

    return recorded


def value_and_grad(fn, has_aux=False, wrt_weights=True):
    """Transforms `fn(wrt, *args)` into `(value, aux), grads` (or `value, grads`).

    Args:
        fn: a function whose first argument is a list of arrays; returns a
            scalar, or `(scalar, aux)` when `has_aux`.
        has_aux: whether `fn` returns auxiliary outputs.
        wrt_weights: whether the first argument holds the model's weights
            (see `stop_weight_gradient`).

    Returns:
        A function `(wrt, *args) -> ((value, aux), grads)` if `has_aux`, else
        `(value, grads)`; `grads` is a list like `wrt`.

    Example:

    >>> f = tml.backend.value_and_grad(lambda w: keras.ops.sum(w[0] ** 2))
    >>> value, grads = f([keras.ops.convert_to_tensor([1.0, 2.0])])
    >>> float(value), [float(g) for g in grads[0]]
    (5.0, [2.0, 4.0])
    """
    transformed = jax.value_and_grad(_recording_weights(fn, wrt_weights), has_aux=has_aux)

    def wrapped(wrt, *args):
        out, grads = transformed(list(wrt), *args)
        return out, list(grads)

    return wrapped


def vjp(fn, primals, has_aux=False, wrt_weights=True):
    """Evaluates `fn(primals)` and returns `(out, pullback)` (see the TF backend).

    `pullback(cotangents)` maps a list like `fn`'s output to a list like
    `primals`; it reuses the linearization, so k calls cost k backward passes.
    """
    recorded = _recording_weights(lambda p: _as_lists(fn(p), has_aux), wrt_weights)
    if has_aux:
        outputs, pull, aux = jax.vjp(recorded, list(primals), has_aux=True)
        out = (outputs, aux)
    else:
        outputs, pull = jax.vjp(recorded, list(primals))
        out = outputs

    def pullback(cotangents):
        cotangents = [jax.numpy.asarray(c, dtype=o.dtype) for c, o in zip(cotangents, outputs)]
        return list(pull(cotangents)[0])

    return out, pullback


def jvp(fn, primals, tangents, has_aux=False):
    """`fn(primals)` and its Jacobian-vector product along `tangents` (`jax.jvp`).

    Returns `(outputs, output_tangents)`, or `(outputs, output_tangents, aux)`
    when `has_aux`.
    """
    primals = [jax.numpy.asarray(p) for p in primals]
    tangents = [jax.numpy.asarray(t, dtype=p.dtype) for p, t in zip(primals, tangents)]
    function = lambda p: _as_lists(fn(p), has_aux)  # noqa: E731
    if has_aux:
        outputs, output_tangents, aux = jax.jvp(function, (primals,), (tangents,), has_aux=True)
        return list(outputs), list(output_tangents), aux
    outputs, output_tangents = jax.jvp(function, (primals,), (tangents,))
    return list(outputs), list(output_tangents)


def _as_lists(out, has_aux):
    if has_aux:
        return list(out[0]), out[1]
    return list(out)


def stop_weight_gradient(x):
    """`x` as a constant for the weight gradient, differentiable for the rest.

    Outside any `value_and_grad(..., wrt_weights=True)` this is
    `stop_gradient`.

    Example:

    >>> w = [keras.ops.convert_to_tensor(3.0)]
    >>> loss = lambda w: w[0] * tml.backend.stop_weight_gradient(w[0])
    >>> _, g = tml.backend.value_and_grad(loss)(w)
    >>> float(g[0])   # d/dw (w * c) with c = w held constant
    3.0
    """
    traces = _weight_traces()
    if not traces:
        return jax.lax.stop_gradient(x)
    trace = traces[-1]
    if trace is not None and isinstance(x, jax.core.Tracer) and x._trace is trace:
        return x.primal
    return x


def read(variables):
    """The current values of Keras variables (their values in a stateless scope)."""
    return [jax.numpy.asarray(v.value) for v in variables]


def tanh(x):
    """`tanh(x)` in `x`'s dtype.

    `keras.ops.tanh` on JAX (Keras 3.15) returns float32 for a float64
    input, which would round a float64 meta-gradient check to float32.
    """
    return jax.numpy.tanh(x)
