"""Prototype loss families for the noisy-label research (not library code yet)."""

import keras
from keras import ops

from tf_metaloss import backend
from tf_metaloss.losses import functional
from tf_metaloss.losses import mlp
from tf_metaloss.losses.base import LearnableLoss

EPS = 1e-7


def _features(kind, y_true, y_pred, from_logits, base):
    one_hot, log_probs, probs = functional.classification_terms(y_true, y_pred, from_logits)
    ce = -ops.sum(one_hot * log_probs, axis=-1)
    feats = []
    for k in kind:
        if k == "loss":
            feats.append(ops.expand_dims(base, -1))
        elif k == "ce":
            feats.append(ops.expand_dims(ce, -1))
        elif k == "zce":
            mean = ops.mean(ce)
            std = ops.sqrt(ops.mean(ops.square(ce - mean)) + 1e-6)
            feats.append(ops.expand_dims((ce - mean) / std, -1))
        elif k == "rank":
            # fraction of batch samples with smaller CE (a percentile in [0,1])
            diff = ops.expand_dims(ce, 0) < ops.expand_dims(ce, 1)
            feats.append(ops.expand_dims(ops.mean(ops.cast(diff, ce.dtype), axis=1), -1))
        elif k == "ptrue":
            feats.append(ops.expand_dims(ops.sum(one_hot * probs, -1), -1))
        elif k == "margin":
            p_true = ops.sum(one_hot * probs, -1)
            other = ops.max(probs - one_hot * 2.0, axis=-1)
            feats.append(ops.expand_dims(p_true - other, -1))
        elif k == "label":
            feats.append(one_hot)
        elif k == "entropy":
            feats.append(ops.expand_dims(-ops.sum(probs * log_probs, -1), -1))
        else:
            raise ValueError(k)
    return ops.concatenate(feats, axis=-1)


FEATURE_DIM = {"loss": 1, "ce": 1, "zce": 1, "rank": 1, "ptrue": 1, "margin": 1, "entropy": 1}


class WeightNetLoss(LearnableLoss):
    """w_phi(features_i) * base_i, weights normalised to batch mean 1."""

    def __init__(
        self,
        base_loss="crossentropy",
        features=("loss",),
        hidden_units=(32,),
        normalize=True,
        num_classes=10,
        seed=None,
        floor=0.0,
        cap=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.cap = cap
        self.base_loss = base_loss
        self.regression = False
        self.features = tuple(features)
        self.hidden_units = tuple(hidden_units)
        self.normalize = normalize
        self.floor = floor
        dim = sum(num_classes if f == "label" else FEATURE_DIM[f] for f in self.features)
        mlp.add_mlp_parameters(self, dim, self.hidden_units, seed)

    def _weights_of(self, parameters, y_true, y_pred, base):
        feats = _features(self.features, y_true, y_pred, self.from_logits, base)
        w = ops.sigmoid(mlp.apply_mlp(parameters, feats, len(self.hidden_units)))
        if self.floor:
            w = self.floor + (1 - self.floor) * w
        if self.normalize:
            w = w / ops.maximum(ops.mean(w), EPS)
        if self.cap:
            w = ops.minimum(w, self.cap)
        return w

    def weights(self, parameters, y_true, y_pred, base):
        return self._weights_of(
            parameters,
            y_true,
            backend.stop_weight_gradient(y_pred),
            backend.stop_weight_gradient(base),
        )

    def sample_weights(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
        base = functional.get(self.base_loss)(y_true, y_pred, from_logits=self.from_logits)
        return self.weights(self.parameters(), y_true, y_pred, base)

    def compute(self, parameters, y_true, y_pred):
        base = functional.get(self.base_loss)(y_true, y_pred, from_logits=self.from_logits)
        return self.weights(parameters, y_true, y_pred, base) * base


class TransitionLoss(LearnableLoss):
    """Forward correction CE(p @ T, y_noisy), T row-stochastic = softmax(phi rows)."""

    def __init__(self, num_classes=10, diagonal=0.9, base="ce", q=0.7, **kwargs):
        super().__init__(**kwargs)
        self.regression = False
        self.base = base
        self.q = q
        self.num_classes = num_classes
        c = num_classes
        off = (1 - diagonal) / (c - 1)
        import numpy as np

        init = np.full((c, c), np.log(off), "float32")
        np.fill_diagonal(init, np.log(diagonal))
        self.add_parameter("transition_logits", (c, c), keras.initializers.Constant(init))

    def transition(self, parameters=None):
        return ops.softmax((parameters or self.parameters())["transition_logits"], axis=-1)

    def compute(self, parameters, y_true, y_pred):
        one_hot, _, probs = functional.classification_terms(y_true, y_pred, self.from_logits)
        t = self.transition(parameters)
        noisy = ops.matmul(probs, t)
        p_y = ops.maximum(ops.sum(one_hot * noisy, -1), EPS)
        if self.base == "gce":
            return (1.0 - ops.power(p_y, self.q)) / self.q
        return -ops.log(p_y)


class BootstrapNetLoss(LearnableLoss):
    """CE against (1-b_i) y + b_i stopgrad(p): per-sample label correction."""

    def __init__(
        self,
        features=("ce",),
        hidden_units=(32,),
        num_classes=10,
        seed=None,
        init_bias=-3.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.regression = False
        self.features = tuple(features)
        self.hidden_units = tuple(hidden_units)
        dim = sum(num_classes if f == "label" else FEATURE_DIM[f] for f in self.features)
        mlp.add_mlp_parameters(self, dim, self.hidden_units, seed)
        self.init_bias = init_bias

    def compute(self, parameters, y_true, y_pred):
        one_hot, log_probs, probs = functional.classification_terms(
            y_true, y_pred, self.from_logits
        )

        def beta_of(yp):
            feats = _features(self.features, y_true, yp, self.from_logits, None)
            return ops.sigmoid(
                mlp.apply_mlp(parameters, feats, len(self.hidden_units)) + self.init_bias
            )

        beta = beta_of(backend.stop_weight_gradient(y_pred))
        soft = backend.stop_weight_gradient(probs)
        b = ops.expand_dims(beta, -1)
        target = (1 - b) * one_hot + b * soft
        return -ops.sum(target * log_probs, -1)


class MonotoneWeightLoss(LearnableLoss):
    """w_i = sigmoid(b_{y_i} - slope * z_i) normalised to mean 1; z = batch-standardised CE.

    slope >= 0: a sample never gets more weight for a higher (relative) loss.
    """

    def __init__(
        self,
        base_loss="crossentropy",
        num_classes=10,
        feature="zce",
        class_bias=True,
        init_slope=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.regression = False
        self.base_loss = base_loss
        self.feature = feature
        self.class_bias = class_bias
        self.add_parameter(
            "slope", (), keras.initializers.Constant(init_slope), default_bounds=(0.0, None)
        )
        self.add_parameter("bias", (num_classes,) if class_bias else (1,), "zeros")

    def _weights_of(self, parameters, y_true, y_pred, base):
        one_hot, log_probs, probs = functional.classification_terms(
            y_true, y_pred, self.from_logits
        )
        z = _features((self.feature,), y_true, y_pred, self.from_logits, base)[:, 0]
        if self.class_bias:
            b = ops.sum(one_hot * parameters["bias"], -1)
        else:
            b = parameters["bias"][0]
        w = ops.sigmoid(b - parameters["slope"] * z)
        return w / ops.maximum(ops.mean(w), EPS)

    def weights(self, parameters, y_true, y_pred, base):
        return self._weights_of(
            parameters,
            y_true,
            backend.stop_weight_gradient(y_pred),
            backend.stop_weight_gradient(base),
        )

    def sample_weights(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
        base = functional.get(self.base_loss)(y_true, y_pred, from_logits=self.from_logits)
        return self.weights(self.parameters(), y_true, y_pred, base)

    def compute(self, parameters, y_true, y_pred):
        base = functional.get(self.base_loss)(y_true, y_pred, from_logits=self.from_logits)
        return self.weights(parameters, y_true, y_pred, base) * base


class LearnedQLoss(LearnableLoss):
    """Generalized cross-entropy (1 - p^q)/q with q learned in [q_min, 1]; optional per class."""

    def __init__(self, q=0.7, per_class=False, num_classes=10, q_min=0.001, q_max=1.0, **kwargs):
        super().__init__(**kwargs)
        self.regression = False
        self.per_class = per_class
        shape = (num_classes,) if per_class else ()
        self.add_parameter(
            "q", shape, keras.initializers.Constant(max(q, q_min)), default_bounds=(q_min, q_max)
        )

    def compute(self, parameters, y_true, y_pred):
        one_hot, log_probs, probs = functional.classification_terms(
            y_true, y_pred, self.from_logits
        )
        q = parameters["q"]
        if self.per_class:
            q = ops.sum(one_hot * q, -1)
        log_p = ops.sum(one_hot * log_probs, -1)
        # (1 - exp(q log p)) / q, stable for small q
        return -ops.expm1(q * log_p) / q


class SmallLossLoss(LearnableLoss):
    """Keeps the lowest-loss samples of each batch: w_i = sigmoid((q - l_i)/temp), q the
    batch quantile of the loss at level keep = 1 - drop; drop is a parameter."""

    def __init__(self, base_loss="crossentropy", drop=0.0, temperature=0.05, **kwargs):
        super().__init__(**kwargs)
        self.regression = False
        self.base_loss = base_loss
        self.temperature = temperature
        self.add_parameter("drop", (), keras.initializers.Constant(drop), default_bounds=(0.0, 0.9))

    def _weights_of(self, parameters, y_true, y_pred, base):
        n = ops.shape(base)[0]
        keep = 1.0 - parameters["drop"]
        sorted_l = ops.sort(base)
        # fractional rank interpolation of the quantile
        pos = keep * ops.cast(n - 1, base.dtype)
        lo = ops.cast(ops.floor(pos), "int32")
        hi = ops.minimum(lo + 1, n - 1)
        frac = pos - ops.cast(lo, base.dtype)
        q = ops.take(sorted_l, lo) * (1 - frac) + ops.take(sorted_l, hi) * frac
        scale = ops.maximum(ops.std(base), 1e-3)
        w = ops.sigmoid((q - base) / (self.temperature * scale))
        return w / ops.maximum(ops.mean(w), EPS)

    def weights(self, parameters, y_true, y_pred, base):
        return self._weights_of(
            parameters,
            y_true,
            backend.stop_weight_gradient(y_pred),
            backend.stop_weight_gradient(base),
        )

    def sample_weights(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
        base = functional.get(self.base_loss)(y_true, y_pred, from_logits=self.from_logits)
        return self.weights(self.parameters(), y_true, y_pred, base)

    def compute(self, parameters, y_true, y_pred):
        base = functional.get(self.base_loss)(y_true, y_pred, from_logits=self.from_logits)
        return self.weights(parameters, y_true, y_pred, base) * base
