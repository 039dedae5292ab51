"""Trains the best formula of a search against cross-entropy and GCE (q=0.7).

The same network, data and initial weights per seed for the three losses:
CIFAR-10-dev's 5,000-image training subset of the search (4,000 noisy + 500
clean meta images, the 500 holdout images left out), the small CNN, SGD 0.05
with momentum 0.9, batch 128; accuracy on the 2,000 *validation* images, which
the search never saw. A short configuration (the search's data and network,
`--epochs` long), not the full-length benchmark.

Usage: python scripts/symbolic_check.py LOG [--data cifar10_dev.npz] [--epochs 20]
       [--seeds 0 1 2] [--noise 0.4] [--output results.json]
"""

import argparse
import json

import keras
import numpy as np

import tf_metaloss as tml
from tf_metaloss.evaluation import models
from tf_metaloss.losses import FixedLoss
from tf_metaloss.losses import FormulaLoss


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log")
    parser.add_argument("--data", default="../shared/data/cifar10_dev.npz")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--noise", type=float, default=0.4)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    best = tml.search.best_candidates(tml.search.load_log(args.log), 1)[0]
    data = tml.evaluation.load_dataset(args.data)
    task = tml.search.make_task(data, noise=args.noise, train_subset=5000, seed=0)
    x = np.concatenate([task.x_train, task.x_meta])
    y = np.concatenate([task.y_train, task.y_meta])
    losses = {
        "cross-entropy": lambda: FixedLoss("crossentropy", from_logits=True),
        "GCE (q=0.7)": lambda: FixedLoss("generalized_crossentropy", q=0.7, from_logits=True),
        f"found: {best['formula']}": lambda: FormulaLoss(best["tuned"], from_logits=True),
    }
    results = {name: [] for name in losses}
    for seed in args.seeds:
        for name, make in losses.items():
            keras.utils.set_random_seed(seed)
            model = models.build_model("small_cnn", x.shape[1:], 10, hidden_units=64)
            model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss=make())
            model.fit(x, y, epochs=args.epochs, batch_size=128, verbose=0)
            logits = model.predict(data.x_val, batch_size=512, verbose=0)
            accuracy = 100 * float(np.mean(np.argmax(logits, -1) == data.y_val))
            results[name].append(accuracy)
            print(f"seed {seed} {name}: {accuracy:.2f}", flush=True)
    print("\n| loss | validation accuracy % (mean ± std) | per seed |\n|---|---|---|")
    for name, values in results.items():
        print(
            f"| {name} | {np.mean(values):.2f} ± {np.std(values):.2f} | "
            f"{', '.join(f'{v:.1f}' for v in values)} |"
        )
    if args.output:
        with open(args.output, "w") as file:
            json.dump({"best": best, "epochs": args.epochs, "accuracy": results}, file, indent=1)


if __name__ == "__main__":
    main()
