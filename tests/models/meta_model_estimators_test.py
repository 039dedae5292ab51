"""The estimators inside `MetaModel`: exactness on real models, distribution, XLA."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

import tf_metaloss as tml
from tf_metaloss import backend
from tf_metaloss.losses.meta_loss import BLEND_BASE_LOSSES
from tf_metaloss.meta import estimators

FAMILIES = {
    "meta_loss": lambda: tml.MetaLoss(
        from_logits=True, family="generalized_ce", regularization=0.1, bounds=(0.001, 1.0)
    ),
    "neural": lambda: tml.NeuralLoss(from_logits=True, hidden_units=(4,), seed=3),
    "sample_weighted": lambda: tml.SampleWeightedLoss(from_logits=True, hidden_units=(4,), seed=3),
}


def _data(seed=0, n=16, n_meta=8, features=6, classes=3, dtype="float64"):
    rng = np.random.default_rng(seed)
    return (
        ops.convert_to_tensor(rng.normal(size=(n, features)).astype(dtype)),
        ops.convert_to_tensor(rng.integers(0, classes, n)),
        ops.convert_to_tensor(rng.normal(size=(n_meta, features)).astype(dtype)),
        ops.convert_to_tensor(rng.integers(0, classes, n_meta)),
    )


def _model(loss, meta_method="second_order", hidden=8, **layer_kwargs):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    # `tml.backend.tanh` keeps float64 (Keras's "tanh" rounds it to float32 on JAX).
    x = keras.layers.Dense(hidden, activation=backend.tanh)(inputs) if hidden else inputs
    model = tml.MetaModel(inputs, keras.layers.Dense(3, **layer_kwargs)(x))
    model.compile(
        optimizer=keras.optimizers.SGD(0.5),
        loss=loss,
        meta_optimizer="sgd",
        meta_method=meta_method,
    )
    rng = np.random.default_rng(1)
    for v in model.loss.trainable_variables:  # every meta-gradient term active
        v.assign(ops.convert_to_numpy(v) + 0.3 * np.abs(rng.normal(size=v.shape)))
    return model


def _meta_gradient(model, method, data):
    model.meta_estimator = estimators.get(method)
    x, y, xm, ym = data
    result = model.compute_meta_gradient((x, y), (xm, ym))
    return np.concatenate([np.ravel(g) for g in result.phi_grads]), result


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_zero_neumann_terms_equal_the_exact_one_step_meta_gradient(float64, family):
    model = _model(FAMILIES[family]())
    data = _data()
    exact, exact_result = _meta_gradient(model, estimators.Unrolled(), data)
    neumann, result = _meta_gradient(model, estimators.Neumann(terms=0), data)
    assert np.linalg.norm(exact) > 1e-4
    np.testing.assert_allclose(neumann, exact, rtol=1e-10, atol=1e-14)
    assert float(result.meta_objective) == pytest.approx(float(exact_result.meta_objective))
    for a, b in zip(result.grads, exact_result.grads):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("family", ["meta_loss", "neural"])
def test_finite_difference_converges_to_the_exact_one_step_meta_gradient(float64, family):
    model = _model(FAMILIES[family]())
    data = _data()
    exact, _ = _meta_gradient(model, estimators.Unrolled(), data)
    errors = []
    for epsilon in (1e-2, 1e-4):
        approx, _ = _meta_gradient(model, estimators.FiniteDifference(epsilon=epsilon), data)
        errors.append(np.linalg.norm(approx - exact) / np.linalg.norm(exact))
    assert errors[1] < 1e-7
    assert errors[1] < errors[0] / 100


def test_finite_difference_differs_for_a_loss_with_detached_inputs(float64):
    # The difference moves the detached per-sample loss with the weights (documented).
    model = _model(FAMILIES["sample_weighted"]())
    data = _data()
    exact, _ = _meta_gradient(model, estimators.Unrolled(), data)
    approx, _ = _meta_gradient(model, estimators.FiniteDifference(epsilon=1e-4), data)
    assert np.linalg.norm(approx - exact) > 1e-4 * np.linalg.norm(exact)


def _newton_solver(problem, iterations=12):
    """`phi -> w*(phi)`, the inner optimum of a strongly convex training loss.

    Newton's method from `start` (default: the problem's weights), the Hessian
    assembled row by row from vector-Jacobian products of the weight gradient.
    It stops after the step taken where the gradient was below 1e-12 (the
    last step then only refines a converged point), at most `iterations` steps."""
    shapes = [tuple(w.shape) for w in problem.weights]
    sizes = [int(np.prod(s)) for s in shapes]
    identity = np.eye(sum(sizes))

    def unflatten(flat):
        parts = ops.split(flat, np.cumsum(sizes)[:-1].tolist())
        return [ops.reshape(p, s) for p, s in zip(parts, shapes)]

    def step(flat, phi):
        def gradient(point):
            objective = lambda w: problem.training_objective(unflatten(w[0]), phi)  # noqa: E731
            _, grads = backend.value_and_grad(objective, has_aux=True)(point)
            return grads

        (grad,), pullback = backend.vjp(gradient, [flat], wrt_weights=False)
        # The Hessian is symmetric: its rows are the pullbacks of the unit vectors.
        hessian = ops.stack([pullback([row])[0] for row in identity])
        return flat - ops.solve(hessian, grad[:, None])[:, 0], grad

    def optimum(phi, start=None):
        start = problem.weights if start is None else start
        flat = ops.concatenate([ops.reshape(w, [-1]) for w in start], 0)
        for _ in range(iterations):
            flat, grad = step(flat, list(phi))
            if float(ops.norm(grad)) < 1e-12:
                break
        assert float(ops.norm(grad)) < 1e-12
        return unflatten(flat)

    return optimum


def test_implicit_estimators_match_finite_differences_at_the_inner_optimum(float64):
    # Softmax regression with L2 on kernel and bias under the blend (mostly
    # cross-entropy): a strongly convex inner problem. (The default generalized
    # cross-entropy is not convex in the logits.)
    regularizer = keras.regularizers.L2(0.05)
    model = _model(
        tml.MetaLoss(
            from_logits=True, regularization=0.1, base_losses=BLEND_BASE_LOSSES["classification"]
        ),
        hidden=0,
        kernel_regularizer=regularizer,
        bias_regularizer=regularizer,
    )
    x, y, xm, ym = _data()
    problem = model._meta_problem((x, y), (xm, ym))
    phi = problem.phi

    newton_optimum = _newton_solver(problem)
    optimum = newton_optimum(phi)

    def meta_at_optimum(phi_values):
        # The shifted optimum is unique (strongly convex): start next to it.
        weights = newton_optimum(phi_values, start=optimum)
        return float(problem.meta_objective(weights, phi_values)[1])

    eps = 1e-5
    numeric = np.zeros(phi[0].shape)
    for i in range(numeric.size):
        shift = np.zeros(numeric.size)
        shift[i] = eps
        shift = shift.reshape(numeric.shape)
        up = meta_at_optimum([phi[0] + shift])
        down = meta_at_optimum([phi[0] - shift])
        numeric.flat[i] = (up - down) / (2 * eps)
    at_optimum = problem._replace(weights=optimum)
    parameters = sum(int(np.prod(w.shape)) for w in at_optimum.weights)
    cg = estimators.ConjugateGradient(iterations=parameters, damping=0.0).estimate(at_optimum)
    assert np.linalg.norm(numeric) > 1e-4
    np.testing.assert_allclose(ops.convert_to_numpy(cg.phi_grads[0]), numeric, rtol=1e-6, atol=1e-9)
    # The Neumann series converges to the same value (alpha below 2 / curvature).
    neumann = estimators.Neumann(terms=300, alpha=2.0).estimate(at_optimum)
    np.testing.assert_allclose(
        ops.convert_to_numpy(neumann.phi_grads[0]), numeric, rtol=1e-5, atol=1e-8
    )


METHODS = {
    "neumann": estimators.Neumann(terms=2, inner_steps=1),
    "conjugate_gradient": estimators.ConjugateGradient(iterations=2, damping=0.5),
    "finite_difference": estimators.FiniteDifference(),
}


def _train_on(strategy, method, jit_compile=False, dtype="float32"):
    x, y, xm, ym = (ops.convert_to_numpy(t) for t in _data(n=64, n_meta=32, dtype=dtype))
    with strategy.scope():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((6,))
        h = keras.layers.Dense(8, activation="tanh")(inputs)
        model = tml.MetaModel(inputs, keras.layers.Dense(3)(h))
        model.compile(
            optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
            loss=tml.MetaLoss(
                from_logits=True, family="generalized_ce", regularization=0.01, bounds=(0.001, 1.0)
            ),
            meta_optimizer=keras.optimizers.SGD(0.5),
            meta_global_clipnorm=0.05,
            meta_method=method,
            meta_seed=0,
            jit_compile=jit_compile,
            meta_guard=None,  # phi must move (a revert would reset it)
        )
    model.phi_start = model.loss.trainable_variables[0].numpy()
    history = model.fit(x, y, meta_data=(xm, ym), batch_size=16, epochs=2, shuffle=False, verbose=0)
    return model, history.history


@pytest.mark.parametrize("name", sorted(METHODS))
def test_mirrored_strategy_matches_single_device(float64, mirrored_strategy, name):
    single, single_logs = _train_on(tf.distribute.get_strategy(), METHODS[name], dtype="float64")
    mirrored, mirrored_logs = _train_on(mirrored_strategy(), METHODS[name], dtype="float64")
    phi = single.loss.trainable_variables[0].numpy()
    assert np.abs(phi - single.phi_start).max() > 1e-3
    np.testing.assert_allclose(mirrored.loss.trainable_variables[0].numpy(), phi, atol=1e-9)
    for a, b in zip(mirrored.trainable_variables, single.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-9)
    for key in ("loss", "meta_objective"):
        np.testing.assert_allclose(mirrored_logs[key], single_logs[key], rtol=1e-7)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_xla_matches_graph_mode(name):
    graph, graph_logs = _train_on(tf.distribute.get_strategy(), METHODS[name])
    xla, xla_logs = _train_on(tf.distribute.get_strategy(), METHODS[name], jit_compile=True)
    np.testing.assert_allclose(
        xla.loss.trainable_variables[0].numpy(),
        graph.loss.trainable_variables[0].numpy(),
        atol=1e-5,
    )
    for a, b in zip(xla.trainable_variables, graph.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
    np.testing.assert_allclose(xla_logs["meta_objective"], graph_logs["meta_objective"], rtol=1e-5)
