import numpy as np
import tensorflow as tf

from tf_metaloss.meta import lookahead


def _quadratic(scale):
    """L(w) = 0.5 * scale * ||w||^2: gradient scale * w, one SGD step scales w."""

    def objective(weights):
        loss = 0.5 * scale * tf.add_n([tf.reduce_sum(w * w) for w in weights])
        return loss, (None, [])

    return objective


def test_sgd_update_is_pure():
    w = [tf.constant([1.0, 2.0])]
    g = [tf.constant([0.5, -1.0])]
    out = lookahead.sgd_update(w, g, 0.1)
    np.testing.assert_allclose(out[0].numpy(), [0.95, 2.1])
    np.testing.assert_allclose(w[0].numpy(), [1.0, 2.0])


def test_unroll_on_quadratic_matches_closed_form():
    w0 = [tf.constant([1.0, -2.0], tf.float64)]
    scale = tf.Variable(3.0, dtype=tf.float64)
    with tf.GradientTape() as tape:
        result = lookahead.unroll(_quadratic(scale), w0, 0.1, steps=3)
        final = tf.reduce_sum(result.weights[0])
    # w_K = (1 - lr * s)^K * w0, so d sum(w_K)/ds = -K lr (1 - lr s)^(K-1) sum(w0).
    np.testing.assert_allclose(result.weights[0].numpy(), (0.7**3) * np.array([1.0, -2.0]))
    np.testing.assert_allclose(tape.gradient(final, scale).numpy(), -3 * 0.1 * 0.7**2 * (-1.0))
    # The first step's loss and gradient are those of the starting point.
    np.testing.assert_allclose(result.loss.numpy(), 0.5 * 3.0 * 5.0)
    np.testing.assert_allclose(result.grads[0].numpy(), [3.0, -6.0])


def test_first_order_drops_second_order_terms():
    w0 = [tf.constant([1.0, -2.0], tf.float64)]
    scale = tf.Variable(3.0, dtype=tf.float64)
    with tf.GradientTape() as tape:
        result = lookahead.unroll(_quadratic(scale), w0, 0.1, steps=3, first_order=True)
        final = tf.reduce_sum(result.weights[0])
    # Without the Hessian terms: d w_K/ds = -lr * sum_k w_k, w_k = 0.7^k w0.
    expected = -0.1 * (1 + 0.7 + 0.49) * (-1.0)
    np.testing.assert_allclose(tape.gradient(final, scale).numpy(), expected)
