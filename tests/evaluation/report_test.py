"""Tests of the written results: JSON and Markdown."""

import json
import os

import numpy as np
import pytest

from tf_metaloss.evaluation import report
from tf_metaloss.evaluation import runner
from tf_metaloss.evaluation import summary
from tf_metaloss.evaluation.config import CompareConfig
from tf_metaloss.meta import estimators


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


def _results():
    methods = [
        {
            "name": "ce",
            "label": "cross-entropy",
            "group": "baseline",
            "training": "fixed",
            "train_data": "train+meta",
            "clean_labels": False,
        },
        {
            "name": "finetune",
            "label": "fine-tuned",
            "group": "baseline",
            "training": "finetune",
            "train_data": "train+meta",
            "clean_labels": False,
        },
        {
            "name": "meta_loss",
            "label": "MetaLoss",
            "group": "learned",
            "training": "meta",
            "train_data": "train",
            "clean_labels": False,
        },
    ]
    runs = [
        {"method": m, "seed": s, "final": {"val_accuracy": a}}
        for m, s, a in [
            ("ce", 0, 0.30),
            ("ce", 1, 0.32),
            ("finetune", 0, 0.40),
            ("finetune", 1, 0.38),
            ("meta_loss", 0, 0.41),
            ("meta_loss", 1, 0.35),
        ]
    ]
    results = {
        "config": {
            "epochs": 30,
            "learning_rate": 0.05,
            "finetune_epochs": 10,
            "finetune_learning_rate": 0.01,
        },
        "methods": methods,
        "runs": runs,
    }
    results["summary"] = summary.summarize_results(results)
    return results


def test_format_methods_says_what_each_method_trains_on():
    table = report.format_methods(_results()).splitlines()
    assert table[:2] == ["| method | trains on | how |", "|---|---|---|"]
    assert table[2] == "| cross-entropy | noisy training part + meta set | - |"
    assert table[3] == (
        "| fine-tuned | noisy training part + meta set | 30 epochs on train+meta at lr 0.05, "
        "then 10 epochs on the meta set only at lr 0.01 |"
    )
    assert table[4].startswith(
        "| MetaLoss | noisy training part; meta-learned: also the meta set less the check data"
    )


def test_format_paired_lists_each_seed():
    table = report.format_paired(_results()).splitlines()
    assert table[0] == "| method | vs cross-entropy | vs fine-tuned |"
    assert table[2] == "| MetaLoss | +7.00 ± 5.66 (+11.0, +3.0) | -1.00 ± 2.83 (+1.0, -3.0) |"
    assert len(table) == 3  # baselines are rows of the main table, not of this one
    only_baselines = _results()
    only_baselines["methods"] = only_baselines["methods"][:2]
    assert report.format_paired(only_baselines) == ""


def test_read_results_round_trip(tmp_path):
    results = {
        "config": {"meta_clipnorm": None, "seeds": [0]},
        "runs": [
            {
                "method": "ce",
                "seed": 0,
                "final": {"memorized": float("nan"), "x": 1.0},
                "curves": {"val_accuracy": [0.5, float("nan")]},
                "phi": {},
            }
        ],
    }
    path = tmp_path / "results.json"
    path.write_text(report.to_json(results))
    loaded = report.read_results(str(path))
    assert loaded["config"]["meta_clipnorm"] is None  # settings keep their None
    assert np.isnan(loaded["runs"][0]["final"]["memorized"])
    assert loaded["runs"][0]["curves"]["val_accuracy"][0] == 0.5
    assert np.isnan(loaded["runs"][0]["curves"]["val_accuracy"][1])
    assert results["runs"][0]["final"]["x"] == loaded["runs"][0]["final"]["x"]


@pytest.mark.parametrize(
    "meta_method, shown",
    [
        (None, "meta-gradient second_order, unroll 1"),  # results written before the setting
        ("neumann", "meta-gradient neumann, unroll 1"),
        (
            estimators.Neumann(terms=2),
            "meta-gradient Neumann(terms=2, alpha=None, inner_steps=0), unroll 1",
        ),
    ],
)
def test_the_report_names_the_meta_method(meta_method, shown):
    results = _results()
    config = CompareConfig() if meta_method is None else CompareConfig(meta_method=meta_method)
    results["config"] = config.to_dict()
    if meta_method is None:
        del results["config"]["meta_method"]
    results["data"] = {"name": "toy", "eval_description": "the validation split", "per_seed": {}}
    assert shown in report.format_report(results)
