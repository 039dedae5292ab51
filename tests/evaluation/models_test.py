"""Tests of the compared networks."""

import pytest

from tf_metaloss.evaluation import models


def test_build_model():
    assert models.build_model("auto", (5,), 3).output.shape == (None, 3)
    assert models.build_model("auto", (8, 8, 1), 4).name == "compared_cnn"
    assert models.build_model("small_cnn", (8, 8, 3), 2).output.shape == (None, 2)
    with pytest.raises(ValueError, match="image inputs"):
        models.build_model("cnn", (5,), 3)
