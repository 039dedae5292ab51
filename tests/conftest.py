"""Test configuration: two logical CPU devices (for tf.distribute tests)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
try:
    tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:  # TensorFlow was initialised before this file ran.
    pass


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
