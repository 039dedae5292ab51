"""The registry of compared methods: fixed baselines, learned losses, ablations, oracle.

A `Method` names one way of training the compared network; `METHODS` holds
them all by key, `METHOD_SETS` the groups the command line accepts
(`"baselines"`, `"learned"`, ...), and `resolve_methods` turns a user's list
into keys.

Every method says which data its weights train on (`train_data`):

- `"train+meta"`: the noisy training part plus the meta set (its clean labels,
  unless `meta_labels="noisy"`). Every fixed baseline, the ablations, the
  two-stage baselines and the oracle: they get the same labelled data as the
  meta-learned methods, so the comparison is fair.
- `"train"`: the noisy training part only. The meta-learned methods, which see
  the meta set through their meta objective instead.

The two-stage baselines (`training` `"finetune"`, `"glc"`, `"forward"`) are
the strongest methods that also use the clean meta set; see `runner`.

Example:

>>> method = tml.evaluation.methods.METHODS["gce"]
>>> method.label, method.group, method.train_data
('GCE (q=0.7)', 'baseline', 'train+meta')
>>> tml.evaluation.methods.METHODS["meta_loss"].train_data
'train'
"""

import dataclasses
from collections.abc import Callable

from tf_metaloss import losses as tml_losses
from tf_metaloss import validation
from tf_metaloss.evaluation import imbalance
from tf_metaloss.evaluation import probes as probes_lib
from tf_metaloss.losses.meta_loss import BLEND_BASE_LOSSES

GROUPS = ("baseline", "learned", "ablation", "oracle")
TRAININGS = ("fixed", "meta", "frozen", "schedule", "finetune", "glc", "forward", "retrain")
TWO_STAGE = ("finetune", "glc", "forward", "retrain")
TRAIN_DATA = ("train", "train+meta")
TRAIN_DATA_DESCRIPTIONS = {
    "train": (
        "the noisy training part (meta-learned: also the meta set less the guard's "
        "check data, with the loss at its start; phi from the meta objective)"
    ),
    "train+meta": "the noisy training part plus the meta set",
}


@dataclasses.dataclass(frozen=True)
class Method:
    """One way of training the model.

    Attributes:
        name: short key used on the command line and in files.
        label: human-readable name for tables and plots.
        group: `"baseline"`, `"learned"`, `"ablation"` or `"oracle"`.
        make_loss: `(config, seed) -> loss` (the model outputs logits); for
            the two-stage methods, the loss of their first stage.
        training: `"fixed"` (plain `keras.Model`), `"meta"` (`MetaModel`,
            phi meta-learned), `"frozen"` (`MetaModel`, `meta_every=0`),
            `"schedule"` (frozen, phi set by `LinearParameterSchedule`), or a
            two-stage baseline: `"finetune"` (train, then fine-tune on the
            meta set), `"glc"` (Gold Loss Correction), `"forward"` (forward
            correction with an anchor-point estimate of the noise) or
            `"retrain"` (meta-learn phi, then train a fresh network on
            train+meta with phi frozen at its mean over the second half of
            the first stage).
        clean_labels: train on the clean labels (the oracle).
        train_data: what the weights train on, `"train"` or `"train+meta"`
            (default: `"train"` for `training="meta"`, else `"train+meta"`).
        probes: hooks run after training, each `probe(model, loss, split) ->
            dict` (see `probes`); numbers go to the run's final metrics,
            anything else to its `diagnostics`.
        uses_class_counts: `make_loss` takes a third argument, the number of
            samples of each class in the data the method trains on (the
            imbalance baselines).
        make_callbacks: optional `(loss, config, class_counts) -> list` of
            Keras callbacks for the training (e.g. deferred re-weighting).
    """

    name: str
    label: str
    group: str
    make_loss: Callable
    training: str = "fixed"
    clean_labels: bool = False
    train_data: str = None
    probes: tuple = probes_lib.DEFAULT_PROBES
    uses_class_counts: bool = False
    make_callbacks: Callable = None

    def __post_init__(self):
        validation.check_choice("group", self.group, GROUPS)
        validation.check_choice("training", self.training, TRAININGS)
        if self.train_data is None:
            default = "train" if self.training == "meta" else "train+meta"
            object.__setattr__(self, "train_data", default)
        validation.check_choice("train_data", self.train_data, TRAIN_DATA)
        if self.training in TWO_STAGE and self.train_data != "train+meta":
            validation.invalid(
                "train_data",
                self.train_data,
                f"'train+meta' for the two-stage training {self.training!r}",
            )

    def describe(self):
        """A JSON-able description (recorded in the results)."""
        return {
            "name": self.name,
            "label": self.label,
            "group": self.group,
            "training": self.training,
            "train_data": self.train_data,
            "clean_labels": self.clean_labels,
        }


def _fixed(base_loss, **options):
    def make(config, seed):
        return tml_losses.FixedLoss(base_loss, from_logits=True, **options)

    return make


def _learnable(cls, seeded=False, **kwargs):
    def make(config, seed):
        extra = {"seed": seed} if seeded else {}
        return cls(from_logits=True, regularization=config.regularization, **kwargs, **extra)

    return make


METHODS = {
    m.name: m
    for m in (
        Method("ce", "cross-entropy", "baseline", _fixed("crossentropy")),
        Method("focal", "focal (gamma=2)", "baseline", _fixed("focal", gamma=2.0)),
        Method(
            "label_smoothing",
            "label smoothing (0.1)",
            "baseline",
            _fixed("label_smoothing", smoothing=0.1),
        ),
        Method("poly1", "PolyLoss-1 (eps=1)", "baseline", _fixed("poly1", epsilon=1.0)),
        Method(
            "gce",
            "GCE (q=0.7)",
            "baseline",
            _fixed("generalized_crossentropy", q=0.7),
        ),
        Method(
            "sce",
            "SCE (alpha=0.1, beta=1)",
            "baseline",
            _fixed("symmetric_crossentropy", alpha=0.1, beta=1.0),
        ),
        Method(
            "finetune",
            "CE, then fine-tuned on the meta set",
            "baseline",
            _fixed("crossentropy"),
            "finetune",
        ),
        Method(
            "glc",
            "Gold Loss Correction (GLC)",
            "baseline",
            _fixed("crossentropy"),
            "glc",
        ),
        Method(
            "forward",
            "forward correction, estimated T",
            "baseline",
            _fixed("crossentropy"),
            "forward",
        ),
        Method("meta_loss", "MetaLoss (meta)", "learned", _learnable(tml_losses.MetaLoss), "meta"),
        Method("blend", "BlendLoss (meta)", "learned", _learnable(tml_losses.BlendLoss), "meta"),
        Method(
            "polynomial",
            "PolynomialLoss deg 3 (meta)",
            "learned",
            _learnable(tml_losses.PolynomialLoss, degree=3),
            "meta",
        ),
        Method(
            "neural",
            "NeuralLoss (16) (meta)",
            "learned",
            _learnable(tml_losses.NeuralLoss, seeded=True, hidden_units=(16,)),
            "meta",
        ),
        Method(
            "sample_weighted",
            "SampleWeightedLoss (32) (meta)",
            "learned",
            _learnable(tml_losses.SampleWeightedLoss, seeded=True, hidden_units=(32,)),
            "meta",
        ),
        Method(
            "frozen",
            "MetaLoss frozen at phi_0",
            "ablation",
            _learnable(tml_losses.MetaLoss),
            "frozen",
        ),
        Method(
            "schedule",
            "MetaLoss blend, hand schedule",
            "ablation",
            _learnable(tml_losses.MetaLoss, base_losses=BLEND_BASE_LOSSES["classification"]),
            "schedule",
        ),
        Method(
            "oracle",
            "CE on clean labels (oracle)",
            "oracle",
            _fixed("crossentropy"),
            "fixed",
            clean_labels=True,
        ),
    )
}
DEFAULT_METHODS = tuple(METHODS)


def _class_weighted(class_weights):
    def make(config, seed, class_counts):
        return imbalance.AdjustedCrossEntropy(weights=class_weights(class_counts))

    return make


def _logit_adjusted(config, seed, class_counts):
    return imbalance.AdjustedCrossEntropy(
        offsets=imbalance.logit_adjustment_offsets(class_counts, tau=1.0)
    )


def _ldam(config, seed, class_counts):
    return imbalance.AdjustedCrossEntropy(margins=imbalance.ldam_margins(class_counts))


def _deferred_reweighting(loss, config, class_counts):
    start = int(imbalance.DRW_START_FRACTION * config.epochs)
    weights = imbalance.effective_number_weights(class_counts)
    return [imbalance.DeferredReweighting(loss, weights, start_epoch=start)]


def _class_adjusted(config, seed, class_counts):
    return tml_losses.ClassAdjustedLoss(
        len(class_counts), from_logits=True, regularization=config.regularization
    )


def _class_adjusted_tau(config, seed, class_counts):
    return tml_losses.ClassAdjustedLoss(
        len(class_counts),
        from_logits=True,
        regularization=config.regularization,
        class_counts=[int(c) for c in class_counts],
    )


# The methods of imbalanced data (`--imbalance`): the baselines a user would
# try and the learned per-class loss. Not in "all": they need per-class counts.
IMBALANCE_METHODS = {
    m.name: m
    for m in (
        Method(
            "cb_ce",
            "class-balanced CE (1/n_c)",
            "baseline",
            _class_weighted(imbalance.class_balanced_weights),
            uses_class_counts=True,
        ),
        Method(
            "logit_adjusted",
            "logit adjustment (tau=1)",
            "baseline",
            _logit_adjusted,
            uses_class_counts=True,
        ),
        Method(
            "ldam_drw",
            "LDAM-DRW",
            "baseline",
            _ldam,
            uses_class_counts=True,
            make_callbacks=_deferred_reweighting,
        ),
        Method(
            "class_adjusted",
            "ClassAdjustedLoss (meta)",
            "learned",
            _class_adjusted,
            "meta",
            uses_class_counts=True,
        ),
        Method(
            "class_adjusted_tau",
            "ClassAdjustedLoss, learned tau (retrain)",
            "learned",
            _class_adjusted_tau,
            "retrain",
            uses_class_counts=True,
        ),
    )
}
METHODS.update(IMBALANCE_METHODS)


def _formula(config, seed):
    # `CompareConfig` rejects the method "formula" without a formula.
    return tml_losses.FormulaLoss(config.formula, from_logits=True)


# A fixed loss written as a formula (`--formula`), e.g. the best of a
# `tf-metaloss search`, trained like the fixed baselines. Not in "all": it
# needs the formula.
METHODS["formula"] = Method("formula", "formula (--formula)", "baseline", _formula)


def configured(method, config):
    """`method` as `config` sets it up: the method "formula" labelled with its formula.

    Example:

    >>> config = tml.evaluation.CompareConfig(methods="formula", formula="neg(log(p_true))")
    >>> methods = tml.evaluation.methods
    >>> methods.configured(methods.METHODS["formula"], config).label
    'formula: -log(p_true)'
    """
    if method.name == "formula" and config.formula is not None:
        readable = tml_losses.expressions.Expression(config.formula).formula(digits=4)
        return dataclasses.replace(method, label=f"formula: {readable}")
    return method


METHOD_SETS = {
    "all": DEFAULT_METHODS,
    "baselines": tuple(
        n for n, m in METHODS.items() if m.group == "baseline" and n in DEFAULT_METHODS
    ),
    "learned": tuple(
        n for n, m in METHODS.items() if m.group == "learned" and n in DEFAULT_METHODS
    ),
    "ablations": tuple(n for n, m in METHODS.items() if m.group == "ablation"),
    "imbalance": ("ce", "focal", *IMBALANCE_METHODS),
}


def resolve_methods(spec):
    """Method names from a list or a comma-separated string (sets allowed).

    `"all"`, `"baselines"`, `"learned"` and `"ablations"` expand to groups.

    Example:

    >>> tml.evaluation.methods.resolve_methods("ce,gce,learned")[:3]
    ('ce', 'gce', 'meta_loss')
    """
    if isinstance(spec, str):
        spec = [s.strip() for s in spec.split(",") if s.strip()]
    names = []
    for item in spec:
        expanded = METHOD_SETS.get(item, (item,))
        for name in expanded:
            if name not in METHODS:
                raise ValueError(
                    "Invalid value for argument `methods`. Expected names from "
                    f"{list(METHODS)} or sets {list(METHOD_SETS)}. Received: "
                    f"{item!r}"
                )
            if name not in names:
                names.append(name)
    if not names:
        raise ValueError(
            "Invalid value for argument `methods`. Expected at least one "
            f"method. Received: methods={spec!r}"
        )
    return tuple(names)
