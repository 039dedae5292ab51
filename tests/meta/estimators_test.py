"""Tests of the meta-gradient estimators (contract, resolution, serialisation)."""

import keras
import numpy as np
import pytest
from keras import ops

import tf_metaloss as tml
from tf_metaloss.meta import estimators


def _quadratic_problem(phi_value=0.7, lr=0.1):
    """L_phi(w) = phi * ||w - a||^2, meta(w) = ||w - b||^2: closed forms known."""
    a = np.array([1.0, -2.0])
    b = np.array([0.5, 0.5])

    def training_objective(weights, phi):
        loss = phi[0] * ops.sum((weights[0] - ops.convert_to_tensor(a, "float64")) ** 2)
        return loss, ("aux",)

    def meta_objective(weights, phi):
        value = ops.sum((weights[0] - ops.convert_to_tensor(b, "float64")) ** 2)
        return value, value

    problem = estimators.MetaProblem(
        training_objective=training_objective,
        meta_objective=meta_objective,
        weights=[ops.convert_to_tensor([0.0, 0.0], "float64")],
        phi=[ops.convert_to_tensor(phi_value, "float64")],
        learning_rate=lr,
    )
    return problem, a, b


def _unrolled_closed_form(phi, lr, steps, w0, a, b):
    # w_k - a = (1 - 2 lr phi)^k (w0 - a); meta = ||w_K - b||^2.
    r = 1 - 2 * lr * phi
    w = a + r**steps * (w0 - a)
    dw = steps * r ** (steps - 1) * (-2 * lr) * (w0 - a)
    return float(np.sum((w - b) ** 2)), float(np.sum(2 * (w - b) * dw))


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_unrolled_matches_the_closed_form(steps):
    phi, lr = 0.7, 0.1
    problem, a, b = _quadratic_problem(phi, lr)
    result = estimators.Unrolled(steps=steps).estimate(problem)
    value, grad = _unrolled_closed_form(phi, lr, steps, np.zeros(2), a, b)
    assert float(result.meta_objective) == pytest.approx(value, rel=1e-12)
    assert float(result.phi_grads[0]) == pytest.approx(grad, rel=1e-10)
    # The first inner gradient is returned for the weight update.
    grads = ops.convert_to_numpy(result.grads[0])
    np.testing.assert_allclose(grads, 2 * phi * (0 - a))
    np.testing.assert_allclose(ops.convert_to_numpy(result.local_grads[0]), grads)
    assert float(result.loss) == pytest.approx(phi * np.sum(a**2))
    assert result.aux == ("aux",)


def test_first_order_equals_exact_for_one_step_and_differs_for_more():
    problem, _, _ = _quadratic_problem()
    exact = estimators.Unrolled(steps=1).estimate(problem).phi_grads[0]
    first = estimators.Unrolled(steps=1, first_order=True).estimate(problem).phi_grads[0]
    assert float(first) == pytest.approx(float(exact), rel=1e-12)
    exact = estimators.Unrolled(steps=3).estimate(problem).phi_grads[0]
    first = estimators.Unrolled(steps=3, first_order=True).estimate(problem).phi_grads[0]
    assert abs(float(first) - float(exact)) > 1e-3 * abs(float(exact))


def test_get_resolves_names_configs_and_instances():
    assert estimators.get("second_order") == estimators.Unrolled()
    assert estimators.get("first_order") == estimators.Unrolled(first_order=True)
    instance = estimators.Unrolled(steps=3)
    assert estimators.get(instance) is instance
    config = estimators.serialize(instance)
    assert estimators.get(config) == instance
    assert keras.saving.deserialize_keras_object(config) == instance
    assert repr(instance) == "Unrolled(steps=3, first_order=False)"


@pytest.mark.parametrize(
    "name, expected",
    [
        ("neumann", estimators.Neumann(terms=5, alpha=None, inner_steps=0)),
        ("conjugate_gradient", estimators.ConjugateGradient(iterations=5, damping=1.0)),
        ("finite_difference", estimators.FiniteDifference(epsilon=1e-3, central=True)),
    ],
)
def test_get_resolves_the_new_names_to_defaults(name, expected):
    assert estimators.get(name) == expected


@pytest.mark.parametrize(
    "instance",
    [
        estimators.Neumann(terms=3, alpha=0.05, inner_steps=2),
        estimators.ConjugateGradient(iterations=4, damping=0.25, inner_steps=1),
        estimators.FiniteDifference(epsilon=0.001, central=False),
    ],
    ids=repr,
)
def test_every_estimator_round_trips_its_config(instance):
    config = estimators.serialize(instance)
    assert config["registered_name"] == f"tf_metaloss>{type(instance).__name__}"
    assert estimators.get(config) == instance
    assert estimators.deserialize(config) == instance
    assert type(instance).from_config(instance.get_config()) == instance
    assert hash(estimators.get(config)) == hash(instance)
    assert getattr(tml.meta.estimators, type(instance).__name__) is type(instance)


@pytest.mark.parametrize(
    "make, kwargs, message",
    [
        (estimators.Neumann, {"terms": -1}, "Invalid value for argument `terms`"),
        (estimators.Neumann, {"terms": 1.5}, "argument `terms`"),
        (estimators.Neumann, {"alpha": 0.0}, "argument `alpha`.*positive number or None"),
        (estimators.Neumann, {"inner_steps": -1}, "argument `inner_steps`"),
        (estimators.ConjugateGradient, {"iterations": 0}, "argument `iterations`"),
        (estimators.ConjugateGradient, {"damping": -0.1}, "argument `damping`"),
        (estimators.ConjugateGradient, {"inner_steps": True}, "argument `inner_steps`"),
        (estimators.FiniteDifference, {"epsilon": 0}, "argument `epsilon`.*Received: epsilon=0"),
        (estimators.FiniteDifference, {"central": 1}, "argument `central`"),
    ],
)
def test_new_estimator_argument_errors(make, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


def test_configs_saved_before_the_estimators_became_a_package_still_load():
    config = {
        "module": "tf_metaloss.meta.estimators",
        "class_name": "Unrolled",
        "config": {"steps": 2, "first_order": True},
        "registered_name": "tf_metaloss>Unrolled",
    }
    assert estimators.get(config) == estimators.Unrolled(steps=2, first_order=True)


@pytest.mark.parametrize("value", ["third_order", 3, None, {"steps": 2}])
def test_get_rejects_unknown_identifiers(value):
    with pytest.raises(ValueError, match="Invalid value for argument `meta_method`"):
        estimators.get(value)


@pytest.mark.parametrize(
    "config, reason",
    [
        ({"class_name": "Neumann", "config": {}}, "(Could not locate class 'Neumann')"),
        (
            {"class_name": "tf_metaloss>Neumann", "config": {"steps": 2}},
            "(Neumann.__init__() got an unexpected keyword argument 'steps')",
        ),
    ],
)
def test_get_names_why_a_config_does_not_deserialize(config, reason):
    with pytest.raises(ValueError) as error:
        estimators.get(config)
    message = str(error.value)
    assert message.startswith("Invalid value for argument `meta_method`. Expected one of [")
    assert message.endswith(f"Received: meta_method={config!r} {reason}")


@pytest.mark.parametrize(
    "kwargs, message",
    [({"steps": 0}, "argument `steps`"), ({"first_order": "yes"}, "argument `first_order`")],
)
def test_unrolled_argument_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        estimators.Unrolled(**kwargs)


def test_compile_takes_an_estimator_and_saves_it(tmp_path):
    inputs = keras.Input((4,))
    model = tml.MetaModel(inputs, keras.layers.Dense(3)(inputs))
    model.compile(
        optimizer="sgd",
        loss=tml.MetaLoss(from_logits=True),
        meta_method=estimators.Unrolled(steps=2, first_order=True),
    )
    assert model.unroll_steps == 2
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    y = np.arange(16) % 3
    model.fit(x, y, meta_split=0.25, batch_size=4, epochs=1, verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    assert restored.meta_estimator == estimators.Unrolled(steps=2, first_order=True)


@pytest.mark.parametrize(
    "method, expected",
    [
        ("neumann", estimators.Neumann()),
        (estimators.ConjugateGradient(iterations=2), estimators.ConjugateGradient(iterations=2)),
        (
            estimators.serialize(estimators.FiniteDifference(central=False)),
            estimators.FiniteDifference(central=False),
        ),
    ],
    ids=["name", "instance", "config"],
)
def test_compile_resolves_new_estimators_trains_and_saves_them(tmp_path, method, expected):
    inputs = keras.Input((4,))
    model = tml.MetaModel(inputs, keras.layers.Dense(3)(inputs))
    # q free in [0.001, 1], so that it moves whichever way its meta-gradient points.
    loss = tml.MetaLoss(family="generalized_ce", from_logits=True, bounds=(0.001, 1.0))
    model.compile(optimizer="sgd", loss=loss, meta_method=method)
    assert model.meta_estimator == expected
    assert model.unroll_steps is None
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    y = np.arange(16) % 3
    start = model.loss.trainable_variables[0].numpy()
    model.fit(x, y, meta_split=0.25, batch_size=4, epochs=1, verbose=0)
    assert not np.array_equal(model.loss.trainable_variables[0].numpy(), start)
    path = str(tmp_path / "m.keras")
    model.save(path)
    assert keras.models.load_model(path).meta_estimator == expected


def test_unroll_steps_with_a_new_estimator_name_is_rejected():
    inputs = keras.Input((4,))
    model = tml.MetaModel(inputs, keras.layers.Dense(3)(inputs))
    with pytest.raises(ValueError, match="`unroll_steps` and `meta_method` conflict"):
        model.compile(
            optimizer="sgd",
            loss=tml.MetaLoss(from_logits=True),
            meta_method="neumann",
            unroll_steps=2,
        )


def test_unroll_steps_with_an_estimator_instance_is_rejected():
    inputs = keras.Input((4,))
    model = tml.MetaModel(inputs, keras.layers.Dense(3)(inputs))
    with pytest.raises(ValueError, match="`unroll_steps` and `meta_method` conflict"):
        model.compile(
            optimizer="sgd",
            loss=tml.MetaLoss(from_logits=True),
            meta_method=estimators.Unrolled(),
            unroll_steps=2,
        )
