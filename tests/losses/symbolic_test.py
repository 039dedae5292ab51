"""Tests of `SymbolicLoss` (a formula with learnable constants) and `FormulaLoss`."""

import json

import keras
import numpy as np
import pytest

import tf_metaloss as tml
from tf_metaloss.losses import FormulaLoss
from tf_metaloss.losses import SymbolicLoss

LABELS = np.array([0, 2, 1, 1])
LOGITS = np.array(
    [[2.0, 0.0, -1.0], [0.5, -0.3, 1.2], [-1.0, 2.5, 0.1], [0.0, 0.0, 0.0]], dtype="float32"
)


def _p_true():
    p = np.exp(LOGITS) / np.exp(LOGITS).sum(-1, keepdims=True)
    return p[np.arange(len(LABELS)), LABELS]


def test_starts_as_keras_crossentropy():
    loss = SymbolicLoss(from_logits=True, reduction=None)
    keras_ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    np.testing.assert_allclose(loss(LABELS, LOGITS), keras_ce(LABELS, LOGITS), rtol=1e-6)
    # Golden values: -log p_true, computed with numpy (the last one is log 3).
    np.testing.assert_allclose(loss(LABELS, LOGITS), -np.log(_p_true()), rtol=1e-6)
    np.testing.assert_allclose(
        loss(LABELS, LOGITS), [0.169846, 0.542159, 0.114146, np.log(3)], rtol=1e-5
    )
    assert loss.formula() == "-log(p_true + 0)"


def test_starts_as_squared_error_for_regression():
    y_true = np.array([[1.0], [0.0], [-2.0]], "float32")
    y_pred = np.array([[0.0], [2.0], [-2.5]], "float32")
    loss = SymbolicLoss(regression=True, reduction=None)
    assert loss.regression
    np.testing.assert_allclose(loss(y_true, y_pred), [1.0, 4.0, 0.25], rtol=1e-6)
    loss.trainable_variables[0].assign([1.0])  # the learnable power: MAE
    np.testing.assert_allclose(loss(y_true, y_pred), [1.0, 2.0, 0.5], rtol=1e-6)


def test_golden_values_with_other_constants():
    loss = SymbolicLoss("div(sub(1, pow(p_true, 0.7)), 0.7)", from_logits=True, reduction=None)
    np.testing.assert_allclose(loss(LABELS, LOGITS), (1 - _p_true() ** 0.7) / 0.7, rtol=1e-5)
    loss.trainable_variables[0].assign([1.0, 0.3, 0.5])
    np.testing.assert_allclose(loss(LABELS, LOGITS), (1 - _p_true() ** 0.3) / 0.5, rtol=1e-5)
    assert loss.formula() == "(1 - |p_true|^0.3) / 0.5"
    assert loss.parameter_names == ["constants"]
    assert list(loss.parameter_summary()) == ["phi/constant_0", "phi/constant_1", "phi/constant_2"]


def test_formula_is_simplified_with_sympy():
    pytest.importorskip("sympy")
    loss = SymbolicLoss("mul(2, sub(1, p_true))", from_logits=True)
    assert loss.formula() == "2 * (1 - p_true)"
    assert loss.formula(simplify=True) == "2 - 2*p_true"


@pytest.mark.parametrize(
    "expression",
    [
        None,
        "div(sub(1, pow(p_true, 0.7)), 0.7)",
        "add(sum_c(abs(sub(y, p))), mul(0.5, tanh(margin)))",
    ],
)
def test_contract(expression):
    starts_as = "crossentropy" if expression is None else None
    tml.testing.run_learnable_loss_test(
        lambda **kw: SymbolicLoss(expression, from_logits=True, **kw), starts_as=starts_as
    )


def test_contract_regression():
    tml.testing.run_learnable_loss_test(
        lambda **kw: SymbolicLoss(regression=True, **kw), starts_as="mse"
    )


def test_serialization_round_trip_keeps_the_expression():
    loss = SymbolicLoss("neg(mul(pow(sub(1, p_true), 2), log_p_true))", from_logits=True)
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(loss)))
    restored = keras.saving.deserialize_keras_object(config)
    assert isinstance(restored, SymbolicLoss)
    assert restored.expression == loss.expression
    np.testing.assert_allclose(restored(LABELS, LOGITS), loss(LABELS, LOGITS))


def test_to_fixed_freezes_the_current_constants():
    loss = SymbolicLoss(from_logits=True, reduction=None)
    loss.trainable_variables[0].assign([0.25])
    fixed = loss.to_fixed()
    assert isinstance(fixed, FormulaLoss) and not isinstance(fixed, tml.LearnableLoss)
    assert fixed.formula() == "-log(p_true + 0.25)"
    np.testing.assert_allclose(fixed(LABELS, LOGITS), -np.log(_p_true() + 0.25), rtol=1e-6)
    loss.trainable_variables[0].assign([0.0])  # later changes do not reach the frozen loss
    np.testing.assert_allclose(fixed(LABELS, LOGITS), -np.log(_p_true() + 0.25), rtol=1e-6)
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(fixed)))
    restored = keras.saving.deserialize_keras_object(config)
    np.testing.assert_allclose(restored(LABELS, LOGITS), fixed(LABELS, LOGITS))


def test_fixed_loss_saves_and_loads_in_a_plain_model(tmp_path, classification_data):
    x, y = classification_data(n=32, features=4, classes=3)
    fixed = SymbolicLoss("neg(log(add(p_true, 0.1)))", from_logits=True).to_fixed()
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer="sgd", loss=fixed)
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "plain.keras")
    restored = keras.models.load_model(tmp_path / "plain.keras")
    assert isinstance(restored.loss, FormulaLoss)
    assert restored.loss.formula() == "-log(p_true + 0.1)"
    np.testing.assert_allclose(restored.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0))


def _mlp_model(loss, features=6, classes=3, seed=0, activation="tanh"):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((features,))
    h = keras.layers.Dense(8, activation=activation)(inputs)
    model = tml.MetaModel(inputs, keras.layers.Dense(classes)(h))
    model.compile(
        optimizer=keras.optimizers.SGD(0.5), meta_optimizer="sgd", loss=loss, meta_guard=None
    )
    return model


@pytest.mark.parametrize(
    "expression",
    [
        "neg(log(add(p_true, 0.2)))",
        "add(div(sub(1, pow(p_true, 0.6)), 0.6), mul(0.3, tanh(margin)))",
        "sum_c(mul(pow(sub(y, p), 1.5), exp(mul(0.5, log_p))))",
    ],
)
def test_meta_gradient_matches_finite_differences(float64, classification_data, expression):
    x, y, x_meta, y_meta = classification_data(
        n=16, n_meta=8, features=6, classes=3, dtype="float64", label_dtype="int64"
    )
    # `tml.backend.tanh` keeps float64 (Keras's "tanh" rounds it to float32 on JAX).
    model = _mlp_model(SymbolicLoss(expression, from_logits=True), activation=tml.backend.tanh)
    error = tml.testing.check_meta_gradient(model, (x, y), (x_meta, y_meta))
    assert error < 1e-5


def test_constants_learn_and_save_in_a_meta_model_file(tmp_path, classification_data):
    x, y, x_meta, y_meta = classification_data(n=64, n_meta=32, features=6, classes=3)
    model = _mlp_model(SymbolicLoss("div(sub(1, pow(p_true, 0.7)), 0.7)", from_logits=True))
    model.fit(x, y, meta_data=(x_meta, y_meta), epochs=2, batch_size=16, verbose=0)
    learned = model.loss.current_constants()
    assert not np.allclose(learned, [1.0, 0.7, 0.7])
    model.save(tmp_path / "symbolic.keras")
    restored = keras.models.load_model(tmp_path / "symbolic.keras")
    assert isinstance(restored.loss, SymbolicLoss)
    np.testing.assert_allclose(restored.loss.current_constants(), learned)
    assert restored.loss.formula() == model.loss.formula()
    np.testing.assert_allclose(restored.loss(y, model(x)), model.loss(y, model(x)), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"expression": "foo(p_true)"}, "argument `expression`.*Unknown primitive 'foo'"),
        ({"expression": "add(p_true)"}, "argument `expression`.*takes 2 argument"),
        ({"expression": "log(q)"}, "argument `expression`.*Unknown terminal 'q'"),
        ({"expression": "add(p_true, diff)"}, "argument `expression`.*mixes"),
        ({"expression": "add(1, 2)"}, "argument `expression`.*at least one terminal"),
        ({"expression": "neg(p_true"}, "argument `expression`.*missing '\\)'"),
        ({"expression": "[1, 2"}, "argument `expression`.*JSON"),
        ({"expression": 3}, "argument `expression`.*at least one terminal"),
        ({"expression": "p_true", "regression": True}, "argument `regression`.*classification"),
        ({"regression": "yes"}, "argument `regression`.*Received: regression='yes'"),
        ({"from_logits": 1}, "argument `from_logits`"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SymbolicLoss(**kwargs)


def test_formula_loss_needs_an_expression():
    with pytest.raises(ValueError, match="argument `expression`"):
        FormulaLoss(None)
