"""Every module of the package ends up in what pip installs."""

import configparser
import pathlib

from tf_metaloss import _optional

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tf_metaloss"


def test_every_package_directory_has_an_init():
    # `packages = find:` only finds directories with an `__init__.py`; a
    # directory without one is silently left out of the wheel.
    directories = {path.parent for path in PACKAGE.rglob("*.py")}
    missing = sorted(
        str(d.relative_to(PACKAGE.parent)) for d in directories if not (d / "__init__.py").is_file()
    )
    assert not missing, f"Package directories without __init__.py: {missing}"


def extras():
    """setup.cfg's extras: dict `extra -> list of requirement strings`."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return {
        name: [line.strip() for line in value.strip().splitlines() if line.strip()]
        for name, value in config["options.extras_require"].items()
    }


def test_extras_all_and_test_cover_the_feature_extras():
    declared = extras()
    assert {"datasets", "nlp", "eval", "all", "test"} <= set(declared)
    features = {r for name in ("datasets", "nlp", "eval") for r in declared[name]}
    assert set(declared["all"]) == features
    # The test suite imports what `datasets` and `eval` bring (not keras-hub).
    assert set(declared["datasets"]) | set(declared["eval"]) <= set(declared["test"])


def test_every_optional_module_belongs_to_its_extra():
    declared = extras()
    for package, extra in _optional.OPTIONAL_MODULES.values():
        assert any(r.split(">")[0].split(";")[0] == package for r in declared[extra]), (
            package,
            extra,
        )


def test_the_core_requirements_are_the_lean_four():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    core = [line.strip() for line in config["options"]["install_requires"].strip().splitlines()]
    names = [line.split(">")[0].split("=")[0].split("<")[0] for line in core]
    assert names == ["tensorflow", "keras", "tensorboard", "numpy"]
