"""The default `MetaLoss` at full length, per guard variant, against GCE (train + meta).

Reads `docs/figures/full/<cell>/runs/<run>_s<seed>/results.json` (one `tf-metaloss compare`
run each) and prints, per cell, validation accuracy % as mean ± sample std over the seeds
found [per seed], the paired per-seed differences against the first run named (GCE by
default), whether the guard took its run, and the final correction weight `c`. With
`--best-of`, also each run's paired differences against the best of those baselines in the
cell (the highest mean over the seeds asked for) and in how many seeds it is at or above it.

Usage: python scripts/guard_table.py [--root docs/figures/full]
           [--runs gce,noise_corrected,guard_meta] [--best-of ce,gce,sce,forward,glc]
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
    parser.add_argument("--best-of", default="", help="baselines, comma-separated")
    args = parser.parse_args(argv)
    names = args.runs.split(",")
    best_of = args.best_of.split(",") if args.best_of else []
    seeds = [int(s) for s in args.seeds.split(",")]
    shortfalls = {}
    for cell in CELLS:
        print(f"## {cell}")
        records = {
            n: {s: _load(args.root, cell, n, s) for s in seeds}
            for n in dict.fromkeys(names + best_of)
        }
        accuracies = {n: _accuracy(found) for n, found in records.items()}
        for name in names:
            found = {s: r for s, r in records[name].items() if r is not None}
            if not found:
                continue
            accuracy = accuracies[name]
            line = f"{name:<16} {_mean_std(list(accuracy.values()))} "
            line += "[" + ", ".join(f"s{s} {a:.2f}" for s, a in accuracy.items()) + "]"
            reverted = [s for s, r in found.items() if r["final"].get("guard_reverted") == 1.0]
            if any("guard_reverted" in r["final"] for r in found.values()):
                line += f"  guard took its run: seeds {reverted}"
            correction = {s: r["phi"].get("phi/correction") for s, r in found.items()}
            if all(correction.values()):
                line += "  final c: " + ", ".join(f"{c[-1]:.2f}" for c in correction.values())
            baseline = accuracies[names[0]]
            paired = [accuracy[s] - baseline[s] for s in accuracy if s in baseline]
            if name != names[0] and paired:
                line += f"  minus {names[0]}: {_mean_std(paired)} ["
                line += ", ".join(f"{p:+.2f}" for p in paired) + "]"
            print(line)
        if best_of:
            shortfalls[cell] = _print_against_best(accuracies, best_of, names, seeds)
        print()
    if any(shortfalls.values()):
        print("mean below the best baseline of each cell (points; 0 = it is the best):")
        for name in names:
            cells = {c: v[name] for c, v in shortfalls.items() if v and name in v}
            if cells:
                worst = max(cells.values())
                each = ", ".join(f"{c} {v:.2f}" for c, v in cells.items())
                print(f"  {name:<16} {each}; worst {worst:.2f}")


def _accuracy(records):
    """`{seed: validation accuracy %}` of the runs found (`records`: `{seed: run or None}`)."""
    return {s: 100 * r["final"]["val_accuracy"] for s, r in records.items() if r is not None}


def _print_against_best(accuracies, best_of, names, seeds):
    # Only baselines with every seed asked for.
    baselines = {n: accuracies[n] for n in best_of if len(accuracies[n]) == len(seeds)}
    if not baselines:
        return None
    best = max(baselines, key=lambda n: np.mean(list(baselines[n].values())))
    best_mean = np.mean(list(baselines[best].values()))
    print(f"best baseline of the cell (of {', '.join(baselines)}): {best}")
    shortfall = {}
    for name in names:
        accuracy = accuracies[name]
        if len(accuracy) != len(seeds):
            continue
        shortfall[name] = max(best_mean - np.mean(list(accuracy.values())), 0.0)
        if name == best:
            continue
        paired = [accuracy[s] - baselines[best][s] for s in seeds]
        at_or_above = sum(p >= 0 for p in paired)
        print(
            f"  {name:<16} minus {best}: {_mean_std(paired)} ["
            + ", ".join(f"{p:+.2f}" for p in paired)
            + f"], at or above in {at_or_above} of {len(seeds)} seeds"
        )
    return shortfall


if __name__ == "__main__":
    main()
