"""The library on Keras's JAX backend, and the two backends against each other.

The tests that are not `integration` run in the default (TensorFlow) suite and again
under `KERAS_BACKEND=jax` (`.ci/run`'s JAX stage), like the rest of the suite.
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

import tf_metaloss as tml
from tf_metaloss import backend

HERE = pathlib.Path(__file__).parent


def _cases():
    spec = importlib.util.spec_from_file_location("cases", HERE / "meta_gradient_cases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cases = _cases()


def _run_under_jax(code):
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_ENABLE_X64="1", TF_CPP_MIN_LOG_LEVEL="3")
    root = str(HERE.parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )


def test_tensorflow_and_jax_meta_gradients_agree():
    """Every family x estimator: the same float64 meta-gradient on both backends."""
    if keras.backend.backend() != "tensorflow":
        pytest.fail("run this test in the TensorFlow suite (it starts the JAX run itself)")
    result = _run_under_jax(
        f"import runpy; runpy.run_path({str(HERE / 'meta_gradient_cases.py')!r}, "
        "run_name='__main__')"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jax_run = json.loads(result.stdout.strip().splitlines()[-1])
    assert jax_run["backend"] == "jax"
    tensorflow_run = cases.meta_gradients()
    assert sorted(jax_run["meta_gradients"]) == sorted(tensorflow_run)
    for key, expected in tensorflow_run.items():
        actual = np.asarray(jax_run["meta_gradients"][key])
        expected = np.asarray(expected)
        assert np.linalg.norm(expected) > 0, key
        error = np.linalg.norm(actual - expected) / np.linalg.norm(expected)
        # float64 on both; GeneralizedCELoss agrees to 3e-8, the others to 2e-12.
        assert error < 1e-6, (key, error, actual, expected)


def _load(name):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _close(actual, expected, what, rtol=1e-4):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=2e-5 * rtol / 1e-4, err_msg=what)


@pytest.mark.integration
def test_fit_on_jax_matches_tensorflow():
    """`fit` (meta steps, guard, estimators, steps_per_execution): the same run on both."""
    if keras.backend.backend() != "tensorflow":
        pytest.fail("run this test in the TensorFlow suite (it starts the JAX run itself)")
    fit_cases = _load("fit_cases")
    result = _run_under_jax(
        f"import runpy; runpy.run_path({str(HERE / 'fit_cases.py')!r}, run_name='__main__')"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jax_run = json.loads(result.stdout.strip().splitlines()[-1])
    assert jax_run["backend"] == "jax"
    tensorflow_run = fit_cases.run_all()
    assert sorted(jax_run["cases"]) == sorted(tensorflow_run)
    for name, expected in tensorflow_run.items():
        actual = jax_run["cases"][name]
        rtol = fit_cases.CASES[name].get("rtol", 1e-4)
        assert sorted(actual["history"]) == sorted(expected["history"]), name
        for key, values in expected["history"].items():
            _close(actual["history"][key], values, f"{name}: {key}", rtol)
        for i, (a, b) in enumerate(zip(actual["weights"], expected["weights"])):
            _close(a, b, f"{name}: weight {i}", rtol)
        for a, b in zip(actual["phi"], expected["phi"]):
            _close(a, b, f"{name}: phi", rtol)
        # Every run learned something: phi moved from its start, or the guard
        # took its run back (phi reset).
        moved = any(
            np.any(np.asarray(p) != np.asarray(q))
            for p, q in zip(expected["phi"], expected["phi_start"])
        )
        assert moved or expected["history"].get("guard_reverted", [0])[-1] == 1.0, name


@pytest.mark.integration
def test_jax_says_what_it_does_not_support():
    result = _run_under_jax(
        """
import keras, numpy as np, tf_metaloss as tml
inputs = keras.Input((4,))
model = tml.MetaModel(inputs, keras.layers.Dense(3)(inputs))
model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True))
x, y = np.random.rand(40, 4).astype("float32"), np.arange(40) % 3
mesh = keras.distribution.DeviceMesh((1,), ["model"], keras.distribution.list_devices())
layouts = keras.distribution.LayoutMap(mesh)
keras.distribution.set_distribution(keras.distribution.ModelParallel(layout_map=layouts))
try:
    model.fit(x, y, meta_split=0.25, epochs=1, verbose=0)
except NotImplementedError as error:
    print("distribution error:", error)
"""
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "distribution error: `MetaModel.fit` under keras.distribution.ModelParallel" in (
        result.stdout
    )
    assert "keras.distribution.DataParallel()" in result.stdout


_DATA_PARALLEL_RUN = """
import json, sys, keras, numpy as np, tf_metaloss as tml
assert len(keras.distribution.list_devices()) == 2
rng = np.random.default_rng(0)
x = rng.normal(size=(256, 8)).astype("float32")
y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("int32") + (x[:, 2] > 1)

def run(distribution, method):
    keras.distribution.set_distribution(distribution)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(16, activation="tanh")(inputs)
    model = tml.MetaModel(inputs, keras.layers.Dense(3)(hidden))
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        loss=tml.MetaLoss(from_logits=True),
        meta_every=1 if method == "forward_mode" else 2,
        meta_method=method,
        meta_seed=0,
        metrics=["accuracy"],
    )
    norms = tml.evaluation.metrics.GradientNormHistory()
    history = model.fit(x, y, batch_size=32, epochs=3, shuffle=False, meta_data=(x[:64], y[:64]),
                        meta_batch_size=16, verbose=0, callbacks=[norms])
    evaluated = model.evaluate(x[:64], y[:64], batch_size=32, verbose=0, return_dict=True)
    keras.distribution.set_distribution(None)
    return {
        "weights": [np.asarray(w).tolist() for w in model.get_weights()],
        "phi": [np.asarray(v).tolist() for v in model.loss.variables],
        "loss": history.history["loss"],
        "evaluated": evaluated["loss"],
        "norms": norms.norms,
        "sharding": str(model.trainable_variables[0].value.sharding),
    }

results = {}
for method in sys.argv[1:]:
    results[method] = [run(None, method), run(keras.distribution.DataParallel(), method)]
print(json.dumps(results))
"""


@pytest.mark.integration
def test_data_parallel_on_two_devices_equals_one_device(tmp_path):
    """keras.distribution.DataParallel over 2 (host) devices: the same run as
    one device, to float32 rounding, for the one-step and the stateful
    estimators (the guard on, its check data split from the meta data), and
    the gradient norms `GradientNormHistory` records (host calls from a
    program over 2 devices)."""
    script = tmp_path / "data_parallel.py"
    script.write_text(_DATA_PARALLEL_RUN)
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3")
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(HERE.parent.parent), env.get("PYTHONPATH")])
    )
    methods = ["second_order", "neumann", "forward_mode"]
    result = subprocess.run(
        [sys.executable, str(script), *methods],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.strip().splitlines()[-1])
    for method in methods:
        one, two = results[method]
        assert "P(None, None)" in two["sharding"] and "'batch': 2" in two["sharding"], method
        for a, b in zip(one["weights"], two["weights"], strict=True):
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6, err_msg=method)
        for a, b in zip(one["phi"], two["phi"], strict=True):
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6, err_msg=method)
        np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-5, err_msg=method)
        np.testing.assert_allclose(two["evaluated"], one["evaluated"], rtol=1e-5, err_msg=method)
        assert len(one["norms"]) == 3 * 8, method  # 256 samples, batch 32, 3 epochs
        np.testing.assert_allclose(two["norms"], one["norms"], rtol=1e-4, err_msg=method)
        assert one["phi"][0] > 0.01, (method, one["phi"])  # the meta step moved c


_KILLED_RUN = """
import os, signal, sys, keras, numpy as np, tf_metaloss as tml
backup_dir, output, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = np.random.default_rng(0)
x = rng.normal(size=(96, 6)).astype("float32")
y = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 1)
keras.utils.set_random_seed(0)
inputs = keras.Input((6,))
hidden = keras.layers.Dropout(0.2)(keras.layers.Dense(8, activation="tanh")(inputs))
model = tml.MetaModel(inputs, keras.layers.Dense(3)(hidden))
model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
              loss=tml.MetaLoss(from_logits=True), meta_every=2, meta_seed=0)

class Kill(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

callbacks = [Kill()] if kill_at >= 0 else []
if backup_dir != "-":
    callbacks.append(tml.callbacks.MetaBackupAndRestore(backup_dir, save_freq=4))
model.fit(tml.meta.data.resumable_dataset(x, y, batch_size=16, seed=0), steps_per_epoch=6,
          epochs=3, meta_data=(x[:40], y[:40]), meta_batch_size=8, verbose=0,
          callbacks=callbacks)
assert model.guard_reference is not None
np.savez(output, *[keras.ops.convert_to_numpy(v)
                   for v in tml.callbacks.backup.training_state_variables(model)])
"""


@pytest.mark.integration
def test_kill_9_and_resume_is_exact_on_jax(tmp_path):
    """A JAX `fit` killed with SIGKILL and started again ends with the state
    of an uninterrupted run, bit for bit (weights, dropout seeds, phi, both
    optimizers, the guard's run)."""
    script = tmp_path / "killed.py"
    script.write_text(_KILLED_RUN)
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(HERE.parent.parent), env.get("PYTHONPATH")])
    )

    def run(backup_dir, output, kill_at):
        command = [sys.executable, str(script), str(backup_dir), str(output), str(kill_at)]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)

    # Backups at steps 4 and 8 (epoch 1, 2 steps in); killed before step 11.
    killed = run(tmp_path / "backup", tmp_path / "killed.npz", 11)
    assert killed.returncode == -9, killed.stderr[-3000:]
    with open(tmp_path / "backup" / "latest.json") as f:
        assert json.load(f) == {"backup": "step-000000008"}
    resumed = run(tmp_path / "backup", tmp_path / "resumed.npz", -1)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    reference = run("-", tmp_path / "reference.npz", -1)
    assert reference.returncode == 0, reference.stderr[-3000:]
    with np.load(tmp_path / "resumed.npz") as a, np.load(tmp_path / "reference.npz") as b:
        assert len(a.files) == len(b.files) > 10
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert not (tmp_path / "backup").exists()


@pytest.mark.integration
def test_a_model_saved_on_tensorflow_loads_on_jax_with_phi(tmp_path):
    if keras.backend.backend() != "tensorflow":
        pytest.fail("run this test in the TensorFlow suite (it starts the JAX run itself)")
    fit_cases = _load("fit_cases")
    x, y = fit_cases.data()
    inputs = keras.Input((6,))
    model = tml.MetaModel(inputs, keras.layers.Dense(3)(inputs))
    model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True), meta_guard=None)
    model.fit(x[:256], y[:256], meta_data=(x[256:], y[256:]), epochs=1, verbose=0)
    phi = [float(keras.ops.convert_to_numpy(v)) for v in model.loss.trainable_variables]
    assert phi != [0.0]
    path = tmp_path / "model.keras"
    model.save(path)
    np.save(tmp_path / "x.npy", x[:8])
    np.save(tmp_path / "predictions.npy", model.predict(x[:8], verbose=0))
    result = _run_under_jax(
        f"""
import json, keras, numpy as np, tf_metaloss as tml
model = keras.models.load_model({str(path)!r})
x = np.load({str(tmp_path / "x.npy")!r})
expected = np.load({str(tmp_path / "predictions.npy")!r})
print(json.dumps({{
    "phi": [float(np.asarray(v)) for v in model.loss.trainable_variables],
    "max_difference": float(np.max(np.abs(model.predict(x, verbose=0) - expected))),
}}))
"""
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(loaded["phi"], phi, rtol=1e-6)
    assert loaded["max_difference"] < 1e-5


def test_fit_evaluate_save_and_reload(tmp_path):
    """The user's path on the active backend: fit, evaluate, save, load, fit on."""
    fit_cases = _load("fit_cases")
    x, y = fit_cases.data()
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    hidden = keras.layers.BatchNormalization()(hidden)
    hidden = keras.layers.Dropout(0.1)(hidden)
    model = tml.MetaModel(inputs, keras.layers.Dense(3)(hidden))
    model.compile(
        optimizer=keras.optimizers.Adam(0.02),
        loss=tml.MetaLoss(from_logits=True),
        metrics=["accuracy"],
        steps_per_execution=2,
    )
    audit = tmp_path / "audit.jsonl"
    history = model.fit(
        x,
        y,
        meta_split=0.25,
        epochs=3,
        batch_size=32,
        verbose=0,
        callbacks=[
            tml.callbacks.LossAuditLog(str(audit)),
            tml.callbacks.MetaTensorBoard(str(tmp_path / "logs")),
        ],
    )
    for key in ("loss", "accuracy", "meta_objective", "meta_grad_norm", "guard_objective"):
        assert len(history.history[key]) == 3 and np.all(np.isfinite(history.history[key]))
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert audit.read_text().strip()
    assert any((tmp_path / "logs").rglob("*tfevents*"))
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert set(logs) >= {"loss", "accuracy", "meta_objective"}
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    for a, b in zip(loaded.loss.variables, model.loss.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    np.testing.assert_allclose(
        loaded.predict(x[:16], verbose=0), model.predict(x[:16], verbose=0), atol=1e-5
    )
    loaded.fit(x, y, meta_split=0.25, epochs=1, batch_size=32, verbose=0)
    assert int(keras.ops.convert_to_numpy(loaded.optimizer.iterations)) > int(
        keras.ops.convert_to_numpy(model.optimizer.iterations)
    )


@pytest.mark.parametrize("family", sorted(cases.FAMILIES))
def test_meta_gradient_matches_finite_differences_in_float64(float64, family):
    model = cases.model(cases.FAMILIES[family])
    batch, meta_batch = cases.data()
    error = tml.testing.check_meta_gradient(model, batch, meta_batch, rtol=1e-5)
    assert error < 1e-5


@pytest.mark.parametrize("family", ["blend", "polynomial", "class_adjusted"])
def test_finite_difference_estimator_converges_to_the_exact_meta_gradient(float64, family):
    batch, meta_batch = cases.data()
    exact = cases.model(cases.FAMILIES[family]).compute_meta_gradient(batch, meta_batch)
    model = cases.model(cases.FAMILIES[family], tml.meta.estimators.FiniteDifference(1e-4))
    estimate = model.compute_meta_gradient(batch, meta_batch)
    for a, b in zip(estimate.phi_grads, exact.phi_grads):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), rtol=1e-5, atol=1e-9
        )


def test_differentiation_functions_nest():
    def meta(phi):
        # One SGD step on phi * w * stop_weight_gradient(w), then (w')^2.
        def inner(w):
            return phi[0] * w[0] * backend.stop_weight_gradient(w[0])

        _, grads = backend.value_and_grad(inner)([keras.ops.convert_to_tensor(3.0)])
        return (3.0 - 0.1 * grads[0]) ** 2

    value, grads = backend.value_and_grad(meta, wrt_weights=False)(
        [keras.ops.convert_to_tensor(0.5)]
    )
    # w' = 3 - 0.1 * 3 * phi; d/dphi (w')^2 = 2 w' * (-0.3).
    assert float(value) == pytest.approx(2.85**2)
    assert float(grads[0]) == pytest.approx(2 * 2.85 * -0.3)
    out, pullback = backend.vjp(lambda w: [w[0] ** 2], [keras.ops.convert_to_tensor([1.0, 2.0])])
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(pullback([keras.ops.ones((2,))])[0]), [2.0, 4.0]
    )
    outputs, tangents = backend.jvp(
        lambda w: [w[0] ** 2], [keras.ops.convert_to_tensor([1.0, 3.0])], [keras.ops.ones((2,))]
    )
    np.testing.assert_allclose(keras.ops.convert_to_numpy(tangents[0]), [2.0, 6.0])
    assert backend.name() == keras.backend.backend()


@pytest.mark.integration
def test_demo_runs_on_jax(tmp_path):
    """`tf-metaloss --backend jax demo`: the main command on the JAX backend."""
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    env.pop("KERAS_BACKEND", None)
    root = str(HERE.parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "tf_metaloss", "--backend", "jax", "demo", "--tiny"]
        + ["--logdir", str(tmp_path / "logs")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MetaLoss (meta-learned) |" in result.stdout
    assert "verdict:" in result.stdout
    assert "; Keras on jax." in result.stdout
    assert any((tmp_path / "logs").rglob("*tfevents*"))
