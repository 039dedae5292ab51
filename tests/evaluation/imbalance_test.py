"""Tests of the imbalance helpers: subsampling, metrics and the fixed baselines."""

import json

import keras
import numpy as np
import pytest

from tf_metaloss.evaluation import imbalance
from tf_metaloss.evaluation import splits


def test_long_tailed_counts_follow_the_exponential_profile():
    counts = imbalance.long_tailed_counts(1000, ratio=50, num_classes=10)
    expected = np.floor(1000 * 50.0 ** (-np.arange(10) / 9))
    np.testing.assert_array_equal(counts, expected)
    assert counts[0] == 1000 and counts[-1] == 20
    np.testing.assert_array_equal(imbalance.long_tailed_counts(7, 1, 3), [7, 7, 7])
    # Never empty.
    assert imbalance.long_tailed_counts(10, 1000, 4).min() == 1


def test_long_tailed_indices_are_seeded_subsets_with_the_profile():
    y = np.repeat(np.arange(4), [300, 250, 260, 280])
    first = imbalance.long_tailed_indices(y, 10, 4, seed=0)
    assert np.bincount(y[first]).tolist() == imbalance.long_tailed_counts(250, 10, 4).tolist()
    assert np.all(np.diff(first) > 0)
    np.testing.assert_array_equal(first, imbalance.long_tailed_indices(y, 10, 4, seed=0))
    assert not np.array_equal(first, imbalance.long_tailed_indices(y, 10, 4, seed=1))


def test_balanced_indices():
    y = np.repeat(np.arange(3), [50, 10, 30])
    meta = imbalance.balanced_indices(y, 4, 3, seed=2)
    assert np.bincount(y[meta]).tolist() == [4, 4, 4]
    assert not np.array_equal(meta, imbalance.balanced_indices(y, 4, 3, seed=3))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: imbalance.long_tailed_counts(10, 0.5, 3), "argument `ratio`"),
        (lambda: imbalance.long_tailed_counts(10, float("inf"), 3), "argument `ratio`"),
        (lambda: imbalance.long_tailed_counts(0, 2, 3), "argument `n_max`"),
        (lambda: imbalance.long_tailed_indices(np.array([0, 1, 1]), 2, 3, 0), "argument `labels`"),
        (lambda: imbalance.long_tailed_indices(np.array([0.0, 1.0]), 2, 2, 0), "argument `labels`"),
        (lambda: imbalance.balanced_indices(np.array([0, 1, 1]), 1, 2, 0), "argument `per_class`"),
    ],
)
def test_argument_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_metrics_golden_values():
    y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 0, 0, 1, 1, 0, 2, 1])
    np.testing.assert_allclose(imbalance.class_accuracies(y_true, y_pred, 4)[:3], [0.75, 0.5, 0.5])
    assert np.isnan(imbalance.class_accuracies(y_true, y_pred, 4)[3])
    assert imbalance.balanced_accuracy(y_true, y_pred, 4) == pytest.approx((0.75 + 0.5 + 0.5) / 3)
    scores = np.eye(3)[y_pred]
    assert imbalance.balanced_accuracy(y_true, scores, 3) == pytest.approx(1.75 / 3)
    # The 2 rarest classes by training count are 2 and 0.
    assert imbalance.rarest_accuracy(y_true, y_pred, [5, 100, 1], k=2) == pytest.approx(0.625)


def test_baseline_parameters_golden_values():
    counts = np.array([100, 25, 4])
    np.testing.assert_allclose(
        imbalance.class_balanced_weights(counts), 3 * np.array([1, 4, 25]) / 30
    )
    np.testing.assert_allclose(
        imbalance.logit_adjustment_offsets(counts), np.log(counts / 129.0), rtol=1e-12
    )
    margins = imbalance.ldam_margins(counts, max_margin=2.0)
    np.testing.assert_allclose(margins, 2.0 * (counts / 4.0) ** -0.25)
    weights = imbalance.effective_number_weights(counts, beta=0.9)
    raw = (1 - 0.9) / (1 - 0.9 ** counts.astype(float))
    np.testing.assert_allclose(weights, 3 * raw / raw.sum())


def _ce(logits, labels):
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -log_p[np.arange(len(labels)), labels]


def test_adjusted_cross_entropy_golden_values_and_serialization():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 3)).astype("float32")
    y = np.array([0, 1, 2, 2, 1])
    offsets, margins, weights = [0.5, 0.0, -1.0], [0.0, 0.3, 0.9], [0.5, 1.0, 1.5]
    loss = imbalance.AdjustedCrossEntropy(offsets, margins, weights, reduction=None)
    z = logits + np.array(offsets, "float32")
    z[np.arange(5), y] -= np.array(margins)[y]
    expected = _ce(z.astype("float64"), y) * np.array(weights)[y]
    np.testing.assert_allclose(loss(y, logits), expected, rtol=1e-5)
    config = loss.get_config()
    restored = keras.saving.deserialize_keras_object(
        json.loads(json.dumps(keras.saving.serialize_keras_object(loss)))
    )
    assert restored.get_config() == config
    np.testing.assert_allclose(restored(y, logits), expected, rtol=1e-5)
    plain = imbalance.AdjustedCrossEntropy(num_classes=3, reduction=None)
    np.testing.assert_allclose(plain(y, logits), _ce(logits.astype("float64"), y), rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"offsets": [0.0, 1.0], "margins": [0.0, 1.0, 2.0]}, {"offsets": [0.0]}],
)
def test_adjusted_cross_entropy_needs_per_class_values_of_one_length(kwargs):
    with pytest.raises(ValueError, match="argument `offsets`"):
        imbalance.AdjustedCrossEntropy(**kwargs)


def test_deferred_reweighting_switches_the_weights_during_fit():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = rng.integers(0, 2, 32)
    loss = imbalance.AdjustedCrossEntropy(margins=[0.0, 0.5])
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(loss.class_weights.numpy().tolist())

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss=loss)
    drw = imbalance.DeferredReweighting(loss, weights=[0.25, 1.75], start_epoch=2)
    history = model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[drw, Record()])
    assert seen == [[1.0, 1.0], [1.0, 1.0], [0.25, 1.75]]
    assert np.all(np.isfinite(history.history["loss"]))


def test_imbalanced_split(toy_dataset, small_config):
    data = toy_dataset(n_train=600, n_val=90, classes=3)
    config = small_config(imbalance_ratio=10, meta_per_class=5)
    split = splits.make_split(data, config, seed=0)
    assert np.bincount(split.y_meta).tolist() == [5, 5, 5]
    assert split.class_counts.tolist() == [195, 61, 19]
    assert np.bincount(split.y_train).tolist() == split.class_counts.tolist()
    assert split.describe()["train_class_counts"] == [195, 61, 19]
    # The meta set and the training part are disjoint; evaluation is untouched.
    rows = {tuple(r) for r in split.x_train}
    assert not any(tuple(r) in rows for r in split.x_meta)
    np.testing.assert_array_equal(split.y_eval, data.y_val)
    other = splits.make_split(data, config, seed=1)
    assert other.class_counts.tolist() == [195, 61, 19]
    assert not np.array_equal(other.x_train, split.x_train)
    # Without imbalance nothing changes.
    assert splits.make_split(data, small_config(), seed=0).class_counts is None
