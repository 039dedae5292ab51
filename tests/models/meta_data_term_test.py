import keras
import numpy as np
import pytest

import tf_metaloss as tml


def _numpy(value):
    return keras.ops.convert_to_numpy(value)


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(400, 8)).astype("float32")
    y = (x[:, :3] @ rng.normal(size=(3, 3))).argmax(1)
    noisy = y.copy()
    flip = rng.random(400) < 0.4
    noisy[flip] = (y[flip] + 1) % 3
    return x, y, noisy


def _model(meta_learning_rate=0.05, **compile_kwargs):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(16, activation="relu")(inputs)
    model = tml.MetaModel(inputs, keras.layers.Dense(3)(hidden))
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        loss=tml.MetaLoss(from_logits=True),
        meta_optimizer=keras.optimizers.SGD(meta_learning_rate),
        **compile_kwargs,
    )
    return model


def _gap_to_guard_run_after_first_epoch(model, x, y, meta):
    """Largest weight difference between the model and the guard's run after epoch 1 of 2."""
    gaps = []

    class Gap(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                pairs = zip(model.trainable_variables, model.guard_reference.weights)
                gaps.append(max(float(np.max(np.abs(_numpy(a) - _numpy(b)))) for a, b in pairs))

    model.fit(*(x, y), meta_data=meta, epochs=2, batch_size=32, verbose=0, callbacks=[Gap()])
    return gaps[0]


def test_with_phi_at_its_start_the_model_trains_like_the_guards_run():
    # The guard's run trains on the training and the meta data with the starting loss. With
    # the term on and phi held at its start (meta learning rate 0), the model takes the same
    # gradients: the same weights. Without the term it trains on the training data alone.
    x, y, noisy = _problem()
    data, meta = (x[:300], noisy[:300]), (x[300:], y[300:])
    with_term = _model(meta_learning_rate=0.0)
    assert with_term.meta_data_term is not None
    assert _gap_to_guard_run_after_first_epoch(with_term, *data, meta) < 1e-5
    assert not with_term.guard_reverted  # the same model scores the same on the check data
    # 80 meta samples (20 of 100 held out) over 10 steps of 32: 8 per step.
    assert float(_numpy(with_term.meta_data_term.weight)) == 8.0
    without = _model(meta_learning_rate=0.0, train_on_meta_data=False)
    assert without.meta_data_term is None
    assert _gap_to_guard_run_after_first_epoch(without, *data, meta) > 1e-3


def test_the_term_changes_training_and_leaves_phi_to_the_training_data():
    # Without a guard the model trains on all the meta data. The meta-gradient does not see
    # the term (it does not depend on phi): phi moves the same way in the first step.
    x, y, noisy = _problem(1)
    data, meta = (x[:32], noisy[:32]), (x[300:332], y[300:332])
    ends = {}
    for train_on_meta_data in (True, False):
        model = _model(meta_guard=None, train_on_meta_data=train_on_meta_data)
        model.fit(*data, meta_data=meta, epochs=1, batch_size=32, shuffle=False, verbose=0)
        phi = [_numpy(v) for v in model.loss.trainable_variables]
        ends[train_on_meta_data] = ([_numpy(v) for v in model.trainable_variables], phi)
    (weights_on, phi_on), (weights_off, phi_off) = ends[True], ends[False]
    assert max(np.max(np.abs(a - b)) for a, b in zip(weights_on, weights_off)) > 1e-4
    for a, b in zip(phi_on, phi_off):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_setting_is_checked_saved_and_off_for_a_frozen_loss(tmp_path):
    with pytest.raises(ValueError, match="train_on_meta_data"):
        _model(train_on_meta_data="yes")
    assert _model(meta_every=0).meta_data_term is None
    model = _model(train_on_meta_data=False)
    x, y, noisy = _problem(2)
    model.fit(x[:64], noisy[:64], meta_data=(x[300:], y[300:]), epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert restored.get_compile_config()["train_on_meta_data"] is False
    assert restored.meta_data_term is None
