"""`Neumann`: the implicit meta-gradient with a Neumann-series inverse."""

import keras

from tf_metaloss.meta.estimators.base import Estimator
from tf_metaloss.meta.estimators.base import axpy
from tf_metaloss.meta.estimators.base import in_dtype
from tf_metaloss.meta.estimators.implicit import implicit_meta_gradient
from tf_metaloss.meta.estimators.implicit import iterate
from tf_metaloss.validation import check_int
from tf_metaloss.validation import check_positive


@keras.saving.register_keras_serializable(package="tf_metaloss")
class Neumann(Estimator):
    """Implicit meta-gradient, `J^{-1}` by a truncated Neumann series.

    Computes `dR/dphi - p^T B` with `B = d grad_w L_phi / dphi` and

        p = alpha * sum_{j=0}^{terms} (I - alpha J^T)^j v,

    `J` the Hessian of the training loss and `v` the meta objective's
    gradient, as laid out in `tf_metaloss.meta.estimators.implicit`: `J` and
    `B` at `w_s` (the weights after `inner_steps` plain SGD steps, not
    differentiated), `v` at the lookahead point `w_s - lr grad L_phi(w_s)`.
    The series converges to `J^{-T} v` (the implicit function theorem's
    hypergradient) when `0 < alpha < 2 / lambda_max(J)` and `J` is positive
    definite; with `alpha = lr` that is the condition for SGD at `lr` to be
    stable.

    - `terms=0`, `alpha=None`, `inner_steps=0`: `p = lr v`, exactly the
      one-step unroll `Unrolled(steps=1)` (the same value, computed the same
      way).
    - `alpha = lr`, `terms = K - 1`: the K-step unroll's meta-gradient at a
      fixed point of the training loss (where every unrolled step has the
      same `J` and `B`), without its memory: each term is one backward pass
      through the gradient recorded at `w_s`, and memory stays flat in
      `terms` while an unroll keeps K forward and backward passes.
    - Many terms: the implicit hypergradient, larger than the one-step
      meta-gradient by about `1 / (alpha * lambda)` along directions of
      curvature `lambda`; an adaptive meta optimizer (the default Adam) is
      insensitive to that scale, a plain SGD one is not.

    Cost: a one-step meta step plus `terms` Hessian-vector products (one
    second-order backward pass each), plus `inner_steps` forward and backward
    passes.

    Args:
        terms: J, the number of series terms after the first (>= 0).
        alpha: the series' step size; `None` uses the lookahead learning rate
            (the optimizer's, or `lookahead_learning_rate`).
        inner_steps: plain SGD steps toward the inner optimum before
            linearizing (>= 0).

    Reference: Lorraine, Vicol and Duvenaud, "Optimizing Millions of
    Hyperparameters by Implicit Differentiation", AISTATS 2020.

    Example:

    >>> estimator = tml.meta.estimators.Neumann(terms=3)
    >>> estimator
    Neumann(terms=3, alpha=None, inner_steps=0)
    >>> inputs = keras.Input((4,))
    >>> model = tml.MetaModel(inputs, keras.layers.Dense(3)(inputs))
    >>> model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True),
    ...               meta_method=estimator)
    >>> x, y = np.random.rand(8, 4).astype("float32"), np.arange(8) % 3
    >>> [tuple(g.shape) for g in model.compute_meta_gradient((x, y), (x, y)).phi_grads]
    [()]
    """

    def __init__(self, terms=5, alpha=None, inner_steps=0):
        self.terms = check_int("terms", terms, minimum=0)
        self.alpha = check_positive("alpha", alpha, allow_none=True)
        self.inner_steps = check_int("inner_steps", inner_steps, minimum=0)

    def estimate(self, problem):
        return implicit_meta_gradient(problem, self.inner_steps, self._solve)

    def _solve(self, v, product, learning_rate):
        alpha = in_dtype(learning_rate if self.alpha is None else self.alpha, v[0].dtype)

        def body(state):
            term, total = state
            term = axpy(-alpha, product(term), term)
            return term, [t + u for t, u in zip(total, term)]

        _, total = iterate(self.terms, body, (v, v))
        return [alpha * t for t in total]

    def get_config(self):
        return {"terms": self.terms, "alpha": self.alpha, "inner_steps": self.inner_steps}
