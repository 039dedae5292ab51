"""Tests of the written results: JSON and Markdown."""

import json
import os

import numpy as np

from tf_metaloss.evaluation import report
from tf_metaloss.evaluation import runner


def test_to_json_writes_non_finite_numbers_as_null():
    text = report.to_json(
        {
            "a": float("nan"),
            "b": [np.float32(1.5), np.int64(2)],
            "c": np.bool_(True),
            "d": 2.0 / 3.0,
        }
    )
    assert json.loads(text) == {"a": None, "b": [1.5, 2], "c": True, "d": 0.6666667}


def test_write_results_without_figures(toy_dataset, small_config, tmp_path):
    results = runner.run_comparison(small_config(methods="ce", epochs=1), data=toy_dataset())
    paths = report.write_results(results, str(tmp_path), figures=False)
    assert sorted(paths) == ["json", "markdown"]
    assert not os.path.exists(tmp_path / "learning_curves.png")
