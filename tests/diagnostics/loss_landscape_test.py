"""Tests of `loss_landscape` on a loss that is exactly quadratic in the weights."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import tf_metaloss as tml
from tf_metaloss import diagnostics


@pytest.fixture(scope="module")
def linear():
    """A linear model with MSE: L(w + a d) is a parabola in a, known exactly."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 4)).astype("float32")
    y = rng.normal(size=(100, 2)).astype("float32")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.layers[-1].bias.assign([0.3, -0.2])
    model.compile(loss="mse")
    return model, x, y


def _mse(x, y, kernel, bias):
    return float(np.mean((x.astype(np.float64) @ kernel + bias - y) ** 2))


def test_1d_slice_and_sharpness_are_exact_on_a_quadratic(linear):
    model, x, y = linear
    kernel, bias = [
        keras.ops.convert_to_numpy(v).astype(np.float64) for v in model.trainable_variables
    ]
    result = diagnostics.loss_landscape(model, (x, y), span=0.5, points=11, batch_size=32)
    d_kernel, d_bias = result.direction_vectors[0]
    # Filter normalisation: each output unit's column has its weight's norm;
    # the bias (rank 1) stays fixed.
    np.testing.assert_allclose(
        np.linalg.norm(d_kernel, axis=0), np.linalg.norm(kernel, axis=0), rtol=1e-6
    )
    np.testing.assert_array_equal(d_bias, 0.0)
    np.testing.assert_allclose(result.alphas, np.linspace(-0.5, 0.5, 11))
    expected = [_mse(x, y, kernel + a * d_kernel, bias) for a in result.alphas]
    np.testing.assert_allclose(result.losses, expected, rtol=1e-5)
    assert result.center_loss == pytest.approx(_mse(x, y, kernel, bias), rel=1e-6)
    # d^2/da^2 mean((r + a x.d)^2) = 2 mean((x.d)^2), whatever the span.
    curvature = 2.0 * np.mean((x @ d_kernel) ** 2)
    assert result.sharpness["curvature"][0] == pytest.approx(curvature, rel=1e-4)
    assert result.sharpness["fit_r2"][0] == pytest.approx(1.0, abs=1e-9)
    increase = max(expected) - result.center_loss
    assert result.sharpness["max_increase"] == pytest.approx(increase, rel=1e-4)
    assert result.sharpness["max_increase_relative"] == pytest.approx(
        increase / (1 + result.center_loss), rel=1e-4
    )
    # The weights are exactly as before.
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.trainable_variables[0]), kernel)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.trainable_variables[1]), bias)


@pytest.mark.parametrize("points", [5, 4])  # even: the centre slices are extra
def test_2d_plane_and_both_curvatures(linear, points):
    model, x, y = linear
    kernel, bias = [
        keras.ops.convert_to_numpy(v).astype(np.float64) for v in model.trainable_variables
    ]
    result = diagnostics.loss_landscape(model, (x, y), directions=2, points=points, seed=3)
    (d1, _), (d2, _) = result.direction_vectors
    assert not np.allclose(d1, d2)
    assert result.losses.shape == (points, points)
    for i, a in enumerate(result.alphas):
        for j, b in enumerate(result.betas):
            assert result.losses[i, j] == pytest.approx(
                _mse(x, y, kernel + a * d1 + b * d2, bias), rel=1e-5
            )
    for k, d in enumerate((d1, d2)):
        assert result.sharpness["curvature"][k] == pytest.approx(
            2.0 * np.mean((x @ d) ** 2), rel=1e-4
        )


def test_seed_and_bias_options(linear):
    model, x, y = linear
    bias = keras.ops.convert_to_numpy(model.trainable_variables[1])
    a = diagnostics.loss_landscape(model, (x, y), points=3, seed=7)
    b = diagnostics.loss_landscape(model, (x, y), points=3, seed=7)
    c = diagnostics.loss_landscape(model, (x, y), points=3, seed=8, ignore_biases=False)
    np.testing.assert_array_equal(a.losses, b.losses)
    assert not np.allclose(a.direction_vectors[0][0], c.direction_vectors[0][0])
    assert np.linalg.norm(c.direction_vectors[0][1]) == pytest.approx(np.linalg.norm(bias))


def test_data_as_a_dataset_and_with_sample_weights(linear):
    model, x, y = linear
    full = diagnostics.loss_landscape(model, (x, y), points=3)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(30)
    np.testing.assert_allclose(
        diagnostics.loss_landscape(model, dataset, points=3).losses, full.losses, rtol=1e-6
    )
    weights = np.zeros(len(x), "float32")
    weights[:50] = 2.0
    weighted = diagnostics.loss_landscape(model, (x, y, weights), points=3)
    half = diagnostics.loss_landscape(model, (x[:50], y[:50]), points=3)
    # sum(2 * l_i over half) / N = mean over the half.
    np.testing.assert_allclose(weighted.losses, half.losses, rtol=1e-5)


def test_meta_model_defaults_to_its_meta_objective(classification_data):
    x, y = classification_data(n=40, features=5, classes=3, seed=1, label_dtype="int64")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5,))
    model = tml.MetaModel(inputs, keras.layers.Dense(3)(inputs))
    model.compile(optimizer="sgd", loss=tml.PolynomialLoss(degree=2, from_logits=True))
    result = diagnostics.loss_landscape(model, (x, y), points=3)
    # The default meta objective for classification is the bounded MAE term.
    probs = keras.ops.convert_to_numpy(keras.ops.softmax(model(x)))
    expected = np.abs(np.eye(3)[y] - probs).sum(axis=1).mean()
    assert result.center_loss == pytest.approx(float(expected), rel=1e-5)
    assert result.loss_name == "mae_classification"
    named_ce = diagnostics.loss_landscape(
        model, (x, y), points=3, loss="crossentropy", from_logits=True
    )
    expected = keras.ops.convert_to_numpy(
        keras.losses.sparse_categorical_crossentropy(y, model(x), from_logits=True)
    ).mean()
    assert named_ce.center_loss == pytest.approx(float(expected), rel=1e-5)
    named = diagnostics.loss_landscape(
        model, (x, y), points=3, loss="mae_classification", from_logits=True
    )
    probs = keras.ops.convert_to_numpy(keras.ops.softmax(model(x)))
    expected = np.abs(np.eye(3)[y] - probs).sum(axis=1).mean()
    assert named.center_loss == pytest.approx(float(expected), rel=1e-5)
    assert named.loss_name == "mae_classification"


def test_plot_and_tensorboard(linear, tmp_path):
    model, x, y = linear
    one = diagnostics.loss_landscape(model, (x, y), points=5)
    two = diagnostics.loss_landscape(model, (x, y), points=5, seed=1)
    path = tmp_path / "sub" / "l.png"
    fig = diagnostics.plot_landscape({"a": one, "b": two}, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["a", "b"]
    plane = diagnostics.loss_landscape(model, (x, y), directions=2, points=3)
    assert len(diagnostics.plot_landscape(plane).axes) == 2  # contour + colorbar
    with pytest.raises(ValueError, match="all 1-D or all 2-D"):
        diagnostics.plot_landscape({"a": one, "b": plane})
    diagnostics.log_landscape_to_tensorboard({"a": one}, str(tmp_path / "tb"), step=3)
    (event_file,) = os.listdir(tmp_path / "tb")
    ev = EventAccumulator(str(tmp_path / "tb"), size_guidance={"tensors": 0})
    ev.Reload()
    assert {
        "landscape",
        "landscape/a/max_increase",
        "landscape/a/curvature_1",
        "landscape/a/center_loss",
    } <= set(ev.Tags()["tensors"])
    event = ev.Tensors("landscape/a/curvature_1")[0]
    assert event.step == 3
    assert float(tf.make_ndarray(event.tensor_proto)) == pytest.approx(
        one.sharpness["curvature"][0], rel=1e-6
    )
    assert one.to_dict()["sharpness"] == one.sharpness


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"directions": 3}, "directions"),
        ({"points": 2}, "points"),
        ({"span": 0}, "span"),
        ({"batch_size": 0}, "batch_size"),
        ({"loss": 3}, "loss"),
    ],
)
def test_invalid_arguments(linear, kwargs, message):
    model, x, y = linear
    with pytest.raises(ValueError, match=f"Invalid value for argument `{message}`"):
        diagnostics.loss_landscape(model, (x, y), **kwargs)


def test_invalid_data(linear):
    model, x, _ = linear
    with pytest.raises(ValueError, match="Invalid value for argument `data`"):
        diagnostics.loss_landscape(model, x, points=3)
