"""Test configuration and shared fixtures.

- Two logical CPU devices (for tf.distribute tests).
- `classification_data`: random inputs and labels (a factory).
- `toy_dataset`, `toy_npz`: separable Gaussian blobs as a `Dataset` or an
  `.npz` file (factories), for the comparison pipeline and its command.
"""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if os.environ.get("KERAS_BACKEND") == "jax":
    # The float64 meta-gradient checks need JAX's 64-bit types.
    os.environ.setdefault("JAX_ENABLE_X64", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
try:
    tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:  # TensorFlow was initialised before this file ran.
    pass


# Tests that do not run under KERAS_BACKEND=jax (node-id prefixes, from `tests/`).
# Every other test of the default suite runs on both backends (CI's JAX stage).
#
# TensorFlow's own: its backend functions (`backend/tensorflow/`), `tf.function`
# tracing and XLA on TensorFlow, `tf.distribute`, the command line in a process
# that has loaded Keras on TensorFlow, and the comparison that starts the JAX
# run itself.
TENSORFLOW_ONLY = (
    "backend/compiled_loop_test.py::test_chief_and_worker_index",
    "backend/compiled_loop_test.py::test_fit_and_evaluate_trace_once_with_static_shapes",
    "backend/compiled_loop_test.py::test_the_estimators_keep_one_trace_and_no_host_ops",
    "backend/compiled_loop_test.py::test_xla_steps_trace_once",
    "backend/differentiation_test.py::test_nested_calls_give_second_order_derivatives",
    "backend/differentiation_test.py::test_replica_helpers_under_mirrored_strategy",
    "backend/differentiation_test.py::test_stop_weight_gradient_hides_a_value_from_weight_gradients_only",
    "backend/differentiation_test.py::test_stop_weight_gradient_is_stop_gradient_outside_a_weight_gradient",
    "backend/differentiation_test.py::test_unconnected_inputs_get_zero_gradients_and_aux_passes_through",
    "backend/differentiation_test.py::test_value_and_grad_of_a_quadratic",
    "backend/differentiation_test.py::test_vjp_of_a_gradient_gives_hessian_vector_products_inside_an_outer_gradient",
    "backend/differentiation_test.py::test_vjp_of_a_weight_gradient_sees_detached_values_move_with_the_weights",
    "backend/differentiation_test.py::test_vjp_pullback_is_reusable_and_has_aux",
    "backend/jax_backend_test.py::test_tensorflow_and_jax_meta_gradients_agree",
    "cli_test.py::test_backend_is_read_before_or_after_the_command",
    # Counts the traces of TensorFlow's compiled loop (JAX's steps_per_execution:
    # backend/jax_backend_test.py).
    "models/meta_model_test.py::test_steps_per_execution_runs_the_same_training_in_one_compiled_loop",
    # TensorFlow's checkpoint dependencies (`_trackable_children`).
    "models/meta_model_test.py::test_fit_keeps_its_iterators_out_of_the_models_checkpoint_dependencies",
    "docstrings_test.py::test_docstring_example_runs[tf_metaloss.backend.tensorflow.",
)


# Long on JAX (compiling every new model's steps with XLA): under
# KERAS_BACKEND=jax these are marked `slow` and `long_on_jax`, so the default
# suite leaves them out and `KERAS_BACKEND=jax python -m pytest -m long_on_jax`
# runs them (CI does, in a stage of their own). They run in the default suite
# on TensorFlow. Chosen by their duration on JAX, measured for 271 of the tests
# (one worker beside other jobs: the files below 100-250 s each, the single
# tests 20-40 s) and, for the end-to-end files not measured (runner, examples,
# text), by how many models they train.
LONG_ON_JAX = (
    "callbacks/backup_test.py",
    "callbacks/tensorboard_test.py::test_class_adjusted_offsets_get_one_curve_per_class",
    "cli_test.py::test_importing_the_package_in_a_program_registers_every_class",
    "commands/compare_command_test.py",
    "commands/demo_test.py",
    "docstrings_test.py::test_docstring_example_runs[tf_metaloss.commands.demo.run_demo]",
    "evaluation/runner_test.py",
    "examples_test.py",
    "text_test.py",
)


def _node(item, root=pathlib.Path(__file__).parent):
    """The item's node id from `tests/`, e.g. `cli_test.py::test_x[1]`."""
    return (
        pathlib.Path(item.path).relative_to(root).as_posix()
        + item.nodeid[item.nodeid.index("::") :]
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under KERAS_BACKEND=jax, deselects the tests listed above as not run on
    JAX (not skipped: `-rA` shows none of them as run), and marks the long ones
    before `-m` selects (this hook runs first)."""
    if keras.backend.backend() != "jax":
        return
    dropped = [item for item in items if _node(item).startswith(TENSORFLOW_ONLY)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not _node(item).startswith(TENSORFLOW_ONLY)]
    for item in items:
        # Only tests of the default suite: a slow or integration test stays out of both.
        if item.get_closest_marker("slow") or item.get_closest_marker("integration"):
            continue
        if LONG_ON_JAX and _node(item).startswith(LONG_ON_JAX):
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.long_on_jax)


@pytest.fixture
def float64():
    """Runs a test with Keras's default float type set to float64."""
    previous = keras.backend.floatx()
    keras.backend.set_floatx("float64")
    try:
        yield
    finally:
        keras.backend.set_floatx(previous)


@pytest.fixture(autouse=True)
def _clear_session():
    """A fresh Keras session and the same random state before every test: a
    test's result must not depend on which tests ran before it in its process
    (pytest-xdist shares the tests among its workers differently every run)."""
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(0)
    yield


@pytest.fixture
def mirrored_strategy():
    """A factory of `MirroredStrategy` objects on the two logical CPUs.

    TensorFlow numbers every new strategy's collective ops from the same keys,
    so two strategies in one process can mix up their all-reduces; TensorFlow's
    own tests give each strategy its own key range, as this factory does.
    """

    def make():
        tf.distribute.MirroredStrategy._collective_key_base += 100_000
        return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

    return make


@pytest.fixture(scope="session")
def classification_data():
    """A factory of random classification arrays.

    `classification_data(n, features, classes, seed)` returns `(x, y)`: float
    inputs from a standard normal and uniformly random labels, drawn in that
    order from `np.random.default_rng(seed)`. With `n_meta`, it also draws a
    meta set from the same generator: `(x, y, x_meta, y_meta)`.
    """

    def make(
        n=32, features=5, classes=3, seed=0, n_meta=None, dtype="float32", label_dtype="int32"
    ):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(n, features)).astype(dtype)
        y = rng.integers(0, classes, n).astype(label_dtype)
        if n_meta is None:
            return x, y
        x_meta = rng.normal(size=(n_meta, features)).astype(dtype)
        y_meta = rng.integers(0, classes, n_meta).astype(label_dtype)
        return x, y, x_meta, y_meta

    return make


def _blobs(n_train=120, n_val=60, classes=3, features=6, seed=0, name="toy"):
    from tf_metaloss.evaluation import datasets

    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(classes, features))

    def draw(n):
        y = np.arange(n) % classes
        x = centers[y] + rng.normal(size=(n, features))
        return x.astype("float32"), y.astype("int64")

    x_train, y_train = draw(n_train)
    x_val, y_val = draw(n_val)
    return datasets.Dataset(x_train, y_train, x_val, y_val, classes, name)


@pytest.fixture(scope="session")
def toy_dataset():
    """A factory of separable Gaussian blobs as a `tml.evaluation.Dataset`.

    A tiny model learns them in a couple of epochs. Labels cycle through the
    classes (`arange(n) % classes`), so every class has the same size.
    """
    return _blobs


@pytest.fixture(scope="session")
def toy_npz():
    """A factory: `toy_npz(path, **blobs_options)` writes the blobs to an
    `.npz` file with `x_train`, `y_train`, `x_val`, `y_val` and returns its path."""

    def make(path, **kwargs):
        data = _blobs(**kwargs)
        np.savez(
            path, x_train=data.x_train, y_train=data.y_train, x_val=data.x_val, y_val=data.y_val
        )
        return str(path)

    return make


@pytest.fixture(scope="session")
def small_config():
    """A factory of small `CompareConfig`s for the toy data: 2 epochs of batch
    16, one seed, an 8-unit MLP; keyword arguments override."""
    from tf_metaloss.evaluation.config import CompareConfig

    def make(**kwargs):
        defaults = dict(
            dataset="toy", epochs=2, batch_size=16, seeds=(0,), hidden_units=8, learning_rate=0.05
        )
        defaults.update(kwargs)
        return CompareConfig(**defaults)

    return make
