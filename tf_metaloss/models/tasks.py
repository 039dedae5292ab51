"""keras-hub tasks as the model a `MetaModel` trains, without importing keras-hub.

A keras-hub `Task` (e.g. `BertTextClassifier`) is a backbone, a head and a
preprocessor. `MetaModel(task)` trains the backbone and head; the
preprocessor runs in the input pipeline (`tml.text.preprocess`). These
functions recognise a task and take it apart; `tml.text` re-exports them.
"""

import keras


def output_units(model):
    """The model's number of outputs, or `None` if it does not say (subclassed).

    >>> tml.models.tasks.output_units(keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)]))
    3
    """
    outputs = getattr(model, "outputs", None)
    if outputs:
        units = keras.tree.flatten(outputs)[0].shape[-1]
        if units:
            return int(units)
    return None


def is_task(model):
    """Whether `model` is a keras-hub `Task` (checked without importing keras-hub).

    Example:

    >>> tml.text.is_task(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    False
    """
    return any(
        cls.__module__.startswith("keras_hub.") and cls.__name__ == "Task"
        for cls in type(model).__mro__
    )


def task_without_preprocessor(task):
    """The backbone and head of a keras-hub task, as a functional `keras.Model`.

    The returned model shares the task's layers (and so its weights): it is
    the task model without its preprocessor and without its compile state
    (keras-hub tasks compile themselves with their own loss and optimizer on
    construction; a `MetaModel` sets its own in `compile`). Its inputs are the
    backbone's, e.g. a dict of `token_ids`, `padding_mask` and `segment_ids`.
    """
    try:
        inputs, outputs = task.input, task.output
    except (AttributeError, ValueError) as error:
        raise ValueError(
            "Invalid value for argument `classifier`. Expected a functional "
            "keras-hub task (built from its backbone's inputs, as every keras-hub "
            f"TextClassifier is). Received: classifier={task!r}"
        ) from error
    return keras.Model(inputs, outputs, name=f"{task.name}_backbone_and_head")


def from_logits(classifier):
    """Whether a keras-hub classifier outputs logits (`True`) or probabilities.

    keras-hub classifiers output logits unless built with an activation
    (`"softmax"`, `"sigmoid"`); pass the result as the learnable loss's
    `from_logits`.

    Example:

    >>> classifier = tml.text.bert_classifier(
    ...     tml.text.BERT_RESERVED_TOKENS + ("good", "bad"), num_classes=2,
    ...     sequence_length=8, hidden_dim=8, num_heads=1, intermediate_dim=8)
    >>> tml.text.from_logits(classifier)
    True
    """
    activation = keras.activations.get(getattr(classifier, "activation", None))
    if activation in (keras.activations.linear, None):
        return True
    if activation in (keras.activations.softmax, keras.activations.sigmoid):
        return False
    raise ValueError(
        "Invalid value for argument `classifier`. Expected a classifier whose "
        "activation is None (logits), 'softmax' or 'sigmoid' (probabilities). Received: "
        f"activation={getattr(activation, '__name__', activation)!r}"
    )
