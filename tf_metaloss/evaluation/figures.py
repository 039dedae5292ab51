"""The comparison's figures: learning curves and phi over training (PNG, matplotlib).

matplotlib (the `eval` extra) is imported when a figure is drawn.
"""

import numpy as np

from tf_metaloss import plotting
from tf_metaloss._optional import import_optional

LINE_STYLES = {"baseline": "--", "learned": "-", "ablation": ":", "oracle": "-."}


def _averaged(runs, method, key, source="curves"):
    series = [r[source][key] for r in runs if r["method"] == method and key in r[source]]
    if not series:
        return None, None
    length = min(len(s) for s in series)
    stacked = np.asarray([s[:length] for s in series], np.float64)
    return stacked.mean(axis=0), stacked.std(axis=0)


def _styles(methods):
    palette = _palette(len(methods))
    return {m["name"]: (palette[i], LINE_STYLES[m["group"]]) for i, m in enumerate(methods)}


def _palette(n):
    """`n` distinct colours: tab10, then the light half of tab20."""
    colormaps = plotting.require_matplotlib().colormaps

    tab10, tab20 = colormaps["tab10"], colormaps["tab20"]
    colors = [tab10(i) for i in range(10)] + [tab20(2 * i + 1) for i in range(10)]
    return [colors[i % len(colors)] for i in range(n)]


def _integer_ticks(axis):
    ticker = import_optional("matplotlib.ticker", "Drawing figures")
    axis.set_major_locator(ticker.MaxNLocator(integer=True))


def learning_curves_figure(results):
    """Mean (over seeds) clean val and train accuracy per epoch, one line per method."""
    fig, axes = plotting.new_figure(ncols=2, width=5.6, height=4.2)
    styles = _styles(results["methods"])
    for ax, key, title in zip(
        axes[0],
        ("val_accuracy", "train_accuracy"),
        ("validation accuracy (clean labels)", "training accuracy (clean labels)"),
    ):
        for m in results["methods"]:
            mean, std = _averaged(results["runs"], m["name"], key)
            if mean is None:
                continue
            epochs = np.arange(1, len(mean) + 1)
            color, line = styles[m["name"]]
            ax.plot(epochs, mean, line, color=color, label=m["label"])
            ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.12)
        ax.set_xlabel("epoch")
        _integer_ticks(ax.xaxis)
        ax.set_ylabel("accuracy")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 1].get_legend_handles_labels()
    fig.set_figwidth(fig.get_figwidth() + 2.6)
    fig.suptitle(_figure_title(results) + " (mean ± std over seeds)")
    fig.tight_layout(rect=(0, 0, 1 - 2.6 / fig.get_figwidth(), 1))
    fig.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
    return fig


def phi_figure(results):
    """Loss parameters over training (mean over seeds), one panel per method.

    Blends show their effective (normalised) mixture weights; other families
    their coefficients or the norms of their network's weights. Returns
    `None` when no method has parameters.
    """
    panels = []
    for m in results["methods"]:
        runs = [r for r in results["runs"] if r["method"] == m["name"] and r["phi"]]
        if runs:
            keys = list(runs[0]["phi"])
            mix = [k for k in keys if k.startswith("mix/")]
            panels.append((m, mix or keys))
    if not panels:
        return None
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plotting.new_figure(ncols=ncols, nrows=nrows, width=4.6, height=3.4)
    # One colour per parameter name across all panels.
    names = list(dict.fromkeys(k.split("/", 1)[1] for _, keys in panels for k in keys))
    colors = dict(zip(names, _palette(len(names))))
    for i, (m, keys) in enumerate(panels):
        ax = axes[i // ncols, i % ncols]
        for key in keys:
            mean, _ = _averaged(results["runs"], m["name"], key, source="phi")
            label = key.split("/", 1)[1]
            ax.plot(np.arange(len(mean)), mean, label=label, color=colors[label])
        ax.set_title(m["label"], fontsize=9)
        ax.set_xlabel("epoch (0 = start)")
        _integer_ticks(ax.xaxis)
        ax.set_ylabel("mixture weight" if keys[0].startswith("mix/") else "value")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for j in range(len(panels), nrows * ncols):
        axes[j // ncols, j % ncols].set_visible(False)
    fig.suptitle(_figure_title(results))
    fig.tight_layout()
    return fig


def _figure_title(results):
    c = results["config"]
    return (
        f"{results['data']['name']}: {c['noise_rate']:.0%} {c['noise_kind']} "
        f"noise, {len(c['seeds'])} seed{'s' if len(c['seeds']) > 1 else ''}"
    )
