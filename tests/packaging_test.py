"""Every module of the package ends up in what pip installs."""

import configparser
import importlib.util
import pathlib
import subprocess
import sys
import zipfile

import pytest

from tf_metaloss import _optional

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tf_metaloss"


def _check_dist():
    spec = importlib.util.spec_from_file_location("check_dist", ROOT / "scripts" / "check_dist.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    features = {
        r
        for name in ("datasets", "nlp", "eval", "symbolic", "search", "jax")
        for r in declared[name]
    }
    assert set(declared["all"]) == features
    # The test suite imports what every feature extra brings (tests/text_test.py
    # imports keras-hub): CI installs only `.[test]`.
    assert features <= set(declared["test"])


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


# -- built distributions -------------------------------------------------------------


def test_the_checker_finds_a_module_missing_from_a_wheel(tmp_path):
    check_dist = _check_dist()
    modules = check_dist.source_modules()
    assert "tf_metaloss/models/meta_model.py" in modules and "tf_metaloss/__init__.py" in modules
    version = check_dist.source_version()
    dist_info = f"tf_metaloss-{version}.dist-info"
    wheel = tmp_path / f"tf_metaloss-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for module in modules:
            if not module.startswith("tf_metaloss/models/"):  # the 0.1.0 bug
                archive.writestr(module, "")
        archive.writestr(f"{dist_info}/METADATA", f"Name: tf_metaloss\nVersion: {version}\n")
        archive.writestr(f"{dist_info}/entry_points.txt", check_dist.ENTRY_POINT)
    ok, lines = check_dist.check([wheel])
    assert not ok
    assert "missing module tf_metaloss/models/__init__.py" in lines[0]
    assert "missing module tf_metaloss/models/meta_model.py" in lines[0]


@pytest.mark.integration
def test_built_wheel_and_sdist_hold_every_module(tmp_path):
    # `python -m build` builds the sdist, then the wheel from the sdist.
    build = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    wheels, sdists = list(tmp_path.glob("*.whl")), list(tmp_path.glob("*.tar.gz"))
    assert len(wheels) == len(sdists) == 1
    ok, lines = _check_dist().check([*wheels, *sdists])
    assert ok, lines
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = wheel.namelist()
    assert {m for m in names if m.endswith(".py")} == set(_check_dist().source_modules())
