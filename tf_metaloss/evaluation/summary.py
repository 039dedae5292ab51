"""Summaries of comparison runs: mean and sample std over seeds, paired differences."""

import math

import numpy as np


def mean_std(values):
    """`(mean, std, n)` of finite values; std is the sample std (ddof=1), 0 if n=1."""
    values = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
    if values.size == 0:
        return float("nan"), float("nan"), 0
    std = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
    return float(np.mean(values)), std, int(values.size)


def summarize(runs, convergence_fraction=0.9, target_exclude=("oracle",)):
    """Per method and metric: `{"mean", "std", "n"}` over seeds.

    Also `delta_vs_ce` (paired per seed: method minus cross-entropy, in
    accuracy) when cross-entropy was run, and `epochs_to_common_target`: the
    first epoch whose validation accuracy reaches `convergence_fraction` times
    the best mean final accuracy of all methods (one target for every method,
    unlike `convergence_epoch`, whose target is each run's own final value);
    methods in `target_exclude` (the oracle trains on clean labels) do not
    set the target. Its `n` counts the runs that reached it, `of` all runs.
    """
    by_method = {}
    for run in runs:
        by_method.setdefault(run["method"], []).append(run)
    ce = {r["seed"]: r["final"]["val_accuracy"] for r in by_method.get("ce", [])}
    summary = {}
    for name, method_runs in by_method.items():
        keys = sorted({k for r in method_runs for k in r["final"]})
        entry = {}
        for key in keys:
            mean, std, n = mean_std([r["final"].get(key) for r in method_runs])
            entry[key] = {"mean": mean, "std": std, "n": n}
        paired = [
            r["final"]["val_accuracy"] - ce[r["seed"]] for r in method_runs if r["seed"] in ce
        ]
        if paired:
            mean, std, n = mean_std(paired)
            entry["delta_vs_ce"] = {"mean": mean, "std": std, "n": n}
        summary[name] = entry
    best = max(
        (
            e["val_accuracy"]["mean"]
            for name, e in summary.items()
            if name not in target_exclude and e.get("val_accuracy", {}).get("n")
        ),
        default=float("nan"),
    )
    target = convergence_fraction * best
    for name, method_runs in by_method.items():
        epochs = [
            _first_epoch_reaching(r["curves"].get("val_accuracy", []), target)
            for r in method_runs
            if "curves" in r
        ]
        if epochs:
            mean, std, n = mean_std([float("nan") if e is None else e for e in epochs])
            summary[name]["epochs_to_common_target"] = {
                "mean": mean,
                "std": std,
                "n": n,
                "of": len(epochs),
                "target": target,
            }
    return summary


def _first_epoch_reaching(curve, target):
    reached = [i for i, v in enumerate(curve) if v >= target]
    return reached[0] + 1 if reached else None
