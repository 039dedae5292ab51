"""`CompareConfig`: everything a comparison depends on, checked and recorded; presets.

A preset is a named set of settings (`PRESETS`): the full-length benchmark
`"cifar10-dev-full"`, the short smoke configurations `"digits-smoke"` and
`"cifar10-dev-smoke"`, and the text benchmark `"sst2-tiny"`.
`CompareConfig.from_preset(name, **overrides)` starts from one; every setting
can still be overridden.

Example:

>>> config = tml.evaluation.config.CompareConfig(dataset="digits", methods="ce,learned")
>>> config.methods[:3], config.seeds
(('ce', 'meta_loss', 'blend'), (0, 1, 2))
>>> full = tml.evaluation.CompareConfig.from_preset(
...     "cifar10-dev-full", dataset="cifar10_dev.npz", seeds=(0,), methods="glc")
>>> full.model, full.hidden_units, full.epochs, full.batch_size, full.train_subset, full.seeds
('cnn', 128, 30, 128, None, (0,))
"""

import dataclasses

from tf_metaloss import validation
from tf_metaloss.evaluation import methods as methods_lib
from tf_metaloss.evaluation import models
from tf_metaloss.evaluation import noise as noise_lib
from tf_metaloss.losses import expressions
from tf_metaloss.losses import functional
from tf_metaloss.meta import estimators

EVAL_SPLITS = ("val", "holdout")
OPTIMIZERS = ("sgd", "adam")
META_LABELS = ("clean", "noisy")
META_SAMPLERS = ("shuffle", "class_balanced")

# The methods of the full-length benchmark: every fixed robust loss, the
# baselines that also use the clean meta set (CE and GCE trained on noisy +
# clean data, fine-tuning, GLC), forward correction with an estimated noise
# matrix, the default learned loss, the sample-weighting family (its weights
# give the clean-vs-corrupted AUC) and the oracle.
FULL_BENCHMARK_METHODS = (
    "ce",
    "focal",
    "label_smoothing",
    "poly1",
    "gce",
    "sce",
    "finetune",
    "glc",
    "forward",
    "meta_loss",
    "sample_weighted",
    "oracle",
)


# The methods of the SST-2 benchmark: the fixed baselines of every image run,
# the default learned loss and the sample-weighting family (noise-aware: its
# weights give the clean-vs-corrupted AUC).
SST2_METHODS = ("ce", "gce", "meta_loss", "sample_weighted")


@dataclasses.dataclass(frozen=True)
class Preset:
    """Named settings for `CompareConfig.from_preset` and `tf-metaloss compare --preset`.

    Attributes:
        description: what the configuration is for.
        settings: `CompareConfig` arguments.
        dataset_hint: when `settings` has no `dataset`, what the user must
            pass (a local file the library does not ship).
    """

    description: str
    settings: dict
    dataset_hint: str = None


# The settings of docs/RESULTS.md, chosen on holdouts of the training data.
_RESULTS_META = {
    "meta_learning_rate": 0.01,
    "meta_every": 1,
    "meta_objective": "mae_classification",
    "schedule_final": {"mae_classification": 1.0},
}

# The meta learning rate of ClassAdjustedLoss on long-tailed data, chosen on a
# holdout of the training split (scripts/imbalance/screen.py, docs/RESULTS.md
# "Imbalanced classes").
IMBALANCE_META_LEARNING_RATE = 0.05

PRESETS = {
    "cifar10-dev-full": Preset(
        "The full-length benchmark: the whole cifar10_dev training split (9,000 "
        "training + 1,000 meta images), conv32-pool-conv64-pool-dense128, 30 epochs of "
        "batch 128, SGD 0.05 momentum 0.9, 3 seeds, evaluated on the file's 2,000 "
        "validation images.",
        {
            "model": "cnn",
            "hidden_units": 128,
            "batch_size": 128,
            "epochs": 30,
            "learning_rate": 0.05,
            "momentum": 0.9,
            "meta_fraction": 0.1,
            "train_subset": None,
            "eval_split": "val",
            "seeds": (0, 1, 2),
            "methods": FULL_BENCHMARK_METHODS,
            **_RESULTS_META,
        },
        dataset_hint="the path of cifar10_dev.npz (10,000 training and 2,000 validation "
        "CIFAR-10 images), e.g. --dataset /path/cifar10_dev.npz",
    ),
    "cifar10-dev-smoke": Preset(
        "A short smoke run on cifar10_dev: a fixed 5,000-image training subset, "
        "conv16-pool-conv32-pool-dense64, 20 epochs of batch 128.",
        {
            "model": "small_cnn",
            "hidden_units": 64,
            "batch_size": 128,
            "epochs": 20,
            "learning_rate": 0.05,
            "momentum": 0.9,
            "meta_fraction": 0.1,
            "train_subset": 5000,
            "eval_split": "val",
            "seeds": (0, 1, 2),
            **_RESULTS_META,
        },
        dataset_hint="the path of cifar10_dev.npz, e.g. --dataset /path/cifar10_dev.npz",
    ),
    "sst2-tiny": Preset(
        "SST-2 sentiment with a tiny BERT trained from scratch, sized for 2 CPU cores: a "
        "fixed 4,000-sentence subset of the GLUE training split (3,600 training + 400 "
        "meta), a WordPiece vocabulary learned from it, sequences of 64 tokens, 2 "
        "transformer layers of width 64 (2 heads), 4 epochs of batch 64, Adam 1e-3 "
        "(lookahead steps of SGD 0.05), 3 seeds, evaluated on the 872 dev sentences.",
        {
            "model": "tiny_bert",
            "hidden_units": 64,
            "batch_size": 64,
            "epochs": 4,
            "optimizer": "adam",
            "learning_rate": 1e-3,
            "momentum": 0.9,
            "meta_fraction": 0.1,
            "train_subset": 4000,
            "vocabulary_size": 8000,
            "sequence_length": 64,
            "eval_split": "val",
            "seeds": (0, 1, 2),
            "methods": SST2_METHODS,
            **_RESULTS_META,
            "lookahead_learning_rate": 0.05,
        },
        dataset_hint="'sst2' (TFDS glue/sst2, downloaded) or the directory holding "
        "sst2_train.jsonl and sst2_dev.jsonl, e.g. --dataset /path/to/glue_sst2",
    ),
    "cifar10-dev-imbalance": Preset(
        "Long-tailed cifar10_dev (--imbalance RATIO, 50 unless given): a balanced meta set "
        "of 20 images per class, the rest subsampled to n_c = n_max * RATIO^(-c/9); "
        "conv16-pool-conv32-pool-dense64, 20 epochs of batch 128, SGD 0.05 momentum 0.9; "
        "the imbalance methods, ClassAdjustedLoss meta-learned with meta Adam "
        f"{IMBALANCE_META_LEARNING_RATE:g} and cross-entropy on the meta set; 3 seeds, "
        "evaluated on the 2,000 (balanced) validation images.",
        {
            "model": "small_cnn",
            "hidden_units": 64,
            "batch_size": 128,
            "epochs": 20,
            "learning_rate": 0.05,
            "momentum": 0.9,
            "imbalance_ratio": 50.0,
            "meta_per_class": 20,
            "eval_split": "val",
            "seeds": (0, 1, 2),
            "methods": methods_lib.METHOD_SETS["imbalance"],
            "meta_learning_rate": IMBALANCE_META_LEARNING_RATE,
            "meta_every": 1,
            "meta_objective": "crossentropy",
        },
        dataset_hint="the path of cifar10_dev.npz, e.g. --dataset /path/cifar10_dev.npz",
    ),
    "digits-smoke": Preset(
        "A short smoke run on scikit-learn's digits: an MLP with 128 hidden units, "
        "60 epochs of batch 64.",
        {
            "dataset": "digits",
            "model": "mlp",
            "hidden_units": 128,
            "batch_size": 64,
            "epochs": 60,
            "learning_rate": 0.05,
            "momentum": 0.9,
            "meta_fraction": 0.1,
            "eval_split": "val",
            "seeds": (0, 1, 2),
            **_RESULTS_META,
        },
    ),
}


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
        epochs, batch_size, learning_rate, momentum, optimizer: the model's
            training, identical for every method: `optimizer` `"sgd"` (SGD
            with `momentum`) or `"adam"` (Adam, Keras's betas; `momentum` is
            not used). The meta step's lookahead is an SGD step at the
            optimizer's learning rate, or at `lookahead_learning_rate`.
        model: `"mlp"` (one hidden layer of `hidden_units`), `"cnn"` (conv32 -
            pool - conv64 - pool - dense `hidden_units`), `"small_cnn"`
            (conv16 - pool - conv32 - pool - dense), `"tiny_bert"` (text: a
            2-layer BERT of width `hidden_units` trained from scratch, see
            `models.build_model`) or `"auto"` (`"tiny_bert"` for text, `"cnn"`
            for images, else `"mlp"`).
        vocabulary_size, sequence_length: text only: the largest WordPiece
            vocabulary learned from the training sentences, and the tokens per
            sentence (see `datasets.tokenize`).
        train_subset: use only this many training samples (a fixed random
            subset, the same for every seed), `None` for all.
        eval_split: `"val"` (report) or `"holdout"` (tune: a
            `holdout_fraction` of the training split with clean labels).
        meta_fraction: share of the (remaining) training data held out as the
            meta set; `meta_labels` `"clean"` or `"noisy"`.
        imbalance_ratio: `None` (the data as it is), or a long-tailed training
            part: after a class-balanced meta set of `meta_per_class` samples
            per class is held out, class `c` keeps `n_max *
            ratio^(-c / (K - 1))` samples (seeded; `n_max` the smallest
            class's remaining count), see `imbalance.long_tailed_indices`.
            The evaluation set stays as it is (balanced). `meta_fraction` is
            then not used.
        meta_per_class: with `imbalance_ratio`, the meta set's samples per
            class (`None`: `imbalance.DEFAULT_META_PER_CLASS`, 20).
        meta_learning_rate, meta_every, meta_batch_size, meta_clipnorm,
            regularization, unroll_steps, lookahead_learning_rate: the
            meta-learning settings (Adam on phi; `meta_batch_size=None` uses
            `batch_size`; `lookahead_learning_rate=None` uses
            `learning_rate`).
        meta_sampler: how meta batches are drawn from the meta set:
            `"shuffle"` (random batches) or `"class_balanced"` (every class
            equally often in every batch, `tml.meta.data.class_balanced_dataset`).
        meta_objective: the fixed loss the meta step minimises on the meta
            set, a base loss name (default `"mae_classification"`, the bounded MAE).
        meta_method: how the meta-gradient is computed (the meta-learned
            methods' `MetaModel.compile(meta_method=...)`): a name from
            `tml.meta.estimators.ALIASES` (`"second_order"`, the default,
            `"first_order"`, `"neumann"`, `"conjugate_gradient"`,
            `"finite_difference"`, each with its defaults), an estimator or
            its config (`tml.meta.estimators.serialize`). Recorded as the name
            or the estimator's full config. `unroll_steps` applies to
            `"second_order"` and `"first_order"` only.
        formula: the loss of the method `"formula"`: an expression of
            `tml.losses.expressions` (function-call syntax or its JSON nested
            list), e.g. the best formula of a `tf-metaloss search`; recorded
            in the function-call syntax.
        schedule_final: final raw blend weights of the hand schedule, a dict
            `base loss name -> weight` (others 0).
        finetune_epochs, finetune_learning_rate: the second stage of the
            `finetune` baseline: SGD (same momentum) on the meta set only.
        train_eval_size: training samples on which train accuracy (clean
            labels) is measured each epoch.
        convergence_fraction: convergence speed = epochs to reach this
            fraction of the final validation accuracy.
        preset: the name of the preset the settings started from (recorded;
            see `from_preset`).
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
    optimizer: str = "sgd"
    model: str = "auto"
    hidden_units: int = 128
    vocabulary_size: int = 8000
    sequence_length: int = 64
    train_subset: int = None
    eval_split: str = "val"
    holdout_fraction: float = 0.2
    meta_fraction: float = 0.1
    meta_labels: str = "clean"
    imbalance_ratio: float = None
    meta_per_class: int = None
    meta_learning_rate: float = 0.01
    meta_every: int = 1
    meta_batch_size: int = None
    meta_sampler: str = "shuffle"
    meta_objective: str = "mae_classification"
    meta_clipnorm: float = None
    regularization: float = 0.0
    unroll_steps: int = 1
    meta_method: object = "second_order"
    lookahead_learning_rate: float = None
    formula: str = None
    schedule_final: dict = dataclasses.field(
        default_factory=lambda: {"generalized_crossentropy": 1.0}
    )
    finetune_epochs: int = 10
    finetune_learning_rate: float = 0.01
    train_eval_size: int = 2000
    convergence_fraction: float = 0.9
    preset: str = None
    command: str = None

    @classmethod
    def from_preset(cls, name, **overrides):
        """A config from the preset `name` (see `PRESETS`), with `overrides` on top."""
        validation.check_choice("preset", name, tuple(PRESETS))
        preset = PRESETS[name]
        settings = {**preset.settings, **overrides, "preset": name}
        if settings.get("dataset") is None:
            validation.invalid(
                "dataset", None, f"a dataset for the preset {name!r}: {preset.dataset_hint}"
            )
        return cls(**settings)

    def __post_init__(self):
        self.methods = methods_lib.resolve_methods(self.methods)
        self.seeds = validation.check_int_list("seeds", self.seeds, minimum=0, distinct=True)
        for name in (
            "epochs",
            "batch_size",
            "hidden_units",
            "train_eval_size",
            "unroll_steps",
            "finetune_epochs",
            "vocabulary_size",
            "sequence_length",
        ):
            validation.check_positive_int(name, getattr(self, name))
        validation.check_int(
            "meta_every",
            self.meta_every,
            minimum=1,
            expected="an integer >= 1 (the frozen ablation is its own method)",
        )
        for name in ("train_subset", "meta_batch_size", "meta_per_class"):
            validation.check_positive_int(name, getattr(self, name), allow_none=True)
        validation.check_choice("noise_kind", self.noise_kind, noise_lib.KINDS)
        validation.check_choice("eval_split", self.eval_split, EVAL_SPLITS)
        validation.check_choice("meta_labels", self.meta_labels, META_LABELS)
        validation.check_choice("meta_sampler", self.meta_sampler, META_SAMPLERS)
        validation.check_choice("model", self.model, models.MODELS)
        validation.check_choice("optimizer", self.optimizer, OPTIMIZERS)
        validation.check_choice(
            "meta_objective", self.meta_objective, functional.CLASSIFICATION_LOSSES
        )
        validation.check_fraction("noise_rate", self.noise_rate, low_closed=True, high_closed=True)
        validation.check_fraction("holdout_fraction", self.holdout_fraction)
        validation.check_fraction("meta_fraction", self.meta_fraction)
        if self.imbalance_ratio is not None and (
            not validation.is_number(self.imbalance_ratio) or self.imbalance_ratio < 1
        ):
            validation.invalid(
                "imbalance_ratio",
                self.imbalance_ratio,
                "None or a number >= 1 (the most frequent class's count over the rarest's)",
            )
        if self.meta_per_class is not None and self.imbalance_ratio is None:
            validation.invalid(
                "meta_per_class",
                self.meta_per_class,
                "None without imbalance_ratio (meta_fraction sets the meta set then)",
                "Pass imbalance_ratio, or drop meta_per_class",
            )
        validation.check_fraction(
            "convergence_fraction", self.convergence_fraction, high_closed=True
        )
        if self.preset is not None:
            validation.check_choice("preset", self.preset, tuple(PRESETS))
        for name in ("learning_rate", "meta_learning_rate", "finetune_learning_rate"):
            validation.check_positive(name, getattr(self, name))
        validation.check_positive("meta_clipnorm", self.meta_clipnorm, allow_none=True)
        self.meta_method = check_meta_method(self.meta_method, self.unroll_steps)
        validation.check_positive(
            "lookahead_learning_rate", self.lookahead_learning_rate, allow_none=True
        )
        validation.check_non_negative("momentum", self.momentum)
        validation.check_non_negative("regularization", self.regularization)
        if self.formula is not None:
            self.formula = check_formula(self.formula)
        if "formula" in self.methods and self.formula is None:
            validation.invalid(
                "formula",
                None,
                "a loss formula when methods include 'formula'",
                "Pass formula (`--formula`), or drop 'formula' from methods",
            )
        if not isinstance(self.schedule_final, dict) or not self.schedule_final:
            validation.invalid(
                "schedule_final", self.schedule_final, "a non-empty dict {base loss name: weight}"
            )

    def estimator(self):
        """The `tml.meta.estimators.Estimator` that `meta_method` and `unroll_steps` name."""
        if self.meta_method in estimators.UNROLLED_ALIASES:
            return estimators.Unrolled(
                steps=self.unroll_steps, first_order=self.meta_method == "first_order"
            )
        return estimators.get(self.meta_method)

    def to_dict(self):
        """A JSON-able dict of the settings."""
        return {
            f.name: (list(v) if isinstance(v, tuple) else v)
            for f in dataclasses.fields(self)
            for v in (getattr(self, f.name),)
        }


def check_formula(formula):
    """A classification loss formula in the function-call syntax, or the `ValueError`
    naming `formula`.

    Example:

    >>> tml.evaluation.config.check_formula('["neg", ["log", ["add", "p_true", 0.5]]]')
    'neg(log(add(p_true, 0.5)))'
    """
    try:
        expression = expressions.Expression(formula)
    except ValueError as error:
        validation.invalid(
            "formula",
            formula,
            "a loss formula in the function-call syntax (e.g. 'neg(log(add(p_true, 0.3)))') "
            "or its JSON list",
            getattr(error, "fix", None) or str(error),
        )
    if expression.regression:
        validation.invalid(
            "formula",
            formula,
            "a classification formula (over p_true, log_p_true, margin, ...)",
            "The compared networks are classifiers",
        )
    return expression.to_string()


def check_meta_method(meta_method, unroll_steps=1):
    """`meta_method` in its JSON-able form: a name of `estimators.ALIASES`, or
    the estimator's full config (so equal estimators record equal configs).

    Raises the estimators' `ValueError` (naming `meta_method`, what it
    accepts and the value received) for anything `tml.meta.estimators.get`
    rejects, and when `unroll_steps` is set for an estimator it does not
    apply to.

    Example:

    >>> from tf_metaloss.evaluation.config import check_meta_method
    >>> check_meta_method("neumann")
    'neumann'
    >>> check_meta_method(tml.meta.estimators.Neumann(terms=2))["config"]
    {'terms': 2, 'alpha': None, 'inner_steps': 0}
    """
    named = isinstance(meta_method, str) and meta_method in estimators.ALIASES
    if not named:
        meta_method = estimators.serialize(estimators.get(meta_method))
    if unroll_steps != 1 and not (named and meta_method in estimators.UNROLLED_ALIASES):
        raise ValueError(
            "Arguments `unroll_steps` and `meta_method` conflict: "
            f"unroll_steps={unroll_steps} applies to meta_method in "
            f"{list(estimators.UNROLLED_ALIASES)} only. Received: "
            f"meta_method={meta_method!r}. Use unroll_steps=1, or give the "
            "estimator its own settings."
        )
    return meta_method
