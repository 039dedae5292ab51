"""Where a search's candidates train: this process, local workers, or Ray.

An executor is a context manager with `evaluate(trees) -> records`, the
records of `fitness.evaluate_candidate` in the order of `trees`. The task (the
data) is sent to each worker once, when the executor starts.

- `SerialExecutor`: one candidate after the other, in this process.
- `ProcessExecutor(workers)`: `concurrent.futures` worker processes on this
  machine (started with "spawn", each with one TensorFlow thread per op, so
  `workers` candidates train at once on as many cores).
- `RayExecutor(address, workers)`: Ray tasks on a Ray cluster (`pip install
  "tf_metaloss[search]"`; `address="auto"` joins a running cluster, `None`
  starts a local one).

Example:

>>> from tf_metaloss.search import executors
>>> executors.get("local", workers=1)
SerialExecutor()
"""

import concurrent.futures
import multiprocessing
import os

from tf_metaloss import validation
from tf_metaloss._optional import import_optional
from tf_metaloss.search import fitness

EXECUTORS = ("local", "ray")

_TASK = None


def _start_worker(task, threads=1):
    """Runs once in each worker process: keeps the task, limits threads."""
    global _TASK
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already ran something in this process.
        pass
    import tf_metaloss  # noqa: F401  (registers the library's classes)

    _TASK = task


def _evaluate_in_worker(tree):
    return fitness.evaluate_candidate(tree, _TASK)


class SerialExecutor:
    """Evaluates candidates one by one in this process."""

    def __init__(self):
        self.task = None

    def __repr__(self):
        return "SerialExecutor()"

    def start(self, task):
        self.task = task
        return self

    def evaluate(self, trees):
        return [fitness.evaluate_candidate(tree, self.task) for tree in trees]

    def close(self):
        self.task = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ProcessExecutor(SerialExecutor):
    """Evaluates candidates in `workers` local processes."""

    def __init__(self, workers=2):
        super().__init__()
        self.workers = validation.check_positive_int("workers", workers)
        self._pool = None

    def __repr__(self):
        return f"ProcessExecutor(workers={self.workers})"

    def start(self, task):
        self.close()
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(task,),
        )
        return self

    def evaluate(self, trees):
        return list(self._pool.map(_evaluate_in_worker, trees))

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class RayExecutor(SerialExecutor):
    """Evaluates candidates as Ray tasks (one CPU each).

    Args:
        address: the Ray cluster (`"auto"`: the running one; `None`: start a
            local one).
        workers: CPUs of a local cluster started here (`None`: all).
    """

    def __init__(self, address="auto", workers=None):
        super().__init__()
        self.address = address
        self.workers = workers
        self._ray = None
        self._task_ref = None
        self._remote = None
        self._started_here = False

    def __repr__(self):
        return f"RayExecutor(address={self.address!r})"

    def start(self, task):
        ray = import_optional("ray", "The Ray executor")
        self._ray = ray
        if not ray.is_initialized():
            kwargs = {"address": self.address} if self.address else {"num_cpus": self.workers}
            ray.init(
                include_dashboard=False,
                log_to_driver=False,
                runtime_env={"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "3"}},
                **kwargs,
            )
            self._started_here = True
        self._task_ref = ray.put(task)
        self._remote = ray.remote(num_cpus=1)(_evaluate_ray)
        return self

    def evaluate(self, trees):
        refs = [self._remote.remote(tree, self._task_ref) for tree in trees]
        return self._ray.get(refs)

    def close(self):
        if self._ray is not None and self._started_here:
            self._ray.shutdown()
        self._ray = None
        self._started_here = False


def _evaluate_ray(tree, task):
    _start_worker(task)
    return fitness.evaluate_candidate(tree, task)


def get(executor="local", workers=1, address=None):
    """The executor named `executor` (`"local"` or `"ray"`).

    `"local"` with one worker evaluates in this process; with more, in worker
    processes.
    """
    validation.check_choice("executor", executor, EXECUTORS)
    if executor == "ray":
        return RayExecutor(address=address, workers=workers)
    if validation.check_positive_int("workers", workers) == 1:
        return SerialExecutor()
    return ProcessExecutor(workers)
