"""The compared networks: an MLP and two small CNNs, logits out.

Example:

>>> tml.evaluation.models.build_model("cnn", (32, 32, 3), 10, hidden_units=128).name
'compared_cnn'
"""

import keras

from tf_metaloss import validation

MODELS = ("auto", "mlp", "cnn", "small_cnn")
CNN_WIDTHS = {"cnn": (32, 64), "small_cnn": (16, 32)}


def build_model(kind, input_shape, num_classes, hidden_units=128):
    """The compared network (logits out), built from the current Keras seed.

    Example:

    >>> tml.evaluation.models.build_model("mlp", (64,), 10).output.shape
    (None, 10)
    """
    validation.check_choice("model", kind, MODELS)
    input_shape = tuple(input_shape)
    if kind == "auto":
        kind = "cnn" if len(input_shape) == 3 else "mlp"
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
