"""Loss correction for noisy labels: the forward-corrected loss and two estimates of `T`.

A noise transition matrix `T[i, j] = P(noisy label j | true label i)` turns
the model's clean-label prediction `p = softmax(f(x))` into a prediction of the
*noisy* label, `p @ T`. Training on noisy labels with cross-entropy on `p @ T`
("forward correction", Patrini et al. 2017) lets `p` estimate the clean label.

- `ForwardCorrectedLoss(transition)`: `-log((p @ T)[y])` on untrusted samples
  and plain cross-entropy `-log(p[y])` on trusted ones; the labels are packed
  with a per-sample trusted flag by `pack_labels`.
- `gold_transition_matrix`: Gold Loss Correction's estimate from a trusted
  clean set (Hendrycks et al. 2018): row `i` is the mean prediction of a model
  trained on the noisy labels over the trusted samples of true class `i`.
- `anchor_transition_matrix`: the anchor-point estimate without trusted data
  (Patrini et al. 2017): row `i` is the prediction at the sample most
  confidently predicted as class `i`.

Example:

>>> transition = [[0.8, 0.2], [0.0, 1.0]]
>>> loss = tml.evaluation.correction.ForwardCorrectedLoss(transition, from_logits=False)
>>> y_true = tml.evaluation.correction.pack_labels([1, 1], trusted=[False, True])
>>> values = loss.call(keras.ops.convert_to_tensor(y_true), np.array([[0.5, 0.5]] * 2))
>>> [round(float(v), 4) for v in values]  # -log(0.5 * 0.2 + 0.5 * 1.0), -log(0.5)
[0.5108, 0.6931]

References:
    Patrini et al., "Making Deep Neural Networks Robust to Label Noise: a Loss
    Correction Approach", CVPR 2017.
    Hendrycks et al., "Using Trusted Data to Train Deep Networks on Labels
    Corrupted by Severe Noise", NeurIPS 2018.
"""

import keras
import numpy as np
from keras import ops

from tf_metaloss import validation


def pack_labels(labels, trusted=None):
    """`y_true` for `ForwardCorrectedLoss`: float32 rows `[label, trusted]`.

    Args:
        labels: integer class ids, shape `(n,)`.
        trusted: booleans, shape `(n,)`: `True` for samples whose label is
            known to be clean (plain cross-entropy). `None`: none trusted.

    Example:

    >>> tml.evaluation.correction.pack_labels([2, 0], trusted=[True, False]).tolist()
    [[2.0, 1.0], [0.0, 0.0]]
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        validation.invalid("labels", f"array of shape {labels.shape}", "a 1-D array of class ids")
    trusted = np.zeros(labels.shape, bool) if trusted is None else np.asarray(trusted)
    if trusted.shape != labels.shape or trusted.dtype != bool:
        validation.invalid(
            "trusted",
            f"array of dtype {trusted.dtype} and shape {trusted.shape}",
            f"a boolean array of shape {labels.shape} (one flag per label)",
        )
    return np.stack([labels, trusted], axis=1).astype("float32")


@keras.saving.register_keras_serializable(package="tf_metaloss")
class ForwardCorrectedLoss(keras.losses.Loss):
    """Cross-entropy of the noisy label under `p @ T` (forward correction).

    Per sample, with `p` the model's predicted distribution and `y` the
    (possibly noisy) label: `-log((p @ T)[y])` for untrusted samples and
    `-log(p[y])` for trusted ones. With `T` the identity it is cross-entropy.
    `(p @ T)[y]` is clipped below at `keras.config.epsilon()`.

    `y_true` holds `[label, trusted]` rows (see `pack_labels`), or plain labels
    (shape `(n,)` or `(n, 1)`), which are all untrusted.

    Args:
        transition: the noise transition matrix `T[i, j] = P(noisy j | true
            i)`, square, non-negative, rows summing to 1.
        from_logits: whether `y_pred` holds logits (else probabilities).
        reduction, name, dtype: as for any `keras.losses.Loss`.

    Example:

    >>> logits = np.array([[2.0, 0.0, 0.0]])
    >>> identity = tml.evaluation.correction.ForwardCorrectedLoss(np.eye(3))
    >>> round(float(identity(np.array([0]), logits)), 4)  # cross-entropy: -log(softmax(f)[0])
    0.2395
    >>> flips = tml.evaluation.correction.ForwardCorrectedLoss(
    ...     [[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    >>> round(float(flips(np.array([1]), logits)), 4)  # label 1 may be a flipped 0
    0.6931

    Reference: Patrini et al., "Making Deep Neural Networks Robust to Label
    Noise: a Loss Correction Approach", CVPR 2017.
    """

    def __init__(
        self,
        transition,
        from_logits=True,
        reduction="sum_over_batch_size",
        name="forward_corrected_crossentropy",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.transition = validation.check_stochastic_matrix("transition", transition)
        self.from_logits = validation.check_bool("from_logits", from_logits)

    @property
    def num_classes(self):
        return int(self.transition.shape[0])

    def transition_matrix(self):
        """The matrix `T` the loss corrects with (a copy)."""
        return self.transition.copy()

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        labels, trusted = self._unpack(ops.convert_to_tensor(y_true), y_pred.dtype)
        if self.from_logits:
            log_p = ops.log_softmax(y_pred, axis=-1)
            p = ops.exp(log_p)
        else:
            p = ops.clip(y_pred, keras.config.epsilon(), 1.0)
            log_p = ops.log(p)
        onehot = ops.one_hot(labels, self.num_classes, dtype=y_pred.dtype)
        clean = -ops.sum(onehot * log_p, axis=-1)
        noisy_p = ops.matmul(p, ops.convert_to_tensor(self.transition, dtype=y_pred.dtype))
        noisy_p = ops.clip(ops.sum(onehot * noisy_p, axis=-1), keras.config.epsilon(), 1.0)
        corrected = -ops.log(noisy_p)
        return trusted * clean + (1.0 - trusted) * corrected

    @staticmethod
    def _unpack(y_true, dtype):
        rank = len(y_true.shape)
        width = y_true.shape[-1] if rank == 2 else None
        if rank == 1 or width == 1:
            labels = ops.reshape(y_true, (-1,))
            return ops.cast(labels, "int32"), ops.zeros_like(ops.cast(labels, dtype))
        if width == 2:
            return ops.cast(y_true[:, 0], "int32"), ops.cast(y_true[:, 1], dtype)
        raise ValueError(
            "Invalid value for argument `y_true`. Expected labels of shape (n,) or "
            f"(n, 1), or [label, trusted] rows of shape (n, 2) (see `pack_labels`). "
            f"Received: y_true of shape {tuple(y_true.shape)}"
        )

    def get_config(self):
        config = super().get_config()
        config.update({"transition": self.transition.tolist(), "from_logits": self.from_logits})
        return config


def gold_transition_matrix(probabilities, labels, num_classes=None):
    """Gold Loss Correction's estimate of `T` from trusted samples.

    `C[i, :]` is the mean predicted distribution, over the trusted samples
    whose true label is `i`, of a model trained on the *noisy* labels only:
    what the noisy-label model says for class `i`. A class without trusted
    samples gets an identity row (no correction).

    Args:
        probabilities: `(n, K)` predicted distributions on the trusted samples.
        labels: `(n,)` their true (clean) labels.
        num_classes: `K` (default: the width of `probabilities`).

    Example:

    >>> probs = np.array([[0.7, 0.3], [0.5, 0.5], [0.1, 0.9]])
    >>> tml.evaluation.correction.gold_transition_matrix(probs, [0, 0, 1])
    array([[0.6, 0.4],
           [0.1, 0.9]])

    Reference: Hendrycks et al., "Using Trusted Data to Train Deep Networks on
    Labels Corrupted by Severe Noise", NeurIPS 2018.
    """
    probabilities = _check_probabilities(probabilities)
    k = probabilities.shape[1] if num_classes is None else num_classes
    k = validation.check_positive_int("num_classes", k)
    labels = np.asarray(labels)
    if labels.shape != (len(probabilities),) or not np.issubdtype(labels.dtype, np.integer):
        validation.invalid(
            "labels",
            f"array of dtype {labels.dtype} and shape {labels.shape}",
            f"integer class ids, one per row of `probabilities` ({len(probabilities)})",
        )
    if probabilities.shape[1] != k or (labels.size and not 0 <= labels.min() <= labels.max() < k):
        validation.invalid("labels", "labels or predictions", f"classes in [0, {k})")
    matrix = np.eye(k)
    for i in range(k):
        rows = probabilities[labels == i]
        if len(rows):
            matrix[i] = rows.mean(axis=0)
    return matrix


def anchor_transition_matrix(probabilities):
    """The anchor-point estimate of `T`, without trusted data.

    For each class `i`, the anchor is the sample with the highest predicted
    probability of class `i`; `T[i, :]` is the prediction at that anchor
    (Patrini et al. 2017, with the maximum rather than a high percentile).

    Args:
        probabilities: `(n, K)` predicted distributions of a model trained on
            the noisy labels, on the samples to search.

    Example:

    >>> probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    >>> tml.evaluation.correction.anchor_transition_matrix(probs)
    array([[0.9, 0.1],
           [0.3, 0.7]])

    Reference: Patrini et al., "Making Deep Neural Networks Robust to Label
    Noise: a Loss Correction Approach", CVPR 2017.
    """
    probabilities = _check_probabilities(probabilities)
    anchors = np.argmax(probabilities, axis=0)
    return probabilities[anchors].copy()


def _check_probabilities(probabilities):
    array = np.asarray(probabilities, dtype=np.float64)
    if (
        array.ndim != 2
        or len(array) == 0
        or not np.all(np.isfinite(array))
        or np.any(array < 0)
        or not np.allclose(array.sum(axis=1), 1.0, atol=1e-3)
    ):
        validation.invalid(
            "probabilities",
            f"array of shape {array.shape}",
            "a non-empty (n, num_classes) array of predicted distributions (rows sum to 1)",
        )
    return array
