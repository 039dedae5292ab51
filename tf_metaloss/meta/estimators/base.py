"""The estimator contract: `MetaProblem` in, `MetaGradient` out."""

import collections

import keras
from keras import ops

MetaProblem = collections.namedtuple(
    "MetaProblem",
    [
        "training_objective",
        "meta_objective",
        "weights",
        "phi",
        "learning_rate",
        "state",
        "momentum",
    ],
    defaults=(None, 0.0),
)
MetaProblem.__doc__ = """What the meta step hands an estimator.

- training_objective: `(weights, phi) -> (loss, aux)`, the learnable loss of
  the training batch (this replica's share), a pure function;
- meta_objective: `(weights, phi) -> (value, total)`, the fixed
  objective on the meta batch and the quantity to differentiate (the
  objective plus phi's regularization), this replica's share;
- weights, phi: lists of the current values (tensors);
- learning_rate: the inner (lookahead) step size;
- state: a stateful estimator's state (a list of tensors, see
  `Estimator.initial_state`), `None` for the others;
- momentum: the SGD momentum of the weight update (a stateful estimator
  follows the real update).
"""

MetaGradient = collections.namedtuple(
    "MetaGradient",
    ["phi_grads", "meta_objective", "loss", "grads", "local_grads", "aux", "state"],
    defaults=(None,),
)
MetaGradient.__doc__ = """What an estimator returns.

- phi_grads: this replica's meta-gradient (the trainer all-reduces it);
- meta_objective: this replica's share of the meta objective;
- loss, grads, local_grads, aux: the training loss at the current weights,
  its all-reduced and per-replica gradient and `training_objective`'s aux
  outputs, for the weight update;
- state: a stateful estimator's state after this step's weight update (the
  trainer stores it when the update is applied), else `None`.
"""


@keras.saving.register_keras_serializable(package="tf_metaloss")
class Estimator:
    """Base class of meta-gradient estimators.

    Subclasses implement `estimate(problem) -> MetaGradient` and `get_config`.
    A stateful estimator (one that carries values from step to step) also
    sets `stateful = True` and implements `initial_state`; the trainer keeps
    the state in variables saved with the training state, hands it in as
    `problem.state` and stores the `state` the estimate returns.

    Attributes:
        needs_full_precision: True for an estimator that is not accurate when
            the model computes in bfloat16 (`MetaModel.compile` rejects the
            pair); False by default.
        stateful: True for an estimator with state across steps.
    """

    needs_full_precision = False
    stateful = False

    def estimate(self, problem):
        raise NotImplementedError

    def initial_state(self, weights, phi):
        """The state before the first step: a list of tensors (none by default)."""
        return []

    def check_training(self, optimizer, meta_every, lookahead_learning_rate, num_replicas):
        """Raises a `ValueError` for training settings the estimator cannot follow.

        Called by `MetaModel.compile`; the default accepts everything.
        """

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({arguments})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))


# -- vectors given as lists of tensors (one per weight) ------------------------------
def dot(a, b):
    """`sum_i <a_i, b_i>` over two lists of tensors (a scalar)."""
    return sum(ops.sum(x * y) for x, y in zip(a, b))


def axpy(alpha, x, y):
    """`alpha * x + y` element by element (`alpha` a scalar)."""
    return [alpha * xi + yi for xi, yi in zip(x, y)]


def stop_gradient(values):
    """Every tensor of a list as a constant."""
    return [ops.stop_gradient(v) for v in values]


def in_dtype(value, dtype):
    """A scalar in `dtype` (a Python number converts exactly)."""
    if isinstance(value, (int, float)):
        return ops.convert_to_tensor(value, dtype=dtype)
    return ops.cast(value, dtype)
