"""Small in-memory classification datasets for demos, examples and tests.

Every loader returns a `Dataset` of numpy arrays: float32 inputs and int64
class ids (`y_*` are 1-D), split into a training and a validation part.

- `load_digits()`: scikit-learn's bundled 8x8 digits (1,797 images, works
  offline), scaled to [0, 1], split with a seeded stratified shuffle.
- `load_npz(path)`: a user's `.npz` file holding `x_train`, `y_train`,
  `x_val`, `y_val`.
- `load_tfds(name)`: any supervised TensorFlow Datasets dataset, e.g.
  `"cifar10"` (train split -> training, test split -> validation).
- `load_dataset(spec)`: one of the above from a string, as the command line
  takes it: `"digits"`, `"cifar10"`, `"tfds:<name>"` or a path to a `.npz`.
"""

import dataclasses
import os

import numpy as np

from tf_metaloss._optional import import_optional

NPZ_KEYS = ("x_train", "y_train", "x_val", "y_val")
TFDS_SHORTCUTS = ("cifar10",)


@dataclasses.dataclass
class Dataset:
    """Training and validation arrays of a classification task.

    Attributes:
        x_train: float32 array `(n_train, ...)`.
        y_train: int64 array `(n_train,)` of class ids.
        x_val: float32 array `(n_val, ...)`.
        y_val: int64 array `(n_val,)` of class ids.
        num_classes: int.
        name: str, where the data came from.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    num_classes: int
    name: str

    @property
    def input_shape(self):
        """Shape of one input sample."""
        return tuple(self.x_train.shape[1:])

    def __repr__(self):
        return (
            f"Dataset(name={self.name!r}, x_train={self.x_train.shape}, "
            f"x_val={self.x_val.shape}, num_classes={self.num_classes})"
        )


def load_digits(val_fraction=0.2, seed=0, flatten=True):
    """Loads scikit-learn's 8x8 handwritten digits (offline).

    Args:
        val_fraction: float in (0, 1), the share of the 1,797 images held
            out for validation (stratified by class).
        seed: int, seeds the shuffled split.
        flatten: bool. `True` gives inputs of shape `(64,)`; `False` gives
            images of shape `(8, 8, 1)`.

    Returns:
        A `Dataset` with float32 inputs in [0, 1] and 10 classes.

    Example:

    >>> data = tml.evaluation.load_digits(val_fraction=0.2, seed=0)
    >>> data.x_train.shape, data.x_val.shape
    ((1437, 64), (360, 64))
    """
    sk_datasets = import_optional("sklearn.datasets", "`load_digits`")
    model_selection = import_optional("sklearn.model_selection", "`load_digits`")

    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(
            "Invalid value for argument `val_fraction`. Expected a float in "
            f"(0, 1). Received: val_fraction={val_fraction!r}"
        )
    digits = sk_datasets.load_digits()
    # Pixel intensities are integers in [0, 16].
    x = (digits.data / 16.0).astype(np.float32)
    if not flatten:
        x = x.reshape(-1, 8, 8, 1)
    y = digits.target.astype(np.int64)
    x_train, x_val, y_train, y_val = model_selection.train_test_split(
        x, y, test_size=val_fraction, random_state=seed, stratify=y
    )
    return Dataset(x_train, y_train, x_val, y_val, 10, "digits")


def load_npz(path, num_classes=None):
    """Loads a classification dataset from a `.npz` file.

    The file must hold the arrays `x_train`, `y_train`, `x_val`, `y_val`.
    Labels may be `(n,)` or `(n, 1)` integer class ids. `uint8` inputs
    (images) are scaled to float32 in [0, 1]; other inputs are cast to
    float32 unchanged. An optional `class_names` array sets `num_classes`.

    Args:
        path: path to the `.npz` file.
        num_classes: int or `None` (infer: `len(class_names)` if present,
            else the largest label + 1).

    Returns:
        A `Dataset`.

    Example:

    >>> rng = np.random.default_rng(0)
    >>> images = rng.integers(0, 256, size=(120, 8, 8, 3), dtype=np.uint8)
    >>> labels = rng.integers(0, 4, size=120)
    >>> np.savez("mine.npz", x_train=images[:100], y_train=labels[:100],
    ...          x_val=images[100:], y_val=labels[100:], class_names=["a", "b", "c", "d"])
    >>> data = tml.evaluation.load_npz("mine.npz")
    >>> data
    Dataset(name='mine.npz', x_train=(100, 8, 8, 3), x_val=(20, 8, 8, 3), num_classes=4)
    >>> data.x_train.dtype, float(data.x_train.max()) <= 1.0  # uint8 images scaled to [0, 1]
    (dtype('float32'), True)
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such .npz file: {path!r}")
    with np.load(path, allow_pickle=False) as archive:
        missing = [key for key in NPZ_KEYS if key not in archive.files]
        if missing:
            raise KeyError(
                f"The file {path!r} is missing the array(s) {missing}. A "
                f"dataset .npz needs {list(NPZ_KEYS)}. Found: "
                f"{sorted(archive.files)}"
            )
        arrays = {key: archive[key] for key in NPZ_KEYS}
        if num_classes is None and "class_names" in archive.files:
            num_classes = len(archive["class_names"])
    x_train = _to_float_inputs(arrays["x_train"])
    x_val = _to_float_inputs(arrays["x_val"])
    y_train = _to_class_ids(arrays["y_train"], "y_train", len(x_train))
    y_val = _to_class_ids(arrays["y_val"], "y_val", len(x_val))
    num_classes = _infer_num_classes(num_classes, y_train, y_val)
    name = os.path.basename(path)
    return Dataset(x_train, y_train, x_val, y_val, num_classes, name)


def load_tfds(
    name,
    train_split="train",
    val_split="test",
    data_dir=None,
    download=True,
    max_train=None,
    max_val=None,
):
    """Loads a supervised TensorFlow Datasets dataset into numpy arrays.

    Args:
        name: a TFDS name with `(input, label)` supervised keys, e.g.
            `"cifar10"`, `"mnist"`, `"fashion_mnist"`.
        train_split: TFDS split used for training, e.g. `"train[:10%]"`.
        val_split: TFDS split used for validation.
        data_dir: where TFDS stores data (`None`: its default).
        download: whether TFDS may download and prepare the data.
        max_train: int or `None`, keep only the first `max_train` samples.
        max_val: int or `None`, keep only the first `max_val` samples.

    Returns:
        A `Dataset`; `uint8` images are scaled to float32 in [0, 1].

    Example:

    >>> data = tml.evaluation.load_tfds("cifar10", train_split="train[:5000]", max_val=8)
    >>> data.input_shape, data.num_classes, data.x_val.shape[0]
    ((32, 32, 3), 10, 8)
    """
    tfds = import_optional("tensorflow_datasets", "`load_tfds`")

    try:
        (train, val), info = tfds.load(
            name,
            split=[train_split, val_split],
            as_supervised=True,
            with_info=True,
            data_dir=data_dir,
            download=download,
        )
    except ModuleNotFoundError as error:
        # TFDS imports some modules lazily, only when it downloads and
        # prepares a dataset (e.g. `importlib_resources`).
        module = (error.name or "").split(".")[0]
        raise ImportError(
            f"TensorFlow Datasets needs the module {module!r} to prepare "
            f"{name!r}. Install it with `pip install "
            f"{module.replace('_', '-')}`."
        ) from error
    label = info.features[info.supervised_keys[1]]
    num_classes = getattr(label, "num_classes", None)
    x_train, y_train = _tfds_to_numpy(tfds, train, max_train)
    x_val, y_val = _tfds_to_numpy(tfds, val, max_val)
    x_train, x_val = _to_float_inputs(x_train), _to_float_inputs(x_val)
    y_train = _to_class_ids(y_train, "y_train", len(x_train))
    y_val = _to_class_ids(y_val, "y_val", len(x_val))
    num_classes = _infer_num_classes(num_classes, y_train, y_val)
    return Dataset(x_train, y_train, x_val, y_val, num_classes, name)


def load_dataset(spec, **kwargs):
    """Loads a dataset from a string specification.

    Args:
        spec: `"digits"`, `"cifar10"`, `"tfds:<name>"` (any supervised TFDS
            dataset) or a path to a `.npz` file.
        **kwargs: forwarded to the matching loader.

    Returns:
        A `Dataset`.

    Example:

    >>> tml.evaluation.load_dataset("digits").num_classes
    10
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(
            "Invalid value for argument `spec`. Expected 'digits', "
            "'cifar10', 'tfds:<name>' or a path to a .npz file. "
            f"Received: spec={spec!r}"
        )
    if spec == "digits":
        return load_digits(**kwargs)
    if spec.lower().endswith(".npz"):
        return load_npz(spec, **kwargs)
    if spec in TFDS_SHORTCUTS:
        return load_tfds(spec, **kwargs)
    if spec.startswith("tfds:") and len(spec) > len("tfds:"):
        return load_tfds(spec[len("tfds:") :], **kwargs)
    raise ValueError(
        "Invalid value for argument `spec`. Expected 'digits', 'cifar10', "
        f"'tfds:<name>' or a path to a .npz file. Received: spec={spec!r}"
    )


def _tfds_to_numpy(tfds, dataset, limit):
    if limit is not None:
        dataset = dataset.take(limit)
    xs, ys = [], []
    for x, y in tfds.as_numpy(dataset.batch(1024)):
        xs.append(x)
        ys.append(y)
    if not xs:
        raise ValueError("The TFDS split is empty.")
    return np.concatenate(xs), np.concatenate(ys)


def _to_float_inputs(x):
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    return x.astype(np.float32, copy=False)


def _to_class_ids(y, key, length):
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != length:
        raise ValueError(
            f"Invalid labels `{key}`. Expected integer class ids of shape "
            f"({length},) (one per input). Received: shape {y.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise ValueError(
                f"Invalid labels `{key}`. Expected integer class ids. Received: dtype {y.dtype}"
            )
    if len(y) and y.min() < 0:
        raise ValueError(
            f"Invalid labels `{key}`. Expected non-negative class ids. "
            f"Received: a label {int(y.min())}"
        )
    return y.astype(np.int64, copy=False)


def _infer_num_classes(num_classes, y_train, y_val):
    largest = int(max(y_train.max(initial=-1), y_val.max(initial=-1)))
    if num_classes is None:
        return largest + 1
    if largest >= num_classes:
        raise ValueError(
            f"Labels go up to {largest}, which does not fit num_classes={num_classes}."
        )
    return int(num_classes)
