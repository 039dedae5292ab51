"""One version: `tf_metaloss.__version__`, the package metadata and the command line agree."""

import importlib.metadata
import pathlib
import re
import subprocess
import sys

import pytest

import tf_metaloss

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_version_is_a_release_number():
    assert re.fullmatch(r"\d+\.\d+\.\d+", tf_metaloss.__version__)


def test_installed_metadata_matches_the_package():
    # setup.cfg reads the version from `tf_metaloss.__version__`; a stale
    # install (version bumped, not reinstalled) fails here.
    assert importlib.metadata.version("tf_metaloss") == tf_metaloss.__version__


def test_changelog_has_an_entry_for_this_version():
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(
        rf"^## \[{re.escape(tf_metaloss.__version__)}\] - \d{{4}}-\d{{2}}-\d{{2}}$",
        changelog,
        re.MULTILINE,
    )


def _console_script():
    # The `tf-metaloss` script installed beside this Python (the environment's bin/).
    script = pathlib.Path(sys.executable).parent / "tf-metaloss"
    assert script.is_file(), f"{script} is missing: install the package (pip install -e .)"
    return [str(script)]


@pytest.mark.integration
@pytest.mark.parametrize(
    "command",
    [_console_script, lambda: [sys.executable, "-m", "tf_metaloss"]],
    ids=["tf-metaloss", "python -m tf_metaloss"],
)
def test_command_line_version_matches_the_metadata(command, tmp_path):
    result = subprocess.run(
        [*command(), "--version"], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == f"tf-metaloss {importlib.metadata.version('tf_metaloss')}\n"
