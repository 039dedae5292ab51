"""Cross-entropy with learnable per-class logit offsets, weights and margins."""

import keras
import numpy as np
from keras import ops

from tf_metaloss.losses import functional
from tf_metaloss.losses.base import LearnableLoss
from tf_metaloss.validation import check_bool
from tf_metaloss.validation import check_int
from tf_metaloss.validation import invalid
from tf_metaloss.validation import is_number

# Default clip ranges: offsets and margins in logit units, weights relative to 1.
OFFSET_BOUNDS = (-10.0, 10.0)
TEMPERATURE_BOUNDS = (0.0, 10.0)
WEIGHT_BOUNDS = (0.01, 100.0)
MARGIN_BOUNDS = (0.0, 10.0)
# Up to this many classes, `parameter_summary` logs every class separately.
MAX_LOGGED_CLASSES = 100


@keras.saving.register_keras_serializable(package="tf_metaloss")
class ClassAdjustedLoss(LearnableLoss):
    """Cross-entropy with learned per-class offsets, weights and margins.

    The per-sample loss is

        w[y] / mean(w) * CE(softmax(z + b - m[y] * onehot(y)), y)

    with `z` the model's logits (log-probabilities with `from_logits=False`),
    `b` one logit offset per class, `m` one margin per class subtracted from
    the true class's logit (LDAM, Cao et al. 2019), and `w` one weight per
    class (normalised to mean 1, so the weights move the balance between
    classes, not the learning rate). Each of the three is optional and part
    of phi; at the start (`b = 0`, `m = 0`, `w = 1`) the loss is
    cross-entropy.

    With the training set's `class_counts`, the offsets include a learned
    temperature `tau` of the log prior: `b = tau * log(n / sum(n)) (+ b')`.
    It starts at `tau = 1`, logit adjustment (Menon et al. 2021), and the
    meta step, scored on a class-balanced meta set, sets how strongly the
    prior is corrected (one parameter for all classes). On balanced counts
    the term is the same for every class and changes nothing. This is the
    recommended configuration for imbalanced data whose class counts are
    known: `ClassAdjustedLoss(K, class_counts=np.bincount(y_train))`.

    Without counts, the meta step moves the per-class offsets from 0 toward
    what logit adjustment sets by hand (the frequent classes get positive
    offsets, so the model learns to lower their logits), more slowly and
    more noisily. See the README section "Imbalanced classes".

    Args:
        num_classes: the number of classes `K` (2 for a single-unit binary
            output).
        from_logits: whether the model outputs logits (default True).
        offsets: learn per-class logit offsets `b`. Default: True without
            `class_counts` or with `initial_offsets`, else False (the
            temperature plays their role; pass True to learn both).
        weights: learn per-class loss weights `w` (default False).
        margins: learn per-class margins `m` (default False).
        initial_offsets: optional list of `K` starting offsets (e.g.
            `log(class_prior)`, which starts as logit adjustment with
            `tau = 1`); default zeros.
        class_counts: optional list of `K` positive training-set counts per
            class (e.g. `np.bincount(y_train, minlength=K)`): learn the
            temperature `tau` of their log prior, starting at
            `initial_temperature`.
        initial_temperature: the starting `tau` (default 1.0: logit
            adjustment); only with `class_counts`.
        **kwargs: `regularization`, `bounds`, `reduction`, `name`, `dtype`
            (see `LearnableLoss`). By default offsets are kept in
            `[-10, 10]`, weights in `[0.01, 100]` and margins in `[0, 10]`.

    Example:

    >>> loss = tml.losses.ClassAdjustedLoss(num_classes=3)
    >>> y, logits = np.array([0, 2]), np.array([[2.0, 0.0, 1.0], [0.5, 0.0, 1.0]], "float32")
    >>> ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    >>> bool(np.isclose(loss(y, logits), ce(y, logits)))
    True
    >>> _ = loss.trainable_variables[0].assign([1.0, 0.0, -1.0])
    >>> bool(np.isclose(loss(y, logits), ce(y, logits + np.array([1.0, 0.0, -1.0]))))
    True
    >>> sorted(loss.parameter_summary())
    ['phi/offset/0', 'phi/offset/1', 'phi/offset/2']
    >>> adjusted = tml.losses.ClassAdjustedLoss(num_classes=3, class_counts=[50, 10, 5])
    >>> prior = np.log(np.array([50, 10, 5]) / 65)
    >>> bool(np.isclose(adjusted(y, logits), ce(y, logits + prior)))
    True
    >>> sorted(adjusted.parameter_summary())
    ['phi/tau']

    Reference: Menon et al., "Long-tail learning via logit adjustment" (ICLR
    2021); Cao et al., "Learning imbalanced datasets with label-distribution-
    aware margin loss" (NeurIPS 2019).
    """

    def __init__(
        self,
        num_classes,
        from_logits=True,
        offsets=None,
        weights=False,
        margins=False,
        initial_offsets=None,
        class_counts=None,
        initial_temperature=1.0,
        **kwargs,
    ):
        super().__init__(from_logits=from_logits, **kwargs)
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.class_counts = self._check_counts(class_counts)
        if offsets is None:
            offsets = self.class_counts is None or initial_offsets is not None
        if not is_number(initial_temperature) or not (
            TEMPERATURE_BOUNDS[0] <= initial_temperature <= TEMPERATURE_BOUNDS[1]
        ):
            invalid(
                "initial_temperature",
                initial_temperature,
                f"a number in [{TEMPERATURE_BOUNDS[0]:g}, {TEMPERATURE_BOUNDS[1]:g}]",
                "Pass 1.0 to start at logit adjustment",
            )
        self.initial_temperature = float(initial_temperature)
        self.offsets = check_bool("offsets", offsets)
        self.weights = check_bool("weights", weights)
        self.margins = check_bool("margins", margins)
        if not (offsets or weights or margins or self.class_counts is not None):
            invalid(
                "offsets",
                offsets,
                "at least one of `offsets`, `weights`, `margins` to be True, or `class_counts`",
                "Pass class_counts=np.bincount(y_train) (the recommended configuration) "
                "or offsets=True",
            )
        if initial_offsets is not None:
            if not offsets:
                invalid(
                    "initial_offsets",
                    initial_offsets,
                    "None when offsets=False",
                    "Drop `initial_offsets` or pass offsets=True",
                )
            values = list(np.ravel(np.asarray(initial_offsets, dtype=object)))
            if len(values) != self.num_classes or not all(is_number(v) for v in values):
                invalid(
                    "initial_offsets",
                    initial_offsets,
                    f"a list of {self.num_classes} finite numbers (one per class)",
                )
            initial_offsets = [float(v) for v in values]
        self.initial_offsets = initial_offsets
        self.regression = False
        shape = (self.num_classes,)
        # None without counts or with equal counts: then tau * log prior would
        # shift every logit alike, which softmax ignores, and the loss is
        # computed as cross-entropy exactly.
        self._log_prior = None
        if self.class_counts is not None:
            counts = np.asarray(self.class_counts, np.float64)
            if np.any(counts != counts[0]):
                self._log_prior = np.log(counts / counts.sum()).astype("float32")
            self.add_parameter(
                "tau",
                shape=(),
                initializer=keras.initializers.Constant(self.initial_temperature),
                default_bounds=TEMPERATURE_BOUNDS,
            )
        if offsets:
            start = initial_offsets if initial_offsets is not None else 0.0
            self.add_parameter(
                "offset",
                shape=shape,
                initializer=keras.initializers.Constant(start),
                default_bounds=OFFSET_BOUNDS,
            )
        if weights:
            self.add_parameter(
                "weight", shape=shape, initializer="ones", default_bounds=WEIGHT_BOUNDS
            )
        if margins:
            self.add_parameter(
                "margin", shape=shape, initializer="zeros", default_bounds=MARGIN_BOUNDS
            )

    def adjusted_logits(self, y_true, y_pred, parameters=None):
        """`z + b - m * onehot(y)`: the logits cross-entropy is applied to."""
        parameters = parameters or self.parameters()
        one_hot, log_probs = self._terms(y_true, y_pred)
        z = log_probs
        if self._adjusts_prior(parameters):
            log_prior = ops.convert_to_tensor(self._log_prior, dtype=z.dtype)
            z = z + ops.cast(parameters["tau"], z.dtype) * log_prior
        if "offset" in parameters:
            z = z + ops.cast(parameters["offset"], z.dtype)
        if "margin" in parameters:
            z = z - one_hot * ops.cast(parameters["margin"], z.dtype)
        return z

    def _adjusts_prior(self, parameters):
        """Whether tau moves the logits (it has a prior of unequal counts)."""
        return "tau" in parameters and self._log_prior is not None

    def _adjusts(self, parameters):
        """Whether the logits are changed (tau of an unequal prior, offsets or margins)."""
        return self._adjusts_prior(parameters) or "offset" in parameters or "margin" in parameters

    def class_weights(self, parameters=None):
        """`w / mean(w)` (ones without `weights=True`)."""
        parameters = parameters or self.parameters()
        if "weight" not in parameters:
            return ops.ones((self.num_classes,), dtype=self.dtype)
        w = parameters["weight"]
        return w / functional.mean(w, axis=-1)

    def compute(self, parameters, y_true, y_pred):
        one_hot, log_probs = self._terms(y_true, y_pred)
        if self._adjusts(parameters):
            z = self.adjusted_logits(y_true, y_pred, parameters)
            log_probs = ops.log_softmax(z, axis=-1)
        elif "tau" in parameters:
            # Equal counts: adds exactly 0, and keeps tau's gradient 0 (not None).
            log_probs = log_probs + 0.0 * ops.cast(parameters["tau"], log_probs.dtype)
        ce = -ops.sum(one_hot * log_probs, axis=-1)
        if "weight" in parameters:
            w = ops.cast(self.class_weights(parameters), ce.dtype)
            ce = ce * ops.sum(one_hot * w, axis=-1)
        return ce

    def _check_counts(self, class_counts):
        if class_counts is None:
            return None
        values = list(np.ravel(np.asarray(class_counts, dtype=object)))
        if len(values) != self.num_classes or not all(is_number(v) and v > 0 for v in values):
            invalid(
                "class_counts",
                class_counts,
                f"{self.num_classes} positive numbers (the training set's count per class)",
                f"Pass np.bincount(y_train, minlength={self.num_classes}); a class without "
                "training samples has no prior to correct",
            )
        return [float(v) for v in values]

    def _terms(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        classes = y_pred.shape[-1]
        if (
            classes is not None
            and classes != self.num_classes
            and not (classes == 1 and self.num_classes == 2)
        ):
            raise ValueError(
                "Invalid value for argument `y_pred`. Expected a last dimension of "
                f"num_classes={self.num_classes}. Received: y_pred with shape "
                f"{tuple(y_pred.shape)}. Pass num_classes={classes} to ClassAdjustedLoss."
            )
        one_hot, log_probs, _ = functional.classification_terms(y_true, y_pred, self.from_logits)
        return one_hot, log_probs

    def element_labels(self, name, size):
        return [f"{name}/{i}" for i in range(size)]

    def parameter_summary(self):
        """`phi/tau`, `phi/offset/<class>` etc.: every class's value (up to 100 classes)."""
        if self.num_classes > MAX_LOGGED_CLASSES:
            return super().parameter_summary()
        summary = {}
        for name, variable in zip(self.parameter_names, self.trainable_variables):
            if name == "tau":
                # Its value, not the variable: a log returned from a jitted JAX step
                # must be an array.
                summary["phi/tau"] = ops.convert_to_tensor(variable)
                continue
            labels = self.element_labels(name, self.num_classes)
            for i, label in enumerate(labels):
                summary[f"phi/{label}"] = variable[i]
        return summary

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "offsets": self.offsets,
                "weights": self.weights,
                "margins": self.margins,
                "initial_offsets": self.initial_offsets,
                "class_counts": self.class_counts,
                "initial_temperature": self.initial_temperature,
            }
        )
        return config
