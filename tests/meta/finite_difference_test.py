"""Tests of `FiniteDifference` (the DARTS approximation of the mixed term)."""

import numpy as np
import pytest
from keras import ops

from tf_metaloss import backend
from tf_metaloss.meta import estimators

LR = 0.2
START = np.array([0.3, -0.8, 1.1])
TARGET = np.array([0.5, 0.1, -0.4])
PHI = np.array([0.9, 0.4])


def _problem(dtype="float64", reg=0.25):
    """A training loss whose phi-gradient is not linear in w (so differences err).

    Its `tanh` is `tml.backend.tanh`, computed in the input's dtype on every
    backend (`keras.ops.tanh` and `keras.ops.sin` round float64 to float32 on
    JAX, which would hide the float64 differences below float32 noise).
    """
    target = ops.convert_to_tensor(TARGET, dtype)

    def training_objective(w, p):
        w, p = w[0], p[0]
        loss = p[0] * ops.sum(w**4) / 4 + p[1] * ops.sum(backend.tanh(3 * w))
        return loss, ("aux",)

    def meta_objective(w, p):
        value = ops.sum((w[0] - target) ** 2)
        return value, value + reg * ops.sum(p[0] ** 2)

    return estimators.MetaProblem(
        training_objective,
        meta_objective,
        [ops.convert_to_tensor(START, dtype)],
        [ops.convert_to_tensor(PHI, dtype)],
        LR,
    )


def _grad(estimator, problem):
    return ops.convert_to_numpy(estimator.estimate(problem).phi_grads[0])


def _error(estimator):
    exact = _grad(estimators.Unrolled(steps=1), _problem())
    return np.linalg.norm(_grad(estimator, _problem()) - exact) / np.linalg.norm(exact)


def test_central_differences_converge_quadratically_to_the_one_step_unroll():
    errors = [_error(estimators.FiniteDifference(epsilon=e)) for e in (1e-2, 5e-3)]
    assert 3.5 < errors[0] / errors[1] < 4.5
    assert _error(estimators.FiniteDifference(epsilon=1e-4)) < 1e-7


def test_one_sided_differences_converge_linearly():
    errors = [_error(estimators.FiniteDifference(epsilon=e, central=False)) for e in (1e-3, 5e-4)]
    assert 1.8 < errors[0] / errors[1] < 2.2
    assert errors[1] < 1e-3


def test_closed_form_and_the_weight_update_values():
    result = estimators.FiniteDifference(epsilon=1e-5).estimate(_problem())
    phi, w = PHI, START
    sech2 = 1 - np.tanh(3 * w) ** 2  # tanh' (3w)
    g = phi[0] * w**3 + 3 * phi[1] * sech2
    w1 = w - LR * g
    v = 2 * (w1 - TARGET)
    # d/dphi [v . g] = [v . w^3, v . 3 sech^2(3w)]; the meta-gradient adds d reg.
    expected = 2 * 0.25 * phi - LR * np.array([v @ w**3, v @ (3 * sech2)])
    np.testing.assert_allclose(ops.convert_to_numpy(result.phi_grads[0]), expected, rtol=1e-8)
    np.testing.assert_allclose(ops.convert_to_numpy(result.grads[0]), g, rtol=1e-12)
    np.testing.assert_allclose(ops.convert_to_numpy(result.local_grads[0]), g, rtol=1e-12)
    assert float(result.meta_objective) == pytest.approx(np.sum((w1 - TARGET) ** 2), rel=1e-12)
    assert float(result.loss) == pytest.approx(
        phi[0] * np.sum(w**4) / 4 + phi[1] * np.sum(np.tanh(3 * w)), rel=1e-12
    )
    assert result.aux == ("aux",)


def test_float32_is_close_to_the_exact_meta_gradient():
    exact = _grad(estimators.Unrolled(steps=1), _problem())
    approx = _grad(estimators.FiniteDifference(), _problem("float32"))
    cosine = approx @ exact / (np.linalg.norm(approx) * np.linalg.norm(exact))
    assert cosine > 0.9999


def test_a_zero_meta_gradient_gives_a_finite_estimate():
    problem = _problem(reg=0.0)
    # At w1 = target the meta objective's gradient v is 0.
    problem = problem._replace(meta_objective=lambda w, p: (ops.sum(w[0] * 0.0),) * 2)
    result = estimators.FiniteDifference().estimate(problem)
    np.testing.assert_array_equal(ops.convert_to_numpy(result.phi_grads[0]), [0.0, 0.0])
