"""Long-tailed class imbalance: subsampling, per-class metrics and the fixed baselines.

- `long_tailed_counts(n_max, ratio, num_classes)`: the exponential profile
  `n_c = n_max * ratio^(-c / (K - 1))` (Cui et al. 2019, Cao et al. 2019):
  class 0 keeps `n_max` samples, class `K - 1` keeps `n_max / ratio`.
- `long_tailed_indices` and `balanced_indices`: seeded subsets of a labelled
  array with that profile, or with the same number of samples per class (the
  balanced meta set).
- `balanced_accuracy`, `class_accuracies`, `rarest_accuracy`: the metrics
  reported beside overall accuracy.
- `AdjustedCrossEntropy`: cross-entropy with fixed per-class logit offsets,
  margins and weights, the form of every fixed imbalance baseline:
  class-balanced CE (`class_balanced_weights`), logit adjustment
  (`logit_adjustment_offsets`) and LDAM with deferred re-weighting
  (`ldam_margins`, `effective_number_weights`, `DeferredReweighting`).

Example:

>>> from tf_metaloss.evaluation import imbalance
>>> imbalance.long_tailed_counts(500, ratio=100, num_classes=3).tolist()
[500, 50, 5]
>>> y = np.repeat(np.arange(3), 600)
>>> np.bincount(y[imbalance.long_tailed_indices(y, 100, 3, seed=0)]).tolist()
[600, 60, 6]

References:
    Cui et al., "Class-balanced loss based on effective number of samples"
    (CVPR 2019); Cao et al., "Learning imbalanced datasets with
    label-distribution-aware margin loss" (NeurIPS 2019); Menon et al.,
    "Long-tail learning via logit adjustment" (ICLR 2021).
"""

import keras
import numpy as np
from keras import ops

from tf_metaloss import validation
from tf_metaloss.losses import functional

# The balanced meta set's samples per class (`CompareConfig.meta_per_class`).
DEFAULT_META_PER_CLASS = 20
# LDAM's margins are in logit units here (the compared networks have no
# normalised classifier): the rarest class's margin.
LDAM_MAX_MARGIN = 2.0
# Deferred re-weighting starts after this share of the epochs (Cao et al.:
# epoch 160 of 200).
DRW_START_FRACTION = 0.8
# The effective-number weights of deferred re-weighting (Cui et al.).
DRW_BETA = 0.9999


def long_tailed_counts(n_max, ratio, num_classes):
    """`n_c = floor(n_max * ratio^(-c / (K - 1)))`, at least 1, for `c = 0..K-1`."""
    n_max = validation.check_positive_int("n_max", n_max)
    ratio = check_ratio(ratio)
    num_classes = validation.check_int("num_classes", num_classes, minimum=2)
    exponents = np.arange(num_classes) / (num_classes - 1)
    counts = np.floor(n_max * ratio**-exponents + 1e-9).astype(np.int64)
    return np.maximum(counts, 1)


def check_ratio(ratio):
    """An imbalance ratio: a finite number >= 1; returns it as `float`."""
    if not validation.is_number(ratio) or ratio < 1:
        validation.invalid(
            "ratio", ratio, "a number >= 1 (the most frequent class's count over the rarest's)"
        )
    return float(ratio)


def _check_labels(labels, num_classes):
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        validation.invalid(
            "labels", f"array of shape {labels.shape}", "a 1-D array of integer class ids"
        )
    missing = [c for c in range(num_classes) if not np.any(labels == c)]
    if missing:
        validation.invalid(
            "labels", f"labels without classes {missing}", f"samples of all {num_classes} classes"
        )
    return labels


def long_tailed_indices(labels, ratio, num_classes, seed):
    """Sorted indices of a seeded long-tailed subset of `labels`.

    Class `c` keeps `long_tailed_counts(n_max, ratio, K)[c]` samples drawn at
    random (seeded), with `n_max` the size of the smallest class of `labels`
    (so every class has enough samples).
    """
    labels = _check_labels(labels, num_classes)
    available = np.bincount(labels, minlength=num_classes)
    counts = long_tailed_counts(int(available.min()), ratio, num_classes)
    rng = np.random.default_rng([seed, 5])
    keep = [rng.permutation(np.flatnonzero(labels == c))[: counts[c]] for c in range(num_classes)]
    return np.sort(np.concatenate(keep))


def balanced_indices(labels, per_class, num_classes, seed):
    """Sorted indices of `per_class` random (seeded) samples of every class."""
    labels = _check_labels(labels, num_classes)
    per_class = validation.check_positive_int("per_class", per_class)
    available = np.bincount(labels, minlength=num_classes)
    if available.min() <= per_class:
        validation.invalid(
            "per_class",
            per_class,
            f"fewer than the smallest class's {int(available.min())} samples",
        )
    rng = np.random.default_rng([seed, 6])
    keep = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in range(num_classes)]
    return np.sort(np.concatenate(keep))


# -- metrics -------------------------------------------------------------------------


def class_accuracies(y_true, y_pred, num_classes):
    """Per-class recall (accuracy on the samples of each class; NaN if absent)."""
    y_true = np.asarray(y_true).reshape(-1)
    y_pred = np.asarray(y_pred)
    if y_pred.ndim == 2:
        y_pred = np.argmax(y_pred, axis=-1)
    result = np.full(num_classes, np.nan)
    for c in range(num_classes):
        mask = y_true == c
        if mask.any():
            result[c] = float(np.mean(y_pred[mask] == c))
    return result


def balanced_accuracy(y_true, y_pred, num_classes):
    """The mean per-class recall over the classes present in `y_true`.

    Example:

    >>> from tf_metaloss.evaluation import imbalance
    >>> imbalance.balanced_accuracy([0, 0, 0, 1], [0, 0, 0, 0], num_classes=2)
    0.5
    """
    return float(np.nanmean(class_accuracies(y_true, y_pred, num_classes)))


def rarest_accuracy(y_true, y_pred, class_counts, k=3):
    """The mean recall of the `k` classes with the fewest training samples."""
    class_counts = np.asarray(class_counts)
    rarest = np.argsort(class_counts, kind="stable")[:k]
    return float(np.nanmean(class_accuracies(y_true, y_pred, len(class_counts))[rarest]))


# -- the fixed baselines ---------------------------------------------------------------


def _normalized(weights):
    """Weights scaled to sum to the number of classes (mean 1 over classes)."""
    weights = np.asarray(weights, np.float64)
    return weights * len(weights) / weights.sum()


def class_balanced_weights(class_counts):
    """`1 / n_c`, normalised to mean 1 over the classes."""
    return _normalized(1.0 / np.asarray(class_counts, np.float64))


def effective_number_weights(class_counts, beta=DRW_BETA):
    """`(1 - beta) / (1 - beta^n_c)` (Cui et al.), normalised to mean 1 over the classes."""
    counts = np.asarray(class_counts, np.float64)
    return _normalized((1.0 - beta) / (1.0 - np.power(beta, counts)))


def logit_adjustment_offsets(class_counts, tau=1.0):
    """`tau * log(prior_c)`: the offsets of logit-adjusted cross-entropy."""
    counts = np.asarray(class_counts, np.float64)
    return tau * np.log(counts / counts.sum())


def ldam_margins(class_counts, max_margin=LDAM_MAX_MARGIN):
    """`C / n_c^(1/4)` with `C` such that the rarest class's margin is `max_margin`."""
    counts = np.asarray(class_counts, np.float64)
    margins = counts**-0.25
    return margins * max_margin / margins.max()


@keras.saving.register_keras_serializable(package="tf_metaloss")
class AdjustedCrossEntropy(keras.losses.Loss):
    """`w[y] * CE(softmax(z + b - m[y] * onehot(y)), y)` with fixed per-class `b`, `m`, `w`.

    The fixed imbalance baselines: logit adjustment (`offsets = tau *
    log prior`), class-balanced cross-entropy (`weights`), LDAM (`margins`).
    The weights live in a variable that `DeferredReweighting` sets during
    training (LDAM-DRW). The model outputs logits.

    Args:
        offsets, margins, weights: one value per class each (`None`: 0, 0, 1).
        num_classes: the number of classes (taken from the others if given).

    Example:

    >>> from tf_metaloss.evaluation.imbalance import AdjustedCrossEntropy
    >>> loss = AdjustedCrossEntropy(offsets=[0.0, 1.0])
    >>> logits = np.array([[1.0, 0.0]], "float32")
    >>> round(float(loss(np.array([0]), logits)), 4)  # CE of [1, 1]
    0.6931
    """

    def __init__(self, offsets=None, margins=None, weights=None, num_classes=None, **kwargs):
        super().__init__(**kwargs)
        given = [
            np.asarray(v, np.float64).reshape(-1)
            for v in (offsets, margins, weights)
            if v is not None
        ]
        sizes = {len(v) for v in given} | ({num_classes} if num_classes is not None else set())
        if len(sizes) != 1 or min(sizes) < 2:
            validation.invalid(
                "offsets",
                offsets,
                "per-class values of one length >= 2 (offsets, margins, weights, num_classes "
                f"agree); received lengths {sorted(sizes)}",
            )
        self.num_classes = int(sizes.pop())
        k = self.num_classes
        self.offsets = [0.0] * k if offsets is None else [float(v) for v in np.ravel(offsets)]
        self.margins = [0.0] * k if margins is None else [float(v) for v in np.ravel(margins)]
        self.weights = [1.0] * k if weights is None else [float(v) for v in np.ravel(weights)]
        self.class_weights = keras.Variable(
            np.asarray(self.weights, "float32"), trainable=False, name="class_weights"
        )

    def call(self, y_true, y_pred):
        one_hot, log_probs, _ = functional.classification_terms(y_true, y_pred, True)
        dtype = log_probs.dtype
        z = log_probs + ops.convert_to_tensor(self.offsets, dtype)
        z = z - one_hot * ops.convert_to_tensor(self.margins, dtype)
        ce = -ops.sum(one_hot * ops.log_softmax(z, axis=-1), axis=-1)
        return ce * ops.sum(one_hot * ops.cast(self.class_weights, dtype), axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update({"offsets": self.offsets, "margins": self.margins, "weights": self.weights})
        return config


class DeferredReweighting(keras.callbacks.Callback):
    """Sets an `AdjustedCrossEntropy`'s class weights from epoch `start_epoch` on.

    Deferred re-weighting (Cao et al. 2019): train with the loss's own weights
    first, then with `weights` (by default, the effective-number weights).

    Example:

    >>> from tf_metaloss.evaluation import imbalance
    >>> loss = imbalance.AdjustedCrossEntropy(margins=[0.0, 0.5])
    >>> drw = imbalance.DeferredReweighting(loss, weights=[0.5, 1.5], start_epoch=1)
    >>> drw.on_epoch_begin(0); loss.class_weights.numpy().tolist()
    [1.0, 1.0]
    >>> drw.on_epoch_begin(1); loss.class_weights.numpy().tolist()
    [0.5, 1.5]
    """

    def __init__(self, loss, weights, start_epoch):
        super().__init__()
        self.loss = loss
        self.weights = np.asarray(weights, "float32")
        self.start_epoch = validation.check_int("start_epoch", start_epoch, minimum=0)

    def on_epoch_begin(self, epoch, logs=None):
        weights = self.weights if epoch >= self.start_epoch else np.asarray(self.loss.weights)
        self.loss.class_weights.assign(weights.astype("float32"))
