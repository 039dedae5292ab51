"""`tf-metaloss landscape MODEL [MODEL2]`: compare saved models' loss landscapes.

Example:

```shell
tf-metaloss landscape ce.keras learned.keras --data digits --out runs/landscape
tf-metaloss landscape model.keras --data val.npz --directions 2 --points 15
```
"""

import argparse
import json
import os
import sys

import numpy as np

from tf_metaloss._optional import import_optional
from tf_metaloss.commands import SUMMARIES
from tf_metaloss.commands import arguments

NAME = "landscape"


def register(subparsers):
    """Adds the `landscape` subcommand to an argparse subparsers object."""
    parser = subparsers.add_parser(
        NAME,
        help=SUMMARIES[NAME],
        description=(
            "Evaluate the loss of one or two saved Keras models (.keras) on "
            "slices through their weights along filter-normalised random "
            "directions (Li et al. 2018), report the sharpness (largest loss "
            "increase within the span, curvature from a quadratic fit) and write "
            "OUT/landscape.png and OUT/landscape.json. Both models get the same "
            "random seed, hence the same raw directions when their "
            "architectures match."
        ),
    )
    parser.add_argument(
        "models", nargs="+", metavar="MODEL", help="one or two saved models (.keras)"
    )
    parser.add_argument(
        "--data",
        required=True,
        help="'digits' (scikit-learn's 8x8 digits, 64 features in "
        "[0, 1]) or an .npz file with arrays x and y",
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--directions",
        type=int,
        choices=(1, 2),
        default=1,
        help="1 (a line) or 2 (a plane); default 1",
    )
    parser.add_argument(
        "--span",
        type=arguments.positive_number,
        default=1.0,
        help="half-width of the grid, in direction units (default 1)",
    )
    parser.add_argument(
        "--points",
        type=arguments.int_at_least(3),
        default=21,
        help="grid points per direction, >= 3 (default 21)",
    )
    parser.add_argument("--seed", type=int, default=0, help="direction seed (default 0)")
    parser.add_argument(
        "--samples", type=arguments.positive_int, default=None, help="use only the first N samples"
    )
    parser.add_argument(
        "--loss",
        default=None,
        help="loss to evaluate (a base loss name such as "
        "'crossentropy' or a Keras loss name); default: a "
        "MetaModel's meta objective, else the compiled loss",
    )
    parser.add_argument(
        "--from-logits",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="whether the models output logits (for --loss); default: read from the model's loss",
    )
    parser.add_argument("--x-key", default="x", help="array name of x in the .npz")
    parser.add_argument("--y-key", default="y", help="array name of y in the .npz")
    parser.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard summaries to OUT/tensorboard",
    )
    parser.set_defaults(func=run)
    return parser


class CommandError(Exception):
    """A user-facing error: printed, exit code 1."""


def load_data(spec, x_key="x", y_key="y", samples=None):
    """`(x, y)` from `"digits"` or an .npz file."""
    if spec == "digits":
        sk_datasets = import_optional(
            "sklearn.datasets", "--data digits", "or pass --data FILE.npz"
        )
        digits = sk_datasets.load_digits()
        x = (digits.data / 16.0).astype("float32")
        y = digits.target.astype("int32")
    else:
        if not os.path.isfile(spec):
            raise CommandError(
                f"--data must be 'digits' or an existing .npz file. Received: {spec!r}"
            )
        try:
            with np.load(spec) as arrays:
                missing = [k for k in (x_key, y_key) if k not in arrays]
                if missing:
                    raise CommandError(
                        f"{spec} has no array {missing[0]!r} (it holds "
                        f"{sorted(arrays.files)}); use --x-key/--y-key."
                    )
                x, y = arrays[x_key], arrays[y_key]
        except (OSError, ValueError) as error:
            raise CommandError(f"cannot read {spec} as an .npz file: {error}") from None
        if len(x) != len(y):
            raise CommandError(f"{spec}: x and y differ in length ({len(x)} vs {len(y)}).")
        if np.issubdtype(x.dtype, np.floating):
            x = x.astype("float32")
    if samples is not None:
        x, y = x[:samples], y[:samples]
    return x, y


def _fit_input(model, x):
    """Reshapes flat inputs to the model's input shape when the sizes agree."""
    try:
        shape = tuple(model.inputs[0].shape[1:])
    except (AttributeError, IndexError, TypeError):
        return x
    if None in shape or x.shape[1:] == shape:
        return x
    if int(np.prod(shape)) == int(np.prod(x.shape[1:])):
        return x.reshape((len(x),) + shape)
    raise CommandError(
        f"the data's samples have shape {x.shape[1:]} but the model expects {shape}."
    )


def _model_from_logits(model):
    for loss in (getattr(model, "meta_objective", None), getattr(model, "loss", None)):
        if loss is None:
            continue
        if hasattr(loss, "from_logits"):
            return bool(loss.from_logits)
        try:
            return bool(loss.get_config().get("from_logits", False))
        except (AttributeError, TypeError):
            continue
    return False


def _labels(paths):
    labels = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    if len(set(labels)) < len(labels):
        labels = [f"model{i + 1} ({label})" for i, label in enumerate(labels)]
    return labels


def run(args):
    """Computes, plots and reports the landscapes; returns the exit code."""
    try:
        return _run(args)
    except CommandError as error:
        print(f"tf-metaloss {NAME}: error: {error}", file=sys.stderr)
        return 1


def _run(args):
    if len(args.models) > 2:
        raise CommandError(f"expected one or two models, got {len(args.models)}.")
    for path in args.models:
        if not os.path.exists(path):
            raise CommandError(f"model file not found: {path}")
    # The figure needs matplotlib: fail before the landscapes are computed.
    import_optional("matplotlib", "tf-metaloss landscape")
    x, y = load_data(args.data, args.x_key, args.y_key, args.samples)

    import keras

    import tf_metaloss
    from tf_metaloss import diagnostics

    # The command line loads the library lazily: register every class it saves.
    tf_metaloss._load()
    results = {}
    for label, path in zip(_labels(args.models), args.models):
        try:
            model = keras.models.load_model(path)
        except Exception as error:  # Keras raises many types for a bad file.
            raise CommandError(f"cannot load model {path}: {error}") from None
        from_logits = args.from_logits
        if from_logits is None:
            from_logits = _model_from_logits(model)
        try:
            results[label] = diagnostics.loss_landscape(
                model,
                (_fit_input(model, x), y),
                directions=args.directions,
                span=args.span,
                points=args.points,
                seed=args.seed,
                loss=args.loss,
                from_logits=from_logits,
            )
        except ValueError as error:
            raise CommandError(f"{path}: {error}") from None

    os.makedirs(args.out, exist_ok=True)
    png = os.path.join(args.out, "landscape.png")
    diagnostics.plot_landscape(results, png, title=f"loss landscape ({args.data})")
    report = {label: r.to_dict() for label, r in results.items()}
    with open(os.path.join(args.out, "landscape.json"), "w", encoding="utf-8") as f:
        json.dump({"data": args.data, "seed": args.seed, "models": report}, f, indent=2)
    if args.tensorboard:
        diagnostics.log_landscape_to_tensorboard(results, os.path.join(args.out, "tensorboard"))

    rows = [("model", "loss", "centre", "max increase", "curvature")]
    for label, r in results.items():
        rows.append(
            (
                label,
                r.loss_name,
                f"{r.center_loss:.4g}",
                f"{r.sharpness['max_increase']:.4g}",
                ", ".join(f"{c:.4g}" for c in r.sharpness["curvature"]),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[4])
    print(f"Wrote {png} and {os.path.join(args.out, 'landscape.json')}")
    return 0
