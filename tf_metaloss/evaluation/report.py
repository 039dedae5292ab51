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
    ("delta_vs_ce", "vs CE (pts)", 100.0, 2),
    ("val_macro_f1", "macro-F1 %", 100.0, 2),
    ("train_accuracy", "train acc % (clean)", 100.0, 1),
    ("generalization_gap", "gap (pts)", 100.0, 1),
    ("convergence_epoch", "epochs to 90% of own final", 1.0, 1),
    ("epochs_to_common_target", "epochs to 90% of best", 1.0, 1),
    ("grad_norm_variance", "grad-norm var", 1.0, None),
    ("grad_norm_cv", "grad-norm CV", 1.0, 2),
    ("memorized", "memorized %", 100.0, 1),
    ("wall_time_s", "time (s)", 1.0, 1),
)


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


def format_report(results):
    """`results.md`: the settings and the table."""
    config, data = results["config"], results["data"]
    seeds = config["seeds"]
    per_seed = data["per_seed"].get(str(seeds[0]), {})
    lines = [f"# Loss comparison: {data['name']}", ""]
    if config.get("command"):
        lines += ["Command:", "", "```", config["command"], "```", ""]
    lines += [
        f"- Noise: {config['noise_rate']:.0%} {config['noise_kind']} on the "
        f"training labels (actual on the training part, seed {seeds[0]}: "
        f"{per_seed.get('train_noise_rate', float('nan')):.1%}).",
        f"- Data: {per_seed.get('num_train')} training samples, "
        f"{per_seed.get('num_meta')} meta samples ({config['meta_labels']} "
        f"labels, held out of the training split, used only by the meta-learned "
        f"methods), evaluated on {per_seed.get('num_eval')} samples of "
        f"{data['eval_description']}."
        + (
            f" Training subset: {config['train_subset']} samples."
            if config.get("train_subset")
            else ""
        ),
        f"- Model: {config['model']} (hidden {config['hidden_units']}), SGD lr "
        f"{config['learning_rate']} momentum {config['momentum']}, batch "
        f"{config['batch_size']}, {config['epochs']} epochs; seeds {seeds}.",
        f"- Meta-learning: Adam lr {config['meta_learning_rate']}, meta_every "
        f"{config['meta_every']}, meta batch "
        f"{config.get('meta_batch_size') or config['batch_size']}, objective "
        f"{config.get('meta_objective', 'crossentropy')} on the meta set, unroll "
        f"{config['unroll_steps']}, clipnorm "
        f"{config['meta_clipnorm']}, regularization {config['regularization']}; "
        f"hand schedule to {config['schedule_final']}.",
        "- Cells: mean ± sample std over seeds; accuracy after the last epoch "
        "(no early stopping). `vs CE`: paired per-seed difference. `gap`: train "
        "minus val accuracy, both on clean labels. `epochs to 90%`: first epoch "
        "reaching 90% of the final val accuracy. `grad-norm var`/`CV`: "
        "population variance / coefficient of variation over all steps of the "
        "global L2 norm of the weight gradient. `memorized`: share of noisy "
        "training samples predicted as their wrong label. Time: wall time of "
        "`fit` including per-epoch evaluation, on a shared 2-core CPU.",
        "",
        format_table(results),
        "",
    ]
    return "\n".join(lines)


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
