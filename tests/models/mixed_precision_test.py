"""`mixed_bfloat16`: the model computes in bfloat16, phi and the meta-gradient in float32.

Tolerances, measured on these problems: the loss curves and the meta
objective of a bfloat16 run stay within 3% of float32's, the final phi within
5% of its norm, and a meta-gradient at the same weights within 5% (cosine
above 0.99).
"""

import keras
import numpy as np
import pytest

import tf_metaloss as tml
from tf_metaloss.losses.meta_loss import BLEND_BASE_LOSSES


@pytest.fixture
def policy():
    """Builds models under a dtype policy; restores float32 afterwards."""

    def build(name, layers=None):
        keras.config.set_dtype_policy(name)
        try:
            keras.utils.set_random_seed(0)
            inputs = keras.Input((8,))
            hidden = keras.layers.Dense(32, activation="tanh")(inputs)
            for layer in layers or []:
                hidden = layer()(hidden)
            return tml.MetaModel(inputs, keras.layers.Dense(3)(hidden))
        finally:
            keras.config.set_dtype_policy("float32")

    yield build
    keras.config.set_dtype_policy("float32")


def _data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int64") + (x[:, 2] > 0.8)
    flip = rng.random(n) < 0.3
    y_noisy = np.where(flip, rng.integers(0, 3, n), y)
    return x, y_noisy, x[:64].copy(), y[:64].copy()


def _compile(model, loss=None, **kwargs):
    kwargs.setdefault("meta_guard", None)  # phi must move (a revert would reset it)
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        loss=loss or tml.MetaLoss(from_logits=True, family="generalized_ce", bounds=(0.001, 1.0)),
        meta_optimizer=keras.optimizers.Adam(0.05),
        meta_seed=0,
        **kwargs,
    )
    return model


def _relative(a, b):
    a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
    return np.abs(a - b).max() / np.abs(b).max()


def test_mixed_bfloat16_trains_close_to_float32(policy):
    x, y, x_meta, y_meta = _data()
    runs = {}
    for name in ("float32", "mixed_bfloat16"):
        model = _compile(policy(name))
        history = model.fit(
            x,
            y,
            meta_data=(x_meta, y_meta),
            batch_size=32,
            epochs=4,
            shuffle=False,
            verbose=0,
        )
        runs[name] = model, history.history
    model, logs = runs["mixed_bfloat16"]
    reference, reference_logs = runs["float32"]
    assert model.outputs[0].dtype == "bfloat16"
    assert all(v.dtype == "float32" for v in model.trainable_variables)
    state = model.loss.variables + model.meta_optimizer.variables
    assert all(v.dtype == "float32" for v in state if "float" in v.dtype)
    phi, phi_reference = (m.loss.trainable_variables[0].numpy() for m in (model, reference))
    phi_start = (
        tml.MetaLoss(from_logits=True, family="generalized_ce").trainable_variables[0].numpy()
    )
    assert np.abs(phi_reference - phi_start).max() > 0.05  # phi moved
    assert np.linalg.norm(phi - phi_reference) < 0.05 * np.linalg.norm(phi_reference)
    for key in ("loss", "meta_objective"):
        assert _relative(logs[key], reference_logs[key]) < 0.03, key
    assert logs["skipped_updates"] == [0.0] * 4


# The default (generalized cross-entropy, one parameter q) and the blend (five
# weights, where the cosine similarity says more).
LOSSES = {
    "default": lambda: tml.MetaLoss(from_logits=True, family="generalized_ce"),
    "blend": lambda: tml.MetaLoss(
        from_logits=True, base_losses=BLEND_BASE_LOSSES["classification"]
    ),
}


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_mixed_bfloat16_meta_gradient_is_close_to_float32(policy, loss):
    x, y, x_meta, y_meta = _data(n=64)
    models = {
        name: _compile(policy(name), loss=LOSSES[loss]()) for name in ("float32", "mixed_bfloat16")
    }
    models["mixed_bfloat16"].set_weights(models["float32"].get_weights())
    grads = {}
    for name, model in models.items():
        result = model.compute_meta_gradient((x, y), (x_meta, y_meta))
        assert result.phi_grads[0].dtype == "float32"
        grads[name] = np.ravel(np.asarray(result.phi_grads[0], "float64"))
    g16, g32 = grads["mixed_bfloat16"], grads["float32"]
    assert np.linalg.norm(g32) > 1e-3
    assert np.linalg.norm(g16 - g32) < 0.05 * np.linalg.norm(g32)
    assert g16 @ g32 / (np.linalg.norm(g16) * np.linalg.norm(g32)) > 0.99


def test_mixed_bfloat16_non_finite_step_is_skipped(policy):
    x, y, x_meta, y_meta = _data(n=32)
    x[:16] = np.nan  # The first batch gives a NaN loss.
    model = _compile(policy("mixed_bfloat16"))
    weights = [v.numpy() for v in model.trainable_variables]
    phi = model.loss.trainable_variables[0].numpy()
    model.fit(x[:16], y[:16], meta_data=(x_meta, y_meta), batch_size=16, epochs=1, verbose=0)
    # Nothing changed but the step counters.
    for before, variable in zip(weights, model.trainable_variables):
        np.testing.assert_array_equal(variable.numpy(), before)
    np.testing.assert_array_equal(model.loss.trainable_variables[0].numpy(), phi)
    assert float(model.skipped_updates_tracker.result()) == 1.0
    model = _compile(policy("mixed_bfloat16"))
    history = model.fit(
        x, y, meta_data=(x_meta, y_meta), batch_size=16, epochs=1, shuffle=False, verbose=0
    )
    assert history.history["skipped_updates"] == [1.0]
    # The second (finite) batch was a meta step too, applied.
    assert int(model.optimizer.iterations.numpy()) == 2
    assert int(model.meta_optimizer.iterations.numpy()) == 2
    assert np.isfinite(model.loss.trainable_variables[0].numpy()).all()
    assert all(np.isfinite(v.numpy()).all() for v in model.meta_optimizer.variables)
    for before, variable in zip(weights, model.trainable_variables):
        assert np.isfinite(variable.numpy()).all()
        assert np.abs(variable.numpy() - before).max() > 0
    assert all(np.isfinite(v.numpy()).all() for v in model.optimizer.variables)


def test_mixed_bfloat16_with_batch_norm_and_dropout_trains(policy):
    x, y, x_meta, y_meta = _data(n=64)
    model = _compile(
        policy(
            "mixed_bfloat16",
            [keras.layers.BatchNormalization, lambda: keras.layers.Dropout(0.2)],
        )
    )
    history = model.fit(x, y, meta_data=(x_meta, y_meta), batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["skipped_updates"] == [0.0]
    assert int(model.meta_optimizer.iterations.numpy()) == 4


def test_float16_is_rejected_with_a_clear_error(policy):
    model = policy("mixed_float16")
    with pytest.raises(ValueError, match="float16 needs loss scaling.*mixed_bfloat16"):
        model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True, family="generalized_ce"))


def test_half_precision_loss_is_rejected(policy):
    model = policy("mixed_bfloat16")
    with pytest.raises(ValueError, match="argument `loss`.*float32 or float64.*bfloat16"):
        model.compile(
            optimizer="sgd",
            loss=tml.MetaLoss(from_logits=True, family="generalized_ce", dtype="bfloat16"),
        )


@pytest.mark.parametrize("meta_method", ["neumann", "conjugate_gradient"])
def test_implicit_estimators_in_bfloat16_are_close_to_float32(policy, meta_method):
    # Measured: 0.06% apart, cosine above 0.9999.
    x, y, x_meta, y_meta = _data(n=64)
    models = {
        name: _compile(policy(name), meta_method=meta_method)
        for name in ("float32", "mixed_bfloat16")
    }
    models["mixed_bfloat16"].set_weights(models["float32"].get_weights())
    grads = {}
    for name, model in models.items():
        result = model.compute_meta_gradient((x, y), (x_meta, y_meta))
        assert result.phi_grads[0].dtype == "float32"
        grads[name] = np.asarray(result.phi_grads[0], "float64")
    g16, g32 = grads["mixed_bfloat16"], grads["float32"]
    assert np.linalg.norm(g32) > 1e-3
    assert np.linalg.norm(g16 - g32) < 0.05 * np.linalg.norm(g32)


def test_finite_difference_is_rejected_in_bfloat16(policy):
    with pytest.raises(
        ValueError,
        match=r"argument `meta_method`.*Received: meta_method=FiniteDifference\(epsilon=0.001, "
        r"central=True\) with a model computing in bfloat16",
    ):
        _compile(policy("mixed_bfloat16"), meta_method="finite_difference")
    # float32 models take it.
    model = _compile(policy("float32"), meta_method="finite_difference")
    assert model.meta_estimator == tml.meta.estimators.FiniteDifference()
