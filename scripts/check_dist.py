"""Checks built distributions: every module of the source tree is in them.

Usage:

    python -m build --outdir dist .
    python scripts/check_dist.py dist/*.whl dist/*.tar.gz

For a wheel: every `tf_metaloss/**/*.py` of the source tree is in it, nothing
outside the package and its metadata, the metadata version is
`tf_metaloss.__version__`, and the `tf-metaloss` command is declared. For an
sdist: every module too, and the files a build needs (setup.cfg, setup.py,
pyproject.toml, README.md). Prints one line per file; exits 1 on a problem.
It reads the source tree without importing it (no TensorFlow needed).
"""

import argparse
import ast
import email.parser
import pathlib
import sys
import tarfile
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = "tf_metaloss"
SDIST_FILES = ("setup.cfg", "setup.py", "pyproject.toml", "README.md")
ENTRY_POINT = "tf-metaloss = tf_metaloss.cli:main"


def source_modules(root=ROOT):
    """Sorted paths (`tf_metaloss/...py`, relative to `root`) of the package's modules."""
    return sorted(
        path.relative_to(root).as_posix()
        for path in (root / PACKAGE).rglob("*.py")
        if "__pycache__" not in path.parts
    )


def source_version(root=ROOT):
    """`__version__` of the package's `__init__.py`, read without importing it."""
    tree = ast.parse((root / PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise ValueError(f"No __version__ in {root / PACKAGE / '__init__.py'}")


def check_wheel(path, modules, version):
    """Problems found in the wheel at `path` (an empty list when it is complete)."""
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        dist_info = f"{PACKAGE}-{version}.dist-info"
        problems = [f"missing module {m}" for m in modules if m not in names]
        problems += [
            f"unexpected file {n}"
            for n in names
            if not (n.startswith(PACKAGE + "/") or n.startswith(dist_info + "/"))
        ]
        if f"{dist_info}/METADATA" not in names:
            return [*problems, f"missing {dist_info}/METADATA"]
        metadata = email.parser.Parser().parsestr(
            wheel.read(f"{dist_info}/METADATA").decode("utf-8")
        )
        if metadata["Version"] != version:
            problems.append(f"metadata version {metadata['Version']} != {version}")
        entry_points = wheel.read(f"{dist_info}/entry_points.txt").decode("utf-8")
        if ENTRY_POINT not in entry_points:
            problems.append(f"entry point {ENTRY_POINT!r} not declared")
    return problems


def check_sdist(path, modules, version):
    """Problems found in the sdist at `path` (an empty list when it is complete)."""
    prefix = f"{PACKAGE}-{version}/"
    with tarfile.open(path) as sdist:
        names = set(sdist.getnames())
    expected = [*modules, *SDIST_FILES, "PKG-INFO"]
    return [f"missing {name}" for name in expected if prefix + name not in names]


def check(paths, root=ROOT):
    """Checks each distribution; returns `(ok, report_lines)`."""
    modules = source_modules(root)
    version = source_version(root)
    lines, ok = [], True
    if not paths:
        return False, ["no distribution given"]
    for path in map(pathlib.Path, paths):
        if path.name.endswith(".whl"):
            problems = check_wheel(path, modules, version)
        elif path.name.endswith(".tar.gz"):
            problems = check_sdist(path, modules, version)
        else:
            problems = ["not a wheel (.whl) or an sdist (.tar.gz)"]
        ok = ok and not problems
        status = "ok" if not problems else "FAILED: " + "; ".join(problems)
        lines.append(f"{path.name}: {len(modules)} modules, version {version}: {status}")
    return ok, lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dists", nargs="+", help="wheel (.whl) and sdist (.tar.gz) files")
    parser.add_argument("--source", default=str(ROOT), help="the source tree (default: this one)")
    args = parser.parse_args(argv)
    ok, lines = check(args.dists, pathlib.Path(args.source))
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
