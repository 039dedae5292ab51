"""`FiniteDifference`: the one-step meta-gradient with forward passes only."""

import keras
from keras import ops

from tf_metaloss import backend
from tf_metaloss.meta import lookahead
from tf_metaloss.meta.estimators.base import Estimator
from tf_metaloss.meta.estimators.base import MetaGradient
from tf_metaloss.meta.estimators.base import axpy
from tf_metaloss.meta.estimators.base import dot
from tf_metaloss.meta.estimators.base import in_dtype
from tf_metaloss.meta.estimators.base import stop_gradient
from tf_metaloss.validation import check_bool
from tf_metaloss.validation import check_positive


@keras.saving.register_keras_serializable(package="tf_metaloss")
class FiniteDifference(Estimator):
    """The one-step meta-gradient with its mixed term by finite differences.

    The one-step unroll's meta-gradient is

        dR/dphi - lr * d/dphi [v . grad_w L_phi(w)],   v = grad M(w - lr g(w)),

    with `g` the training gradient, `M` the meta objective and `R` phi's
    regularization. Its second-order part, the derivative of a directional
    derivative, is replaced by a difference of loss gradients with respect to
    phi along `v` (the DARTS approximation):

        d/dphi [v . grad_w L_phi(w)]
            ~ (dL_phi(w + h v)/dphi - dL_phi(w - h v)/dphi) / (2 h),

    with `h = epsilon / ||v||`, so the weights move by `epsilon` in norm.
    `central=False` uses `(dL_phi(w + h v)/dphi - dL_phi(w)/dphi) / h` instead.
    Each loss gradient with respect to phi is a forward pass through the model
    and a backward pass through the loss alone: no second-order backward pass
    through the network, and memory of a plain step plus the meta objective's
    forward and backward pass. For smooth losses the error is `O(epsilon^2)`
    (central) or `O(epsilon)` (one-sided) plus rounding of order `machine
    epsilon / epsilon`. ReLU and max-pooling networks are piecewise linear: a
    larger step crosses more kinks, so a small step is better down to float32
    rounding. The default (central, `epsilon=1e-3`) came out best in
    `benchmarks/estimators.py`, which reports the cosine similarity to the
    exact meta-gradient (docs/BENCHMARKS.md): at least 0.9998 on the MLP and
    the CNN there, where `epsilon=0.01` (DARTS's choice) fell to 0.96 on one
    CNN batch and the one-sided difference to below 0.98.

    A loss that hides an input from the weight gradient with
    `stop_weight_gradient` (`SampleWeightedLoss`) is differentiated there as
    if that input were a constant; the finite difference moves it with the
    weights, so for such a loss this estimates a different quantity. Use an
    exact estimator for those.

    It needs a model computing in float32 or float64: under the
    'mixed_bfloat16' policy the layers round the perturbed weights to 8
    significant bits, which mostly erases a perturbation of norm `epsilon`
    spread over the weights (cosine similarity to the exact meta-gradient 0.84
    measured with the default epsilon on a small MLP), so `MetaModel.compile`
    rejects that combination.

    Args:
        epsilon: the norm of the weight perturbation (> 0).
        central: central differences (two extra forward passes) rather than
            one-sided ones (one).

    Reference: Liu, Simonyan and Yang, "DARTS: Differentiable Architecture
    Search", ICLR 2019 (eq. 8).

    Example:

    >>> tml.meta.estimators.FiniteDifference()
    FiniteDifference(epsilon=0.001, central=True)
    """

    # Perturbations of the weights of norm `epsilon` vanish in bfloat16.
    needs_full_precision = True

    def __init__(self, epsilon=1e-3, central=True):
        self.epsilon = check_positive("epsilon", epsilon)
        self.central = check_bool("central", central)

    def estimate(self, problem):
        weights = list(problem.weights)
        learning_rate = problem.learning_rate
        frozen_phi = stop_gradient(problem.phi)

        def meta_objective_of(phi):
            # The one-sided difference needs dL/dphi at w: record the loss.
            training_phi = frozen_phi if self.central else phi
            (loss, aux), local_grads = backend.value_and_grad(
                lambda w: problem.training_objective(w, training_phi), has_aux=True
            )(weights)
            grads = backend.all_reduce_sum(local_grads)
            ahead = lookahead.sgd_update(weights, stop_gradient(grads), learning_rate)

            def meta_total(w):
                value, total = problem.meta_objective(w, phi)
                return total, value

            (total, meta_value), meta_local_grads = backend.value_and_grad(
                meta_total, has_aux=True
            )(ahead)
            v = stop_gradient(backend.all_reduce_sum(meta_local_grads))
            norm = ops.sqrt(dot(v, v))
            tiny = ops.convert_to_tensor(1e-30, dtype=norm.dtype)
            step = in_dtype(self.epsilon, norm.dtype) / ops.maximum(norm, tiny)
            plus, _ = problem.training_objective(axpy(step, v, weights), phi)
            if self.central:
                minus, _ = problem.training_objective(axpy(-step, v, weights), phi)
                difference = (plus - minus) / ops.cast(2 * step, plus.dtype)
            else:
                difference = (plus - loss) / ops.cast(step, plus.dtype)
            lr = in_dtype(learning_rate, difference.dtype)
            estimate = total - ops.cast(lr * difference, total.dtype)
            return estimate, (meta_value, loss, grads, local_grads, aux)

        (_, outputs), phi_grads = backend.value_and_grad(
            meta_objective_of, has_aux=True, wrt_weights=False
        )(problem.phi)
        meta_value, loss, grads, local_grads, aux = outputs
        return MetaGradient(phi_grads, meta_value, loss, grads, local_grads, aux)

    def get_config(self):
        return {"epsilon": self.epsilon, "central": self.central}
