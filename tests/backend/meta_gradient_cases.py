"""Meta-gradients of fixed problems, for comparing the two backends.

`python tests/backend/meta_gradient_cases.py` prints them as JSON under the
active Keras backend (`KERAS_BACKEND`); `jax_backend_test.py` compares the
TensorFlow and JAX values. Everything is float64 and built from fixed NumPy
arrays, so the two backends compute the same numbers up to rounding.
"""

import json
import os

if os.environ.get("KERAS_BACKEND") == "jax":
    os.environ.setdefault("JAX_ENABLE_X64", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tf_metaloss as tml  # noqa: E402
from tf_metaloss.meta import estimators  # noqa: E402

FAMILIES = {
    "meta_loss": lambda: tml.MetaLoss(from_logits=True, dtype="float64"),
    "blend": lambda: tml.BlendLoss(
        ["crossentropy", "mae_classification"], from_logits=True, dtype="float64"
    ),
    "polynomial": lambda: tml.PolynomialLoss(from_logits=True, dtype="float64"),
    "neural": lambda: tml.NeuralLoss(from_logits=True, dtype="float64", seed=0),
    "sample_weighted": lambda: tml.SampleWeightedLoss(from_logits=True, dtype="float64", seed=0),
    "generalized_ce": lambda: tml.losses.GeneralizedCELoss(from_logits=True, dtype="float64"),
    "class_adjusted": lambda: tml.losses.ClassAdjustedLoss(
        3, class_counts=[5, 3, 8], from_logits=True, dtype="float64"
    ),
}
ESTIMATORS = {
    "second_order": lambda: estimators.Unrolled(),
    "unrolled_2": lambda: estimators.Unrolled(steps=2),
    "first_order_2": lambda: estimators.Unrolled(steps=2, first_order=True),
    "neumann": lambda: estimators.Neumann(terms=3),
    "conjugate_gradient": lambda: estimators.ConjugateGradient(iterations=3),
    "finite_difference": lambda: estimators.FiniteDifference(),
}


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6))
    y = rng.integers(0, 3, 16)
    return (x, y), (x[:8], y[:8])


def model(make_loss, meta_method="second_order"):
    """A float64 MLP with fixed weights; phi moved off its start (every term active).

    The hidden activation is a sigmoid: Keras 3.15's `tanh` computes in
    float32 on JAX. Call it with Keras's float type set to float64.
    """
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, activation="sigmoid")(inputs)
    result = tml.MetaModel(inputs, keras.layers.Dense(3)(hidden))
    result.compile(
        optimizer=keras.optimizers.SGD(0.5),
        loss=make_loss(),
        meta_method=meta_method,
        meta_guard=None,
    )
    rng = np.random.default_rng(1)
    result.set_weights([rng.normal(scale=0.5, size=w.shape) for w in result.get_weights()])
    for variable in result.loss.trainable_variables:
        offset = 0.3 * np.abs(rng.normal(size=variable.shape))
        if variable.name.startswith(("kernel", "bias")):
            # An MLP's random start differs between the backends' generators.
            variable.assign(offset - 0.15)
        else:
            variable.assign(keras.ops.convert_to_numpy(variable.value) + offset)
    return result


def meta_gradients():
    """`{"family/estimator": [phi gradient, flattened]}` on the active backend."""
    batch, meta_batch = data()
    out = {}
    previous = keras.backend.floatx()
    keras.backend.set_floatx("float64")
    try:
        for family, make_loss in FAMILIES.items():
            for name, make_estimator in ESTIMATORS.items():
                result = model(make_loss, make_estimator()).compute_meta_gradient(batch, meta_batch)
                out[f"{family}/{name}"] = np.concatenate(
                    [np.ravel(keras.ops.convert_to_numpy(g)) for g in result.phi_grads]
                ).tolist()
    finally:
        keras.backend.set_floatx(previous)
    return out


if __name__ == "__main__":
    print(json.dumps({"backend": keras.backend.backend(), "meta_gradients": meta_gradients()}))
