"""`tf-metaloss compare`: does the learned loss win? Fixed vs meta-learned losses.

Trains the same model under fixed baselines (each on the noisy training data
plus the clean meta set), the two-stage baselines that use the meta set
(fine-tuning, Gold Loss Correction, forward correction with an estimated noise
matrix), every meta-learned family, the ablations (frozen phi, hand schedule)
and, with label noise, an oracle on clean labels; for several seeds. Prints one
line per run, then the Markdown tables, and writes `results.json`,
`results.md`, `learning_curves.png` and `phi.png` to `--output-dir` (the JSON
and Markdown also after every run, so a long job can be watched). `--preset`
starts from named settings (every option still overrides them); `--merge`
combines the `results.json` files of runs split by seed or method.

Example:

```shell
tf-metaloss compare --dataset digits --noise 0.4 --epochs 30 --seeds 0 1 2
tf-metaloss compare --dataset path/to/data.npz --model small_cnn --methods ce,gce,learned
tf-metaloss compare --eval-split holdout ...   # choose settings without the validation split
tf-metaloss compare --preset cifar10-dev-full --dataset cifar10_dev.npz --noise 0.4 \
    --noise-kind asymmetric --seeds 0 --methods glc --output-dir runs/asym40_glc_s0
tf-metaloss compare --merge runs/*/results.json --output-dir runs/asym40
tf-metaloss compare --preset cifar10-dev-imbalance --dataset cifar10_dev.npz --imbalance 100
tf-metaloss compare --methods ce,meta_loss --meta-method neumann ...   # the estimator's effect
tf-metaloss compare --preset sst2-tiny --dataset path/to/glue_sst2 --noise 0.3 --seeds 0 \
    --methods gce --output-dir runs/sst2_sym30/gce_s0
```
"""

import argparse
import json
import shlex
import textwrap

from tf_metaloss import plotting
from tf_metaloss.commands import SUMMARIES
from tf_metaloss.commands import arguments
from tf_metaloss.commands import compare_types
from tf_metaloss.evaluation import config as config_lib
from tf_metaloss.evaluation import datasets
from tf_metaloss.evaluation import imbalance
from tf_metaloss.evaluation import methods as methods_lib
from tf_metaloss.evaluation import models
from tf_metaloss.evaluation import report
from tf_metaloss.evaluation import runner
from tf_metaloss.evaluation import summary
from tf_metaloss.losses import functional
from tf_metaloss.meta import estimators

HELP = SUMMARIES["compare"]

# Options that set a `CompareConfig` field: option dest -> field. They have no
# argparse default (absent unless given), so a preset fills what is not given.
FIELDS = {
    "dataset": "dataset",
    "noise": "noise_rate",
    "noise_kind": "noise_kind",
    "train_subset": "train_subset",
    "eval_split": "eval_split",
    "holdout_fraction": "holdout_fraction",
    "meta_fraction": "meta_fraction",
    "meta_labels": "meta_labels",
    "imbalance": "imbalance_ratio",
    "meta_per_class": "meta_per_class",
    "methods": "methods",
    "seeds": "seeds",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "learning_rate": "learning_rate",
    "momentum": "momentum",
    "optimizer": "optimizer",
    "model": "model",
    "hidden_units": "hidden_units",
    "vocabulary_size": "vocabulary_size",
    "sequence_length": "sequence_length",
    "finetune_epochs": "finetune_epochs",
    "finetune_learning_rate": "finetune_learning_rate",
    "meta_learning_rate": "meta_learning_rate",
    "meta_every": "meta_every",
    "meta_batch_size": "meta_batch_size",
    "meta_sampler": "meta_sampler",
    "meta_objective": "meta_objective",
    "meta_method": "meta_method",
    "meta_clipnorm": "meta_clipnorm",
    "regularization": "regularization",
    "unroll_steps": "unroll_steps",
    "lookahead_learning_rate": "lookahead_learning_rate",
    "schedule_final": "schedule_final",
    "formula": "formula",
}


# The option of each `CompareConfig` field, to name it in errors.
FLAGS = {field: "--" + dest.replace("_", "-") for dest, field in FIELDS.items()}


def register(subparsers):
    """Adds the `compare` subcommand to `subparsers`."""
    defaults = config_lib.CompareConfig()
    parser = subparsers.add_parser(
        "compare",
        help=HELP,
        # A short usage: the options are listed by --help, below.
        usage="%(prog)s [--preset NAME] [--dataset DATASET] [options]",
        description=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="presets:\n"
        + "\n".join(
            textwrap.fill(
                f"{name}: {preset.description}",
                width=78,
                initial_indent="  ",
                subsequent_indent="      ",
            )
            for name, preset in config_lib.PRESETS.items()
        ),
        argument_default=argparse.SUPPRESS,
    )

    def add(group, flag, help, **kwargs):
        dest = flag.lstrip("-").replace("-", "_")
        if dest in compare_types.TYPES:
            kwargs.setdefault("type", compare_types.TYPES[dest])
        shown = getattr(defaults, FIELDS[dest])
        if flag == "--methods":
            shown = "all"
        elif isinstance(shown, dict):
            shown = _format_weights(shown)
        elif isinstance(shown, tuple):
            shown = " ".join(map(str, shown)) if flag == "--seeds" else ",".join(shown)
        group.add_argument(flag, help=f"{help} (default: {shown})", **kwargs)

    setup = parser.add_argument_group("presets and merging")
    setup.add_argument(
        "--preset",
        default=None,
        choices=tuple(config_lib.PRESETS),
        help="start from named settings (listed below); every other option overrides them",
    )
    setup.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="RESULTS_JSON",
        help="merge the results.json files of runs of one configuration (e.g. one per seed "
        "or method) into one summary in --output-dir; nothing is trained",
    )

    data = parser.add_argument_group("data")
    add(
        data,
        "--dataset",
        "'digits', 'cifar10' (TFDS), 'tfds:<name>', a .npz file with x_train, y_train, "
        "x_val, y_val, or SST-2 text: 'sst2' (TFDS glue/sst2) or a directory holding "
        "sst2_train.jsonl and sst2_dev.jsonl",
    )
    add(data, "--noise", "label noise rate of the training labels, in [0, 1]")
    add(
        data,
        "--noise-kind",
        "the noise model; 'asymmetric' flips classes by the CIFAR-10 map (10 classes) "
        "or class 1 to class 0 (2 classes, e.g. SST-2 positive to negative)",
        choices=("symmetric", "asymmetric"),
    )
    add(
        data,
        "--train-subset",
        "use only this many training samples (a fixed subset), or 'all'",
        type=compare_types.train_subset,
    )
    add(
        data,
        "--eval-split",
        "'val' to report; 'holdout' to choose settings on a holdout of the training split "
        "without touching 'val'",
        choices=config_lib.EVAL_SPLITS,
    )
    add(data, "--holdout-fraction", "share of the training split held out")
    add(data, "--meta-fraction", "share of the training data held out as the meta set")
    add(data, "--meta-labels", "labels of the meta set", choices=config_lib.META_LABELS)
    add(
        data,
        "--imbalance",
        "long-tailed training data: class c keeps n_max * RATIO^(-c/(K-1)) samples (seeded), "
        "a balanced meta set of --meta-per-class per class is held out, and the balanced "
        "evaluation split reports balanced accuracy and the 3 rarest classes' accuracy; "
        "--methods then defaults to the 'imbalance' set and --meta-objective to crossentropy",
        metavar="RATIO",
    )
    add(
        data,
        "--meta-per-class",
        "with --imbalance: samples per class of the balanced meta set (None: "
        f"{imbalance.DEFAULT_META_PER_CLASS})",
    )

    runs = parser.add_argument_group("runs")
    add(
        runs,
        "--methods",
        f"comma-separated names from {list(methods_lib.METHODS)} or sets "
        f"{list(methods_lib.METHOD_SETS)}",
    )
    add(runs, "--seeds", "one run per method and seed", nargs="+")
    add(runs, "--epochs", "training epochs")
    add(runs, "--batch-size", "batch size")
    add(runs, "--learning-rate", "learning rate of the model (every method)")
    add(runs, "--momentum", "SGD momentum")
    add(
        runs,
        "--optimizer",
        "the model's optimizer: SGD with --momentum, or Adam",
        choices=config_lib.OPTIMIZERS,
    )
    add(runs, "--model", "the compared network", choices=models.MODELS)
    add(
        runs,
        "--hidden-units",
        "units of the dense hidden layer (tiny_bert: the transformer's width)",
    )
    add(
        runs,
        "--vocabulary-size",
        "text: the largest WordPiece vocabulary learned from the training sentences",
    )
    add(runs, "--sequence-length", "text: tokens per sentence")
    add(
        runs,
        "--finetune-epochs",
        "epochs of the finetune baseline's second stage, on the meta set only",
    )
    add(
        runs,
        "--finetune-learning-rate",
        "SGD learning rate of that second stage (same momentum)",
    )

    meta = parser.add_argument_group("meta-learning")
    add(meta, "--meta-learning-rate", "Adam learning rate of the loss parameters phi")
    add(meta, "--meta-every", "a meta step every this many steps")
    add(meta, "--meta-batch-size", "meta batch size (None: --batch-size)")
    add(
        meta,
        "--meta-sampler",
        "meta batches: random ('shuffle') or every class equally often ('class_balanced')",
        choices=config_lib.META_SAMPLERS,
    )
    add(
        meta,
        "--meta-objective",
        "base loss the meta step minimises on the meta set",
        choices=functional.CLASSIFICATION_LOSSES,
    )
    add(meta, "--meta-clipnorm", "clip the meta-gradient's global norm")
    add(meta, "--regularization", "strength of the pull of phi toward its start")
    add(
        meta,
        "--unroll-steps",
        "lookahead steps (of --meta-method second_order or first_order)",
    )
    add(
        meta,
        "--meta-method",
        f"how the meta-gradient is computed: one of {list(estimators.ALIASES)} (each "
        "with its defaults) or an estimator's config as JSON, e.g. "
        f"'{compare_types.META_METHOD_EXAMPLE}'",
        type=compare_types.meta_method,
        metavar="NAME_OR_JSON",
    )
    add(
        meta,
        "--lookahead-learning-rate",
        "step size of the lookahead (None: --learning-rate)",
    )
    add(
        meta,
        "--schedule-final",
        "final blend weights of the hand schedule, e.g. 'generalized_crossentropy=1' or "
        "'crossentropy=1,mae_classification=1'",
    )

    formula = parser.add_argument_group("the method 'formula'")
    add(
        formula,
        "--formula",
        "the loss of the method 'formula' (a fixed loss, like the baselines): a formula "
        "such as 'neg(log(add(p_true, 0.3)))', or the search_log.json of a "
        "`tf-metaloss search` (its best formula)",
    )

    output = parser.add_argument_group("output")
    output.add_argument(
        "--output-dir", default="compare_results", help="(default: compare_results)"
    )
    output.add_argument("--no-figures", action="store_true", default=False, help="skip the PNGs")
    output.add_argument(
        "--quiet", action="store_true", default=False, help="print only the final tables"
    )
    parser.set_defaults(func=run)
    return parser


def _given(args):
    """`{config field: value}` of the options given on the command line."""
    given = {}
    for dest, field in FIELDS.items():
        if hasattr(args, dest):
            value = getattr(args, dest)
            if field == "seeds":
                value = tuple(value)
            given[field] = value
    return given


def config_from_args(args):
    """The `CompareConfig` of parsed arguments (with the canonical command).

    Settings come from the library defaults, then the `--preset` (if any),
    then the options given. Settings the config rejects raise
    `arguments.UsageError` naming the options.
    """
    given = _given(args)
    preset = getattr(args, "preset", None)
    if given.get("imbalance_ratio") is not None:
        # Imbalanced data: its methods, and the meta objective that scores
        # every class's accuracy (the bounded MAE of the noise benchmark
        # discounts the rare classes' hard samples).
        given.setdefault("methods", methods_lib.METHOD_SETS["imbalance"])
        given.setdefault("meta_objective", "crossentropy")
    try:
        if preset is not None:
            config = config_lib.CompareConfig.from_preset(preset, **given)
        else:
            config = config_lib.CompareConfig(**given)
    except ValueError as error:  # Settings that conflict: name the options.
        raise arguments.usage_error(error, {**FLAGS, "preset": "--preset"}) from None
    config.command = canonical_command(config, args.output_dir)
    return config


def _format_weights(weights):
    return ",".join(f"{k}={v:g}" for k, v in weights.items())


def canonical_command(config, output_dir):
    """The `tf-metaloss compare` command line that reproduces `config`.

    Every setting is written out, so the command does not depend on the
    defaults or the preset of the version that runs it.
    """
    parts = ["tf-metaloss", "compare"]
    if config.preset is not None:
        parts += ["--preset", config.preset]
    parts += [
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
        "--optimizer",
        config.optimizer,
        "--model",
        config.model,
        "--hidden-units",
        str(config.hidden_units),
    ]
    defaults = config_lib.CompareConfig
    if datasets.is_text_spec(config.dataset) or (
        config.vocabulary_size,
        config.sequence_length,
    ) != (defaults.vocabulary_size, defaults.sequence_length):
        parts += [
            "--vocabulary-size",
            str(config.vocabulary_size),
            "--sequence-length",
            str(config.sequence_length),
        ]
    if config.train_subset is not None:
        parts += ["--train-subset", str(config.train_subset)]
    elif config.preset and config_lib.PRESETS[config.preset].settings.get("train_subset"):
        parts += ["--train-subset", "all"]
    parts += ["--eval-split", config.eval_split]
    if config.eval_split == "holdout":
        parts += ["--holdout-fraction", f"{config.holdout_fraction:g}"]
    if config.imbalance_ratio is not None:
        parts += [
            "--imbalance",
            f"{config.imbalance_ratio:g}",
            "--meta-per-class",
            str(config.meta_per_class or imbalance.DEFAULT_META_PER_CLASS),
        ]
    else:
        parts += ["--meta-fraction", f"{config.meta_fraction:g}"]
    parts += ["--meta-labels", config.meta_labels]
    if any(methods_lib.METHODS[m].training == "finetune" for m in config.methods) or (
        config.finetune_epochs,
        config.finetune_learning_rate,
    ) != (defaults.finetune_epochs, defaults.finetune_learning_rate):
        parts += [
            "--finetune-epochs",
            str(config.finetune_epochs),
            "--finetune-learning-rate",
            f"{config.finetune_learning_rate:g}",
        ]
    parts += [
        "--meta-learning-rate",
        f"{config.meta_learning_rate:g}",
        "--meta-every",
        str(config.meta_every),
    ]
    if config.meta_batch_size is not None:
        parts += ["--meta-batch-size", str(config.meta_batch_size)]
    if config.meta_sampler != "shuffle":
        parts += ["--meta-sampler", config.meta_sampler]
    parts += ["--meta-objective", config.meta_objective, "--meta-method", _meta_method_text(config)]
    if config.meta_clipnorm is not None:
        parts += ["--meta-clipnorm", f"{config.meta_clipnorm:g}"]
    if config.lookahead_learning_rate is not None:
        parts += ["--lookahead-learning-rate", f"{config.lookahead_learning_rate:g}"]
    parts += [
        "--regularization",
        f"{config.regularization:g}",
        "--unroll-steps",
        str(config.unroll_steps),
        "--schedule-final",
        _format_weights(config.schedule_final),
    ]
    if config.formula is not None:
        parts += ["--formula", config.formula]
    parts += [
        "--output-dir",
        output_dir,
    ]
    return shlex.join(parts)


def _meta_method_text(config):
    """`config.meta_method` as `--meta-method` takes it (a name, or compact JSON)."""
    if isinstance(config.meta_method, str):
        return config.meta_method
    return json.dumps(config.meta_method, separators=(",", ":"))


def run(args):
    """Runs the comparison (or merges result files); returns 0."""
    if getattr(args, "merge", None):
        return _merge(args)
    config = config_from_args(args)
    if not args.no_figures:
        # Fail before hours of training, not when the figures are drawn.
        plotting.require_matplotlib("Drawing the comparison's figures", "or pass --no-figures")
    progress = None if args.quiet else (lambda line: print(line, flush=True))

    def save_partial(results):
        report.write_results(results, args.output_dir, figures=False)

    if progress:
        progress(
            f"{len(config.methods)} methods x {len(config.seeds)} seeds on {config.dataset}, "
            f"{config.epochs} epochs each; the settings and the command that reproduces "
            f"them go to {args.output_dir}/results.json and results.md"
        )
    results = runner.run_comparison(config, progress=progress, on_run_end=save_partial)
    return _finish(results, args)


def _merge(args):
    extra = sorted(f"--{dest.replace('_', '-')}" for dest in FIELDS if hasattr(args, dest))
    if getattr(args, "preset", None) is not None:
        extra.insert(0, "--preset")
    if extra:
        raise arguments.UsageError(
            "--merge combines existing result files and takes only --output-dir, "
            f"--no-figures and --quiet. Received also: {' '.join(extra)}"
        )
    if not args.no_figures:
        plotting.require_matplotlib("Drawing the comparison's figures", "or pass --no-figures")
    results = summary.merge_results(
        [report.read_results(path) for path in args.merge], sources=args.merge
    )
    if not args.quiet:
        print(f"merged {len(results['runs'])} runs from {len(args.merge)} files")
    return _finish(results, args)


def _finish(results, args):
    paths = report.write_results(results, args.output_dir, figures=not args.no_figures)
    print()
    print(report.format_table(results))
    paired = report.format_paired(results)
    if paired:
        print()
        print("Paired differences of val accuracy (points, per seed in parentheses):")
        print(paired)
    print()
    for kind, path in paths.items():
        print(f"wrote {kind}: {path}")
    return 0
