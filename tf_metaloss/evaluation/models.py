"""The compared networks: an MLP, two small CNNs and a tiny BERT, logits out.

Example:

>>> tml.evaluation.models.build_model("cnn", (32, 32, 3), 10, hidden_units=128).name
'compared_cnn'
"""

import keras

from tf_metaloss import validation
from tf_metaloss._optional import import_optional

MODELS = ("auto", "mlp", "cnn", "small_cnn", "tiny_bert")
CNN_WIDTHS = {"cnn": (32, 64), "small_cnn": (16, 32)}
# The tiny BERT: transformer layers; attention heads of this width.
BERT_LAYERS = 2
BERT_HEAD_WIDTH = 32


def build_model(kind, input_shape, num_classes, hidden_units=128, vocabulary_size=None):
    """The compared network (logits out), built from the current Keras seed.

    `"tiny_bert"` (the text model, `"auto"` when `vocabulary_size` is given)
    takes token ids `(sequence_length,)` (`datasets.tokenize`): a keras-hub
    `BertTextClassifier` trained from scratch, 2 transformer layers of width
    `hidden_units`, `hidden_units // 32` attention heads, feed-forward width
    `4 * hidden_units`, dropout 0.1, over `vocabulary_size` tokens; the
    padding mask (`token_ids != 0`) and the segment ids (0) are computed in
    the model. Needs keras-hub (the `nlp` extra).

    Example:

    >>> tml.evaluation.models.build_model("mlp", (64,), 10).output.shape
    (None, 10)
    >>> bert = tml.evaluation.models.build_model("auto", (16,), 2, 32, vocabulary_size=50)
    >>> bert.name, bert.output.shape
    ('compared_tiny_bert', (None, 2))
    """
    validation.check_choice("model", kind, MODELS)
    input_shape = tuple(input_shape)
    if kind == "auto":
        if vocabulary_size is not None:
            kind = "tiny_bert"
        else:
            kind = "cnn" if len(input_shape) == 3 else "mlp"
    if kind == "tiny_bert" or vocabulary_size is not None:
        if kind != "tiny_bert" or vocabulary_size is None or len(input_shape) != 1:
            raise ValueError(
                "Invalid value for argument `model`. Token ids (a vocabulary and "
                "inputs of shape (sequence_length,)) go with 'tiny_bert' and "
                f"'tiny_bert' with token ids. Received: model={kind!r}, "
                f"input_shape={input_shape}, vocabulary_size={vocabulary_size}"
            )
        return _tiny_bert(input_shape[0], num_classes, hidden_units, vocabulary_size)
    inputs = keras.Input(input_shape)
    if kind in CNN_WIDTHS:
        if len(input_shape) != 3:
            raise ValueError(
                f"Invalid value for argument `model`. {kind!r} needs image inputs "
                f"(height, width, channels). Received: input_shape={input_shape}"
            )
        first, second = CNN_WIDTHS[kind]
        x = keras.layers.Conv2D(first, 3, padding="same", activation="relu")(inputs)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Conv2D(second, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(hidden_units, activation="relu")(x)
    else:
        x = keras.layers.Flatten()(inputs) if len(input_shape) > 1 else inputs
        x = keras.layers.Dense(hidden_units, activation="relu")(x)
    outputs = keras.layers.Dense(num_classes)(x)
    return keras.Model(inputs, outputs, name=f"compared_{kind}")


def _tiny_bert(sequence_length, num_classes, hidden_units, vocabulary_size):
    from tf_metaloss import text

    keras_hub = import_optional("keras_hub", "The 'tiny_bert' model")
    if hidden_units % BERT_HEAD_WIDTH:
        validation.invalid(
            "hidden_units",
            hidden_units,
            f"a multiple of {BERT_HEAD_WIDTH} for 'tiny_bert' (attention heads of that width)",
        )
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=vocabulary_size,
        num_layers=BERT_LAYERS,
        num_heads=hidden_units // BERT_HEAD_WIDTH,
        hidden_dim=hidden_units,
        intermediate_dim=4 * hidden_units,
        dropout=0.1,
        max_sequence_length=sequence_length,
    )
    classifier = keras_hub.models.BertTextClassifier(
        backbone, num_classes, preprocessor=None, dropout=0.1, compile=False
    )
    core = text.task_without_preprocessor(classifier)
    token_ids = keras.Input((sequence_length,), dtype="int32", name="token_ids")
    logits = core(
        {
            "token_ids": token_ids,
            "padding_mask": keras.ops.not_equal(token_ids, 0),
            "segment_ids": keras.ops.zeros_like(token_ids),
        }
    )
    return keras.Model(token_ids, logits, name="compared_tiny_bert")
