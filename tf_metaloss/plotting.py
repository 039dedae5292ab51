"""Figures shared by the callbacks, the diagnostics and the command line.

Everything draws on a `matplotlib.figure.Figure` attached to an Agg canvas, so
nothing here touches `pyplot`'s global state or the user's chosen backend, and
it works on machines without a display. Drawing needs matplotlib (the `eval`
extra: `pip install "tf_metaloss[eval]"`); importing this module does not.

Example:

>>> p = np.linspace(0.05, 0.95, 19)
>>> fig = tml.plotting.curves_figure(
...     p, {"cross-entropy": -np.log(p), "MAE": 2 * (1 - p)}, xlabel="p(true class)")
>>> tml.plotting.figure_to_png(fig)[:8]
b'\\x89PNG\\r\\n\\x1a\\n'
>>> tml.plotting.save_figure(fig, "losses.png")
'losses.png'
"""

import io

import numpy as np

from tf_metaloss._optional import import_optional

__all__ = [
    "curves_figure",
    "figure_to_png",
    "landscape_figure",
    "new_figure",
    "require_matplotlib",
    "save_figure",
    "trajectory_figure",
]


def require_matplotlib(feature="Drawing figures", alternative=None):
    """Imports matplotlib, or raises an `ImportError` naming the extra to install."""
    return import_optional("matplotlib", feature, alternative)


def new_figure(ncols=1, nrows=1, width=5.0, height=3.6):
    """A figure with an Agg canvas and a grid of axes; returns `(fig, axes)`."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def figure_to_png(fig):
    """Renders `fig` to PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def save_figure(fig, path):
    """Writes `fig` to `path` (PNG unless the suffix says otherwise)."""
    fig.savefig(str(path))
    return str(path)


def curves_figure(x, curves, xlabel, ylabel="loss", title=None, styles=None):
    """Line plot of several curves over the same `x`.

    Args:
        x: 1-D array of abscissae.
        curves: dict `label -> 1-D array` (same length as `x`), drawn in order.
        xlabel, ylabel, title: axis labels and title.
        styles: optional dict `label -> matplotlib line style` (e.g. `"--"`).
    """
    fig, axes = new_figure()
    ax = axes[0, 0]
    styles = styles or {}
    for label, y in curves.items():
        ax.plot(np.asarray(x), np.asarray(y), styles.get(label, "-"), label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def trajectory_figure(steps, series, meta_objective=None, title=None):
    """Loss parameters (and optionally the meta objective) over training steps.

    Args:
        steps: 1-D array of step numbers.
        series: dict `label -> 1-D array` of one value per step.
        meta_objective: optional 1-D array, drawn in a second panel.
        title: figure title.
    """
    nrows = 2 if meta_objective is not None else 1
    fig, axes = new_figure(nrows=nrows, width=7.0, height=3.4)
    ax = axes[0, 0]
    for label, values in series.items():
        ax.plot(steps, values, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("phi")
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize="small", loc="best")
    if title:
        ax.set_title(title)
    if meta_objective is not None:
        ax = axes[1, 0]
        ax.plot(steps, meta_objective, color="black", linewidth=0.8)
        ax.set_xlabel("step")
        ax.set_ylabel("meta objective")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def landscape_figure(results, title=None):
    """Loss landscapes: one line per result (1-D) or one contour panel each (2-D).

    Args:
        results: dict `label -> LandscapeResult` (from
            `tf_metaloss.diagnostics.loss_landscape`); all 1-D or all 2-D.
        title: figure title.
    """
    dims = {r.directions for r in results.values()}
    if len(dims) != 1:
        raise ValueError(
            "Invalid value for argument `results`. Expected landscapes that are "
            f"all 1-D or all 2-D. Received directions={sorted(dims)}"
        )
    if dims == {1}:
        fig, axes = new_figure(width=6.0, height=4.0)
        ax = axes[0, 0]
        for label, result in results.items():
            ax.plot(result.alphas, result.losses, marker=".", label=label)
        ax.set_xlabel("alpha (filter-normalised direction)")
        ax.set_ylabel(_loss_label(results))
        ax.grid(alpha=0.3)
        ax.legend()
    else:
        fig, axes = new_figure(ncols=len(results), width=4.8, height=4.2)
        for ax, (label, result) in zip(axes[0], results.items()):
            grid_a, grid_b = np.meshgrid(result.alphas, result.betas, indexing="ij")
            contour = ax.contourf(grid_a, grid_b, result.losses, levels=20, cmap="viridis")
            ax.contour(grid_a, grid_b, result.losses, levels=20, colors="white", linewidths=0.3)
            ax.plot([0.0], [0.0], "r+", markersize=10)
            fig.colorbar(contour, ax=ax)
            ax.set_title(label)
            ax.set_xlabel("alpha")
            ax.set_ylabel("beta")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _loss_label(results):
    names = {r.loss_name for r in results.values()}
    return f"loss ({names.pop()})" if len(names) == 1 else "loss"
