"""The `tf-metaloss` command line.

Argument parsing lives here and in each subcommand's `register`; the work is
done by library functions the subcommands call. Each subcommand is a module
`tf_metaloss.commands.<name>` exposing `register(subparsers)`, which adds its
parser and sets `func=run`, with `run(args)` returning an exit code.

Exit codes: 0 on success, 2 on a usage error (argparse), 1 on a runtime
error (printed as `tf-metaloss <command>: error: <message>`).

Example:

```shell
tf-metaloss --help
tf-metaloss demo --epochs 40 --noise 0.4
python -m tf_metaloss demo --tiny
```
"""

import argparse
import importlib
import sys

COMMANDS = ("demo", "compare", "audit", "landscape", "plot")

PROG = "tf-metaloss"


def build_parser():
    """Returns the top-level `argparse.ArgumentParser` with all subcommands."""
    from tf_metaloss import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Keras losses that learn while the model trains: demos, "
            "comparisons and diagnostics of meta-learned losses."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--traceback",
        action="store_true",
        help="on a runtime error, show the full Python traceback",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="<command>", title="commands")
    subparsers.required = True
    for name in COMMANDS:
        module = importlib.import_module(f"tf_metaloss.commands.{name}")
        module.register(subparsers)
    # Lets `main` report unknown options with the subcommand's usage.
    parser.command_parsers = subparsers.choices
    return parser


def main(argv=None):
    """Runs the command line; returns the exit code.

    Args:
        argv: list of arguments without the program name (`None`:
            `sys.argv[1:]`).

    Returns:
        int: 0 on success, 1 on a runtime error, 2 on a usage error.
    """
    parser = build_parser()
    try:
        args, extras = parser.parse_known_args(argv)
        if extras:
            parser.command_parsers[args.command].error(
                f"unrecognized arguments: {' '.join(extras)}"
            )
    except SystemExit as exit_:
        # argparse exits after --help/--version (0) or a usage error (2).
        return _exit_code(exit_.code)
    try:
        return _exit_code(args.func(args))
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 -- report, don't crash.
        if args.traceback:
            raise
        print(f"{PROG} {args.command}: error: {_message(error)}", file=sys.stderr)
        return 1


def _exit_code(code):
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    # `sys.exit("message")` style: print it and fail.
    print(code, file=sys.stderr)
    return 1


def _message(error):
    # str(KeyError("x")) adds quotes; show the message as written.
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    return str(error) or type(error).__name__
