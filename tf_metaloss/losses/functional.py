"""Pure per-sample base losses written in `keras.ops`.

Every function takes `(y_true, y_pred)` and returns one value per sample (the
last axis is reduced). Classification functions accept sparse integer labels or
one-hot labels, logits (`from_logits=True`) or probabilities, and a single output
unit for binary problems (treated as two classes). Nothing here holds state, so
the functions can be differentiated to any order.

Example:

>>> import numpy as np
>>> from tf_metaloss.losses import functional
>>> logits = np.array([[2.0, 0.0, -1.0]], "float32")
>>> float(functional.crossentropy(np.array([0]), logits, from_logits=True)[0])
0.1698...
"""

from keras import ops

EPSILON = 1e-7

CLASSIFICATION_LOSSES = (
    "crossentropy",
    "focal",
    "mae_classification",
    "label_smoothing",
    "generalized_crossentropy",
    "symmetric_crossentropy",
    "poly1",
)
REGRESSION_LOSSES = ("mse", "mae", "huber")


def classification_terms(y_true, y_pred, from_logits):
    """Returns `(one_hot, log_probs, probs)` for any supported label format.

    Args:
        y_true: sparse labels of shape `(batch,)` or `(batch, 1)`, or one-hot /
            soft labels of shape `(batch, classes)`.
        y_pred: logits or probabilities of shape `(batch, classes)`; a single
            output unit `(batch, 1)` is a binary problem.
        from_logits: whether `y_pred` holds logits.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    binary = y_pred.shape[-1] == 1
    if binary:
        # Binary with one unit: expand to two classes [negative, positive].
        if from_logits:
            y_pred = ops.concatenate([ops.zeros_like(y_pred), y_pred], axis=-1)
        else:
            y_pred = ops.concatenate([1.0 - y_pred, y_pred], axis=-1)
    num_classes = y_pred.shape[-1]
    if from_logits:
        log_probs = ops.log_softmax(y_pred, axis=-1)
        probs = ops.exp(log_probs)
    else:
        probs = ops.clip(y_pred, EPSILON, 1.0 - EPSILON)
        probs = probs / ops.sum(probs, axis=-1, keepdims=True)
        log_probs = ops.log(probs)
    if binary:
        one_hot = _binary_targets(y_true, log_probs.dtype)
    else:
        one_hot = to_one_hot(y_true, num_classes, log_probs.dtype)
    return one_hot, log_probs, probs


def _binary_targets(y_true, dtype):
    """`[1 - y, y]` for binary labels of shape `(batch,)` or `(batch, 1)`.

    Soft labels (e.g. 0.9) are kept as probabilities, as in Keras's
    binary cross-entropy.
    """
    y = ops.cast(ops.convert_to_tensor(y_true), dtype)
    if len(y.shape) >= 2 and y.shape[-1] == 1:
        y = ops.squeeze(y, axis=-1)
    y = ops.expand_dims(y, -1)
    return ops.concatenate([1.0 - y, y], axis=-1)


def to_one_hot(y_true, num_classes, dtype):
    """Converts sparse or one-hot labels to one-hot labels of `num_classes`."""
    y_true = ops.convert_to_tensor(y_true)
    rank = len(y_true.shape)
    if rank >= 2 and y_true.shape[-1] == num_classes and num_classes > 1:
        return ops.cast(y_true, dtype)
    if rank >= 2 and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, axis=-1)
    return ops.one_hot(ops.cast(y_true, "int32"), num_classes, dtype=dtype)


def true_class_probability(y_true, y_pred, from_logits=False):
    """Probability the prediction gives the true class, per sample."""
    one_hot, _, probs = classification_terms(y_true, y_pred, from_logits)
    return ops.sum(one_hot * probs, axis=-1)


def crossentropy(y_true, y_pred, from_logits=False):
    """Categorical cross-entropy per sample."""
    one_hot, log_probs, _ = classification_terms(y_true, y_pred, from_logits)
    return -ops.sum(one_hot * log_probs, axis=-1)


def focal(y_true, y_pred, from_logits=False, gamma=2.0):
    """Focal loss (Lin et al. 2017): cross-entropy scaled by `(1 - p)^gamma`."""
    one_hot, log_probs, probs = classification_terms(y_true, y_pred, from_logits)
    modulation = ops.power(1.0 - probs, gamma)
    return -ops.sum(one_hot * modulation * log_probs, axis=-1)


def mae_classification(y_true, y_pred, from_logits=False):
    """Mean absolute error between one-hot labels and probabilities.

    Equals `2 * (1 - p_true)` for hard labels; bounded, hence robust to label
    noise (Ghosh et al. 2017).
    """
    one_hot, _, probs = classification_terms(y_true, y_pred, from_logits)
    return ops.sum(ops.abs(one_hot - probs), axis=-1)


def label_smoothing(y_true, y_pred, from_logits=False, smoothing=0.1):
    """Cross-entropy against labels smoothed toward the uniform distribution."""
    one_hot, log_probs, _ = classification_terms(y_true, y_pred, from_logits)
    num_classes = one_hot.shape[-1]
    smoothed = one_hot * (1.0 - smoothing) + smoothing / num_classes
    return -ops.sum(smoothed * log_probs, axis=-1)


def generalized_crossentropy(y_true, y_pred, from_logits=False, q=0.7):
    """Generalized cross-entropy (Zhang & Sabuncu 2018): `(1 - p_true^q) / q`."""
    p_true = true_class_probability(y_true, y_pred, from_logits)
    return (1.0 - ops.power(ops.maximum(p_true, EPSILON), q)) / q


def symmetric_crossentropy(y_true, y_pred, from_logits=False, alpha=0.1, beta=1.0, log_zero=-4.0):
    """Symmetric cross-entropy (Wang et al. 2019): `alpha*CE + beta*RCE`.

    The reverse cross-entropy takes `log(0)` as `log_zero`, so it equals
    `-log_zero * (1 - p_true)` for hard labels.
    """
    one_hot, log_probs, probs = classification_terms(y_true, y_pred, from_logits)
    ce = -ops.sum(one_hot * log_probs, axis=-1)
    log_labels = ops.where(one_hot > 0, ops.log(ops.maximum(one_hot, EPSILON)), log_zero)
    rce = -ops.sum(probs * log_labels, axis=-1)
    return alpha * ce + beta * rce


def poly1(y_true, y_pred, from_logits=False, epsilon=1.0):
    """PolyLoss-1 (Leng et al. 2022): `CE + epsilon * (1 - p_true)`."""
    one_hot, log_probs, probs = classification_terms(y_true, y_pred, from_logits)
    p_true = ops.sum(one_hot * probs, axis=-1)
    return -ops.sum(one_hot * log_probs, axis=-1) + epsilon * (1.0 - p_true)


def align_regression(y_true, y_pred):
    """Returns `(y_true, y_pred)` with equal shapes `(batch, outputs)`.

    Targets of shape `(batch,)` and `(batch, 1)` both fit predictions of
    either shape (never broadcast to `(batch, batch)`).
    """
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(y_true, y_pred.dtype)
    if len(y_pred.shape) == 1:
        y_pred = ops.expand_dims(y_pred, -1)
    if len(y_true.shape) == 1:
        y_true = ops.expand_dims(y_true, -1)
    return ops.broadcast_to(y_true, ops.shape(y_pred)), y_pred


def _residual(y_true, y_pred):
    y_true, y_pred = align_regression(y_true, y_pred)
    return y_pred - y_true


def mean(x, axis=-1):
    """The mean of `x` over `axis` (or all of it with `axis=None`), in `x`'s dtype.

    A sum over the size: Keras 3.15's `ops.mean` computes a float64 mean in
    float32 on JAX, which would round float64 meta-gradient checks.

    >>> from tf_metaloss.losses import functional
    >>> keras.ops.convert_to_numpy(functional.mean(keras.ops.ones((2, 4)))).tolist()
    [1.0, 1.0]
    """
    if axis is None:
        return ops.sum(x) / ops.cast(ops.size(x), x.dtype)
    return ops.sum(x, axis=axis) / ops.cast(ops.shape(x)[axis], x.dtype)


def mse(y_true, y_pred, from_logits=False):
    """Mean squared error over the last axis (`from_logits` is ignored)."""
    return mean(ops.square(_residual(y_true, y_pred)), axis=-1)


def mae(y_true, y_pred, from_logits=False):
    """Mean absolute error over the last axis (`from_logits` is ignored)."""
    return mean(ops.abs(_residual(y_true, y_pred)), axis=-1)


def huber(y_true, y_pred, from_logits=False, delta=1.0):
    """Huber loss over the last axis (`from_logits` is ignored)."""
    error = ops.abs(_residual(y_true, y_pred))
    quadratic = ops.minimum(error, delta)
    linear = error - quadratic
    return mean(0.5 * ops.square(quadratic) + delta * linear, axis=-1)


BASE_LOSSES = {
    "crossentropy": crossentropy,
    "focal": focal,
    "mae_classification": mae_classification,
    "label_smoothing": label_smoothing,
    "generalized_crossentropy": generalized_crossentropy,
    "symmetric_crossentropy": symmetric_crossentropy,
    "poly1": poly1,
    "mse": mse,
    "mae": mae,
    "huber": huber,
}


def get(name):
    """Returns the base loss function called `name`, with a clear error."""
    if callable(name):
        return name
    if not isinstance(name, str) or name not in BASE_LOSSES:
        raise ValueError(
            "Invalid value for argument `base_loss`. Expected one of "
            f"{sorted(BASE_LOSSES)}. Received: base_loss={name!r}"
        )
    return BASE_LOSSES[name]


def is_regression(name):
    """True for the regression base losses (`mse`, `mae`, `huber`)."""
    return name in REGRESSION_LOSSES
