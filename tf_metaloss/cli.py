"""The `tf-metaloss` command line.

Argument parsing lives here and in each subcommand's `register`; the work is
done by library functions the subcommands call. Each subcommand is a module
`tf_metaloss.commands.<name>` exposing `register(subparsers)`, which adds its
parser and sets `func=run`, with `run(args)` returning an exit code. Only the
module of the subcommand given is imported: `tf-metaloss --help` and
`--version` answer without importing TensorFlow.

TensorFlow's log lines (C++ start-up messages, the `cuInit` error on a machine
without a GPU, its Python logger's warnings) are hidden unless
`TF_CPP_MIN_LOG_LEVEL` is set in the environment or `--verbose` is given.

Exit codes: 0 on success, 2 on a usage error (argparse's, or a
`commands.arguments.UsageError` a command raises), 1 on a runtime error
(printed as `tf-metaloss <command>: error: <message>`).

Example:

```shell
tf-metaloss --help
tf-metaloss demo --epochs 40 --noise 0.4
python -m tf_metaloss demo --tiny
tf-metaloss --verbose demo --tiny   # with TensorFlow's log lines
tf-metaloss --backend jax demo --tiny   # on Keras's JAX backend (the `jax` extra)
```

`--backend` sets `KERAS_BACKEND` for the command before Keras loads (like
`KERAS_BACKEND=jax tf-metaloss ...`); given, it wins over the variable.
"""

import argparse
import contextlib
import importlib
import importlib.util
import logging
import os
import re
import sys
import tempfile

from tf_metaloss.commands import SUMMARIES
from tf_metaloss.commands.arguments import UsageError

COMMANDS = ("demo", "compare", "audit", "landscape", "plot", "search")

BACKENDS = ("tensorflow", "jax")

PROG = "tf-metaloss"

# TensorFlow's C++ log level in quiet mode: 3 hides errors too, which is the
# level that hides `failed call to cuInit` on a machine without a GPU.
QUIET_TF_CPP_MIN_LOG_LEVEL = "3"

# What TensorFlow's libraries print while they load, before its log level
# applies: absl's banner and glog-style lines (`I0000 00:00:... file.cc:N] ...`).
_NATIVE_LOG_LINE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] )"
)


def build_parser(commands=COMMANDS):
    """Returns the top-level `argparse.ArgumentParser`.

    Args:
        commands: the subcommands to register in full (their modules are
            imported); the others are listed by name and summary only.
    """
    from tf_metaloss import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Keras losses that learn while the model trains: demos, "
            "comparisons and diagnostics of meta-learned losses."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_common_options(parser, argparse_default=False)
    subparsers = parser.add_subparsers(dest="command", metavar="<command>", title="commands")
    subparsers.required = True
    for name in COMMANDS:
        if name in commands:
            module = importlib.import_module(f"tf_metaloss.commands.{name}")
            module.register(subparsers)
            # The common options are accepted after the command too.
            _add_common_options(subparsers.choices[name], argparse_default=argparse.SUPPRESS)
        else:
            subparsers.add_parser(name, help=SUMMARIES.get(name, ""), add_help=False)
    # Lets `main` report mistakes with the subcommand's usage.
    parser.command_parsers = subparsers.choices
    return parser


def _add_common_options(parser, argparse_default):
    # A subcommand's copy has no default (SUPPRESS), so it never overwrites a
    # value given before the command.
    parser.add_argument(
        "--verbose",
        action="store_true",
        default=argparse_default,
        help="show TensorFlow's log lines (hidden unless TF_CPP_MIN_LOG_LEVEL is set)",
    )
    parser.add_argument(
        "--traceback",
        action="store_true",
        default=argparse_default,
        help="on a runtime error, show the full Python traceback",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=argparse_default if argparse_default is argparse.SUPPRESS else None,
        help="the Keras backend to run on (default: KERAS_BACKEND, else tensorflow); "
        "jax needs the `jax` extra",
    )


def main(argv=None):
    """Runs the command line; returns the exit code.

    Args:
        argv: list of arguments without the program name (`None`:
            `sys.argv[1:]`).

    Returns:
        int: 0 on success, 1 on a runtime error, 2 on a usage error.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command_in(argv)
    options = argv[: argv.index("--")] if "--" in argv else argv
    quiet = "--verbose" not in options and "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    with _quiet_tensorflow() if quiet else contextlib.nullcontext():
        return _main(argv, command, quiet)


def _main(argv, command, quiet):
    try:
        with _native_logs_dropped(quiet):
            parser = build_parser(commands=() if command is None else (command,))
        args, extras = parser.parse_known_args(argv)
        if extras:
            parser.command_parsers[args.command].error(
                f"unrecognized arguments: {' '.join(extras)}"
            )
    except SystemExit as exit_:
        # argparse exits after --help/--version (0) or a usage error (2).
        return _exit_code(exit_.code)
    try:
        _select_backend(getattr(args, "backend", None))
        # Every command uses TensorFlow: load it here, where the lines its
        # libraries print while loading can be dropped.
        with _native_logs_dropped(quiet):
            if importlib.util.find_spec("tensorflow") is not None:
                importlib.import_module("tensorflow")
        return _exit_code(args.func(args))
    except UsageError as error:
        return _usage_error(parser.command_parsers[args.command], error)
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 -- report, don't crash.
        if args.traceback:
            raise
        print(f"{PROG} {args.command}: error: {_message(error)}", file=sys.stderr)
        return 1


def _select_backend(name):
    """Sets `KERAS_BACKEND` to `name` before Keras loads (`None`: as is)."""
    if name is None:
        return
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != name:
            raise UsageError(
                f"argument --backend: Keras is already loaded in this process with the "
                f"{keras.backend.backend()} backend, so it cannot run on {name}. Received: "
                f"--backend {name}. Start a new process, or set KERAS_BACKEND={name} "
                "before Keras is imported."
            )
        return
    if name == "jax" and importlib.util.find_spec("jax") is None:
        raise UsageError(
            "argument --backend: expected an installed backend; JAX is not installed. "
            "Received: --backend jax. Install it with: pip install 'tf_metaloss[jax]'."
        )
    os.environ["KERAS_BACKEND"] = name


def _usage_error(parser, error):
    try:
        parser.error(str(error))  # prints the usage and the message, exits 2
    except SystemExit as exit_:
        return _exit_code(exit_.code)


def _command_in(argv):
    """The subcommand named in `argv` (of the top-level options only
    `--backend` takes a value)."""
    tokens = iter(argv)
    for token in tokens:
        if token == "--":
            return None
        if token == "--backend":
            next(tokens, None)
        elif not token.startswith("-"):
            return token if token in COMMANDS else None
    return None


@contextlib.contextmanager
def _quiet_tensorflow():
    """TensorFlow's C++ logs at `QUIET_TF_CPP_MIN_LOG_LEVEL` and its Python
    logger at ERROR for the block (read when TensorFlow loads)."""
    logger = logging.getLogger("tensorflow")
    level = logger.level
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = QUIET_TF_CPP_MIN_LOG_LEVEL
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
        os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)


@contextlib.contextmanager
def _native_logs_dropped(enabled):
    """Drops the lines TensorFlow's libraries write to file descriptor 2 while
    they load inside the block; every other line written there is kept.

    Does nothing unless `enabled` and TensorFlow is not loaded yet (it prints
    those lines once per process). On an error everything is kept.
    """
    if not enabled or "tensorflow" in sys.modules:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    failed = False
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", errors="replace")
            kept = [
                line
                for line in text.splitlines(keepends=True)
                if failed or not _NATIVE_LOG_LINE.match(line)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


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
