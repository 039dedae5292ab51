"""Pure helpers on lists of gradient tensors (`keras.ops`)."""

from keras import ops


def global_norm(tensors):
    """Euclidean norm of all tensors together.

    Example:

    >>> from tf_metaloss.meta.gradients import global_norm
    >>> float(global_norm([keras.ops.ones((2,)), keras.ops.ones((2,))]))
    2.0
    """
    return ops.sqrt(sum(ops.sum(ops.square(t)) for t in tensors))


def all_finite(tensors):
    """Scalar bool: every element of every tensor is finite."""
    return ops.all(ops.stack([ops.all(ops.isfinite(t)) for t in tensors]))


def clip_by_global_norm(tensors, clipnorm, norm):
    """Scales `tensors` so that their global norm (`norm`) is at most `clipnorm`.

    `clipnorm=None` returns them unchanged.
    """
    if clipnorm is None:
        return list(tensors)
    scale = ops.minimum(1.0, clipnorm / ops.maximum(norm, 1e-12))
    return [t * ops.cast(scale, t.dtype) for t in tensors]
