"""Chooses ClassAdjustedLoss's meta settings on a HOLDOUT of cifar10_dev's training split.

Every run evaluates on a 20% holdout of the training split (`eval_split=
"holdout"`); the validation split is never read. Imbalance ratio 50, seeds 0
and 1, the short configuration of the `cifar10-dev-imbalance` preset (small
CNN, 20 epochs). One result directory per variant under
docs/figures/imbalance/screening/ (skipped when it exists), then a table of
every variant's mean holdout accuracy, balanced accuracy and 3 rarest
classes' accuracy.

Usage:
    PYTHONPATH=. python scripts/imbalance/screen.py [--data PATH] [--only NAME ...]
"""

import argparse
import json
import os
import sys

import numpy as np

from tf_metaloss.evaluation import config as config_lib
from tf_metaloss.evaluation import datasets
from tf_metaloss.evaluation import imbalance
from tf_metaloss.evaluation import methods as methods_lib
from tf_metaloss.evaluation import report
from tf_metaloss.evaluation import runner
from tf_metaloss.losses import ClassAdjustedLoss

OUT = "docs/figures/imbalance/screening"
COMMON = {
    "imbalance_ratio": 50.0,
    "eval_split": "holdout",
    "seeds": (0, 1),
    "model": "small_cnn",
    "hidden_units": 64,
    "batch_size": 128,
    "epochs": 20,
    "learning_rate": 0.05,
    "momentum": 0.9,
    "meta_objective": "crossentropy",
}


def _class_adjusted(**options):
    def make(config, seed, class_counts):
        return ClassAdjustedLoss(
            len(class_counts), from_logits=True, regularization=config.regularization, **options
        )

    return make


def _class_adjusted_prior(config, seed, class_counts):
    """Offsets starting at log prior (logit adjustment), then meta-learned."""
    offsets = imbalance.logit_adjustment_offsets(class_counts).tolist()
    return ClassAdjustedLoss(
        len(class_counts),
        from_logits=True,
        regularization=config.regularization,
        initial_offsets=offsets,
    )


def _class_adjusted_tau(config, seed, class_counts):
    """A learned temperature of the known log prior, starting at logit adjustment."""
    return ClassAdjustedLoss(
        len(class_counts),
        from_logits=True,
        regularization=config.regularization,
        class_counts=list(class_counts),
    )


def _ldam(max_margin):
    def make(config, seed, class_counts):
        margins = imbalance.ldam_margins(class_counts, max_margin=max_margin)
        return imbalance.AdjustedCrossEntropy(margins=margins)

    return make


def _register(
    name, label, make, training="fixed", group="learned", callbacks=None, train_data=None
):
    methods_lib.METHODS[name] = methods_lib.Method(
        name,
        label,
        group,
        make,
        training,
        uses_class_counts=True,
        make_callbacks=callbacks,
        train_data=train_data,
    )


# Screening-only variants of the learned loss and of LDAM's margin.
_register("ca_weights", "ClassAdjusted offsets+weights", _class_adjusted(weights=True), "meta")
_register("ca_margins", "ClassAdjusted offsets+margins", _class_adjusted(margins=True), "meta")
_register(
    "ca_all",
    "ClassAdjusted offsets+weights+margins",
    _class_adjusted(weights=True, margins=True),
    "meta",
)
_register("ca_prior", "ClassAdjusted offsets from log prior", _class_adjusted_prior, "meta")
_register("ca_tau", "ClassAdjusted temperature of the prior", _class_adjusted_tau, "meta")
# The same, its weights trained on the meta set too (like the fixed baselines).
_register(
    "ca_tau_tm",
    "ClassAdjusted temperature of the prior (trains on train+meta)",
    _class_adjusted_tau,
    "meta",
    train_data="train+meta",
)


def _logit_adjusted_tau(tau):
    def make(config, seed, class_counts):
        offsets = imbalance.logit_adjustment_offsets(class_counts, tau=tau)
        return imbalance.AdjustedCrossEntropy(offsets=offsets)

    return make


for _t in (0.5, 1.0, 1.5, 2.0):
    _register(
        f"la_tau{_t:g}", f"logit adjustment (tau={_t:g})", _logit_adjusted_tau(_t), group="baseline"
    )
for _m in (0.5, 1.0, 4.0):
    _register(
        f"ldam_drw_m{_m:g}",
        f"LDAM-DRW (max margin {_m:g})",
        _ldam(_m),
        group="baseline",
        callbacks=methods_lib.METHODS["ldam_drw"].make_callbacks,
    )

# Meta-learn tau on the training part, then train a fresh network on train+meta with it.
_register(
    "ca_tau_rt",
    "ClassAdjusted temperature of the prior (meta, then retrain on train+meta)",
    _class_adjusted_tau,
    "retrain",
    train_data="train+meta",
)

# name -> (methods, overrides)
VARIANTS = {
    "baselines": ("ce,focal,cb_ce,logit_adjusted,ldam_drw", {}),
    "ldam_margins": ("ldam_drw_m0.5,ldam_drw_m1,ldam_drw_m4", {}),
    "mlr0.01": ("class_adjusted", {"meta_learning_rate": 0.01}),
    "mlr0.03": ("class_adjusted", {"meta_learning_rate": 0.03}),
    "mlr0.05": ("class_adjusted", {"meta_learning_rate": 0.05}),
    "mlr0.1": ("class_adjusted", {"meta_learning_rate": 0.1}),
    "mlr0.3": ("class_adjusted", {"meta_learning_rate": 0.3}),
    "mlr0.1_balanced": (
        "class_adjusted",
        {"meta_learning_rate": 0.1, "meta_sampler": "class_balanced"},
    ),
    "mlr0.03_balanced": (
        "class_adjusted",
        {"meta_learning_rate": 0.03, "meta_sampler": "class_balanced"},
    ),
    "mlr0.05_prior": ("ca_prior", {"meta_learning_rate": 0.05}),
    "mlr0.05_clip1": ("class_adjusted", {"meta_learning_rate": 0.05, "meta_clipnorm": 1.0}),
    "mlr0.03_families": ("ca_weights,ca_margins,ca_all", {"meta_learning_rate": 0.03}),
    "mlr0.1_families": ("ca_weights,ca_margins,ca_all", {"meta_learning_rate": 0.1}),
}
# Is there anything to learn beyond logit adjustment's tau=1? Three seeds at every ratio.
for _r in (10, 50, 100):
    VARIANTS[f"la_tau_r{_r}"] = (
        "la_tau0.5,la_tau1,la_tau1.5,la_tau2",
        {"imbalance_ratio": float(_r), "seeds": (0, 1, 2)},
    )
    for _lr in (0.01, 0.05, 0.1):
        for _method in ("ca_tau", "ca_tau_tm"):
            VARIANTS[f"{_method[3:]}_mlr{_lr:g}_r{_r}"] = (
                _method,
                {"imbalance_ratio": float(_r), "seeds": (0, 1, 2), "meta_learning_rate": _lr},
            )
        # tau_rt_mlr*: made at commit ecb5a36, whose retrain kept stage 1's guard
        # and its last phi. The current retrain (no guard, phi averaged over
        # the second half of stage 1) is screened as tau_rtavg_mlr*.
        VARIANTS[f"tau_rtavg_mlr{_lr:g}_r{_r}"] = (
            "ca_tau_rt",
            {"imbalance_ratio": float(_r), "seeds": (0, 1, 2), "meta_learning_rate": _lr},
        )
        # The non-greedy estimator: tau's effect carried over the whole run.
        VARIANTS[f"tau_fm_mlr{_lr:g}_r{_r}"] = (
            "ca_tau",
            {
                "imbalance_ratio": float(_r),
                "seeds": (0, 1, 2),
                "meta_learning_rate": _lr,
                "meta_method": "forward_mode",
            },
        )


def _table(names):
    rows = []
    for name in names:
        path = os.path.join(OUT, name, "results.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            results = json.load(f)
        for method, entry in results["summary"].items():
            lr = results["config"]["meta_learning_rate"]
            sampler = results["config"].get("meta_sampler", "shuffle")
            cells = [
                f"{100 * entry[k]['mean']:.2f} ± {100 * entry[k]['std']:.2f}"
                for k in ("val_accuracy", "val_balanced_accuracy", "val_rare3_accuracy")
            ]
            per_seed = [
                f"{100 * r['final']['val_accuracy']:.1f}"
                for r in results["runs"]
                if r["method"] == method
            ]
            settings = f"meta lr {lr:g}, {sampler}" if method.startswith(("class", "ca_")) else ""
            rows.append(
                f"| {name} | {method} | {settings} | "
                + " | ".join(cells)
                + f" | {' / '.join(per_seed)} |"
            )
    header = (
        "| variant | method | meta settings | holdout acc % | balanced acc % | "
        "3 rarest acc % | per seed |\n|---|---|---|---:|---:|---:|---|"
    )
    return header + "\n" + "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="/work/shared/data/cifar10_dev.npz")
    parser.add_argument("--only", nargs="+", default=None, choices=tuple(VARIANTS))
    args = parser.parse_args(argv)
    names = args.only or list(VARIANTS)
    data = datasets.load_dataset(args.data)
    for name in names:
        out = os.path.join(OUT, name)
        if os.path.exists(os.path.join(out, "results.json")):
            print(f"skip {name} (done)", flush=True)
            continue
        method_names, overrides = VARIANTS[name]
        config = config_lib.CompareConfig(
            dataset=args.data, methods=method_names, **{**COMMON, **overrides}
        )
        config.command = f"PYTHONPATH=. python scripts/imbalance/screen.py --only {name}"
        print(f"== {name}: {method_names} {overrides}", flush=True)
        results = runner.run_comparison(config, progress=print, data=data)
        report.write_results(results, out, figures=False)
    print(_table(list(VARIANTS)))
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    sys.exit(main())
