"""Summaries of comparison runs: means over seeds, paired differences, merged results.

- `summarize(runs, ...)`: per method and metric, mean and sample std over
  seeds; paired per-seed differences of validation accuracy against reference
  methods (the same seed means the same data, noise, batches and initial
  weights, so the difference removes most of the seed's luck).
- `summarize_results(results)`: the same for a results dict, with the
  baselines it holds as references.
- `merge_results(results_list)`: one results dict from several comparisons of
  the same configuration run separately (e.g. one process per seed or method).

Example:

>>> runs = [{"method": m, "seed": s, "final": {"val_accuracy": a}}
...         for m, s, a in [("gce", 0, 0.5), ("gce", 1, 0.6), ("meta", 0, 0.55), ("meta", 1, 0.6)]]
>>> paired = tml.evaluation.summary.summarize(runs, references=("gce",))["meta"]["paired"]
>>> {k: round(v, 3) for k, v in paired["gce"]["per_seed"].items()}
{'0': 0.05, '1': 0.0}
"""

import datetime
import math

import numpy as np

from tf_metaloss.evaluation import methods as methods_lib

MERGE_IGNORED_CONFIG = ("methods", "seeds", "command", "preset")
# Settings recorded since schema version 2 began, with the value that results
# written without them used (so old and new files of one configuration merge).
ADDED_CONFIG_DEFAULTS = {"meta_method": "second_order"}


def mean_std(values):
    """`(mean, std, n)` of finite values; std is the sample std (ddof=1), 0 if n=1."""
    values = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
    if values.size == 0:
        return float("nan"), float("nan"), 0
    std = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
    return float(np.mean(values)), std, int(values.size)


def summarize(runs, convergence_fraction=0.9, target_exclude=("oracle",), references=("ce",)):
    """Per method and metric: `{"mean", "std", "n"}` over seeds.

    Also, for validation accuracy:

    - `paired`: for each method in `references` that ran (other than the
      method itself), the paired per-seed differences `method - reference`:
      `{"mean", "std", "n", "per_seed": {seed: difference}}` over the seeds
      both ran;
    - `delta_vs_ce`: the paired difference against cross-entropy (`"ce"`),
      when it ran;
    - `epochs_to_common_target`: the first epoch whose validation accuracy
      reaches `convergence_fraction` times the best mean final accuracy of all
      methods (one target for every method, unlike `convergence_epoch`, whose
      target is each run's own final value); methods in `target_exclude` (the
      oracle trains on clean labels) do not set the target. Its `n` counts the
      runs that reached it, `of` all runs.
    """
    by_method = {}
    for run in runs:
        by_method.setdefault(run["method"], []).append(run)
    accuracy = {
        name: {r["seed"]: r["final"]["val_accuracy"] for r in method_runs}
        for name, method_runs in by_method.items()
    }
    summary = {}
    for name, method_runs in by_method.items():
        keys = sorted({k for r in method_runs for k in r["final"]})
        entry = {}
        for key in keys:
            mean, std, n = mean_std([r["final"].get(key) for r in method_runs])
            entry[key] = {"mean": mean, "std": std, "n": n}
        if "ce" in accuracy:
            entry_delta = _paired(accuracy[name], accuracy["ce"])
            if entry_delta["n"]:
                entry["delta_vs_ce"] = {k: entry_delta[k] for k in ("mean", "std", "n")}
        paired = {
            reference: _paired(accuracy[name], accuracy[reference])
            for reference in references
            if reference != name and reference in accuracy
        }
        paired = {k: v for k, v in paired.items() if v["per_seed"]}
        if paired:
            entry["paired"] = paired
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


def _paired(accuracy, reference):
    """Per-seed differences `accuracy - reference` over their common seeds."""
    seeds = sorted(set(accuracy) & set(reference))
    per_seed = {str(seed): accuracy[seed] - reference[seed] for seed in seeds}
    mean, std, n = mean_std(list(per_seed.values()))
    return {"mean": mean, "std": std, "n": n, "per_seed": per_seed}


def summarize_results(results):
    """`summarize` of a results dict, with every baseline it holds as a reference."""
    baselines = tuple(m["name"] for m in results["methods"] if m.get("group") == "baseline")
    return summarize(
        results["runs"],
        results["config"].get("convergence_fraction", 0.9),
        references=baselines or ("ce",),
    )


def merge_results(results_list, sources=None):
    """One results dict from comparisons of one configuration run separately.

    Full-length runs can be split into one process per seed or per method
    (`tf-metaloss compare --seeds 0 --methods glc ...`) and merged afterwards
    (`tf-metaloss compare --merge a.json b.json ...`). The inputs must agree on
    every setting except `methods`, `seeds`, `command` and `preset` (a setting
    a file predates counts as the value it ran with, e.g. `meta_method`
    `"second_order"`), and on the data; a method and seed may appear only
    once. The merged results hold the union of the methods (in registry order,
    as a single run would list them) and seeds, every run, a recomputed
    summary, and `sources`: each input's command, creation time and
    environment.

    Args:
        results_list: results dicts (e.g. read from `results.json` files).
        sources: optional names of the inputs (e.g. their paths), recorded
            and used in error messages.

    Returns:
        The merged results dict.

    Example:

    >>> parts = [
    ...     {"schema_version": 2, "config": {"methods": [name], "seeds": [0]},
    ...      "data": {"per_seed": {"0": {}}},
    ...      "methods": [{"name": name, "label": name, "group": "baseline"}],
    ...      "runs": [{"method": name, "seed": 0, "final": {"val_accuracy": accuracy}}]}
    ...     for name, accuracy in (("gce", 0.5), ("ce", 0.4))]
    >>> merged = tml.evaluation.summary.merge_results(parts)
    >>> [m["name"] for m in merged["methods"]], merged["config"]["seeds"]
    (['ce', 'gce'], [0])
    >>> round(merged["summary"]["gce"]["delta_vs_ce"]["mean"], 3)
    0.1
    """
    results_list = list(results_list)
    if not results_list:
        raise ValueError(
            "Invalid value for argument `results_list`. Expected at least one results "
            "dict. Received: results_list=[]"
        )
    names = (
        list(sources) if sources is not None else [f"#{i + 1}" for i in range(len(results_list))]
    )
    configs = [{**ADDED_CONFIG_DEFAULTS, **results["config"]} for results in results_list]
    first = results_list[0]
    for name, results, config in zip(names, results_list, configs):
        version = results.get("schema_version")
        if version != first.get("schema_version"):
            raise ValueError(
                f"Cannot merge results of schema versions {first.get('schema_version')} "
                f"({names[0]}) and {version} ({name})."
            )
        differing = sorted(
            key
            for key in set(configs[0]) | set(config)
            if key not in MERGE_IGNORED_CONFIG and configs[0].get(key) != config.get(key)
        )
        if differing:
            details = "; ".join(
                f"{key}: {configs[0].get(key)!r} vs {config.get(key)!r}" for key in differing
            )
            raise ValueError(
                f"Cannot merge {names[0]} and {name}: their settings differ ({details})."
            )
        data_a = {k: v for k, v in first["data"].items() if k != "per_seed"}
        data_b = {k: v for k, v in results["data"].items() if k != "per_seed"}
        if data_a != data_b:
            raise ValueError(f"Cannot merge {names[0]} and {name}: their data differ.")

    per_seed, methods, runs, seen = {}, {}, [], {}
    for name, results in zip(names, results_list):
        for seed, description in results["data"]["per_seed"].items():
            if seed in per_seed and per_seed[seed] != description:
                raise ValueError(
                    f"Cannot merge: seed {seed} has different data in {name} than before "
                    "(another split or noise)."
                )
            per_seed[seed] = description
        for method in results["methods"]:
            methods.setdefault(method["name"], method)
        for run in results["runs"]:
            key = (run["method"], run["seed"])
            if key in seen:
                raise ValueError(
                    f"Cannot merge: method {run['method']!r}, seed {run['seed']} is in "
                    f"both {seen[key]} and {name}."
                )
            seen[key] = name
            runs.append(run)

    registry = list(methods_lib.METHODS)
    order = sorted(
        methods,
        key=lambda n: (
            registry.index(n) if n in registry else len(registry),
            list(methods).index(n),
        ),
    )
    seeds = sorted({run["seed"] for run in runs} | {int(s) for s in per_seed})
    merged = {
        "schema_version": first.get("schema_version"),
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "config": {
            **configs[0],
            "methods": order,
            "seeds": seeds,
            "command": None,
        },
        "environment": first.get("environment", {}),
        "data": {**first["data"], "per_seed": {str(s): per_seed.get(str(s), {}) for s in seeds}},
        "methods": [methods[n] for n in order],
        "runs": sorted(runs, key=lambda r: (seeds.index(r["seed"]), order.index(r["method"]))),
        "sources": [
            {
                "source": name,
                "command": results["config"].get("command"),
                "created": results.get("created"),
                "environment": results.get("environment"),
            }
            for name, results in zip(names, results_list)
        ],
    }
    merged["summary"] = summarize_results(merged)
    return merged
