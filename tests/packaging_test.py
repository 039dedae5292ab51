"""Every module of the package ends up in what pip installs."""

import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "tf_metaloss"


def test_every_package_directory_has_an_init():
    # `packages = find:` only finds directories with an `__init__.py`; a
    # directory without one is silently left out of the wheel.
    directories = {path.parent for path in PACKAGE.rglob("*.py")}
    missing = sorted(
        str(d.relative_to(PACKAGE.parent)) for d in directories if not (d / "__init__.py").is_file()
    )
    assert not missing, f"Package directories without __init__.py: {missing}"
