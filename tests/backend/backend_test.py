"""The backend seam: an unsupported Keras backend fails with one clear error."""

import os
import subprocess
import sys

import pytest


@pytest.mark.integration
def test_importing_under_an_unsupported_backend_names_the_fix():
    # Pretend Keras runs on a backend the library does not support.
    code = "import keras; keras.backend.backend = lambda: 'torch'; import tf_metaloss"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert (
        "ImportError: tf_metaloss runs on the Keras backend(s) 'tensorflow', 'jax'" in result.stderr
    )
    assert "The active Keras backend is 'torch'" in result.stderr
    assert "KERAS_BACKEND=tensorflow" in result.stderr
