"""`tf-metaloss search`: search for a loss formula that trains well on noisy labels.

Runs `tml.search.run_search` on a dataset's training split: noisy training
labels, a clean meta set (the constants of each candidate are tuned on it by
the meta-gradient) and a clean holdout (the fitness after a proxy training
run). It writes `search_log.json` (every generation; a killed search resumes
from it when run again with the same options), `report.md` (the best formulas,
the fitness per generation) and `fitness.png` to `--output`.

Example:

```shell
tf-metaloss search --tiny --output ./tiny_search
tf-metaloss search --generations 6 --population 12 --workers 2 --output ./digits_search
```
"""

import os

from tf_metaloss.commands import SUMMARIES
from tf_metaloss.commands import arguments

DEFAULT_OUTPUT = "tf_metaloss_search"
LOG_NAME = "search_log.json"

# The defaults (digits, about 10 s per candidate on one core) and --tiny (a
# seconds-long smoke run on a few hundred digits, not a meaningful search).
DEFAULTS = dict(
    population=12, generations=5, epochs=10, tune_epochs=3, hidden_units=64, train_subset=None
)
TINY = dict(population=4, generations=2, epochs=1, tune_epochs=1, hidden_units=8, train_subset=300)


def register(subparsers):
    """Adds the `search` subcommand."""
    parser = subparsers.add_parser(
        "search",
        help=SUMMARIES["search"],
        description=(
            "Evolve loss formulas (expression trees seeded with cross-entropy, "
            "generalized cross-entropy, MAE and focal loss): each candidate's "
            "constants are tuned by the meta-gradient on a clean meta set, then "
            "a proxy training run on noisy labels is scored on a clean holdout "
            "of the training split. Writes a JSON log per generation, a report "
            "and the fitness curve."
        ),
        epilog=(
            "The proxy run (--epochs, --train-subset) is shorter than a real "
            "training: a short proxy favours losses that fit fast, a long one "
            "those that resist memorising wrong labels. Run the same command "
            "again to resume a killed search; --restart starts afresh."
        ),
    )
    parser.add_argument(
        "--dataset",
        default="digits",
        help="digits (default), cifar10, tfds:<name> or a .npz file (x_train, y_train, ...)",
    )
    parser.add_argument(
        "--noise",
        type=arguments.noise_rate,
        default=0.4,
        help="fraction of training labels flipped (symmetric, default: 0.4)",
    )
    for name, help_text in (
        ("population", "candidates per generation"),
        ("generations", "generations"),
        ("epochs", "epochs of each candidate's proxy run"),
        ("hidden-units", "width of the network"),
    ):
        key = name.replace("-", "_")
        parser.add_argument(
            f"--{name}",
            type=arguments.positive_int,
            default=None,
            help=f"{help_text} (default: {DEFAULTS[key]}; {TINY[key]} with --tiny)",
        )
    parser.add_argument(
        "--tune-epochs",
        type=arguments.int_at_least(0),
        default=None,
        help="epochs of constant tuning by the meta-gradient before each proxy run "
        f"(0: none; default: {DEFAULTS['tune_epochs']}; {TINY['tune_epochs']} with --tiny)",
    )
    parser.add_argument(
        "--train-subset",
        type=arguments.int_at_least(10),
        default=None,
        help="use a random subset of this many training samples (default: all)",
    )
    parser.add_argument("--batch-size", type=arguments.positive_int, default=64)
    parser.add_argument("--learning-rate", type=arguments.positive_number, default=0.05)
    parser.add_argument(
        "--model",
        default="auto",
        choices=("auto", "mlp", "cnn", "small_cnn"),
        help="network (auto: a CNN for images, else an MLP)",
    )
    parser.add_argument(
        "--objective",
        default="mae_classification",
        choices=("mae_classification", "crossentropy", "error"),
        help="the fitness on the holdout, lower is better (default: mae_classification, "
        "MetaModel's default meta objective)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, noise and search")
    parser.add_argument(
        "--workers",
        type=arguments.positive_int,
        default=1,
        help="candidates trained at once (local processes, or Ray CPUs of a local Ray)",
    )
    parser.add_argument(
        "--executor",
        default="local",
        choices=("local", "ray"),
        help="local worker processes (default) or Ray (pip install 'tf_metaloss[search]')",
    )
    parser.add_argument(
        "--address",
        default=None,
        help="Ray cluster address with --executor ray ('auto': the running cluster; "
        "default: start a local one)",
    )
    parser.add_argument(
        "--output", default=DEFAULT_OUTPUT, help=f"output directory (default: ./{DEFAULT_OUTPUT})"
    )
    parser.add_argument(
        "--restart", action="store_true", help="overwrite an existing log instead of resuming it"
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a seconds-long smoke run on 300 digits (not a meaningful search)",
    )
    parser.set_defaults(func=run)
    return parser


def _setting(args, name):
    value = getattr(args, name)
    if value is not None:
        return value
    return (TINY if args.tiny else DEFAULTS)[name]


def run(args):
    """Runs the search from parsed arguments; returns the exit code."""
    from tf_metaloss import search
    from tf_metaloss.evaluation import datasets

    if args.address is not None and args.executor != "ray":
        raise arguments.UsageError("argument --address: only with --executor ray")
    try:
        datasets.check_spec(args.dataset)
    except ValueError as error:
        raise arguments.usage_error(error, {"spec": "--dataset"}) from None
    data = datasets.load_dataset(args.dataset)
    task = search.make_task(
        data,
        noise=args.noise,
        train_subset=_setting(args, "train_subset"),
        seed=args.seed,
        model=args.model,
        hidden_units=_setting(args, "hidden_units"),
        epochs=_setting(args, "epochs"),
        tune_epochs=_setting(args, "tune_epochs"),
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        objective=args.objective,
    )
    config = search.SearchConfig(
        population=_setting(args, "population"),
        generations=_setting(args, "generations"),
        elite=1 if _setting(args, "population") < 8 else 2,
        seed=args.seed,
    )
    os.makedirs(args.output, exist_ok=True)
    log_path = os.path.join(args.output, LOG_NAME)
    resuming = os.path.exists(log_path) and not args.restart
    print(
        f"{'Resuming' if resuming else 'Searching'}: {data.name}, {len(task.x_train)} noisy "
        f"training samples ({args.noise:.0%} symmetric noise), {len(task.x_meta)} meta, "
        f"{len(task.x_holdout)} holdout; {config.population} candidates x "
        f"{config.generations} generations; log: {log_path}",
        flush=True,
    )

    def progress(generation):
        best = generation["best"]["record"]
        best_text = (
            f"best {best['fitness']:.4f} (accuracy {best['accuracy']:.3f}) {best['formula']}"
            if best["status"] == "ok"
            else "no candidate scored"
        )
        print(
            f"generation {generation['generation']}: {generation['evaluated']} new, "
            f"{generation['seconds']:.1f} s; {best_text}",
            flush=True,
        )

    executor = search.executors.get(args.executor, workers=args.workers, address=args.address)
    log = search.run_search(
        task, config, log_path, executor=executor, resume=not args.restart, progress=progress
    )
    paths = search.write_report(log, args.output)
    best = search.best_candidates(log, 1)
    if best:
        print(
            f"Best formula: {search.report.simplified(best[0])}  (fitness {best[0]['fitness']:.4f})"
        )
    print(f"Report: {paths['report']}; figure: {paths['figure']}")
    return 0
