"""`ForwardMode`: the non-greedy meta-gradient, carried forward over the whole run."""

import math

import keras
from keras import ops

from tf_metaloss import backend
from tf_metaloss.meta.estimators.base import Estimator
from tf_metaloss.meta.estimators.base import MetaGradient
from tf_metaloss.meta.estimators.base import in_dtype
from tf_metaloss.validation import check_bool
from tf_metaloss.validation import check_fraction

_UNSUPPORTED_OPTIMIZER_SETTINGS = (
    "weight_decay",
    "clipnorm",
    "clipvalue",
    "global_clipnorm",
    "gradient_accumulation_steps",
)


@keras.saving.register_keras_serializable(package="tf_metaloss")
class ForwardMode(Estimator):
    """Real-time (forward-mode) hypergradients: `d M(w_t) / d phi` over all past steps.

    The one-step meta-gradient sees only how phi moves the next step's
    weights; fitting faster always helps there, so it drifts toward the loss
    that fits fastest. This estimator instead carries the tangents
    `Z_t = d w_t / d phi` (and those of SGD's momentum `V_t`) forward through
    every real training step:

        U_t     = d g(w_t, phi) / d(w, phi) . (Z_t, I)   (one JVP per phi element)
        V_{t+1} = decay * (momentum * V_t - lr * U_t)
        Z_{t+1} = decay * (Z_t + V_{t+1})      (without momentum: Z_t - lr * U_t)

    and the meta-gradient at step `t` is `dM/dw(w_t) . Z_t + dR/dphi`: how
    phi, held fixed since the start, would have moved the meta objective `M`
    of the current weights (Franceschi et al. 2017's real-time
    hyperparameter optimisation; `decay < 1` forgets old steps, as in Donini
    et al. 2020). With `decay=1` and `normalize=False` it is exact for a phi
    held fixed: the derivative of `M` after `t` steps of the real training.

    The tangents follow the model's optimizer, which must be Keras's `SGD`
    (with or without momentum; not Nesterov, weight decay, clipping or
    gradient accumulation), with `meta_every=1` (every step updates the
    tangents) and no separate `lookahead_learning_rate`, on one replica;
    `MetaModel.compile` says so otherwise. The meta objective is evaluated at
    the current weights (no lookahead).

    Cost per step: one JVP of the training gradient (a forward and backward
    pass carried forward, about 2-3 plain steps) per phi element, and the
    meta objective's forward and backward pass. Memory: two copies of the
    weights per phi element (`Z`, `V`). Practical for families with few
    parameters (`MetaLoss`, `GeneralizedCELoss`, `BlendLoss`,
    `ClassAdjustedLoss` on few classes); not for `NeuralLoss` or
    `SampleWeightedLoss` (hundreds of phi elements). The state is kept in
    variables of the model, restored by `MetaBackupAndRestore`; `model.save()`
    keeps the estimator's settings, and a loaded model starts its tangents
    again from zero.

    Args:
        decay: the factor in `(0, 1]` applied to the tangents each step.
        normalize: divide the carried part of the meta-gradient by the
            tangents' norm when it exceeds 1 (their size grows by orders of
            magnitude over training while the direction is what matters).

    Reference: Franceschi, Donini, Frasconi and Pontil, "Forward and Reverse
    Gradient-Based Hyperparameter Optimization", ICML 2017; Donini et al.,
    "MARTHE: Scheduling the learning rate via online hypergradients", IJCAI
    2020.

    Example:

    >>> tml.meta.estimators.ForwardMode(decay=0.99)
    ForwardMode(decay=0.99, normalize=True)
    """

    needs_full_precision = True
    stateful = True

    def __init__(self, decay=1.0, normalize=True):
        self.decay = check_fraction("decay", decay, high_closed=True)
        self.normalize = check_bool("normalize", normalize)

    def initial_state(self, weights, phi):
        """Zero tangents: `Z` then `V`, each `(phi elements, *weight shape)` per weight."""
        count = _phi_size(phi)
        zeros = [ops.zeros((count, *tuple(w.shape)), dtype=w.dtype) for w in weights]
        return zeros + [ops.zeros_like(z) for z in zeros]

    def check_training(self, optimizer, meta_every, lookahead_learning_rate, num_replicas):
        def reject(argument, value, expected):
            raise ValueError(
                f"Invalid value for argument `{argument}` with "
                f"meta_method=ForwardMode(...). Expected {expected}: the tangents follow "
                f"the real training step. Received: {argument}={value!r}. Change it, or "
                "use another meta_method."
            )

        if not isinstance(optimizer, keras.optimizers.SGD):
            reject("optimizer", type(optimizer).__name__, "a keras.optimizers.SGD")
        if optimizer.nesterov:
            reject("optimizer", "SGD(nesterov=True)", "SGD without Nesterov momentum")
        for name in _UNSUPPORTED_OPTIMIZER_SETTINGS:
            if getattr(optimizer, name, None):
                reject("optimizer", f"SGD({name}={getattr(optimizer, name)!r})", f"no {name}")
        if meta_every != 1:
            reject("meta_every", meta_every, "1 (the tangents move on every step)")
        if lookahead_learning_rate is not None:
            reject("lookahead_learning_rate", lookahead_learning_rate, "None")
        if num_replicas != 1:
            reject("num_replicas", num_replicas, "one replica (no tf.distribute strategy)")

    def estimate(self, problem):
        weights, phi = list(problem.weights), list(problem.phi)
        n = len(weights)
        if problem.state is None or len(problem.state) != 2 * n:
            raise ValueError(
                "ForwardMode needs its state (`problem.state`, from `initial_state`). "
                f"Received: {None if problem.state is None else len(problem.state)} tensors "
                f"for {n} weights."
            )
        tangents, velocities = list(problem.state[:n]), list(problem.state[n:])
        count = _phi_size(phi)

        # The meta-gradient at the current weights, through the carried tangents.
        def meta(point):
            value, total = problem.meta_objective(point[:n], point[n:])
            return total, value

        (_, meta_objective), meta_grads = backend.value_and_grad(
            meta, has_aux=True, wrt_weights=False
        )([*weights, *phi])
        carried = sum(
            ops.matmul(ops.reshape(z, (count, -1)), ops.reshape(g, (-1, 1)))[:, 0]
            for z, g in zip(tangents, meta_grads[:n])
        )
        if self.normalize:
            norm = ops.sqrt(sum(ops.sum(ops.square(z)) for z in tangents))
            carried = carried / ops.maximum(norm, ops.ones_like(norm))
        phi_grads = [
            g + ops.cast(ops.reshape(part, ops.shape(g)), g.dtype)
            for g, part in zip(meta_grads[n:], _split(carried, phi))
        ]

        # The training gradient and its tangents along (Z_p, e_p), phi element by element.
        def gradient(point):
            (loss, aux), local_grads = backend.value_and_grad(
                lambda w: problem.training_objective(w, point[n:]), has_aux=True
            )(point[:n])
            return local_grads, (loss, aux)

        updates = [[] for _ in weights]
        loss = aux = local_grads = None
        for p in range(count):
            direction = [z[p] for z in tangents] + _unit(phi, p)
            local_grads, local_tangents, (loss, aux) = backend.jvp(
                gradient, [*weights, *phi], direction, has_aux=True
            )
            for i, u in enumerate(backend.all_reduce_sum(local_tangents)):
                updates[i].append(u)
        if local_grads is None:  # no phi element: a plain gradient
            local_grads, (loss, aux) = gradient([*weights, *phi])
        grads = backend.all_reduce_sum(local_grads)

        state = self._step(tangents, velocities, updates, problem)
        return MetaGradient(phi_grads, meta_objective, loss, grads, local_grads, aux, state)

    def _step(self, tangents, velocities, updates, problem):
        """The tangents after the weight update (SGD with momentum)."""
        new_tangents, new_velocities = [], []
        for z, v, u in zip(tangents, velocities, updates):
            dtype = z.dtype
            lr = in_dtype(problem.learning_rate, dtype)
            momentum = in_dtype(problem.momentum, dtype)
            decay = in_dtype(self.decay, dtype)
            u = ops.cast(ops.stack(u), dtype) if u else ops.zeros_like(z)
            if problem.momentum:
                v = decay * (momentum * v - lr * u)
                z = decay * (z + v)
            else:
                z = decay * (z - lr * u)
            new_tangents.append(z)
            new_velocities.append(v)
        return new_tangents + new_velocities

    def get_config(self):
        return {"decay": self.decay, "normalize": self.normalize}


def _phi_size(phi):
    return sum(math.prod(tuple(p.shape)) for p in phi)


def _split(flat, phi):
    """`flat` (one value per phi element) cut into pieces shaped like `phi`."""
    pieces, start = [], 0
    for p in phi:
        size = math.prod(tuple(p.shape))
        pieces.append(flat[start : start + size])
        start += size
    return pieces


def _unit(phi, index):
    """The basis direction `e_index` over the phi elements, shaped like `phi`."""
    directions, start = [], 0
    for p in phi:
        size = math.prod(tuple(p.shape))
        flat = [1.0 if start + k == index else 0.0 for k in range(size)]
        directions.append(ops.reshape(ops.convert_to_tensor(flat, dtype=p.dtype), p.shape))
        start += size
    return directions
