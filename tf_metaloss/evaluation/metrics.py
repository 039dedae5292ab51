"""Metrics for comparing losses: functions of arrays, and the callbacks that feed them.

Functions (NumPy in, Python floats out):

- `accuracy(y_true, y_pred)`: fraction of correct predictions.
- `macro_f1(y_true, y_pred, num_classes=None)`: unweighted mean of per-class F1.
- `generalization_gap(train_accuracy, val_accuracy)`: `train - val`.
- `convergence_epoch(curve, fraction=0.9)`: first epoch (1-based) whose value
  reaches `fraction` of the final value.
- `gradient_norm_stability(norms)`: mean, variance and coefficient of variation
  of the per-step gradient norms (the training-stability metric, see there).
- `roc_auc(scores, positive)`: how well scores separate two groups (e.g. the
  per-sample weights of clean and corrupted samples).
- `transition_distance(estimate, truth)`: mean total-variation distance between
  the rows of two noise transition matrices.

Callbacks (record during `fit`, read afterwards):

- `GradientNormHistory`: the global L2 norm of every step's weight gradient.
- `ClassificationHistory`: accuracy and macro-F1 on given (clean) labels at the
  end of every epoch.
- `ParameterHistory`: the learnable loss's parameters phi at the start and at
  the end of every epoch.

Example:

>>> tml.evaluation.metrics.accuracy([0, 1, 2, 2], [0, 1, 1, 2])
0.75
"""

import math
import time

import keras
import numpy as np

from tf_metaloss.callbacks import monitor

# Part of this module's API (see the docstring), in a module of its own.
from tf_metaloss.evaluation.gradient_norms import GradientNormHistory  # noqa: F401

# -- functions -----------------------------------------------------------------


def _labels(values, argument):
    """Integer labels from sparse labels, or the argmax of scores/one-hot rows."""
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[-1] > 1:
        return np.argmax(array, axis=-1)
    if array.ndim == 2 and array.shape[-1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(
            f"Invalid value for argument `{argument}`. Expected integer labels "
            "of shape (n,) or scores of shape (n, classes). Received: "
            f"{argument} with shape {array.shape}"
        )
    if array.size and not np.all(array == np.round(array)):
        raise ValueError(
            f"Invalid value for argument `{argument}`. Expected integer labels; "
            "pass scores as a 2-D array (n, classes). Received: non-integer "
            f"values such as {array[array != np.round(array)][0]!r}"
        )
    return array.astype(np.int64)


def _pair(y_true, y_pred):
    y_true = _labels(y_true, "y_true")
    y_pred = _labels(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(
            "Arguments `y_true` and `y_pred` must hold the same number of "
            f"samples. Received: {y_true.shape[0]} and {y_pred.shape[0]}"
        )
    if y_true.size == 0:
        raise ValueError("Arguments `y_true` and `y_pred` must not be empty. Received 0 samples.")
    return y_true, y_pred


def accuracy(y_true, y_pred):
    """Fraction of samples whose predicted class equals the label.

    Args:
        y_true: integer labels `(n,)` (or one-hot rows `(n, classes)`).
        y_pred: predicted labels `(n,)`, or scores/logits `(n, classes)`
            (the argmax is the prediction).

    Example:

    >>> tml.evaluation.metrics.accuracy([0, 1], [[2.0, 0.0], [3.0, 1.0]])
    0.5
    """
    y_true, y_pred = _pair(y_true, y_pred)
    return float(np.mean(y_true == y_pred))


def macro_f1(y_true, y_pred, num_classes=None):
    """Unweighted mean over classes of `F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)`.

    The mean runs over `range(num_classes)` when given, otherwise over the
    classes present in `y_true` or `y_pred` (as scikit-learn's
    `f1_score(average="macro")`). A class with no true and no predicted
    samples has F1 0.

    Example:

    >>> round(tml.evaluation.metrics.macro_f1([0, 0, 1, 1], [0, 1, 1, 1]), 4)
    0.7333
    """
    y_true, y_pred = _pair(y_true, y_pred)
    if num_classes is None:
        classes = np.union1d(y_true, y_pred)
    else:
        if (
            isinstance(num_classes, bool)
            or not isinstance(num_classes, (int, np.integer))
            or num_classes < 1
        ):
            raise ValueError(
                "Invalid value for argument `num_classes`. Expected a positive "
                f"integer or None. Received: num_classes={num_classes!r}"
            )
        largest = max(int(y_true.max()), int(y_pred.max()))
        if largest >= num_classes or min(y_true.min(), y_pred.min()) < 0:
            raise ValueError(
                "Invalid value for argument `num_classes`. Expected labels in "
                f"[0, {num_classes}). Received: a label {largest}"
            )
        classes = np.arange(num_classes)
    scores = []
    for c in classes:
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        denominator = 2 * tp + fp + fn
        scores.append(0.0 if denominator == 0 else 2.0 * tp / denominator)
    return float(np.mean(scores))


def generalization_gap(train_accuracy, val_accuracy):
    """`train_accuracy - val_accuracy` (both measured on clean labels).

    Example:

    >>> round(tml.evaluation.metrics.generalization_gap(0.98, 0.9), 2)
    0.08
    """
    return float(train_accuracy) - float(val_accuracy)


def convergence_epoch(curve, fraction=0.9):
    """Epochs needed to reach `fraction` of the final value of a learning curve.

    Returns the smallest 1-based epoch `e` with `curve[e - 1] >= fraction *
    curve[-1]`, where `curve[-1]` is the value after the last epoch (so the
    answer is at most `len(curve)`). A lower number means faster convergence
    toward where training ended; it says nothing about how good that end is.

    Args:
        curve: per-epoch values (e.g. validation accuracy), epoch 1 first.
        fraction: the fraction of the final value to reach, in (0, 1].

    Example:

    >>> tml.evaluation.metrics.convergence_epoch([0.2, 0.5, 0.86, 0.9, 0.95])  # 0.86 >= 0.9 * 0.95
    3
    """
    values = np.asarray(curve, dtype=np.float64).reshape(-1)
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError(
            "Invalid value for argument `curve`. Expected a non-empty sequence "
            f"of finite numbers. Received: curve={list(values)!r}"
        )
    if not (isinstance(fraction, (int, float)) and 0.0 < fraction <= 1.0):
        raise ValueError(
            "Invalid value for argument `fraction`. Expected a float in (0, 1]. "
            f"Received: fraction={fraction!r}"
        )
    target = fraction * values[-1]
    return int(np.flatnonzero(values >= target)[0]) + 1


def gradient_norm_stability(norms):
    """Training stability from the per-step gradient norms.

    With `g_t` the global L2 norm of the gradient of the training loss with
    respect to all trainable weights at step `t` (as handed to the optimizer,
    before any clipping), over the `T` recorded steps:

    - `variance = (1 / T) * sum_t (g_t - mean)^2` (population variance): the
      training-stability metric; lower is more stable. It carries the squared
      scale of the loss, so losses with smaller gradients (e.g. bounded ones)
      look more stable for that reason alone;
    - `cv = sqrt(variance) / mean`: the scale-free coefficient of variation;
    - `mean`, `max`, `steps`.

    Non-finite norms (steps skipped by the model) are left out.

    Example:

    >>> tml.evaluation.metrics.gradient_norm_stability([1.0, 3.0])["variance"]
    1.0
    """
    values = np.asarray(norms, dtype=np.float64).reshape(-1)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError(
            "Invalid value for argument `norms`. Expected at least one finite "
            "gradient norm. Received none."
        )
    mean = float(np.mean(values))
    variance = float(np.var(values))
    return {
        "mean": mean,
        "variance": variance,
        "cv": math.sqrt(variance) / mean if mean > 0 else float("nan"),
        "max": float(np.max(values)),
        "steps": int(values.size),
    }


def roc_auc(scores, positive):
    """Area under the ROC curve: the probability that a random positive sample
    scores higher than a random negative one (ties count one half).

    Computed from ranks (the Mann-Whitney U statistic), without scikit-learn.
    1 separates the groups perfectly, 0.5 is chance. Returns NaN when either
    group is empty.

    Args:
        scores: per-sample scores, e.g. sample weights.
        positive: boolean per sample, e.g. `True` where the label is clean.

    Example:

    >>> tml.evaluation.metrics.roc_auc([0.9, 0.8, 0.3, 0.8], [True, True, False, False])
    0.875
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    positive = np.asarray(positive).reshape(-1)
    if positive.dtype != bool or positive.shape != scores.shape:
        raise ValueError(
            "Invalid value for argument `positive`. Expected a boolean array with one "
            f"entry per score ({scores.size}). Received: dtype={positive.dtype}, "
            f"shape={positive.shape}"
        )
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(scores.size, np.float64)
    # Average ranks (1-based) over ties.
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [scores.size]])
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = 0.5 * (start + 1 + end)
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def transition_distance(estimate, truth):
    """Mean total-variation distance between the rows of two transition matrices.

    `0.5 * mean_i sum_j |estimate[i, j] - truth[i, j]|`: 0 for equal matrices,
    1 when every row puts its mass on different labels.

    Example:

    >>> tml.evaluation.metrics.transition_distance([[1.0, 0.0], [0.0, 1.0]],
    ...                                            [[0.6, 0.4], [0.0, 1.0]])
    0.2
    """
    estimate = np.asarray(estimate, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if estimate.ndim != 2 or estimate.shape != truth.shape:
        raise ValueError(
            "Invalid value for argument `estimate`. Expected a matrix of the shape of "
            f"`truth` {truth.shape}. Received: estimate of shape {estimate.shape}"
        )
    return float(0.5 * np.abs(estimate - truth).sum(axis=1).mean())


# -- callbacks -----------------------------------------------------------------


class ClassificationHistory(keras.callbacks.Callback):
    """Accuracy and macro-F1 of the model on given data at the end of each epoch.

    Pass the *clean* labels to measure what the model learned despite label
    noise. Results go to `history[<name>_accuracy]`, `history[<name>_macro_f1]`
    (one value per epoch) and into the epoch `logs` (so `keras.callbacks.History`
    and TensorBoard see them). With `noisy=(labels, mask)` for a data set it
    also records `<name>_memorized`: the fraction of the noisy samples
    (`mask` True) predicted as their *noisy* label.

    `seconds` accumulates the time spent evaluating.

    Args:
        data: dict `name -> (x, y_clean)` or `name -> (x, y_clean, noisy_labels,
            mask)`, e.g. `{"val": (x_val, y_val), "train": (...)}`.
        num_classes: number of classes (for macro-F1).
        batch_size: prediction batch size.

    Example:

    >>> x = np.random.default_rng(0).normal(size=(128, 8)).astype("float32")
    >>> y = (x[:, 0] > 0).astype("int32")
    >>> noisy = tml.evaluation.inject_label_noise(y[:96], rate=0.4, seed=0)
    >>> model = tml.MetaModel(keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)]))
    >>> model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True))
    >>> clean = tml.evaluation.metrics.ClassificationHistory(
    ...     {"val": (x[96:], y[96:]), "train": (x[:96], y[:96], noisy.labels, noisy.mask)},
    ...     num_classes=2)
    >>> history = model.fit(x[:96], noisy.labels, meta_data=(x[96:], y[96:]), epochs=2,
    ...                     verbose=0, callbacks=[clean])
    >>> sorted(clean.history)  # "memorized": noisy samples predicted as their noisy label
    ['train_accuracy', 'train_macro_f1', 'train_memorized', 'val_accuracy', 'val_macro_f1']
    >>> len(history.history["val_accuracy"])  # in the Keras history too
    2
    """

    def __init__(self, data, num_classes, batch_size=512):
        super().__init__()
        if not isinstance(data, dict) or not data:
            raise ValueError(
                "Invalid value for argument `data`. Expected a non-empty dict "
                "name -> (x, y_clean) or (x, y_clean, noisy_labels, mask). "
                f"Received: data={type(data).__name__}"
            )
        for name, item in data.items():
            if not isinstance(item, (tuple, list)) or len(item) not in (2, 4):
                raise ValueError(
                    "Invalid value for argument `data`. Expected each entry to "
                    "be (x, y_clean) or (x, y_clean, noisy_labels, mask). "
                    f"Received: data[{name!r}] of length "
                    f"{len(item) if hasattr(item, '__len__') else '?'}"
                )
        self.data = data
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.history = {}
        self.seconds = 0.0

    def evaluate(self):
        """Computes the metrics now; returns a dict `<name>_<metric> -> float`."""
        results = {}
        for name, item in self.data.items():
            x, y = item[0], item[1]
            scores = predict_in_batches(self.model, x, self.batch_size)
            predicted = _labels(scores, "y_pred")
            results[f"{name}_accuracy"] = accuracy(y, predicted)
            results[f"{name}_macro_f1"] = macro_f1(y, predicted, self.num_classes)
            if len(item) == 4:
                noisy, mask = np.asarray(item[2]), np.asarray(item[3], bool)
                results[f"{name}_memorized"] = (
                    float(np.mean(predicted[mask] == noisy[mask])) if mask.any() else float("nan")
                )
        return results

    def on_epoch_end(self, epoch, logs=None):
        start = time.perf_counter()
        results = self.evaluate()
        self.seconds += time.perf_counter() - start
        for key, value in results.items():
            self.history.setdefault(key, []).append(value)
        if logs is not None:
            logs.update(results)


def predict_in_batches(model, x, batch_size=512):
    """`model.predict(x, batch_size=batch_size)`, without its per-call set-up.

    `predict` builds a data pipeline and callbacks on every call (about 0.1 s
    on a CPU), which dominates evaluating a small model after every epoch;
    `predict_on_batch` on the same batches computes the same outputs.

    Args:
        model: a Keras model.
        x: an array, or a dict or list of arrays with the same first dimension.
        batch_size: samples per `predict_on_batch` call.

    Example:

    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> x = np.ones((5, 3), "float32")
    >>> np.allclose(tml.evaluation.metrics.predict_in_batches(model, x, batch_size=2),
    ...             model.predict(x, batch_size=2, verbose=0))
    True
    """
    size = len(keras.tree.flatten(x)[0])
    outputs = [
        model.predict_on_batch(
            keras.tree.map_structure(lambda a, start=start: a[start : start + batch_size], x)
        )
        for start in range(0, size, batch_size)
    ]
    return keras.tree.map_structure(lambda *parts: np.concatenate(parts), *outputs)


class ParameterHistory(keras.callbacks.Callback):
    """Records the learnable loss's parameters phi before training and each epoch.

    Reads `model.loss.parameter_summary()` (the `phi/...` scalars); for a
    normalised `BlendLoss` it also records the effective mixture weights as
    `mix/<base loss>`. `history[key]` has `epochs + 1` values (index 0 is the
    start of training). A model whose loss has no parameters records nothing.
    `bounds[key]` is `[low, high]` for the `phi/...` scalars whose parameter
    is clipped into a range (`None`: open on that side).

    Example:

    >>> x = np.random.default_rng(0).normal(size=(128, 8)).astype("float32")
    >>> y = (x[:, 0] > 0).astype("int32")
    >>> model = tml.MetaModel(keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)]))
    >>> loss = tml.BlendLoss(["crossentropy", "mae_classification"], from_logits=True)
    >>> model.compile(optimizer="sgd", loss=loss)
    >>> phi = tml.evaluation.metrics.ParameterHistory()
    >>> history = model.fit(x, y, meta_split=0.25, epochs=3, verbose=0, callbacks=[phi])
    >>> len(phi.history["mix/crossentropy"])  # the start and 3 epochs
    4
    >>> phi.history["mix/crossentropy"][0]
    1.0
    >>> phi.bounds  # the blend weights are only kept non-negative
    {'phi/crossentropy': [0.0, None], 'phi/mae_classification': [0.0, None]}
    """

    def __init__(self):
        super().__init__()
        self.history = {}
        self.bounds = {}

    def snapshot(self):
        """The current parameter scalars as a dict of floats."""
        loss = getattr(self.model, "loss", None)
        if loss is None or not hasattr(loss, "parameter_summary"):
            return {}
        values = {k: float(v) for k, v in loss.parameter_summary().items()}
        if hasattr(loss, "mixture_weights") and hasattr(loss, "base_losses"):
            mix = np.asarray(loss.mixture_weights())
            for name, value in zip(loss.base_losses, mix):
                values[f"mix/{name}"] = float(value)
        return values

    def _record(self):
        for key, value in self.snapshot().items():
            self.history.setdefault(key, []).append(value)

    def on_train_begin(self, logs=None):
        if not self.history:
            self._record()
        loss = getattr(self.model, "loss", None)
        if hasattr(loss, "parameter_names"):
            self.bounds.update(scalar_bounds(loss))

    def on_epoch_end(self, epoch, logs=None):
        self._record()


def scalar_bounds(loss):
    """`{"phi/<label>": [low, high]}` of a learnable loss's clipped scalars.

    The keys are those of `loss.parameter_summary()` for parameters small
    enough to be logged element by element; a side without a bound is `None`.

    Example:

    >>> tml.evaluation.metrics.scalar_bounds(tml.MetaLoss(from_logits=True))
    {'phi/correction': [0.0, 1.0]}
    """
    bounds = {}
    labels = monitor.element_labels(loss)
    for name, (low, high) in monitor.parameter_bounds(loss).items():
        if (low, high) != (None, None) and labels[name]:
            for label in labels[name]:
                bounds[f"phi/{label}"] = [low, high]
    return bounds
