"""Search for loss formulas: genetic programming over expression trees.

Each candidate formula (a `tml.losses.SymbolicLoss` expression) gets its
constants tuned by the library's meta-gradient, then trains a network for a
proxy run; its fitness is an objective on a clean holdout. Because the fitness
judges a whole training run, the search is free of the short-horizon bias of
the one-step meta-gradient (which favours losses that fit fast).

- `run_search(task, config, log_path, executor)`: the search (`search.py`).
- `make_task(dataset, noise, ...)`: noisy training data, clean meta set and
  holdout from a dataset's training split (`data.py`).
- `write_report(log, directory)`: the best formulas and the fitness curve.
- `executors.get("local", workers=2)` or `executors.get("ray", address="auto")`.

The command line runs it as `tf-metaloss search`.

Example:

>>> digits = tml.evaluation.load_digits()
>>> task = tml.search.make_task(digits, train_subset=300, hidden_units=8, epochs=1,
...                             tune_epochs=0)
>>> log = tml.search.run_search(task, tml.search.SearchConfig(population=4, generations=1))
>>> tml.search.best_candidates(log, 1)[0]["status"]
'ok'
"""

from tf_metaloss.search import executors
from tf_metaloss.search import fitness
from tf_metaloss.search import genetics
from tf_metaloss.search.data import make_task
from tf_metaloss.search.fitness import ProxyTask
from tf_metaloss.search.fitness import evaluate_candidate
from tf_metaloss.search.report import write_report
from tf_metaloss.search.search import SearchConfig
from tf_metaloss.search.search import best_candidates
from tf_metaloss.search.search import load_log
from tf_metaloss.search.search import run_search

__all__ = [
    "ProxyTask",
    "SearchConfig",
    "best_candidates",
    "evaluate_candidate",
    "executors",
    "fitness",
    "genetics",
    "load_log",
    "make_task",
    "run_search",
    "write_report",
]
