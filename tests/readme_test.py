"""The README tells the truth about the tree and about CI."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title):
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def _bash_blocks(text):
    return re.findall(r"```bash\n(.*?)\n```", text, re.DOTALL)


def test_the_two_commands_install_what_they_need():
    main, tests = _bash_blocks(_section("Two commands"))
    assert main == 'python -m pip install ".[eval]" && tf-metaloss demo'
    assert tests == 'python -m pip install -e ".[test]" && python -m pytest'


def test_ci_runs_the_readme_test_commands_exactly():
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    _, tests = _bash_blocks(_section("Two commands"))
    assert tests in ci_lines
    assert "python -m pytest -m integration -n 0" in ci_lines
    assert "`python -m pytest -m integration -n 0`" in README
    assert "KERAS_BACKEND=jax python -m pytest" in ci_lines
    assert "`KERAS_BACKEND=jax python -m pytest`" in README


def _layout():
    """`{path: [names of .py files its lines mention]}` from the Layout block."""
    block = re.search(r"## Layout\n\n```\n(.*?)\n```", README, re.DOTALL).group(1)
    entries, current = {}, None
    for line in block.splitlines():
        indent = len(line) - len(line.lstrip())
        first = line.split()[0]
        if indent == 0:
            current = first
        elif indent == 2:
            current = "tf_metaloss/" + first
        # A deeper line continues the description of the entry above it.
        if indent <= 2:
            entries[current] = []
            line = line.split(maxsplit=1)[-1]
        entries[current] += re.findall(r"\b\w+\.py\b", line)
    return entries


def test_layout_names_only_what_exists():
    entries = _layout()
    assert "tf_metaloss/" in entries and "tests/" in entries
    for path, files in entries.items():
        assert (ROOT / path).exists(), f"README layout names {path}, which does not exist"
        where = ROOT / path if path.endswith("/") else ROOT / path.rsplit("/", 1)[0]
        for name in files:
            found = (where / name).exists() or (ROOT / "tf_metaloss" / name).exists()
            assert found, f"README layout names {name} under {path}; no such file"


def test_layout_names_every_part_of_the_package():
    entries = _layout()
    package = ROOT / "tf_metaloss"
    parts = {f"tf_metaloss/{p.name}/" for p in package.iterdir() if (p / "__init__.py").exists()}
    parts |= {
        f"tf_metaloss/{p.name}"
        for p in package.glob("*.py")
        if p.name not in ("__init__.py", "__main__.py")
    }
    assert parts <= set(entries), sorted(parts - set(entries))


# A block that starts with this line runs after the block before it, in its namespace.
CONTINUES = "# (continues the example above)"


def _python_snippets():
    """`(title, code)` of the README's Python examples, in order.

    The title is the heading above the example; a block that continues the
    one before it is joined to it.
    """
    snippets = []
    position = 0
    for match in re.finditer(r"```python\n(.*?)\n```", README, re.DOTALL):
        code = match.group(1)
        if code.startswith(CONTINUES):
            title, before = snippets[-1]
            snippets[-1] = (title, before + "\n" + code)
            continue
        prose = re.sub(r"```.*?```", "", README[position : match.start()], flags=re.DOTALL)
        heading = re.findall(r"^#+ (.+)$", prose, re.MULTILINE)
        title = heading[-1] if heading else snippets[-1][0]
        snippets.append((title, code))
        position = match.start()
    return snippets


SNIPPETS = _python_snippets()


def test_the_readme_has_its_python_examples():
    titles = [title for title, _ in SNIPPETS]
    assert titles == [
        "Use",
        "Text classifiers (`tml.text`, keras-hub)",
        "Symbolic losses and the loss search (`tml.losses.SymbolicLoss`, `tml.search`)",
        "Imbalanced classes",
        "Watching the loss learn",
        "Distributed training, exact resume, mixed precision",
    ]
    assert sum(code.count(CONTINUES) for _, code in SNIPPETS) == 1


@pytest.mark.parametrize("code", [c for _, c in SNIPPETS], ids=[t for t, _ in SNIPPETS])
def test_readme_python_example_runs_as_written(code, tmp_path, monkeypatch):
    import tensorflow as tf

    monkeypatch.chdir(tmp_path)
    # Each tf.distribute strategy in one process gets collective keys of its own
    # (see the `mirrored_strategy` fixture).
    tf.distribute.MirroredStrategy._collective_key_base += 100_000
    exec(compile(code, "README.md", "exec"), {"__name__": "__main__"})
