"""Tests of the data of one seed: splits and the seeded batch order."""

import numpy as np
import pytest

from tf_metaloss.evaluation import splits


def test_make_split_sizes_noise_and_clean_meta_labels(toy_dataset, small_config):
    data = toy_dataset(n_train=200)
    split = splits.make_split(data, small_config(noise_rate=0.4, meta_fraction=0.1), seed=3)
    assert len(split.x_meta) == 20 and len(split.x_train) == 180
    assert len(split.x_eval) == 60
    np.testing.assert_array_equal(split.x_eval, data.x_val)
    # 40% of the 200 labels were flipped before the meta split.
    total_noisy = split.noisy_mask.sum() + 0  # train part
    assert split.noisy_mask.dtype == bool
    np.testing.assert_array_equal(split.noisy_mask, split.y_train != split.y_train_clean)
    assert 0.3 < split.noisy_mask.mean() < 0.5 and total_noisy > 0
    # Clean meta labels: nothing flipped there.
    assert not split.meta_noisy_mask.any()
    noisy_meta = splits.make_split(data, small_config(noise_rate=0.4, meta_labels="noisy"), seed=3)
    assert noisy_meta.meta_noisy_mask.any()
    np.testing.assert_array_equal(noisy_meta.x_train, split.x_train)


def test_make_split_holdout_never_uses_the_validation_split(toy_dataset, small_config):
    data = toy_dataset(n_train=100)
    data.x_val = np.full_like(data.x_val, np.nan)
    data.y_val = np.full_like(data.y_val, -1)
    split = splits.make_split(
        data, small_config(eval_split="holdout", holdout_fraction=0.2), seed=0
    )
    assert len(split.x_eval) == 20 and len(split.x_train) + len(split.x_meta) == 80
    assert np.isfinite(split.x_eval).all() and (split.y_eval >= 0).all()
    # The holdout is disjoint from the training and meta inputs.
    rows = {tuple(r) for r in np.concatenate([split.x_train, split.x_meta])}
    assert not any(tuple(r) in rows for r in split.x_eval)


def test_make_split_train_subset_is_the_same_for_every_seed(toy_dataset, small_config):
    data = toy_dataset(n_train=100)
    a = splits.make_split(data, small_config(train_subset=50), seed=0)
    b = splits.make_split(data, small_config(train_subset=50), seed=1)
    assert len(a.x_train) + len(a.x_meta) == 50
    rows = lambda s: {tuple(r) for r in np.concatenate([s.x_train, s.x_meta])}  # noqa
    assert rows(a) == rows(b)


def test_training_dataset_order_depends_only_on_the_seed():
    x = np.arange(10, dtype="float32")[:, None]
    y = np.arange(10)

    def batches(seed):
        dataset, steps = splits.training_dataset(x, y, batch_size=4, epochs=2, seed=seed)
        return steps, [b[1].numpy().tolist() for b in dataset]

    steps, first = batches(0)
    assert steps == 3 and [len(b) for b in first] == [4, 4, 2, 4, 4, 2]
    # Each epoch is a permutation, reshuffled between epochs.
    epoch_1, epoch_2 = sum(first[:3], []), sum(first[3:], [])
    assert sorted(epoch_1) == sorted(epoch_2) == list(range(10))
    assert epoch_1 != epoch_2
    assert batches(0)[1] == first and batches(1)[1] != first


def test_split_records_the_realised_noise_transition(toy_dataset, small_config):
    data = toy_dataset(n_train=300)
    split = splits.make_split(data, small_config(noise_rate=0.4), seed=0)
    expected = np.zeros((3, 3))
    np.add.at(expected, (split.y_train_clean, split.y_train), 1)
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(split.noise_transition, expected)
    assert split.describe()["noise_transition"] == expected.tolist()
    clean = splits.make_split(data, small_config(noise_rate=0.0), seed=0)
    np.testing.assert_array_equal(clean.noise_transition, np.eye(3))


def test_training_data(toy_dataset, small_config):
    split = splits.make_split(toy_dataset(), small_config(noise_rate=0.4), seed=0)
    x, y, trusted = splits.training_data(split, "train")
    np.testing.assert_array_equal(x, split.x_train)
    np.testing.assert_array_equal(y, split.y_train)
    assert not trusted.any()
    x, y, trusted = splits.training_data(split, "train+meta")
    np.testing.assert_array_equal(x, np.concatenate([split.x_train, split.x_meta]))
    np.testing.assert_array_equal(y, np.concatenate([split.y_train, split.y_meta]))
    np.testing.assert_array_equal(trusted, np.arange(len(x)) >= len(split.x_train))
    _, y_clean, _ = splits.training_data(split, "train+meta", clean_labels=True)
    np.testing.assert_array_equal(y_clean, np.concatenate([split.y_train_clean, split.y_meta]))
    with pytest.raises(ValueError, match="argument `train_data`"):
        splits.training_data(split, "meta")
