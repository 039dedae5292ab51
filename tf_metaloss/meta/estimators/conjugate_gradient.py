"""`ConjugateGradient`: the implicit meta-gradient by conjugate gradient."""

import keras
from keras import ops

from tf_metaloss.meta.estimators.base import Estimator
from tf_metaloss.meta.estimators.base import axpy
from tf_metaloss.meta.estimators.base import dot
from tf_metaloss.meta.estimators.base import in_dtype
from tf_metaloss.meta.estimators.implicit import implicit_meta_gradient
from tf_metaloss.meta.estimators.implicit import iterate
from tf_metaloss.validation import check_int
from tf_metaloss.validation import check_non_negative


@keras.saving.register_keras_serializable(package="tf_metaloss")
class ConjugateGradient(Estimator):
    """Implicit meta-gradient, `J^{-1}` by conjugate gradient iterations.

    Computes `dR/dphi - p^T B` with `B = d grad_w L_phi / dphi` and `p` the
    result of `iterations` conjugate gradient steps (from `p = 0`) on

        (J + damping * I) p = v,

    `J` the Hessian of the training loss and `v` the meta objective's
    gradient, as laid out in `tf_metaloss.meta.estimators.implicit` (`J` and
    `B` at `w_s`, the weights after `inner_steps` plain SGD steps; `v` at the
    lookahead point `w_s - lr grad L_phi(w_s)`). On a quadratic with n
    distinct curvatures, n iterations solve the system exactly.

    Conjugate gradient assumes a symmetric positive definite matrix. The
    Hessian of a network's loss has negative curvature away from a minimum:
    `damping > 0` shifts the spectrum and bounds `p` (the damped inverse
    `(J + damping I)^{-1}` is what is estimated), and a fixed, small number
    of iterations keeps the estimate regularised. A loss with a
    `stop_weight_gradient` input (`SampleWeightedLoss`) has a non-symmetric
    `J`; use `Neumann` there. A step along a direction of zero or negative
    curvature is skipped (step size 0). The result does not scale with the
    learning rate (unlike the one-step unroll's `lr` factor).

    Cost: a one-step meta step plus `iterations` Hessian-vector products;
    memory flat in `iterations`.

    Args:
        iterations: conjugate gradient iterations (>= 1).
        damping: the multiple of the identity added to the Hessian (>= 0).
        inner_steps: plain SGD steps toward the inner optimum before
            linearizing (>= 0).

    Reference: Rajeswaran, Finn, Kakade and Levine, "Meta-Learning with
    Implicit Gradients", NeurIPS 2019.

    Example:

    >>> tml.meta.estimators.ConjugateGradient(iterations=3, damping=0.1)
    ConjugateGradient(iterations=3, damping=0.1, inner_steps=0)
    """

    def __init__(self, iterations=5, damping=1.0, inner_steps=0):
        self.iterations = check_int("iterations", iterations, minimum=1)
        self.damping = check_non_negative("damping", damping)
        self.inner_steps = check_int("inner_steps", inner_steps, minimum=0)

    def estimate(self, problem):
        return implicit_meta_gradient(problem, self.inner_steps, self._solve)

    def _solve(self, v, product, learning_rate):
        damping = in_dtype(self.damping, v[0].dtype)

        def body(state):
            solution, residual, direction, residual_norm = state
            image = axpy(damping, direction, product(direction))
            step = _safe_divide(residual_norm, dot(direction, image))
            solution = axpy(step, direction, solution)
            residual = axpy(-step, image, residual)
            new_norm = dot(residual, residual)
            direction = axpy(_safe_divide(new_norm, residual_norm), direction, residual)
            return solution, residual, direction, new_norm

        start = ([ops.zeros_like(x) for x in v], v, v, dot(v, v))
        return iterate(self.iterations, body, start)[0]

    def get_config(self):
        return {
            "iterations": self.iterations,
            "damping": self.damping,
            "inner_steps": self.inner_steps,
        }


def _safe_divide(numerator, denominator):
    """`numerator / denominator`, or 0 where the denominator is not positive."""
    positive = denominator > 0
    safe = ops.where(positive, denominator, ops.ones_like(denominator))
    return ops.where(positive, numerator / safe, ops.zeros_like(numerator))
