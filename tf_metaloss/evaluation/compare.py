"""The comparison pipeline under one name (kept for existing code and docs).

The pipeline lives in small modules of `tml.evaluation`, one job each:
`methods` (the registry), `config` (`CompareConfig`), `splits` (data of one
seed), `models` (the compared networks), `schedules` (the hand schedule),
`runner` (`run_method`, `run_comparison`), `summary` (means, paired
differences), `report` (Markdown and JSON) and `figures` (PNG). This module
re-exports their public names, so `tml.evaluation.compare.run_comparison` and
`tml.evaluation.runner.run_comparison` are the same function.

Example:

>>> tml.evaluation.compare.run_comparison is tml.evaluation.runner.run_comparison
True
"""

from tf_metaloss.evaluation.config import EVAL_SPLITS
from tf_metaloss.evaluation.config import META_LABELS
from tf_metaloss.evaluation.config import CompareConfig
from tf_metaloss.evaluation.figures import learning_curves_figure
from tf_metaloss.evaluation.figures import phi_figure
from tf_metaloss.evaluation.methods import DEFAULT_METHODS
from tf_metaloss.evaluation.methods import GROUPS
from tf_metaloss.evaluation.methods import METHOD_SETS
from tf_metaloss.evaluation.methods import METHODS
from tf_metaloss.evaluation.methods import TRAININGS
from tf_metaloss.evaluation.methods import Method
from tf_metaloss.evaluation.methods import resolve_methods
from tf_metaloss.evaluation.models import MODELS
from tf_metaloss.evaluation.models import build_model
from tf_metaloss.evaluation.report import format_report
from tf_metaloss.evaluation.report import format_table
from tf_metaloss.evaluation.report import to_json
from tf_metaloss.evaluation.report import write_results
from tf_metaloss.evaluation.runner import SCHEMA_VERSION
from tf_metaloss.evaluation.runner import run_comparison
from tf_metaloss.evaluation.runner import run_method
from tf_metaloss.evaluation.schedules import LinearParameterSchedule
from tf_metaloss.evaluation.schedules import schedule_targets
from tf_metaloss.evaluation.splits import Split
from tf_metaloss.evaluation.splits import make_split
from tf_metaloss.evaluation.splits import training_dataset
from tf_metaloss.evaluation.summary import mean_std
from tf_metaloss.evaluation.summary import summarize

__all__ = [
    "DEFAULT_METHODS",
    "EVAL_SPLITS",
    "GROUPS",
    "LinearParameterSchedule",
    "METHODS",
    "METHOD_SETS",
    "META_LABELS",
    "MODELS",
    "Method",
    "SCHEMA_VERSION",
    "Split",
    "TRAININGS",
    "CompareConfig",
    "build_model",
    "format_report",
    "format_table",
    "learning_curves_figure",
    "make_split",
    "mean_std",
    "phi_figure",
    "resolve_methods",
    "run_comparison",
    "run_method",
    "schedule_targets",
    "summarize",
    "to_json",
    "training_dataset",
    "write_results",
]
