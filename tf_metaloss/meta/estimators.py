"""Meta-gradient estimators: how `d meta_objective / d phi` is computed.

An estimator is a small object with one method, `estimate(problem)`, that
takes a `MetaProblem` (pure functions of tensors and the current values) and
returns a `MetaGradient`. It speaks `keras.ops` and the differentiation
functions of `tf_metaloss.backend` only; the trainer around it owns the
variables, the optimizers and the distribution strategy.

The contract includes the weight update's reuse: an estimator also returns
the training loss, its gradient at the current weights (all-reduced and
per-replica) and the model's auxiliary outputs (predictions, updated
non-trainable state), exactly what a plain training step computes, so the meta
step applies that gradient instead of computing it again.

Estimators are registered Keras-serialisable objects, resolved from
`compile(meta_method=...)` by `get` the way `keras.optimizers.get` resolves
optimizers.

Example:

>>> inputs = keras.Input((4,))
>>> model = tml.MetaModel(inputs, keras.layers.Dense(3)(inputs))
>>> model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True),
...               meta_method=tml.meta.estimators.Unrolled(steps=2))
>>> model.meta_estimator
Unrolled(steps=2, first_order=False)
"""

import collections

import keras

from tf_metaloss import backend
from tf_metaloss.meta import lookahead
from tf_metaloss.validation import check_bool
from tf_metaloss.validation import check_int

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
    """

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


@keras.saving.register_keras_serializable(package="tf_metaloss")
class Unrolled(Estimator):
    """Backpropagation through `steps` differentiable SGD steps (truncated).

    The lookahead `w_{k+1} = w_k - lr * grad_w L_phi(w_k)` is unrolled `steps`
    times on the training batch; the meta objective is evaluated at `w_steps`
    and differentiated with respect to phi through the whole unroll (second
    order: Hessian-vector products through the inner gradients). Memory grows
    linearly with `steps` (each step keeps its activations).

    With `first_order=True` the second-order terms through the weights are
    dropped: each inner gradient is taken at weights treated as constants, so
    `d w_K / d phi = -lr * sum_k d g_k / d phi`. For `steps=1` this is exact.

    Args:
        steps: K, the number of unrolled steps (>= 1).
        first_order: drop the second-order terms through the weights.

    Example:

    >>> tml.meta.estimators.Unrolled(steps=2)
    Unrolled(steps=2, first_order=False)
    """

    def __init__(self, steps=1, first_order=False):
        check_int("steps", steps, minimum=1)
        check_bool("first_order", first_order)
        self.steps = int(steps)
        self.first_order = bool(first_order)

    def estimate(self, problem):
        def meta_objective_of(phi):
            result = lookahead.unroll(
                lambda weights: problem.training_objective(weights, phi),
                problem.weights,
                problem.learning_rate,
                self.steps,
                first_order=self.first_order,
            )
            meta_objective, total = problem.meta_objective(result.weights, phi)
            return total, (meta_objective, result)

        (_, (meta_objective, result)), phi_grads = backend.value_and_grad(
            meta_objective_of, has_aux=True, wrt_weights=False
        )(problem.phi)
        return MetaGradient(
            phi_grads, meta_objective, result.loss, result.grads, result.local_grads, result.aux
        )

    def get_config(self):
        return {"steps": self.steps, "first_order": self.first_order}


ALIASES = {
    "second_order": lambda: Unrolled(steps=1, first_order=False),
    "first_order": lambda: Unrolled(steps=1, first_order=True),
}


def serialize(estimator):
    """The Keras config of an estimator (a dict)."""
    return keras.saving.serialize_keras_object(estimator)


def deserialize(config, custom_objects=None):
    """An estimator from `serialize`'s config."""
    return keras.saving.deserialize_keras_object(config, custom_objects=custom_objects)


def get(identifier):
    """Resolves an estimator from a name, a config dict or an instance.

    Names: `"second_order"` (`Unrolled()`), `"first_order"`
    (`Unrolled(first_order=True)`).

    Example:

    >>> tml.meta.estimators.get("first_order")
    Unrolled(steps=1, first_order=True)
    """
    if isinstance(identifier, Estimator):
        return identifier
    if isinstance(identifier, str) and identifier in ALIASES:
        return ALIASES[identifier]()
    if isinstance(identifier, dict):
        estimator = deserialize(identifier)
        if isinstance(estimator, Estimator):
            return estimator
    raise ValueError(
        "Invalid value for argument `meta_method`. Expected one of "
        f"{sorted(ALIASES)} or a `tf_metaloss.meta.estimators.Estimator` "
        f"(e.g. `Unrolled(steps=2)`). Received: meta_method={identifier!r}"
    )
