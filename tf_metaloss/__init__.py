"""tf_metaloss: Keras losses that learn while the model trains.

Example:

    import keras
    import tf_metaloss as tml

    model = tml.MetaModel(keras.Sequential([keras.layers.Dense(10)]))
    model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True),
                  meta_optimizer="adam")
    model.fit(x, y, meta_split=0.1)
"""

from tf_metaloss import callbacks
from tf_metaloss import diagnostics
from tf_metaloss import evaluation
from tf_metaloss import losses
from tf_metaloss import models
from tf_metaloss import plotting
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
    "models",
    "plotting",
]
