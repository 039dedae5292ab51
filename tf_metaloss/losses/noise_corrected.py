"""Generalized cross-entropy blended with a learned forward noise correction."""

import keras
from keras import ops

from tf_metaloss.losses import functional
from tf_metaloss.losses.base import LearnableLoss
from tf_metaloss.validation import check_fraction
from tf_metaloss.validation import check_int


def updated_confusion(confusion, class_sums, class_counts, momentum):
    """Moves each row of `confusion` with data toward the mean prediction of its class.

    Args:
        confusion: `(classes, classes)`: row `i` is the distribution of the
            observed (noisy) label for samples of true class `i`.
        class_sums: `(classes, classes)`: row `i` sums the reference model's
            predicted probabilities over meta samples labelled `i`.
        class_counts: `(classes,)`: how many meta samples of each class.
        momentum: weight of the old row (exponential moving average).

    A pure function: rows of classes without a sample stay as they were.
    """
    seen = ops.expand_dims(class_counts > 0, -1)
    means = class_sums / ops.expand_dims(ops.maximum(class_counts, 1.0), -1)
    moved = momentum * confusion + (1.0 - momentum) * means
    return ops.where(seen, moved, confusion)


@keras.saving.register_keras_serializable(package="tf_metaloss")
class NoiseCorrectedLoss(LearnableLoss):
    """`(1 - c) * GCE_q + c * CE(p @ C, y)`, with a learned correction weight `c`.

    The default learnable loss for classification. It starts as generalized
    cross-entropy (`c = 0`, `q = 0.7`), which is robust to wrong labels, and
    the meta step learns how much to trust a *forward correction* (Patrini et
    al. 2017): cross-entropy of the noisy label under `p @ C`, where `C[i, j]`
    is the probability that a sample of true class `i` carries label `j`.
    Under class-dependent noise (a cat labelled dog more often than truck) the
    correction undoes the noise and `c` rises toward 1; under uniform noise the
    correction adds little and `c` stays near 0, at GCE.

    `C` is estimated online the way Gold Loss Correction (Hendrycks et al.
    2018) estimates it once: a reference copy of the model trained with plain
    cross-entropy on the noisy training labels predicts the clean-labelled meta
    samples, and row `i` of `C` is the moving average of its predictions for
    the meta samples of class `i`. `MetaModel` runs that reference (it reads
    `reference_objective`) and feeds its predictions to
    `update_from_reference`; the estimate is saved with the loss. `C` starts
    as the identity (no correction), as it is while the loss has no
    `num_classes`.

    Args:
        q: the exponent of the generalized cross-entropy term, in `(0, 1]`.
        correction: the starting weight `c` of the corrected term, in `[0, 1]`.
        num_classes: the number of classes (`None`: set by `MetaModel` from the
            model's output when the model is built).
        confusion_momentum: the moving average's weight of the old estimate
            at each meta step, in `[0, 1)`.
        **kwargs: see `LearnableLoss`.

    Example:

    >>> loss = tml.losses.NoiseCorrectedLoss(num_classes=3, from_logits=True)
    >>> y, logits = np.array([0, 1]), np.array([[2.0, 0.0, 0.0], [2.0, 0.0, 0.0]], "float32")
    >>> gce = tml.losses.FixedLoss("generalized_crossentropy", q=0.7, from_logits=True)
    >>> bool(np.isclose(loss(y, logits), gce(y, logits)))  # c = 0: GCE
    True
    >>> loss.parameter_names
    ['correction']

    Reference: Zhang and Sabuncu, "Generalized cross entropy loss for training
    deep neural networks with noisy labels" (NeurIPS 2018); Patrini et al.,
    "Making deep neural networks robust to label noise: a loss correction
    approach" (CVPR 2017); Hendrycks et al., "Using trusted data to train deep
    networks on labels corrupted by severe noise" (NeurIPS 2018).
    """

    reference_objective = "crossentropy"

    def __init__(self, q=0.7, correction=0.0, num_classes=None, confusion_momentum=0.9, **kwargs):
        super().__init__(**kwargs)
        self.q = check_fraction("q", q, high_closed=True)
        self.correction = check_fraction("correction", correction, True, True)
        check_int("num_classes", num_classes, minimum=2, allow_none=True)
        self.confusion_momentum = check_fraction("confusion_momentum", confusion_momentum, True)
        self.regression = False
        self.num_classes = None
        self.confusion = None
        self.add_parameter(
            "correction",
            shape=(),
            initializer=keras.initializers.Constant(self.correction),
            default_bounds=(0.0, 1.0),
        )
        if num_classes is not None:
            self.build_state(num_classes)

    def build_state(self, num_classes):
        """Creates the noise estimate `C` (the identity) for `num_classes` classes."""
        if self.confusion is not None:
            if num_classes != self.num_classes:
                raise ValueError(
                    "Invalid value for argument `num_classes` of `NoiseCorrectedLoss`. "
                    f"The loss was built for {self.num_classes} classes; the model "
                    f"outputs {num_classes}. Received: num_classes={num_classes}. Create "
                    "the loss with the model's number of classes (or without it)."
                )
            return
        self.num_classes = int(max(num_classes, 2))  # one output unit: binary
        self.confusion = self.loss_parameters.add_weight(
            name="confusion",
            shape=(self.num_classes, self.num_classes),
            initializer="identity",
            trainable=False,
            dtype=self.dtype,
        )

    def compute(self, parameters, y_true, y_pred):
        one_hot, log_probs, probs = functional.classification_terms(
            y_true, y_pred, self.from_logits
        )
        c = parameters["correction"]
        robust = -ops.expm1(self.q * ops.sum(one_hot * log_probs, axis=-1)) / self.q
        if self.confusion is None:
            # Not built yet (no `num_classes`): no estimate, no correction.
            noisy = ops.sum(one_hot * probs, axis=-1)
        else:
            confusion = ops.cast(self.confusion, probs.dtype)
            noisy = ops.sum(one_hot * ops.matmul(probs, confusion), axis=-1)
        corrected = -ops.log(ops.clip(noisy, functional.EPSILON, 1.0))
        return (1.0 - c) * robust + c * corrected

    def sample_weights(self, y_true, y_pred, parameter_values=None):
        """`p_true^q`: the per-sample weights of the GCE term relative to cross-entropy."""
        one_hot, log_probs, _ = functional.classification_terms(
            y_true, ops.convert_to_tensor(y_pred, dtype=self.dtype), self.from_logits
        )
        return ops.exp(self.q * ops.sum(one_hot * log_probs, axis=-1))

    # -- the noise estimate ------------------------------------------------
    def reference_statistics(self, y_true, reference_y_pred):
        """Per-class sums of the reference's probabilities and counts (to all-reduce)."""
        one_hot, _, probs = functional.classification_terms(
            y_true, ops.cast(reference_y_pred, self.dtype), self.from_logits
        )
        return [ops.matmul(ops.transpose(one_hot), probs), ops.sum(one_hot, axis=0)]

    def update_from_reference(self, statistics):
        """Moves `C` toward the reference's predictions (see `updated_confusion`)."""
        class_sums, class_counts = statistics
        self.confusion.assign(
            updated_confusion(
                ops.convert_to_tensor(self.confusion),
                class_sums,
                class_counts,
                self.confusion_momentum,
            )
        )

    def element_labels(self, name, size):
        return ["correction"]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "q": self.q,
                "correction": self.correction,
                "num_classes": self.num_classes,
                "confusion_momentum": self.confusion_momentum,
            }
        )
        return config
