"""Evaluation helpers: datasets, synthetic label noise, metrics and comparisons.

- `datasets`: `load_digits` (needs scikit-learn, the `eval` extra),
  `load_tfds` (needs tensorflow-datasets, the `datasets` extra), `load_npz`,
  `load_dataset`.
- `noise`: `inject_label_noise` (symmetric and asymmetric label noise).
- `metrics`: accuracy, macro-F1, convergence and stability measures, and the
  callbacks that record them during `fit`.
- `compare`: `run_comparison`, the engine of `tf-metaloss compare`.
"""

from tf_metaloss.evaluation import compare
from tf_metaloss.evaluation import datasets
from tf_metaloss.evaluation import metrics
from tf_metaloss.evaluation import noise
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
    "compare",
    "datasets",
    "inject_label_noise",
    "load_dataset",
    "load_digits",
    "load_npz",
    "load_tfds",
    "metrics",
    "noise",
]
