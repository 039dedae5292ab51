"""Text models from keras-hub: a `MetaModel` over a `TextClassifier`, and its data.

A keras-hub `TextClassifier` (`BertTextClassifier`, `DistilBertTextClassifier`,
...) is a backbone and a classification head, plus a preprocessor that turns
strings into token tensors. `MetaModel` trains the backbone and head on a
learnable loss; the preprocessor runs in the `tf.data` input pipeline, for the
training, validation and meta data alike, so every step, the meta step
included, sees token tensors (`token_ids`, `padding_mask`, `segment_ids`, ...):

- `meta_model(classifier)`: a `MetaModel` over the classifier's backbone and
  head (the task model without its preprocessor). `tml.MetaModel(classifier)`
  does the same. Its outputs are the classifier's: logits unless the
  classifier was built with `activation="softmax"`; `compile` checks that the
  learnable loss's `from_logits` agrees (`from_logits(classifier)`).
- `preprocess(preprocessor, data)`: strings and labels (arrays, lists or a
  `tf.data.Dataset`) mapped through a preprocessor into a batched
  `tf.data.Dataset` of `(token tensors, labels)`, for `fit`, its
  `validation_data` and its `meta_data`.
- `word_piece_vocabulary(sentences)` and `bert_classifier(vocabulary,
  num_classes)`: a small BERT classifier with random weights and a WordPiece
  vocabulary computed from your own text, without any download.

keras-hub is the `nlp` extra (`pip install "tf_metaloss[nlp]"`): it is imported
when one of these functions first needs it, never by `import tf_metaloss`.

`model.save()` stores the backbone and head weights, the learned loss
(phi) and the meta-optimizer state; `keras.models.load_model()` restores
them (keras-hub must be installed). The preprocessor is not part of the saved
model: keep the classifier, or save the preprocessor on its own with
`classifier.preprocessor.save_to_preset(directory)` (restored with
`keras_hub.models.TextClassifierPreprocessor.from_preset(directory)`).

With network access, start from a pretrained classifier instead of a random
one, e.g. `keras_hub.models.BertTextClassifier.from_preset("bert_tiny_en_uncased",
num_classes=2)` in place of `bert_classifier(...)`; the rest is the same. With
an adaptive optimizer at a fine-tuning learning rate (Adam at 5e-5), set
`compile(lookahead_learning_rate=...)` (e.g. 0.05), or the lookahead step, and
so the meta-gradient, is tiny. (Presets need a download: the tests build
everything from configs.)

Example:

>>> sentences = ["a gripping , beautiful film", "dull and far too long",
...              "a joy to watch", "the plot is a mess"]
>>> labels = [1, 0, 1, 0]
>>> vocabulary = tml.text.word_piece_vocabulary(sentences, vocabulary_size=100)
>>> classifier = tml.text.bert_classifier(vocabulary, num_classes=2, sequence_length=16,
...                                       num_layers=1, hidden_dim=16, num_heads=2,
...                                       intermediate_dim=32)
>>> model = tml.text.meta_model(classifier)
>>> model.compile(optimizer=keras.optimizers.SGD(0.05),
...               loss=tml.MetaLoss(from_logits=tml.text.from_logits(classifier)))
>>> train = tml.text.preprocess(classifier, (sentences, labels), batch_size=2)
>>> sorted(train.element_spec[0])
['padding_mask', 'segment_ids', 'token_ids']
>>> history = model.fit(train, meta_data=train, epochs=1, verbose=0, shuffle=False)
>>> int(model.meta_optimizer.iterations)  # a meta step on every one of the 2 steps
2
"""

import numpy as np
import tensorflow as tf
from keras import tree

from tf_metaloss import validation
from tf_metaloss._optional import import_optional
from tf_metaloss.models.meta_model import MetaModel
from tf_metaloss.models.tasks import from_logits
from tf_metaloss.models.tasks import is_task
from tf_metaloss.models.tasks import task_without_preprocessor

__all__ = [
    "BERT_RESERVED_TOKENS",
    "bert_classifier",
    "bert_preprocessor",
    "from_logits",
    "is_task",
    "meta_model",
    "preprocess",
    "task_without_preprocessor",
    "word_piece_vocabulary",
]

# BERT's special tokens, in keras-hub's order ("[PAD]" gets id 0).
BERT_RESERVED_TOKENS = ("[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]")


def _keras_hub(feature):
    return import_optional("keras_hub", feature)


def meta_model(classifier, name=None):
    """A `MetaModel` over a keras-hub `TextClassifier`'s backbone and head.

    The classifier's preprocessor is left out of the model: map the data
    through it in the input pipeline with `preprocess`, for the training data
    and for the meta data. The model's weights are the classifier's (shared,
    not copied). Its `compile` checks that the learnable loss's `from_logits`
    matches the classifier's outputs, and sets the loss, optimizer and metrics
    itself: the classifier's own compile defaults are not used.

    Args:
        classifier: a `keras_hub.models.TextClassifier` (e.g.
            `BertTextClassifier`, `DistilBertTextClassifier`), with or without
            a preprocessor.
        name: the `MetaModel`'s name (default: Keras's).

    Returns:
        A `tml.MetaModel`; compile it with a learnable loss whose
        `from_logits` is `from_logits(classifier)`.

    Example:

    >>> classifier = tml.text.bert_classifier(
    ...     tml.text.BERT_RESERVED_TOKENS + ("good", "bad"), num_classes=2,
    ...     sequence_length=8, hidden_dim=8, num_heads=1, intermediate_dim=8)
    >>> model = tml.text.meta_model(classifier)
    >>> sorted(model.base_model.input)
    ['padding_mask', 'segment_ids', 'token_ids']
    >>> model.compile(optimizer="sgd", loss=tml.MetaLoss())  # logits need from_logits=True
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `loss`. ...
    """
    keras_hub = _keras_hub("`tml.text.meta_model`")
    if not isinstance(classifier, keras_hub.models.TextClassifier):
        validation.invalid(
            "classifier",
            classifier,
            "a keras_hub.models.TextClassifier (e.g. BertTextClassifier)",
        )
    return MetaModel(classifier, name=name)


def preprocess(preprocessor, data, batch_size=None, shuffle=False, seed=None):
    """Maps text (and labels) through a keras-hub preprocessor, in `tf.data`.

    Use it for every dataset a `MetaModel` over a text classifier sees:
    `fit(train, meta_data=meta, validation_data=val)` with each made by
    `preprocess`, so that the meta step gets token tensors like the training
    step.

    Args:
        preprocessor: a keras-hub preprocessor (e.g.
            `BertTextClassifierPreprocessor`), or a task whose `preprocessor`
            to use.
        data: `(sentences, labels)` or `(sentences, labels, sample_weights)`
            of arrays or lists, `sentences` alone (for `predict`), or a
            `tf.data.Dataset` of them, batched or not.
        batch_size: the batch size (default 32); not allowed for a dataset
            that is already batched.
        shuffle: shuffle the samples once per pass (arrays and unbatched
            datasets), seeded by `seed`.
        seed: seed of the shuffle.

    Returns:
        A batched `tf.data.Dataset` yielding `(x, y)` (or `(x, y,
        sample_weight)`, or `x`) with `x` the preprocessor's outputs, e.g. a
        dict of `token_ids`, `padding_mask` and `segment_ids`.

    Example:

    >>> classifier = tml.text.bert_classifier(
    ...     tml.text.BERT_RESERVED_TOKENS + ("good", "bad"), num_classes=2,
    ...     sequence_length=8, hidden_dim=8, num_heads=1, intermediate_dim=8)
    >>> dataset = tml.text.preprocess(classifier, (["good", "bad", "good bad"], [1, 0, 1]),
    ...                               batch_size=2)
    >>> x, y = next(iter(dataset))
    >>> x["token_ids"].numpy()  # [CLS] good [SEP] [PAD] ...
    array([[1, 5, 2, 0, 0, 0, 0, 0],
           [1, 6, 2, 0, 0, 0, 0, 0]], dtype=int32)
    """
    preprocessor = _resolve_preprocessor(preprocessor)
    validation.check_positive_int("batch_size", batch_size, allow_none=True)
    validation.check_bool("shuffle", shuffle)
    if isinstance(data, tf.data.Dataset):
        dataset = data
        if _is_batched(dataset):
            if batch_size is not None:
                validation.invalid(
                    "batch_size",
                    batch_size,
                    "None for a dataset that is already batched",
                    "Batch the dataset once: pass an unbatched dataset, or no batch_size",
                )
            if shuffle:
                validation.invalid(
                    "shuffle",
                    shuffle,
                    "False for a dataset that is already batched",
                    "Shuffle the dataset before batching it",
                )
        else:
            dataset = _shuffle_and_batch(dataset, batch_size, shuffle, seed)
    else:
        dataset = _shuffle_and_batch(_from_arrays(data), batch_size, shuffle, seed)
    return dataset.map(
        lambda *batch: preprocessor(*batch), num_parallel_calls=tf.data.AUTOTUNE
    ).prefetch(tf.data.AUTOTUNE)


def word_piece_vocabulary(sentences, vocabulary_size=8000, lowercase=True):
    """A WordPiece vocabulary learned from `sentences` (offline).

    A thin wrapper of `keras_hub.tokenizers.compute_word_piece_vocabulary`
    with BERT's special tokens first (`BERT_RESERVED_TOKENS`, so `[PAD]` is
    id 0). On a small corpus the vocabulary can be smaller than
    `vocabulary_size`.

    Args:
        sentences: a list or array of strings, or a `tf.data.Dataset` of them.
        vocabulary_size: the largest vocabulary to learn.
        lowercase: lowercase the text first (use the same for the tokenizer).

    Returns:
        A list of tokens.

    Example:

    >>> vocabulary = tml.text.word_piece_vocabulary(["a good film", "a bad film"] * 20, 50)
    >>> vocabulary[:5], "film" in vocabulary  # words seen too rarely stay word pieces
    (['[PAD]', '[CLS]', '[SEP]', '[UNK]', '[MASK]'], True)
    """
    keras_hub = _keras_hub("`tml.text.word_piece_vocabulary`")
    validation.check_positive_int("vocabulary_size", vocabulary_size)
    if isinstance(sentences, tf.data.Dataset):
        dataset = sentences
    else:
        sentences = _strings(sentences, "sentences")
        dataset = tf.data.Dataset.from_tensor_slices(sentences).batch(1024)
    return keras_hub.tokenizers.compute_word_piece_vocabulary(
        dataset,
        vocabulary_size=vocabulary_size,
        lowercase=lowercase,
        reserved_tokens=list(BERT_RESERVED_TOKENS),
    )


def bert_classifier(
    vocabulary,
    num_classes,
    sequence_length=64,
    hidden_dim=64,
    num_layers=2,
    num_heads=2,
    intermediate_dim=256,
    dropout=0.1,
    lowercase=True,
):
    """A small `BertTextClassifier` with random weights, from a vocabulary (offline).

    A `BertBackbone` built from a config (no preset, no download), a
    `BertTokenizer` on `vocabulary` (e.g. from `word_piece_vocabulary`) in a
    `BertTextClassifierPreprocessor`, and keras-hub's classification head
    (logits out). Weights come from the current Keras seed. The classifier is
    not compiled: compile the `MetaModel` made from it (`meta_model`).

    Args:
        vocabulary: a list of tokens holding BERT's special tokens
            (`BERT_RESERVED_TOKENS`).
        num_classes: number of classes.
        sequence_length: tokens per sentence after packing (longer ones are
            truncated), also the backbone's maximum sequence length.
        hidden_dim, num_layers, num_heads, intermediate_dim, dropout: the
            backbone's size (and the dropout of the backbone and the head).
        lowercase: whether the tokenizer lowercases (as the vocabulary did).

    Returns:
        A `keras_hub.models.BertTextClassifier` with its preprocessor.

    Example:

    >>> classifier = tml.text.bert_classifier(
    ...     tml.text.BERT_RESERVED_TOKENS + ("good", "bad"), num_classes=2,
    ...     sequence_length=8, hidden_dim=8, num_heads=1, intermediate_dim=8)
    >>> classifier.backbone.vocabulary_size, classifier.preprocessor.sequence_length
    (7, 8)
    """
    keras_hub = _keras_hub("`tml.text.bert_classifier`")
    vocabulary = _bert_vocabulary(vocabulary)
    validation.check_positive_int("num_classes", num_classes)
    for name, value in (
        ("sequence_length", sequence_length),
        ("hidden_dim", hidden_dim),
        ("num_layers", num_layers),
        ("num_heads", num_heads),
        ("intermediate_dim", intermediate_dim),
    ):
        validation.check_positive_int(name, value)
    if hidden_dim % num_heads:
        validation.invalid("num_heads", num_heads, f"a divisor of hidden_dim={hidden_dim}")
    preprocessor = bert_preprocessor(vocabulary, sequence_length, lowercase)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocabulary),
        num_layers=num_layers,
        num_heads=num_heads,
        hidden_dim=hidden_dim,
        intermediate_dim=intermediate_dim,
        dropout=dropout,
        max_sequence_length=sequence_length,
    )
    return keras_hub.models.BertTextClassifier(
        backbone=backbone,
        num_classes=num_classes,
        preprocessor=preprocessor,
        dropout=dropout,
        compile=False,
    )


def bert_preprocessor(vocabulary, sequence_length=64, lowercase=True):
    """A `BertTextClassifierPreprocessor` on a vocabulary (offline).

    A `BertTokenizer` on `vocabulary` whose outputs are packed as
    `[CLS] tokens [SEP]`, padded with `[PAD]` or truncated to
    `sequence_length`.

    Example:

    >>> preprocessor = tml.text.bert_preprocessor(
    ...     tml.text.BERT_RESERVED_TOKENS + ("good", "bad"), sequence_length=4)
    >>> keras.ops.convert_to_numpy(preprocessor(["bad good good"])["token_ids"])  # truncated to 4
    array([[1, 6, 5, 2]], dtype=int32)
    """
    keras_hub = _keras_hub("`tml.text.bert_preprocessor`")
    vocabulary = _bert_vocabulary(vocabulary)
    validation.check_positive_int("sequence_length", sequence_length)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=lowercase)
    return keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer=tokenizer, sequence_length=sequence_length
    )


def _bert_vocabulary(vocabulary):
    vocabulary = [str(token) for token in vocabulary]
    missing = [t for t in BERT_RESERVED_TOKENS if t not in vocabulary]
    if missing:
        validation.invalid(
            "vocabulary",
            f"<{len(vocabulary)} tokens without {missing}>",
            f"a list of tokens holding BERT's special tokens {list(BERT_RESERVED_TOKENS)}",
        )
    return vocabulary


def _resolve_preprocessor(preprocessor):
    if is_task(preprocessor):
        task = preprocessor
        preprocessor = task.preprocessor
        if preprocessor is None:
            validation.invalid(
                "preprocessor",
                task,
                "a keras-hub preprocessor, or a task that has one",
                "The task's preprocessor is None",
            )
    if not callable(preprocessor):
        validation.invalid("preprocessor", preprocessor, "a keras-hub preprocessor")
    return preprocessor


def _strings(values, name):
    array = np.asarray(values, dtype=object)
    if array.ndim != 1 or not all(isinstance(v, (str, bytes)) for v in array):
        validation.invalid(name, _short(values), "a 1-D list or array of strings")
    return array.astype(str)


def _short(values):
    text = repr(values)
    return text if len(text) <= 80 else text[:77] + "..."


def _from_arrays(data):
    if isinstance(data, tuple):
        if not 1 <= len(data) <= 3:
            validation.invalid(
                "data",
                _short(data),
                "(sentences, labels), (sentences, labels, sample_weights), sentences "
                "or a tf.data.Dataset",
            )
        parts = (_strings(data[0], "data"),) + tuple(np.asarray(p) for p in data[1:])
        sizes = {len(p) for p in parts}
        if len(sizes) != 1:
            validation.invalid(
                "data", f"<parts of sizes {[len(p) for p in parts]}>", "one label per sentence"
            )
        return tf.data.Dataset.from_tensor_slices(parts if len(parts) > 1 else parts[0])
    return tf.data.Dataset.from_tensor_slices(_strings(data, "data"))


def _is_batched(dataset):
    spec = dataset.element_spec
    first = tree.flatten(spec[0] if isinstance(spec, tuple) else spec)[0]
    return first.shape.rank is not None and first.shape.rank >= 1


def _shuffle_and_batch(dataset, batch_size, shuffle, seed):
    if shuffle:
        dataset = dataset.shuffle(
            dataset.cardinality() if dataset.cardinality() > 0 else 10_000,
            seed=seed,
            reshuffle_each_iteration=True,
        )
    return dataset.batch(batch_size or 32)
