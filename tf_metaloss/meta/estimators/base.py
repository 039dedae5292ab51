"""The estimator contract: `MetaProblem` in, `MetaGradient` out."""

import collections

import keras
from keras import ops

MetaProblem = collections.namedtuple(
    "MetaProblem",
    ["training_objective", "meta_objective", "weights", "phi", "learning_rate"],
)
MetaProblem.__doc__ = """What the meta step hands an estimator.

- training_objective: `(weights, phi) -> (loss, aux)`, the learnable loss of
  the training batch (this replica's share), a pure function;
- meta_objective: `(weights, phi) -> (value, total)`, the fixed
  objective on the meta batch and the quantity to differentiate (the
  objective plus phi's regularization), this replica's share;
- weights, phi: lists of the current values (tensors);
- learning_rate: the inner (lookahead) step size.
"""

MetaGradient = collections.namedtuple(
    "MetaGradient",
    ["phi_grads", "meta_objective", "loss", "grads", "local_grads", "aux"],
)
MetaGradient.__doc__ = """What an estimator returns.

- phi_grads: this replica's meta-gradient (the trainer all-reduces it);
- meta_objective: this replica's share of the meta objective;
- loss, grads, local_grads, aux: the training loss at the current weights,
  its all-reduced and per-replica gradient and `training_objective`'s aux
  outputs, for the weight update.
"""


@keras.saving.register_keras_serializable(package="tf_metaloss")
class Estimator:
    """Base class of meta-gradient estimators.

    Subclasses implement `estimate(problem) -> MetaGradient` and `get_config`.

    Attributes:
        needs_full_precision: True for an estimator that is not accurate when
            the model computes in bfloat16 (`MetaModel.compile` rejects the
            pair); False by default.
    """

    needs_full_precision = False

    def estimate(self, problem):
        raise NotImplementedError

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
