"""Tests of `MetaTensorBoard`: event files read back, and a live TensorBoard."""

import functools
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import keras
import numpy as np
import pytest
import tensorflow as tf
from matplotlib import image as mpl_image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import tf_metaloss as tml
from tf_metaloss import callbacks
from tf_metaloss.callbacks.tensorboard import learned_loss_curve
from tf_metaloss.evaluation import inject_label_noise

SIZE_GUIDANCE = {
    "scalars": 0,
    "histograms": 0,
    "images": 0,
    "tensors": 0,
    "compressedHistograms": 0,
    "audio": 0,
}

# The blend of 0.2: a MetaLoss whose phi has one named weight per base loss.
BLEND = tml.losses.meta_loss.BLEND_BASE_LOSSES["classification"]


@pytest.fixture(scope="session")
def make_data(classification_data):
    """Random (x, y): 5 features, 3 classes (the shared factory)."""
    return functools.partial(classification_data, n=64, features=5, classes=3)


def _model(loss, run_eagerly=True, outputs=3, **kwargs):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5,))
    model = tml.MetaModel(inputs, keras.layers.Dense(outputs)(inputs))
    model.compile(
        meta_guard=None,  # every meta sample in the meta batches
        optimizer=keras.optimizers.SGD(0.1),
        loss=loss,
        meta_optimizer=keras.optimizers.Adam(0.05),
        run_eagerly=run_eagerly,
        **kwargs,
    )
    return model


def _events(path):
    accumulator = EventAccumulator(path, size_guidance=SIZE_GUIDANCE)
    accumulator.Reload()
    return accumulator


def _series(accumulator, tag):
    """`(steps, values)` of a TF2 summary tag."""
    events = accumulator.Tensors(tag)
    return (
        [e.step for e in events],
        [tf.make_ndarray(e.tensor_proto) for e in events],
    )


def _plugin(accumulator, tag):
    return accumulator.SummaryMetadata(tag).plugin_data.plugin_name


@pytest.fixture(scope="module")
def blend_run(make_data, tmp_path_factory):
    """A graph-mode MetaLoss fit beside keras.callbacks.TensorBoard."""
    root = tmp_path_factory.mktemp("tb")
    x, y = make_data()
    probe_x, probe_y = x[:20], y[:20]
    mask = np.arange(20) % 4 == 0
    model = _model(
        tml.MetaLoss(from_logits=True, base_losses=BLEND), run_eagerly=False, meta_every=2
    )
    audit_path = str(root / "audit.jsonl")
    tb = callbacks.MetaTensorBoard(
        str(root), probe_data=(probe_x, probe_y), noise_mask=mask, variance_window=3
    )
    history = model.fit(
        x,
        y,
        meta_data=(x, y),
        batch_size=8,
        epochs=2,
        verbose=0,
        shuffle=False,
        callbacks=[keras.callbacks.TensorBoard(str(root)), tb, callbacks.LossAuditLog(audit_path)],
    )
    records = [r for r in callbacks.read_audit_log(audit_path) if r["event"] == "meta_update"]
    return {
        "root": root,
        "model": model,
        "history": history.history,
        "records": records,
        "events": _events(str(root / "metaloss")),
        "probe": (probe_x, probe_y),
        "mask": mask,
    }


def test_scalars_per_meta_update_match_the_audit_log_and_the_model(blend_run):
    ev, records, model = blend_run["events"], blend_run["records"], blend_run["model"]
    tags = ev.Tags()["tensors"]
    labels = list(model.loss.base_losses)
    for tag in [f"phi/{label}" for label in labels] + [
        "phi/distance_from_start",
        "meta/objective",
        "meta/grad_norm",
        "meta/grad_norm_variance",
        "meta/skipped_updates",
    ]:
        assert tag in tags
        assert _plugin(ev, tag) == "scalars"
    # 16 steps, a meta step every 2nd: steps 0, 2, ..., 14.
    assert [r["step"] for r in records] == list(range(0, 16, 2))
    for i, label in enumerate(labels):
        steps, values = _series(ev, f"phi/{label}")
        assert steps == [r["step"] for r in records]
        np.testing.assert_allclose(
            values, [r["phi_after"]["blend_weights"][i] for r in records], rtol=1e-6
        )
    # The last logged phi is the model's final phi (plain steps don't move it).
    _, focal = _series(ev, "phi/focal")
    assert float(focal[-1]) == pytest.approx(
        float(model.loss.trainable_variables[0].numpy()[1]), rel=1e-6
    )
    _, distance = _series(ev, "phi/distance_from_start")
    start = np.array(records[0]["phi_before"]["blend_weights"])
    expected = [np.linalg.norm(np.array(r["phi_after"]["blend_weights"]) - start) for r in records]
    np.testing.assert_allclose(distance, expected, rtol=1e-5)
    assert distance[-1] > 0  # the meta step did move phi


def test_per_step_meta_values_average_to_the_keras_epoch_logs(blend_run):
    ev, history = blend_run["events"], blend_run["history"]
    steps, losses = _series(ev, "meta/objective")
    _, norms = _series(ev, "meta/grad_norm")
    losses, norms = np.array(losses, float), np.array(norms, float)
    for epoch, (low, high) in enumerate([(0, 8), (8, 16)]):
        in_epoch = [(low <= s < high) for s in steps]
        # Keras's own epoch value is the tracker's mean over the epoch's steps.
        assert losses[in_epoch].mean() == pytest.approx(history["meta_objective"][epoch], rel=1e-5)
        assert norms[in_epoch].mean() == pytest.approx(history["meta_grad_norm"][epoch], rel=1e-5)
    var_steps, variances = _series(ev, "meta/grad_norm_variance")
    assert var_steps == steps[1:]  # needs two values
    for k, value in enumerate(variances, start=2):
        window = norms[max(0, k - 3) : k]  # variance_window=3
        assert float(value) == pytest.approx(np.var(window, ddof=1), rel=1e-4)
    _, skipped = _series(ev, "meta/skipped_updates")
    assert [float(s) for s in skipped] == [0.0] * len(steps)


def test_histograms_of_phi_and_of_the_probe_split_by_noise(blend_run):
    ev, model = blend_run["events"], blend_run["model"]
    px, py = blend_run["probe"]
    mask = blend_run["mask"]
    steps, hists = _series(ev, "phi/blend_weights")
    assert _plugin(ev, "phi/blend_weights") == "histograms"
    assert steps == [8, 16]  # the optimizer step at each epoch's end
    # Histogram buckets are (left, right, count): 5 blend weights each time.
    assert [float(h[:, 2].sum()) for h in hists] == [5.0, 5.0]
    _, clean_hist = _series(ev, "probe/per_sample_loss_clean")
    _, bad_hist = _series(ev, "probe/per_sample_loss_corrupted")
    assert float(clean_hist[-1][:, 2].sum()) == (~mask).sum()
    assert float(bad_hist[-1][:, 2].sum()) == mask.sum()
    # The last epoch's mean losses, recomputed from the final model.
    per_sample = keras.ops.convert_to_numpy(model.loss.call(py, model(px, training=False)))
    _, clean_mean = _series(ev, "probe/mean_loss_clean")
    _, bad_mean = _series(ev, "probe/mean_loss_corrupted")
    assert float(clean_mean[-1]) == pytest.approx(per_sample[~mask].mean(), rel=1e-5)
    assert float(bad_mean[-1]) == pytest.approx(per_sample[mask].mean(), rel=1e-5)


def test_loss_curve_image_each_epoch(blend_run):
    ev = blend_run["events"]
    steps, images = _series(ev, "loss_curve")
    assert _plugin(ev, "loss_curve") == "images"
    assert steps == [8, 16]
    width, height, png = images[-1]
    picture = mpl_image.imread(io.BytesIO(png), format="png")
    assert picture.shape == (int(height), int(width), 4)
    assert picture[..., :3].std() > 0.05  # not a blank canvas


def test_beside_keras_tensorboard_in_the_same_log_dir(blend_run):
    root = blend_run["root"]
    assert sorted(os.listdir(root)) == ["audit.jsonl", "metaloss", "train"]
    train = _events(str(root / "train"))
    assert "epoch_meta_objective" in train.Tags()["tensors"]
    _, values = _series(train, "epoch_meta_objective")
    np.testing.assert_allclose(
        [float(v) for v in values], blend_run["history"]["meta_objective"], rtol=1e-6
    )


def test_update_freq_epoch_writes_epoch_means(make_data, tmp_path):
    x, y = make_data()
    model = _model(tml.MetaLoss(from_logits=True, base_losses=BLEND))
    audit = str(tmp_path / "a.jsonl")
    model.fit(
        x,
        y,
        meta_data=(x, y),
        batch_size=16,
        epochs=2,
        verbose=0,
        callbacks=[
            callbacks.MetaTensorBoard(
                str(tmp_path), update_freq="epoch", histogram_freq=0, image_freq=0
            ),
            callbacks.LossAuditLog(audit),
        ],
    )
    ev = _events(str(tmp_path / "metaloss"))
    records = [r for r in callbacks.read_audit_log(audit) if r["event"] == "meta_update"]
    steps, losses = _series(ev, "meta/objective")
    assert steps == [4, 8]
    for epoch in (0, 1):
        expected = np.mean([r["meta_objective"] for r in records if r["epoch"] == epoch])
        assert float(losses[epoch]) == pytest.approx(expected, rel=1e-6)
    assert "phi/blend_weights" not in ev.Tags()["tensors"]  # histogram_freq=0
    assert "loss_curve" not in ev.Tags()["tensors"]  # image_freq=0


def test_symbolic_loss_formula_as_text_each_epoch(make_data, tmp_path):
    x, y = make_data()
    loss = tml.losses.SymbolicLoss("div(sub(1, pow(p_true, 0.7)), 0.7)", from_logits=True)
    model = _model(loss)
    tb = callbacks.MetaTensorBoard(str(tmp_path), histogram_freq=0, image_freq=0)
    model.fit(x, y, meta_data=(x, y), batch_size=16, epochs=2, verbose=0, callbacks=[tb])
    ev = _events(str(tmp_path / "metaloss"))
    assert _plugin(ev, "loss/formula") == "text"
    steps, texts = _series(ev, "loss/formula")
    assert steps == [4, 8]
    assert texts[-1].item().decode() == loss.formula()
    assert texts[0].item().decode() != "(1 - |p_true|^0.7) / 0.7"  # the constants moved


def test_sample_weights_split_into_clean_and_corrupted(make_data, tmp_path):
    x, y_clean = make_data(n=48)
    noisy = inject_label_noise(y_clean, rate=0.25, num_classes=3, seed=0)
    loss = tml.SampleWeightedLoss(hidden_units=(16,), from_logits=True, seed=0)
    model = _model(loss)
    model.fit(
        x,
        noisy.labels,
        meta_data=(x, y_clean),
        batch_size=16,
        epochs=1,
        verbose=0,
        callbacks=[
            callbacks.MetaTensorBoard(str(tmp_path), probe_data=(x, noisy.labels), noise_mask=noisy)
        ],
    )
    ev = _events(str(tmp_path / "metaloss"))
    tags = ev.Tags()["tensors"]
    # A hidden kernel of 16 values is logged as its norm.
    names = loss.parameter_names
    big = [n for n, v in zip(names, loss.trainable_variables) if np.prod(v.shape) > 8]
    assert big
    for name in big:
        _, norms = _series(ev, f"phi/{name}_norm")
        variable = loss.trainable_variables[names.index(name)]
        assert float(norms[-1]) == pytest.approx(float(np.linalg.norm(variable.numpy())), rel=1e-5)
    for tag in (
        "probe/sample_weights",
        "probe/sample_weights_clean",
        "probe/sample_weights_corrupted",
    ):
        assert tag in tags
    weights = keras.ops.convert_to_numpy(
        loss.sample_weights(noisy.labels, model(x, training=False))
    )
    _, clean = _series(ev, "probe/mean_weight_clean")
    _, bad = _series(ev, "probe/mean_weight_corrupted")
    assert float(clean[-1]) == pytest.approx(weights[~noisy.mask].mean(), rel=1e-5)
    assert float(bad[-1]) == pytest.approx(weights[noisy.mask].mean(), rel=1e-5)
    _, all_hist = _series(ev, "probe/sample_weights")
    assert float(all_hist[-1][:, 2].sum()) == len(x)


def test_learned_loss_curve_classification_and_regression():
    for from_logits in (True, False):
        p, values = learned_loss_curve(
            tml.MetaLoss(from_logits=from_logits), points=7, num_classes=10
        )
        assert p[0] == pytest.approx(0.01) and p[-1] == pytest.approx(0.99)
        np.testing.assert_allclose(values, (1 - p**0.7) / 0.7, rtol=1e-4)  # starts as GCE
    p, values = learned_loss_curve(tml.MetaLoss(from_logits=True), points=5, num_classes=1)
    np.testing.assert_allclose(values, (1 - p**0.7) / 0.7, rtol=1e-4)
    p, values = learned_loss_curve(
        tml.MetaLoss(from_logits=True, base_losses=BLEND), points=5, num_classes=10
    )
    np.testing.assert_allclose(values, -np.log(p), rtol=1e-4)  # the blend starts as CE
    r, values = learned_loss_curve(tml.MetaLoss(task="regression"), points=5, residual_range=2.0)
    np.testing.assert_allclose(r, [-2, -1, 0, 1, 2])
    np.testing.assert_allclose(values, r**2, rtol=1e-6)  # starts as MSE
    # Given phi: 0.5*CE + 2*CE^2 for a power polynomial.
    poly = tml.PolynomialLoss(degree=2, from_logits=True)
    p, values = learned_loss_curve(poly, [tf.constant([0.5, 2.0])], points=5, num_classes=4)
    ce = -np.log(p)
    np.testing.assert_allclose(values, 0.5 * ce + 2.0 * ce**2, rtol=1e-4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"update_freq": 0}, "update_freq"),
        ({"update_freq": "batch"}, "update_freq"),
        ({"histogram_freq": -1}, "histogram_freq"),
        ({"variance_window": 1}, "variance_window"),
        ({"noise_mask": np.zeros(3, bool)}, "needs `probe_data`"),
        ({"probe_data": (np.zeros((3, 5)), np.zeros(2))}, "same number"),
        (
            {"probe_data": (np.zeros((3, 5)), np.zeros(3)), "noise_mask": np.zeros(4, bool)},
            "noise_mask",
        ),
        ({"probe_data": (np.zeros((3, 5)), np.zeros(3)), "noise_mask": np.zeros(3)}, "boolean"),
    ],
)
def test_invalid_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        callbacks.MetaTensorBoard(str(tmp_path), **kwargs)


def test_needs_a_meta_model(make_data, tmp_path):
    x, y = make_data()
    inputs = keras.Input((5,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="MetaModel"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.MetaTensorBoard(str(tmp_path))])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.integration
def test_live_tensorboard_serves_a_learned_loss_scalar(blend_run, tmp_path):
    port = _free_port()
    with open(tmp_path / "tb.log", "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tensorboard.main",
                "--logdir",
                str(blend_run["root"]),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    query = urllib.parse.urlencode({"run": "metaloss", "tag": "phi/focal"})
    url = f"http://127.0.0.1:{port}/data/plugin/scalars/scalars?{query}"
    points, error = None, None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                points = _get_json(url)
                if len(points) == len(blend_run["records"]):
                    break
            except (OSError, ValueError) as e:  # not up yet / run not loaded yet
                error = e
            time.sleep(0.5)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    assert points is not None, (
        f"TensorBoard did not answer: {error}; " + ((tmp_path / "tb.log").read_text()[-2000:])
    )
    # Each point is [wall_time, step, value].
    records = blend_run["records"]
    assert [p[1] for p in points] == [r["step"] for r in records]
    np.testing.assert_allclose(
        [p[2] for p in points], [r["phi_after"]["blend_weights"][1] for r in records], rtol=1e-6
    )


def test_class_adjusted_offsets_get_one_curve_per_class(make_data, tmp_path):
    x, y = make_data()
    # 10 classes: more than the 8 elements below which every loss logs each one.
    model = _model(tml.losses.ClassAdjustedLoss(10), outputs=10)
    model.fit(
        x,
        y,
        meta_data=(x, y),
        batch_size=16,
        epochs=1,
        verbose=0,
        callbacks=[callbacks.MetaTensorBoard(str(tmp_path), histogram_freq=0, image_freq=0)],
    )
    ev = _events(str(tmp_path / "metaloss"))
    tags = ev.Tags()["tensors"]
    offsets = model.loss.trainable_variables[0].numpy()
    for c in range(10):
        steps, values = _series(ev, f"phi/offset/{c}")
        assert len(steps) == 4  # one value per meta-update (64 samples, batches of 16)
        assert float(values[-1]) == pytest.approx(float(offsets[c]), rel=1e-6, abs=1e-7)
    assert "phi/offset_norm" not in tags
