"""`Unrolled`: backpropagation through K differentiable inner steps."""

import keras

from tf_metaloss import backend
from tf_metaloss.meta import lookahead
from tf_metaloss.meta.estimators.base import Estimator
from tf_metaloss.meta.estimators.base import MetaGradient
from tf_metaloss.validation import check_bool
from tf_metaloss.validation import check_int


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
