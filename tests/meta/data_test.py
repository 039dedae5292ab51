import numpy as np
import pytest
import tensorflow as tf

from tf_metaloss.meta import data


def test_split_meta_takes_the_last_fraction():
    x = np.arange(20).reshape(10, 2)
    y = np.arange(10)
    (x_train, y_train, sw), (x_meta, y_meta) = data.split_meta(x, y, None, 0.3)
    assert sw is None
    np.testing.assert_array_equal(y_train, np.arange(7))
    np.testing.assert_array_equal(y_meta, [7, 8, 9])
    np.testing.assert_array_equal(x_meta, x[7:])


def test_split_meta_rejects_datasets_and_tiny_splits():
    ds = tf.data.Dataset.from_tensor_slices((np.zeros((4, 2)), np.zeros(4)))
    with pytest.raises(ValueError, match="only supported for NumPy arrays"):
        data.split_meta(ds, None, None, 0.5)
    with pytest.raises(ValueError, match="leaves 0 meta samples"):
        data.split_meta(np.zeros((4, 2)), np.zeros(4), None, 0.1)


def test_meta_dataset_cycles_with_fixed_batches_and_skips():
    x = np.arange(10, dtype="float32")[:, None]
    y = np.arange(10)
    batches = list(data.meta_dataset((x, y), 4, seed=1).take(6))
    assert all(b[0].shape == (4, 1) for b in batches)
    seen = np.concatenate([b[1].numpy() for b in batches[:2]])
    assert len(set(seen)) == 8  # Within a pass, no repeats.
    skipped = list(data.meta_dataset((x, y), 4, seed=1, skip_batches=3).take(3))
    for a, b in zip(batches[3:], skipped):
        np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())


def test_meta_dataset_gives_a_dataset_with_a_short_last_batch_a_static_shape():
    x, y = np.zeros((10, 2), "float32"), np.arange(10)
    batched = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)  # 4, 4, 2
    dataset = data.meta_dataset(batched, None)
    assert dataset.element_spec[0].shape == (4, 2)
    assert dataset.element_spec[1].shape == (4,)
    labels = [b[1].numpy().tolist() for b in dataset.take(3)]
    assert labels == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1]]
    # Already static: the batches are kept as they are.
    static = tf.data.Dataset.from_tensor_slices((x, y)).batch(5, drop_remainder=True)
    labels = [
        b[1].numpy().tolist() for b in data.meta_dataset(static, None, skip_batches=1).take(2)
    ]
    assert labels == [[5, 6, 7, 8, 9], [0, 1, 2, 3, 4]]


def test_resumable_dataset_repeats_the_same_batches_with_a_static_shape():
    x, y = np.arange(10, dtype="float32")[:, None], np.arange(10)
    first = data.resumable_dataset(x, y, batch_size=4, seed=3)
    again = data.resumable_dataset(x, y, batch_size=4, seed=3)
    other = data.resumable_dataset(x, y, batch_size=4, seed=4)
    assert first.element_spec[0].shape == (4, 1)

    def labels(dataset):
        return [b[1].numpy().tolist() for b in dataset.take(10)]

    assert labels(first) == labels(again) != labels(other)
    seen = labels(first)
    assert sorted(sum(seen[:2], [])) == sorted(set(sum(seen[:2], [])))  # no repeats in a pass
    weighted = data.resumable_dataset(x, y, 4, seed=3, sample_weight=np.ones(10, "float32"))
    assert len(weighted.element_spec) == 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, "argument `batch_size`. Expected a positive integer"),
        ({"batch_size": 11}, "argument `batch_size`. Expected at most the number of samples"),
        ({"batch_size": 4, "seed": None}, "argument `seed`. Expected an integer"),
    ],
)
def test_resumable_dataset_argument_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.resumable_dataset(np.zeros((10, 2)), np.zeros(10), **kwargs)


def test_unpack_meta_data_error_names_the_argument():
    with pytest.raises(ValueError, match="argument `meta_data`"):
        data.unpack_meta_data((1, 2, 3))


def _balanced_inputs(dataset, batches):
    return [a.numpy() for a, _ in dataset.take(batches)]


def test_class_balanced_dataset_has_every_class_equally_often():
    y = np.array([0] * 50 + [1] * 5 + [2] * 2 + [3] * 1)
    x = np.arange(len(y), dtype="float32")[:, None]
    dataset = data.class_balanced_dataset(x, y, batch_size=8, seed=3)
    assert dataset.element_spec[0].shape == (8, 1)
    for batch_x, batch_y in dataset.take(20):
        assert np.bincount(batch_y.numpy(), minlength=4).tolist() == [2, 2, 2, 2]
        # Inputs stay paired with their labels.
        np.testing.assert_array_equal(y[batch_x.numpy()[:, 0].astype(int)], batch_y.numpy())
    # Seeded: the same batches every time; another seed, another order.
    first = _balanced_inputs(data.class_balanced_dataset(x, y, 8, seed=3), 5)
    again = _balanced_inputs(data.class_balanced_dataset(x, y, 8, seed=3), 5)
    other = _balanced_inputs(data.class_balanced_dataset(x, y, 8, seed=4), 5)
    np.testing.assert_array_equal(np.stack(first), np.stack(again))
    assert not np.array_equal(np.stack(first), np.stack(other))


def test_class_balanced_dataset_with_a_batch_not_a_multiple_of_the_classes():
    y = np.array([0] * 30 + [1] * 3 + [2] * 3)
    x = np.zeros((len(y), 2), "float32")
    for _, batch_y in data.class_balanced_dataset(x, y, batch_size=7, seed=0).take(9):
        counts = np.bincount(batch_y.numpy(), minlength=3)
        assert counts.sum() == 7 and counts.max() - counts.min() <= 1


def test_class_balanced_dataset_is_meta_data_of_a_meta_model(classification_data):
    import keras

    import tf_metaloss as tml

    x, y, x_meta, y_meta = classification_data(n=32, n_meta=12, features=4, classes=3)
    inputs = keras.Input((4,))
    model = tml.MetaModel(inputs, keras.layers.Dense(3)(inputs))
    model.compile(optimizer="sgd", loss=tml.losses.ClassAdjustedLoss(3), meta_optimizer="adam")
    meta = data.class_balanced_dataset(x_meta, y_meta, batch_size=6, seed=0)
    history = model.fit(x, y, meta_data=meta, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["meta_objective"][-1])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, "argument `batch_size`"),
        ({"seed": 1.5}, "argument `seed`"),
        ({"y": np.array([0.5, 1.0, 0.0, 1.0])}, "argument `y`"),
        ({"y": np.array([0, 1])}, r"argument `y`.*one label per sample"),
    ],
)
def test_class_balanced_dataset_argument_errors(kwargs, message):
    arguments = {"x": np.zeros((4, 1)), "y": np.array([0, 1, 0, 1]), "batch_size": 2, "seed": 0}
    with pytest.raises(ValueError, match=message):
        data.class_balanced_dataset(**{**arguments, **kwargs})
