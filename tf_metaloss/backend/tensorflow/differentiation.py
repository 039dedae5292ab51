"""Nestable differentiation on TensorFlow, in the functional style of JAX.

`value_and_grad(fn)` returns a function computing `fn`'s value and its
gradient with respect to the first argument. Calls nest: the gradient of an
inner call is computed while every outer call's tape is recording, so an
outer call differentiates through it (second-order meta-gradients).

`vjp(fn, primals)` evaluates `fn` once and returns a pullback that maps
cotangents of its output to cotangents of `primals`, as often as needed
without running `fn` again (like `jax.vjp`): Hessian-vector products at one
point for an iterative solver.

`jvp(fn, primals, tangents)` pushes a direction forward through `fn` (forward
mode), also through gradients computed inside `fn`: the tangents of a weight
update for a forward-mode (real-time) meta-gradient.

`stop_weight_gradient(x)` marks a value that the gradient with respect to the
model's weights treats as a constant, while gradients with respect to the
loss parameters still flow through it. A loss family uses it for inputs it
must not teach the model through (Meta-Weight-Net's detached per-sample loss):
plain `stop_gradient` would also cut the path by which, after one unrolled
lookahead step, the weights (and so that input) depend on phi.
"""

import contextlib
import threading

import tensorflow as tf

_state = threading.local()


def _weight_tapes():
    if not hasattr(_state, "weight_tapes"):
        _state.weight_tapes = []
    return _state.weight_tapes


def value_and_grad(fn, has_aux=False, wrt_weights=True):
    """Transforms `fn(wrt, *args)` into `(value, aux), grads` (or `value, grads`).

    Args:
        fn: a function whose first argument is a list of tensors; returns a
            scalar, or `(scalar, aux)` when `has_aux`.
        has_aux: whether `fn` returns auxiliary outputs.
        wrt_weights: whether the first argument holds the model's weights.
            Values passed through `stop_weight_gradient` inside `fn` are
            constants for this gradient when True, and differentiable when
            False (gradients with respect to loss parameters).

    Returns:
        A function `(wrt, *args) -> ((value, aux), grads)` if `has_aux`, else
        `(value, grads)`; `grads` is a list like `wrt`, zeros where `fn` does
        not depend on an element.

    Example:

    >>> f = tml.backend.value_and_grad(lambda w: keras.ops.sum(w[0] ** 2))
    >>> value, grads = f([keras.ops.convert_to_tensor([1.0, 2.0])])
    >>> float(value), grads[0].numpy().tolist()
    (5.0, [2.0, 4.0])
    """

    def wrapped(wrt, *args):
        wrt = list(wrt)
        with tf.GradientTape() as tape:
            tape.watch(wrt)
            if wrt_weights:
                _weight_tapes().append(tape)
            try:
                out = fn(wrt, *args)
            finally:
                if wrt_weights:
                    _weight_tapes().pop()
        value = out[0] if has_aux else out
        grads = tape.gradient(value, wrt, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        grads = [tf.convert_to_tensor(g) for g in grads]
        return (out, grads) if has_aux else (value, grads)

    return wrapped


def vjp(fn, primals, has_aux=False, wrt_weights=True):
    """Evaluates `fn(primals)` and returns `(out, pullback)`.

    `pullback(cotangents)` returns the vector-Jacobian product of `fn`'s
    output (a list of tensors, or `(list, aux)` when `has_aux`) with
    `cotangents` (a list like the output), as a list like `primals`, zeros
    where the output does not depend on an element. It reuses the recorded
    evaluation, so calling it k times costs k backward passes and no forward
    pass. Like `value_and_grad`, calls nest inside outer differentiations.

    Args:
        fn: a function of a list of tensors returning a list of tensors, or
            `(list, aux)` when `has_aux`.
        primals: the point (a list of tensors).
        has_aux: whether `fn` returns auxiliary outputs.
        wrt_weights: whether `primals` are the model's weights (see
            `value_and_grad`; pass False for the Jacobian of a weight gradient,
            whose `stop_weight_gradient` inputs must then move with the
            weights).

    Example:

    >>> f = lambda w: [w[0] ** 2, 3.0 * w[0]]
    >>> out, pullback = tml.backend.vjp(f, [keras.ops.convert_to_tensor([1.0, 2.0])])
    >>> ones = keras.ops.ones((2,))
    >>> pullback([ones, ones])[0].numpy().tolist()  # 2 w + 3
    [5.0, 7.0]
    """
    primals = list(primals)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(primals)
        if wrt_weights:
            _weight_tapes().append(tape)
        try:
            out = fn(primals)
        finally:
            if wrt_weights:
                _weight_tapes().pop()
    outputs = list(out[0] if has_aux else out)

    def pullback(cotangents):
        grads = tape.gradient(
            outputs,
            primals,
            output_gradients=list(cotangents),
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
        return [tf.convert_to_tensor(g) for g in grads]

    return out, pullback


def jvp(fn, primals, tangents, has_aux=False):
    """`fn(primals)` and its Jacobian-vector product along `tangents` (like `jax.jvp`).

    Forward mode: one evaluation of `fn` carries the tangents along, whatever
    `fn` computes inside, including gradients (`value_and_grad` within `fn`
    gives a Hessian-vector product, forward over reverse).

    Args:
        fn: a function of a list of tensors returning a list of tensors, or
            `(list, aux)` when `has_aux`.
        primals: the point (a list of tensors).
        tangents: the direction (a list like `primals`).
        has_aux: whether `fn` returns auxiliary outputs (not differentiated).

    Returns:
        `(outputs, output_tangents)`, or `(outputs, output_tangents, aux)`
        when `has_aux`; `output_tangents` is a list like `outputs`, zeros where
        an output does not depend on `primals`.

    Example:

    >>> f = lambda w: [w[0] ** 2]
    >>> out, tangent = tml.backend.jvp(f, [keras.ops.convert_to_tensor([1.0, 3.0])],
    ...                                [keras.ops.convert_to_tensor([1.0, 0.5])])
    >>> tangent[0].numpy().tolist()  # 2 w * t
    [2.0, 3.0]
    """
    primals = [tf.convert_to_tensor(p) for p in primals]
    tangents = [tf.cast(t, p.dtype) for p, t in zip(primals, tangents)]
    with tf.autodiff.ForwardAccumulator(primals, tangents) as accumulator:
        out = fn(primals)
    outputs = list(out[0] if has_aux else out)
    output_tangents = [
        accumulator.jvp(o, unconnected_gradients=tf.UnconnectedGradients.ZERO) for o in outputs
    ]
    if has_aux:
        return outputs, output_tangents, out[1]
    return outputs, output_tangents


def stop_weight_gradient(x):
    """`x` as a constant for weight gradients, differentiable for the rest.

    Outside any `value_and_grad(..., wrt_weights=True)` (for example in a
    plain `loss(y_true, y_pred)` call under a user's own tape) this is
    `stop_gradient`.

    Example:

    >>> w = [keras.ops.convert_to_tensor(3.0)]
    >>> loss = lambda w: w[0] * tml.backend.stop_weight_gradient(w[0])
    >>> _, g = tml.backend.value_and_grad(loss)(w)
    >>> float(g[0])   # d/dw (w * c) with c = w held constant
    3.0
    """
    tapes = _weight_tapes()
    if not tapes:
        return tf.stop_gradient(x)
    with contextlib.ExitStack() as stack:
        for tape in tapes:
            stack.enter_context(tape.stop_recording())
        return tf.identity(x)


def read(variables):
    """The current values of Keras variables, as tensors a tape can watch."""
    return [tf.convert_to_tensor(v) for v in variables]


def tanh(x):
    """`tanh(x)` in `x`'s dtype (`keras.ops.tanh`)."""
    return tf.math.tanh(x)
