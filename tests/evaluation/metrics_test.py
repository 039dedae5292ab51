import keras
import numpy as np
import pytest
from sklearn import metrics as sk_metrics

import tf_metaloss as tml
from tf_metaloss.evaluation import metrics

# -- functions -------------------------------------------------------------------


def test_accuracy_of_labels_and_of_scores():
    assert metrics.accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    scores = np.array([[2.0, 0.0], [3.0, 1.0], [0.0, 1.0]])
    assert metrics.accuracy([0, 1, 1], scores) == pytest.approx(2 / 3)
    # One-hot labels and (n, 1) labels are accepted too.
    assert metrics.accuracy(np.eye(2)[[0, 1, 1]], scores) == pytest.approx(2 / 3)
    assert metrics.accuracy(np.array([[0], [1]]), [0, 0]) == 0.5


@pytest.mark.parametrize(
    "y_true, y_pred, match",
    [
        ([0, 1], [0], "same number of samples"),
        ([], [], "must not be empty"),
        ([0.5, 1.0], [0, 1], "Expected integer labels"),
        (np.zeros((2, 2, 2)), [0, 1], "shape"),
    ],
)
def test_accuracy_rejects_bad_input(y_true, y_pred, match):
    with pytest.raises(ValueError, match=match):
        metrics.accuracy(y_true, y_pred)


def test_macro_f1_by_hand():
    # class 0: TP 1, FP 0, FN 1 -> 2/3; class 1: TP 2, FP 1, FN 0 -> 4/5.
    assert metrics.macro_f1([0, 0, 1, 1], [0, 1, 1, 1]) == pytest.approx((2 / 3 + 0.8) / 2)
    # Perfect predictions.
    assert metrics.macro_f1([2, 0, 1], [2, 0, 1]) == 1.0
    # With num_classes, an absent class (2) counts as F1 = 0.
    assert metrics.macro_f1([0, 0, 1, 1], [0, 1, 1, 1], num_classes=3) == pytest.approx(
        (2 / 3 + 0.8) / 3
    )


def test_macro_f1_matches_scikit_learn():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 5, 300)
    y_pred = np.where(rng.random(300) < 0.6, y_true, rng.integers(0, 5, 300))
    expected = sk_metrics.f1_score(y_true, y_pred, average="macro")
    assert metrics.macro_f1(y_true, y_pred) == pytest.approx(expected, abs=1e-12)
    assert metrics.macro_f1(y_true, y_pred, num_classes=5) == pytest.approx(expected, abs=1e-12)


def test_macro_f1_rejects_labels_outside_num_classes():
    with pytest.raises(ValueError, match="num_classes"):
        metrics.macro_f1([0, 3], [0, 1], num_classes=3)
    with pytest.raises(ValueError, match="num_classes"):
        metrics.macro_f1([0, 1], [0, 1], num_classes=0)


def test_generalization_gap():
    assert metrics.generalization_gap(0.98, 0.9) == pytest.approx(0.08)
    assert metrics.generalization_gap(0.5, 0.7) == pytest.approx(-0.2)


@pytest.mark.parametrize(
    "curve, fraction, expected",
    [
        ([0.2, 0.5, 0.86, 0.9, 0.95], 0.9, 3),  # 0.855 first reached at epoch 3
        ([0.2, 0.5, 0.85, 0.9, 0.95], 0.9, 4),  # 0.85 < 0.855
        ([0.2, 0.5, 0.85, 0.9, 0.95], 1.0, 5),
        ([0.5, 0.95, 0.6], 0.9, 2),  # final 0.6 -> target 0.54, passed at epoch 2
        ([0.7], 0.9, 1),
        ([0.0, 0.0], 0.9, 1),  # final 0: every epoch reaches it
    ],
)
def test_convergence_epoch(curve, fraction, expected):
    assert metrics.convergence_epoch(curve, fraction) == expected


def test_convergence_epoch_rejects_bad_input():
    with pytest.raises(ValueError, match="curve"):
        metrics.convergence_epoch([])
    with pytest.raises(ValueError, match="curve"):
        metrics.convergence_epoch([0.1, float("nan")])
    with pytest.raises(ValueError, match="fraction"):
        metrics.convergence_epoch([0.1, 0.2], fraction=0.0)


def test_gradient_norm_stability_by_hand():
    stats = metrics.gradient_norm_stability([1.0, 3.0])
    assert stats == {"mean": 2.0, "variance": 1.0, "cv": 0.5, "max": 3.0, "steps": 2}
    stats = metrics.gradient_norm_stability([2.0, 2.0, float("nan"), 2.0])
    assert stats["variance"] == 0.0 and stats["cv"] == 0.0 and stats["steps"] == 3
    with pytest.raises(ValueError, match="finite"):
        metrics.gradient_norm_stability([float("inf")])


# -- callbacks -------------------------------------------------------------------


def _linear_model(weights):
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(
        1,
        use_bias=False,
        kernel_initializer=keras.initializers.Constant(np.asarray(weights)[:, None]),
    )(inputs)
    return keras.Model(inputs, outputs)


def test_gradient_norm_history_records_the_applied_gradients():
    # Full-batch gradient descent on MSE of a linear model: g = 2/n X^T (Xw - y).
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3)).astype("float32")
    y = rng.normal(size=(16, 1)).astype("float32")
    w = np.array([0.5, -1.0, 2.0])
    model = _linear_model(w)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    optimizer = model.optimizer
    history = metrics.GradientNormHistory()
    model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0, callbacks=[history])
    expected = []
    for _ in range(3):
        g = 2.0 / len(x) * x.T @ (x @ w[:, None] - y)
        expected.append(np.linalg.norm(g))
        w = w - 0.1 * g[:, 0]
    np.testing.assert_allclose(history.norms, expected, rtol=1e-5)
    # The optimizer is restored after fit.
    assert "apply" not in vars(optimizer)


def test_gradient_norm_history_with_a_meta_model():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 3)).astype("float32")
    y = rng.integers(0, 2, 32)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    model = tml.MetaModel(inputs, keras.layers.Dense(2)(inputs))
    model.compile(
        optimizer=keras.optimizers.SGD(0.1), loss=tml.MetaLoss(from_logits=True), meta_every=2
    )
    history = metrics.GradientNormHistory()
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=2,
        shuffle=False,
        verbose=0,
        meta_data=(x[:8], y[:8]),
        callbacks=[history],
    )
    # One norm per step (meta steps and plain steps), and the meta optimizer
    # of phi is not counted.
    assert len(history.norms) == 8
    assert all(np.isfinite(history.norms)) and min(history.norms) > 0
    assert "apply" not in vars(model.optimizer)


def test_classification_history_on_a_fixed_model():
    # Logits = x @ W: predictions are known in advance.
    x = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], "float32")
    inputs = keras.Input((3,))
    logits = keras.layers.Dense(3, use_bias=False, kernel_initializer="identity")(inputs)
    model = keras.Model(inputs, logits)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    predicted = np.array([0, 1, 2, 0])
    y_clean = np.array([0, 1, 1, 0])
    y_noisy = np.array([1, 1, 2, 0])
    mask = y_noisy != y_clean
    history = metrics.ClassificationHistory(
        {"val": (x, y_clean), "train": (x, y_clean, y_noisy, mask)}, num_classes=3
    )
    model.fit(x, np.zeros((4, 3)), epochs=2, verbose=0, callbacks=[history])
    assert history.history["val_accuracy"] == [0.75, 0.75]
    assert history.history["val_macro_f1"][0] == pytest.approx(
        sk_metrics.f1_score(y_clean, predicted, average="macro", labels=[0, 1, 2])
    )
    # Noisy samples: 0 (noisy label 1, predicted 0) and 2 (noisy 2, predicted 2).
    assert history.history["train_memorized"] == [0.5, 0.5]
    assert history.seconds > 0


def test_classification_history_rejects_bad_data():
    with pytest.raises(ValueError, match="non-empty dict"):
        metrics.ClassificationHistory({}, num_classes=2)
    with pytest.raises(ValueError, match="data\\['val'\\]"):
        metrics.ClassificationHistory({"val": (1, 2, 3)}, num_classes=2)


def test_parameter_history_records_phi_and_mixture():
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    y = np.arange(16) % 2
    inputs = keras.Input((3,))
    model = tml.MetaModel(inputs, keras.layers.Dense(2)(inputs))
    loss = tml.BlendLoss(["crossentropy", "focal"], initial_weights=[3.0, 1.0], from_logits=True)
    model.compile(optimizer="sgd", loss=loss, meta_every=0)
    history = metrics.ParameterHistory()
    model.fit(x, y, epochs=2, verbose=0, callbacks=[history])
    assert history.history["phi/crossentropy"] == [3.0, 3.0, 3.0]
    assert history.history["mix/crossentropy"] == pytest.approx([0.75] * 3)
    assert history.history["mix/focal"] == pytest.approx([0.25] * 3)


def test_parameter_history_of_a_fixed_loss_is_empty():
    x = np.zeros((4, 3), "float32")
    model = _linear_model([0.0, 0.0, 0.0])
    model.compile(optimizer="sgd", loss="mse")
    history = metrics.ParameterHistory()
    model.fit(x, np.zeros((4, 1)), epochs=1, verbose=0, callbacks=[history])
    assert history.history == {}


def test_roc_auc_by_hand_and_against_scikit_learn():
    # Pairs (positive, negative): (0.9, 0.3) (0.9, 0.8) (0.8, 0.3) win, (0.8, 0.8) ties.
    assert metrics.roc_auc([0.9, 0.8, 0.3, 0.8], [True, True, False, False]) == 0.875
    assert metrics.roc_auc([1, 2], [False, True]) == 1.0
    assert metrics.roc_auc([1, 2], [True, False]) == 0.0
    assert np.isnan(metrics.roc_auc([1, 2], [True, True]))
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, 300).astype(float)  # many ties
    positive = rng.random(300) < 0.4
    assert metrics.roc_auc(scores, positive) == pytest.approx(
        sk_metrics.roc_auc_score(positive, scores), abs=1e-12
    )
    with pytest.raises(ValueError, match="argument `positive`"):
        metrics.roc_auc([1, 2], [1, 0])


def test_transition_distance():
    identity = np.eye(3)
    assert metrics.transition_distance(identity, identity) == 0.0
    assert metrics.transition_distance(identity, np.roll(identity, 1, axis=1)) == 1.0
    assert metrics.transition_distance(identity, [[0.5, 0.5, 0], [0, 1, 0], [0, 0, 1]]) == (
        pytest.approx(0.5 / 3)
    )
    with pytest.raises(ValueError, match="argument `estimate`"):
        metrics.transition_distance(np.eye(2), identity)
