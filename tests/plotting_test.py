"""Tests of the shared figures in `tf_metaloss.plotting`."""

import io
import pathlib

import matplotlib
import numpy as np
import pytest
from matplotlib import image as mpl_image

from tf_metaloss import plotting
from tf_metaloss.diagnostics import LandscapeResult


def _png_shape(png):
    return mpl_image.imread(io.BytesIO(png), format="png").shape


def test_figures_render_without_touching_pyplot():
    backend = matplotlib.get_backend()
    x = np.linspace(0, 1, 5)
    fig = plotting.curves_figure(x, {"a": x, "b": x**2}, xlabel="p", title="t", styles={"a": "--"})
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["a", "b"]
    assert ax.get_lines()[0].get_linestyle() == "--"
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("p", "loss", "t")
    png = plotting.figure_to_png(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert _png_shape(png) == (360, 500, 4)  # 5 x 3.6 inches at 100 dpi
    assert matplotlib.get_backend() == backend


def test_trajectory_figure_panels(tmp_path):
    steps = np.arange(4)
    fig = plotting.trajectory_figure(steps, {"w/ce": steps * 0.1}, meta_objective=steps[::-1])
    assert len(fig.axes) == 2
    np.testing.assert_allclose(fig.axes[1].get_lines()[0].get_ydata(), [3, 2, 1, 0])
    assert len(plotting.trajectory_figure(steps, {"w": steps}).axes) == 1
    path = plotting.save_figure(fig, tmp_path / "t.png")
    assert pathlib.Path(path).read_bytes()[:4] == b"\x89PNG"


def test_landscape_figure_rejects_mixed_dimensions():
    line = LandscapeResult(np.linspace(-1, 1, 3), None, np.ones(3), 1.0, 1, 1.0, "mse", {})
    plane = LandscapeResult(
        np.linspace(-1, 1, 3), np.linspace(-1, 1, 3), np.ones((3, 3)), 1.0, 2, 1.0, "mse", {}
    )
    fig = plotting.landscape_figure({"a": line})
    assert fig.axes[0].get_ylabel() == "loss (mse)"
    with pytest.raises(ValueError, match="all 1-D or all 2-D"):
        plotting.landscape_figure({"a": line, "b": plane})
