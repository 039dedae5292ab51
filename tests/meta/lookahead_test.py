import numpy as np
from keras import ops

from tf_metaloss import backend
from tf_metaloss.meta import lookahead


def _quadratic(scale):
    """L(w) = 0.5 * scale * ||w||^2: gradient scale * w, one SGD step scales w."""

    def objective(weights):
        loss = 0.5 * scale * sum(ops.sum(w * w) for w in weights)
        return loss, (None, [])

    return objective


def _unroll(scale, **kwargs):
    """The unroll from w0 = [1, -2] (float64), and d sum(w_K) / d scale."""
    w0 = [ops.convert_to_tensor([1.0, -2.0], "float64")]

    def final(scale):
        result = lookahead.unroll(_quadratic(scale[0]), w0, 0.1, steps=3, **kwargs)
        return ops.sum(result.weights[0]), result

    (_, result), grads = backend.value_and_grad(final, has_aux=True, wrt_weights=False)(
        [ops.convert_to_tensor(scale, "float64")]
    )
    return result, ops.convert_to_numpy(grads[0])


def test_sgd_update_is_pure():
    w = [ops.convert_to_tensor([1.0, 2.0])]
    g = [ops.convert_to_tensor([0.5, -1.0])]
    out = lookahead.sgd_update(w, g, 0.1)
    np.testing.assert_allclose(ops.convert_to_numpy(out[0]), [0.95, 2.1])
    np.testing.assert_allclose(ops.convert_to_numpy(w[0]), [1.0, 2.0])


def test_unroll_on_quadratic_matches_closed_form():
    result, grad = _unroll(3.0)
    # w_K = (1 - lr * s)^K * w0, so d sum(w_K)/ds = -K lr (1 - lr s)^(K-1) sum(w0).
    np.testing.assert_allclose(
        ops.convert_to_numpy(result.weights[0]), (0.7**3) * np.array([1.0, -2.0])
    )
    np.testing.assert_allclose(grad, -3 * 0.1 * 0.7**2 * (-1.0))
    # The first step's loss and gradient are those of the starting point.
    np.testing.assert_allclose(ops.convert_to_numpy(result.loss), 0.5 * 3.0 * 5.0)
    np.testing.assert_allclose(ops.convert_to_numpy(result.grads[0]), [3.0, -6.0])


def test_first_order_drops_second_order_terms():
    _, grad = _unroll(3.0, first_order=True)
    # Without the Hessian terms: d w_K/ds = -lr * sum_k w_k, w_k = 0.7^k w0.
    expected = -0.1 * (1 + 0.7 + 0.49) * (-1.0)
    np.testing.assert_allclose(grad, expected)
