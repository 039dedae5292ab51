"""Evaluation helpers: datasets and synthetic label noise."""

from tf_metaloss.evaluation.datasets import Dataset
from tf_metaloss.evaluation.datasets import load_dataset
from tf_metaloss.evaluation.datasets import load_digits
from tf_metaloss.evaluation.datasets import load_npz
from tf_metaloss.evaluation.datasets import load_tfds
from tf_metaloss.evaluation.noise import CIFAR10_TRANSITIONS
from tf_metaloss.evaluation.noise import NoisyLabels
from tf_metaloss.evaluation.noise import inject_label_noise

__all__ = [
    "CIFAR10_TRANSITIONS",
    "Dataset",
    "NoisyLabels",
    "inject_label_noise",
    "load_dataset",
    "load_digits",
    "load_npz",
    "load_tfds",
]
