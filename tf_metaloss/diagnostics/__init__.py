"""Diagnostics of trained models: loss landscapes and their sharpness.

Example:

>>> x = np.random.default_rng(0).normal(size=(128, 8)).astype("float32")
>>> y = (x[:, 0] > 0).astype("int32")
>>> model = tml.MetaModel(keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)]))
>>> model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True))
>>> history = model.fit(x, y, meta_split=0.1, epochs=2, verbose=0)
>>> result = tml.diagnostics.loss_landscape(model, (x, y), directions=2, points=5)
>>> result.losses.shape, result.loss_name  # the meta objective, by default
((5, 5), 'mae_classification')
>>> fig = tml.diagnostics.plot_landscape({"learned loss": result}, "landscape.png")
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
