"""`tml.evaluation.compare` is a facade over the pipeline's modules."""

import importlib

from tf_metaloss.evaluation import compare


def test_the_facade_reexports_the_pipeline():
    assert compare.__all__
    for name in compare.__all__:
        value = getattr(compare, name)
        homes = [
            importlib.import_module(f"tf_metaloss.evaluation.{module}")
            for module in (
                "config",
                "figures",
                "methods",
                "models",
                "report",
                "runner",
                "schedules",
                "splits",
                "summary",
            )
        ]
        assert any(getattr(home, name, None) is value for home in homes), name


def test_the_project_targets_left_the_library():
    assert not hasattr(compare, "target_checks")
    assert not hasattr(importlib.import_module("tf_metaloss.evaluation.summary"), "target_checks")
