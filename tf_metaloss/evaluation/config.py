"""`CompareConfig`: everything a comparison depends on, checked and recorded.

Example:

>>> config = tml.evaluation.config.CompareConfig(dataset="digits", methods="ce,learned")
>>> config.methods[:3], config.seeds
(('ce', 'meta_loss', 'blend'), (0, 1, 2))
"""

import dataclasses

from tf_metaloss import validation
from tf_metaloss.evaluation import methods as methods_lib
from tf_metaloss.evaluation import models
from tf_metaloss.evaluation import noise as noise_lib
from tf_metaloss.losses import functional

EVAL_SPLITS = ("val", "holdout")
META_LABELS = ("clean", "noisy")


@dataclasses.dataclass
class CompareConfig:
    """Everything a comparison depends on (recorded in `results.json`).

    Attributes:
        dataset: `"digits"`, `"cifar10"` (TFDS), `"tfds:<name>"` or a `.npz`.
        noise_rate, noise_kind: label noise of the training labels
            (`"symmetric"` or `"asymmetric"`), see `inject_label_noise`.
        methods: method names (see `methods.METHODS`, `methods.resolve_methods`).
        seeds: one run per method and seed; the seed sets the initial weights,
            the data order, the label noise and the meta split.
        epochs, batch_size, learning_rate, momentum: the model's training
            (SGD with momentum), identical for every method.
        model: `"mlp"` (one hidden layer of `hidden_units`), `"cnn"` (conv32 -
            pool - conv64 - pool - dense `hidden_units`), `"small_cnn"`
            (conv16 - pool - conv32 - pool - dense) or `"auto"` (`"cnn"` for
            images, else `"mlp"`).
        train_subset: use only this many training samples (a fixed random
            subset, the same for every seed), `None` for all.
        eval_split: `"val"` (report) or `"holdout"` (tune: a
            `holdout_fraction` of the training split with clean labels).
        meta_fraction: share of the (remaining) training data held out as the
            meta set; `meta_labels` `"clean"` or `"noisy"`.
        meta_learning_rate, meta_every, meta_batch_size, meta_clipnorm,
            regularization, unroll_steps: the meta-learning settings (Adam on
            phi; `meta_batch_size=None` uses `batch_size`).
        meta_objective: the fixed loss the meta step minimises on the meta
            set, a base loss name (default `"mae_classification"`, the bounded MAE).
        schedule_final: final raw blend weights of the hand schedule, a dict
            `base loss name -> weight` (others 0).
        train_eval_size: training samples on which train accuracy (clean
            labels) is measured each epoch.
        convergence_fraction: convergence speed = epochs to reach this
            fraction of the final validation accuracy.
        command: the command line that produced the results (recorded).
    """

    dataset: str = "digits"
    noise_rate: float = 0.0
    noise_kind: str = "symmetric"
    methods: tuple = methods_lib.DEFAULT_METHODS
    seeds: tuple = (0, 1, 2)
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 0.05
    momentum: float = 0.9
    model: str = "auto"
    hidden_units: int = 128
    train_subset: int = None
    eval_split: str = "val"
    holdout_fraction: float = 0.2
    meta_fraction: float = 0.1
    meta_labels: str = "clean"
    meta_learning_rate: float = 0.01
    meta_every: int = 1
    meta_batch_size: int = None
    meta_objective: str = "mae_classification"
    meta_clipnorm: float = None
    regularization: float = 0.0
    unroll_steps: int = 1
    schedule_final: dict = dataclasses.field(
        default_factory=lambda: {"generalized_crossentropy": 1.0}
    )
    train_eval_size: int = 2000
    convergence_fraction: float = 0.9
    command: str = None

    def __post_init__(self):
        self.methods = methods_lib.resolve_methods(self.methods)
        self.seeds = validation.check_int_list("seeds", self.seeds, minimum=0, distinct=True)
        for name in ("epochs", "batch_size", "hidden_units", "train_eval_size", "unroll_steps"):
            validation.check_positive_int(name, getattr(self, name))
        validation.check_int(
            "meta_every",
            self.meta_every,
            minimum=1,
            expected="an integer >= 1 (the frozen ablation is its own method)",
        )
        for name in ("train_subset", "meta_batch_size"):
            validation.check_positive_int(name, getattr(self, name), allow_none=True)
        validation.check_choice("noise_kind", self.noise_kind, noise_lib.KINDS)
        validation.check_choice("eval_split", self.eval_split, EVAL_SPLITS)
        validation.check_choice("meta_labels", self.meta_labels, META_LABELS)
        validation.check_choice("model", self.model, models.MODELS)
        validation.check_choice(
            "meta_objective", self.meta_objective, functional.CLASSIFICATION_LOSSES
        )
        validation.check_fraction("noise_rate", self.noise_rate, low_closed=True, high_closed=True)
        validation.check_fraction("holdout_fraction", self.holdout_fraction)
        validation.check_fraction("meta_fraction", self.meta_fraction)
        validation.check_fraction(
            "convergence_fraction", self.convergence_fraction, high_closed=True
        )
        for name in ("learning_rate", "meta_learning_rate"):
            validation.check_positive(name, getattr(self, name))
        validation.check_positive("meta_clipnorm", self.meta_clipnorm, allow_none=True)
        validation.check_non_negative("momentum", self.momentum)
        validation.check_non_negative("regularization", self.regularization)
        if not isinstance(self.schedule_final, dict) or not self.schedule_final:
            validation.invalid(
                "schedule_final", self.schedule_final, "a non-empty dict {base loss name: weight}"
            )

    def to_dict(self):
        """A JSON-able dict of the settings."""
        return {
            f.name: (list(v) if isinstance(v, tuple) else v)
            for f in dataclasses.fields(self)
            for v in (getattr(self, f.name),)
        }
