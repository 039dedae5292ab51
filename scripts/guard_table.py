"""The default `MetaLoss` at full length, per guard variant, against GCE (train + meta).

Reads `docs/figures/full/<cell>/runs/<run>_s<seed>/results.json` (one `tf-metaloss compare`
run each) and prints, per cell, validation accuracy % as mean ± sample std over the seeds
found [per seed], the paired per-seed differences against GCE, whether the guard took its
run, and the final correction weight `c`.

Usage: python scripts/guard_table.py [--root docs/figures/full]
           [--runs gce,noise_corrected,guard_meta]
"""

import argparse
import json
import os

import numpy as np

CELLS = ("sym40", "asym40", "clean")


def _load(root, cell, run, seed):
    path = os.path.join(root, cell, "runs", f"{run}_s{seed}", "results.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)["runs"][0]


def _mean_std(values):
    values = np.asarray(values, dtype=float)
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.2f} ± {std:.2f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="docs/figures/full")
    parser.add_argument("--runs", default="gce,noise_corrected,guard_meta")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args(argv)
    names = args.runs.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    for cell in CELLS:
        print(f"## {cell}")
        records = {n: {s: _load(args.root, cell, n, s) for s in seeds} for n in names}
        for name in names:
            found = {s: r for s, r in records[name].items() if r is not None}
            if not found:
                continue
            accuracy = {s: 100 * r["final"]["val_accuracy"] for s, r in found.items()}
            line = f"{name:<16} {_mean_std(list(accuracy.values()))} "
            line += "[" + ", ".join(f"s{s} {a:.2f}" for s, a in accuracy.items()) + "]"
            reverted = [s for s, r in found.items() if r["final"].get("guard_reverted") == 1.0]
            if any("guard_reverted" in r["final"] for r in found.values()):
                line += f"  guard took its run: seeds {reverted}"
            correction = {s: r["phi"].get("phi/correction") for s, r in found.items()}
            if all(correction.values()):
                line += "  final c: " + ", ".join(f"{c[-1]:.2f}" for c in correction.values())
            baseline = records[names[0]]
            paired = [
                accuracy[s] - 100 * baseline[s]["final"]["val_accuracy"]
                for s in accuracy
                if baseline.get(s) is not None
            ]
            if name != names[0] and paired:
                line += f"  minus {names[0]}: {_mean_std(paired)} ["
                line += ", ".join(f"{p:+.2f}" for p in paired) + "]"
            print(line)
        print()


if __name__ == "__main__":
    main()
