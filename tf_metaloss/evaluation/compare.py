"""Does the learned loss win? Train one model under many losses and compare.

`run_comparison(config)` trains the same model (same architecture, initial
weights, optimizer, data order and seed) once per method and seed:

- fixed baselines (a plain `keras.Model` with a `FixedLoss`): cross-entropy,
  focal (gamma=2), label smoothing (0.1), PolyLoss-1, generalized
  cross-entropy (q=0.7), symmetric cross-entropy (alpha=0.1, beta=1);
- every learnable family meta-learned in a `MetaModel` (`MetaLoss`,
  `BlendLoss`, `PolynomialLoss`, `NeuralLoss`, `SampleWeightedLoss`);
- ablations of `MetaLoss`: frozen at its initial phi (`meta_every=0`), and a
  hand schedule annealing phi linearly from its start to a chosen final value;
- an oracle for noisy labels: cross-entropy on the clean labels.

Labels are corrupted with `inject_label_noise`; a small held-out slice of the
training data is the meta set (clean labels, as in Meta-Weight-Net, or noisy).
Every method trains on the rest (the meta-learned ones also see the meta
set's labels, through the meta objective only). Every
metric is measured on clean labels: by default on the validation split, or,
for choosing settings, on a holdout of the training split
(`eval_split="holdout"`) so the validation split is never looked at.

`write_results(results, directory)` writes `results.json`, `results.md` (a
Markdown table of mean +- std over seeds), `learning_curves.png` and `phi.png`.

Example:

>>> compare = tml.evaluation.compare
>>> config = compare.CompareConfig(
...     dataset="digits", noise_rate=0.4, epochs=2, methods=("ce", "meta_loss"), seeds=(0,))
>>> results = compare.run_comparison(config, progress=print)
[1/2] seed 0 ce ...
[2/2] seed 0 meta_loss ...
>>> sorted(compare.write_results(results, "compare_out"))
['json', 'learning_curves', 'markdown', 'phi']
>>> print(compare.format_table(results))
| method | val acc % | ...
|---|...
| cross-entropy | ...
| MetaLoss (meta) | ...
"""

import dataclasses
import datetime
import gc
import json
import math
import os
import platform
import time
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from tf_metaloss import losses as tml_losses
from tf_metaloss import plotting
from tf_metaloss._optional import import_optional
from tf_metaloss.evaluation import datasets
from tf_metaloss.evaluation import metrics
from tf_metaloss.evaluation import noise as noise_lib
from tf_metaloss.models.meta_model import MetaModel

SCHEMA_VERSION = 1
GROUPS = ("baseline", "learned", "ablation", "oracle")
TRAININGS = ("fixed", "meta", "frozen", "schedule")
LINE_STYLES = {"baseline": "--", "learned": "-", "ablation": ":", "oracle": "-."}
EVAL_SPLITS = ("val", "holdout")
META_LABELS = ("clean", "noisy")
MODELS = ("auto", "mlp", "cnn", "small_cnn")
CNN_WIDTHS = {"cnn": (32, 64), "small_cnn": (16, 32)}


# -- argument checks ---------------------------------------------------------


def _invalid(name, value, expected):
    raise ValueError(
        f"Invalid value for argument `{name}`. Expected {expected}. Received: {name}={value!r}"
    )


def _check_positive_int(name, value):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        _invalid(name, value, "a positive integer")


def _check_choice(name, value, choices):
    if value not in choices:
        _invalid(name, value, f"one of {tuple(choices)}")


def _check_positive(name, value):
    if not _is_number(value) or not value > 0:
        _invalid(name, value, "a positive number")


def _check_non_negative(name, value):
    if not _is_number(value) or not value >= 0:
        _invalid(name, value, "a non-negative number")


def _check_fraction(name, value, closed=False, low_open=False):
    ok = _is_number(value) and (
        (0.0 <= value <= 1.0 and not (low_open and value == 0.0)) if closed else 0.0 < value < 1.0
    )
    if not ok:
        interval = ("(0, 1]" if low_open else "[0, 1]") if closed else "(0, 1)"
        _invalid(name, value, f"a float in {interval}")


def _is_number(value):
    return (
        isinstance(value, (int, float, np.floating, np.integer))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


# -- methods -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Method:
    """One way of training the model.

    Attributes:
        name: short key used on the command line and in files.
        label: human-readable name for tables and plots.
        group: `"baseline"`, `"learned"`, `"ablation"` or `"oracle"`.
        make_loss: `(config, seed) -> loss` (the model outputs logits).
        training: `"fixed"` (plain `keras.Model`), `"meta"` (`MetaModel`,
            phi meta-learned), `"frozen"` (`MetaModel`, `meta_every=0`) or
            `"schedule"` (frozen, phi set by `LinearParameterSchedule`).
        clean_labels: train on the clean labels (the oracle).
    """

    name: str
    label: str
    group: str
    make_loss: Callable
    training: str = "fixed"
    clean_labels: bool = False

    def __post_init__(self):
        _check_choice("group", self.group, GROUPS)
        _check_choice("training", self.training, TRAININGS)


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
            "MetaLoss hand schedule",
            "ablation",
            _learnable(tml_losses.MetaLoss),
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
METHOD_SETS = {
    "all": DEFAULT_METHODS,
    "baselines": tuple(n for n, m in METHODS.items() if m.group == "baseline"),
    "learned": tuple(n for n, m in METHODS.items() if m.group == "learned"),
    "ablations": tuple(n for n, m in METHODS.items() if m.group == "ablation"),
}


def resolve_methods(spec):
    """Method names from a list or a comma-separated string (sets allowed).

    `"all"`, `"baselines"`, `"learned"` and `"ablations"` expand to groups.

    Example:

    >>> tml.evaluation.compare.resolve_methods("ce,gce,learned")[:3]
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


# -- configuration ---------------------------------------------------------------


@dataclasses.dataclass
class CompareConfig:
    """Everything a comparison depends on (recorded in `results.json`).

    Attributes:
        dataset: `"digits"`, `"cifar10"` (TFDS), `"tfds:<name>"` or a `.npz`.
        noise_rate, noise_kind: label noise of the training labels
            (`"symmetric"` or `"asymmetric"`), see `inject_label_noise`.
        methods: method names (see `METHODS`, `resolve_methods`).
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
    methods: tuple = DEFAULT_METHODS
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
        self.methods = resolve_methods(self.methods)
        self.seeds = tuple(self.seeds)
        if not self.seeds or not all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0
            for s in self.seeds
        ):
            _invalid("seeds", self.seeds, "a non-empty list of non-negative integers")
        self.seeds = tuple(int(s) for s in self.seeds)
        if len(set(self.seeds)) != len(self.seeds):
            _invalid("seeds", self.seeds, "distinct seeds")
        for name in ("epochs", "batch_size", "hidden_units", "train_eval_size", "unroll_steps"):
            _check_positive_int(name, getattr(self, name))
        if not (isinstance(self.meta_every, int) and self.meta_every >= 1):
            _invalid(
                "meta_every",
                self.meta_every,
                "an integer >= 1 (the frozen ablation is its own method)",
            )
        for name in ("train_subset", "meta_batch_size"):
            if getattr(self, name) is not None:
                _check_positive_int(name, getattr(self, name))
        _check_choice("noise_kind", self.noise_kind, noise_lib.KINDS)
        _check_choice("eval_split", self.eval_split, EVAL_SPLITS)
        _check_choice("meta_labels", self.meta_labels, META_LABELS)
        _check_choice("model", self.model, MODELS)
        _check_choice(
            "meta_objective", self.meta_objective, tml_losses.functional.CLASSIFICATION_LOSSES
        )
        _check_fraction("noise_rate", self.noise_rate, closed=True)
        _check_fraction("holdout_fraction", self.holdout_fraction)
        _check_fraction("meta_fraction", self.meta_fraction)
        _check_fraction(
            "convergence_fraction", self.convergence_fraction, closed=True, low_open=True
        )
        for name in ("learning_rate", "meta_learning_rate"):
            _check_positive(name, getattr(self, name))
        if self.meta_clipnorm is not None:
            _check_positive("meta_clipnorm", self.meta_clipnorm)
        _check_non_negative("momentum", self.momentum)
        _check_non_negative("regularization", self.regularization)
        if not isinstance(self.schedule_final, dict) or not self.schedule_final:
            _invalid(
                "schedule_final", self.schedule_final, "a non-empty dict {base loss name: weight}"
            )

    def to_dict(self):
        """A JSON-able dict of the settings."""
        return {
            f.name: (list(v) if isinstance(v, tuple) else v)
            for f in dataclasses.fields(self)
            for v in (getattr(self, f.name),)
        }


# -- data ------------------------------------------------------------------------


@dataclasses.dataclass
class Split:
    """The arrays of one seed: training (noisy), meta and evaluation sets.

    `y_train` holds the labels the model trains on (noisy when noise > 0),
    `y_train_clean` the true ones and `noisy_mask` where they differ. The meta
    set's labels `y_meta` are clean or noisy according to the config. The
    evaluation set (`x_eval`, `y_eval`) always has clean labels.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    y_train_clean: np.ndarray
    noisy_mask: np.ndarray
    x_meta: np.ndarray
    y_meta: np.ndarray
    meta_noisy_mask: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray
    num_classes: int

    def describe(self):
        """Sizes and noise rates (JSON-able)."""
        return {
            "num_train": int(len(self.x_train)),
            "num_meta": int(len(self.x_meta)),
            "num_eval": int(len(self.x_eval)),
            "train_noise_rate": float(self.noisy_mask.mean()),
            "meta_noise_rate": float(self.meta_noisy_mask.mean()),
        }


def make_split(data, config, seed):
    """Builds the `Split` of `data` (a `datasets.Dataset`) for one seed."""
    x, y = data.x_train, data.y_train
    if config.train_subset is not None and config.train_subset < len(x):
        keep = np.sort(np.random.default_rng(0).permutation(len(x))[: config.train_subset])
        x, y = x[keep], y[keep]
    if config.eval_split == "holdout":
        order = np.random.default_rng(1).permutation(len(x))
        n_holdout = int(round(config.holdout_fraction * len(x)))
        held, rest = np.sort(order[:n_holdout]), np.sort(order[n_holdout:])
        x_eval, y_eval = x[held], y[held]
        x, y = x[rest], y[rest]
    else:
        x_eval, y_eval = data.x_val, data.y_val
    noisy = noise_lib.inject_label_noise(
        y,
        config.noise_rate,
        kind=config.noise_kind,
        num_classes=data.num_classes,
        seed=seed,
    )
    order = np.random.default_rng([seed, 2]).permutation(len(x))
    n_meta = int(round(config.meta_fraction * len(x)))
    if n_meta < 1 or n_meta >= len(x):
        raise ValueError(
            f"meta_fraction={config.meta_fraction} of {len(x)} training samples "
            f"leaves {n_meta} meta samples; both parts must be non-empty."
        )
    meta, train = np.sort(order[:n_meta]), np.sort(order[n_meta:])
    y_meta = y[meta] if config.meta_labels == "clean" else noisy.labels[meta]
    return Split(
        x_train=x[train],
        y_train=noisy.labels[train],
        y_train_clean=y[train],
        noisy_mask=noisy.mask[train],
        x_meta=x[meta],
        y_meta=y_meta,
        meta_noisy_mask=y_meta != y[meta],
        x_eval=x_eval,
        y_eval=y_eval,
        num_classes=data.num_classes,
    )


def training_dataset(x, y, batch_size, epochs, seed):
    """Batches of `(x, y)` in a seeded order, reshuffled every epoch.

    The order depends only on `seed`, so every method sees the same batches
    in the same order. Returns `(dataset, steps_per_epoch)`; the dataset holds
    exactly `epochs * steps_per_epoch` batches (the last of each epoch may be
    smaller).
    """
    n = len(x)
    rng = np.random.default_rng([seed, 1])
    orders = np.stack([rng.permutation(n) for _ in range(epochs)]).astype(np.int64)
    x_tensor = tf.constant(x)
    y_tensor = tf.constant(y)
    dataset = (
        tf.data.Dataset.from_tensor_slices(orders)
        .flat_map(lambda order: tf.data.Dataset.from_tensor_slices(order).batch(batch_size))
        .map(lambda idx: (tf.gather(x_tensor, idx), tf.gather(y_tensor, idx)))
        .prefetch(2)
    )
    return dataset, -(-n // batch_size)


# -- models and the hand schedule ------------------------------------------------


def build_model(kind, input_shape, num_classes, hidden_units=128):
    """The compared network (logits out), built from the current Keras seed.

    Example:

    >>> tml.evaluation.compare.build_model("mlp", (64,), 10).output.shape
    (None, 10)
    """
    _check_choice("model", kind, MODELS)
    input_shape = tuple(input_shape)
    if kind == "auto":
        kind = "cnn" if len(input_shape) == 3 else "mlp"
    inputs = keras.Input(input_shape)
    if kind in CNN_WIDTHS:
        if len(input_shape) != 3:
            raise ValueError(
                f"Invalid value for argument `model`. {kind!r} needs image inputs "
                f"(height, width, channels). Received: input_shape={input_shape}"
            )
        first, second = CNN_WIDTHS[kind]
        x = keras.layers.Conv2D(first, 3, padding="same", activation="relu")(inputs)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Conv2D(second, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(hidden_units, activation="relu")(x)
    else:
        x = keras.layers.Flatten()(inputs) if len(input_shape) > 1 else inputs
        x = keras.layers.Dense(hidden_units, activation="relu")(x)
    outputs = keras.layers.Dense(num_classes)(x)
    return keras.Model(inputs, outputs, name=f"compared_{kind}")


def schedule_targets(loss, final):
    """Final phi for `LinearParameterSchedule` from `{base loss: weight}`.

    Only blends (`BlendLoss`, `MetaLoss`) have named weights; unnamed base
    losses get weight 0.

    Example:

    >>> loss = tml.MetaLoss(from_logits=True)
    >>> targets = tml.evaluation.compare.schedule_targets(loss, {"generalized_crossentropy": 1.0})
    >>> targets["blend_weights"]
    array([0., 0., 0., 1., 0.], dtype=float32)
    """
    if not hasattr(loss, "base_losses") or "blend_weights" not in loss.parameter_names:
        raise ValueError(
            "A hand schedule needs a blend (`BlendLoss`, `MetaLoss`). Received: "
            f"{type(loss).__name__}"
        )
    unknown = sorted(set(final) - set(loss.base_losses))
    if unknown:
        raise ValueError(
            "Invalid value for argument `schedule_final`. Expected base losses "
            f"of the blend {loss.base_losses}. Received: {unknown}"
        )
    weights = np.array([float(final.get(n, 0.0)) for n in loss.base_losses], np.float32)
    if np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(
            "Invalid value for argument `schedule_final`. Expected non-negative "
            f"weights with a positive sum. Received: {final!r}"
        )
    return {"blend_weights": weights}


class LinearParameterSchedule(keras.callbacks.Callback):
    """A hand schedule: phi moves linearly from its start to `final` during training.

    Before step `t` (counted by the optimizer, from 0) it sets
    `phi = phi_0 + min(1, t / (total_steps - 1)) * (final - phi_0)`, so the
    first step uses phi_0 and the last uses `final`. Use it with a frozen
    loss (`meta_every=0`) as the baseline a meta-learned phi should beat.

    Args:
        final: dict `parameter name -> final value` (see `schedule_targets`).
        total_steps: number of training steps of the whole `fit`.

    Example:

    >>> x = np.random.default_rng(0).normal(size=(128, 8)).astype("float32")
    >>> y = (x[:, 0] > 0).astype("int32")
    >>> loss = tml.MetaLoss(from_logits=True)
    >>> model = tml.MetaModel(keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)]))
    >>> model.compile(optimizer="sgd", loss=loss, meta_every=0)
    >>> targets = tml.evaluation.compare.schedule_targets(loss, {"generalized_crossentropy": 1.0})
    >>> schedule = tml.evaluation.compare.LinearParameterSchedule(targets, total_steps=8)
    >>> history = model.fit(x, y, epochs=2, verbose=0, callbacks=[schedule])  # 4 steps an epoch
    >>> [round(float(w), 3) for w in loss.mixture_weights()]  # the last step used `final`
    [0.0, 0.0, 0.0, 1.0, 0.0]
    """

    def __init__(self, final, total_steps):
        super().__init__()
        _check_positive_int("total_steps", total_steps)
        self.final = {k: np.asarray(v, np.float32) for k, v in final.items()}
        self.total_steps = int(total_steps)
        self._start = None

    def on_train_begin(self, logs=None):
        loss = self.model.loss
        variables = dict(zip(loss.parameter_names, loss.trainable_variables))
        for name, value in self.final.items():
            if name not in variables or tuple(variables[name].shape) != value.shape:
                raise ValueError(
                    "Invalid value for argument `final`. Expected parameters of "
                    f"{type(loss).__name__}: "
                    f"{ {n: tuple(v.shape) for n, v in variables.items()} }. "
                    f"Received: {name!r} of shape {value.shape}"
                )
        self._variables = variables
        self._start = {n: variables[n].numpy().copy() for n in self.final}

    def on_train_batch_begin(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        progress = min(1.0, step / max(1, self.total_steps - 1))
        for name, final in self.final.items():
            start = self._start[name]
            self._variables[name].assign(start + progress * (final - start))


# -- running ---------------------------------------------------------------------


def run_method(method, split, config, seed):
    """Trains the model with one method and seed; returns the run record."""
    keras.backend.clear_session()
    gc.collect()
    keras.utils.set_random_seed(seed)
    model, loss, fit_kwargs = _compiled_model(method, split, config, seed)
    y_fit = split.y_train_clean if method.clean_labels else split.y_train
    dataset, steps = training_dataset(split.x_train, y_fit, config.batch_size, config.epochs, seed)
    gradients = metrics.GradientNormHistory()
    classification = metrics.ClassificationHistory(
        {
            "val": (split.x_eval, split.y_eval),
            "train": _train_eval_entry(split, y_fit, config, seed),
        },
        num_classes=split.num_classes,
    )
    parameters = metrics.ParameterHistory()
    callbacks = [gradients, classification, parameters]
    if method.training == "schedule":
        callbacks.append(
            LinearParameterSchedule(
                schedule_targets(loss, config.schedule_final), steps * config.epochs
            )
        )
    start = time.perf_counter()
    history = model.fit(
        dataset,
        epochs=config.epochs,
        steps_per_epoch=steps,
        verbose=0,
        shuffle=False,
        callbacks=callbacks,
        **fit_kwargs,
    )
    wall_time = time.perf_counter() - start
    return _run_record(
        method, seed, config, history, gradients, classification, parameters, wall_time
    )


def _compiled_model(method, split, config, seed):
    """`(model, loss, fit_kwargs)`: the compared network, compiled for `method`."""
    base = build_model(
        config.model, split.x_train.shape[1:], split.num_classes, config.hidden_units
    )
    # The loss is built after the model, so the model's initial weights are
    # the same for every method.
    loss = method.make_loss(config, seed)
    optimizer = keras.optimizers.SGD(config.learning_rate, momentum=config.momentum)
    if method.training == "fixed":
        base.compile(optimizer=optimizer, loss=loss)
        return base, loss, {}
    model = MetaModel(base)
    meta = method.training == "meta"
    model.compile(
        optimizer=optimizer,
        loss=loss,
        meta_optimizer=keras.optimizers.Adam(config.meta_learning_rate),
        meta_every=config.meta_every if meta else 0,
        meta_objective=tml_losses.FixedLoss(config.meta_objective, from_logits=True),
        unroll_steps=config.unroll_steps,
        meta_global_clipnorm=config.meta_clipnorm,
        meta_seed=seed,
    )
    if not meta:
        return model, loss, {}
    return (
        model,
        loss,
        {
            "meta_data": (split.x_meta, split.y_meta),
            "meta_batch_size": config.meta_batch_size or config.batch_size,
        },
    )


def _train_eval_entry(split, y_fit, config, seed):
    """Training samples on which clean accuracy (and memorization) is measured."""
    n_eval = min(config.train_eval_size, len(split.x_train))
    pick = np.random.default_rng([seed, 3]).permutation(len(split.x_train))[:n_eval]
    entry = (split.x_train[pick], split.y_train_clean[pick])
    wrong = y_fit[pick] != split.y_train_clean[pick]
    if wrong.any():
        entry += (y_fit[pick], wrong)
    return entry


def _run_record(method, seed, config, history, gradients, classification, parameters, wall_time):
    curves = {"epoch": list(range(1, config.epochs + 1))}
    curves.update(classification.history)
    curves["loss"] = [float(v) for v in history.history.get("loss", [])]
    val_curve = curves["val_accuracy"]
    final = {
        "val_accuracy": val_curve[-1],
        "val_macro_f1": curves["val_macro_f1"][-1],
        "train_accuracy": curves["train_accuracy"][-1],
        "generalization_gap": metrics.generalization_gap(
            curves["train_accuracy"][-1], val_curve[-1]
        ),
        "convergence_epoch": metrics.convergence_epoch(val_curve, config.convergence_fraction),
        "best_val_accuracy": max(val_curve),
        "wall_time_s": wall_time,
        "eval_time_s": classification.seconds,
        "skipped_updates": float(sum(history.history.get("skipped_updates", [0.0]))),
    }
    if "train_memorized" in curves:
        final["memorized"] = curves["train_memorized"][-1]
    try:
        stability = metrics.gradient_norm_stability(gradients.norms)
    except ValueError:  # every update was skipped (non-finite gradients)
        stability = {
            "mean": float("nan"),
            "variance": float("nan"),
            "cv": float("nan"),
            "max": float("nan"),
            "steps": 0,
        }
    final.update({f"grad_norm_{k}": v for k, v in stability.items() if k != "steps"})
    return {
        "method": method.name,
        "seed": seed,
        "final": final,
        "curves": curves,
        "phi": parameters.history,
        "grad_norm_steps": stability["steps"],
    }


def run_comparison(config, progress=None, on_run_end=None, data=None):
    """Runs every method for every seed; returns the results dict.

    Args:
        config: a `CompareConfig`.
        progress: optional `callable(str)` receiving one line per run.
        on_run_end: optional `callable(results_so_far)` after each run (e.g.
            to save partial results).
        data: optional `datasets.Dataset` (default: `load_dataset(config.dataset)`).

    Returns:
        A JSON-able dict: `schema_version`, `config`, `data`, `methods`,
        `runs` (one per method and seed: `final` metrics, per-epoch `curves`,
        `phi` history), `summary` (per method and metric: mean, std, n) and
        `checks` (the targets, evaluated).
    """
    if data is None:
        data = datasets.load_dataset(config.dataset)
    methods = [METHODS[n] for n in config.methods]
    if config.noise_rate == 0.0 and any(m.clean_labels for m in methods):
        # Without noise the oracle is cross-entropy itself.
        methods = [m for m in methods if not m.clean_labels]
    results = {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "config": config.to_dict(),
        "environment": {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "tf_metaloss_path": os.path.dirname(
                os.path.dirname(os.path.abspath(tml_losses.__file__))
            ),
        },
        "data": {
            "name": data.name,
            "num_classes": int(data.num_classes),
            "input_shape": list(data.x_train.shape[1:]),
            "eval_split": config.eval_split,
            "eval_description": (
                "the validation split (clean labels)"
                if config.eval_split == "val"
                else f"a {config.holdout_fraction:.0%} holdout of the training "
                "split (clean labels); the validation split is not used"
            ),
            "meta_labels": config.meta_labels,
            "per_seed": {},
        },
        "methods": [
            {"name": m.name, "label": m.label, "group": m.group, "training": m.training}
            for m in methods
        ],
        "runs": [],
    }
    total = len(methods) * len(config.seeds)
    done = 0
    for seed in config.seeds:
        split = make_split(data, config, seed)
        results["data"]["per_seed"][str(seed)] = split.describe()
        for method in methods:
            record = run_method(method, split, config, seed)
            results["runs"].append(record)
            done += 1
            if progress is not None:
                f = record["final"]
                progress(
                    f"[{done:>{len(str(total))}}/{total}] seed {seed} "
                    f"{method.name:<16} val_acc {f['val_accuracy']:.4f}  "
                    f"macro_f1 {f['val_macro_f1']:.4f}  "
                    f"conv {f['convergence_epoch']:>3}  {f['wall_time_s']:.1f} s"
                )
            if on_run_end is not None:
                results["summary"] = summarize(results["runs"], config.convergence_fraction)
                on_run_end(results)
    results["summary"] = summarize(results["runs"], config.convergence_fraction)
    results["checks"] = target_checks(results)
    return results


# -- summaries -------------------------------------------------------------------


def mean_std(values):
    """`(mean, std, n)` of finite values; std is the sample std (ddof=1), 0 if n=1."""
    values = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
    if values.size == 0:
        return float("nan"), float("nan"), 0
    std = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
    return float(np.mean(values)), std, int(values.size)


def summarize(runs, convergence_fraction=0.9, target_exclude=("oracle",)):
    """Per method and metric: `{"mean", "std", "n"}` over seeds.

    Also `delta_vs_ce` (paired per seed: method minus cross-entropy, in
    accuracy) when cross-entropy was run, and `epochs_to_common_target`: the
    first epoch whose validation accuracy reaches `convergence_fraction` times
    the best mean final accuracy of all methods (one target for every method,
    unlike `convergence_epoch`, whose target is each run's own final value);
    methods in `target_exclude` (the oracle trains on clean labels) do not
    set the target. Its `n` counts the runs that reached it, `of` all runs.
    """
    by_method = {}
    for run in runs:
        by_method.setdefault(run["method"], []).append(run)
    ce = {r["seed"]: r["final"]["val_accuracy"] for r in by_method.get("ce", [])}
    summary = {}
    for name, method_runs in by_method.items():
        keys = sorted({k for r in method_runs for k in r["final"]})
        entry = {}
        for key in keys:
            mean, std, n = mean_std([r["final"].get(key) for r in method_runs])
            entry[key] = {"mean": mean, "std": std, "n": n}
        paired = [
            r["final"]["val_accuracy"] - ce[r["seed"]] for r in method_runs if r["seed"] in ce
        ]
        if paired:
            mean, std, n = mean_std(paired)
            entry["delta_vs_ce"] = {"mean": mean, "std": std, "n": n}
        summary[name] = entry
    best = max(
        (
            e["val_accuracy"]["mean"]
            for name, e in summary.items()
            if name not in target_exclude and e.get("val_accuracy", {}).get("n")
        ),
        default=float("nan"),
    )
    target = convergence_fraction * best
    for name, method_runs in by_method.items():
        epochs = [
            _first_epoch_reaching(r["curves"].get("val_accuracy", []), target)
            for r in method_runs
            if "curves" in r
        ]
        if epochs:
            mean, std, n = mean_std([float("nan") if e is None else e for e in epochs])
            summary[name]["epochs_to_common_target"] = {
                "mean": mean,
                "std": std,
                "n": n,
                "of": len(epochs),
                "target": target,
            }
    return summary


def _first_epoch_reaching(curve, target):
    reached = [i for i, v in enumerate(curve) if v >= target]
    return reached[0] + 1 if reached else None


def _mean(summary, method, key="val_accuracy"):
    return summary.get(method, {}).get(key, {}).get("mean", float("nan"))


def target_checks(results):
    """The project's targets, evaluated on these results (list of dicts).

    Each item has `target`, `value` (a short string) and `met` (bool, or
    `None` when the needed methods were not run). "Best learned" is the
    learned family with the highest mean validation accuracy *in these
    results*, a selection on the reported data, so optimistic.
    """
    summary = results["summary"]
    learned = [m["name"] for m in results["methods"] if m["group"] == "learned"]
    checks = []
    if not learned:
        return checks
    best = max(learned, key=lambda n: _mean(summary, n))
    best_acc = _mean(summary, best)
    noisy = results["config"]["noise_rate"] > 0

    def add(target, value, met):
        checks.append({"target": target, "value": value, "met": met})

    def versus(other, margin=0.0):
        if other not in summary:
            return None, "not run"
        diff = best_acc - _mean(summary, other)
        return bool(diff >= margin), f"{best} {100 * diff:+.2f} pts vs {other}"

    add("best learned family", f"{best}: {100 * best_acc:.2f}%", None)
    if noisy:
        met, value = versus("ce", 0.065)
        add(">= +6.5 pts over cross-entropy", value, met)
        for other in ("gce", "sce"):
            met, value = versus(other)
            add(f"beats {other}", value, met)
        if "ce" in summary and "oracle" in summary:
            gap = _mean(summary, "oracle") - _mean(summary, "ce")
            closed = (best_acc - _mean(summary, "ce")) / gap if gap > 0 else float("nan")
            add(
                "closes most (> 50%) of the CE-to-oracle gap",
                f"{100 * closed:.0f}% of {100 * gap:.2f} pts",
                bool(closed > 0.5) if math.isfinite(closed) else None,
            )
    else:
        for other in ("ce", "focal", "label_smoothing"):
            met, value = versus(other, -1e-12)
            add(f"no worse than {other}", value, met)
    if "ce" in summary:
        ratio = _mean(summary, best, "convergence_epoch") / _mean(
            summary, "ce", "convergence_epoch"
        )
        add(
            "convergence epochs <= 0.75x cross-entropy's",
            f"{_mean(summary, best, 'convergence_epoch'):.1f} vs "
            f"{_mean(summary, 'ce', 'convergence_epoch'):.1f} ({ratio:.2f}x)",
            bool(ratio <= 0.75),
        )
        common = {n: summary[n].get("epochs_to_common_target") for n in (best, "ce")}
        if all(common.values()):

            def describe(stat):
                return (
                    "never"
                    if stat["n"] == 0
                    else (
                        f"{stat['mean']:.1f}"
                        + ("" if stat["n"] == stat["of"] else f" ({stat['n']}/{stat['of']} runs)")
                    )
                )

            ce_stat, best_stat = common["ce"], common[best]
            if ce_stat["n"] < ce_stat["of"]:
                # CE misses the target in some runs: the learned loss is faster
                # if it always reaches it.
                met = best_stat["n"] == best_stat["of"]
            else:
                met = best_stat["n"] == best_stat["of"] and (
                    best_stat["mean"] <= 0.75 * ce_stat["mean"]
                )
            add(
                "same, with one target for all (90% of the best non-oracle accuracy, "
                f"{100 * ce_stat['target']:.1f}%)",
                f"{describe(best_stat)} vs {describe(ce_stat)}",
                bool(met),
            )
    if all(n in summary for n in ("meta_loss", "schedule", "frozen")):
        accs = {n: _mean(summary, n) for n in ("meta_loss", "schedule", "frozen")}
        add(
            "ablation order meta > schedule > frozen (MetaLoss)",
            ", ".join(f"{n} {100 * a:.2f}%" for n, a in accs.items()),
            bool(accs["meta_loss"] > accs["schedule"] > accs["frozen"]),
        )
    return checks


# -- writing ---------------------------------------------------------------------

TABLE_COLUMNS = (
    ("val_accuracy", "val acc %", 100.0, 2),
    ("delta_vs_ce", "vs CE (pts)", 100.0, 2),
    ("val_macro_f1", "macro-F1 %", 100.0, 2),
    ("train_accuracy", "train acc % (clean)", 100.0, 1),
    ("generalization_gap", "gap (pts)", 100.0, 1),
    ("convergence_epoch", "epochs to 90% of own final", 1.0, 1),
    ("epochs_to_common_target", "epochs to 90% of best", 1.0, 1),
    ("grad_norm_variance", "grad-norm var", 1.0, None),
    ("grad_norm_cv", "grad-norm CV", 1.0, 2),
    ("memorized", "memorized %", 100.0, 1),
    ("wall_time_s", "time (s)", 1.0, 1),
)


def _cell(stat, scale, digits):
    if stat is None:
        return "-"
    if stat["n"] == 0:
        return "never" if stat.get("of") else "-"
    mean, std = stat["mean"] * scale, stat["std"] * scale
    if digits is None:
        text = f"{mean:.3g} ± {std:.2g}"
    else:
        text = f"{mean:.{digits}f} ± {std:.{digits}f}"
    if stat.get("of", stat["n"]) > stat["n"]:
        text += f" ({stat['n']}/{stat['of']} runs)"
    return text


def format_table(results):
    """The summary as a Markdown table (mean ± sample std over seeds)."""
    summary = results["summary"]
    columns = [
        c
        for c in TABLE_COLUMNS
        if any(c[0] in summary.get(m["name"], {}) for m in results["methods"])
    ]
    lines = [
        "| method | " + " | ".join(c[1] for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for method in results["methods"]:
        if method["name"] not in summary:
            continue
        entry = summary[method["name"]]
        cells = [_cell(entry.get(key), scale, digits) for key, _, scale, digits in columns]
        lines.append(f"| {method['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_report(results):
    """`results.md`: settings, the table and the evaluated targets."""
    config, data = results["config"], results["data"]
    seeds = config["seeds"]
    per_seed = data["per_seed"].get(str(seeds[0]), {})
    lines = [f"# Loss comparison: {data['name']}", ""]
    if config.get("command"):
        lines += ["Command:", "", "```", config["command"], "```", ""]
    lines += [
        f"- Noise: {config['noise_rate']:.0%} {config['noise_kind']} on the "
        f"training labels (actual on the training part, seed {seeds[0]}: "
        f"{per_seed.get('train_noise_rate', float('nan')):.1%}).",
        f"- Data: {per_seed.get('num_train')} training samples, "
        f"{per_seed.get('num_meta')} meta samples ({config['meta_labels']} "
        f"labels, held out of the training split, used only by the meta-learned "
        f"methods), evaluated on {per_seed.get('num_eval')} samples of "
        f"{data['eval_description']}."
        + (
            f" Training subset: {config['train_subset']} samples."
            if config.get("train_subset")
            else ""
        ),
        f"- Model: {config['model']} (hidden {config['hidden_units']}), SGD lr "
        f"{config['learning_rate']} momentum {config['momentum']}, batch "
        f"{config['batch_size']}, {config['epochs']} epochs; seeds {seeds}.",
        f"- Meta-learning: Adam lr {config['meta_learning_rate']}, meta_every "
        f"{config['meta_every']}, meta batch "
        f"{config.get('meta_batch_size') or config['batch_size']}, objective "
        f"{config.get('meta_objective', 'crossentropy')} on the meta set, unroll "
        f"{config['unroll_steps']}, clipnorm "
        f"{config['meta_clipnorm']}, regularization {config['regularization']}; "
        f"hand schedule to {config['schedule_final']}.",
        "- Cells: mean ± sample std over seeds; accuracy after the last epoch "
        "(no early stopping). `vs CE`: paired per-seed difference. `gap`: train "
        "minus val accuracy, both on clean labels. `epochs to 90%`: first epoch "
        "reaching 90% of the final val accuracy. `grad-norm var`/`CV`: "
        "population variance / coefficient of variation over all steps of the "
        "global L2 norm of the weight gradient. `memorized`: share of noisy "
        "training samples predicted as their wrong label. Time: wall time of "
        "`fit` including per-epoch evaluation, on a shared 2-core CPU.",
        "",
        format_table(results),
        "",
    ]
    if results.get("checks"):
        lines += ["Targets:", ""]
        for check in results["checks"]:
            mark = {True: "met", False: "missed", None: "-"}[check["met"]]
            lines.append(f"- {check['target']}: {check['value']} ({mark})")
        lines.append("")
    return "\n".join(lines)


def _averaged(runs, method, key, source="curves"):
    series = [r[source][key] for r in runs if r["method"] == method and key in r[source]]
    if not series:
        return None, None
    length = min(len(s) for s in series)
    stacked = np.asarray([s[:length] for s in series], np.float64)
    return stacked.mean(axis=0), stacked.std(axis=0)


def _styles(methods):
    palette = _palette(len(methods))
    return {m["name"]: (palette[i], LINE_STYLES[m["group"]]) for i, m in enumerate(methods)}


def _palette(n):
    """`n` distinct colours: tab10, then the light half of tab20."""
    colormaps = plotting.require_matplotlib().colormaps

    tab10, tab20 = colormaps["tab10"], colormaps["tab20"]
    colors = [tab10(i) for i in range(10)] + [tab20(2 * i + 1) for i in range(10)]
    return [colors[i % len(colors)] for i in range(n)]


def _integer_ticks(axis):
    ticker = import_optional("matplotlib.ticker", "Drawing figures")
    axis.set_major_locator(ticker.MaxNLocator(integer=True))


def learning_curves_figure(results):
    """Mean (over seeds) clean val and train accuracy per epoch, one line per method."""
    fig, axes = plotting.new_figure(ncols=2, width=5.6, height=4.2)
    styles = _styles(results["methods"])
    for ax, key, title in zip(
        axes[0],
        ("val_accuracy", "train_accuracy"),
        ("validation accuracy (clean labels)", "training accuracy (clean labels)"),
    ):
        for m in results["methods"]:
            mean, std = _averaged(results["runs"], m["name"], key)
            if mean is None:
                continue
            epochs = np.arange(1, len(mean) + 1)
            color, line = styles[m["name"]]
            ax.plot(epochs, mean, line, color=color, label=m["label"])
            ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.12)
        ax.set_xlabel("epoch")
        _integer_ticks(ax.xaxis)
        ax.set_ylabel("accuracy")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 1].get_legend_handles_labels()
    fig.set_figwidth(fig.get_figwidth() + 2.6)
    fig.suptitle(_figure_title(results) + " (mean ± std over seeds)")
    fig.tight_layout(rect=(0, 0, 1 - 2.6 / fig.get_figwidth(), 1))
    fig.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
    return fig


def phi_figure(results):
    """Loss parameters over training (mean over seeds), one panel per method.

    Blends show their effective (normalised) mixture weights; other families
    their coefficients or the norms of their network's weights. Returns
    `None` when no method has parameters.
    """
    panels = []
    for m in results["methods"]:
        runs = [r for r in results["runs"] if r["method"] == m["name"] and r["phi"]]
        if runs:
            keys = list(runs[0]["phi"])
            mix = [k for k in keys if k.startswith("mix/")]
            panels.append((m, mix or keys))
    if not panels:
        return None
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plotting.new_figure(ncols=ncols, nrows=nrows, width=4.6, height=3.4)
    # One colour per parameter name across all panels.
    names = list(dict.fromkeys(k.split("/", 1)[1] for _, keys in panels for k in keys))
    colors = dict(zip(names, _palette(len(names))))
    for i, (m, keys) in enumerate(panels):
        ax = axes[i // ncols, i % ncols]
        for key in keys:
            mean, _ = _averaged(results["runs"], m["name"], key, source="phi")
            label = key.split("/", 1)[1]
            ax.plot(np.arange(len(mean)), mean, label=label, color=colors[label])
        ax.set_title(m["label"], fontsize=9)
        ax.set_xlabel("epoch (0 = start)")
        _integer_ticks(ax.xaxis)
        ax.set_ylabel("mixture weight" if keys[0].startswith("mix/") else "value")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for j in range(len(panels), nrows * ncols):
        axes[j // ncols, j % ncols].set_visible(False)
    fig.suptitle(_figure_title(results))
    fig.tight_layout()
    return fig


def _figure_title(results):
    c = results["config"]
    return (
        f"{results['data']['name']}: {c['noise_rate']:.0%} {c['noise_kind']} "
        f"noise, {len(c['seeds'])} seed{'s' if len(c['seeds']) > 1 else ''}"
    )


def to_json(results):
    """`json.dumps` of results: floats to 7 significant digits (float32
    precision), non-finite numbers as `null`."""
    return json.dumps(_finite(results), indent=1, allow_nan=False)


def _finite(value):
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(f"{value:.7g}") if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_results(results, directory, figures=True):
    """Writes `results.json`, `results.md` and the PNG figures; returns their paths.

    The figures need matplotlib (the `eval` extra); `figures=False` writes
    the JSON and Markdown files only.
    """
    if figures:
        plotting.require_matplotlib("Writing the comparison's figures", "or pass figures=False")
    os.makedirs(directory, exist_ok=True)
    paths = {
        "json": os.path.join(directory, "results.json"),
        "markdown": os.path.join(directory, "results.md"),
    }
    with open(paths["json"], "w") as f:
        f.write(to_json(results) + "\n")
    with open(paths["markdown"], "w") as f:
        f.write(format_report(results))
    if figures:
        paths["learning_curves"] = plotting.save_figure(
            learning_curves_figure(results),
            os.path.join(directory, "learning_curves.png"),
        )
        fig = phi_figure(results)
        if fig is not None:
            paths["phi"] = plotting.save_figure(fig, os.path.join(directory, "phi.png"))
    return paths
