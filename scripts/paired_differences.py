"""Paired per-seed differences of final validation accuracy between methods.

Reads the results.json of `tf-metaloss compare` output directories and prints,
for each pair (a, b), mean ± sample std over seeds of acc(a) - acc(b) in points,
and the per-seed values (same seed = same data, noise, order and initial weights).

Usage: python scripts/paired_differences.py docs/figures/cifar10_dev_noise40 \
           [--a meta_loss,blend] [--b ce,gce,sce]
"""

import argparse
import json
import os

import numpy as np


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directories", nargs="+")
    parser.add_argument("--a", default="meta_loss,blend,polynomial,neural,sample_weighted")
    parser.add_argument("--b", default="ce,gce,sce,label_smoothing,schedule,frozen")
    args = parser.parse_args(argv)
    for directory in args.directories:
        with open(os.path.join(directory, "results.json")) as f:
            results = json.load(f)
        accuracy = {}
        for run in results["runs"]:
            accuracy.setdefault(run["method"], {})[run["seed"]] = run["final"]["val_accuracy"]
        print(directory)
        for a in args.a.split(","):
            for b in args.b.split(","):
                if a == b or a not in accuracy or b not in accuracy:
                    continue
                seeds = sorted(set(accuracy[a]) & set(accuracy[b]))
                diffs = [100.0 * (accuracy[a][s] - accuracy[b][s]) for s in seeds]
                std = np.std(diffs, ddof=1) if len(diffs) > 1 else 0.0
                print(
                    f"  {a} - {b}: {np.mean(diffs):+.2f} ± {std:.2f} pts "
                    f"(seeds {seeds}: {', '.join(f'{d:+.2f}' for d in diffs)})"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
