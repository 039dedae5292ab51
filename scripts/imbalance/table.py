"""The "Imbalanced classes" tables of docs/RESULTS.md from docs/figures/imbalance/r*/results.json.

Per imbalance ratio: every method's validation accuracy, balanced accuracy and
the 3 rarest classes' accuracy (mean ± sample std over seeds, per-seed
values), and the learned loss's paired difference from logit adjustment and
from the best baseline, with the seeds it wins.

Usage:
    python scripts/imbalance/table.py [--root docs/figures/imbalance] [--learned class_adjusted]
"""

import argparse
import glob
import json
import os
import re

import numpy as np

METRICS = (
    ("val_accuracy", "acc %"),
    ("val_balanced_accuracy", "balanced acc %"),
    ("val_rare3_accuracy", "3 rarest acc %"),
)
LEARNED = "class_adjusted"


def _by_method(results):
    runs = {}
    for run in results["runs"]:
        runs.setdefault(run["method"], {})[run["seed"]] = run["final"]
    return runs


def _cell(values):
    values = 100 * np.asarray(values, float)
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.2f} ± {std:.2f}"


def ratio_table(results, learned=LEARNED):
    runs = _by_method(results)
    labels = {m["name"]: m["label"] for m in results["methods"]}
    lines = [
        "| method | " + " | ".join(h for _, h in METRICS) + " | acc per seed |",
        "|---|" + "---:|" * len(METRICS) + "---|",
    ]
    for name, seeds in runs.items():
        order = sorted(seeds)
        cells = [_cell([seeds[s][k] for s in order]) for k, _ in METRICS]
        per_seed = " / ".join(f"{100 * seeds[s]['val_accuracy']:.1f}" for s in order)
        lines.append(f"| {labels.get(name, name)} | " + " | ".join(cells) + f" | {per_seed} |")
    lines += ["", _paired(runs, labels, learned), _frozen_phi(results, learned)]
    return "\n".join(lines)


def _frozen_phi(results, learned):
    """The phi a two-stage ("retrain") method trained its second stage with, per seed."""
    values = {}
    for run in results["runs"]:
        stages = run.get("stages") or []
        if run["method"] == learned and len(stages) > 1 and stages[1].get("phi"):
            for key, value in stages[1]["phi"].items():
                values.setdefault(key, {})[run["seed"]] = value
    return "\n".join(
        f"- {key} frozen for the retrain, per seed: "
        + ", ".join(f"{per_seed[s]:.2f}" for s in sorted(per_seed))
        for key, per_seed in values.items()
    )


def _paired(runs, labels, learned_name):
    if learned_name not in runs:
        return ""
    learned = runs[learned_name]
    baselines = [n for n in runs if n != learned_name]
    means = {n: np.mean([runs[n][s]["val_accuracy"] for s in runs[n]]) for n in baselines}
    best = max(means, key=means.get)
    out = []
    for name in dict.fromkeys(["logit_adjusted", best, "ce"]):
        if name not in runs:
            continue
        seeds = sorted(set(learned) & set(runs[name]))
        diffs = [100 * (learned[s]["val_accuracy"] - runs[name][s]["val_accuracy"]) for s in seeds]
        wins = sum(d >= 0 for d in diffs)
        tag = " (best baseline)" if name == best else ""
        out.append(
            f"{labels.get(learned_name, learned_name)} - {labels.get(name, name)}{tag}: "
            f"{np.mean(diffs):+.2f} points "
            f"(per seed {', '.join(f'{d:+.1f}' for d in diffs)}; >= in {wins} of {len(diffs)})"
        )
    return "\n".join(f"- {line}" for line in out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="docs/figures/imbalance")
    parser.add_argument("--learned", default=LEARNED, help="the learned method to compare")
    args = parser.parse_args(argv)
    paths = glob.glob(os.path.join(args.root, "r*", "results.json"))
    ratio = {p: float(re.search(r"/r([0-9.]+)/results.json$", p).group(1)) for p in paths}
    for path in sorted(paths, key=lambda p: (ratio[p] == 1, ratio[p])):
        with open(path) as f:
            results = json.load(f)
        counts = results["data"]["per_seed"]
        sizes = sorted({sum(v.get("train_class_counts", [])) for v in counts.values()})
        print(
            f"### Ratio {ratio[path]:g} ({len(counts)} seeds; {sizes[0]} training images, "
            f"{next(iter(counts.values()))['num_meta']} meta)\n"
        )
        print(ratio_table(results, args.learned))
        print()
    return 0


if __name__ == "__main__":
    main()
