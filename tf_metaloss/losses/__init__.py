"""Learnable losses: Keras `Loss` subclasses with trainable parameters phi."""

from tf_metaloss.losses import expressions
from tf_metaloss.losses import functional
from tf_metaloss.losses.base import ClipConstraint
from tf_metaloss.losses.base import LearnableLoss
from tf_metaloss.losses.blend import BlendLoss
from tf_metaloss.losses.class_adjusted import ClassAdjustedLoss
from tf_metaloss.losses.fixed import FixedLoss
from tf_metaloss.losses.generalized_ce import GeneralizedCELoss
from tf_metaloss.losses.meta_loss import MetaLoss
from tf_metaloss.losses.neural import NeuralLoss
from tf_metaloss.losses.noise_corrected import NoiseCorrectedLoss
from tf_metaloss.losses.polynomial import PolynomialLoss
from tf_metaloss.losses.sample_weighted import SampleWeightedLoss
from tf_metaloss.losses.symbolic import FormulaLoss
from tf_metaloss.losses.symbolic import SymbolicLoss

__all__ = [
    "BlendLoss",
    "ClassAdjustedLoss",
    "ClipConstraint",
    "FixedLoss",
    "FormulaLoss",
    "GeneralizedCELoss",
    "LearnableLoss",
    "MetaLoss",
    "NeuralLoss",
    "NoiseCorrectedLoss",
    "PolynomialLoss",
    "SampleWeightedLoss",
    "SymbolicLoss",
    "expressions",
    "functional",
]
