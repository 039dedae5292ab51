"""`tf-metaloss compare`: does the learned loss win? Fixed vs meta-learned losses.

Trains the same model under fixed baselines, every meta-learned family, the
ablations (frozen phi, hand schedule) and, with label noise, an oracle on clean
labels; for several seeds. Prints one line per run, then the Markdown table,
and writes `results.json`, `results.md`, `learning_curves.png` and `phi.png`
to `--output-dir` (the JSON and Markdown also after every run, so a long job
can be watched).

Example:

```shell
tf-metaloss compare --dataset digits --noise 0.4 --epochs 30 --seeds 0 1 2
tf-metaloss compare --dataset path/to/data.npz --model small_cnn --methods ce,gce,learned
tf-metaloss compare --eval-split holdout ...   # choose settings without the validation split
```
"""

import argparse
import shlex

from tf_metaloss import plotting
from tf_metaloss.evaluation import config as config_lib
from tf_metaloss.evaluation import methods as methods_lib
from tf_metaloss.evaluation import models
from tf_metaloss.evaluation import report
from tf_metaloss.evaluation import runner
from tf_metaloss.losses import functional

HELP = "compare fixed and meta-learned losses (tables, JSON, plots)"


def register(subparsers):
    """Adds the `compare` subcommand to `subparsers`."""
    defaults = config_lib.CompareConfig()
    parser = subparsers.add_parser(
        "compare",
        help=HELP,
        description=__doc__.split("\n\n")[1],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset",
        default=defaults.dataset,
        help="'digits', 'cifar10' (TFDS), 'tfds:<name>' or a .npz "
        "file with x_train, y_train, x_val, y_val",
    )
    data.add_argument(
        "--noise",
        type=float,
        default=defaults.noise_rate,
        help="label noise rate of the training labels, in [0, 1]",
    )
    data.add_argument(
        "--noise-kind", default=defaults.noise_kind, choices=("symmetric", "asymmetric")
    )
    data.add_argument(
        "--train-subset",
        type=int,
        default=None,
        help="use only this many training samples (fixed subset)",
    )
    data.add_argument(
        "--eval-split",
        default=defaults.eval_split,
        choices=config_lib.EVAL_SPLITS,
        help="'val' to report; 'holdout' to choose settings on a "
        "holdout of the training split without touching 'val'",
    )
    data.add_argument("--holdout-fraction", type=float, default=defaults.holdout_fraction)
    data.add_argument(
        "--meta-fraction",
        type=float,
        default=defaults.meta_fraction,
        help="share of the training data held out as the meta set",
    )
    data.add_argument("--meta-labels", default=defaults.meta_labels, choices=config_lib.META_LABELS)

    runs = parser.add_argument_group("runs")
    runs.add_argument(
        "--methods",
        default="all",
        help="comma-separated names from "
        f"{list(methods_lib.METHODS)} or sets "
        f"{list(methods_lib.METHOD_SETS)}",
    )
    runs.add_argument("--seeds", type=int, nargs="+", default=list(defaults.seeds))
    runs.add_argument("--epochs", type=int, default=defaults.epochs)
    runs.add_argument("--batch-size", type=int, default=defaults.batch_size)
    runs.add_argument(
        "--learning-rate",
        type=float,
        default=defaults.learning_rate,
        help="SGD learning rate of the model (every method)",
    )
    runs.add_argument("--momentum", type=float, default=defaults.momentum)
    runs.add_argument("--model", default=defaults.model, choices=models.MODELS)
    runs.add_argument("--hidden-units", type=int, default=defaults.hidden_units)

    meta = parser.add_argument_group("meta-learning")
    meta.add_argument(
        "--meta-learning-rate",
        type=float,
        default=defaults.meta_learning_rate,
        help="Adam learning rate of the loss parameters phi",
    )
    meta.add_argument("--meta-every", type=int, default=defaults.meta_every)
    meta.add_argument(
        "--meta-batch-size", type=int, default=None, help="meta batch size (default: --batch-size)"
    )
    meta.add_argument(
        "--meta-objective",
        default=defaults.meta_objective,
        choices=functional.CLASSIFICATION_LOSSES,
        help="base loss the meta step minimises on the meta set",
    )
    meta.add_argument("--meta-clipnorm", type=float, default=None)
    meta.add_argument(
        "--regularization",
        type=float,
        default=defaults.regularization,
        help="strength of the pull of phi toward its start",
    )
    meta.add_argument("--unroll-steps", type=int, default=defaults.unroll_steps)
    meta.add_argument(
        "--schedule-final",
        default=_format_weights(defaults.schedule_final),
        help="final blend weights of the hand schedule, e.g. "
        "'generalized_crossentropy=1' or 'crossentropy=1,"
        "mae_classification=1'",
    )

    output = parser.add_argument_group("output")
    output.add_argument("--output-dir", default="compare_results")
    output.add_argument("--no-figures", action="store_true", help="skip the PNG plots")
    output.add_argument("--quiet", action="store_true", help="print only the final table")
    parser.set_defaults(func=run)
    return parser


def config_from_args(args):
    """The `CompareConfig` of parsed arguments (with the canonical command)."""
    config = config_lib.CompareConfig(
        dataset=args.dataset,
        noise_rate=args.noise,
        noise_kind=args.noise_kind,
        methods=args.methods,
        seeds=tuple(args.seeds),
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        momentum=args.momentum,
        model=args.model,
        hidden_units=args.hidden_units,
        train_subset=args.train_subset,
        eval_split=args.eval_split,
        holdout_fraction=args.holdout_fraction,
        meta_fraction=args.meta_fraction,
        meta_labels=args.meta_labels,
        meta_learning_rate=args.meta_learning_rate,
        meta_every=args.meta_every,
        meta_batch_size=args.meta_batch_size,
        meta_objective=args.meta_objective,
        meta_clipnorm=args.meta_clipnorm,
        regularization=args.regularization,
        unroll_steps=args.unroll_steps,
        schedule_final=parse_weights(args.schedule_final),
    )
    config.command = canonical_command(config, args.output_dir)
    return config


def parse_weights(text):
    """`"a=1,b=0.5"` -> `{"a": 1.0, "b": 0.5}` with a clear error.

    Example:

    >>> from tf_metaloss.commands.compare import parse_weights
    >>> parse_weights("generalized_crossentropy=1")
    {'generalized_crossentropy': 1.0}
    """
    weights = {}
    for item in (p.strip() for p in str(text).split(",")):
        name, sep, value = item.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ValueError(
                "Invalid value for argument `--schedule-final`. Expected "
                "'name=weight[,name=weight...]', e.g. "
                f"'generalized_crossentropy=1'. Received: {text!r}"
            )
    return weights


def _format_weights(weights):
    return ",".join(f"{k}={v:g}" for k, v in weights.items())


def canonical_command(config, output_dir):
    """The `tf-metaloss compare` command line that reproduces `config`."""
    parts = [
        "tf-metaloss",
        "compare",
        "--dataset",
        config.dataset,
        "--noise",
        f"{config.noise_rate:g}",
        "--noise-kind",
        config.noise_kind,
        "--methods",
        ",".join(config.methods),
        "--seeds",
        *[str(s) for s in config.seeds],
        "--epochs",
        str(config.epochs),
        "--batch-size",
        str(config.batch_size),
        "--learning-rate",
        f"{config.learning_rate:g}",
        "--momentum",
        f"{config.momentum:g}",
        "--model",
        config.model,
        "--hidden-units",
        str(config.hidden_units),
    ]
    if config.train_subset is not None:
        parts += ["--train-subset", str(config.train_subset)]
    parts += ["--eval-split", config.eval_split]
    if config.eval_split == "holdout":
        parts += ["--holdout-fraction", f"{config.holdout_fraction:g}"]
    parts += [
        "--meta-fraction",
        f"{config.meta_fraction:g}",
        "--meta-labels",
        config.meta_labels,
        "--meta-learning-rate",
        f"{config.meta_learning_rate:g}",
        "--meta-every",
        str(config.meta_every),
    ]
    if config.meta_batch_size is not None:
        parts += ["--meta-batch-size", str(config.meta_batch_size)]
    parts += ["--meta-objective", config.meta_objective]
    if config.meta_clipnorm is not None:
        parts += ["--meta-clipnorm", f"{config.meta_clipnorm:g}"]
    parts += [
        "--regularization",
        f"{config.regularization:g}",
        "--unroll-steps",
        str(config.unroll_steps),
        "--schedule-final",
        _format_weights(config.schedule_final),
        "--output-dir",
        output_dir,
    ]
    return shlex.join(parts)


def run(args):
    """Runs the comparison; returns 0."""
    config = config_from_args(args)
    if not args.no_figures:
        # Fail before hours of training, not when the figures are drawn.
        plotting.require_matplotlib("Drawing the comparison's figures", "or pass --no-figures")
    progress = None if args.quiet else (lambda line: print(line, flush=True))

    def save_partial(results):
        report.write_results(results, args.output_dir, figures=False)

    if progress:
        progress(config.command)
    results = runner.run_comparison(config, progress=progress, on_run_end=save_partial)
    paths = report.write_results(results, args.output_dir, figures=not args.no_figures)
    print()
    print(report.format_table(results))
    print()
    for kind, path in paths.items():
        print(f"wrote {kind}: {path}")
    return 0
