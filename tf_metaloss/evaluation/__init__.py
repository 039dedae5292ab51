"""Evaluation helpers: datasets, synthetic label noise, metrics and the comparison pipeline.

- `datasets`: `load_digits` (needs scikit-learn, the `eval` extra),
  `load_tfds` (needs tensorflow-datasets, the `datasets` extra), `load_npz`,
  `load_sst2` (SST-2 sentences from .jsonl files or TFDS), `load_dataset`,
  and `tokenize` (token ids of text, needs keras-hub, the `nlp` extra).
- `noise`: `inject_label_noise` (symmetric and asymmetric label noise) and
  noise transition matrices.
- `correction`: `ForwardCorrectedLoss` and the Gold Loss Correction and
  anchor-point estimates of the noise transition matrix.
- `metrics`: accuracy, macro-F1, convergence and stability measures, and the
  callbacks that record them during `fit`.
- The comparison pipeline behind `tf-metaloss compare`, one job per module:
  `methods` (the registry of compared methods), `config` (`CompareConfig`),
  `splits` (the data of one seed), `models` (the compared networks),
  `schedules` (the hand schedule), `runner` (`run_comparison`), `summary`
  (means over seeds, paired differences), `report` (Markdown, JSON) and
  `figures` (PNG), `probes` (what a trained loss learned about the noise).
  `compare` re-exports them under one name.
"""

from tf_metaloss.evaluation import compare
from tf_metaloss.evaluation import config
from tf_metaloss.evaluation import correction
from tf_metaloss.evaluation import datasets
from tf_metaloss.evaluation import figures
from tf_metaloss.evaluation import methods
from tf_metaloss.evaluation import metrics
from tf_metaloss.evaluation import models
from tf_metaloss.evaluation import noise
from tf_metaloss.evaluation import probes
from tf_metaloss.evaluation import report
from tf_metaloss.evaluation import runner
from tf_metaloss.evaluation import schedules
from tf_metaloss.evaluation import splits
from tf_metaloss.evaluation import summary
from tf_metaloss.evaluation.config import CompareConfig
from tf_metaloss.evaluation.datasets import Dataset
from tf_metaloss.evaluation.datasets import load_dataset
from tf_metaloss.evaluation.datasets import load_digits
from tf_metaloss.evaluation.datasets import load_npz
from tf_metaloss.evaluation.datasets import load_sst2
from tf_metaloss.evaluation.datasets import load_tfds
from tf_metaloss.evaluation.noise import CIFAR10_TRANSITIONS
from tf_metaloss.evaluation.noise import NoisyLabels
from tf_metaloss.evaluation.noise import inject_label_noise
from tf_metaloss.evaluation.report import write_results
from tf_metaloss.evaluation.runner import run_comparison

__all__ = [
    "CIFAR10_TRANSITIONS",
    "CompareConfig",
    "Dataset",
    "NoisyLabels",
    "compare",
    "config",
    "correction",
    "datasets",
    "figures",
    "inject_label_noise",
    "load_dataset",
    "load_digits",
    "load_npz",
    "load_sst2",
    "load_tfds",
    "methods",
    "metrics",
    "models",
    "noise",
    "probes",
    "report",
    "run_comparison",
    "runner",
    "schedules",
    "splits",
    "summary",
    "write_results",
]
