"""`MetaModel.fit` on small problems, run on either backend and compared.

`python fit_cases.py` (under any KERAS_BACKEND) prints one JSON line: the
backend and, per case, the final weights, phi and the per-epoch history.
The weights are set from a seeded NumPy generator and the batches are not
shuffled, so both backends train the same model on the same batches.
"""

import json

import keras
import numpy as np

import tf_metaloss as tml

CASES = {
    # The default loss and guard, a meta step every second step.
    "default": {"compile": {"meta_every": 2}},
    # The Neumann estimator, several steps per call of the train function.
    "neumann_steps_per_execution": {
        "loss": "blend",
        "compile": {"meta_method": "neumann", "steps_per_execution": 3, "meta_guard": None},
    },
    # The stateful forward-mode estimator: its tangents are threaded too.
    "forward_mode_blend": {
        "loss": "blend",
        "compile": {"meta_method": "forward_mode", "meta_guard": None},
    },
    # The finite-difference estimator on a blend of base losses, no XLA. Its
    # float32 differences amplify rounding: the backends agree to 1e-3 on phi.
    "finite_difference_blend": {
        "loss": "blend",
        "rtol": 1e-2,
        "compile": {"meta_method": "finite_difference", "jit_compile": False, "meta_guard": None},
    },
}


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(320, 6)).astype("float32")
    y = ((x[:, 0] > 0).astype("int64") + (x[:, 1] > 0.5)).astype("int64")
    y[:40] = (y[:40] + 1) % 3  # some wrong labels in the training part
    return x, y


def run(case):
    # tf.data's shuffling of the meta batches also reads the global seed.
    keras.utils.set_random_seed(0)
    x, y = data()
    rng = np.random.default_rng(1)
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, activation="tanh")(inputs)
    model = tml.MetaModel(inputs, keras.layers.Dense(3)(hidden))
    model.set_weights(
        [rng.normal(scale=0.5, size=w.shape).astype("float32") for w in model.weights]
    )
    if case.get("loss") == "blend":
        loss = tml.BlendLoss(["crossentropy", "mae_classification"], from_logits=True)
    else:
        loss = tml.MetaLoss(from_logits=True)
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        loss=loss,
        meta_seed=3,
        **case["compile"],
    )
    start = [np.asarray(v).tolist() for v in model.loss.trainable_variables]
    history = model.fit(
        x[:256],
        y[:256],
        meta_data=(x[256:], y[256:]),
        epochs=2,
        batch_size=32,
        shuffle=False,
        verbose=0,
    )
    return {
        "weights": [np.asarray(w).tolist() for w in model.get_weights()],
        "phi_start": start,
        "phi": [np.asarray(v).tolist() for v in model.loss.trainable_variables],
        "history": {k: [float(v) for v in values] for k, values in history.history.items()},
    }


def run_all():
    return {name: run(case) for name, case in CASES.items()}


if __name__ == "__main__":
    print(json.dumps({"backend": keras.backend.backend(), "cases": run_all()}))
