"""The public names listed in `__all__` exist and import."""

import importlib

import tf_metaloss
import tf_metaloss.losses

MODULES = [
    "tf_metaloss",
    "tf_metaloss.callbacks",
    "tf_metaloss.diagnostics",
    "tf_metaloss.evaluation",
    "tf_metaloss.losses",
    "tf_metaloss.models",
    "tf_metaloss.plotting",
    "tf_metaloss.text",
]


def test_public_names_are_importable():
    missing = []
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        assert module.__all__, module_name
        for name in module.__all__:
            namespace = {}
            try:
                exec(f"from {module_name} import {name}", namespace)
            except ImportError:
                missing.append(f"{module_name}.{name}")
                continue
            assert namespace[name] is getattr(module, name)
    assert not missing, f"Listed in __all__ but not importable: {missing}"


def test_all_has_no_duplicates():
    for module_name in MODULES:
        names = importlib.import_module(module_name).__all__
        assert len(set(names)) == len(names), module_name


def test_top_level_reexports_the_losses():
    shared = set(tf_metaloss.__all__) & set(tf_metaloss.losses.__all__)
    assert {"BlendLoss", "MetaLoss", "NeuralLoss", "PolynomialLoss"} <= shared
    for name in shared:
        assert getattr(tf_metaloss, name) is getattr(tf_metaloss.losses, name)


def test_subpackages_are_attributes_of_the_package():
    for module_name in MODULES[1:]:
        name = module_name.split(".")[1]
        assert name in tf_metaloss.__all__
        assert getattr(tf_metaloss, name) is importlib.import_module(module_name)
