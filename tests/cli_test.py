import argparse
import subprocess
import sys

import pytest

from tf_metaloss import __version__
from tf_metaloss import cli


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
