"""Regression with outliers: meta-learn a blend of MSE, MAE and Huber.

Targets are `y = sin(3 x1) + 0.5 x2^2 + small noise`, but a fraction of the
training targets is replaced by large outliers. The model is trained with
`tml.BlendLoss(["mse", "mae", "huber"])`, which starts as pure MSE and is
meta-learned on a small clean meta set (the meta objective is MSE on clean
targets). MSE chases the outliers; the meta step should move weight to the
robust terms. For comparison the same model is trained with MSE alone.

Run:

    python examples/regression.py --epochs 60 --outliers 0.2
    python examples/regression.py --tiny
"""

import argparse

import keras
import numpy as np

import tf_metaloss as tml


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Meta-learn a blend of MSE, MAE and Huber on a "
        "synthetic regression with outliers; compare with MSE."
    )
    parser.add_argument("--epochs", type=int, default=60, help="training epochs (default: 60)")
    parser.add_argument(
        "--outliers",
        type=float,
        default=0.2,
        help="fraction of training targets replaced by outliers (default: 0.2)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument(
        "--tiny", action="store_true", help="a seconds-long smoke run (1 epoch, subset)"
    )
    return parser.parse_args(argv)


def make_data(n, outlier_fraction, rng):
    """Inputs, clean targets, and targets with outliers (and their mask)."""
    x = rng.uniform(-1.0, 1.0, size=(n, 2)).astype("float32")
    clean = np.sin(3.0 * x[:, 0]) + 0.5 * x[:, 1] ** 2
    clean = clean + 0.05 * rng.standard_normal(n)
    corrupted = rng.random(n) < outlier_fraction
    noisy = clean.copy()
    noisy[corrupted] = rng.uniform(5.0, 10.0, size=corrupted.sum()) * rng.choice(
        [-1.0, 1.0], size=corrupted.sum()
    )
    return x, clean[:, None].astype("float32"), noisy[:, None].astype("float32"), corrupted


def build_model(seed, hidden_units):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((2,))
    h = inputs
    for units in hidden_units:
        h = keras.layers.Dense(units, activation="tanh")(h)
    return tml.MetaModel(inputs, keras.layers.Dense(1)(h))


def train(loss, meta_every, data, args, epochs, hidden_units):
    x_train, y_train, x_meta, y_meta, x_val, y_val = data
    model = build_model(args.seed, hidden_units)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=loss,
        meta_optimizer=keras.optimizers.Adam(1e-2),
        meta_every=meta_every,
        metrics=["mae"],
    )
    history = model.fit(
        x_train,
        y_train,
        batch_size=64,
        epochs=epochs,
        verbose=0,
        meta_data=(x_meta, y_meta) if meta_every else None,
    )
    y_pred = model.predict(x_val, verbose=0)
    return float(np.mean((y_pred - y_val) ** 2)), model, history


def main(argv=None):
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    n_train, epochs, hidden_units = 2000, args.epochs, (64, 64)
    if args.tiny:
        n_train, epochs, hidden_units = 256, 1, (8,)
    x_train, _, y_train, corrupted = make_data(n_train, args.outliers, rng)
    x_meta, y_meta, _, _ = make_data(100, 0.0, rng)
    x_val, y_val, _, _ = make_data(1000, 0.0, rng)
    data = (x_train, y_train, x_meta, y_meta, x_val, y_val)

    mse_only, _, _ = train(tml.BlendLoss(["mse"]), 0, data, args, epochs, hidden_units)
    blend = tml.BlendLoss(["mse", "mae", "huber"])
    learned, model, history = train(blend, 1, data, args, epochs, hidden_units)
    # The weights the meta step learned, as logged at the end of the last epoch (if the
    # guard then gave the model its MSE run, the blend itself went back to pure MSE),
    # normalised as the blend uses them.
    raw = {name: history.history[f"phi/{name}"][-1] for name in blend.base_losses}
    weights = {name: value / sum(raw.values()) for name, value in raw.items()}

    print(
        f"{int(corrupted.sum())} of {n_train} training targets are outliers; "
        f"meta set: {len(y_meta)} clean samples"
    )
    print(f"clean validation MSE, MSE loss:     {mse_only:.4f}")
    print(f"clean validation MSE, learned blend: {learned:.4f}")
    print("learned blend weights: " + ", ".join(f"{k} {v:.3f}" for k, v in weights.items()))
    if model.guard_reverted:
        print(
            "the guard kept the MSE run trained on the training and meta data: it scored "
            "better on the held-out check data than the learned blend"
        )
    return {
        "mse_only_val_mse": mse_only,
        "blend_val_mse": learned,
        "weights": {k: float(v) for k, v in weights.items()},
        "guard_reverted": bool(model.guard_reverted),
    }


if __name__ == "__main__":
    main()
