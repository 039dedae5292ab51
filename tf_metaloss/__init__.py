"""tf_metaloss: Keras losses that learn while the model trains.

Example:

>>> import keras
>>> import numpy as np
>>> import tf_metaloss as tml
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(256, 8)).astype("float32")
>>> y = (x[:, 0] > 0).astype("int32")
>>> model = tml.MetaModel(keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)]))
>>> model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True), meta_optimizer="adam")
>>> history = model.fit(x, y, meta_split=0.1, epochs=2, verbose=0)
>>> sorted(history.history)  # the meta objective and phi are logged with the loss
['loss', 'meta_grad_norm', 'meta_objective', 'phi/q', 'skipped_updates']
"""

from tf_metaloss import callbacks
from tf_metaloss import diagnostics
from tf_metaloss import evaluation
from tf_metaloss import losses
from tf_metaloss import meta
from tf_metaloss import models
from tf_metaloss import plotting
from tf_metaloss import testing
from tf_metaloss import text
from tf_metaloss.losses import BlendLoss
from tf_metaloss.losses import LearnableLoss
from tf_metaloss.losses import MetaLoss
from tf_metaloss.losses import NeuralLoss
from tf_metaloss.losses import PolynomialLoss
from tf_metaloss.losses import SampleWeightedLoss
from tf_metaloss.models import MetaModel

__version__ = "0.2.0"

__all__ = [
    "BlendLoss",
    "LearnableLoss",
    "MetaLoss",
    "MetaModel",
    "NeuralLoss",
    "PolynomialLoss",
    "SampleWeightedLoss",
    "callbacks",
    "diagnostics",
    "evaluation",
    "losses",
    "meta",
    "models",
    "plotting",
    "testing",
    "text",
]
