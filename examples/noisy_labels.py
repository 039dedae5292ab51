"""Per-sample loss weights on noisy labels (Meta-Weight-Net style).

Corrupts 40% of the digits training labels (symmetric noise), holds out a
small clean meta set, and trains an MLP with `tml.SampleWeightedLoss`: a
small network maps each sample's cross-entropy to a weight, meta-learned so
that a lookahead step on the weighted loss lowers the loss on the clean meta
set. Because we injected the noise ourselves we know which labels are wrong,
so the script prints how the learned weights differ between clean and
corrupted samples.

Run:

    python examples/noisy_labels.py --epochs 30 --noise 0.4
    python examples/noisy_labels.py --tiny
"""

import argparse

import keras
import numpy as np
from sklearn import metrics
from sklearn import model_selection

import tf_metaloss as tml
from tf_metaloss.evaluation import inject_label_noise
from tf_metaloss.evaluation import load_digits


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Meta-learn per-sample loss weights on noisy digits and "
        "compare the weights of clean and corrupted samples."
    )
    parser.add_argument("--epochs", type=int, default=30, help="training epochs (default: 30)")
    parser.add_argument(
        "--noise",
        type=float,
        default=0.4,
        help="fraction of training labels flipped (default: 0.4)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument(
        "--tiny", action="store_true", help="a seconds-long smoke run (1 epoch, subset)"
    )
    return parser.parse_args(argv)


def weight_statistics(weights, corrupted):
    """Mean weights of clean and corrupted samples and a ranking score.

    `auc` is the probability that a random clean sample gets a larger weight
    than a random corrupted one (0.5: the weights do not tell them apart).
    """
    weights = np.asarray(weights, dtype=np.float64)
    corrupted = np.asarray(corrupted, dtype=bool)
    return {
        "clean_mean": float(weights[~corrupted].mean()),
        "corrupted_mean": float(weights[corrupted].mean()),
        # Ties count one half, so equal weights give exactly 0.5.
        "auc": float(metrics.roc_auc_score(~corrupted, weights)),
    }


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    data = load_digits(seed=args.seed)
    x_train, x_meta, y_train, y_meta = model_selection.train_test_split(
        data.x_train,
        data.y_train,
        test_size=0.1,
        random_state=args.seed,
        stratify=data.y_train,
    )
    epochs, hidden_units = args.epochs, (128, 128)
    if args.tiny:
        x_train, y_train = x_train[:256], y_train[:256]
        epochs, hidden_units = 1, (16,)
    noisy = inject_label_noise(y_train, args.noise, seed=args.seed)

    inputs = keras.Input((64,))
    x = inputs
    for units in hidden_units:
        x = keras.layers.Dense(units, activation="relu")(x)
    model = tml.MetaModel(inputs, keras.layers.Dense(data.num_classes)(x))
    loss = tml.SampleWeightedLoss(from_logits=True, hidden_units=(32,), seed=args.seed)
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss=loss,
        meta_optimizer=keras.optimizers.Adam(1e-3),
        metrics=["accuracy"],
    )
    model.fit(
        x_train,
        noisy.labels,
        meta_data=(x_meta, y_meta),
        batch_size=64,
        epochs=epochs,
        validation_data=(data.x_val, data.y_val),
        verbose=0,
    )
    accuracy = model.evaluate(data.x_val, data.y_val, verbose=0, return_dict=True)["accuracy"]
    # Weights of the whole training set as one batch (mean weight = 1).
    logits = model.predict(x_train, verbose=0)
    weights = keras.ops.convert_to_numpy(loss.sample_weights(noisy.labels, logits))
    stats = weight_statistics(weights, noisy.mask)

    print(
        f"{int(noisy.mask.sum())} of {len(y_train)} training labels "
        f"corrupted; meta set: {len(y_meta)} clean samples"
    )
    print(f"clean validation accuracy: {accuracy:.4f}")
    print(f"mean learned weight, clean samples:     {stats['clean_mean']:.3f}")
    print(f"mean learned weight, corrupted samples: {stats['corrupted_mean']:.3f}")
    print(
        f"P(weight of a clean sample > weight of a corrupted one): "
        f"{stats['auc']:.3f}  (0.5 = no separation)"
    )
    return {"val_accuracy": float(accuracy), "num_corrupted": int(noisy.mask.sum()), **stats}


if __name__ == "__main__":
    main()
