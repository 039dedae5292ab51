"""Tests of the compared networks."""

import keras
import numpy as np
import pytest

from tf_metaloss.evaluation import models


def test_build_model():
    assert models.build_model("auto", (5,), 3).output.shape == (None, 3)
    assert models.build_model("auto", (8, 8, 1), 4).name == "compared_cnn"
    assert models.build_model("small_cnn", (8, 8, 3), 2).output.shape == (None, 2)
    with pytest.raises(ValueError, match="image inputs"):
        models.build_model("cnn", (5,), 3)


def test_tiny_bert_takes_token_ids_and_computes_the_padding_mask():
    keras.utils.set_random_seed(0)
    model = models.build_model("auto", (8,), 2, 32, vocabulary_size=20)
    assert model.name == "compared_tiny_bert" and model.output.shape == (None, 2)
    assert model.input.dtype == "int32"
    core = next(layer for layer in model.layers if layer.name.endswith("_backbone_and_head"))
    tokens = np.array([[1, 5, 6, 2, 0, 0, 0, 0], [1, 7, 2, 0, 0, 0, 0, 0]], dtype="int32")
    expected = core(
        {"token_ids": tokens, "padding_mask": tokens != 0, "segment_ids": np.zeros_like(tokens)},
        training=False,
    )
    np.testing.assert_allclose(model(tokens, training=False), expected, rtol=1e-6, atol=1e-6)


def test_tiny_bert_argument_errors():
    with pytest.raises(ValueError, match="Token ids .* go with 'tiny_bert'"):
        models.build_model("mlp", (8,), 2, vocabulary_size=20)
    with pytest.raises(ValueError, match="Token ids .* go with 'tiny_bert'"):
        models.build_model("tiny_bert", (8,), 2)
    with pytest.raises(ValueError, match="argument `hidden_units`. Expected a multiple of 32"):
        models.build_model("tiny_bert", (8,), 2, 48, vocabulary_size=20)
