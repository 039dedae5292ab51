"""Small in-memory classification datasets for demos, examples and tests.

Every loader returns a `Dataset` of numpy arrays: float32 inputs and int64
class ids (`y_*` are 1-D), split into a training and a validation part.

- `load_digits()`: scikit-learn's bundled 8x8 digits (1,797 images, works
  offline), scaled to [0, 1], split with a seeded stratified shuffle.
- `load_npz(path)`: a user's `.npz` file holding `x_train`, `y_train`,
  `x_val`, `y_val`.
- `load_tfds(name)`: any supervised TensorFlow Datasets dataset, e.g.
  `"cifar10"` (train split -> training, test split -> validation).
- `load_sst2(path)`: the GLUE SST-2 sentiment sentences (2 classes), from a
  directory holding `sst2_train.jsonl` and `sst2_dev.jsonl` (one
  `{"sentence": ..., "label": ...}` a line), or from TFDS (`glue/sst2`). Its
  inputs are strings; `tokenize` turns them into token ids for the compared
  text model.
- `load_dataset(spec)`: one of the above from a string, as the command line
  takes it: `"digits"`, `"cifar10"`, `"tfds:<name>"`, a path to a `.npz`,
  `"sst2"` (TFDS) or a path to the SST-2 `.jsonl` files.
"""

import dataclasses
import json
import os

import numpy as np

from tf_metaloss import validation
from tf_metaloss._optional import import_optional

NPZ_KEYS = ("x_train", "y_train", "x_val", "y_val")
TFDS_SHORTCUTS = ("cifar10",)
SST2_FILES = ("sst2_train.jsonl", "sst2_dev.jsonl")
SST2_TFDS = "glue/sst2"


@dataclasses.dataclass
class Dataset:
    """Training and validation arrays of a classification task.

    Attributes:
        x_train: float32 array `(n_train, ...)`; for text, strings `(n_train,)`,
            or int32 token ids `(n_train, sequence_length)` after `tokenize`.
        y_train: int64 array `(n_train,)` of class ids.
        x_val: float32 array `(n_val, ...)` (text: as `x_train`).
        y_val: int64 array `(n_val,)` of class ids.
        num_classes: int.
        name: str, where the data came from.
        vocabulary: for tokenized text, the tokens of the ids (`tokenize`);
            else `None`.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    num_classes: int
    name: str
    vocabulary: list = None

    @property
    def input_shape(self):
        """Shape of one input sample."""
        return tuple(self.x_train.shape[1:])

    @property
    def is_text(self):
        """Whether the inputs are strings (not yet tokenized)."""
        return self.x_train.dtype.kind in "OSU"

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


def load_sst2(path=None, max_train=None, max_val=None, data_dir=None, download=True):
    """Loads the GLUE SST-2 sentiment sentences (0 negative, 1 positive).

    Args:
        path: a directory holding `sst2_train.jsonl` and `sst2_dev.jsonl`,
            or the path of `sst2_train.jsonl` (the dev file beside it); one
            JSON object `{"sentence": str, "label": 0 or 1}` a line. `None`
            loads TFDS's `glue/sst2` instead (needs the `datasets` extra and,
            the first time, a download): its train split for training, its
            validation split (the labelled dev set) for validation.
        max_train, max_val: keep only the first this many sentences.
        data_dir, download: TFDS's, when `path` is `None`.

    Returns:
        A `Dataset` whose inputs are 1-D arrays of strings (67,349 training
        and 872 validation sentences for the full GLUE data) and 2 classes;
        `tokenize` makes token ids of them.

    Example:

    >>> import json, os
    >>> os.makedirs("sst2", exist_ok=True)
    >>> for split, n in (("train", 6), ("dev", 2)):
    ...     with open(f"sst2/sst2_{split}.jsonl", "w") as f:
    ...         for i in range(n):
    ...             print(json.dumps({"sentence": f"film number {i}", "label": i % 2}), file=f)
    >>> data = tml.evaluation.load_sst2("sst2")
    >>> data
    Dataset(name='sst2', x_train=(6,), x_val=(2,), num_classes=2)
    >>> str(data.x_train[1]), int(data.y_train[1]), data.is_text
    ('film number 1', 1, True)
    """
    if path is None:
        return _load_sst2_tfds(max_train, max_val, data_dir, download)
    path = os.fspath(path)
    if os.path.isdir(path):
        train_path, dev_path = (os.path.join(path, name) for name in SST2_FILES)
    else:
        train_path = path
        dev_path = os.path.join(os.path.dirname(path), SST2_FILES[1])
    x_train, y_train = _read_jsonl(train_path, max_train)
    x_val, y_val = _read_jsonl(dev_path, max_val)
    return Dataset(x_train, y_train, x_val, y_val, 2, "sst2")


def _read_jsonl(path, limit):
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No such SST-2 file: {path!r}. Expected a directory holding "
            f'{" and ".join(SST2_FILES)} (one {{"sentence": ..., "label": ...}} '
            "a line), or the path of the first."
        )
    sentences, labels = [], []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if limit is not None and len(sentences) >= limit:
                break
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                sentence, label = record["sentence"], record["label"]
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(
                    f"Invalid SST-2 line {number} of {path!r}: expected a JSON object "
                    f'with "sentence" and "label". Received: {line.strip()[:80]!r}'
                ) from error
            sentences.append(str(sentence))
            labels.append(label)
    if not sentences:
        raise ValueError(f"The SST-2 file {path!r} holds no sentences.")
    labels = _to_class_ids(np.asarray(labels), os.path.basename(path), len(labels))
    if labels.max() > 1:
        raise ValueError(
            f"Invalid labels in {path!r}. Expected 0 (negative) or 1 (positive). "
            f"Received: a label {int(labels.max())}"
        )
    return np.asarray(sentences, dtype=object), labels


def _load_sst2_tfds(max_train, max_val, data_dir, download):
    tfds = import_optional("tensorflow_datasets", "`load_sst2` from TFDS")
    train, val = tfds.load(
        SST2_TFDS, split=["train", "validation"], data_dir=data_dir, download=download
    )
    arrays = []
    for split, limit in ((train, max_train), (val, max_val)):
        if limit is not None:
            split = split.take(limit)
        sentences, labels = [], []
        for batch in tfds.as_numpy(split.batch(4096)):
            sentences += [s.decode("utf-8") for s in batch["sentence"]]
            labels.append(batch["label"])
        if not sentences:
            raise ValueError(f"The TFDS split of {SST2_TFDS!r} is empty.")
        arrays += [
            np.asarray(sentences, dtype=object),
            _to_class_ids(np.concatenate(labels), "label", len(sentences)),
        ]
    return Dataset(*arrays, 2, "sst2")


def subset_indices(n, size):
    """The fixed random subset of `size` of `n` samples (sorted; all if `None`).

    The same for every seed and every caller (`splits.make_split`, `tokenize`).
    """
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).permutation(n)[:size])


def tokenize(data, vocabulary_size=8000, sequence_length=64, train_subset=None):
    """Token ids of a text `Dataset`, for the compared text model.

    Learns a WordPiece vocabulary (`tml.text.word_piece_vocabulary`, BERT's
    special tokens first) from the training sentences only (after
    `train_subset`, the same fixed subset `splits.make_split` takes), then
    packs every sentence as `[CLS] tokens [SEP]` padded with `[PAD]` (id 0) or
    truncated to `sequence_length` (`BertTextClassifierPreprocessor`). Needs
    keras-hub (the `nlp` extra).

    Returns:
        A `Dataset` with int32 token ids `(n, sequence_length)` as inputs,
        `train_subset` training sentences at most, and its `vocabulary`.

    Example:

    >>> sentences = np.array(["a good film", "a bad film", "good", "bad"] * 10, dtype=object)
    >>> labels = np.array([1, 0, 1, 0] * 10)
    >>> text = tml.evaluation.Dataset(sentences, labels, sentences[:4], labels[:4], 2, "toy")
    >>> tokens = tml.evaluation.datasets.tokenize(text, vocabulary_size=50, sequence_length=6)
    >>> tokens.x_train.shape, tokens.x_train.dtype, tokens.vocabulary[:2]
    ((40, 6), dtype('int32'), ['[PAD]', '[CLS]'])
    """
    from tf_metaloss import text

    if not data.is_text:
        raise ValueError(
            "Invalid value for argument `data`. Expected a Dataset of strings "
            f"(e.g. from `load_sst2`). Received: {data!r} with {data.x_train.dtype} inputs"
        )
    keep = subset_indices(len(data.x_train), train_subset)
    x_train, y_train = data.x_train[keep], data.y_train[keep]
    vocabulary = text.word_piece_vocabulary(x_train, vocabulary_size=vocabulary_size)
    preprocessor = text.bert_preprocessor(vocabulary, sequence_length)

    def token_ids(sentences):
        batches = text.preprocess(preprocessor, sentences, batch_size=1024)
        return np.concatenate([x["token_ids"].numpy() for x in batches]).astype(np.int32)

    return Dataset(
        token_ids(x_train),
        y_train,
        token_ids(data.x_val),
        data.y_val,
        data.num_classes,
        data.name,
        vocabulary=list(vocabulary),
    )


SPEC_FORMS = (
    "'digits', 'cifar10' (TFDS), 'tfds:<name>', a path to a .npz file, 'sst2' (TFDS) or a "
    "path to the SST-2 .jsonl files (a directory holding sst2_train.jsonl and sst2_dev.jsonl)"
)


def check_spec(spec):
    """Returns `spec` if `load_dataset` takes it, else raises a `ValueError`.

    Only the form is checked: files are opened by `load_dataset`.

    Example:

    >>> tml.evaluation.datasets.check_spec("tfds:mnist")
    'tfds:mnist'
    >>> tml.evaluation.datasets.check_spec("mnist")
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `spec`. Expected 'digits', 'cifar10' (TFDS), ...
    """
    if not (
        isinstance(spec, str)
        and (
            spec in ("digits", "sst2", *TFDS_SHORTCUTS)
            or spec.lower().endswith(".npz")
            or (spec.startswith("tfds:") and len(spec) > len("tfds:"))
            or is_sst2_path(spec)
        )
    ):
        validation.invalid("spec", spec, SPEC_FORMS)
    return spec


def load_dataset(spec, **kwargs):
    """Loads a dataset from a string specification.

    Args:
        spec: `"digits"`, `"cifar10"`, `"tfds:<name>"` (any supervised TFDS
            dataset), a path to a `.npz` file, `"sst2"` (TFDS's `glue/sst2`,
            also as `"tfds:glue/sst2"`) or a path to the SST-2 `.jsonl` files
            (a directory holding them, or `sst2_train.jsonl`; see `load_sst2`).
        **kwargs: forwarded to the matching loader.

    Returns:
        A `Dataset`.

    Example:

    >>> tml.evaluation.load_dataset("digits").num_classes
    10
    """
    check_spec(spec)
    if spec == "digits":
        return load_digits(**kwargs)
    if spec.lower().endswith(".npz"):
        return load_npz(spec, **kwargs)
    if spec in TFDS_SHORTCUTS:
        return load_tfds(spec, **kwargs)
    if spec in ("sst2", f"tfds:{SST2_TFDS}"):
        return load_sst2(**kwargs)
    if is_sst2_path(spec):
        return load_sst2(spec, **kwargs)
    return load_tfds(spec[len("tfds:") :], **kwargs)


def is_sst2_path(spec):
    """Whether `spec` names SST-2 `.jsonl` files (a `.jsonl` path or a directory of them)."""
    spec = os.fspath(spec)
    if spec.lower().endswith(".jsonl"):
        return True
    return os.path.isdir(spec) and os.path.isfile(os.path.join(spec, SST2_FILES[0]))


def is_text_spec(spec):
    """Whether the dataset `spec` of `load_dataset` is text (SST-2)."""
    return isinstance(spec, str) and (spec in ("sst2", f"tfds:{SST2_TFDS}") or is_sst2_path(spec))


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
