"""Tests of the implicit estimators (`Neumann`, `ConjugateGradient`).

Closed forms come from a quadratic inner problem

    L_phi(w) = 0.5 w^T A w - w^T C phi,   M(w) = 0.5 ||w - b||^2 (+ reg),

whose optimum `w*(phi) = A^{-1} C phi` and implicit hypergradient
`dM(w*)/dphi = C^T A^{-1} (w* - b)` are known exactly (J = A, B = -C).
"""

import keras
import numpy as np
import pytest
from keras import ops

from tf_metaloss.meta import estimators

RNG = np.random.default_rng(0)
N, P = 4, 2
_Q = RNG.normal(size=(N, N))
A = _Q @ _Q.T / N + 0.5 * np.eye(N)
C = RNG.normal(size=(N, P))
B_TARGET = RNG.normal(size=N)
PHI = RNG.normal(size=P)
LR = 0.1
REG = 0.3


def _problem(weights, phi=PHI, lr=LR, reg=0.0, dtype="float64"):
    a, c, b = (ops.convert_to_tensor(z, dtype) for z in (A, C, B_TARGET))

    def training_objective(w, p):
        w, p = w[0], p[0]
        loss = 0.5 * ops.tensordot(w, ops.matmul(a, w), 1)
        return loss - ops.tensordot(w, ops.matmul(c, p), 1), ("aux",)

    def meta_objective(w, p):
        value = 0.5 * ops.sum((w[0] - b) ** 2)
        return value, value + reg * ops.sum(p[0] ** 2)

    return estimators.MetaProblem(
        training_objective,
        meta_objective,
        [ops.convert_to_tensor(weights, dtype)],
        [ops.convert_to_tensor(phi, dtype)],
        lr,
    )


def _optimum(phi=PHI):
    return np.linalg.solve(A, C @ phi)


def _implicit(phi=PHI, reg=0.0):
    return C.T @ np.linalg.solve(A, _optimum(phi) - B_TARGET) + 2 * reg * phi


def _grad(estimator, problem):
    return ops.convert_to_numpy(estimator.estimate(problem).phi_grads[0])


def test_zero_neumann_terms_equal_the_one_step_unroll_anywhere():
    start = RNG.normal(size=N)
    problem = _problem(start, reg=REG)
    one_step = estimators.Unrolled(steps=1).estimate(problem)
    neumann = estimators.Neumann(terms=0).estimate(problem)
    grad = ops.convert_to_numpy(neumann.phi_grads[0])
    np.testing.assert_allclose(grad, ops.convert_to_numpy(one_step.phi_grads[0]), rtol=1e-12)
    # The closed form: dR - lr * (dg/dphi)^T v = 2 reg phi + lr C^T (w1 - b).
    w1 = start - LR * (A @ start - C @ PHI)
    np.testing.assert_allclose(grad, 2 * REG * PHI + LR * C.T @ (w1 - B_TARGET), rtol=1e-12)
    assert float(neumann.meta_objective) == pytest.approx(float(one_step.meta_objective))
    weight_grad = ops.convert_to_numpy(neumann.grads[0])
    np.testing.assert_allclose(weight_grad, A @ start - C @ PHI, rtol=1e-12)
    np.testing.assert_allclose(ops.convert_to_numpy(neumann.local_grads[0]), weight_grad)
    assert float(neumann.loss) == pytest.approx(float(one_step.loss), rel=1e-14)
    assert neumann.aux == ("aux",)


@pytest.mark.parametrize("steps", [2, 3, 5])
def test_neumann_with_alpha_lr_and_k_minus_1_terms_is_the_k_step_unroll_at_a_fixed_point(steps):
    problem = _problem(_optimum())
    unrolled = _grad(estimators.Unrolled(steps=steps), problem)
    neumann = _grad(estimators.Neumann(terms=steps - 1), problem)
    # Closed form: lr v^T sum_{j<K} (I - lr A)^j C.
    series = sum(np.linalg.matrix_power(np.eye(N) - LR * A, j) for j in range(steps))
    expected = LR * C.T @ series.T @ (_optimum() - B_TARGET)
    np.testing.assert_allclose(neumann, expected, rtol=1e-12)
    np.testing.assert_allclose(unrolled, expected, rtol=1e-12)


def test_neumann_and_unroll_differ_away_from_a_fixed_point():
    problem = _problem(RNG.normal(size=N))
    unrolled = _grad(estimators.Unrolled(steps=3), problem)
    neumann = _grad(estimators.Neumann(terms=2), problem)
    assert np.linalg.norm(unrolled - neumann) > 1e-3 * np.linalg.norm(unrolled)


def test_neumann_converges_to_the_implicit_hypergradient():
    problem = _problem(_optimum(), reg=REG)
    expected = _implicit(reg=REG)
    errors = [
        np.linalg.norm(_grad(estimators.Neumann(terms=t), problem) - expected)
        for t in (10, 100, 1000)
    ]
    assert errors[0] > errors[1] > errors[2]
    np.testing.assert_allclose(_grad(estimators.Neumann(terms=1000), problem), expected, rtol=1e-10)
    # A larger stable alpha converges in fewer terms.
    alpha = 1.0 / np.linalg.eigvalsh(A).max()
    np.testing.assert_allclose(
        _grad(estimators.Neumann(terms=400, alpha=alpha), problem), expected, rtol=1e-10
    )


def test_conjugate_gradient_solves_in_n_iterations():
    problem = _problem(_optimum(), reg=REG)
    np.testing.assert_allclose(
        _grad(estimators.ConjugateGradient(iterations=N, damping=0.0), problem),
        _implicit(reg=REG),
        rtol=1e-10,
    )


def test_conjugate_gradient_damping_solves_the_shifted_system():
    problem = _problem(_optimum())
    damping = 0.7
    v = _optimum() - B_TARGET
    expected = C.T @ np.linalg.solve(A + damping * np.eye(N), v)
    np.testing.assert_allclose(
        _grad(estimators.ConjugateGradient(iterations=N, damping=damping), problem),
        expected,
        rtol=1e-10,
    )


def test_conjugate_gradient_on_a_solved_system_stays_finite():
    # v = 0 at w* = b: every residual is 0 and every step size 0/0 -> 0.
    phi = np.linalg.lstsq(C, A @ B_TARGET, rcond=None)[0]
    target = _optimum(phi)
    problem = _problem(target, phi=phi)
    result = estimators.ConjugateGradient(iterations=3, damping=0.0).estimate(problem)
    assert np.all(np.isfinite(ops.convert_to_numpy(result.phi_grads[0])))


def _implicit_by_finite_differences(eps=1e-5, reg=REG):
    """Central differences of M(w*(phi)) + reg ||phi||^2, w* solved exactly."""
    grads = np.zeros(P)
    for i in range(P):
        values = []
        for sign in (1.0, -1.0):
            phi = PHI.copy()
            phi[i] += sign * eps
            w = _optimum(phi)
            values.append(0.5 * np.sum((w - B_TARGET) ** 2) + reg * np.sum(phi**2))
        grads[i] = (values[0] - values[1]) / (2 * eps)
    return grads


@pytest.mark.parametrize(
    "estimator",
    [
        estimators.ConjugateGradient(iterations=N, damping=0.0),
        estimators.Neumann(terms=1000),
    ],
    ids=["conjugate_gradient", "neumann"],
)
def test_implicit_estimators_match_finite_differences_of_the_solved_problem(estimator):
    numeric = _implicit_by_finite_differences()
    analytic = _grad(estimator, _problem(_optimum(), reg=REG))
    np.testing.assert_allclose(analytic, numeric, rtol=1e-7)


def test_inner_steps_linearize_after_plain_sgd_steps():
    start = RNG.normal(size=N)
    # Two SGD steps by hand: the point the estimator linearizes at.
    point = start
    for _ in range(2):
        point = point - LR * (A @ point - C @ PHI)
    moved = _grad(estimators.Neumann(terms=3, inner_steps=2), _problem(start))
    at_point = _grad(estimators.Neumann(terms=3), _problem(point))
    np.testing.assert_allclose(moved, at_point, rtol=1e-12)
    # With zero terms: the one-step unroll from that point.
    np.testing.assert_allclose(
        _grad(estimators.Neumann(terms=0, inner_steps=2), _problem(start)),
        _grad(estimators.Unrolled(steps=1), _problem(point)),
        rtol=1e-12,
    )
    # The weight update still gets the gradient at the current weights.
    result = estimators.ConjugateGradient(inner_steps=2).estimate(_problem(start))
    np.testing.assert_allclose(
        ops.convert_to_numpy(result.grads[0]), A @ start - C @ PHI, rtol=1e-12
    )


def test_many_inner_steps_approach_the_implicit_hypergradient():
    start = RNG.normal(size=N)
    estimator = estimators.ConjugateGradient(iterations=N, damping=0.0, inner_steps=400)
    np.testing.assert_allclose(_grad(estimator, _problem(start)), _implicit(), rtol=1e-8)


@pytest.mark.parametrize(
    "estimator",
    [estimators.Neumann(terms=2), estimators.ConjugateGradient(iterations=2)],
    ids=["neumann", "conjugate_gradient"],
)
def test_float32_problem_with_a_learning_rate_variable(estimator):
    rate = keras.Variable(LR, dtype="float32", trainable=False)
    result = estimator.estimate(_problem(_optimum(), lr=rate, dtype="float32"))
    assert keras.backend.standardize_dtype(result.phi_grads[0].dtype) == "float32"
    expected = ops.convert_to_numpy(estimator.estimate(_problem(_optimum())).phi_grads[0])
    np.testing.assert_allclose(ops.convert_to_numpy(result.phi_grads[0]), expected, rtol=1e-5)
