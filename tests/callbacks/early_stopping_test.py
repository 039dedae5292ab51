"""Tests of `LossParameterEarlyStopping`."""

import functools
import types

import keras
import numpy as np
import pytest

import tf_metaloss as tml
from tf_metaloss import callbacks
from tf_metaloss.callbacks.monitor import MetaStepRecord

# The blend of 0.2: a MetaLoss whose phi has one named weight per base loss.
BLEND = tml.losses.meta_loss.BLEND_BASE_LOSSES["classification"]


@pytest.fixture(scope="session")
def make_data(classification_data):
    """Random (x, y): 5 features, 3 classes (the shared factory)."""
    return functools.partial(classification_data, n=32, features=5, classes=3)


def _model(run_eagerly=True):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5,))
    model = tml.MetaModel(inputs, keras.layers.Dense(3)(inputs))
    model.compile(
        # No guard: a guard that takes its run at the end of fit would put phi
        # back at its start, whatever the early stopping did.
        meta_guard=None,
        optimizer=keras.optimizers.SGD(0.1),
        loss=tml.MetaLoss(from_logits=True, base_losses=BLEND),
        meta_optimizer=keras.optimizers.Adam(0.05),
        run_eagerly=run_eagerly,
    )
    return model


# The graph-mode case checks that the compiled loop reads the new meta_every.
@pytest.mark.parametrize("restore_best, run_eagerly", [(True, False), (False, True)])
def test_freezing_really_stops_meta_updates(make_data, tmp_path, restore_best, run_eagerly):
    path = str(tmp_path / "audit.jsonl")
    x, y = make_data()
    model = _model(run_eagerly)
    start = model.loss.trainable_variables[0].numpy().copy()
    # No decrease can beat min_delta: the 2nd meta-update exhausts patience=1.
    stop = callbacks.LossParameterEarlyStopping(
        patience=1, min_delta=1e9, restore_best=restore_best, verbose=1
    )
    history = model.fit(
        x,
        y,
        meta_data=(x, y),
        batch_size=4,
        epochs=2,
        verbose=0,
        callbacks=[callbacks.LossAuditLog(path), stop],
    )
    updates = [r for r in callbacks.read_audit_log(path) if r["event"] == "meta_update"]
    assert [r["step"] for r in updates] == [0, 1]  # 16 steps, only 2 meta steps
    assert model.meta_every == 0 and stop.frozen and stop.frozen_step == 1
    assert stop.best_step == 0 and stop.best_value == pytest.approx(updates[0]["meta_objective"])
    phi = model.loss.trainable_variables[0].numpy()
    if restore_best:
        # The best step's meta objective was measured with phi before that step.
        np.testing.assert_array_equal(phi, start)
    else:
        np.testing.assert_allclose(phi, updates[1]["phi_after"]["blend_weights"], rtol=1e-7)
        assert not np.allclose(phi, start)
    # No meta step after the freeze: two meta-optimizer steps in all. The
    # second epoch logs no meta objective or meta-gradient norm (NaN, not a
    # perfect-looking 0), while the first epoch's are real.
    assert int(model.meta_optimizer.iterations.numpy()) == 2
    assert int(model.optimizer.iterations.numpy()) == 16
    meta_objective = history.history["meta_objective"]
    assert np.isfinite(meta_objective[0]) and meta_objective[0] > 0
    assert np.isnan(meta_objective[1])
    assert np.isnan(history.history["meta_grad_norm"][1])
    assert history.history["skipped_updates"] == [0.0, 0.0]
    # Weights still trained after the freeze.
    assert history.history["loss"][1] != history.history["loss"][0]


def _fake_run(stop, meta_losses, phis=None):
    """Feeds `stop` one synthetic meta-update per value; returns the freeze step."""
    variable = keras.Variable(np.zeros(2, "float32"))
    model = types.SimpleNamespace(
        meta_every=1, loss=types.SimpleNamespace(trainable_variables=[variable])
    )
    stop.set_model(model)
    queue = []
    stop._monitor = types.SimpleNamespace(begin=lambda m: None, end=lambda m, logs: queue.pop())
    for step, value in enumerate(meta_losses):
        phi = np.full(2, float(step)) if phis is None else phis[step]
        queue.append(
            MetaStepRecord(
                step=step,
                steps=1,
                meta_updates=1,
                meta_objective=value,
                meta_grad_norm=1.0,
                clipped=False,
                skipped=0,
                phi_before={"w": phi},
                phi_after={"w": phi + 0.5},
            )
        )
        stop.on_train_batch_begin(step)
        stop.on_train_batch_end(step)
        if stop.frozen:
            break
    return model, variable


def test_patience_counts_meta_updates_since_the_last_improvement():
    stop = callbacks.LossParameterEarlyStopping(patience=3)
    model, variable = _fake_run(stop, [3.0, 2.0, 2.5, 2.4, 1.0, 1.1, 1.0, 1.2, 0.1])
    # Improvements at steps 0, 1, 4; then 5, 6, 7 do not beat 1.0 (6 ties).
    assert (stop.best_step, stop.best_value, stop.frozen_step) == (4, 1.0, 7)
    assert model.meta_every == 0
    np.testing.assert_array_equal(variable.numpy(), [4.0, 4.0])  # phi before step 4


def test_min_delta_and_window():
    stop = callbacks.LossParameterEarlyStopping(patience=2, min_delta=0.5)
    _fake_run(stop, [3.0, 2.6, 2.0, 1.8, 1.7])
    assert (stop.best_step, stop.frozen_step) == (2, 4)  # 2.6 and 1.8, 1.7: too small
    stop = callbacks.LossParameterEarlyStopping(patience=2, window=2)
    # Windowed means: 4, 2.5, 2.5, 2.0, 2.0, 2.5 -> best 2.0 at step 3, frozen at 5.
    _fake_run(stop, [4.0, 1.0, 4.0, 0.0, 4.0, 1.0])
    assert (stop.best_step, stop.best_value, stop.frozen_step) == (3, 2.0, 5)


def test_updates_without_a_finite_meta_objective_are_ignored():
    stop = callbacks.LossParameterEarlyStopping(patience=1)
    _fake_run(stop, [2.0, None, None, 1.0, 3.0])
    assert (stop.best_step, stop.frozen_step) == (3, 4)


def test_deprecated_monitor_name_still_works():
    with pytest.warns(DeprecationWarning, match="monitor='meta_objective'"):
        stop = callbacks.LossParameterEarlyStopping(monitor="meta_loss")
    assert stop.monitor == "meta_objective"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"monitor": "val_loss"}, "monitor"),
        ({"patience": 0}, "patience"),
        ({"min_delta": -1.0}, "min_delta"),
        ({"window": 0}, "window"),
    ],
)
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=f"Invalid value for argument `{message}`"):
        callbacks.LossParameterEarlyStopping(**kwargs)
