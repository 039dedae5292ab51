"""Tests of `GeneralizedCELoss` (generalized cross-entropy with a learnable q)."""

import keras
import numpy as np
import pytest

import tf_metaloss as tml
from tf_metaloss.losses import GeneralizedCELoss
from tf_metaloss.losses import functional

LABELS = np.array([0, 2, 1, 1])
LOGITS = np.random.default_rng(0).normal(size=(4, 3)).astype("float32") * 2


def _p_true(logits=LOGITS, labels=LABELS):
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return p[np.arange(len(labels)), labels]


@pytest.mark.parametrize("q", [0.3, 0.7, 1.0])
def test_golden_values(q):
    loss = GeneralizedCELoss(q=q, from_logits=True, reduction=None)
    np.testing.assert_allclose(loss(LABELS, LOGITS), (1 - _p_true() ** q) / q, rtol=1e-5)


def test_equals_the_fixed_base_loss_at_its_start():
    loss = GeneralizedCELoss(q=0.7, from_logits=True, reduction=None)
    fixed = functional.generalized_crossentropy(LABELS, LOGITS, from_logits=True, q=0.7)
    np.testing.assert_allclose(loss(LABELS, LOGITS), fixed, rtol=1e-6)


def test_small_q_is_cross_entropy():
    loss = GeneralizedCELoss(q=1e-3, from_logits=True, reduction=None)
    np.testing.assert_allclose(loss(LABELS, LOGITS), -np.log(_p_true()), rtol=2e-3, atol=1e-6)


def test_q_is_kept_in_range_by_its_bounds():
    loss = GeneralizedCELoss(q=0.7, from_logits=True)
    (q,) = loss.trainable_variables
    assert float(q.constraint(np.float32(1.5))) == 1.0
    assert float(q.constraint(np.float32(-0.2))) == pytest.approx(1e-3)


def test_per_class_exponents():
    loss = GeneralizedCELoss(q=0.5, per_class=True, num_classes=3, from_logits=True, reduction=None)
    loss.trainable_variables[0].assign([0.2, 0.5, 0.9])
    q = np.array([0.2, 0.5, 0.9])[LABELS]
    np.testing.assert_allclose(loss(LABELS, LOGITS), (1 - _p_true() ** q) / q, rtol=1e-5)
    assert list(loss.parameter_summary()) == ["phi/q_class_0", "phi/q_class_1", "phi/q_class_2"]


@pytest.mark.parametrize("per_class", [False, True])
def test_contract(per_class):
    kwargs = {"per_class": True, "num_classes": 4} if per_class else {}
    tml.testing.run_learnable_loss_test(
        lambda **kw: GeneralizedCELoss(q=0.7, from_logits=True, **kwargs, **kw),
        starts_as=None,
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"q": 0.0}, "argument `q`"),
        ({"q": 1.5}, "argument `q`"),
        ({"per_class": "yes"}, "argument `per_class`"),
        ({"per_class": True}, "argument `num_classes`"),
    ],
)
def test_argument_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GeneralizedCELoss(**kwargs)


def test_sample_weights_are_the_gradient_ratio_to_crossentropy():
    y = np.array([0, 1, 2])
    logits = keras.ops.convert_to_tensor(
        np.random.default_rng(1).normal(size=(3, 3)).astype("float32")
    )
    loss = GeneralizedCELoss(q=0.4, from_logits=True, reduction=None)

    def gradient(per_sample_loss):
        # The gradient of the sum: each sample's loss depends on its own row of logits only.
        _, (g,) = tml.backend.value_and_grad(lambda w: keras.ops.sum(per_sample_loss(y, w[0])))(
            [logits]
        )
        return keras.ops.convert_to_numpy(g)

    g_gce = gradient(loss)
    g_ce = gradient(
        lambda y, logits: keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
    )
    weights = keras.ops.convert_to_numpy(loss.sample_weights(y, logits))
    np.testing.assert_allclose(g_gce, weights[:, None] * g_ce, rtol=1e-5, atol=1e-7)
    p = keras.ops.convert_to_numpy(keras.ops.softmax(logits))[np.arange(3), y]
    np.testing.assert_allclose(loss.sample_weights(y, logits), p**0.4, rtol=1e-5)
    # The default MetaLoss exposes them, so the evaluation probes report their AUC.
    assert callable(tml.MetaLoss(from_logits=True).sample_weights)
