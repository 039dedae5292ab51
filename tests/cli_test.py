import argparse
import os
import re
import subprocess
import sys
import textwrap

import keras
import pytest

import tf_metaloss
from tf_metaloss import __version__
from tf_metaloss import cli

# Runs the tf_metaloss under test, whichever copy (if any) is installed.
SOURCE_ROOT = os.path.dirname(os.path.dirname(tf_metaloss.__file__))
# A C++ log line of TensorFlow (`I0000 00:00:1796283413.403745  3814 port.cc:153] ...`,
# `E0000 ... cuda_platform.cc:52] failed call to cuInit: ...`) or absl's banner.
TF_LOG_LINE = re.compile(
    r"^([IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\]|WARNING: All log messages before absl)",
    re.MULTILINE,
)


def _run(argv, tmp_path, **env):
    """Runs `argv` in a fresh process, in an environment without TF_CPP_MIN_LOG_LEVEL."""
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environment.update(env, PYTHONPATH=SOURCE_ROOT)
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=environment
    )


def test_help_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: tf-metaloss")
    for name in cli.COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", cli.COMMANDS)
def test_every_command_has_help(name, capsys):
    assert cli.main([name, "--help"]) == 0
    assert capsys.readouterr().out.startswith(f"usage: tf-metaloss {name}")


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"tf-metaloss {__version__}"


def test_unknown_command_exits_2(capsys):
    assert cli.main(["no-such-command"]) == 2
    err = capsys.readouterr().err
    assert "tf-metaloss: error:" in err
    assert "invalid choice: 'no-such-command'" in err


def test_missing_command_exits_2(capsys):
    assert cli.main([]) == 2
    assert "the following arguments are required: <command>" in capsys.readouterr().err


def test_unknown_option_exits_2(capsys):
    assert cli.main(["demo", "--no-such-option"]) == 2
    err = capsys.readouterr().err
    assert "usage: tf-metaloss demo" in err
    assert "unrecognized arguments: --no-such-option" in err


def test_every_command_module_registers_a_run_function():
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert tuple(subparsers.choices) == cli.COMMANDS
    for name, subparser in subparsers.choices.items():
        assert callable(subparser.get_default("func")), name


class Failing:
    """A fake command whose `run` raises, to test runtime error handling."""

    def __init__(self, error):
        self.error = error

    def register(self, subparsers):
        parser = subparsers.add_parser("fail")
        parser.set_defaults(func=self.run)

    def run(self, args):
        raise self.error


@pytest.fixture
def failing_command(monkeypatch):
    def install(error):
        command = Failing(error)
        real_import = cli.importlib.import_module
        monkeypatch.setattr(cli, "COMMANDS", ("fail",))
        monkeypatch.setattr(
            cli.importlib,
            "import_module",
            lambda name: command if name.endswith(".fail") else real_import(name),
        )

    return install


@pytest.mark.parametrize(
    "error, message",
    [
        (FileNotFoundError("No such .npz file: 'x.npz'"), "No such .npz file: 'x.npz'"),
        (KeyError("missing the array(s) ['x_val']"), "missing the array(s) ['x_val']"),
        (RuntimeError(), "RuntimeError"),
    ],
)
def test_runtime_error_exits_1_with_message(failing_command, error, message, capsys):
    failing_command(error)
    assert cli.main(["fail"]) == 1
    err = capsys.readouterr().err
    assert err == f"tf-metaloss fail: error: {message}\n"


def test_traceback_flag_reraises(failing_command):
    failing_command(ValueError("boom"))
    with pytest.raises(ValueError, match="boom"):
        cli.main(["--traceback", "fail"])


@pytest.mark.integration
def test_python_dash_m_runs_the_cli_and_exits_2_on_usage_error():
    result = subprocess.run(
        [sys.executable, "-m", "tf_metaloss", "demo", "--epochs", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "tf-metaloss demo: error: argument --epochs" in result.stderr


# What the `tf-metaloss` console script runs, reporting what it imported.
CONSOLE_SCRIPT = textwrap.dedent(
    """
    import sys
    from tf_metaloss.cli import main
    code = main(sys.argv[1:])
    print("imported:", *sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
    sys.exit(code)
    """
)


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["demo", "--help"]])
def test_help_and_version_answer_without_tensorflow(argv, tmp_path):
    # Named like the installed console script, whose name the package checks.
    script = tmp_path / "bin" / "tf-metaloss"
    script.parent.mkdir()
    script.write_text(CONSOLE_SCRIPT)
    result = _run([sys.executable, str(script), *argv], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-1] == "imported:"
    assert result.stderr == ""


def test_python_dash_m_help_imports_no_tensorflow(tmp_path):
    # -X importtime lists every module the process imported, on stderr.
    result = _run([sys.executable, "-X", "importtime", "-m", "tf_metaloss", "--help"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("usage: tf-metaloss")
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    assert "tf_metaloss.cli" in imported
    assert not imported & {"tensorflow", "keras"}, "--help imported TensorFlow or Keras"
    assert not TF_LOG_LINE.search(result.stderr)


def test_verbose_is_accepted_before_and_after_the_command(capsys):
    assert cli.main(["--verbose", "demo", "--help"]) == 0
    assert cli.main(["demo", "--verbose", "--help"]) == 0
    assert "--verbose" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [["--backend", "jax", "demo", "--tiny"], ["demo", "--backend", "jax", "--tiny"]],
)
def test_backend_is_read_before_or_after_the_command(argv, capsys, monkeypatch):
    # This process has loaded Keras on TensorFlow: asking for JAX is a usage
    # error that says how to run it (the JAX run itself: tests/backend).
    assert keras.backend.backend() == "tensorflow"
    monkeypatch.setattr(cli.os, "environ", dict(cli.os.environ))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "usage: tf-metaloss demo" in err
    assert "argument --backend: Keras is already loaded in this process with the tensorflow" in err
    assert "set KERAS_BACKEND=jax before Keras is imported" in err
    assert cli.os.environ.get("KERAS_BACKEND") != "jax"


def test_backend_accepts_only_known_backends(capsys):
    assert cli.main(["--backend", "torch", "demo"]) == 2
    assert "argument --backend: invalid choice: 'torch'" in capsys.readouterr().err


@pytest.mark.integration
def test_tensorflow_log_lines_are_hidden_unless_asked_for(tmp_path):
    # The demo initialises TensorFlow's devices: `failed call to cuInit` on a
    # machine without a GPU, start-up lines on every machine.
    demo = [sys.executable, "-m", "tf_metaloss", "demo", "--tiny", "--epochs", "1"]
    quiet = _run(demo, tmp_path)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert "clean val accuracy" in quiet.stdout
    assert not TF_LOG_LINE.search(quiet.stderr), quiet.stderr[-3000:]
    assert "cuInit" not in quiet.stderr + quiet.stdout

    missing = [sys.executable, "-m", "tf_metaloss", "audit", "missing.jsonl"]
    error = _run(missing, tmp_path)
    assert (error.returncode, error.stderr) == (
        1,
        "tf-metaloss audit: error: Audit log not found: missing.jsonl\n",
    )
    # --verbose, or a level the user chose, shows TensorFlow's lines again.
    for argv, env in [(missing + ["--verbose"], {}), (missing, {"TF_CPP_MIN_LOG_LEVEL": "0"})]:
        shown = _run(argv, tmp_path, **env)
        assert shown.returncode == 1
        assert TF_LOG_LINE.search(shown.stderr), shown.stderr[-3000:]
        assert shown.stderr.endswith(
            "tf-metaloss audit: error: Audit log not found: missing.jsonl\n"
        )


@pytest.mark.parametrize(
    "argv, error",
    [
        (["demo", "--epochs", "-3"], "argument --epochs: expected a positive integer, got '-3'"),
        (["compare", "--epochs", "-1"], "argument --epochs: expected a positive integer, got '-1'"),
        (
            ["compare", "--seeds", "0", "0"],
            "argument --seeds: expected distinct integers >= 0, got (0, 0)",
        ),
        (
            ["compare", "--meta-method", "neumann", "--unroll-steps", "2"],
            "Arguments --unroll-steps and --meta-method conflict: --unroll-steps=2 applies",
        ),
    ],
)
def test_bad_settings_exit_2_naming_the_option(argv, error, capsys):
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"usage: tf-metaloss {argv[0]} ")
    assert captured.err.splitlines()[-1].startswith(f"tf-metaloss {argv[0]}: error: {error}")


def test_an_unknown_dataset_names_the_option_and_the_choices(capsys):
    assert cli.main(["compare", "--dataset", "mnist"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing printed before the error
    usage, error = captured.err.splitlines()
    assert usage == "usage: tf-metaloss compare [--preset NAME] [--dataset DATASET] [options]"
    assert error == (
        "tf-metaloss compare: error: argument --dataset: expected 'digits', 'cifar10' (TFDS), "
        "'tfds:<name>', a path to a .npz file, 'sst2' (TFDS) or a path to the SST-2 .jsonl "
        "files (a directory holding sst2_train.jsonl and sst2_dev.jsonl), got 'mnist'"
    )


def test_importing_the_package_in_a_program_registers_every_class(tmp_path):
    # Outside the command line, `import tf_metaloss` loads everything, so a
    # model saved with a learned loss loads whatever the program imports next.
    program = textwrap.dedent(
        """
        import tf_metaloss
        import keras
        print(keras.saving.get_registered_object("tf_metaloss>MetaModel") is not None)
        """
    )
    result = _run([sys.executable, "-c", program], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-1] == "True"
