"""`tf-metaloss demo`: cross-entropy vs a meta-learned loss on noisy digits.

The demo is a preset of `tf-metaloss compare`: `demo_config` builds a
`CompareConfig` (scikit-learn's bundled 8x8 digits, which work offline;
label noise on the training labels, symmetric or class-dependent; an MLP; the methods of
`METHODS`), the comparison's runner trains the same network, from the same
initial weights and seed, once per method, and `format_result` prints a short
table. The methods:

1. cross-entropy,
2. generalized cross-entropy (q=0.7), a fixed noise-robust loss, as the
   hand-picked baseline a learned loss should match,
3. `tml.MetaLoss(from_logits=True)` meta-learned online by `MetaModel` on a
   small meta set held out from the training data.

The meta set's labels are assumed clean (a few trusted labels). As in every
comparison, the fixed losses train on the noisy training samples plus the meta
set; the learned loss trains on the noisy training samples, and on the meta
set with its loss at its start (less the 20% the guard holds out to check
it), and learns phi from the meta objective on the meta set.
Accuracy is measured on validation labels that are never corrupted.

Example:

```shell
tf-metaloss demo --epochs 40 --noise 0.4 --logdir ./tf_metaloss_demo_logs
tensorboard --logdir ./tf_metaloss_demo_logs
```
"""

import os
import textwrap

import numpy as np

from tf_metaloss import validation
from tf_metaloss._optional import import_optional
from tf_metaloss.commands import SUMMARIES
from tf_metaloss.commands import arguments

# The demo's methods, in table order: comparison method name -> the row label
# printed in the table (.ci/run checks these rows in the demo's output).
METHODS = {
    "ce": "cross-entropy",
    "gce": "generalized CE (q=0.7)",
    "meta_loss": "MetaLoss (meta-learned)",
}

DEFAULT_EPOCHS = 40
DEFAULT_NOISE = 0.4
DEFAULT_NOISE_KIND = "asymmetric"
DEFAULT_LOGDIR = "tf_metaloss_demo_logs"
HIDDEN_UNITS = 128

# --tiny: a seconds-long smoke run (for tests), not a meaningful comparison.
# 284 digits: 256 training samples and 28 meta samples.
TINY_EPOCHS = 2
TINY_TRAIN_SUBSET = 284
TINY_HIDDEN_UNITS = 16


def register(subparsers):
    """Adds the `demo` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help=SUMMARIES["demo"],
        description=(
            "Train the same MLP on scikit-learn's digits with noisy training "
            "labels, with cross-entropy, generalized cross-entropy and a "
            "meta-learned MetaLoss; print their clean validation accuracy, "
            "train time and the learned loss. A preset of `tf-metaloss compare`; "
            "runs offline in about a minute."
        ),
        epilog=(
            "The meta set is held out from the training data and assumed "
            "clean (a few trusted labels); --noisy-meta corrupts it like the "
            "rest. View the logs with: tensorboard --logdir <logdir>"
        ),
    )
    parser.add_argument(
        "--epochs",
        type=arguments.positive_int,
        default=None,
        help=f"training epochs (default: {DEFAULT_EPOCHS}; {TINY_EPOCHS} with --tiny)",
    )
    parser.add_argument(
        "--noise",
        type=arguments.noise_rate,
        default=DEFAULT_NOISE,
        help=f"fraction of training labels flipped to another class (default: {DEFAULT_NOISE})",
    )
    parser.add_argument(
        "--noise-kind",
        choices=("symmetric", "asymmetric"),
        default=DEFAULT_NOISE_KIND,
        help="symmetric: flipped to any other class; asymmetric: class-dependent, "
        "the --noise fraction of classes 9, 2, 4, 3, 5 flipped to 1, 0, 7, 5, 3 "
        f"(default: {DEFAULT_NOISE_KIND})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the noise, the meta split and the models (default: 0)",
    )
    parser.add_argument(
        "--logdir",
        default=DEFAULT_LOGDIR,
        help=f"TensorBoard log directory (default: ./{DEFAULT_LOGDIR})",
    )
    parser.add_argument(
        "--noisy-meta",
        action="store_true",
        help="corrupt the meta set's labels with the same noise",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a seconds-long smoke run on a small subset (not a meaningful comparison)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args):
    """Runs the demo from parsed arguments; returns the exit code."""
    results = run_demo(
        epochs=args.epochs,
        noise=args.noise,
        noise_kind=args.noise_kind,
        seed=args.seed,
        logdir=args.logdir,
        noisy_meta=args.noisy_meta,
        tiny=args.tiny,
        print_fn=print,
    )
    print(format_result(results))
    return 0


def demo_config(
    epochs=None,
    noise=DEFAULT_NOISE,
    seed=0,
    noisy_meta=False,
    tiny=False,
    noise_kind=DEFAULT_NOISE_KIND,
):
    """The demo's `CompareConfig`: digits, noisy labels, `METHODS`, an MLP.

    Args:
        epochs: training epochs (`None`: 40, or 2 with `tiny`).
        noise: fraction of the training labels flipped, in [0, 1) (asymmetric:
            of each flipped class).
        noise_kind: `"symmetric"` or `"asymmetric"` (`tml.evaluation.inject_label_noise`).
        seed: seed of the noise, the meta split, initial weights and batches.
        noisy_meta: corrupt the meta set's labels too.
        tiny: 256 training and 28 meta samples, a 16-unit MLP (seconds-long).

    Example:

    >>> from tf_metaloss.commands import demo
    >>> config = demo.demo_config()
    >>> config.dataset, config.methods, config.epochs, config.model, config.noise_rate
    ('digits', ('ce', 'gce', 'meta_loss'), 40, 'mlp', 0.4)
    """
    from tf_metaloss.evaluation.config import CompareConfig

    if epochs is None:
        epochs = TINY_EPOCHS if tiny else DEFAULT_EPOCHS
    validation.check_fraction("noise", noise, low_closed=True)
    return CompareConfig(
        dataset="digits",
        noise_rate=float(noise),
        noise_kind=noise_kind,
        methods=tuple(METHODS),
        seeds=(seed,),
        epochs=epochs,
        batch_size=64,
        learning_rate=0.05,
        momentum=0.9,
        model="mlp",
        hidden_units=TINY_HIDDEN_UNITS if tiny else HIDDEN_UNITS,
        train_subset=TINY_TRAIN_SUBSET if tiny else None,
        eval_split="val",
        meta_fraction=0.1,
        meta_labels="noisy" if noisy_meta else "clean",
        meta_learning_rate=0.01,
        meta_every=1,
    )


def run_demo(
    epochs=None,
    noise=DEFAULT_NOISE,
    noise_kind=DEFAULT_NOISE_KIND,
    seed=0,
    logdir=DEFAULT_LOGDIR,
    noisy_meta=False,
    tiny=False,
    print_fn=None,
):
    """Runs the demo's comparison and returns its results.

    Unless `tiny`, an untimed one-epoch run of every method on a few samples
    comes first, so TensorFlow's one-time start-up is in no method's time.

    Args:
        epochs, noise, noise_kind, seed, noisy_meta, tiny: see `demo_config`.
        logdir: TensorBoard root; each method logs to `logdir/<method>`.
        print_fn: callable for progress lines (`None`: silent).

    Returns:
        The results dict of `tml.evaluation.run_comparison`, with a `demo`
        entry (`logdir`, `tiny`, `warm_up`, the row `labels`).

    Example:

    >>> from tf_metaloss.commands import demo
    >>> results = demo.run_demo(tiny=True, epochs=1)  # seconds; `run_demo()` is the real one
    >>> [m["name"] for m in results["methods"]]
    ['ce', 'gce', 'meta_loss']
    >>> print(demo.format_result(results))
    <BLANKLINE>
    method | clean val accuracy | train time (s)
    ------...
    cross-entropy | 0... | ...
    generalized CE (q=0.7) | 0... | ...
    MetaLoss (meta-learned) | 0... | ...
    train time: ...
    <BLANKLINE>
    learned loss (MetaLoss parameters over 1 epoch: start, min, max, end):
      correction ...
    verdict: ...
    """
    import keras

    from tf_metaloss.evaluation import datasets
    from tf_metaloss.evaluation import runner
    from tf_metaloss.evaluation import splits

    config = demo_config(
        epochs=epochs,
        noise=noise,
        seed=seed,
        noisy_meta=noisy_meta,
        tiny=tiny,
        noise_kind=noise_kind,
    )
    # The digits come with scikit-learn (the `eval` extra): say so before anything starts.
    import_optional("sklearn.datasets", "The demo")
    say = print_fn or (lambda *_: None)
    try:
        os.makedirs(logdir, exist_ok=True)
    except OSError as error:
        raise OSError(
            f"Cannot create the log directory {logdir!r}: {error.strerror or error}"
        ) from error

    data = datasets.load_dataset(config.dataset)
    split = splits.make_split(data, config, seed)
    say(
        f"digits: {len(split.x_train)} training samples, "
        f"{int(split.noisy_mask.sum())} labels flipped ({_noise_description(config)}); "
        f"{len(split.x_meta)} meta samples held out from the "
        "training data, "
        + ("with the same noise (--noisy-meta)" if noisy_meta else "assumed clean")
        + f"; {len(split.x_eval)} validation samples with clean labels."
    )
    if not tiny:
        _warm_up(data, seed)
    say(
        "training with "
        + ", ".join(METHODS.values())
        + f" for {config.epochs} epochs each (the fixed losses on the training and meta "
        "samples; the learned loss on the training samples, and with its starting loss on "
        "the meta samples less the guard's check data) ..."
    )

    def tensorboard(name, seed):
        return [keras.callbacks.TensorBoard(log_dir=os.path.join(logdir, name), write_graph=False)]

    def report_run(results):
        run = results["runs"][-1]
        say(
            f"[{len(results['runs'])}/{len(METHODS)}] {METHODS[run['method']]}: "
            f"clean val accuracy {run['final']['val_accuracy']:.4f}, "
            f"{train_seconds(run):.1f} s training, "
            f"{run['final']['eval_time_s']:.1f} s measuring accuracy after each epoch"
        )

    results = runner.run_comparison(
        config, data=data, make_callbacks=tensorboard, on_run_end=report_run
    )
    results["demo"] = {
        "logdir": logdir,
        "tiny": tiny,
        "warm_up": not tiny,
        "labels": dict(METHODS),
    }
    return results


def _noise_description(config):
    """E.g. `40% symmetric noise`, or which classes asymmetric noise flips."""
    if config.noise_kind != "asymmetric":
        return f"{config.noise_rate:.0%} {config.noise_kind} noise"
    from tf_metaloss.evaluation.noise import CIFAR10_TRANSITIONS

    pairs = ", ".join(f"{s}->{t}" for s, t in sorted(CIFAR10_TRANSITIONS.items()))
    return f"asymmetric noise: {config.noise_rate:.0%} of each of the classes {pairs}"


def _warm_up(data, seed):
    """Trains every method for one epoch on a few samples, untimed: the first
    graphs TensorFlow builds in a process take longer than any later ones."""
    from tf_metaloss.evaluation import methods as methods_lib
    from tf_metaloss.evaluation import runner
    from tf_metaloss.evaluation import splits

    config = demo_config(epochs=1, seed=seed, tiny=True)
    split = splits.make_split(data, config, seed)
    for name in METHODS:
        runner.run_method(methods_lib.METHODS[name], split, config, seed)


def train_seconds(run):
    """Seconds a run spent in `fit`, without the accuracy measured after each epoch."""
    return run["final"]["wall_time_s"] - run["final"]["eval_time_s"]


def format_result(results):
    """The demo's report: a table of the methods, what the loss learned, a verdict."""
    demo = results.get("demo", {})
    labels = demo.get("labels", {})
    runs = {run["method"]: run for run in results["runs"]}
    names = [m["name"] for m in results["methods"]]
    rows = [
        (
            labels.get(name, name),
            f"{runs[name]['final']['val_accuracy']:.4f}",
            f"{train_seconds(runs[name]):.1f}",
        )
        for name in names
    ]
    header = ("method", "clean val accuracy", "train time (s)")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(3)]

    def line(cells):
        return " | ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        )

    config = results["config"]
    per_seed = results["data"]["per_seed"][str(config["seeds"][0])]
    num_train = per_seed["num_train"]
    flipped = round(per_seed["train_noise_rate"] * num_train)
    lines = [
        "",
        line(header),
        "-+-".join("-" * w for w in widths),
        *(line(r) for r in rows),
        "train time: seconds in fit"
        + (" after an untimed warm-up run" if demo.get("warm_up") else "")
        + ", without measuring accuracy each epoch",
        "",
    ]
    learned = [m["name"] for m in results["methods"] if m["group"] == "learned"]
    fixed = [m["name"] for m in results["methods"] if m["group"] != "learned"]
    summary = []
    for name in learned:
        summary += learned_parameters(runs[name], config["epochs"])
        summary.append(verdict(runs, name, fixed, labels, per_seed["num_eval"]))
    if not demo.get("tiny"):
        summary.append(
            "several seeds: tf-metaloss compare --dataset digits "
            f"--noise {config['noise_rate']:g} --noise-kind {config['noise_kind']} "
            f"--methods {','.join(names)} "
            f"--epochs {config['epochs']} --model {config['model']} "
            f"--meta-labels {config['meta_labels']} --seeds 0 1 2"
        )
    summary += [
        f"settings: {config['epochs']} epochs, batch {config['batch_size']}, MLP "
        f"[{config['hidden_units']}], SGD(lr={config['learning_rate']}, "
        f"momentum={config['momentum']}), meta Adam(lr={config['meta_learning_rate']}) "
        f"every {'step' if config['meta_every'] == 1 else str(config['meta_every']) + ' steps'}"
        f"; {flipped}/{num_train} training labels flipped; meta set {per_seed['num_meta']} "
        "samples "
        + ("(noisy)" if config["meta_labels"] == "noisy" else "(assumed clean)")
        + "; the fixed losses train on the training and meta samples, the learned loss "
        "on the training samples and, with its starting loss, the meta samples less the "
        "guard's check data (phi from its meta objective on the meta samples); "
        f"accuracy on {per_seed['num_eval']} clean validation samples after the last "
        "epoch"
        + (
            f"; Keras on {results['environment']['keras_backend']}."
            if "keras_backend" in results.get("environment", {})
            else "."
        ),
    ]
    logdir = demo.get("logdir")
    if logdir:
        summary.append(f"TensorBoard logs: tensorboard --logdir {logdir}")
    if demo.get("tiny"):
        summary.append(
            "(--tiny: a smoke run on a subset; the numbers are not a meaningful comparison.)"
        )
    for text in summary:
        indent = " " * (len(text) - len(text.lstrip()) + 2)
        lines += textwrap.wrap(text, WIDTH, subsequent_indent=indent, break_on_hyphens=False)
    return "\n".join(lines)


# The report's lines are wrapped at this width (the table is not).
WIDTH = 100

# A learned loss with more scalars than this lists the first ones only.
MAX_PARAMETER_LINES = 8


def learned_parameters(run, epochs):
    """Lines on the path of each of a learned loss's scalars over the epochs.

    Reads the run's per-epoch values (`run["phi"]`, start first; the effective
    mixture weights `mix/...` when the loss has them) and their bounds
    (`run["phi_bounds"]`): start, min and max (with their epochs), end, and the
    epochs after which each scalar lay on a bound.

    Example:

    >>> from tf_metaloss.commands.demo import learned_parameters
    >>> run = {"loss": "MetaLoss", "phi": {"phi/q": [0.7, 0.5, 0.3, 0.7, 0.7]},
    ...        "phi_bounds": {"phi/q": [0.001, 0.7]}}
    >>> for line in learned_parameters(run, 4):
    ...     print(line)
    learned loss (MetaLoss parameters over 4 epochs: start, min, max, end):
      q  0.7 -> min 0.3 (epoch 2), max 0.7 (at the start) -> 0.7; at its upper bound 0.7
      after 2 of the 4 epochs, from epoch 3 on
    """
    series = run["phi"]
    mix = {k: v for k, v in series.items() if k.startswith("mix/")}
    series = mix or series
    title = "mixture weights" if mix else "parameters"
    plural = "epoch" if epochs == 1 else "epochs"
    lines = [
        f"learned loss ({run.get('loss', 'learned loss')} {title} over {epochs} {plural}: "
        "start, min, max, end):"
    ]
    if not series:
        return lines + ["  (no parameters recorded)"]
    width = max(len(k.split("/", 1)[1]) for k in series)
    items = list(series.items())
    for key, values in items[:MAX_PARAMETER_LINES]:
        name = key.split("/", 1)[1]
        lines.append(f"  {name:<{width}}  {_path(values, run.get('phi_bounds', {}).get(key))}")
    if len(items) > MAX_PARAMETER_LINES:
        lines.append(
            f"  ... and {len(items) - MAX_PARAMETER_LINES} more (History and TensorBoard "
            "hold every one)"
        )
    return lines


def _path(values, bounds):
    """`start -> min (epoch), max (epoch) -> end; ...at a bound...` of one scalar."""
    values = np.asarray(values, dtype=np.float64)
    if np.all(values == values[0]):
        return f"{values[0]:.3g} throughout"
    low, high = int(np.argmin(values)), int(np.argmax(values))
    text = (
        f"{values[0]:.3g} -> min {values[low]:.3g}{_when(low)}, "
        f"max {values[high]:.3g}{_when(high)} -> {values[-1]:.3g}"
    )
    for side, bound in zip(("lower", "upper"), bounds or (None, None)):
        if bound is None:
            continue
        # Index e is the value after epoch e; phi is stored in float32.
        at = [e for e in range(1, len(values)) if np.float32(values[e]) == np.float32(bound)]
        if not at:
            continue
        text += f"; at its {side} bound {bound:.3g} after {len(at)} of the {len(values) - 1} epochs"
        gaps = [e for e in range(at[0], len(values)) if e not in at]
        if at[-1] == len(values) - 1 and len(gaps) <= 3:
            text += f", from epoch {at[0]} on"
            if gaps:
                text += f" (but epoch{'s' if len(gaps) > 1 else ''} {', '.join(map(str, gaps))})"
        else:
            text += f" (first after epoch {at[0]}, last after epoch {at[-1]})"
    return text


def _when(index):
    return " (at the start)" if index == 0 else f" (epoch {index})"


def verdict(runs, learned, fixed, labels, num_eval):
    """One line: what the learned loss did relative to each fixed loss.

    Computed from the clean validation accuracies: "beat" or "trailed" by how
    many points (and validation samples), "tied" for the same number of
    samples right.

    Example:

    >>> from tf_metaloss.commands.demo import verdict
    >>> runs = {m: {"final": {"val_accuracy": a}} for m, a in
    ...         [("ce", 0.5), ("gce", 0.75), ("meta_loss", 0.75)]}
    >>> print(verdict(runs, "meta_loss", ["ce", "gce"], {}, 4))
    verdict: meta_loss beat ce by 25.0 points (1 of 4 validation samples) and tied gce (3 of 4
    right); one seed, so a gap of a few samples is noise.
    """

    def right(name):
        return round(runs[name]["final"]["val_accuracy"] * num_eval)

    parts = []
    for name in fixed:
        label = labels.get(name, name)
        gap = right(learned) - right(name)
        if gap == 0:
            parts.append(f"tied {label} ({right(name)} of {num_eval} right)")
        else:
            points = 100.0 * abs(gap) / num_eval
            parts.append(
                f"{'beat' if gap > 0 else 'trailed'} {label} by {points:.1f} points "
                f"({abs(gap)} of {num_eval} validation samples)"
            )
    joined = ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]
    return (
        f"verdict: {labels.get(learned, learned)} {joined}; one seed, so a gap of a few "
        "samples is noise."
    )
