"""The callbacks of `MetaModel.fit`, in the order they must run."""

import keras

from tf_metaloss.models import progress


def arranged(callbacks, verbose, guard_check=None):
    """The user's `callbacks` with what `MetaModel.fit` adds, in order.

    Backups first (the others start from the restored state), then the
    guard's check if there is one (so the callbacks after it see the model it
    keeps), the user's callbacks, and the progress bar (`MetaProgbarLogger`)
    when `fit` shows one. A `keras.callbacks.CallbackList` without a guard is
    returned as it is.

    Example:

    >>> from tf_metaloss.models.fit_callbacks import arranged
    >>> backup = tml.callbacks.MetaBackupAndRestore("backup")
    >>> history = keras.callbacks.History()
    >>> [type(c).__name__ for c in arranged([history, backup], verbose=0)]
    ['MetaBackupAndRestore', 'History']
    """
    if guard_check is not None:
        callbacks = [guard_check] + _as_list(callbacks)
    return progress.with_progress_bar(_restoring_callbacks_first(callbacks), verbose)


def _as_list(callbacks):
    if callbacks is None:
        return []
    if isinstance(callbacks, keras.callbacks.CallbackList):
        return list(callbacks.callbacks)
    return list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]


def _restoring_callbacks_first(callbacks):
    if callbacks is None or isinstance(callbacks, keras.callbacks.CallbackList):
        return callbacks
    callbacks = list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]

    def restores(callback):
        return getattr(callback, "restores_training_state", False) or isinstance(
            callback, keras.callbacks.BackupAndRestore
        )

    return [c for c in callbacks if restores(c)] + [c for c in callbacks if not restores(c)]
