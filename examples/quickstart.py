"""Quickstart: train with a meta-learned loss, save, reload, inspect phi.

Trains a small MLP on scikit-learn's 8x8 digits (offline) with
`tml.MetaLoss`, generalized cross-entropy whose exponent q (0.7 at the start)
is meta-learned on a held-out 10% of the training data.
Then saves the model to a `.keras` file, reloads it with
`keras.models.load_model`, and checks that the learned loss parameters phi
and the predictions survived the round trip.

Run:

    python examples/quickstart.py --epochs 20
    python examples/quickstart.py --tiny      # a seconds-long smoke run
"""

import argparse
import os
import tempfile

import keras
import numpy as np

import tf_metaloss as tml
from tf_metaloss.evaluation import load_digits


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Train on digits with tml.MetaLoss, save, reload and print the learned loss."
    )
    parser.add_argument("--epochs", type=int, default=20, help="training epochs (default: 20)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument(
        "--output",
        default=None,
        help="where to save the .keras file (default: a temporary directory)",
    )
    parser.add_argument(
        "--tiny", action="store_true", help="a seconds-long smoke run (1 epoch, subset)"
    )
    return parser.parse_args(argv)


def build_model(num_classes, hidden_units):
    inputs = keras.Input((64,))
    x = inputs
    for units in hidden_units:
        x = keras.layers.Dense(units, activation="relu")(x)
    return tml.MetaModel(inputs, keras.layers.Dense(num_classes)(x))


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    data = load_digits(seed=args.seed)
    x_train, y_train = data.x_train, data.y_train
    epochs, hidden_units = args.epochs, (128,)
    if args.tiny:
        x_train, y_train = x_train[:256], y_train[:256]
        epochs, hidden_units = 1, (16,)

    model = build_model(data.num_classes, hidden_units)
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss=tml.MetaLoss(from_logits=True),
        meta_optimizer=keras.optimizers.Adam(0.01),
        metrics=["accuracy"],
    )
    # meta_split holds out the last 10% of (x_train, y_train) as meta data.
    model.fit(
        x_train,
        y_train,
        meta_split=0.1,
        batch_size=64,
        epochs=epochs,
        validation_data=(data.x_val, data.y_val),
        verbose=0,
    )
    scores = model.evaluate(data.x_val, data.y_val, verbose=0, return_dict=True)
    accuracy = scores["accuracy"]
    print(f"validation accuracy: {accuracy:.4f}")
    phi = {k: float(v) for k, v in model.loss.parameter_summary().items()}
    print(
        f"learned loss: correction weight {model.loss.correction:.3f} at the start, "
        f"{phi['phi/correction']:.3f} now (0: generalized cross-entropy, 1: the forward correction)"
    )

    with tempfile.TemporaryDirectory() as tmp:
        path = args.output or os.path.join(tmp, "quickstart.keras")
        model.save(path)
        restored = keras.models.load_model(path)
        same_phi = all(
            np.array_equal(a.numpy(), b.numpy())
            for a, b in zip(model.loss.trainable_variables, restored.loss.trainable_variables)
        )
        same_predictions = np.allclose(
            model.predict(data.x_val, verbose=0),
            restored.predict(data.x_val, verbose=0),
            atol=1e-6,
        )
        print(
            f"saved to {path} and reloaded: phi restored: {same_phi}, "
            f"same predictions: {same_predictions}"
        )
    return {
        "val_accuracy": float(accuracy),
        "phi": phi,
        "phi_restored": same_phi,
        "predictions_restored": bool(same_predictions),
    }


if __name__ == "__main__":
    main()
