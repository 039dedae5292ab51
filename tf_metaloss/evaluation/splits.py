"""The data of one seed: noisy training part, meta set and evaluation set, and batches.

`make_split` applies the configured subset, holdout, label noise and meta
split to a `Dataset`; `training_data` gives the arrays a method trains on
(the noisy training part, with or without the meta set); `training_dataset`
feeds arrays in a seeded order that is the same for every method.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from tf_metaloss import validation
from tf_metaloss.evaluation import datasets
from tf_metaloss.evaluation import imbalance
from tf_metaloss.evaluation import noise as noise_lib


@dataclasses.dataclass
class Split:
    """The arrays of one seed: training (noisy), meta and evaluation sets.

    `y_train` holds the labels the model trains on (noisy when noise > 0),
    `y_train_clean` the true ones and `noisy_mask` where they differ;
    `noise_transition` is the noise transition matrix realised on the training
    part (`T[i, j]`: share of true class `i` labelled `j`). The meta set's
    labels `y_meta` are clean or noisy according to the config. The
    evaluation set (`x_eval`, `y_eval`) always has clean labels. For
    tokenized text, `vocabulary_size` is the size of the token vocabulary.
    With `imbalance_ratio`, `class_counts` holds the number of training
    samples of each class (the long-tailed profile realised).
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
    noise_transition: np.ndarray = None
    vocabulary_size: int = None
    class_counts: np.ndarray = None

    def describe(self):
        """Sizes and noise rates (JSON-able)."""
        counts = {}
        if self.class_counts is not None:
            counts = {"train_class_counts": [int(c) for c in self.class_counts]}
        return {
            **counts,
            "num_train": int(len(self.x_train)),
            "num_meta": int(len(self.x_meta)),
            "num_eval": int(len(self.x_eval)),
            "train_noise_rate": float(self.noisy_mask.mean()),
            "meta_noise_rate": float(self.meta_noisy_mask.mean()),
            "noise_transition": (
                None if self.noise_transition is None else self.noise_transition.tolist()
            ),
        }


def make_split(data, config, seed):
    """Builds the `Split` of `data` (a `datasets.Dataset`) for one seed."""
    x, y = data.x_train, data.y_train
    if config.train_subset is not None and config.train_subset < len(x):
        keep = datasets.subset_indices(len(x), config.train_subset)
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
    class_counts = None
    if config.imbalance_ratio is not None:
        meta, train = _long_tailed_parts(y, data.num_classes, config, seed)
        class_counts = np.bincount(y[train], minlength=data.num_classes)
    else:
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
        noise_transition=noise_lib.empirical_transition_matrix(
            y[train], noisy.labels[train], data.num_classes
        ),
        vocabulary_size=None if data.vocabulary is None else len(data.vocabulary),
        class_counts=class_counts,
    )


def _long_tailed_parts(y, num_classes, config, seed):
    """`(meta, train)` indices: a balanced meta set, then a long-tailed rest."""
    per_class = config.meta_per_class or imbalance.DEFAULT_META_PER_CLASS
    meta = imbalance.balanced_indices(y, per_class, num_classes, seed)
    rest = np.setdiff1d(np.arange(len(y)), meta)
    train = rest[imbalance.long_tailed_indices(y[rest], config.imbalance_ratio, num_classes, seed)]
    return meta, train


def training_data(split, train_data="train+meta", clean_labels=False):
    """The arrays a method's weights train on: `(x, y, trusted)`.

    Args:
        split: a `Split`.
        train_data: `"train"` (the training part) or `"train+meta"` (the
            training part followed by the meta set).
        clean_labels: use the training part's clean labels (the oracle).

    Returns:
        `x`, `y` (the labels trained on) and `trusted`, a boolean array that
        is `True` for the meta samples (the trusted set of Gold Loss
        Correction when the meta labels are clean).
    """
    y_train = split.y_train_clean if clean_labels else split.y_train
    if train_data == "train":
        return split.x_train, y_train, np.zeros(len(y_train), bool)
    validation.check_choice("train_data", train_data, ("train", "train+meta"))
    x = np.concatenate([split.x_train, split.x_meta])
    y = np.concatenate([y_train, split.y_meta.astype(y_train.dtype)])
    trusted = np.concatenate([np.zeros(len(y_train), bool), np.ones(len(split.y_meta), bool)])
    return x, y, trusted


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
