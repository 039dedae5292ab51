"""Implicit meta-gradients: what `Neumann` and `ConjugateGradient` share.

Notation (all gradients over the global batch): `g(w, phi) = grad_w L_phi(w)`
the training gradient, `J = dg/dw` its Jacobian (the Hessian of `L_phi`),
`B = dg/dphi` the mixed second derivative, `M(w)` the meta objective, `R(phi)`
phi's regularization, `lr` the lookahead learning rate.

If the inner problem were solved, `g(w*, phi) = 0`, the implicit function
theorem gives `dw*/dphi = -J^{-1} B`, so the hypergradient is

    dM(w*)/dphi = dR/dphi - grad M(w*)^T J^{-1} B.

The estimators evaluate it at a point reached cheaply instead of at `w*`:

1. `w_s`: the current weights after `inner_steps` plain SGD steps on the
   training batch (`w_{i+1} = w_i - lr g(w_i)`), held constant (not
   differentiated). `inner_steps=0`: `w_s = w`.
2. `v = grad M(w_s - lr g(w_s))`: the meta objective's gradient one lookahead
   step beyond `w_s`, as in the one-step unroll.
3. `p ~ J(w_s)^{-T} v` by a solver (Neumann series or conjugate gradient)
   from Jacobian-transpose-vector products `J^T u = grad_w (u . g(w_s))`, each
   one backward pass through the gradient recorded once at `w_s`
   (`backend.vjp`; no new forward pass), iterated in a graph loop.
4. `meta-gradient = dR/dphi - d/dphi [p . g(w_s, phi)] = dR/dphi - B^T p`:
   the same pullback with `p` (one more second-order backward pass, whose
   product with the mixed derivative the one-step unroll also computes).

Relation to the unroll. The K-step unroll from `w_s` has

    dM(w_K)/dphi = dR/dphi - lr grad M(w_K)^T
                   sum_{k<K} prod_{k<i<K} (I - lr J(w_i)) B(w_k).

At a fixed point (`g(w_s) = 0`, so every `w_k = w_s`) this is
`dR/dphi - lr v^T sum_{j<K} (I - lr J)^j B`: the Neumann estimator with
`alpha = lr` and `terms = K - 1`. With `terms=0`, `alpha = lr` and
`inner_steps=0` it is `dR/dphi - lr grad M(w - lr g(w))^T B(w)`, exactly the
one-step unroll (`Unrolled(steps=1)`, for which first and second order
coincide) at any point. Memory does not depend on the number of terms or
iterations: one recorded forward and backward pass at `w_s` plus a few
weight-sized vectors, where the K-step unroll records K of them. (Under a
distribution strategy with several replicas the iterations are laid out one
after the other, because an all-reduce cannot run inside a graph loop there,
and memory grows slowly with the terms.)

For losses that pass an input through `stop_weight_gradient` (a
`SampleWeightedLoss`), `g` is not the gradient of a function, `J` is not
symmetric, and the products are with the Jacobian of the update that an
unroll differentiates, as they should be; the conjugate gradient solver
assumes symmetry (see `ConjugateGradient`).
"""

from keras import ops

from tf_metaloss import backend
from tf_metaloss.meta import lookahead
from tf_metaloss.meta.estimators.base import MetaGradient
from tf_metaloss.meta.estimators.base import stop_gradient


def implicit_meta_gradient(problem, inner_steps, solve):
    """The implicit meta-gradient with `p = solve(v, product, learning_rate)`.

    Args:
        problem: the `MetaProblem`.
        inner_steps: plain SGD steps before the linearization point `w_s`.
        solve: `(v, product, learning_rate) -> p`, where `v` is the global
            meta gradient at the lookahead point, `product(u) = J^T u` (global,
            at `w_s`) and `p` approximates `J^{-T} v` (a list like `v`).

    Returns:
        A `MetaGradient` whose training loss and gradient are those at the
        current weights.
    """
    learning_rate = problem.learning_rate
    frozen_phi = stop_gradient(problem.phi)
    point = list(problem.weights)
    first = None
    for _ in range(inner_steps):
        loss, aux, local_grads = lookahead.loss_and_gradient(
            lambda weights: problem.training_objective(weights, frozen_phi), point
        )
        grads = backend.all_reduce_sum(local_grads)
        if first is None:
            first = (loss, grads, local_grads, aux)
        point = stop_gradient(lookahead.sgd_update(point, grads, learning_rate))

    # One recording of the training gradient g(w_s, phi) serves every product:
    # its pullback gives J^T u (weights part) and B^T u (phi part). The
    # detached inputs of a loss move with the weights and phi here
    # (`wrt_weights=False`), as in an unroll's outer differentiation.
    count = len(point)

    def training_gradient(values):
        weights, phi = values[:count], values[count:]
        (loss, aux), local_grads = backend.value_and_grad(
            lambda w: problem.training_objective(w, phi), has_aux=True
        )(weights)
        return local_grads, (loss, aux)

    (local_grads, (loss, aux)), pullback = backend.vjp(
        training_gradient, point + list(problem.phi), has_aux=True, wrt_weights=False
    )
    grads = backend.all_reduce_sum(local_grads)
    if first is None:
        first = (loss, grads, local_grads, aux)
    ahead = lookahead.sgd_update(point, grads, learning_rate)

    def meta_total(values):
        value, total = problem.meta_objective(values[:count], values[count:])
        return total, value

    (_, meta_value), meta_local_grads = backend.value_and_grad(meta_total, has_aux=True)(
        ahead + list(problem.phi)
    )
    v = backend.all_reduce_sum(meta_local_grads[:count])
    penalty_grads = meta_local_grads[count:]  # this replica's share of dR/dphi

    def product(u):
        return backend.all_reduce_sum(pullback(u)[:count])

    p = solve(v, product, learning_rate)
    mixed = pullback(p)[count:]  # this replica's B^T p
    phi_grads = [r - ops.cast(m, r.dtype) for r, m in zip(penalty_grads, mixed)]
    return MetaGradient(phi_grads, meta_value, *first)


def iterate(count, body, state):
    """`state = body(state)` `count` times, in a loop the graph holds once.

    One copy of the body's constants and intermediates whatever `count`, so
    memory does not grow with the number of terms. Under a distribution
    strategy with several replicas the body's all-reduce cannot run inside a
    graph loop, and the iterations are laid out one after the other instead.
    """
    if count == 0:
        return state
    if backend.num_replicas() > 1:
        for _ in range(count):
            state = body(state)
        return state
    return ops.fori_loop(0, count, lambda _, state: body(state), state)
