"""`tf-metaloss demo`: cross-entropy vs a meta-learned loss on noisy digits.

The demo trains the same small MLP, from the same initial weights and seed,
on scikit-learn's 8x8 digits (bundled, works offline) whose training labels
carry symmetric label noise, three times:

1. with cross-entropy,
2. with generalized cross-entropy (q=0.7), a fixed noise-robust loss, as the
   hand-picked baseline a learned loss should match,
3. with `tml.MetaLoss(from_logits=True)` meta-learned online by `MetaModel`
   on a small meta set held out from the training data.

All three are `MetaModel`s so they share one training code path: the two
fixed losses are learnable losses frozen at their start (`meta_every=0`;
a `MetaLoss` frozen at its start is exactly cross-entropy), so the only
difference between rows 1 and 3 is the meta step. Accuracy is measured on
held-out validation labels that are never corrupted.

Example:

```shell
tf-metaloss demo --epochs 40 --noise 0.4 --logdir ./tf_metaloss_demo_logs
tensorboard --logdir ./tf_metaloss_demo_logs
```
"""

import argparse
import dataclasses
import os
import time

import numpy as np

DEFAULT_EPOCHS = 40
DEFAULT_NOISE = 0.4
DEFAULT_LOGDIR = "tf_metaloss_demo_logs"
META_FRACTION = 0.1
BATCH_SIZE = 64
LEARNING_RATE = 0.05
MOMENTUM = 0.9
META_LEARNING_RATE = 0.01
HIDDEN_UNITS = (128, 128)

# --tiny: a seconds-long smoke run (for tests), not a meaningful comparison.
TINY_EPOCHS = 2
TINY_TRAIN_SAMPLES = 256
TINY_HIDDEN_UNITS = (16,)

CE = "cross-entropy"
GCE = "generalized CE (q=0.7)"
META = "MetaLoss (meta-learned)"


@dataclasses.dataclass
class MethodResult:
    """One trained model of the demo.

    Attributes:
        name: the method's name in the table.
        val_accuracy: clean validation accuracy after the last epoch.
        train_time: seconds spent in `fit` (includes validation each epoch).
        history: the Keras `History.history` dict.
        phi: dict `base loss -> mixture weight` of the final loss (the
            learned one for the meta-learned method).
        logdir: where its TensorBoard logs are.
    """

    name: str
    val_accuracy: float
    train_time: float
    history: dict
    phi: dict
    logdir: str


@dataclasses.dataclass
class DemoResult:
    """Everything `run_demo` measured.

    Attributes:
        methods: list of `MethodResult`, in table order.
        num_train: training samples (noisy labels).
        num_meta: meta samples held out from the training data.
        num_val: validation samples (clean labels).
        num_flipped: training labels corrupted by the noise.
        noisy_meta: whether the meta labels were corrupted too.
        settings: dict of the hyperparameters used.
        logdir: the TensorBoard root directory.
    """

    methods: list
    num_train: int
    num_meta: int
    num_val: int
    num_flipped: int
    noisy_meta: bool
    settings: dict
    logdir: str

    def method(self, name):
        """The `MethodResult` called `name`."""
        for result in self.methods:
            if result.name == name:
                return result
        raise KeyError(name)


def register(subparsers):
    """Adds the `demo` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="cross-entropy vs a meta-learned loss on noisy digits",
        description=(
            "Train the same MLP on scikit-learn's digits with noisy training "
            "labels, with cross-entropy, generalized cross-entropy and a "
            "meta-learned MetaLoss; print their clean validation accuracy, "
            "train time and the learned loss. Runs offline in about a minute."
        ),
        epilog=(
            "The meta set is held out from the training data and assumed "
            "clean (a few trusted labels); --noisy-meta corrupts it like the "
            "rest. View the logs with: tensorboard --logdir <logdir>"
        ),
    )
    parser.add_argument(
        "--epochs",
        type=_positive_int,
        default=None,
        help=f"training epochs (default: {DEFAULT_EPOCHS}; {TINY_EPOCHS} with --tiny)",
    )
    parser.add_argument(
        "--noise",
        type=_noise_rate,
        default=DEFAULT_NOISE,
        help="fraction of training labels flipped to another class "
        f"(symmetric noise, default: {DEFAULT_NOISE})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the data split, the noise and the models (default: 0)",
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
    result = run_demo(
        epochs=args.epochs,
        noise=args.noise,
        seed=args.seed,
        logdir=args.logdir,
        noisy_meta=args.noisy_meta,
        tiny=args.tiny,
        print_fn=print,
    )
    print(format_result(result))
    return 0


def run_demo(
    epochs=None,
    noise=DEFAULT_NOISE,
    seed=0,
    logdir=DEFAULT_LOGDIR,
    noisy_meta=False,
    tiny=False,
    print_fn=None,
):
    """Trains the three models of the demo and returns a `DemoResult`.

    Args:
        epochs: training epochs (`None`: 40, or 2 with `tiny`).
        noise: fraction of training labels flipped (symmetric noise).
        seed: seed of the split, the noise, initial weights and shuffling.
        logdir: TensorBoard root; each method logs to `logdir/<method>`.
        noisy_meta: corrupt the meta set's labels too.
        tiny: use 256 training samples and a 16-unit MLP (seconds-long).
        print_fn: callable for progress lines (`None`: silent).

    Returns:
        A `DemoResult`.

    Example:

    >>> from tf_metaloss.commands import demo
    >>> result = demo.run_demo(tiny=True, epochs=1)  # seconds; `run_demo()` is the real one
    >>> [m.name for m in result.methods]
    ['cross-entropy', 'generalized CE (q=0.7)', 'MetaLoss (meta-learned)']
    >>> print(demo.format_result(result))
    <BLANKLINE>
    method | clean val accuracy | train time (s)
    ------...
    cross-entropy | 0... | ...
    generalized CE (q=0.7) | 0... | ...
    MetaLoss (meta-learned) | 0... | ...
    <BLANKLINE>
    learned loss (MetaLoss mixture weights, started as cross-entropy): crossentropy ...
    ...
    """
    import keras

    import tf_metaloss as tml

    if epochs is None:
        epochs = TINY_EPOCHS if tiny else DEFAULT_EPOCHS
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(
            "Invalid value for argument `epochs`. Expected a positive "
            f"integer. Received: epochs={epochs!r}"
        )
    say = print_fn or (lambda *_: None)
    try:
        os.makedirs(logdir, exist_ok=True)
    except OSError as error:
        raise OSError(
            f"Cannot create the log directory {logdir!r}: {error.strerror or error}"
        ) from error

    data = prepare_data(noise=noise, seed=seed, noisy_meta=noisy_meta, tiny=tiny)
    hidden_units = TINY_HIDDEN_UNITS if tiny else HIDDEN_UNITS
    say(
        f"digits: {len(data.x_train)} training samples, "
        f"{int(data.noise_mask.sum())} labels flipped ({noise:.0%} symmetric "
        f"noise); {len(data.x_meta)} meta samples held out from the training "
        "data, "
        + ("with the same noise (--noisy-meta)" if noisy_meta else "assumed clean")
        + f"; {len(data.x_val)} validation samples with clean labels."
    )

    methods = [
        (CE, lambda: tml.MetaLoss(from_logits=True), 0),
        (GCE, lambda: tml.BlendLoss(["generalized_crossentropy"], from_logits=True), 0),
        (META, lambda: tml.MetaLoss(from_logits=True), 1),
    ]
    results = []
    for name, make_loss, meta_every in methods:
        say(f"training with {name} for {epochs} epochs ...")
        method_logdir = os.path.join(logdir, _slug(name))
        keras.utils.set_random_seed(seed)
        model = _build_model(data.x_train.shape[1:], data.num_classes, hidden_units)
        loss = make_loss()
        model.compile(
            optimizer=keras.optimizers.SGD(LEARNING_RATE, momentum=MOMENTUM),
            loss=loss,
            meta_optimizer=keras.optimizers.Adam(META_LEARNING_RATE),
            meta_every=meta_every,
            meta_seed=seed,
            metrics=["accuracy"],
        )
        fit_kwargs = {"meta_data": (data.x_meta, data.y_meta)} if meta_every else {}
        start = time.perf_counter()
        history = model.fit(
            data.x_train,
            data.y_train,
            batch_size=BATCH_SIZE,
            epochs=epochs,
            validation_data=(data.x_val, data.y_val),
            callbacks=[keras.callbacks.TensorBoard(log_dir=method_logdir, write_graph=False)],
            verbose=0,
            **fit_kwargs,
        )
        train_time = time.perf_counter() - start
        weights = keras.ops.convert_to_numpy(loss.mixture_weights())
        results.append(
            MethodResult(
                name=name,
                val_accuracy=float(history.history["val_accuracy"][-1]),
                train_time=train_time,
                history=dict(history.history),
                phi={b: float(w) for b, w in zip(loss.base_losses, weights)},
                logdir=method_logdir,
            )
        )
    return DemoResult(
        methods=results,
        num_train=len(data.x_train),
        num_meta=len(data.x_meta),
        num_val=len(data.x_val),
        num_flipped=int(data.noise_mask.sum()),
        noisy_meta=noisy_meta,
        settings={
            "epochs": epochs,
            "noise": noise,
            "seed": seed,
            "batch_size": BATCH_SIZE,
            "hidden_units": list(hidden_units),
            "optimizer": f"SGD(lr={LEARNING_RATE}, momentum={MOMENTUM})",
            "meta_optimizer": f"Adam(lr={META_LEARNING_RATE})",
            "meta_every": 1,
            "tiny": tiny,
        },
        logdir=logdir,
    )


@dataclasses.dataclass
class DemoData:
    """The demo's arrays.

    Attributes:
        x_train, y_train: training inputs and their noisy labels.
        y_train_clean: the training labels before the noise.
        noise_mask: `True` where a training label was corrupted.
        x_meta, y_meta: the meta set, held out from the training data.
        x_val, y_val: validation data, always with clean labels.
        num_classes: 10.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    y_train_clean: np.ndarray
    noise_mask: np.ndarray
    x_meta: np.ndarray
    y_meta: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    num_classes: int


def prepare_data(noise=DEFAULT_NOISE, seed=0, noisy_meta=False, tiny=False):
    """Splits digits into noisy train, meta and clean validation sets.

    Digits is split 80/20 into training and validation data (stratified,
    seeded); `META_FRACTION` (10%) of the training data is held out
    (stratified) as the meta set; then `noise` of the remaining training
    labels are flipped to another class. The meta labels stay clean unless
    `noisy_meta`. With `tiny`, only the first 256 training samples are kept.

    Returns:
        A `DemoData`.
    """
    from tf_metaloss._optional import import_optional
    from tf_metaloss.evaluation import datasets
    from tf_metaloss.evaluation import noise as noise_lib

    if not (isinstance(noise, (int, float)) and 0.0 <= noise < 1.0):
        raise ValueError(
            "Invalid value for argument `noise`. Expected a float in [0, 1). "
            f"Received: noise={noise!r}"
        )
    model_selection = import_optional("sklearn.model_selection", "The demo")
    data = datasets.load_digits(val_fraction=0.2, seed=seed)
    x_train, x_meta, y_train, y_meta = model_selection.train_test_split(
        data.x_train,
        data.y_train,
        test_size=META_FRACTION,
        random_state=seed,
        stratify=data.y_train,
    )
    if tiny:
        x_train = x_train[:TINY_TRAIN_SAMPLES]
        y_train = y_train[:TINY_TRAIN_SAMPLES]
    noisy = noise_lib.inject_label_noise(y_train, noise, num_classes=data.num_classes, seed=seed)
    if noisy_meta:
        y_meta = noise_lib.inject_label_noise(
            y_meta, noise, num_classes=data.num_classes, seed=seed + 1
        ).labels
    return DemoData(
        x_train=x_train,
        y_train=noisy.labels,
        y_train_clean=y_train,
        noise_mask=noisy.mask,
        x_meta=x_meta,
        y_meta=y_meta,
        x_val=data.x_val,
        y_val=data.y_val,
        num_classes=data.num_classes,
    )


def format_result(result):
    """The demo's report: a table of methods and the learned loss."""
    rows = [(m.name, f"{m.val_accuracy:.4f}", f"{m.train_time:.1f}") for m in result.methods]
    header = ("method", "clean val accuracy", "train time (s)")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(3)]

    def line(cells):
        return " | ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        )

    learned = result.method(META)
    phi = ", ".join(f"{k} {v:.3f}" for k, v in learned.phi.items())
    s = result.settings
    lines = [
        "",
        line(header),
        "-+-".join("-" * w for w in widths),
        *(line(r) for r in rows),
        "",
        f"learned loss (MetaLoss mixture weights, started as cross-entropy): {phi}",
        f"settings: {s['epochs']} epochs, batch {s['batch_size']}, MLP "
        f"{s['hidden_units']}, {s['optimizer']}, meta {s['meta_optimizer']} "
        f"every step; {result.num_flipped}/{result.num_train} training labels "
        f"flipped; meta set {result.num_meta} samples "
        + ("(noisy)" if result.noisy_meta else "(assumed clean)")
        + f"; accuracy on {result.num_val} clean validation samples after "
        "the last epoch.",
        f"TensorBoard logs: tensorboard --logdir {result.logdir}",
    ]
    if s["tiny"]:
        lines.append(
            "(--tiny: a smoke run on a subset; the numbers are not a meaningful comparison.)"
        )
    return "\n".join(lines)


def _build_model(input_shape, num_classes, hidden_units):
    import keras

    import tf_metaloss as tml

    inputs = keras.Input(input_shape)
    x = inputs
    for units in hidden_units:
        x = keras.layers.Dense(units, activation="relu")(x)
    return tml.MetaModel(inputs, keras.layers.Dense(num_classes)(x))


def _slug(name):
    return {CE: "cross_entropy", GCE: "generalized_ce", META: "metaloss"}[name]


def _positive_int(value):
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or number < 1 or str(number) != str(value).strip():
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def _noise_rate(value):
    try:
        rate = float(value)
    except (TypeError, ValueError):
        rate = None
    if rate is None or not 0.0 <= rate < 1.0:
        raise argparse.ArgumentTypeError(f"expected a noise rate in [0, 1), got {value!r}")
    return rate
