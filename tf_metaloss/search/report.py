"""The report of a search: the best formulas and the fitness per generation.

Example:

>>> from tf_metaloss.search import report
>>> log = {"generations": [{"generation": 0, "seconds": 1.0, "evaluated": 1, "candidates": [
...     {"key": "neg(log_p_true)", "cached": False, "expression": ["neg", "log_p_true"],
...      "record": {"status": "ok", "fitness": 0.5, "accuracy": 0.8,
...                 "tuned": ["neg", "log_p_true"], "formula": "-log_p_true"}}]}]}
>>> print(report.format_report(log).splitlines()[0])
# Loss search report
"""

import os

import numpy as np

from tf_metaloss import plotting
from tf_metaloss.losses import expressions
from tf_metaloss.search import search


def simplified(record):
    """The tuned formula of a record, simplified by sympy when installed."""
    try:
        return expressions.Expression(record["tuned"]).simplified_formula()
    except Exception:  # noqa: BLE001 -- sympy can fail on odd trees; keep the plain one.
        return record["formula"]


def format_report(log, count=5):
    """The report as Markdown text."""
    generations = log["generations"]
    lines = ["# Loss search report", ""]
    task = log.get("task")
    if task:
        lines += [
            f"Proxy run: {task['n_train']} noisy training samples, {task['epochs']} epochs "
            f"({task['tune_epochs']} of constant tuning on {task['n_meta']} clean meta "
            f"samples); fitness = {task['objective']} on {task['n_holdout']} clean holdout "
            "samples (lower is better).",
            "",
        ]
    scored = sum(g["evaluated"] for g in generations)
    rejected = [
        c["record"]
        for g in generations
        for c in g["candidates"]
        if not c["cached"] and c["record"]["status"] != "ok"
    ]
    seconds = [g["seconds"] for g in generations]
    lines += [
        f"{len(generations)} generations, {scored} candidates trained or screened "
        f"({len(rejected)} rejected), {np.mean(seconds):.1f} s per generation "
        f"(total {np.sum(seconds):.0f} s).",
        "",
        "| rank | formula (tuned constants) | fitness | holdout accuracy | generation |",
        "|---|---|---|---|---|",
    ]
    for rank, record in enumerate(search.best_candidates(log, count), start=1):
        lines.append(
            f"| {rank} | `{simplified(record)}` | {record['fitness']:.4f} | "
            f"{record['accuracy']:.3f} | {record['generation']} |"
        )
    known = {expressions.Expression(t).canonical(): n for n, t in expressions.KNOWN.items()}
    first = generations[0]["candidates"] if generations else []
    seeds = [c for c in first if c["key"] in known and c["record"]["status"] == "ok"]
    if seeds:
        lines += ["", "The known losses the search started from:", ""]
        for c in seeds:
            r = c["record"]
            lines.append(
                f"- {known[c['key']]}: fitness {r['fitness']:.4f}, holdout accuracy "
                f"{r['accuracy']:.3f} (tuned: `{r['formula']}`)"
            )
    if rejected:
        lines += ["", "Rejected candidates (first 5):", ""]
        for r in rejected[:5]:
            lines.append(
                f"- `{expressions.Expression(r['expression']).to_string()}`: {r['reason']}"
            )
    curves = search.fitness_curves(log)
    lines += [
        "",
        "| generation | best so far | generation best | median | seconds |",
        "|---|---|---|---|---|",
    ]
    for i, g in enumerate(generations):
        row = [curves[k][i] for k in ("best so far", "generation best", "generation median")]
        cells = " | ".join("-" if v is None else f"{v:.4f}" for v in row)
        lines.append(f"| {g['generation']} | {cells} | {g['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def fitness_figure(log):
    """The fitness per generation (best so far, generation best, median)."""
    curves = search.fitness_curves(log)
    x = [g["generation"] for g in log["generations"]]
    arrays = {
        k: np.array([np.nan if v is None else v for v in c], float) for k, c in curves.items()
    }
    fig = plotting.curves_figure(
        x,
        arrays,
        xlabel="generation",
        ylabel="fitness (holdout objective, lower is better)",
        title="Loss search",
        styles={"generation median": ":", "generation best": "--"},
    )
    from matplotlib.ticker import MaxNLocator

    fig.axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def write_report(log, directory, count=5):
    """Writes `report.md` and `fitness.png` to `directory`; returns their paths."""
    os.makedirs(directory, exist_ok=True)
    markdown = os.path.join(directory, "report.md")
    with open(markdown, "w") as file:
        file.write(format_report(log, count))
    figure = plotting.save_figure(fitness_figure(log), os.path.join(directory, "fitness.png"))
    return {"report": markdown, "figure": figure}
