"""The backend seam: an unsupported Keras backend fails with one clear error."""

import os
import subprocess
import sys

import pytest


@pytest.mark.integration
def test_importing_under_an_unsupported_backend_names_the_fix():
    # JAX is not installed here: pretend Keras runs on it.
    code = "import keras; keras.backend.backend = lambda: 'jax'; import tf_metaloss"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "ImportError: tf_metaloss runs on the Keras backend(s) 'tensorflow'" in result.stderr
    assert "The active Keras backend is 'jax'" in result.stderr
    assert "KERAS_BACKEND=tensorflow" in result.stderr
