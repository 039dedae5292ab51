"""The progress bar of `MetaModel.fit` shows what a Keras user expects."""

import re

import keras
import numpy as np
import pytest

import tf_metaloss as tml

HIDDEN = (
    "meta_grad_norm",
    "skipped_updates",
    "phi/",
    "meta_updates",
    "meta_update_step",
    "update_meta_objective",
    "update_meta_grad_norm",
    "update_clipped",
    "update_skipped",
)


class StepLogs(keras.callbacks.Callback):
    """Keeps the keys of the logs callbacks receive."""

    def __init__(self):
        super().__init__()
        self.batch_keys, self.epoch_keys = set(), set()

    def on_train_batch_end(self, batch, logs=None):
        self.batch_keys |= set(logs)

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_keys |= set(logs)


def _fit(verbose, callbacks=()):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    model = tml.MetaModel(keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)]))
    model.compile(
        optimizer="sgd",
        loss=tml.MetaLoss(from_logits=True, family="generalized_ce"),
        metrics=["accuracy"],
        meta_every=1,
    )
    return model.fit(
        x[:64],
        y[:64],
        meta_data=(x[64:80], y[64:80]),
        validation_data=(x[80:], y[80:]),
        batch_size=16,
        epochs=2,
        verbose=verbose,
        callbacks=list(callbacks),
    )


def _entries(line):
    """The `name: value` entries of a progress-bar line."""
    return re.findall(r"([\w/]+): [-+.\w]+", line)


@pytest.mark.parametrize("verbose", [1, 2])
def test_progress_bar_shows_the_loss_metrics_and_meta_objective(verbose, capsys):
    logs = StepLogs()
    history = _fit(verbose, [logs])
    out = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)
    # Every update of the bar (verbose=1 rewrites it in place with \r or \b).
    updates = [u.strip() for u in re.split(r"[\r\n\x08]+|(?=\d+/\d+ )", out)]
    updates = [u for u in updates if re.match(r"\d+/\d+ ", u)]
    for update in updates:
        assert len(update) < 200, update
        assert not any(hidden in update for hidden in HIDDEN), update
        assert {"accuracy", "loss", "meta_objective"} <= set(_entries(update)), update
    ends = [u for u in updates if "val_loss" in u]  # the end of each epoch
    assert len(ends) == 2, out
    for update in ends:
        assert _entries(update) == [
            "accuracy",
            "loss",
            "meta_objective",
            "val_accuracy",
            "val_loss",
            "val_meta_objective",
        ], update
    # Every entry stays in History and in the logs callbacks read.
    assert (
        sorted(history.history)
        == sorted(logs.epoch_keys)
        == [
            "accuracy",
            "guard_objective",
            "guard_reverted",
            "guard_start_objective",
            "loss",
            "meta_grad_norm",
            "meta_objective",
            "phi/q",
            "skipped_updates",
            "val_accuracy",
            "val_loss",
            "val_meta_objective",
        ]
    )
    assert {
        "meta_updates",
        "meta_update_step",
        "update_meta_objective",
        "update_meta_grad_norm",
        "update_clipped",
        "update_skipped",
        "phi/q",
    } <= logs.batch_keys


def test_a_progress_bar_given_is_kept(capsys):
    _fit(2, [keras.callbacks.ProgbarLogger()])
    out = capsys.readouterr().out
    # Keras's own bar, as asked for: every entry.
    assert "meta_grad_norm" in out and "phi/q" in out


def test_verbose_zero_prints_nothing(capsys):
    _fit(0)
    assert capsys.readouterr().out == ""
