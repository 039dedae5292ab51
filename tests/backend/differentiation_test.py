"""Tests of the nestable differentiation functions of the backend."""

import numpy as np
import pytest
import tensorflow as tf

from tf_metaloss import backend


def test_value_and_grad_of_a_quadratic():
    value, grads = backend.value_and_grad(lambda w: tf.reduce_sum(w[0] ** 2 * w[1]))(
        [tf.constant([1.0, 2.0]), tf.constant(3.0)]
    )
    assert float(value) == pytest.approx(15.0)
    np.testing.assert_allclose(grads[0].numpy(), [6.0, 12.0])
    assert float(grads[1]) == pytest.approx(5.0)


def test_unconnected_inputs_get_zero_gradients_and_aux_passes_through():
    (value, aux), grads = backend.value_and_grad(
        lambda w: (tf.reduce_sum(w[0]), "aux"), has_aux=True
    )([tf.constant([1.0, 1.0]), tf.constant(2.0)])
    assert aux == "aux" and float(value) == 2.0
    assert float(grads[1]) == 0.0


def test_nested_calls_give_second_order_derivatives():
    # f(phi) = (w - lr * d/dw [phi * w^2])^2 at w = 1: exact d f / d phi.
    lr, w0 = 0.1, tf.constant(1.0)

    def outer(phi):
        _, (g,) = backend.value_and_grad(lambda w: phi[0] * w[0] ** 2)([w0])
        return (w0 - lr * g) ** 2

    phi = 0.5
    _, (grad,) = backend.value_and_grad(outer, wrt_weights=False)([tf.constant(phi)])
    # w1 = 1 - 2 lr phi; f = w1^2; df/dphi = 2 w1 * (-2 lr).
    w1 = 1 - 2 * lr * phi
    assert float(grad) == pytest.approx(2 * w1 * (-2 * lr))


def test_stop_weight_gradient_hides_a_value_from_weight_gradients_only():
    # The weight gradient of w * c(w) with c held constant is c; the outer
    # gradient (w.r.t. the starting point, through one inner SGD step) still
    # sees c's dependence on w.
    def inner_loss(w):
        return w[0] * backend.stop_weight_gradient(w[0] ** 2)

    _, (g,) = backend.value_and_grad(inner_loss)([tf.constant(3.0)])
    assert float(g) == pytest.approx(9.0)  # c = 9, not d/dw w^3 = 27

    def outer(start):
        _, (g,) = backend.value_and_grad(inner_loss)([start[0] * 1.0])
        return g

    _, (dg,) = backend.value_and_grad(outer, wrt_weights=False)([tf.constant(3.0)])
    assert float(dg) == pytest.approx(6.0)  # d/dw0 of c(w0) = w0^2


def test_stop_weight_gradient_is_stop_gradient_outside_a_weight_gradient():
    x = tf.constant(2.0)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = x * backend.stop_weight_gradient(x)
    assert float(tape.gradient(y, x)) == pytest.approx(2.0)


def test_replica_helpers_on_one_device():
    assert backend.num_replicas() == 1
    assert float(backend.replica_share(tf.constant(3.0))) == 3.0
    assert float(backend.global_value(tf.constant(3.0))) == 3.0
    assert [float(v) for v in backend.all_reduce_sum([tf.constant(1.0)])] == [1.0]


def test_replica_helpers_under_mirrored_strategy(mirrored_strategy):
    strategy = mirrored_strategy()

    def step():
        share = backend.replica_share(tf.constant(3.0))
        total = backend.all_reduce_sum([share])[0]
        return share, total, backend.global_value(share)

    share, total, restored = strategy.run(step)
    for value in strategy.experimental_local_results(share):
        assert float(value) == 1.5
    for value in strategy.experimental_local_results(total):
        assert float(value) == 3.0
    for value in strategy.experimental_local_results(restored):
        assert float(value) == 3.0


def test_vjp_pullback_is_reusable_and_has_aux():
    w = [tf.constant([1.0, 2.0]), tf.constant(3.0)]
    (out, aux), pullback = backend.vjp(
        lambda w: ([w[0] * w[1], tf.reduce_sum(w[0] ** 2)], "aux"), w, has_aux=True
    )
    assert aux == "aux"
    np.testing.assert_allclose(out[0].numpy(), [3.0, 6.0])
    first = pullback([tf.constant([1.0, 0.0]), tf.constant(0.0)])
    np.testing.assert_allclose(first[0].numpy(), [3.0, 0.0])
    assert float(first[1]) == pytest.approx(1.0)
    second = pullback([tf.constant([0.0, 0.0]), tf.constant(1.0)])
    np.testing.assert_allclose(second[0].numpy(), [2.0, 4.0])
    assert float(second[1]) == 0.0  # unconnected: zero


def test_vjp_of_a_gradient_gives_hessian_vector_products_inside_an_outer_gradient():
    # g(w) = d/dw [phi * w^3 / 3] = phi w^2; J^T u = 2 phi w u, and the
    # product, differentiated again by an outer call w.r.t. phi, is 2 w u.
    def outer(phi):
        def gradient(w):
            return backend.value_and_grad(lambda w: phi[0] * w[0] ** 3 / 3)(w)[1]

        (g,), pullback = backend.vjp(gradient, [tf.constant(2.0)], wrt_weights=False)
        (product,) = pullback([tf.constant(1.5)])
        assert float(g) == pytest.approx(4.0 * float(phi[0]))
        return product

    value, (grad,) = backend.value_and_grad(outer, wrt_weights=False)([tf.constant(0.5)])
    assert float(value) == pytest.approx(2 * 0.5 * 2.0 * 1.5)
    assert float(grad) == pytest.approx(2 * 2.0 * 1.5)


def test_vjp_of_a_weight_gradient_sees_detached_values_move_with_the_weights():
    # g(w) = d/dw [w * c] with c = stop_weight_gradient(w^2) held: g = c = w^2.
    # The Jacobian of g (the update an unroll differentiates) is 2 w = 6.
    def gradient(w):
        return backend.value_and_grad(lambda w: w[0] * backend.stop_weight_gradient(w[0] ** 2))(w)[
            1
        ]

    (g,), pullback = backend.vjp(gradient, [tf.constant(3.0)], wrt_weights=False)
    assert float(g) == pytest.approx(9.0)
    assert float(pullback([tf.constant(1.0)])[0]) == pytest.approx(6.0)
