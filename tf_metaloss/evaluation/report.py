"""Writes comparison results: the Markdown table and report, JSON, and the figures.

Example:

>>> results = {"summary": {"ce": {"val_accuracy": {"mean": 0.5, "std": 0.1, "n": 3}}},
...            "methods": [{"name": "ce", "label": "cross-entropy", "group": "baseline"}]}
>>> print(tml.evaluation.report.format_table(results))
| method | val acc % |
|---|---:|
| cross-entropy | 50.00 ± 10.00 |
"""

import json
import math
import os

import numpy as np

from tf_metaloss import plotting
from tf_metaloss.evaluation import figures as figures_lib

TABLE_COLUMNS = (
    ("val_accuracy", "val acc %", 100.0, 2),
    ("val_balanced_accuracy", "balanced acc %", 100.0, 2),
    ("val_rare3_accuracy", "3 rarest classes acc %", 100.0, 2),
    ("delta_vs_ce", "vs CE (pts)", 100.0, 2),
    ("val_macro_f1", "macro-F1 %", 100.0, 2),
    ("train_accuracy", "train acc % (clean)", 100.0, 1),
    ("generalization_gap", "gap (pts)", 100.0, 1),
    ("convergence_epoch", "epochs to 90% of own final", 1.0, 1),
    ("epochs_to_common_target", "epochs to 90% of best", 1.0, 1),
    ("grad_norm_variance", "grad-norm var", 1.0, None),
    ("grad_norm_cv", "grad-norm CV", 1.0, 2),
    ("memorized", "memorized %", 100.0, 1),
    ("weight_auc", "weight AUC clean vs noisy", 1.0, 3),
    ("transition_distance", "T distance (TV)", 1.0, 3),
    ("wall_time_s", "time (s)", 1.0, 1),
)
TRAIN_DATA = {
    "train": "noisy training part; meta-learned: also the meta set less the check data, "
    "with the loss at its start",
    "train+meta": "noisy training part + meta set",
}
STAGES = {
    "finetune": "{epochs} epochs on train+meta at lr {lr0:g}, then {epochs1} epochs on the "
    "meta set only at lr {lr1:g}",
    "glc": "stage 1: CE on the noisy part only; C from its predictions on the meta set; "
    "stage 2: forward-corrected CE on the noisy part, CE on the meta set",
    "forward": "stage 1: CE on train+meta; T from anchor points; stage 2: forward-corrected "
    "CE on every sample",
    "meta": "phi meta-learned on the meta set",
    "retrain": "stage 1: phi meta-learned on the meta set (weights on the training part, "
    "no guard); stage 2: a fresh network on train+meta with phi frozen at its mean over "
    "stage 1's second half",
    "frozen": "phi frozen at its start",
    "schedule": "phi moved by the hand schedule",
}


def _cell(stat, scale, digits):
    if stat is None:
        return "-"
    if stat["n"] == 0:
        return "never" if stat.get("of") else "-"
    mean, std = stat["mean"] * scale, stat["std"] * scale
    if digits is None:
        text = f"{mean:.3g} ± {std:.2g}"
    else:
        text = f"{mean:.{digits}f} ± {std:.{digits}f}"
    if stat.get("of", stat["n"]) > stat["n"]:
        text += f" ({stat['n']}/{stat['of']} runs)"
    return text


def format_table(results):
    """The summary as a Markdown table (mean ± sample std over seeds)."""
    summary = results["summary"]
    columns = [
        c
        for c in TABLE_COLUMNS
        if any(c[0] in summary.get(m["name"], {}) for m in results["methods"])
    ]
    lines = [
        "| method | " + " | ".join(c[1] for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for method in results["methods"]:
        if method["name"] not in summary:
            continue
        entry = summary[method["name"]]
        cells = [_cell(entry.get(key), scale, digits) for key, _, scale, digits in columns]
        lines.append(f"| {method['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_methods(results):
    """A Markdown table of what each method trains on (and its stages)."""
    config = results["config"]
    lines = ["| method | trains on | how |", "|---|---|---|"]
    for method in results["methods"]:
        train_data = method.get("train_data")
        data = TRAIN_DATA.get(train_data, train_data or "not recorded")
        if method.get("clean_labels"):
            data += " (clean labels)"
        how = STAGES.get(method.get("training"), "")
        if method.get("training") == "finetune":
            how = how.format(
                epochs=config.get("epochs"),
                lr0=config.get("learning_rate", float("nan")),
                epochs1=config.get("finetune_epochs"),
                lr1=config.get("finetune_learning_rate", float("nan")),
            )
        lines.append(f"| {method['label']} | {data} | {how or '-'} |")
    return "\n".join(lines)


def format_paired(results, metric="val_accuracy"):
    """Paired per-seed differences of validation accuracy against each baseline.

    One row per method that is not a baseline, one column per baseline; each
    cell is the mean ± sample std over seeds of `method - baseline` in points,
    followed by the per-seed differences. Returns `""` when there is nothing
    to pair.
    """
    summary = results["summary"]
    baselines = [
        m for m in results["methods"] if m.get("group") == "baseline" and m["name"] in summary
    ]
    rows = [
        m
        for m in results["methods"]
        if m.get("group") != "baseline" and summary.get(m["name"], {}).get("paired")
    ]
    if not baselines or not rows:
        return ""
    lines = [
        "| method | " + " | ".join(f"vs {b['label']}" for b in baselines) + " |",
        "|---|" + "---:|" * len(baselines),
    ]
    for method in rows:
        paired = summary[method["name"]]["paired"]
        cells = []
        for baseline in baselines:
            stat = paired.get(baseline["name"])
            if not stat or not stat["n"]:
                cells.append("-")
                continue
            seeds = ", ".join(f"{100 * v:+.1f}" for v in stat["per_seed"].values())
            cells.append(f"{100 * stat['mean']:+.2f} ± {100 * stat['std']:.2f} ({seeds})")
        lines.append(f"| {method['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _optimizer_text(config):
    if config.get("optimizer") == "adam":
        return f"Adam lr {config['learning_rate']}"
    return f"SGD lr {config['learning_rate']} momentum {config['momentum']}"


def format_report(results):
    """`results.md`: the settings, what each method trains on, and the tables."""
    config, data = results["config"], results["data"]
    seeds = config["seeds"]
    per_seed = data["per_seed"].get(str(seeds[0]), {})
    lines = [f"# Loss comparison: {data['name']}", ""]
    if config.get("command"):
        lines += ["Command:", "", "```", config["command"], "```", ""]
    if results.get("sources"):
        lines += [f"Merged from {len(results['sources'])} result files:", ""]
        for source in results["sources"]:
            lines.append(f"- {source['source']}: `{source.get('command') or '-'}`")
        lines.append("")
    if config.get("preset"):
        lines += [f"Preset: `{config['preset']}` (every setting below is the one used).", ""]
    lines += [
        f"- Noise: {config['noise_rate']:.0%} {config['noise_kind']} on the "
        f"training labels (actual on the training part, seed {seeds[0]}: "
        f"{per_seed.get('train_noise_rate', float('nan')):.1%}); the noise "
        "transition matrix, targeted and realised per seed, is in `results.json` "
        "(`data.noise_transition`, `data.per_seed.<seed>.noise_transition`).",
        f"- Data: {per_seed.get('num_train')} training samples, "
        f"{per_seed.get('num_meta')} meta samples ({config['meta_labels']} "
        "labels, held out of the training split), evaluated on "
        f"{per_seed.get('num_eval')} samples of {data['eval_description']}. "
        "The meta-learned methods train on the training samples and, with their "
        "loss at its start, on the meta set less the guard's check data (20%); "
        "phi is learned from the meta objective on the meta set; every other "
        "method trains on the training samples plus the meta set (table below)."
        + (
            f" Training subset: {config['train_subset']} samples."
            if config.get("train_subset")
            else ""
        ),
        f"- Model: {config['model']} (hidden {config['hidden_units']}"
        + (
            f", vocabulary {data['vocabulary_size']} tokens, sequences of "
            f"{config.get('sequence_length')} tokens"
            if data.get("vocabulary_size")
            else ""
        )
        + f"), {_optimizer_text(config)}, batch "
        f"{config['batch_size']}, {config['epochs']} epochs; seeds {seeds}.",
        f"- Meta-learning: Adam lr {config['meta_learning_rate']}, meta_every "
        f"{config['meta_every']}, meta batch "
        f"{config.get('meta_batch_size') or config['batch_size']}, objective "
        f"{config.get('meta_objective', 'crossentropy')} on the meta set, meta-gradient "
        f"{_format_meta_method(config.get('meta_method', 'second_order'))}, unroll "
        f"{config['unroll_steps']}"
        + (
            f" (lookahead lr {config['lookahead_learning_rate']})"
            if config.get("lookahead_learning_rate")
            else ""
        )
        + ", clipnorm "
        f"{config['meta_clipnorm']}, regularization {config['regularization']}; "
        f"hand schedule to {config['schedule_final']}.",
        "- Cells: mean ± sample std over seeds; accuracy after the last epoch "
        "(no early stopping). `vs CE`: paired per-seed difference. `gap`: train "
        "minus val accuracy, both on clean labels. `epochs to 90%`: first epoch "
        "reaching 90% of the final val accuracy. `grad-norm var`/`CV`: "
        "population variance / coefficient of variation over all steps of the "
        "global L2 norm of the weight gradient. `memorized`: share of noisy "
        "training samples predicted as their wrong label. `weight AUC`: for a "
        "loss with per-sample weights, the probability that a clean training "
        "sample weighs more than a corrupted one (0.5 = chance). `T distance`: "
        "for a loss with a noise transition matrix, the mean total-variation "
        "distance of its rows to the realised noise. Time: wall time of every "
        "training stage (a two-stage method counts both, and the estimate between "
        "them) including per-epoch evaluation, on a shared 2-core CPU.",
        "",
        format_methods(results),
        "",
        format_table(results),
        "",
    ]
    paired = format_paired(results)
    if paired:
        lines += [
            "Paired differences of val accuracy (points; mean ± sample std over seeds, "
            "then each seed's difference):",
            "",
            paired,
            "",
        ]
    return "\n".join(lines)


def _format_meta_method(meta_method):
    """`"neumann"`, or `Neumann(terms=2, ...)` for a recorded estimator config."""
    if isinstance(meta_method, dict):
        name = str(meta_method.get("class_name", "?")).split(">")[-1]
        settings = ", ".join(f"{k}={v!r}" for k, v in meta_method.get("config", {}).items())
        return f"{name}({settings})"
    return str(meta_method)


def read_results(path):
    """The results dict of a `results.json` file.

    `to_json` writes non-finite numbers as `null`; in the runs' metrics,
    curves and phi histories they are read back as NaN.
    """
    with open(path, encoding="utf-8") as f:
        results = json.load(f)
    for run in results.get("runs", []):
        for key in ("final", "curves", "phi"):
            if key in run:
                run[key] = _nan(run[key])
    return results


def _nan(value):
    if isinstance(value, dict):
        return {k: _nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan(v) for v in value]
    return float("nan") if value is None else value


def to_json(results):
    """`json.dumps` of results: floats to 7 significant digits (float32
    precision), non-finite numbers as `null`."""
    return json.dumps(_finite(results), indent=1, allow_nan=False)


def _finite(value):
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(f"{value:.7g}") if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_results(results, directory, figures=True):
    """Writes `results.json`, `results.md` and the PNG figures; returns their paths.

    The figures need matplotlib (the `eval` extra); `figures=False` writes
    the JSON and Markdown files only.
    """
    if figures:
        plotting.require_matplotlib("Writing the comparison's figures", "or pass figures=False")
    os.makedirs(directory, exist_ok=True)
    paths = {
        "json": os.path.join(directory, "results.json"),
        "markdown": os.path.join(directory, "results.md"),
    }
    with open(paths["json"], "w") as f:
        f.write(to_json(results) + "\n")
    with open(paths["markdown"], "w") as f:
        f.write(format_report(results))
    if figures:
        paths["learning_curves"] = plotting.save_figure(
            figures_lib.learning_curves_figure(results),
            os.path.join(directory, "learning_curves.png"),
        )
        fig = figures_lib.phi_figure(results)
        if fig is not None:
            paths["phi"] = plotting.save_figure(fig, os.path.join(directory, "phi.png"))
    return paths
