import functools
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_metaloss as tml


@pytest.fixture(scope="session")
def make_data(classification_data):
    """Random (x, y, x_meta, y_meta): 6 features, 3 classes (the shared factory)."""
    return functools.partial(
        classification_data, n=64, n_meta=32, features=6, classes=3, label_dtype="int64"
    )


def _mlp(features=6, classes=3, hidden=8, seed=0, activation="tanh"):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((features,))
    h = keras.layers.Dense(hidden, activation=activation)(inputs)
    return inputs, keras.layers.Dense(classes)(h)


# For the float64 finite-difference checks: `tml.backend.tanh` keeps float64
# (Keras's "tanh" rounds it to float32 on JAX).
FLOAT64_TANH = tml.backend.tanh


def _meta_model(loss, seed=0, activation="tanh", **compile_kwargs):
    compile_kwargs.setdefault("optimizer", keras.optimizers.SGD(0.5))
    compile_kwargs.setdefault("meta_optimizer", "sgd")
    # The trainer's mechanics, without the guard (tests/losses/noise_corrected_test.py).
    compile_kwargs.setdefault("meta_guard", None)
    model = tml.MetaModel(*_mlp(seed=seed, activation=activation))
    model.compile(loss=loss, **compile_kwargs)
    return model


FAMILIES = {
    "blend": lambda: tml.BlendLoss(from_logits=True, initial_weights=[0.5, 0.2, 0.2, 0.1]),
    "polynomial_power": lambda: tml.PolynomialLoss(from_logits=True, degree=3, bounds=(-5.0, 5.0)),
    "polynomial_one_minus_p": lambda: tml.PolynomialLoss(from_logits=True, expansion="one_minus_p"),
    "neural": lambda: tml.NeuralLoss(from_logits=True, hidden_units=(4,), seed=3),
    "sample_weighted": lambda: tml.SampleWeightedLoss(from_logits=True, hidden_units=(4,), seed=3),
    "meta_loss": lambda: tml.MetaLoss(from_logits=True, family="generalized_ce"),
    "generalized_ce": lambda: tml.losses.GeneralizedCELoss(
        q=0.3, per_class=True, num_classes=3, from_logits=True
    ),
}


def _perturb(loss, rng, scale=0.3):
    """Moves phi off its initialisation so every meta-gradient term is active."""
    for v in loss.trainable_variables:
        v.assign(v.numpy() + scale * np.abs(rng.normal(size=v.shape)))


def _flat(tensors):
    return np.concatenate([np.ravel(np.asarray(t)) for t in tensors])


def _meta_objective_and_grad(model, batch, meta_batch):
    result = model.compute_meta_gradient(
        tuple(map(keras.ops.convert_to_tensor, batch)),
        tuple(map(keras.ops.convert_to_tensor, meta_batch)),
    )
    return float(result.meta_objective), _flat(result.phi_grads)


def _finite_difference(model, batch, meta_batch, eps=1e-6):
    grads = []
    for variable in model.loss.trainable_variables:
        start = np.array(variable.numpy())
        grad = np.zeros_like(start)
        for index in np.ndindex(start.shape):
            values = []
            for sign in (1.0, -1.0):
                shifted = start.copy()
                shifted[index] += sign * eps
                variable.assign(shifted)
                values.append(_meta_objective_and_grad(model, batch, meta_batch)[0])
            grad[index] = (values[0] - values[1]) / (2 * eps)
        variable.assign(start)
        grads.append(grad)
    return _flat(grads)


@pytest.mark.parametrize("unroll_steps", [1, 2])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_meta_gradient_matches_finite_differences(make_data, float64, family, unroll_steps):
    x, y, x_meta, y_meta = make_data(dtype="float64", n=16, n_meta=8)
    model = _meta_model(FAMILIES[family](), activation=FLOAT64_TANH, unroll_steps=unroll_steps)
    if family != "meta_loss":
        _perturb(model.loss, np.random.default_rng(1))
    _, analytic = _meta_objective_and_grad(model, (x, y), (x_meta, y_meta))
    numeric = _finite_difference(model, (x, y), (x_meta, y_meta))
    assert np.linalg.norm(numeric) > 1e-4
    error = np.linalg.norm(analytic - numeric) / np.linalg.norm(numeric)
    assert error < 1e-5, (analytic, numeric)


def test_meta_gradient_with_keras_meta_loss_name_uses_from_logits(make_data, float64):
    x, y, x_meta, y_meta = make_data(dtype="float64", n=16, n_meta=8)
    model = _meta_model(
        FAMILIES["blend"](),
        activation=FLOAT64_TANH,
        meta_objective="sparse_categorical_crossentropy",
    )
    assert model.meta_objective.get_config()["from_logits"] is True
    _, analytic = _meta_objective_and_grad(model, (x, y), (x_meta, y_meta))
    numeric = _finite_difference(model, (x, y), (x_meta, y_meta))
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-9)


def test_first_order_differs_from_second_order_only_when_unrolled(make_data, float64):
    x, y, x_meta, y_meta = make_data(dtype="float64", n=16, n_meta=8)
    grads = {}
    for steps in (1, 2):
        for method in ("second_order", "first_order"):
            model = _meta_model(FAMILIES["neural"](), unroll_steps=steps, meta_method=method)
            _perturb(model.loss, np.random.default_rng(1))
            grads[steps, method] = _meta_objective_and_grad(model, (x, y), (x_meta, y_meta))[1]
    np.testing.assert_allclose(
        grads[1, "first_order"], grads[1, "second_order"], rtol=1e-10, atol=1e-14
    )
    difference = np.linalg.norm(grads[2, "first_order"] - grads[2, "second_order"])
    assert difference > 1e-3 * np.linalg.norm(grads[2, "second_order"])


def _copy_weights(source, target):
    for s, t in zip(source.trainable_variables, target.trainable_variables):
        t.assign(s)


def test_frozen_loss_trains_exactly_like_plain_keras_model(make_data):
    x, y, _, _ = make_data(n=96)
    meta = _meta_model(
        tml.MetaLoss(from_logits=True, family="generalized_ce"),
        meta_every=0,
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
    )
    plain = keras.Model(*_mlp(seed=0))
    plain.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        # A frozen MetaLoss is generalized cross-entropy with q=0.7.
        loss=tml.losses.FixedLoss("generalized_crossentropy", from_logits=True),
    )
    _copy_weights(meta, plain)
    phi_before = meta.loss.trainable_variables[0].numpy()
    h_meta = meta.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    h_plain = plain.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(meta.trainable_variables, plain.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h_meta.history["loss"], h_plain.history["loss"], rtol=1e-5)
    np.testing.assert_array_equal(meta.loss.trainable_variables[0].numpy(), phi_before)


def test_fit_changes_phi_and_logs_meta_quantities(make_data):
    x, y, x_meta, y_meta = make_data()
    model = _meta_model(
        tml.MetaLoss(from_logits=True, family="generalized_ce", bounds=(0.001, 1.0)),
        meta_optimizer=keras.optimizers.Adam(0.05),
        meta_global_clipnorm=1.0,
        metrics=["accuracy"],
    )
    phi_before = model.loss.trainable_variables[0].numpy()
    history = model.fit(
        x,
        y,
        meta_data=(x_meta, y_meta),
        batch_size=16,
        epochs=2,
        validation_data=(x_meta, y_meta),
        verbose=0,
    )
    phi_after = model.loss.trainable_variables[0].numpy()
    assert np.abs(phi_after - phi_before).max() > 1e-3
    logs = history.history
    for key in (
        "loss",
        "meta_objective",
        "meta_grad_norm",
        "skipped_updates",
        "accuracy",
        "phi/q",
        "val_loss",
        "val_meta_objective",
    ):
        assert key in logs, key
    assert "val_meta_grad_norm" not in logs
    assert logs["skipped_updates"] == [0.0, 0.0]
    assert all(v > 0 for v in logs["meta_grad_norm"])
    np.testing.assert_allclose(logs["phi/q"][-1], phi_after, rtol=1e-6)
    # Four meta updates per epoch, all applied.
    assert int(model.meta_optimizer.iterations.numpy()) == 8


def test_meta_every_k_updates_phi_every_kth_step(make_data):
    x, y, x_meta, y_meta = make_data()
    model = _meta_model(tml.MetaLoss(from_logits=True, family="generalized_ce"), meta_every=3)
    model.fit(x, y, meta_data=(x_meta, y_meta), batch_size=8, epochs=1, verbose=0)
    # 8 steps: meta steps at iterations 0, 3 and 6.
    assert int(model.meta_optimizer.iterations.numpy()) == 3
    assert int(model.optimizer.iterations.numpy()) == 8


def test_meta_split_holds_out_the_last_samples(make_data):
    x, y, _, _ = make_data(n=100)
    model = _meta_model(tml.MetaLoss(from_logits=True, family="generalized_ce"))
    history = model.fit(x, y, meta_split=0.2, batch_size=10, epochs=1, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 8
    assert "meta_objective" in history.history


def test_dataset_meta_data_and_wrapped_model(make_data):
    x, y, x_meta, y_meta = make_data()
    base = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    model = tml.MetaModel(base)
    model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True, family="generalized_ce"))
    meta = tf.data.Dataset.from_tensor_slices((x_meta, y_meta)).batch(8)
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    model.fit(train, meta_data=meta, epochs=1, shuffle=False, verbose=0)
    assert int(model.meta_optimizer.iterations.numpy()) == 4
    assert model.predict(x, verbose=0).shape == (64, 3)


def test_regression_with_default_meta_objective():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x @ rng.normal(size=(4, 1))).astype("float32")
    keras.utils.set_random_seed(0)
    model = tml.MetaModel(keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)]))
    model.compile(
        optimizer=keras.optimizers.SGD(0.05),
        loss=tml.BlendLoss(["mse", "mae", "huber"]),
        meta_optimizer=keras.optimizers.Adam(0.01),
    )
    assert isinstance(model.meta_objective, tml.losses.FixedLoss)
    assert model.meta_objective.base_loss == "mse"
    history = model.fit(x, y, meta_split=0.25, batch_size=16, epochs=3, verbose=0)
    assert history.history["meta_objective"][-1] < history.history["meta_objective"][0]


def test_batch_norm_and_dropout_model_trains_with_meta_steps(make_data):
    x, y, x_meta, y_meta = make_data()
    keras.utils.set_random_seed(0)
    base = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(3),
        ]
    )
    model = tml.MetaModel(base)
    model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True, family="generalized_ce"))
    moving_mean = base.layers[1].moving_mean.numpy()
    model.fit(x, y, meta_data=(x_meta, y_meta), batch_size=16, epochs=1, verbose=0)
    assert np.abs(base.layers[1].moving_mean.numpy() - moving_mean).max() > 0


def _fit_twice(model, x, y, meta, split):
    if split:
        model.fit(x, y, meta_data=meta, batch_size=16, epochs=1, shuffle=False, verbose=0)
        return model
    model.fit(x, y, meta_data=meta, batch_size=16, epochs=2, shuffle=False, verbose=0)
    return model


def test_save_load_restores_phi_and_meta_optimizer_and_resumes_identically(make_data, tmp_path):
    x, y, x_meta, y_meta = make_data()

    def make():
        return _meta_model(
            tml.MetaLoss(from_logits=True, family="generalized_ce", regularization=0.1),
            optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
            meta_optimizer=keras.optimizers.Adam(0.05),
            meta_every=2,
            meta_global_clipnorm=1.0,
            meta_seed=7,
            unroll_steps=2,
            metrics=["accuracy"],
        )

    uninterrupted = make()
    uninterrupted.fit(
        x, y, meta_data=(x_meta, y_meta), batch_size=16, epochs=2, shuffle=False, verbose=0
    )

    first = make()
    first.fit(x, y, meta_data=(x_meta, y_meta), batch_size=16, epochs=1, shuffle=False, verbose=0)
    path = str(tmp_path / "model.keras")
    first.save(path)
    restored = keras.models.load_model(path)

    assert isinstance(restored, tml.MetaModel)
    assert isinstance(restored.loss, tml.MetaLoss)
    assert restored.meta_every == 2 and restored.unroll_steps == 2
    assert restored.meta_global_clipnorm == 1.0 and restored.loss.regularization == 0.1
    np.testing.assert_array_equal(
        restored.loss.trainable_variables[0].numpy(),
        first.loss.trainable_variables[0].numpy(),
    )
    for a, b in zip(restored.meta_optimizer.variables, first.meta_optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(restored.optimizer.variables, first.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())

    restored.fit(
        x, y, meta_data=(x_meta, y_meta), batch_size=16, epochs=1, shuffle=False, verbose=0
    )
    for a, b in zip(restored.trainable_variables, uninterrupted.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        restored.loss.trainable_variables[0].numpy(),
        uninterrupted.loss.trainable_variables[0].numpy(),
        rtol=1e-5,
        atol=1e-6,
    )


def test_weights_file_round_trip_includes_phi(make_data, tmp_path):
    x, y, x_meta, y_meta = make_data()
    model = _meta_model(
        tml.NeuralLoss(from_logits=True, hidden_units=(4,)),
        meta_optimizer=keras.optimizers.Adam(0.05),
    )
    model.fit(x, y, meta_data=(x_meta, y_meta), batch_size=16, epochs=1, verbose=0)
    path = str(tmp_path / "model.weights.h5")
    model.save_weights(path)
    other = _meta_model(
        tml.NeuralLoss(from_logits=True, hidden_units=(4,)),
        meta_optimizer=keras.optimizers.Adam(0.05),
        seed=1,
    )
    other.load_weights(path)
    for a, b in zip(model.loss.trainable_variables, other.loss.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def _train_on(make_data, strategy, jit_compile=False, dtype="float32"):
    x, y, x_meta, y_meta = make_data(dtype=dtype)
    with strategy.scope():
        model = _meta_model(
            tml.MetaLoss(from_logits=True, family="generalized_ce", regularization=0.01),
            optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
            meta_optimizer=keras.optimizers.SGD(0.5),
            meta_global_clipnorm=0.05,
            unroll_steps=2,
            meta_seed=0,
            jit_compile=jit_compile,
            metrics=["accuracy"],
        )
    history = model.fit(
        x, y, meta_data=(x_meta, y_meta), batch_size=16, epochs=2, shuffle=False, verbose=0
    )
    return model, history.history


def test_mirrored_strategy_matches_single_device(make_data, float64, mirrored_strategy):
    devices = tf.config.list_logical_devices("CPU")
    assert len(devices) >= 2, "conftest.py must split the CPU into two devices"
    single, single_logs = _train_on(make_data, tf.distribute.get_strategy(), dtype="float64")
    mirrored, mirrored_logs = _train_on(make_data, mirrored_strategy(), dtype="float64")
    phi_single = single.loss.trainable_variables[0].numpy()
    assert np.abs(phi_single - [1, 0, 0, 0, 0]).max() > 1e-3
    np.testing.assert_allclose(mirrored.loss.trainable_variables[0].numpy(), phi_single, atol=1e-9)
    for a, b in zip(mirrored.trainable_variables, single.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-9)
    for key in ("loss", "meta_objective", "accuracy"):
        np.testing.assert_allclose(mirrored_logs[key], single_logs[key], rtol=1e-7)


def test_xla_matches_graph_mode(make_data):
    graph, graph_logs = _train_on(make_data, tf.distribute.get_strategy(), jit_compile=False)
    xla, xla_logs = _train_on(make_data, tf.distribute.get_strategy(), jit_compile=True)
    assert xla.jit_compile is True
    np.testing.assert_allclose(
        xla.loss.trainable_variables[0].numpy(),
        graph.loss.trainable_variables[0].numpy(),
        atol=1e-5,
    )
    for a, b in zip(xla.trainable_variables, graph.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
    np.testing.assert_allclose(xla_logs["meta_objective"], graph_logs["meta_objective"], rtol=1e-5)


def test_non_finite_loss_skips_update_and_keeps_weights_and_phi(make_data):
    x, y, x_meta, y_meta = make_data(n=32)
    x[:16] = np.nan  # The first batch gives a NaN loss.
    model = _meta_model(
        tml.MetaLoss(from_logits=True, family="generalized_ce", bounds=(0.001, 1.0)),
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        meta_optimizer=keras.optimizers.Adam(0.05),
    )
    weights = [v.numpy() for v in model.trainable_variables]
    phi = model.loss.trainable_variables[0].numpy()
    model.fit(x[:16], y[:16], meta_data=(x_meta, y_meta), batch_size=16, epochs=1, verbose=0)
    for before, variable in zip(weights, model.trainable_variables):
        np.testing.assert_array_equal(variable.numpy(), before)
    np.testing.assert_array_equal(model.loss.trainable_variables[0].numpy(), phi)
    assert all(np.isfinite(v.numpy()).all() for v in model.optimizer.variables)
    assert float(model.skipped_updates_tracker.result()) == 1.0
    # Training goes on with the finite batch that follows.
    history = model.fit(
        x, y, meta_data=(x_meta, y_meta), batch_size=16, epochs=1, shuffle=False, verbose=0
    )
    assert history.history["skipped_updates"] == [1.0]
    assert np.abs(model.loss.trainable_variables[0].numpy() - phi).max() > 0
    assert all(np.isfinite(v.numpy()).all() for v in model.trainable_variables)


def test_non_finite_meta_gradient_skips_only_phi(make_data):
    x, y, x_meta, y_meta = make_data(n=16)
    x_meta[:] = np.nan
    model = _meta_model(tml.MetaLoss(from_logits=True, family="generalized_ce"))
    weights = [v.numpy() for v in model.trainable_variables]
    phi = model.loss.trainable_variables[0].numpy()
    history = model.fit(x, y, meta_data=(x_meta, y_meta), batch_size=16, epochs=1, verbose=0)
    np.testing.assert_array_equal(model.loss.trainable_variables[0].numpy(), phi)
    assert any(np.abs(v.numpy() - w).max() > 0 for v, w in zip(model.trainable_variables, weights))
    assert history.history["skipped_updates"] == [1.0]


# -- bad input ------------------------------------------------------------------


def _model():
    return tml.MetaModel(*_mlp())


def test_compile_without_learnable_loss_raises():
    with pytest.raises(ValueError, match="Invalid value for argument `loss`.*learnable"):
        _model().compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="argument `loss`"):
        _model().compile(optimizer="sgd", loss=None)


def test_registered_loss_name_and_config_compile():
    model = _model()
    model.compile(
        optimizer="sgd",
        loss={"class_name": "tf_metaloss>BlendLoss", "config": {"from_logits": True}},
    )
    assert isinstance(model.loss, tml.BlendLoss) and model.loss.from_logits


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"meta_every": -1},
            "argument `meta_every`. Expected a non-negative integer. Received: meta_every=-1",
        ),
        ({"meta_every": 1.5}, "argument `meta_every`"),
        (
            {"unroll_steps": 0},
            "argument `unroll_steps`. Expected an integer >= 1. Received: unroll_steps=0",
        ),
        ({"meta_method": "zeroth"}, "argument `meta_method`.*Received: meta_method='zeroth'"),
        ({"meta_global_clipnorm": -1.0}, "argument `meta_global_clipnorm`"),
        ({"lookahead_learning_rate": 0}, "argument `lookahead_learning_rate`"),
        ({"meta_objective": 3}, "argument `meta_objective`"),
    ],
)
def test_compile_argument_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _model().compile(
            optimizer="sgd", loss=tml.MetaLoss(from_logits=True, family="generalized_ce"), **kwargs
        )


def test_fit_without_meta_data_raises(make_data):
    x, y, _, _ = make_data()
    model = _model()
    model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True, family="generalized_ce"))
    with pytest.raises(ValueError, match="meta_data=.*meta_split"):
        model.fit(x, y, epochs=1, verbose=0)


@pytest.mark.parametrize("meta_split", [0.0, 1.0, -0.1, 1.5, "half"])
def test_meta_split_outside_open_interval_raises(make_data, meta_split):
    x, y, _, _ = make_data()
    model = _model()
    model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True, family="generalized_ce"))
    with pytest.raises(
        ValueError, match="argument `meta_split`. Expected a float in the open interval"
    ):
        model.fit(x, y, meta_split=meta_split, verbose=0)


def test_meta_data_and_meta_split_together_raise(make_data):
    x, y, x_meta, y_meta = make_data()
    model = _model()
    model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True, family="generalized_ce"))
    with pytest.raises(ValueError, match="mutually exclusive"):
        model.fit(x, y, meta_data=(x_meta, y_meta), meta_split=0.1, verbose=0)


def test_meta_data_that_does_not_fit_the_model_raises(make_data):
    x, y, x_meta, y_meta = make_data()
    model = _model()
    model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True, family="generalized_ce"))
    with pytest.raises(ValueError, match=r"shape \(batch,\) \+ \(6,\).*\(32, 5\)"):
        model.fit(x, y, meta_data=(x_meta[:, :5], y_meta), verbose=0)
    with pytest.raises(ValueError, match=r"labels in \[0, 2\].*values in \[1, 7\]"):
        model.fit(x, y, meta_data=(x_meta, np.where(y_meta == 0, 7, y_meta)), verbose=0)
    with pytest.raises(ValueError, match="same number of samples"):
        model.fit(x, y, meta_data=(x_meta, y_meta[:10]), verbose=0)
    with pytest.raises(ValueError, match="Expected a tuple"):
        model.fit(x, y, meta_data=x_meta, verbose=0)
    with pytest.raises(ValueError, match="one-hot labels with 3 columns"):
        model.fit(x, y, meta_data=(x_meta, np.eye(4)[y_meta]), verbose=0)


def test_constructor_errors():
    with pytest.raises(ValueError, match="Expected either a Keras model"):
        tml.MetaModel()
    with pytest.raises(ValueError, match="Expected either a Keras model"):
        tml.MetaModel("not a model")


def test_get_config_round_trip():
    model = _model()
    serialized = keras.saving.serialize_keras_object(model)
    x = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
    for restored in (
        tml.MetaModel.from_config(model.get_config()),
        keras.saving.deserialize_keras_object(serialized),
    ):
        assert type(restored) is tml.MetaModel and restored.name == model.name
        # The same architecture as the original, layer by layer (the config
        # holds no weights: copy them, and the two compute the same function).
        assert restored.get_config() == model.get_config()
        assert [w.path for w in restored.weights] == [w.path for w in model.weights]
        restored.set_weights(model.get_weights())
        np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0))


# -- Keras contracts ------------------------------------------------------------


def test_frozen_loss_logs_no_meta_quantities_and_recompile_keeps_metrics_unique(make_data):
    x, y, _, _ = make_data()
    model = _model()
    model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True, family="generalized_ce"))
    model.compile(
        optimizer="sgd", loss=tml.MetaLoss(from_logits=True, family="generalized_ce"), meta_every=0
    )
    names = [m.name for m in model.metrics]
    assert len(names) == len(set(names))
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert "meta_objective" not in history.history
    assert "meta_grad_norm" not in history.history
    assert "skipped_updates" in history.history


class SubclassedNet(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(8, activation="tanh")
        self.out = keras.layers.Dense(3)

    def call(self, x):
        return self.out(self.hidden(x))


def test_unbuilt_subclassed_model_trains(make_data):
    x, y, x_meta, y_meta = make_data()
    model = tml.MetaModel(SubclassedNet())
    model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True, family="generalized_ce"))
    model.fit(x, y, meta_data=(x_meta, y_meta), batch_size=16, epochs=1, verbose=0)
    assert int(model.meta_optimizer.iterations.numpy()) == 4


def test_fit_keeps_keras_positional_arguments(make_data):
    x, y, _, _ = make_data()
    model = _model()
    model.compile(
        optimizer="sgd", loss=tml.MetaLoss(from_logits=True, family="generalized_ce"), meta_every=0
    )
    history = model.fit(x, y, 16, 2, 0)  # batch_size, epochs, verbose
    assert len(history.history["loss"]) == 2
    assert int(model.optimizer.iterations.numpy()) == 8


def test_train_on_batch_meta_learns_with_a_meta_batch(make_data):
    x, y, x_meta, y_meta = make_data()
    model = _model()
    model.compile(
        optimizer="sgd",
        loss=tml.MetaLoss(from_logits=True, family="generalized_ce"),
        meta_optimizer=keras.optimizers.Adam(0.05),
    )
    phi = model.loss.trainable_variables[0].numpy()
    with pytest.raises(ValueError, match="received no `meta_batch`"):
        model.train_on_batch(x[:16], y[:16])
    logs = model.train_on_batch(
        x[:16], y[:16], meta_batch=(x_meta[:8], y_meta[:8]), return_dict=True
    )
    assert logs["meta_grad_norm"] > 0
    assert np.abs(model.loss.trainable_variables[0].numpy() - phi).max() > 0


def test_unknown_loss_name_is_reported_as_given():
    with pytest.raises(ValueError, match="Received: loss='nope'"):
        _model().compile(optimizer="sgd", loss="nope")


def test_same_optimizer_for_weights_and_phi_is_rejected():
    optimizer = keras.optimizers.SGD()
    with pytest.raises(ValueError, match="must be different optimizer instances"):
        _model().compile(
            optimizer=optimizer,
            loss=tml.MetaLoss(from_logits=True, family="generalized_ce"),
            meta_optimizer=optimizer,
        )


@pytest.mark.parametrize(
    "name, class_name",
    [
        ("kld", "KLDivergence"),
        ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy"),
        ("mse", "MeanSquaredError"),
    ],
)
def test_meta_objective_names_resolve_to_keras_classes(name, class_name):
    model = _model()
    model.compile(
        optimizer="sgd",
        loss=tml.MetaLoss(from_logits=True, family="generalized_ce"),
        meta_objective=name,
    )
    assert type(model.meta_objective).__name__ == class_name


def test_unknown_meta_objective_name_raises():
    with pytest.raises(
        ValueError, match="argument `meta_objective`.*Received: meta_objective='nope'"
    ):
        _model().compile(
            optimizer="sgd",
            loss=tml.MetaLoss(from_logits=True, family="generalized_ce"),
            meta_objective="nope",
        )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"meta_batch_size": 0}, "argument `meta_batch_size`. Expected a positive integer"),
        ({"meta_batch_size": 2.5}, "argument `meta_batch_size`"),
        (
            {"meta_data": (np.zeros((0, 6), "float32"), np.zeros(0, "int64"))},
            "at least one meta sample",
        ),
        (
            {
                "meta_data": tf.data.Dataset.from_tensor_slices(
                    (np.zeros((4, 6), "float32"), np.zeros(4))
                )
            },
            "Expected a batched tf.data.Dataset",
        ),
        (
            {"meta_data": tf.data.Dataset.from_tensor_slices(np.zeros((4, 6), "float32")).batch(2)},
            "yielding `\\(x_meta, y_meta\\)`",
        ),
    ],
)
def test_fit_meta_argument_errors(make_data, kwargs, message):
    x, y, x_meta, y_meta = make_data()
    kwargs.setdefault("meta_data", (x_meta, y_meta))
    model = _model()
    model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True, family="generalized_ce"))
    with pytest.raises(ValueError, match=message):
        model.fit(x, y, verbose=0, **kwargs)


def test_meta_seed_must_be_an_integer():
    with pytest.raises(ValueError, match="argument `meta_seed`"):
        _model().compile(
            optimizer="sgd",
            loss=tml.MetaLoss(from_logits=True, family="generalized_ce"),
            meta_seed="abc",
        )


def test_defaults_bounded_meta_objective_and_adam_for_phi():
    model = _model()
    model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True, family="generalized_ce"))
    assert isinstance(model.meta_objective, tml.losses.FixedLoss)
    assert model.meta_objective.base_loss == "mae_classification"
    assert model.meta_objective.from_logits is True
    assert isinstance(model.meta_optimizer, keras.optimizers.Adam)
    assert float(model.meta_optimizer.learning_rate) == pytest.approx(0.01)


# -- the compiled loop and the public steps ------------------------------------------


def test_steps_per_execution_runs_the_same_training_in_one_compiled_loop(make_data):
    x, y, x_meta, y_meta = make_data()
    results = {}
    for spe in (1, 4):
        model = _meta_model(
            tml.MetaLoss(from_logits=True, family="generalized_ce"),
            meta_every=3,
            meta_optimizer=keras.optimizers.Adam(0.05),
            steps_per_execution=spe,
        )
        model.fit(
            x, y, meta_data=(x_meta, y_meta), batch_size=8, epochs=2, shuffle=False, verbose=0
        )
        results[spe] = model
        # Meta steps 0, 3, ..., 15 of 16.
        assert int(model.meta_optimizer.iterations.numpy()) == 6
        # One trace serves meta and plain steps, every call and both epochs.
        assert model.train_function.compiled_loop.experimental_get_tracing_count() == 1
    for a, b in zip(results[1].trainable_variables, results[4].trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(
        results[1].loss.trainable_variables[0].numpy(),
        results[4].loss.trainable_variables[0].numpy(),
        rtol=1e-6,
    )


def test_subclass_steps_are_what_fit_runs(make_data):
    class Counting(tml.MetaModel):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.counts = keras.Variable([0, 0], dtype="int32", trainable=False)

        def train_step(self, data):
            self.counts.assign_add([1, 0])
            return super().train_step(data)

        def meta_train_step(self, data, meta_batch):
            self.counts.assign_add([0, 1])
            return super().meta_train_step(data, meta_batch)

    x, y, x_meta, y_meta = make_data()
    model = Counting(*_mlp())
    # No guard: a guard that reverts gives the model its run's copy of every
    # non-trainable variable, the counts too.
    model.compile(
        optimizer="sgd",
        loss=tml.MetaLoss(from_logits=True, family="generalized_ce"),
        meta_every=4,
        meta_guard=None,
    )
    model.fit(x, y, meta_data=(x_meta, y_meta), batch_size=8, epochs=1, verbose=0)
    assert model.counts.numpy().tolist() == [6, 2]  # 8 steps, meta at 0 and 4


def test_deprecated_compile_names_warn_and_still_work():
    model = _model()
    with pytest.warns(DeprecationWarning) as caught:
        model.compile(
            optimizer="sgd",
            loss=tml.MetaLoss(from_logits=True, family="generalized_ce"),
            meta_loss="sparse_categorical_crossentropy",
            meta_clipnorm=2.0,
        )
    # Keras's own (on JAX, NumPy 2's about `Variable.__array__`) aside.
    keras_dir = os.path.dirname(keras.__file__) + os.sep
    ours = [w for w in caught if not os.path.abspath(w.filename).startswith(keras_dir)]
    assert sorted(str(w.message).split("(")[1].split("=")[0] for w in ours) == [
        "meta_clipnorm",
        "meta_loss",
    ]
    assert type(model.meta_objective).__name__ == "SparseCategoricalCrossentropy"
    assert model.meta_global_clipnorm == 2.0
    with pytest.warns(DeprecationWarning, match="use `meta_objective`"):
        assert model.meta_loss is model.meta_objective
    with pytest.raises(ValueError, match="were both given"):
        model.compile(
            optimizer="sgd",
            loss=tml.MetaLoss(from_logits=True, family="generalized_ce"),
            meta_loss="mse",
            meta_objective="mse",
        )


def test_compute_meta_gradient_changes_nothing(make_data):
    x, y, x_meta, y_meta = make_data()
    model = _meta_model(tml.MetaLoss(from_logits=True, family="generalized_ce"))
    before = [v.numpy() for v in model.trainable_variables + model.loss.trainable_variables]
    result = model.compute_meta_gradient((x[:16], y[:16]), (x_meta, y_meta))
    assert np.linalg.norm(_flat(result.phi_grads)) > 0
    after = [v.numpy() for v in model.trainable_variables + model.loss.trainable_variables]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    assert int(model.optimizer.iterations.numpy()) == 0


def test_fit_keeps_its_iterators_out_of_the_models_checkpoint_dependencies(make_data):
    # An iterator of one `fit` is not the model's state: tracked, it became a
    # dependency of any `tf.train.Checkpoint` of the model during `fit`.
    x, y, x_meta, y_meta = make_data()
    model = _meta_model(tml.MetaLoss(from_logits=True, family="generalized_ce"))
    seen = []

    class Children(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            assert self.model._meta_iterator is not None
            seen.append(sorted(self.model._trackable_children()))

    model.fit(
        x, y, meta_data=(x_meta, y_meta), batch_size=32, epochs=1, verbose=0, callbacks=[Children()]
    )
    assert len(seen) == 2
    for children in seen:
        assert not [name for name in children if "iterator" in name or "source" in name]
