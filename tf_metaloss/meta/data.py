"""Meta data: holding out a meta split, checking it, and cycling meta batches.

Also `resumable_dataset`, training batches that every process (a resumed
run, another worker) draws in the same order.
"""

import math

import numpy as np
import tensorflow as tf
from keras import tree


def _is_array(value):
    return isinstance(value, (np.ndarray, tf.Tensor)) or (
        hasattr(value, "shape") and hasattr(value, "__array__")
    )


def split_meta(x, y, sample_weight, meta_split):
    """Holds out the last `meta_split` fraction of arrays `x`, `y` as meta data.

    Like Keras's `validation_split`, the split is taken before any shuffling.

    Returns:
        `((x, y, sample_weight), (x_meta, y_meta))`.
    """
    if not (isinstance(meta_split, (int, float)) and 0.0 < meta_split < 1.0):
        raise ValueError(
            "Invalid value for argument `meta_split`. Expected a float in the "
            f"open interval (0, 1), e.g. 0.1. Received: meta_split={meta_split!r}"
        )
    flat = [t for t in tree.flatten((x, y, sample_weight)) if t is not None]
    if not flat or not all(_is_array(t) for t in flat):
        raise ValueError(
            "Argument `meta_split` is only supported for NumPy arrays or "
            "tensors. Received: x of type "
            f"{type(x).__name__}. Pass `meta_data=(x_meta, y_meta)` instead."
        )
    n = int(flat[0].shape[0])
    n_meta = int(math.floor(n * meta_split))
    if n_meta < 1 or n_meta >= n:
        raise ValueError(
            f"Invalid value for argument `meta_split`. meta_split={meta_split} "
            f"of {n} samples leaves {n_meta} meta samples and {n - n_meta} "
            "training samples; both must be at least 1."
        )
    cut = n - n_meta

    def head(t):
        return None if t is None else t[:cut]

    def tail(t):
        return None if t is None else t[cut:]

    train = tree.map_structure(head, (x, y, sample_weight))
    meta = tree.map_structure(tail, (x, y))
    return train, meta


def check_not_text(name, x):
    """Raises a clear `ValueError` if inputs `x` (arrays, tensors or a
    `tf.data.Dataset`'s element spec) hold strings: a model's input pipeline
    must preprocess text (e.g. with `tml.text.preprocess`) for every step, the
    meta step included. For a dataset, its inputs (the first part of its
    elements) are checked."""
    if isinstance(x, tf.data.Dataset):
        spec = x.element_spec
        x = spec[0] if isinstance(spec, tuple) else spec
    for leaf in tree.flatten(x):
        dtype = getattr(leaf, "dtype", None)
        if (
            isinstance(leaf, (str, bytes))
            or dtype == tf.string
            or (isinstance(dtype, np.dtype) and dtype.kind in "OSU")
        ):
            raise ValueError(
                f"Invalid value for argument `{name}`. Expected preprocessed "
                "inputs (numbers such as token ids), as the model takes them. "
                f"Received: {name} holding strings. Map text through the "
                "model's preprocessor first, e.g. `tml.text.preprocess(classifier, "
                "(sentences, labels))` for a keras-hub classifier."
            )


def check_meta_arrays(model, x_meta, y_meta, classification):
    """Checks that meta arrays fit the model; raises a clear `ValueError`."""
    check_not_text("meta_data", x_meta)
    inputs = getattr(model, "inputs", None)
    x_flat = tree.flatten(x_meta)
    if inputs and len(inputs) == len(x_flat):
        for spec, value in zip(inputs, x_flat):
            expected = tuple(spec.shape[1:])
            received = tuple(value.shape[1:])
            if len(expected) != len(received) or any(
                e is not None and e != r for e, r in zip(expected, received)
            ):
                raise ValueError(
                    "Invalid value for argument `meta_data`. Expected meta "
                    f"inputs of shape (batch,) + {expected}, like the model's "
                    f"input. Received: x_meta of shape {tuple(value.shape)}."
                )
    sizes = {int(t.shape[0]) for t in x_flat + tree.flatten(y_meta)}
    if sizes == {0}:
        raise ValueError(
            "Invalid value for argument `meta_data`. Expected at least one "
            "meta sample. Received: x_meta and y_meta with 0 samples."
        )
    if len(sizes) != 1:
        raise ValueError(
            "Invalid value for argument `meta_data`. Expected x_meta and "
            f"y_meta with the same number of samples. Received sizes {sorted(sizes)}."
        )
    outputs = getattr(model, "outputs", None)
    if classification and outputs and len(outputs) == 1:
        num_outputs = outputs[0].shape[-1]
        y = np.asarray(y_meta)
        sparse = y.ndim == 1 or (y.ndim == 2 and y.shape[-1] == 1 and num_outputs != 1)
        if num_outputs is not None and sparse and y.size:
            num_classes = 2 if num_outputs == 1 else num_outputs
            low, high = y.min(), y.max()
            if low < 0 or high >= num_classes:
                raise ValueError(
                    "Invalid value for argument `meta_data`. Expected integer "
                    f"labels in [0, {num_classes - 1}] for a model with "
                    f"{num_outputs} output unit(s). Received: y_meta with "
                    f"values in [{low}, {high}]."
                )
        elif num_outputs is not None and not sparse and y.shape[-1] != num_outputs:
            raise ValueError(
                "Invalid value for argument `meta_data`. Expected one-hot "
                f"labels with {num_outputs} columns (the model's outputs). "
                f"Received: y_meta of shape {y.shape}."
            )


def check_meta_dataset(model, dataset):
    """Checks that a meta `tf.data.Dataset` is batched and yields `(x, y)`."""
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) not in (2, 3):
        raise ValueError(
            "Invalid value for argument `meta_data`. Expected a tf.data.Dataset "
            "yielding `(x_meta, y_meta)` (or with sample weights). Received a "
            f"dataset with element_spec={spec}."
        )
    check_not_text("meta_data", spec[0])
    first = tree.flatten(spec[0])[0]
    labels = tree.flatten(spec[1])[0]
    inputs = getattr(model, "inputs", None)
    expected_rank = len(inputs[0].shape) if inputs else None
    if (labels.shape.rank is not None and labels.shape.rank < 1) or (
        expected_rank is not None
        and first.shape.rank is not None
        and first.shape.rank == expected_rank - 1
    ):
        raise ValueError(
            "Invalid value for argument `meta_data`. Expected a batched "
            "tf.data.Dataset (call `.batch(meta_batch_size)`). Received a "
            f"dataset of unbatched elements with element_spec={spec}."
        )


def meta_dataset(meta_data, batch_size, seed=None, skip_batches=0):
    """An endless dataset of meta batches `(x_meta, y_meta)`, all of one static shape.

    Arrays are shuffled (seeded, reshuffled each pass) and batched with
    `drop_remainder=True`. A `tf.data.Dataset` is taken as already batched and
    repeated; if its batch dimension is not static (batched without
    `drop_remainder`), the repeated stream is rebatched to the size of its
    first batch with `drop_remainder=True`, so a short last batch joins the
    next pass instead of changing the shape (compiled steps, and TPUs, need
    static shapes). The first `skip_batches` batches are skipped, so a resumed
    run sees the same meta batches as an uninterrupted one.
    """
    if isinstance(meta_data, tf.data.Dataset):
        dataset = meta_data.repeat()
        if not _static_batch(meta_data):
            first = next(iter(meta_data.take(1)))
            size = int(tree.flatten(first)[0].shape[0])
            dataset = dataset.rebatch(size, drop_remainder=True)
    else:
        x_meta, y_meta = meta_data
        n = int(tree.flatten(x_meta)[0].shape[0])
        batch_size = min(batch_size, n)
        dataset = (
            tf.data.Dataset.from_tensor_slices((x_meta, y_meta))
            .shuffle(n, seed=seed, reshuffle_each_iteration=True)
            .repeat()
            .batch(batch_size, drop_remainder=True)
        )
    if skip_batches:
        dataset = dataset.skip(skip_batches)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _static_batch(dataset):
    return all(
        spec.shape.rank is not None and spec.shape.rank > 0 and spec.shape[0] is not None
        for spec in tree.flatten(dataset.element_spec)
    )


def is_dataset(value):
    """Whether `value` is a `tf.data.Dataset`."""
    return isinstance(value, tf.data.Dataset)


def single_batch_dataset(meta_batch):
    """A dataset yielding `meta_batch` (a tuple of arrays) once, as one batch."""
    return tf.data.Dataset.from_tensors(tuple(meta_batch))


def unpack_meta_data(meta_data):
    """Returns `(x_meta, y_meta)` from a tuple/list, with a clear error."""
    if isinstance(meta_data, tf.data.Dataset):
        return meta_data
    if not isinstance(meta_data, (tuple, list)) or len(meta_data) != 2:
        raise ValueError(
            "Invalid value for argument `meta_data`. Expected a tuple "
            "(x_meta, y_meta) of arrays or a batched tf.data.Dataset yielding "
            f"(x_meta, y_meta). Received: {type(meta_data).__name__}"
            + (f" of length {len(meta_data)}" if hasattr(meta_data, "__len__") else "")
        )
    return tuple(meta_data)


def resumable_dataset(x, y, batch_size, seed=0, sample_weight=None):
    """An endless, seeded dataset of training batches, for exact resumes.

    `(x, y)` (and `sample_weight`) are shuffled with `seed`, reshuffled each
    pass, repeated without end and batched
    with `drop_remainder=True` (every batch has the same, static shape). Pass
    it to `fit` with `steps_per_epoch` (e.g. `len(x) // batch_size`): Keras
    then keeps one iterator across epochs, and
    `tml.callbacks.MetaBackupAndRestore` can replay its position after a
    crash: every dataset built with the same arguments yields the same
    batches, in any process. Under `MultiWorkerMirroredStrategy` every worker
    runs the same shuffle and takes its share of each global batch.

    Args:
        x, y: arrays (or tuples/dicts of arrays) with the same first dimension.
        batch_size: the global batch size.
        seed: the shuffle seed.
        sample_weight: optional per-sample weights.

    Returns:
        A `tf.data.Dataset` of `(x, y)` (or `(x, y, sample_weight)`) batches.

    Example:

    >>> x, y = np.arange(10, dtype="float32")[:, None], np.arange(10)
    >>> def labels(dataset):
    ...     return [batch[1].numpy().tolist() for batch in dataset.take(5)]
    >>> dataset = tml.meta.data.resumable_dataset(x, y, batch_size=4, seed=0)
    >>> labels(dataset) == labels(tml.meta.data.resumable_dataset(x, y, batch_size=4, seed=0))
    True
    >>> dataset.element_spec[0].shape  # static batch dimension
    TensorShape([4, 1])
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(
            "Invalid value for argument `batch_size`. Expected a positive integer. "
            f"Received: batch_size={batch_size!r}"
        )
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(
            f"Invalid value for argument `seed`. Expected an integer. Received: seed={seed!r}"
        )
    data = (x, y) if sample_weight is None else (x, y, sample_weight)
    n = int(tree.flatten(x)[0].shape[0])
    if n < batch_size:
        raise ValueError(
            "Invalid value for argument `batch_size`. Expected at most the number of "
            f"samples ({n}). Received: batch_size={batch_size}"
        )
    return (
        tf.data.Dataset.from_tensor_slices(data)
        .shuffle(n, seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def class_balanced_dataset(x, y, batch_size, seed=0):
    """An endless, seeded dataset of meta batches with every class equally often.

    The samples of each class are shuffled (seeded, reshuffled each pass) and
    drawn in turn, class 0, 1, ..., K-1, 0, ...: a batch whose size is a
    multiple of the number of classes `K` holds exactly `batch_size / K`
    samples of each; otherwise the classes' counts differ by at most one. A
    small class repeats more often than a large one. Pass it to `fit` as
    `meta_data` when the meta set is imbalanced or meta batches are small, so
    the meta objective is the class-balanced one in every step.

    Args:
        x: inputs, an array (or a tuple/dict of arrays) with one row per sample.
        y: integer class labels, shape `(n,)`.
        batch_size: samples per batch.
        seed: the shuffle seed.

    Returns:
        A `tf.data.Dataset` of `(x, y)` batches of static size `batch_size`.

    Example:

    >>> x, y = np.arange(12, dtype="float32")[:, None], np.array([0] * 9 + [1, 2, 2])
    >>> dataset = tml.meta.data.class_balanced_dataset(x, y, batch_size=6, seed=0)
    >>> [np.bincount(b.numpy(), minlength=3).tolist() for _, b in dataset.take(2)]
    [[2, 2, 2], [2, 2, 2]]
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(
            "Invalid value for argument `batch_size`. Expected a positive integer. "
            f"Received: batch_size={batch_size!r}"
        )
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(
            f"Invalid value for argument `seed`. Expected an integer. Received: seed={seed!r}"
        )
    labels = np.asarray(y)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or labels.size == 0:
        raise ValueError(
            "Invalid value for argument `y`. Expected a non-empty 1-D array of integer "
            f"class labels. Received: y with shape {labels.shape} and dtype {labels.dtype}. "
            "Pass sparse labels (e.g. `np.argmax(one_hot, -1)`)."
        )
    n = int(tree.flatten(x)[0].shape[0])
    if n != labels.size:
        raise ValueError(
            "Invalid value for argument `y`. Expected one label per sample of `x` "
            f"({n}). Received: {labels.size} labels."
        )
    classes = np.unique(labels)
    streams = []
    for i, c in enumerate(classes):
        index = np.flatnonzero(labels == c)
        part = tree.map_structure(lambda t, index=index: np.asarray(t)[index], (x, labels))
        streams.append(
            tf.data.Dataset.from_tensor_slices(part)
            .shuffle(len(index), seed=seed * 1009 + i, reshuffle_each_iteration=True)
            .repeat()
        )
    choice = tf.data.Dataset.range(len(classes)).repeat()
    return (
        tf.data.Dataset.choose_from_datasets(streams, choice)
        .batch(batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )
