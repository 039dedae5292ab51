"""Tests of `ClassAdjustedLoss` (per-class offsets, weights and margins)."""

import json

import keras
import numpy as np
import pytest

import tf_metaloss as tml
from tf_metaloss.losses import ClassAdjustedLoss
from tf_metaloss.losses import FixedLoss

LABELS = np.array([0, 2, 1, 1, 3])
LOGITS = np.random.default_rng(0).normal(size=(5, 4)).astype("float32") * 2
OFFSETS = np.array([0.5, -0.3, 1.0, 0.0], "float32")
WEIGHTS = np.array([1.0, 2.0, 0.5, 0.5], "float32")
MARGINS = np.array([0.1, 0.4, 0.0, 0.7], "float32")


def _ce(logits, labels=LABELS):
    logits = logits.astype("float64")
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -log_p[np.arange(len(labels)), labels]


def _assign(loss, **values):
    for name, variable in zip(loss.parameter_names, loss.trainable_variables):
        variable.assign(values[name])


def test_starts_as_cross_entropy():
    loss = ClassAdjustedLoss(4, weights=True, margins=True, reduction=None)
    np.testing.assert_allclose(loss(LABELS, LOGITS), _ce(LOGITS), rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"offsets": True},
        {"offsets": False, "weights": True},
        {"offsets": False, "margins": True},
        {"offsets": True, "weights": True, "margins": True},
    ],
)
def test_golden_values(kwargs):
    loss = ClassAdjustedLoss(4, reduction=None, **kwargs)
    values = {"offset": OFFSETS, "weight": WEIGHTS, "margin": MARGINS}
    _assign(loss, **values)
    z = LOGITS.copy()
    if kwargs.get("offsets"):
        z = z + OFFSETS
    if kwargs.get("margins"):
        z[np.arange(len(LABELS)), LABELS] -= MARGINS[LABELS]
    expected = _ce(z)
    if kwargs.get("weights"):
        expected = expected * (WEIGHTS / WEIGHTS.mean())[LABELS]
    np.testing.assert_allclose(loss(LABELS, LOGITS), expected, rtol=1e-5)


COUNTS = [50.0, 20.0, 8.0, 2.0]
LOG_PRIOR = np.log(np.array(COUNTS) / sum(COUNTS))


@pytest.mark.parametrize("offsets", [False, True])
def test_temperature_of_the_prior_golden_values(offsets):
    loss = ClassAdjustedLoss(4, class_counts=COUNTS, offsets=offsets, reduction=None)
    np.testing.assert_allclose(loss(LABELS, LOGITS), _ce(LOGITS + LOG_PRIOR), rtol=1e-5)
    _assign(loss, tau=np.float32(1.7), offset=OFFSETS)
    expected = LOGITS + 1.7 * LOG_PRIOR + (OFFSETS if offsets else 0.0)
    np.testing.assert_allclose(loss(LABELS, LOGITS), _ce(expected), rtol=1e-5)
    assert loss.parameter_names == (["tau", "offset"] if offsets else ["tau"])


def test_temperature_changes_nothing_on_balanced_counts():
    loss = ClassAdjustedLoss(4, class_counts=[30, 30, 30, 30], reduction=None)
    _assign(loss, tau=np.float32(3.0))
    np.testing.assert_allclose(loss(LABELS, LOGITS), _ce(LOGITS), rtol=1e-5)
    # Exactly cross-entropy, value and gradient, and tau's gradient is 0, not None.
    logits = keras.ops.convert_to_tensor(LOGITS, dtype="float32")
    mean_loss = ClassAdjustedLoss(4, from_logits=True, class_counts=[30, 30, 30, 30])
    _assign(mean_loss, tau=np.float32(3.0))
    fixed = FixedLoss("crossentropy", from_logits=True)
    # Gradients with respect to the logits and to tau (its value, as `stateless_call` takes it).
    adjusted, (logits_gradient, tau_gradient) = tml.backend.value_and_grad(
        lambda w: mean_loss.stateless_call([w[1]], LABELS, w[0]), wrt_weights=False
    )([logits, tml.backend.read(mean_loss.trainable_variables)[0]])
    plain, (plain_gradient,) = tml.backend.value_and_grad(
        lambda w: fixed(LABELS, w[0]), wrt_weights=False
    )([logits])
    assert float(adjusted) == float(plain) == float(mean_loss(LABELS, logits))
    np.testing.assert_array_equal(logits_gradient, plain_gradient)
    assert tau_gradient is not None and float(tau_gradient) == 0.0


def test_temperature_starts_where_asked_and_is_summarised():
    loss = ClassAdjustedLoss(4, class_counts=np.array([5, 4, 3, 2]), initial_temperature=0.5)
    assert float(loss.trainable_variables[0].numpy()) == 0.5
    assert list(loss.parameter_summary()) == ["phi/tau"]
    np.testing.assert_allclose(
        loss(LABELS, LOGITS),
        np.mean(_ce(LOGITS + 0.5 * np.log(np.array([5, 4, 3, 2]) / 14))),
        rtol=1e-5,
    )


def test_probabilities_one_hot_labels_and_binary_output():
    probs = keras.ops.convert_to_numpy(keras.ops.softmax(LOGITS))
    loss = ClassAdjustedLoss(4, from_logits=False, reduction=None)
    loss.trainable_variables[0].assign(OFFSETS)
    np.testing.assert_allclose(loss(LABELS, probs), _ce(LOGITS + OFFSETS), rtol=1e-4)
    one_hot = np.eye(4, dtype="float32")[LABELS]
    np.testing.assert_allclose(loss(one_hot, probs), loss(LABELS, probs), rtol=1e-6)
    binary = ClassAdjustedLoss(2, reduction=None)
    logit = np.array([[0.3], [-1.2]], "float32")
    two_class = np.concatenate([np.zeros_like(logit), logit], -1)
    np.testing.assert_allclose(
        binary(np.array([1, 0]), logit), _ce(two_class, np.array([1, 0])), rtol=1e-5
    )


def test_weights_are_normalised_to_mean_one():
    loss = ClassAdjustedLoss(4, offsets=False, weights=True, reduction=None)
    loss.trainable_variables[0].assign(WEIGHTS)
    scaled = ClassAdjustedLoss(4, offsets=False, weights=True, reduction=None)
    scaled.trainable_variables[0].assign(WEIGHTS * 3)
    np.testing.assert_allclose(loss(LABELS, LOGITS), scaled(LABELS, LOGITS), rtol=1e-6)
    np.testing.assert_allclose(np.mean(loss.class_weights()), 1.0, rtol=1e-6)


def test_initial_offsets_start_and_reset():
    prior = np.log([0.5, 0.25, 0.15, 0.1])
    loss = ClassAdjustedLoss(4, initial_offsets=prior.tolist(), reduction=None)
    np.testing.assert_allclose(loss(LABELS, LOGITS), _ce(LOGITS + prior), rtol=1e-5)
    loss.trainable_variables[0].assign(np.zeros(4))
    loss.reset_parameters()
    np.testing.assert_allclose(loss.trainable_variables[0].numpy(), prior, rtol=1e-6)


def test_default_bounds():
    loss = ClassAdjustedLoss(4, weights=True, margins=True)
    offset, weight, margin = loss.trainable_variables
    assert offset.constraint.low == -10.0 and offset.constraint.high == 10.0
    assert float(weight.constraint(np.float32(-1.0))) == pytest.approx(0.01)
    assert float(margin.constraint(np.float32(-1.0))) == 0.0


def test_parameter_summary_names_every_class():
    loss = ClassAdjustedLoss(10, margins=True)
    keys = list(loss.parameter_summary())
    assert keys == [f"phi/offset/{i}" for i in range(10)] + [f"phi/margin/{i}" for i in range(10)]
    assert loss.element_labels("offset", 3) == ["offset/0", "offset/1", "offset/2"]


@pytest.mark.parametrize("weights, margins", [(False, False), (True, True)])
def test_contract(weights, margins):
    tml.testing.run_learnable_loss_test(
        lambda **kw: ClassAdjustedLoss(4, weights=weights, margins=margins, **kw),
        starts_as="crossentropy",
    )


def test_contract_with_class_counts():
    # Starts at logit adjustment, not cross-entropy: no `starts_as`.
    tml.testing.run_learnable_loss_test(
        lambda **kw: ClassAdjustedLoss(4, class_counts=COUNTS, offsets=True, **kw)
    )


def test_serialization_round_trip():
    loss = ClassAdjustedLoss(
        3,
        weights=True,
        margins=True,
        initial_offsets=[0.1, 0.0, -0.1],
        class_counts=[9, 3, 1],
        initial_temperature=1.5,
        name="adjusted",
    )
    config = loss.get_config()
    assert config["class_counts"] == [9.0, 3.0, 1.0] and config["initial_temperature"] == 1.5
    assert ClassAdjustedLoss.from_config(config).get_config() == config
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(loss)))
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is ClassAdjustedLoss and restored.get_config() == config


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_classes": 1}, "argument `num_classes`"),
        ({"num_classes": 2.0}, "argument `num_classes`"),
        ({"num_classes": 3, "offsets": False}, "argument `offsets`"),
        ({"num_classes": 3, "weights": "yes"}, "argument `weights`"),
        ({"num_classes": 3, "initial_offsets": [0.0, 1.0]}, "argument `initial_offsets`"),
        ({"num_classes": 2, "initial_offsets": [0.0, float("nan")]}, "argument `initial_offsets`"),
        (
            {"num_classes": 2, "offsets": False, "weights": True, "initial_offsets": [0, 0]},
            "argument `initial_offsets`",
        ),
        ({"num_classes": 3, "class_counts": [5, 2]}, r"argument `class_counts`.*3 positive"),
        ({"num_classes": 3, "class_counts": [5, 2, 0]}, r"argument `class_counts`.*np.bincount"),
        ({"num_classes": 2, "class_counts": ["a", 1]}, "argument `class_counts`"),
        (
            {"num_classes": 2, "class_counts": [3, 1], "initial_temperature": -1.0},
            r"argument `initial_temperature`.*\[0, 10\]",
        ),
    ],
)
def test_argument_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ClassAdjustedLoss(**kwargs)


def test_wrong_number_of_classes_says_how_to_fix():
    with pytest.raises(ValueError, match=r"argument `y_pred`.*Pass num_classes=4"):
        ClassAdjustedLoss(3)(LABELS, LOGITS)


def _meta_model(loss, classes=3, features=6, seed=0, **compile_kwargs):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((features,))
    hidden = keras.layers.Dense(8, activation="tanh")(inputs)
    model = tml.MetaModel(inputs, keras.layers.Dense(classes)(hidden))
    model.compile(
        optimizer=keras.optimizers.SGD(0.5),
        loss=loss,
        meta_optimizer=keras.optimizers.Adam(0.05),
        **compile_kwargs,
    )
    return model


@pytest.mark.parametrize("unroll_steps", [1, 2])
def test_meta_gradient_matches_finite_differences(classification_data, float64, unroll_steps):
    x, y, x_meta, y_meta = classification_data(
        n=16, n_meta=8, features=6, classes=3, dtype="float64", label_dtype="int64"
    )
    loss = ClassAdjustedLoss(3, weights=True, margins=True, class_counts=[7, 3, 1], offsets=True)
    rng = np.random.default_rng(1)
    for variable in loss.trainable_variables:
        variable.assign(variable.numpy() + 0.3 * np.abs(rng.normal(size=variable.shape)))
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    # `tml.backend.tanh` keeps float64 (Keras's "tanh" rounds it to float32 on JAX).
    hidden = keras.layers.Dense(8, activation=tml.backend.tanh)(inputs)
    model = tml.MetaModel(inputs, keras.layers.Dense(3)(hidden))
    model.compile(
        optimizer=keras.optimizers.SGD(0.5),
        loss=loss,
        meta_optimizer="sgd",
        unroll_steps=unroll_steps,
    )
    error = tml.testing.check_meta_gradient(model, (x, y), (x_meta, y_meta), rtol=1e-5)
    assert error < 1e-5


def _long_tailed_data():
    """100 training samples of 3 classes (90 / 6 / 4) and a balanced meta set of 30."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 6)) * 1.5
    y = np.array([0] * 90 + [1] * 6 + [2] * 4)
    x = (centers[y] + rng.normal(size=(100, 6))).astype("float32")
    y_meta = np.repeat(np.arange(3), 10)
    x_meta = (centers[y_meta] + rng.normal(size=(30, 6))).astype("float32")
    return x, y, x_meta, y_meta


def test_offsets_learn_toward_the_frequent_classes(classification_data):
    # Training labels mostly class 0, a balanced meta set: the meta step must
    # raise class 0's offset above the rare classes' (logit adjustment's sign).
    # Without the guard, whose run (cross-entropy on the training and the balanced
    # meta data) would be kept here and take phi back to its start.
    x, y, x_meta, y_meta = _long_tailed_data()
    model = _meta_model(ClassAdjustedLoss(3), meta_guard=None)
    model.fit(x, y, meta_data=(x_meta, y_meta), batch_size=20, epochs=5, verbose=0)
    offset = model.loss.trainable_variables[0].numpy()
    assert offset[0] > offset[1] and offset[0] > offset[2], offset


def test_temperature_learns_to_correct_the_prior():
    # Started at tau=0 (cross-entropy) on long-tailed training data with a
    # balanced meta set, the meta step must raise tau (toward logit adjustment).
    x, y, x_meta, y_meta = _long_tailed_data()
    loss = ClassAdjustedLoss(3, class_counts=np.bincount(y), initial_temperature=0.0)
    model = _meta_model(loss)
    model.compile(
        optimizer=keras.optimizers.SGD(0.5),
        loss=loss,
        meta_optimizer=keras.optimizers.Adam(0.05),
        meta_guard=None,
    )
    model.fit(x, y, meta_data=(x_meta, y_meta), batch_size=20, epochs=5, verbose=0)
    assert float(loss.trainable_variables[0].numpy()) > 0.2


def test_saves_and_loads_inside_a_meta_model(classification_data, tmp_path):
    x, y, x_meta, y_meta = classification_data(
        n=32, n_meta=12, features=6, classes=3, label_dtype="int64"
    )
    model = _meta_model(ClassAdjustedLoss(3, weights=True, margins=True))
    model.fit(x, y, meta_data=(x_meta, y_meta), batch_size=8, epochs=1, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored.loss, ClassAdjustedLoss)
    assert restored.loss.get_config() == model.loss.get_config()
    for a, b in zip(restored.loss.trainable_variables, model.loss.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert np.abs(model.loss.trainable_variables[0].numpy()).max() > 0
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0))
