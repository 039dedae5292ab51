"""Runs the comparison: every method, every seed, the same network and data order.

`run_comparison(config)` trains the same model (same architecture, initial
weights, optimizer, data order and seed) once per method and seed and returns
a JSON-able results dict; `run_method` is one run. Labels are corrupted with
`inject_label_noise`; a small held-out slice of the training data is the meta
set (clean labels, as in Meta-Weight-Net, or noisy). The meta-learned methods
train on the rest and see the meta set through their meta objective; every
other method trains on the rest plus the meta set (`Method.train_data`), so
every method gets the same labelled data. Every metric is measured on clean
labels: by default on the validation split, or, for choosing settings, on a
holdout of the training split (`eval_split="holdout"`) so the validation split
is never looked at.

The two-stage baselines (their wall time counts both stages):

- `finetune`: cross-entropy on the noisy part plus the meta set for `epochs`,
  then `finetune_epochs` more on the meta set only, with a fresh SGD at
  `finetune_learning_rate` (same momentum).
- `glc` (Gold Loss Correction, Hendrycks et al. 2018): cross-entropy on the
  noisy part only; `C[i]` = its mean softmax prediction on the meta samples of
  true class `i`; then a fresh model (same initial weights) on the noisy part
  plus the meta set, forward-corrected on the noisy samples, plain
  cross-entropy on the trusted meta samples.
- `forward` (Patrini et al. 2017): cross-entropy on all the data; `T[i]` = its
  softmax prediction at the sample most confidently predicted as class `i`
  (anchor points); then a fresh model with forward correction on every sample.

After training, each method's probes (`probes`) record what its loss knows
about the noise: the clean-vs-corrupted AUC of per-sample weights, or a noise
transition matrix and its distance to the true one.

Example:

>>> config = tml.evaluation.CompareConfig(
...     dataset="digits", noise_rate=0.4, epochs=2, methods=("ce", "meta_loss"), seeds=(0,))
>>> results = tml.evaluation.run_comparison(config, progress=print)
[1/2] seed 0 ce ...
[2/2] seed 0 meta_loss ...
>>> sorted(tml.evaluation.write_results(results, "compare_out"))
['json', 'learning_curves', 'markdown', 'phi']
>>> print(tml.evaluation.report.format_table(results))
| method | val acc % | ...
|---|...
| cross-entropy | ...
| MetaLoss (meta) | ...
"""

import datetime
import gc
import os
import platform
import time

import keras
import numpy as np
import tensorflow as tf

from tf_metaloss import losses as tml_losses
from tf_metaloss.evaluation import correction
from tf_metaloss.evaluation import datasets
from tf_metaloss.evaluation import methods as methods_lib
from tf_metaloss.evaluation import metrics
from tf_metaloss.evaluation import models
from tf_metaloss.evaluation import noise as noise_lib
from tf_metaloss.evaluation import run_record
from tf_metaloss.evaluation import schedules
from tf_metaloss.evaluation import splits
from tf_metaloss.evaluation import summary as summary_lib
from tf_metaloss.meta import data as meta_lib
from tf_metaloss.models.meta_model import MetaModel

SCHEMA_VERSION = 2


def run_method(method, split, config, seed, callbacks=()):
    """Trains the model with one method and seed; returns the run record.

    Args:
        method: a `methods.Method`.
        split: the seed's `splits.Split`.
        config: the `CompareConfig`.
        seed: sets the initial weights, the data order and the meta batches.
        callbacks: extra Keras callbacks for every monitored training stage
            (e.g. `keras.callbacks.TensorBoard`); they run after the metric
            callbacks, so they see the clean-label metrics in the epoch logs.

    Returns:
        A JSON-able dict: `method`, `seed`, `loss` (the class of the loss of
        the last stage), `final` (metrics after training,
        including the method's probes), `curves` (per epoch), `phi` (the loss
        parameters per epoch), `phi_bounds` (the bounds of those that have
        any, see `metrics.ParameterHistory`), `grad_norm_steps`, `stages` (what each training
        stage trained on, for how long, and its validation accuracy) and
        `diagnostics` (the probes' non-scalar results).
    """
    procedure = _PROCEDURES.get(method.training, _train_one_stage)
    return procedure(method, split, config, seed, list(callbacks))


# -- the training procedures ---------------------------------------------------------


def _train_one_stage(method, split, config, seed, callbacks):
    """Fixed baselines, meta-learned losses, the ablations and the oracle."""
    _reset(seed)
    x, y, _ = splits.training_data(split, method.train_data, method.clean_labels)
    counts = _class_counts(y, split)
    model, loss, fit_kwargs = _compiled_model(method, split, config, seed, counts)
    monitors = run_record.Monitors(method, split, config, seed)
    stage_callbacks = monitors.callbacks()
    if method.make_callbacks is not None:
        stage_callbacks += method.make_callbacks(loss, config, counts)
    if method.training == "schedule":
        steps = -(-len(x) // config.batch_size)
        stage_callbacks.append(
            schedules.LinearParameterSchedule(
                schedules.schedule_targets(loss, config.schedule_final), steps * config.epochs
            )
        )
    history, seconds = _fit(
        model, x, y, config, seed, config.epochs, stage_callbacks + callbacks, **fit_kwargs
    )
    stages = [
        _stage(
            "train",
            method.train_data,
            len(x),
            config.epochs,
            config.learning_rate,
            seconds,
            monitors.last_val_accuracy(),
        )
    ]
    return run_record.record(method, seed, config, model, loss, split, monitors, [history], stages)


def _train_finetune(method, split, config, seed, callbacks):
    """Cross-entropy on the noisy part plus the meta set, then the meta set only.

    Stage 2 continues from the stage-1 weights with a fresh optimizer of the
    same kind (`config.finetune_learning_rate`, the same momentum) for
    `config.finetune_epochs` epochs on the meta set alone.
    """
    _reset(seed)
    model = _build(split, config)
    loss = method.make_loss(config, seed)
    model.compile(optimizer=_optimizer(config.learning_rate, config), loss=loss)
    x, y, _ = splits.training_data(split, method.train_data, method.clean_labels)
    monitors = run_record.Monitors(method, split, config, seed)
    first, first_seconds = _fit(
        model, x, y, config, seed, config.epochs, monitors.callbacks() + callbacks
    )
    first_accuracy = monitors.last_val_accuracy()
    model.compile(optimizer=_optimizer(config.finetune_learning_rate, config), loss=loss)
    second, second_seconds = _fit(
        model,
        split.x_meta,
        split.y_meta,
        config,
        seed,
        config.finetune_epochs,
        monitors.callbacks() + callbacks,
    )
    stages = [
        _stage(
            "train",
            method.train_data,
            len(x),
            config.epochs,
            config.learning_rate,
            first_seconds,
            first_accuracy,
        ),
        _stage(
            "finetune",
            "meta",
            len(split.x_meta),
            config.finetune_epochs,
            config.finetune_learning_rate,
            second_seconds,
            monitors.last_val_accuracy(),
        ),
    ]
    return run_record.record(
        method, seed, config, model, loss, split, monitors, [first, second], stages
    )


def _train_glc(method, split, config, seed, callbacks):
    """Gold Loss Correction (Hendrycks et al. 2018).

    Stage 1 trains cross-entropy on the untrusted noisy part only; row `i` of
    the corruption matrix `C` is its mean softmax prediction on the meta
    (trusted) samples of true class `i`. Stage 2 trains a fresh model (the
    same initial weights) on the noisy part plus the meta set, with the
    forward-corrected loss on the untrusted samples and plain cross-entropy
    on the trusted ones.
    """

    def estimate(model):
        probabilities = _predict_probabilities(model, split.x_meta)
        return correction.gold_transition_matrix(probabilities, split.y_meta, split.num_classes)

    x_first, y_first, _ = splits.training_data(split, "train", method.clean_labels)
    return _train_corrected(
        method, split, config, seed, callbacks, (x_first, y_first, "train"), estimate, True
    )


def _train_forward(method, split, config, seed, callbacks):
    """Forward correction with an anchor-point estimate of `T` (Patrini et al. 2017).

    Stage 1 trains cross-entropy on all the training data (the noisy part plus
    the meta set); row `i` of `T` is its softmax prediction at the sample it
    gives the highest probability of class `i`. Stage 2 trains a fresh model
    (the same initial weights) on the same data with the forward-corrected
    loss on every sample: no sample is trusted.
    """
    x_all, y_all, _ = splits.training_data(split, method.train_data, method.clean_labels)

    def estimate(model):
        return correction.anchor_transition_matrix(_predict_probabilities(model, x_all))

    return _train_corrected(
        method, split, config, seed, callbacks, (x_all, y_all, method.train_data), estimate, False
    )


def _train_corrected(method, split, config, seed, callbacks, first_data, estimate, trust_meta):
    """Stage 1 (cross-entropy) -> `estimate(model)` of `T` -> stage 2 (forward correction)."""
    x_first, y_first, first_name = first_data
    _reset(seed)
    auxiliary = _build(split, config)
    auxiliary.compile(
        optimizer=_optimizer(config.learning_rate, config), loss=method.make_loss(config, seed)
    )
    start = time.perf_counter()
    _fit(auxiliary, x_first, y_first, config, seed, config.epochs, [])
    transition = estimate(auxiliary)
    first_seconds = time.perf_counter() - start
    first_accuracy = metrics.accuracy(split.y_eval, _predict_probabilities(auxiliary, split.x_eval))

    _reset(seed)
    model = _build(split, config)
    loss = correction.ForwardCorrectedLoss(transition, from_logits=True)
    model.compile(optimizer=_optimizer(config.learning_rate, config), loss=loss)
    x, y, trusted = splits.training_data(split, method.train_data, method.clean_labels)
    packed = correction.pack_labels(y, trusted if trust_meta else None)
    monitors = run_record.Monitors(method, split, config, seed)
    history, seconds = _fit(
        model, x, packed, config, seed, config.epochs, monitors.callbacks() + callbacks
    )
    stages = [
        _stage(
            "estimate",
            first_name,
            len(x_first),
            config.epochs,
            config.learning_rate,
            first_seconds,
            first_accuracy,
        ),
        _stage(
            "corrected",
            method.train_data,
            len(x),
            config.epochs,
            config.learning_rate,
            seconds,
            monitors.last_val_accuracy(),
        ),
    ]
    stages[1]["trusted_samples"] = int(trusted.sum()) if trust_meta else 0
    return run_record.record(method, seed, config, model, loss, split, monitors, [history], stages)


def _train_meta_then_retrain(method, split, config, seed, callbacks):
    """Meta-learn the loss, then train a fresh network on all the data with it frozen.

    Stage 1 is a meta-learned run without the guard (its weights are thrown
    away): the weights train on the training part, the meta set is seen only
    through the meta objective. Phi is averaged over the second half of its
    epochs (the iterates of a noisy one-step meta-gradient wander; their
    average does not). Stage 2 trains a fresh model (the same initial
    weights) on the training part plus the meta set, like the fixed
    baselines, with that phi frozen; a loss built from class counts is
    rebuilt with the counts of the stage-2 data. The run's `phi` is stage 1's
    path; its curves and final metrics are stage 2's.
    """
    _reset(seed)
    x_first, y_first, _ = splits.training_data(split, "train", method.clean_labels)
    counts = _class_counts(y_first, split)
    meta_model, learned, fit_kwargs = _compiled_model(
        method, split, config, seed, counts, meta_guard=None, train_on_meta_data=False
    )
    first_monitors = run_record.Monitors(method, split, config, seed)
    average = _PhiAverage(learned, start_epoch=config.epochs // 2)
    _, first_seconds = _fit(
        meta_model,
        x_first,
        y_first,
        config,
        seed,
        config.epochs,
        first_monitors.callbacks() + [average],
        **fit_kwargs,
    )

    x, y, _ = splits.training_data(split, method.train_data, method.clean_labels)
    counts = _class_counts(y, split)
    loss = _frozen_copy(learned, counts, average.values())
    _reset(seed)
    model = _build(split, config)
    model.compile(optimizer=_optimizer(config.learning_rate, config), loss=loss)
    monitors = run_record.Monitors(method, split, config, seed)
    monitors.parameters = first_monitors.parameters
    history, seconds = _fit(
        model, x, y, config, seed, config.epochs, monitors.callbacks()[:2] + callbacks
    )
    stages = [
        _stage(
            "meta",
            "train",
            len(x_first),
            config.epochs,
            config.learning_rate,
            first_seconds,
            first_monitors.last_val_accuracy(),
        ),
        _stage(
            "retrain",
            method.train_data,
            len(x),
            config.epochs,
            config.learning_rate,
            seconds,
            monitors.last_val_accuracy(),
        ),
    ]
    stages[1]["phi"] = {key: float(value) for key, value in loss.parameter_summary().items()}
    return run_record.record(method, seed, config, model, loss, split, monitors, [history], stages)


class _PhiAverage(keras.callbacks.Callback):
    """The mean of `loss`'s trainable variables at the ends of epochs `start_epoch`, ...."""

    def __init__(self, loss, start_epoch):
        super().__init__()
        self.loss = loss
        self.start_epoch = start_epoch
        self._sums = None
        self._count = 0

    def on_epoch_end(self, epoch, logs=None):
        if epoch < self.start_epoch:
            return
        values = [
            keras.ops.convert_to_numpy(v).astype("float64") for v in self.loss.trainable_variables
        ]
        self._sums = values if self._sums is None else [a + b for a, b in zip(self._sums, values)]
        self._count += 1

    def values(self):
        """The averages (the current values if no epoch was averaged)."""
        if not self._count:
            return [keras.ops.convert_to_numpy(v) for v in self.loss.trainable_variables]
        return [total / self._count for total in self._sums]


def _class_counts(y, split):
    """The number of samples of each class in the labels `y`."""
    return np.bincount(np.asarray(y).reshape(-1), minlength=split.num_classes)


def _frozen_copy(loss, class_counts, values):
    """A copy of the learnable `loss` with phi set to `values` (and its `class_counts`, if any)."""
    config = loss.get_config()
    if config.get("class_counts") is not None:
        config["class_counts"] = [float(c) for c in class_counts]
    copy = type(loss).from_config(config)
    for target, value in zip(copy.trainable_variables, values):
        target.assign(np.asarray(value, dtype=target.dtype))
    return copy


_PROCEDURES = {
    "finetune": _train_finetune,
    "glc": _train_glc,
    "forward": _train_forward,
    "retrain": _train_meta_then_retrain,
}


# -- pieces ---------------------------------------------------------------------


def _reset(seed):
    """A fresh Keras session seeded with `seed`: the next model built has the
    same initial weights as every other method's."""
    keras.backend.clear_session()
    gc.collect()
    keras.utils.set_random_seed(seed)


def _build(split, config):
    return models.build_model(
        config.model,
        split.x_train.shape[1:],
        split.num_classes,
        config.hidden_units,
        vocabulary_size=split.vocabulary_size,
    )


def _optimizer(learning_rate, config):
    if config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate)
    return keras.optimizers.SGD(learning_rate, momentum=config.momentum)


def _fit(model, x, y, config, seed, epochs, callbacks, **fit_kwargs):
    """Trains on `(x, y)` in the seeded order; returns `(history, seconds)`."""
    dataset, steps = splits.training_dataset(x, y, config.batch_size, epochs, seed)
    start = time.perf_counter()
    history = model.fit(
        dataset,
        epochs=epochs,
        steps_per_epoch=steps,
        verbose=0,
        shuffle=False,
        callbacks=callbacks,
        **fit_kwargs,
    )
    return history, time.perf_counter() - start


def _predict_probabilities(model, x):
    logits = model.predict(x, batch_size=run_record.PREDICT_BATCH, verbose=0).astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def _stage(name, data, samples, epochs, learning_rate, seconds, val_accuracy):
    return {
        "name": name,
        "data": data,
        "samples": int(samples),
        "epochs": int(epochs),
        "learning_rate": float(learning_rate),
        "wall_time_s": float(seconds),
        "val_accuracy": float(val_accuracy),
    }


def _compiled_model(
    method, split, config, seed, class_counts=None, meta_guard="auto", train_on_meta_data=True
):
    """`(model, loss, fit_kwargs)`: the compared network, compiled for `method`.

    `class_counts`: the samples per class of the data trained on, for the
    methods that use them (`Method.uses_class_counts`).
    """
    base = _build(split, config)
    # The loss is built after the model, so the model's initial weights are
    # the same for every method.
    if method.uses_class_counts:
        loss = method.make_loss(config, seed, class_counts)
    else:
        loss = method.make_loss(config, seed)
    optimizer = _optimizer(config.learning_rate, config)
    if method.training == "fixed":
        base.compile(optimizer=optimizer, loss=loss)
        return base, loss, {}
    model = MetaModel(base)
    meta = method.training in ("meta", "retrain")
    model.compile(
        optimizer=optimizer,
        loss=loss,
        meta_optimizer=keras.optimizers.Adam(config.meta_learning_rate),
        meta_every=config.meta_every if meta else 0,
        meta_objective=tml_losses.FixedLoss(config.meta_objective, from_logits=True),
        meta_method=config.estimator(),
        meta_global_clipnorm=config.meta_clipnorm,
        lookahead_learning_rate=config.lookahead_learning_rate,
        meta_seed=seed,
        meta_guard=meta_guard,
        train_on_meta_data=train_on_meta_data,
    )
    if not meta:
        return model, loss, {}
    meta_batch_size = config.meta_batch_size or config.batch_size
    if config.meta_sampler == "class_balanced":
        meta_data = meta_lib.class_balanced_dataset(
            split.x_meta, split.y_meta, meta_batch_size, seed=seed
        )
        return model, loss, {"meta_data": meta_data}
    return (
        model,
        loss,
        {"meta_data": (split.x_meta, split.y_meta), "meta_batch_size": meta_batch_size},
    )


def run_comparison(config, progress=None, on_run_end=None, data=None, make_callbacks=None):
    """Runs every method for every seed; returns the results dict.

    Args:
        config: a `CompareConfig`.
        progress: optional `callable(str)` receiving one line per run.
        on_run_end: optional `callable(results_so_far)` after each run (e.g.
            to save partial results).
        data: optional `datasets.Dataset` (default: `load_dataset(config.dataset)`).
        make_callbacks: optional `callable(method_name, seed) -> list` of extra
            Keras callbacks for that run (see `run_method`).

    Returns:
        A JSON-able dict: `schema_version`, `config`, `data` (sizes, the noise
        transition matrix targeted and, per seed, the one realised on the
        training part), `methods` (each with the data it trains on), `runs`
        (see `run_method`) and `summary` (per method and metric: mean, std, n,
        and paired per-seed differences against the baselines; see
        `summary.summarize`).
    """
    if data is None:
        data = datasets.load_dataset(config.dataset)
    if data.is_text:
        # Token ids of the (subset of the) training sentences and of the
        # validation ones, with a vocabulary learned from the training text.
        data = datasets.tokenize(
            data, config.vocabulary_size, config.sequence_length, config.train_subset
        )
    methods = [methods_lib.configured(methods_lib.METHODS[n], config) for n in config.methods]
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
            "keras_backend": keras.backend.backend(),
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
            "vocabulary_size": None if data.vocabulary is None else len(data.vocabulary),
            "eval_split": config.eval_split,
            "eval_description": (
                "the validation split (clean labels)"
                if config.eval_split == "val"
                else f"a {config.holdout_fraction:.0%} holdout of the training "
                "split (clean labels); the validation split is not used"
            ),
            "meta_labels": config.meta_labels,
            "noise_transition": noise_lib.transition_matrix(
                config.noise_rate, config.noise_kind, int(data.num_classes)
            ).tolist(),
            "per_seed": {},
        },
        "methods": [m.describe() for m in methods],
        "runs": [],
    }
    total = len(methods) * len(config.seeds)
    done = 0
    for seed in config.seeds:
        split = splits.make_split(data, config, seed)
        results["data"]["per_seed"][str(seed)] = split.describe()
        for method in methods:
            callbacks = make_callbacks(method.name, seed) if make_callbacks else ()
            record = run_method(method, split, config, seed, callbacks)
            results["runs"].append(record)
            done += 1
            if progress is not None:
                f = record["final"]
                progress(
                    f"[{done:>{len(str(total))}}/{total}] seed {seed} "
                    f"{method.name:<16} val acc {f['val_accuracy']:.4f}  "
                    f"macro-F1 {f['val_macro_f1']:.4f}  "
                    f"{config.convergence_fraction:.0%} of its final val acc by epoch "
                    f"{f['convergence_epoch']:<3}  {f['wall_time_s']:.1f} s"
                )
            if on_run_end is not None:
                results["summary"] = summary_lib.summarize_results(results)
                on_run_end(results)
    results["summary"] = summary_lib.summarize_results(results)
    return results
