"""Checks for your own learnable loss: the contract every family keeps.

`run_learnable_loss_test(make_loss)` checks that a `LearnableLoss` subclass
behaves as `MetaModel` and Keras expect (serialisation, registration,
reductions, sample weights, float64, `stateless_call` equal to `__call__` and
differentiable, bounds, regularization, reset). `check_meta_gradient` compares
a `MetaModel`'s meta-gradient with central finite differences in float64.
Both raise `AssertionError` with a message naming the broken property.

Example:

>>> @keras.saving.register_keras_serializable(package="my_project")
... class ScaledCE(tml.LearnableLoss):
...     def __init__(self, **kwargs):
...         super().__init__(**kwargs)
...         self.regression = False
...         self.add_parameter("scale", (), keras.initializers.Constant(1.0))
...
...     def compute(self, parameters, y_true, y_pred):
...         ce = tml.losses.functional.crossentropy(y_true, y_pred, self.from_logits)
...         return parameters["scale"] * ce
>>> tml.testing.run_learnable_loss_test(
...     lambda **kw: ScaledCE(from_logits=True, **kw), starts_as="crossentropy")
"""

import json

import keras
import numpy as np

from tf_metaloss.losses.base import LearnableLoss
from tf_metaloss.losses.fixed import FixedLoss

__all__ = ["check_meta_gradient", "run_learnable_loss_test"]

_RNG = np.random.default_rng(0)
CLASS_LABELS = np.array([0, 2, 1, 3, 3, 0])
CLASS_LOGITS = (_RNG.normal(size=(6, 4)) * 2).astype("float32")
REGRESSION_TARGETS = _RNG.normal(size=(6, 2)).astype("float32")
REGRESSION_PREDICTIONS = _RNG.normal(size=(6, 2)).astype("float32")
SAMPLE_WEIGHT = np.array([1.0, 0.5, 2.0, 0.0, 1.5, 1.0], dtype="float32")


def _data(loss):
    if loss.regression:
        return REGRESSION_TARGETS, REGRESSION_PREDICTIONS
    return CLASS_LABELS, CLASS_LOGITS


def _perturbed(loss, scale=0.3, seed=0):
    """phi plus non-negative offsets (which keep default lower bounds of 0)."""
    rng = np.random.default_rng(seed)
    return [
        v.numpy() + (np.abs(rng.normal(size=v.shape)) * scale).astype(v.dtype)
        for v in loss.trainable_variables
    ]


def _assign(loss, values):
    for variable, value in zip(loss.trainable_variables, values):
        variable.assign(value)


def _close(actual, expected, what, rtol=1e-6, atol=1e-7):
    try:
        np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=rtol, atol=atol)
    except AssertionError as error:
        raise AssertionError(f"{what}:\n{error}") from None


def _check(condition, what):
    if not condition:
        raise AssertionError(what)


def run_learnable_loss_test(make_loss, starts_as=None):
    """Runs the `LearnableLoss` contract on the family built by `make_loss`.

    Args:
        make_loss: a callable `(**kwargs) -> LearnableLoss` passing keyword
            arguments (`reduction`, `regularization`, `bounds`, `name`,
            `dtype`) on to the loss.
        starts_as: optional base-loss name (e.g. `"crossentropy"`, `"mse"`)
            the family must equal at its initial phi.

    Raises:
        AssertionError: naming the first property that does not hold.
    """
    loss = make_loss()
    _check(isinstance(loss, LearnableLoss), f"{loss!r} is not a LearnableLoss")
    _check(isinstance(loss, keras.losses.Loss), "a LearnableLoss must be a keras.losses.Loss")
    _check(
        len(loss.trainable_variables) == len(loss.parameter_names) > 0,
        "the loss must have parameters, created with `add_parameter`",
    )
    y_true, y_pred = _data(loss)
    name = type(loss).__name__

    if starts_as is not None:
        per_sample = make_loss(reduction=None)(y_true, y_pred)
        base = FixedLoss(starts_as, from_logits=loss.from_logits, reduction=None)
        _close(per_sample, base(y_true, y_pred), f"{name} must start as {starts_as}")

    # Configuration and registration.
    configured = make_loss(regularization=0.25, name="contract", reduction="sum")
    config = configured.get_config()
    clone = type(configured).from_config(config)
    _check(clone.get_config() == config, "from_config(get_config()) changes the config")
    _close(clone(y_true, y_pred), configured(y_true, y_pred), "a clone computes another value")
    unregistered = (
        f"{name} does not survive serialize/deserialize_keras_object; register it with "
        "@keras.saving.register_keras_serializable"
    )
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(loss)))
    try:
        restored = keras.saving.deserialize_keras_object(serialized)
    except TypeError as error:
        raise AssertionError(f"{unregistered} ({error})") from None
    _check(
        type(restored) is type(loss) and restored.get_config() == loss.get_config(),
        unregistered,
    )

    # Reductions and sample weights.
    per_sample = np.asarray(make_loss(reduction=None)(y_true, y_pred))
    _check(per_sample.shape == (len(y_true),), "compute must return one value per sample")
    _close(make_loss(reduction="sum")(y_true, y_pred), per_sample.sum(), "reduction='sum'")
    _close(
        make_loss()(y_true, y_pred, sample_weight=SAMPLE_WEIGHT),
        np.sum(per_sample * SAMPLE_WEIGHT) / len(y_true),
        "sample_weight",
    )

    # float64.
    double = make_loss(dtype="float64")
    _check(
        all(v.dtype == "float64" for v in double.variables),
        "dtype='float64' must create float64 parameters",
    )
    value = double(y_true, y_pred.astype("float64"))
    _check(keras.backend.standardize_dtype(value.dtype) == "float64", "float64 loss value")

    # Parameters: assignment, stateless evaluation, gradients, reset.
    start_values = [v.numpy().copy() for v in loss.trainable_variables]
    start = float(loss(y_true, y_pred))
    values = _perturbed(loss)
    stateless = loss.stateless_call(values, y_true, y_pred, sample_weight=SAMPLE_WEIGHT)
    for variable, value in zip(loss.trainable_variables, start_values):
        _close(variable.numpy(), value, "stateless_call must not assign phi", 0, 0)
    _assign(loss, values)
    _check(abs(float(loss(y_true, y_pred)) - start) > 1e-6, "changing phi must change the loss")
    _close(
        stateless,
        loss(y_true, y_pred, sample_weight=SAMPLE_WEIGHT),
        "stateless_call(values) must equal __call__ with phi = values",
    )
    from tf_metaloss import backend

    tensors = [keras.ops.convert_to_tensor(v) for v in values]
    _, grads = backend.value_and_grad(
        lambda phi: loss.stateless_call(phi, y_true, y_pred), wrt_weights=False
    )(tensors)
    _check(
        all(np.isfinite(np.asarray(g)).all() for g in grads)
        and any(np.abs(np.asarray(g)).max() > 0 for g in grads),
        "stateless_call must be differentiable in the parameter values",
    )
    _check(
        all(key.startswith("phi/") for key in loss.parameter_summary()),
        "parameter_summary keys must start with 'phi/'",
    )
    loss.reset_parameters()
    _close(loss(y_true, y_pred), start, "reset_parameters must restore the initial loss")

    # Regularization and bounds.
    regularized = make_loss(regularization=0.5)
    _close(regularized.regularization_penalty(), 0.0, "the penalty at phi_0 must be 0")
    offsets = [v - s for v, s in zip(_perturbed(regularized), start_values)]
    shifted = [s + d for s, d in zip(start_values, offsets)]
    expected = 0.5 * sum(float(np.sum(np.square(d, dtype="float64"))) for d in offsets)
    _close(
        regularized.regularization_penalty(shifted),
        expected,
        "regularization_penalty must be regularization * ||phi - phi_0||^2",
        rtol=1e-5,
    )
    bounded = make_loss(bounds=(-0.25, 0.25))
    grads = [np.full(v.shape, 10.0, v.dtype) for v in bounded.trainable_variables]
    keras.optimizers.SGD(learning_rate=1.0).apply(grads, bounded.trainable_variables)
    for variable in bounded.trainable_variables:
        _close(variable.numpy(), -0.25, "bounds must clip phi after an optimizer step")


def check_meta_gradient(model, data, meta_data, eps=1e-6, rtol=1e-5):
    """Compares `model.compute_meta_gradient` with central finite differences.

    Build and compile the model in float64 (`keras.backend.set_floatx("float64")`
    before creating it) for a meaningful comparison.

    Args:
        model: a compiled `tf_metaloss.MetaModel`.
        data: a training batch `(x, y)`.
        meta_data: a meta batch `(x_meta, y_meta)`.
        eps: the finite-difference step.
        rtol: the largest accepted relative error (L2 norms over all of phi).

    Returns:
        The relative error.

    Raises:
        AssertionError: if the relative error exceeds `rtol`.
    """

    def objective():
        # What the meta step differentiates: the objective plus phi's penalty.
        value = model.compute_meta_gradient(data, meta_data).meta_objective
        return float(value) + float(model.loss.regularization_penalty())

    analytic = np.concatenate(
        [np.ravel(g) for g in model.compute_meta_gradient(data, meta_data).phi_grads]
    )
    numeric = []
    for variable in model.loss.trainable_variables:
        start = np.array(variable.numpy())  # a 0-d array for a scalar parameter
        for index in np.ndindex(start.shape):
            values = []
            for sign in (1.0, -1.0):
                shifted = start.copy()
                shifted[index] += sign * eps
                variable.assign(shifted)
                values.append(objective())
            numeric.append((values[0] - values[1]) / (2 * eps))
        variable.assign(start)
    numeric = np.asarray(numeric)
    scale = max(np.linalg.norm(numeric), 1e-12)
    error = float(np.linalg.norm(analytic - numeric) / scale)
    _check(
        error <= rtol,
        f"meta-gradient relative error {error:.3g} > {rtol:g}: analytic {analytic}, "
        f"finite differences {numeric}",
    )
    return error
