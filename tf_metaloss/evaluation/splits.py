"""The data of one seed: noisy training part, meta set and evaluation set, and batches.

`make_split` applies the configured subset, holdout, label noise and meta
split to a `Dataset`; `training_dataset` feeds arrays in a seeded order that
is the same for every method.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from tf_metaloss.evaluation import noise as noise_lib


@dataclasses.dataclass
class Split:
    """The arrays of one seed: training (noisy), meta and evaluation sets.

    `y_train` holds the labels the model trains on (noisy when noise > 0),
    `y_train_clean` the true ones and `noisy_mask` where they differ. The meta
    set's labels `y_meta` are clean or noisy according to the config. The
    evaluation set (`x_eval`, `y_eval`) always has clean labels.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    y_train_clean: np.ndarray
    noisy_mask: np.ndarray
    x_meta: np.ndarray
    y_meta: np.ndarray
    meta_noisy_mask: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray
    num_classes: int

    def describe(self):
        """Sizes and noise rates (JSON-able)."""
        return {
            "num_train": int(len(self.x_train)),
            "num_meta": int(len(self.x_meta)),
            "num_eval": int(len(self.x_eval)),
            "train_noise_rate": float(self.noisy_mask.mean()),
            "meta_noise_rate": float(self.meta_noisy_mask.mean()),
        }


def make_split(data, config, seed):
    """Builds the `Split` of `data` (a `datasets.Dataset`) for one seed."""
    x, y = data.x_train, data.y_train
    if config.train_subset is not None and config.train_subset < len(x):
        keep = np.sort(np.random.default_rng(0).permutation(len(x))[: config.train_subset])
        x, y = x[keep], y[keep]
    if config.eval_split == "holdout":
        order = np.random.default_rng(1).permutation(len(x))
        n_holdout = int(round(config.holdout_fraction * len(x)))
        held, rest = np.sort(order[:n_holdout]), np.sort(order[n_holdout:])
        x_eval, y_eval = x[held], y[held]
        x, y = x[rest], y[rest]
    else:
        x_eval, y_eval = data.x_val, data.y_val
    noisy = noise_lib.inject_label_noise(
        y,
        config.noise_rate,
        kind=config.noise_kind,
        num_classes=data.num_classes,
        seed=seed,
    )
    order = np.random.default_rng([seed, 2]).permutation(len(x))
    n_meta = int(round(config.meta_fraction * len(x)))
    if n_meta < 1 or n_meta >= len(x):
        raise ValueError(
            f"meta_fraction={config.meta_fraction} of {len(x)} training samples "
            f"leaves {n_meta} meta samples; both parts must be non-empty."
        )
    meta, train = np.sort(order[:n_meta]), np.sort(order[n_meta:])
    y_meta = y[meta] if config.meta_labels == "clean" else noisy.labels[meta]
    return Split(
        x_train=x[train],
        y_train=noisy.labels[train],
        y_train_clean=y[train],
        noisy_mask=noisy.mask[train],
        x_meta=x[meta],
        y_meta=y_meta,
        meta_noisy_mask=y_meta != y[meta],
        x_eval=x_eval,
        y_eval=y_eval,
        num_classes=data.num_classes,
    )


def training_dataset(x, y, batch_size, epochs, seed):
    """Batches of `(x, y)` in a seeded order, reshuffled every epoch.

    The order depends only on `seed`, so every method sees the same batches
    in the same order. Returns `(dataset, steps_per_epoch)`; the dataset holds
    exactly `epochs * steps_per_epoch` batches (the last of each epoch may be
    smaller).
    """
    n = len(x)
    rng = np.random.default_rng([seed, 1])
    orders = np.stack([rng.permutation(n) for _ in range(epochs)]).astype(np.int64)
    x_tensor = tf.constant(x)
    y_tensor = tf.constant(y)
    dataset = (
        tf.data.Dataset.from_tensor_slices(orders)
        .flat_map(lambda order: tf.data.Dataset.from_tensor_slices(order).batch(batch_size))
        .map(lambda idx: (tf.gather(x_tensor, idx), tf.gather(y_tensor, idx)))
        .prefetch(2)
    )
    return dataset, -(-n // batch_size)
