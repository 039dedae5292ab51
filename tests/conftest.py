"""Test configuration and shared fixtures.

- Two logical CPU devices (for tf.distribute tests).
- `classification_data`: random inputs and labels (a factory).
- `toy_dataset`, `toy_npz`: separable Gaussian blobs as a `Dataset` or an
  `.npz` file (factories), for the comparison pipeline and its command.
"""

import os

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


def pytest_collection_modifyitems(config, items):
    """Under KERAS_BACKEND=jax, runs only the tests marked `both_backends`.

    The others drive the TensorFlow training loop (not implemented on JAX
    yet) or TensorFlow itself; they are deselected, not skipped.
    """
    if keras.backend.backend() != "jax":
        return
    keep = [item for item in items if item.get_closest_marker("both_backends")]
    dropped = [item for item in items if not item.get_closest_marker("both_backends")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


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
    keras.backend.clear_session(free_memory=False)
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
