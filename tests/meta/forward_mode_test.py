"""Tests of `ForwardMode`: exact against finite differences of whole runs, in float64."""

import keras
import numpy as np
import pytest
from keras import ops

import tf_metaloss as tml
from tf_metaloss import backend
from tf_metaloss.meta import estimators

A = np.array([1.0, -2.0])
B = np.array([0.5, 0.5])


def _quadratic(weights, phi):
    w = weights[0]
    return phi[0] * ops.sum((w - A) ** 2) + 0.3 * ops.sum(w**4), ()


def _meta(weights, phi):
    value = ops.sum((weights[0] - B) ** 2)
    return value, value


def _run(phi_value, steps, momentum, estimator=None, lr=0.1):
    """`steps` SGD steps on `_quadratic`; then the estimate (or the meta objective)."""
    w = ops.zeros(2, "float64")
    v = ops.zeros_like(w)
    phi = [ops.convert_to_tensor(phi_value, "float64")]
    state = estimator.initial_state([w], phi) if estimator else None
    for step in range(steps + 1):
        if estimator is None:
            if step == steps:
                return float(_meta([w], phi)[0])
            _, grads = backend.value_and_grad(_quadratic, has_aux=True)([w], phi)
            grad = grads[0]
        else:
            problem = estimators.MetaProblem(_quadratic, _meta, [w], phi, lr, state, momentum)
            result = estimator.estimate(problem)
            if step == steps:
                return result
            grad, state = result.grads[0], result.state
        if momentum:
            v = momentum * v - lr * grad
            w = w + v
        else:
            w = w - lr * grad


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_the_carried_meta_gradient_is_exact_for_a_fixed_phi(momentum):
    result = _run(0.7, 5, momentum, estimators.ForwardMode(normalize=False))
    h = 1e-6
    numeric = (_run(0.7 + h, 5, momentum) - _run(0.7 - h, 5, momentum)) / (2 * h)
    assert float(result.meta_objective) == pytest.approx(_run(0.7, 5, momentum), rel=1e-12)
    assert float(result.phi_grads[0]) == pytest.approx(numeric, rel=1e-7)
    assert abs(numeric) > 0.1  # phi matters after 5 steps


def test_the_first_step_has_no_carried_part_and_the_state_starts_at_zero():
    estimator = estimators.ForwardMode()
    state = estimator.initial_state(
        [ops.zeros(2, "float64")], [ops.convert_to_tensor(0.7, "float64")]
    )
    assert [tuple(s.shape) for s in state] == [(1, 2), (1, 2)]
    assert all(not np.any(ops.convert_to_numpy(s)) for s in state)
    result = _run(0.7, 0, 0.9, estimator)
    assert float(result.phi_grads[0]) == 0.0  # M does not depend on phi directly
    # The state after one step: d w_1 / d phi = -lr * d g / d phi = -lr * 2 (w - a).
    np.testing.assert_allclose(
        ops.convert_to_numpy(result.state[0])[0], -0.1 * 2 * (0 - A), rtol=1e-12
    )


def test_decay_and_normalize_scale_the_carried_part():
    exact = _run(0.7, 4, 0.0, estimators.ForwardMode(normalize=False))
    norm = float(np.linalg.norm(ops.convert_to_numpy(exact.state[0])))
    previous = _run(0.7, 3, 0.0, estimators.ForwardMode(normalize=False))
    tangent_norm = float(np.linalg.norm(ops.convert_to_numpy(previous.state[0])))
    normalized = _run(0.7, 4, 0.0, estimators.ForwardMode(normalize=True))
    assert norm > 0 and tangent_norm > 0
    expected = float(exact.phi_grads[0]) / max(tangent_norm, 1.0)
    assert float(normalized.phi_grads[0]) == pytest.approx(expected, rel=1e-10)
    decayed = _run(0.7, 4, 0.0, estimators.ForwardMode(decay=0.5, normalize=False))
    assert abs(float(decayed.phi_grads[0])) < abs(float(exact.phi_grads[0]))


def _model_run(make_loss, phi_values, steps, data, meta, estimator=None):
    """A float64 MetaModel trained `steps` SGD steps with phi fixed at `phi_values`."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    # `tml.backend.tanh` keeps float64 (Keras's "tanh" rounds it to float32 on JAX).
    hidden = keras.layers.Dense(5, activation=tml.backend.tanh)(inputs)
    model = tml.MetaModel(inputs, keras.layers.Dense(3)(hidden))
    loss = make_loss()
    # The run trains on the learnable loss alone (a frozen loss has no meta data term; the
    # tangents leave the term's curvature out, see tml.models.meta_data_term).
    kwargs = (
        {
            "meta_method": estimator,
            "meta_optimizer": keras.optimizers.SGD(0.0),
            "train_on_meta_data": False,
        }
        if estimator
        else {"meta_every": 0}
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.2, momentum=0.9), loss=loss, meta_guard=None, **kwargs
    )
    for variable, value in zip(loss.trainable_variables, phi_values):
        variable.assign(value)
    x, y = data
    model.fit(x, y, meta_data=meta, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert int(model.optimizer.iterations) == steps
    return model


@pytest.mark.parametrize(
    "make_loss",
    [
        lambda: tml.losses.GeneralizedCELoss(q=0.5, from_logits=True),
        lambda: tml.losses.BlendLoss(["crossentropy", "mae_classification"], from_logits=True),
    ],
    ids=["generalized_ce", "blend"],
)
def test_a_meta_model_trained_with_it_gets_the_exact_derivative_of_its_run(make_loss):
    keras.backend.set_floatx("float64")
    try:
        rng = np.random.default_rng(1)
        data = (rng.normal(size=(48, 4)), rng.integers(0, 3, 48))
        meta = (rng.normal(size=(16, 4)), rng.integers(0, 3, 16))
        start = [ops.convert_to_numpy(v) for v in make_loss().trainable_variables]
        model = _model_run(make_loss, start, 6, data, meta, estimators.ForwardMode(normalize=False))
        # phi held fixed (meta SGD with learning rate 0), the tangents carried over 6 steps.
        assert all(
            np.array_equal(ops.convert_to_numpy(v), s)
            for v, s in zip(model.loss.trainable_variables, start)
        )
        analytic = np.concatenate(
            [np.ravel(g) for g in model.compute_meta_gradient(data, meta).phi_grads]
        )

        def objective(phi_values):
            run = _model_run(make_loss, phi_values, 6, data, meta)
            return float(run.meta_objective(meta[1], run(meta[0])))

        numeric, eps = [], 1e-6
        flat = np.concatenate([np.ravel(s) for s in start])
        for index in range(flat.size):
            values = []
            for sign in (1.0, -1.0):
                shifted = flat.copy()
                shifted[index] += sign * eps
                pieces, offset = [], 0
                for s in start:
                    pieces.append(shifted[offset : offset + s.size].reshape(s.shape))
                    offset += s.size
                values.append(objective(pieces))
            numeric.append((values[0] - values[1]) / (2 * eps))
        numeric = np.asarray(numeric)
        assert np.linalg.norm(numeric) > 1e-4
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-9)
    finally:
        keras.backend.set_floatx("float32")


def _small_model():
    inputs = keras.Input((4,))
    return tml.MetaModel(inputs, keras.layers.Dense(3)(inputs))


def test_fit_carries_the_tangents_and_save_and_backup_keep_them(tmp_path):
    model = _small_model()
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        loss=tml.MetaLoss(family="generalized_ce", from_logits=True),
        meta_method="forward_mode",
        meta_guard=None,
    )
    assert model.meta_estimator == estimators.ForwardMode()
    state = model.estimator_state.variables
    # Z and V for the kernel (4, 3) and the bias (3,), one phi element (q).
    assert [tuple(v.shape) for v in state] == [(1, 4, 3), (1, 3), (1, 4, 3), (1, 3)]
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    y = np.arange(32) % 3
    start = float(ops.convert_to_numpy(model.loss.trainable_variables[0]))
    model.fit(x, y, meta_split=0.25, batch_size=8, epochs=2, verbose=0)
    assert float(ops.convert_to_numpy(model.loss.trainable_variables[0])) != start
    assert np.abs(ops.convert_to_numpy(state[0])).sum() > 0
    assert set(map(id, state)) <= set(map(id, tml.callbacks.backup.training_state_variables(model)))
    path = str(tmp_path / "m.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    assert restored.meta_estimator == estimators.ForwardMode()
    for a, b in zip(state, restored.estimator_state.variables):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))
    # Another estimator keeps no state.
    other = _small_model()
    other.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True))
    assert other.estimator_state is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"optimizer": "adam"}, r"`optimizer`.*Expected a keras.optimizers.SGD.*'Adam'"),
        (
            {"optimizer": keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True)},
            "SGD without Nesterov momentum",
        ),
        ({"optimizer": keras.optimizers.SGD(0.1, weight_decay=1e-4)}, "no weight_decay"),
        ({"optimizer": "sgd", "meta_every": 2}, r"`meta_every`.*Expected 1"),
        ({"optimizer": "sgd", "lookahead_learning_rate": 0.1}, "`lookahead_learning_rate`"),
    ],
)
def test_compile_rejects_training_the_tangents_cannot_follow(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _small_model().compile(
            loss=tml.MetaLoss(from_logits=True), meta_method="forward_mode", **kwargs
        )


def test_a_frozen_loss_needs_no_state_and_bad_settings_are_named():
    model = _small_model()
    model.compile(
        optimizer="adam",
        loss=tml.MetaLoss(from_logits=True),
        meta_method="forward_mode",
        meta_every=0,
    )
    assert model.estimator_state is None
    with pytest.raises(ValueError, match=r"`decay`.*\(0, 1\]"):
        estimators.ForwardMode(decay=0.0)
    with pytest.raises(ValueError, match="`normalize`"):
        estimators.ForwardMode(normalize="yes")
    assert estimators.get("forward_mode") == estimators.ForwardMode()
    config = estimators.serialize(estimators.ForwardMode(decay=0.9))
    assert estimators.get(config) == estimators.ForwardMode(decay=0.9)
