"""Runs the comparison: every method, every seed, the same network and data order.

`run_comparison(config)` trains the same model (same architecture, initial
weights, optimizer, data order and seed) once per method and seed and returns
a JSON-able results dict; `run_method` is one run. Labels are corrupted with
`inject_label_noise`; a small held-out slice of the training data is the meta
set (clean labels, as in Meta-Weight-Net, or noisy). Every method trains on
the rest (the meta-learned ones also see the meta set's labels, through the
meta objective only). Every metric is measured on clean labels: by default on
the validation split, or, for choosing settings, on a holdout of the training
split (`eval_split="holdout"`) so the validation split is never looked at.

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
from tf_metaloss.evaluation import datasets
from tf_metaloss.evaluation import methods as methods_lib
from tf_metaloss.evaluation import metrics
from tf_metaloss.evaluation import models
from tf_metaloss.evaluation import schedules
from tf_metaloss.evaluation import splits
from tf_metaloss.evaluation import summary as summary_lib
from tf_metaloss.models.meta_model import MetaModel

SCHEMA_VERSION = 1


def run_method(method, split, config, seed):
    """Trains the model with one method and seed; returns the run record."""
    keras.backend.clear_session()
    gc.collect()
    keras.utils.set_random_seed(seed)
    model, loss, fit_kwargs = _compiled_model(method, split, config, seed)
    y_fit = split.y_train_clean if method.clean_labels else split.y_train
    dataset, steps = splits.training_dataset(
        split.x_train, y_fit, config.batch_size, config.epochs, seed
    )
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
            schedules.LinearParameterSchedule(
                schedules.schedule_targets(loss, config.schedule_final), steps * config.epochs
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
    base = models.build_model(
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
        `phi` history) and `summary` (per method and metric: mean, std, n).
    """
    if data is None:
        data = datasets.load_dataset(config.dataset)
    methods = [methods_lib.METHODS[n] for n in config.methods]
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
        split = splits.make_split(data, config, seed)
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
                results["summary"] = summary_lib.summarize(
                    results["runs"], config.convergence_fraction
                )
                on_run_end(results)
    results["summary"] = summary_lib.summarize(results["runs"], config.convergence_fraction)
    return results
