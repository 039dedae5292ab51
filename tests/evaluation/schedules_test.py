"""Tests of the hand schedule."""

import keras
import numpy as np
import pytest

import tf_metaloss as tml
from tf_metaloss.evaluation import schedules


def test_schedule_targets():
    loss = tml.MetaLoss(
        from_logits=True, base_losses=tml.losses.meta_loss.BLEND_BASE_LOSSES["classification"]
    )
    target = schedules.schedule_targets(loss, {"generalized_crossentropy": 2.0})
    np.testing.assert_array_equal(target["blend_weights"], [0, 0, 0, 2, 0])
    with pytest.raises(ValueError, match="base losses of the blend"):
        schedules.schedule_targets(loss, {"poly1": 1.0})
    with pytest.raises(ValueError, match="positive sum"):
        schedules.schedule_targets(loss, {"crossentropy": 0.0})
    with pytest.raises(ValueError, match="needs a blend"):
        schedules.schedule_targets(tml.NeuralLoss(from_logits=True), {"crossentropy": 1})
    with pytest.raises(
        ValueError, match=r"needs a blend.*MetaLoss with parameters \['correction'\]"
    ):
        schedules.schedule_targets(tml.MetaLoss(from_logits=True), {"crossentropy": 1})


def test_linear_parameter_schedule_moves_phi_from_start_to_final():
    x = np.random.default_rng(0).normal(size=(20, 3)).astype("float32")
    y = np.arange(20) % 2
    inputs = keras.Input((3,))
    model = tml.MetaModel(inputs, keras.layers.Dense(2)(inputs))
    loss = tml.BlendLoss(["crossentropy", "mae_classification"], from_logits=True)
    model.compile(optimizer="sgd", loss=loss, meta_every=0)
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(loss.trainable_variables[0].numpy().tolist())

    schedule = schedules.LinearParameterSchedule({"blend_weights": [0.0, 1.0]}, 5)
    # 20 samples, batch 4: 5 steps; the schedule runs before the recorder.
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[schedule, Record()])
    np.testing.assert_allclose(
        seen, [[1.0, 0.0], [0.75, 0.25], [0.5, 0.5], [0.25, 0.75], [0.0, 1.0]]
    )


def test_linear_parameter_schedule_rejects_unknown_parameters():
    inputs = keras.Input((3,))
    model = tml.MetaModel(inputs, keras.layers.Dense(2)(inputs))
    model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True), meta_every=0)
    schedule = schedules.LinearParameterSchedule({"blend_weights": [1.0, 0.0]}, 5)
    with pytest.raises(ValueError, match="Expected parameters of MetaLoss"):
        model.fit(np.zeros((4, 3)), np.zeros(4), epochs=1, verbose=0, callbacks=[schedule])
