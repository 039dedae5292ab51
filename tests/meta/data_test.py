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


def test_unpack_meta_data_error_names_the_argument():
    with pytest.raises(ValueError, match="argument `meta_data`"):
        data.unpack_meta_data((1, 2, 3))
