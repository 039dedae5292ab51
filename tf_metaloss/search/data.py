"""The data of a search: noisy training samples, a clean meta set and holdout.

Example:

>>> from tf_metaloss.search import data
>>> digits = tml.evaluation.load_digits()
>>> task = data.make_task(digits, noise=0.4, hidden_units=8, epochs=1)
>>> len(task.x_train), len(task.x_meta), len(task.x_holdout)
(1149, 144, 144)
"""

import numpy as np

from tf_metaloss import validation
from tf_metaloss.evaluation import noise as noise_lib
from tf_metaloss.search.fitness import ProxyTask


def make_task(
    dataset,
    noise=0.4,
    noise_kind="symmetric",
    meta_fraction=0.1,
    holdout_fraction=0.1,
    train_subset=None,
    seed=0,
    **recipe,
):
    """A `ProxyTask` from the *training* split of a `tml.evaluation.Dataset`.

    The training split (or a random subset of `train_subset` samples) is
    shuffled with `seed`; `holdout_fraction` of it becomes the clean holdout
    the fitness is measured on, `meta_fraction` the clean meta set the
    constants are tuned on, and the rest the training data, whose labels are
    corrupted with `noise` (`noise_kind`, seeded). The validation split is
    left alone, for judging what the search found.

    Args:
        dataset: a `tml.evaluation.Dataset`.
        **recipe: the `ProxyTask` settings (`epochs`, `tune_epochs`, ...).
    """
    validation.check_fraction("noise", noise, low_closed=True)
    validation.check_fraction("meta_fraction", meta_fraction)
    validation.check_fraction("holdout_fraction", holdout_fraction)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(dataset.x_train))
    if train_subset is not None:
        validation.check_int("train_subset", train_subset, minimum=10)
        order = order[:train_subset]
    n_holdout = max(1, int(round(holdout_fraction * len(order))))
    n_meta = max(1, int(round(meta_fraction * len(order))))
    holdout, meta, train = np.split(order, [n_holdout, n_holdout + n_meta])
    if len(train) == 0:
        raise ValueError(
            "Invalid value for argument `meta_fraction`. Expected meta and holdout "
            "fractions that leave training samples. Received: "
            f"meta_fraction={meta_fraction}, holdout_fraction={holdout_fraction}"
        )
    y_train = dataset.y_train[train]
    if noise > 0:
        y_train = noise_lib.inject_label_noise(
            y_train, noise, kind=noise_kind, num_classes=dataset.num_classes, seed=seed
        ).labels
    return ProxyTask(
        x_train=dataset.x_train[train],
        y_train=y_train,
        x_meta=dataset.x_train[meta],
        y_meta=dataset.y_train[meta],
        x_holdout=dataset.x_train[holdout],
        y_holdout=dataset.y_train[holdout],
        num_classes=dataset.num_classes,
        seed=seed,
        **recipe,
    )
