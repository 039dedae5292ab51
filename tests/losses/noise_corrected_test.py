import keras
import numpy as np
import pytest

import tf_metaloss as tml
from tf_metaloss.losses import NoiseCorrectedLoss
from tf_metaloss.losses.noise_corrected import updated_confusion

LOGITS = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-1.0, 2.0, 0.0], [1.0, 1.0, 3.0]], "float32")
LABELS = np.array([0, 2, 1, 0])


def _probs():
    return keras.ops.convert_to_numpy(keras.ops.softmax(LOGITS))


def test_golden_values():
    loss = NoiseCorrectedLoss(q=0.5, num_classes=3, from_logits=True, reduction=None)
    confusion = np.array([[0.6, 0.4, 0.0], [0.0, 1.0, 0.0], [0.1, 0.1, 0.8]], "float32")
    loss.confusion.assign(confusion)
    loss.trainable_variables[0].assign(0.25)
    p = _probs()
    gce = (1 - p[np.arange(4), LABELS] ** 0.5) / 0.5
    corrected = -np.log((p @ confusion)[np.arange(4), LABELS])
    np.testing.assert_allclose(loss(LABELS, LOGITS), 0.75 * gce + 0.25 * corrected, rtol=1e-5)


def test_starts_as_gce_and_confusion_starts_as_identity():
    loss = NoiseCorrectedLoss(num_classes=3, from_logits=True)
    np.testing.assert_array_equal(loss.confusion.numpy(), np.eye(3))
    gce = tml.losses.FixedLoss("generalized_crossentropy", q=0.7, from_logits=True)
    np.testing.assert_allclose(loss(LABELS, LOGITS), gce(LABELS, LOGITS), rtol=1e-6)


def test_contract():
    # Without `num_classes` there is no estimate yet (C = identity).
    tml.testing.run_learnable_loss_test(
        lambda **kw: NoiseCorrectedLoss(from_logits=True, **kw),
        starts_as="generalized_crossentropy",
    )


def test_confusion_moves_toward_the_reference_predictions():
    loss = NoiseCorrectedLoss(num_classes=3, confusion_momentum=0.5, from_logits=True)
    statistics = loss.reference_statistics(LABELS, LOGITS)
    loss.update_from_reference(statistics)
    p = _probs()
    expected = np.eye(3)
    expected[0] = 0.5 * expected[0] + 0.5 * p[[0, 3]].mean(0)
    expected[1] = 0.5 * expected[1] + 0.5 * p[2]
    expected[2] = 0.5 * expected[2] + 0.5 * p[1]
    np.testing.assert_allclose(loss.confusion.numpy(), expected, rtol=1e-5)
    # A class without a sample keeps its row.
    unchanged = updated_confusion(np.eye(2), np.zeros((2, 2)), np.zeros(2), 0.9)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(unchanged), np.eye(2))


def test_bad_arguments():
    with pytest.raises(ValueError, match="`correction`"):
        NoiseCorrectedLoss(correction=1.5)
    with pytest.raises(ValueError, match="`num_classes`"):
        NoiseCorrectedLoss(num_classes=1)
    with pytest.raises(ValueError, match="`confusion_momentum`"):
        NoiseCorrectedLoss(confusion_momentum=1.0)
    loss = NoiseCorrectedLoss(num_classes=3)
    with pytest.raises(ValueError, match="3 classes"):
        loss.build_state(4)


def test_meta_gradient_matches_finite_differences_in_float64():
    keras.backend.set_floatx("float64")
    try:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(16, 4))
        y = rng.integers(0, 3, size=16)
        inputs = keras.Input((4,))
        model = tml.MetaModel(inputs, keras.layers.Dense(3)(inputs))
        loss = NoiseCorrectedLoss(from_logits=True, dtype="float64")
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss, meta_guard=None)
        assert loss.num_classes == 3
        loss.confusion.assign(np.array([[0.7, 0.3, 0.0], [0.1, 0.8, 0.1], [0.2, 0.0, 0.8]]))
        loss.trainable_variables[0].assign(0.4)
        error = tml.testing.check_meta_gradient(model, (x, y), (x[:8], y[:8]))
        assert error < 1e-5
    finally:
        keras.backend.set_floatx("float32")


def _noisy_problem(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(400, 8)).astype("float32")
    y = (x @ rng.normal(size=(8, 3))).argmax(1)
    noisy = y.copy()
    flip = rng.random(len(y)) < 0.4
    noisy[flip] = (y[flip] + 1) % 3  # class-dependent: i -> i + 1
    return x, y, noisy


def _model(**compile_kwargs):
    keras.utils.set_random_seed(0)  # the same random state whatever ran before
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(16, activation="relu")(inputs)
    model = tml.MetaModel(inputs, keras.layers.Dense(3)(hidden))
    # The same starting weights on every backend (Keras's seeded initializers draw
    # different ones on TensorFlow and JAX): Glorot-uniform kernels drawn with NumPy
    # and zero biases, set before `compile` copies them into the reference runs.
    rng = np.random.default_rng(0)
    for variable in model.trainable_variables:
        if len(variable.shape) == 2:
            limit = np.sqrt(6 / sum(variable.shape))
            variable.assign(rng.uniform(-limit, limit, size=variable.shape).astype("float32"))
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        loss=tml.MetaLoss(from_logits=True),
        meta_optimizer=keras.optimizers.Adam(0.05),
        **compile_kwargs,
    )
    return model


def test_meta_model_learns_the_noise_and_saves_it(tmp_path):
    x, y, noisy = _noisy_problem()
    # Unshuffled training data and seeded meta batches: with the starting weights
    # of `_model`, the same run on every backend.
    model = _model(meta_seed=0)
    assert [r.name for r in model.reference_runs] == ["loss_reference", "guard_reference"]
    history = model.fit(
        x[:300],
        noisy[:300],
        meta_data=(x[300:], y[300:]),
        epochs=4,
        batch_size=32,
        shuffle=False,
        verbose=0,
    )
    assert {"guard_objective", "guard_start_objective", "guard_reverted"} <= set(history.history)
    confusion = model.loss.confusion.numpy()
    # The estimate finds the flips i -> i + 1 (row i puts mass on column i + 1).
    for i in range(3):
        assert confusion[i, (i + 1) % 3] > confusion[i, (i + 2) % 3]
    np.testing.assert_allclose(confusion.sum(1), 1.0, rtol=1e-4)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_array_equal(restored.loss.confusion.numpy(), confusion)
    for mine, theirs in zip(model.reference_runs, restored.reference_runs):
        for a, b in zip(mine.variables, theirs.variables):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_guard_reverts_a_model_worse_than_its_start():
    x, y, noisy = _noisy_problem(1)
    model = _model()

    class Spoil(keras.callbacks.Callback):
        # After the second epoch's check, spoil the model (the guard's run, the starting
        # loss, is untouched): with zero weights only the output bias can learn again.
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                for variable in model.trainable_variables:
                    variable.assign(keras.ops.zeros(variable.shape, variable.dtype))
                model.loss.trainable_variables[0].assign(0.9)

    history = model.fit(
        x[:300],
        noisy[:300],
        meta_data=(x[300:], y[300:]),
        epochs=3,
        batch_size=32,
        verbose=0,
        callbacks=[Spoil()],
    )
    # Without patience the guard compares only at the end of training.
    assert history.history["guard_reverted"] == [0.0, 0.0, 1.0] and model.guard_reverted
    assert model.meta_every == 0
    assert float(model.loss.trainable_variables[0]) == 0.0
    for mine, start in zip(model.trainable_variables, model.guard_reference.weights):
        np.testing.assert_array_equal(mine.numpy(), start.numpy())


def test_guard_errors_and_off_switch():
    with pytest.raises(ValueError, match="meta_guard"):
        _model(meta_guard="sometimes")
    model = _model(meta_guard=None)
    assert model.guard_reference is None and model.loss_reference is not None
    assert [r.name for r in _model(meta_every=0).reference_runs] == []


def test_guard_run_trains_on_the_training_and_the_meta_data():
    # One step, 32 training samples and 40 meta samples (8 held out as check data, 32 in one
    # meta batch): the guard's run takes the starting loss's gradient on the training batch plus
    # n_meta / n_train (= 1) times its gradient on the meta batch.
    x, y, noisy = _noisy_problem(2)
    x_train, y_train, meta = x[:32], noisy[:32], (x[100:140], y[100:140])
    model = _model()
    start = [v.numpy() for v in model.trainable_variables]
    model.fit(x_train, y_train, meta_data=meta, epochs=1, batch_size=32, verbose=0)
    (x_meta, y_meta), _ = tml.models.guard.split_check_data(meta, model.meta_guard)
    assert len(y_meta) == 32
    starting_loss = model.loss.starting_copy()

    def total(weights):
        train_pred, _ = model.stateless_call(weights, [], x_train, training=True)
        meta_pred, _ = model.stateless_call(weights, [], x_meta, training=True)
        return starting_loss(y_train, train_pred) + starting_loss(y_meta, meta_pred)

    _, grads = tml.backend.value_and_grad(total)([keras.ops.convert_to_tensor(w) for w in start])
    for run_weight, w, g in zip(model.guard_reference.weights, start, grads):
        np.testing.assert_allclose(
            run_weight.numpy(), w - 0.1 * keras.ops.convert_to_numpy(g), rtol=1e-4, atol=1e-6
        )
    assert float(model.guard_reference.meta_weight) == 32.0  # meta samples per step
    # The loss's reference run (cross-entropy, for the noise estimate) does not see the meta data.
    assert model.loss_reference.meta_weight is None


def test_guard_meta_samples_per_step():
    import tensorflow as tf

    from tf_metaloss.models.guard import meta_samples_per_step

    meta = (np.zeros((100, 2)), np.zeros(100))
    x = np.zeros((1000, 2))
    # 100 meta samples over 32 steps of 32 (the Keras default batch size).
    assert meta_samples_per_step(x, meta, 1, {}) == 100 / 32
    assert meta_samples_per_step(x, meta, 5, {"batch_size": 100}) == 50.0
    assert meta_samples_per_step(x, meta, 1, {"batch_size": 100, "validation_split": 0.5}) == 20.0
    batches = tf.data.Dataset.from_tensor_slices((x, np.zeros(1000))).batch(250)
    assert meta_samples_per_step(batches, meta, 1, {}) == 25.0
    assert meta_samples_per_step(batches.repeat(), meta, 1, {"steps_per_epoch": 10}) == 10.0
    # Unknown: an endless dataset without steps_per_epoch, or meta data that is a dataset.
    assert meta_samples_per_step(batches.repeat(), meta, 1, {}) == 0.0
    meta_batches = tf.data.Dataset.from_tensor_slices(meta).batch(10)
    assert meta_samples_per_step(x, meta_batches, 1, {}) == 0.0


def test_guard_run_weighs_meta_batches_alike_for_arrays_and_datasets():
    # The same data as arrays and as a batched dataset: the guard's run ends the same.
    import tensorflow as tf

    x, y, noisy = _noisy_problem(3)
    meta = (x[300:], y[300:])
    ends = []
    for as_dataset in (False, True):
        keras.utils.set_random_seed(0)
        model = _model(meta_seed=0)
        data = (x[:256], noisy[:256])
        if as_dataset:
            batches = tf.data.Dataset.from_tensor_slices(data).batch(64)
            model.fit(
                batches, meta_data=meta, meta_batch_size=64, epochs=1, shuffle=False, verbose=0
            )
        else:
            model.fit(*data, meta_data=meta, epochs=1, batch_size=64, shuffle=False, verbose=0)
        assert float(model.guard_reference.meta_weight) == 80 / 4
        ends.append([w.numpy() for w in model.guard_reference.weights])
    for a, b in zip(*ends):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
