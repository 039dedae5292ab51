"""Diagnostics of trained models: loss landscapes and their sharpness.

Example:

    result = tml.diagnostics.loss_landscape(model, (x_val, y_val), directions=2)
    tml.diagnostics.plot_landscape({"learned loss": result}, "landscape.png")
"""

from tf_metaloss.diagnostics.landscape import LandscapeResult
from tf_metaloss.diagnostics.landscape import filter_normalized_direction
from tf_metaloss.diagnostics.landscape import log_landscape_to_tensorboard
from tf_metaloss.diagnostics.landscape import loss_landscape
from tf_metaloss.diagnostics.landscape import plot_landscape

__all__ = [
    "LandscapeResult",
    "filter_normalized_direction",
    "log_landscape_to_tensorboard",
    "loss_landscape",
    "plot_landscape",
]
