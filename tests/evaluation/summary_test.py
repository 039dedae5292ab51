"""Tests of the summaries over seeds."""

import math

import pytest

from tf_metaloss.evaluation import report
from tf_metaloss.evaluation import summary as summary_lib


def test_mean_std_and_summarize():
    assert summary_lib.mean_std([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2)), 2)
    assert summary_lib.mean_std([5.0, float("nan")]) == (5.0, 0.0, 1)
    runs = [
        {"method": "ce", "seed": 0, "final": {"val_accuracy": 0.5}},
        {"method": "ce", "seed": 1, "final": {"val_accuracy": 0.7}},
        {"method": "gce", "seed": 0, "final": {"val_accuracy": 0.6}},
        {"method": "gce", "seed": 1, "final": {"val_accuracy": 0.9}},
    ]
    summary = summary_lib.summarize(runs)
    assert "epochs_to_common_target" not in summary["ce"]  # no curves given
    assert summary["ce"]["val_accuracy"]["mean"] == pytest.approx(0.6)
    # Paired differences 0.1 and 0.2.
    assert summary["gce"]["delta_vs_ce"]["mean"] == pytest.approx(0.15)
    assert summary["gce"]["delta_vs_ce"]["std"] == pytest.approx(0.1 / math.sqrt(2))


def test_summarize_epochs_to_common_target():
    # Best mean final accuracy: gce 0.9 -> target 0.81 for every method.
    runs = [
        {
            "method": "ce",
            "seed": 0,
            "final": {"val_accuracy": 0.6},
            "curves": {"val_accuracy": [0.82, 0.7, 0.6]},
        },
        {
            "method": "ce",
            "seed": 1,
            "final": {"val_accuracy": 0.6},
            "curves": {"val_accuracy": [0.5, 0.6, 0.6]},
        },
        {
            "method": "gce",
            "seed": 0,
            "final": {"val_accuracy": 0.9},
            "curves": {"val_accuracy": [0.5, 0.85, 0.9]},
        },
        {
            "method": "gce",
            "seed": 1,
            "final": {"val_accuracy": 0.9},
            "curves": {"val_accuracy": [0.5, 0.6, 0.9]},
        },
    ]
    summary = summary_lib.summarize(runs)
    ce, gce = summary["ce"]["epochs_to_common_target"], summary["gce"]["epochs_to_common_target"]
    assert (ce["mean"], ce["n"], ce["of"]) == (1.0, 1, 2)
    assert (gce["mean"], gce["n"], gce["of"]) == (2.5, 2, 2)
    assert gce["target"] == pytest.approx(0.81)
    assert report._cell(ce, 1.0, 1) == "1.0 ± 0.0 (1/2 runs)"
    assert report._cell(gce, 1.0, 1) == "2.5 ± 0.7"
    assert (
        report._cell({"mean": float("nan"), "std": float("nan"), "n": 0, "of": 2}, 1.0, 1)
        == "never"
    )
    # The oracle (clean labels) does not set the common target.
    runs.append(
        {
            "method": "oracle",
            "seed": 0,
            "final": {"val_accuracy": 1.0},
            "curves": {"val_accuracy": [1.0, 1.0, 1.0]},
        }
    )
    with_oracle = summary_lib.summarize(runs)
    assert with_oracle["gce"]["epochs_to_common_target"]["target"] == pytest.approx(0.81)
