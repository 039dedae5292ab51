"""Every example in a docstring runs.

Python examples are doctests (`>>>`), run with the names a user has after
`import keras`, `import numpy as np` and `import tf_metaloss as tml`, in an
empty working directory. Command-line examples are ```shell blocks (the CLI
tests run those commands).
"""

import ast
import doctest
import importlib
import pathlib
import pkgutil
import re

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds

import tf_metaloss

PACKAGE = pathlib.Path(tf_metaloss.__file__).parent
MODULES = ["tf_metaloss"] + sorted(
    m.name for m in pkgutil.walk_packages(tf_metaloss.__path__, "tf_metaloss.")
)
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
# Examples that load a TFDS dataset run on TFDS's offline mock data.
MOCK_TFDS = {"tf_metaloss.evaluation.datasets.load_tfds"}


def _doctests():
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = []
    for name in MODULES:
        module = importlib.import_module(name)
        # The finder also reaches objects re-exported from other modules; keep
        # each test once, under the module that defines it.
        tests += [t for t in finder.find(module, name) if t.examples and t.name.startswith(name)]
    return sorted({t.name: t for t in tests}.values(), key=lambda t: t.name)


DOCTESTS = _doctests()


def test_the_package_has_docstring_examples():
    # Guards against a finder that silently finds nothing.
    assert len(DOCTESTS) >= 40
    assert sum(len(t.examples) for t in DOCTESTS) >= 150


@pytest.mark.parametrize("test", DOCTESTS, ids=[t.name for t in DOCTESTS])
def test_docstring_example_runs(test, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    keras.utils.set_random_seed(0)
    test.globs = {"keras": keras, "np": np, "tf_metaloss": tf_metaloss, "tml": tf_metaloss}
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    report = []
    if test.name in MOCK_TFDS:
        with tfds.testing.mock_data(num_examples=16):
            runner.run(test, out=report.append)
    else:
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
    assert runner.tries == len(test.examples)


def _docstrings():
    """`(where, docstring)` of every module, class and function of the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)):
                docstring = ast.get_docstring(node)
                if docstring:
                    where = f"{path.relative_to(PACKAGE.parent)}:{getattr(node, 'name', '')}"
                    yield where, docstring


def test_every_example_section_is_a_doctest_or_a_shell_block():
    untested = []
    for where, docstring in _docstrings():
        for section in re.split(r"\n(?=\S[^\n]*:\n)", docstring)[1:] or [docstring]:
            if not re.match(r"Examples?:", section.strip()):
                continue
            if ">>>" not in section and "```shell" not in section:
                untested.append(where)
    assert not untested, f"Examples that are neither doctests nor shell blocks: {untested}"


def test_no_python_code_blocks_in_docstrings():
    # A ```python block is never run: write the example as a doctest instead.
    blocks = [where for where, docstring in _docstrings() if "```python" in docstring]
    assert not blocks, blocks
