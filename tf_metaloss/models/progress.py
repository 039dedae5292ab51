"""`MetaProgbarLogger`: the progress bar of `MetaModel.fit`."""

import keras

from tf_metaloss.meta import records

# Log entries of a `MetaModel` left off the progress bar. They stay in the logs
# callbacks read (every step) and in `History` and TensorBoard (every epoch,
# except the per-update record, which is per step only).
HIDDEN_KEYS = frozenset({"meta_grad_norm", "skipped_updates", *records.LOG_KEYS})
HIDDEN_PREFIXES = ("phi/", "guard_")


def shown_on_progress_bar(key):
    """Whether the progress bar shows log entry `key` (validation entries alike).

    Example:

    >>> from tf_metaloss.models.progress import shown_on_progress_bar
    >>> [k for k in ["loss", "accuracy", "meta_objective", "meta_grad_norm", "phi/q",
    ...              "update_clipped", "val_meta_objective"] if shown_on_progress_bar(k)]
    ['loss', 'accuracy', 'meta_objective', 'val_meta_objective']
    """
    name = key.removeprefix("val_")
    return name not in HIDDEN_KEYS and not name.startswith(HIDDEN_PREFIXES)


class MetaProgbarLogger(keras.callbacks.ProgbarLogger):
    """Keras's progress bar showing what a Keras user expects of `fit`.

    It shows the loss, the compiled metrics and the meta objective (and their
    validation values), and leaves off the rest of a `MetaModel`'s logs
    (`meta_grad_norm`, `skipped_updates`, the `phi/...` values and the latest
    meta-update's record), which would make each line hundreds of characters
    long. Callbacks still receive every entry, and `History` and TensorBoard
    record them. `MetaModel.fit` uses it in place of Keras's
    `keras.callbacks.ProgbarLogger` when `verbose` is not 0, unless the
    callbacks already hold a `ProgbarLogger`.

    Example:

    >>> x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
    >>> y = (x[:, 0] > 0).astype("int32")
    >>> model = tml.MetaModel(keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)]))
    >>> model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True), metrics=["accuracy"])
    >>> history = model.fit(x, y, meta_split=0.25, epochs=1, verbose=2)
    2/2 - ... - accuracy: ... - loss: ... - meta_objective: ...
    >>> sorted(history.history)  # History keeps every entry
    ['accuracy', 'guard_objective', 'guard_reverted', 'guard_start_objective', 'loss',
     'meta_grad_norm', 'meta_objective', 'phi/correction', 'skipped_updates']
    """

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, _shown(logs))

    def on_test_batch_end(self, batch, logs=None):
        super().on_test_batch_end(batch, _shown(logs))

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, _shown(logs))

    def on_test_end(self, logs=None):
        super().on_test_end(_shown(logs))


def _shown(logs):
    if not logs:
        return logs
    return {key: value for key, value in logs.items() if shown_on_progress_bar(key)}


def with_progress_bar(callbacks, verbose):
    """`callbacks` plus a `MetaProgbarLogger` when `fit` shows a progress bar.

    Keras adds its own `ProgbarLogger` to the callbacks only when they hold
    none, so a list given here with ours gets ours. A `CallbackList`, or a
    list that holds a `ProgbarLogger`, is returned as it is.
    """
    if verbose == 0 or isinstance(callbacks, keras.callbacks.CallbackList):
        return callbacks
    callbacks = list(callbacks or [])
    if any(isinstance(c, keras.callbacks.ProgbarLogger) for c in callbacks):
        return callbacks
    return callbacks + [MetaProgbarLogger()]
