"""The record of one run of a comparison: its monitors, curves and final metrics."""

import numpy as np

from tf_metaloss.evaluation import imbalance
from tf_metaloss.evaluation import metrics

# Batch size of the predictions the records are computed from.
PREDICT_BATCH = 512


class Monitors:
    """The metric callbacks of one run, kept across its monitored stages."""

    def __init__(self, method, split, config, seed):
        y_train = split.y_train_clean if method.clean_labels else split.y_train
        self.gradients = metrics.GradientNormHistory()
        self.classification = metrics.ClassificationHistory(
            {
                "val": (split.x_eval, split.y_eval),
                "train": _train_eval_entry(split, y_train, config, seed),
            },
            num_classes=split.num_classes,
        )
        self.parameters = metrics.ParameterHistory()

    def callbacks(self):
        return [self.gradients, self.classification, self.parameters]

    def last_val_accuracy(self):
        return self.classification.history["val_accuracy"][-1]


def _train_eval_entry(split, y_fit, config, seed):
    """Training samples on which clean accuracy (and memorization) is measured."""
    n_eval = min(config.train_eval_size, len(split.x_train))
    pick = np.random.default_rng([seed, 3]).permutation(len(split.x_train))[:n_eval]
    entry = (split.x_train[pick], split.y_train_clean[pick])
    wrong = y_fit[pick] != split.y_train_clean[pick]
    if wrong.any():
        entry += (y_fit[pick], wrong)
    return entry


# The guard's logs (`tml.models.guard.GuardCheck`), kept as curves.
_GUARD_LOGS = ("guard_objective", "guard_start_objective", "guard_reverted")


def record(method, seed, config, model, loss, split, monitors, histories, stages):
    """The JSON-able record of a finished run (see `runner.run_method`)."""
    curves = dict(monitors.classification.history)
    val_curve = curves["val_accuracy"]
    curves = {"epoch": list(range(1, len(val_curve) + 1)), **curves}
    curves["loss"] = [float(v) for h in histories for v in h.history.get("loss", [])]
    final = {
        "val_accuracy": val_curve[-1],
        "val_macro_f1": curves["val_macro_f1"][-1],
        "train_accuracy": curves["train_accuracy"][-1],
        "generalization_gap": metrics.generalization_gap(
            curves["train_accuracy"][-1], val_curve[-1]
        ),
        "convergence_epoch": metrics.convergence_epoch(val_curve, config.convergence_fraction),
        "best_val_accuracy": max(val_curve),
        "wall_time_s": sum(stage["wall_time_s"] for stage in stages),
        "eval_time_s": monitors.classification.seconds,
        "skipped_updates": float(
            sum(v for h in histories for v in h.history.get("skipped_updates", [0.0]))
        ),
    }
    if "train_memorized" in curves:
        final["memorized"] = curves["train_memorized"][-1]
    for key in _GUARD_LOGS:
        values = [float(v) for h in histories for v in h.history.get(key, [])]
        if values:
            curves[key] = values
    if getattr(model, "guard_reference", None) is not None:
        final["guard_reverted"] = float(model.guard_reverted)
    diagnostics = {}
    if split.class_counts is not None:
        final_class, diagnostics = _class_metrics(model, split)
        final.update(final_class)
    try:
        stability = metrics.gradient_norm_stability(monitors.gradients.norms)
    except ValueError:  # every update was skipped (non-finite gradients)
        stability = {
            "mean": float("nan"),
            "variance": float("nan"),
            "cv": float("nan"),
            "max": float("nan"),
            "steps": 0,
        }
    final.update({f"grad_norm_{k}": v for k, v in stability.items() if k != "steps"})
    for probe in method.probes:
        for key, value in probe(model, loss, split).items():
            if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
                final[key] = float(value)
            else:
                diagnostics[key] = value
    return {
        "method": method.name,
        "seed": seed,
        "loss": type(loss).__name__,
        "final": final,
        "curves": curves,
        "phi": monitors.parameters.history,
        "phi_bounds": monitors.parameters.bounds,
        "grad_norm_steps": stability["steps"],
        "stages": stages,
        "diagnostics": diagnostics,
    }


def _class_metrics(model, split):
    """Balanced accuracy and the 3 rarest classes' accuracy on the evaluation set.

    Returns `(final metrics, diagnostics)`; the diagnostics hold the accuracy
    of every class (`val_class_accuracy`) and the training counts.
    """
    scores = metrics.predict_in_batches(model, split.x_eval, PREDICT_BATCH)
    per_class = imbalance.class_accuracies(split.y_eval, scores, split.num_classes)
    final = {
        "val_balanced_accuracy": imbalance.balanced_accuracy(
            split.y_eval, scores, split.num_classes
        ),
        "val_rare3_accuracy": imbalance.rarest_accuracy(split.y_eval, scores, split.class_counts),
    }
    diagnostics = {
        "val_class_accuracy": [None if np.isnan(a) else float(a) for a in per_class],
        "train_class_counts": [int(c) for c in split.class_counts],
    }
    return final, diagnostics
