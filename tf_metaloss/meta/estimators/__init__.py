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

The estimators ("meta" is the meta objective's forward and backward pass,
"second-order" a backward pass through a recorded gradient):

- `Unrolled(steps=K)`: exact through K differentiable SGD steps; costs K
  forward/backward passes, meta and K second-order passes; memory grows with
  K.
- `Neumann(terms, alpha, inner_steps)`: the implicit meta-gradient, `J^{-1}`
  by a Neumann series (`terms=0` is exactly `Unrolled(steps=1)`); meta and
  `1 + terms` second-order passes; memory flat in `terms`.
- `ConjugateGradient(iterations, damping, inner_steps)`: the implicit
  meta-gradient, `(J + damping I)^{-1}` by conjugate gradient; meta and
  `1 + iterations` second-order passes; memory flat in `iterations`.
- `FiniteDifference(epsilon, central)`: the one-step meta-gradient with its
  second-order term by finite differences; meta and two forward passes, no
  second-order pass; a plain step's memory plus the meta pass.
- `ForwardMode(decay, normalize)`: stateful and non-greedy: the tangents
  `d w / d phi` carried through every real SGD step (real-time
  hypergradients); one JVP of the training gradient per phi element a step;
  two weight copies per phi element of memory.

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

import keras

from tf_metaloss.meta.estimators.base import Estimator
from tf_metaloss.meta.estimators.base import MetaGradient
from tf_metaloss.meta.estimators.base import MetaProblem
from tf_metaloss.meta.estimators.conjugate_gradient import ConjugateGradient
from tf_metaloss.meta.estimators.finite_difference import FiniteDifference
from tf_metaloss.meta.estimators.forward_mode import ForwardMode
from tf_metaloss.meta.estimators.neumann import Neumann
from tf_metaloss.meta.estimators.unrolled import Unrolled

__all__ = [
    "ALIASES",
    "ConjugateGradient",
    "Estimator",
    "FiniteDifference",
    "ForwardMode",
    "MetaGradient",
    "MetaProblem",
    "Neumann",
    "Unrolled",
    "deserialize",
    "get",
    "serialize",
]

ALIASES = {
    "second_order": lambda: Unrolled(steps=1, first_order=False),
    "first_order": lambda: Unrolled(steps=1, first_order=True),
    "neumann": Neumann,
    "conjugate_gradient": ConjugateGradient,
    "finite_difference": FiniteDifference,
    "forward_mode": ForwardMode,
}
# The names that `compile(unroll_steps=K)` applies to.
UNROLLED_ALIASES = ("second_order", "first_order")


def serialize(estimator):
    """The Keras config of an estimator (a dict)."""
    return keras.saving.serialize_keras_object(estimator)


def deserialize(config, custom_objects=None):
    """An estimator from `serialize`'s config."""
    return keras.saving.deserialize_keras_object(config, custom_objects=custom_objects)


def get(identifier):
    """Resolves an estimator from a name, a config dict or an instance.

    Names: `"second_order"` (`Unrolled()`), `"first_order"`
    (`Unrolled(first_order=True)`), `"neumann"` (`Neumann()`),
    `"conjugate_gradient"` (`ConjugateGradient()`), `"finite_difference"`
    (`FiniteDifference()`), each with its default settings.

    Example:

    >>> tml.meta.estimators.get("first_order")
    Unrolled(steps=1, first_order=True)
    >>> tml.meta.estimators.get("neumann")
    Neumann(terms=5, alpha=None, inner_steps=0)
    >>> config = tml.meta.estimators.serialize(tml.meta.estimators.FiniteDifference())
    >>> tml.meta.estimators.get(config)
    FiniteDifference(epsilon=0.001, central=True)
    """
    if isinstance(identifier, Estimator):
        return identifier
    if isinstance(identifier, str) and identifier in ALIASES:
        return ALIASES[identifier]()
    if isinstance(identifier, dict):
        try:
            estimator = deserialize(identifier)
        except TypeError as error:
            # Keras cannot find the class, or its constructor rejects the
            # config's keys; an argument's own check raises ValueError.
            raise _invalid(identifier, f" ({_deserialization_reason(error)})") from error
        if isinstance(estimator, Estimator):
            return estimator
    raise _invalid(identifier)


def _invalid(identifier, reason=""):
    return ValueError(
        "Invalid value for argument `meta_method`. Expected one of "
        f"{sorted(ALIASES)}, a `tf_metaloss.meta.estimators.Estimator` "
        "(e.g. `Unrolled(steps=2)`) or its config (`serialize`). Received: "
        f"meta_method={identifier!r}{reason}"
    )


def _deserialization_reason(error):
    """The useful part of Keras's deserialization error: the constructor's
    complaint, or the first sentence (e.g. "Could not locate class 'X'")."""
    text = str(error)
    marker = "Exception encountered: "
    if marker in text:
        return text.split(marker, 1)[1].strip()
    return text.split(". ", 1)[0].strip().rstrip(".")
