"""Tests of the summaries over seeds."""

import math

import numpy as np
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


def _runs(accuracies):
    """Runs with only a final accuracy: `{method: {seed: accuracy}}`."""
    return [
        {"method": method, "seed": seed, "final": {"val_accuracy": accuracy}}
        for method, per_seed in accuracies.items()
        for seed, accuracy in per_seed.items()
    ]


def test_paired_differences_per_seed():
    runs = _runs(
        {
            "ce": {0: 0.30, 1: 0.32, 2: 0.28},
            "gce": {0: 0.40, 1: 0.45, 2: 0.41},
            "meta_loss": {0: 0.42, 1: 0.44, 2: 0.47},
        }
    )
    summary = summary_lib.summarize(runs, references=("ce", "gce"))
    paired = summary["meta_loss"]["paired"]
    assert set(paired) == {"ce", "gce"}
    assert paired["gce"]["per_seed"] == {
        "0": pytest.approx(0.02),
        "1": pytest.approx(-0.01),
        "2": pytest.approx(0.06),
    }
    assert paired["gce"]["mean"] == pytest.approx(0.07 / 3)
    assert paired["gce"]["std"] == pytest.approx(np.std([0.02, -0.01, 0.06], ddof=1))
    assert paired["gce"]["n"] == 3
    # A method is not paired with itself; delta_vs_ce is the pairing with CE.
    assert set(summary["gce"]["paired"]) == {"ce"} and set(summary["ce"]["paired"]) == {"gce"}
    assert summary["meta_loss"]["delta_vs_ce"]["mean"] == pytest.approx(paired["ce"]["mean"])


def test_paired_differences_use_the_common_seeds_only():
    runs = _runs({"gce": {0: 0.4, 1: 0.5}, "glc": {1: 0.6, 2: 0.7}})
    paired = summary_lib.summarize(runs, references=("gce",))["glc"]["paired"]["gce"]
    assert paired["per_seed"] == {"1": pytest.approx(0.1)} and paired["n"] == 1


def test_summarize_results_pairs_with_every_baseline():
    results = {
        "config": {"convergence_fraction": 0.9},
        "methods": [
            {"name": "ce", "group": "baseline"},
            {"name": "glc", "group": "baseline"},
            {"name": "meta_loss", "group": "learned"},
        ],
        "runs": _runs({"ce": {0: 0.3}, "glc": {0: 0.5}, "meta_loss": {0: 0.45}}),
    }
    summary = summary_lib.summarize_results(results)
    assert set(summary["meta_loss"]["paired"]) == {"ce", "glc"}
    assert summary["meta_loss"]["paired"]["glc"]["mean"] == pytest.approx(-0.05)


def _part(method, seed, accuracy, **config):
    """A results dict of one method and seed, as `run_comparison` writes it."""
    return {
        "schema_version": 2,
        "created": "2026-01-01T00:00:00",
        "config": {"methods": [method], "seeds": [seed], "epochs": 30, "command": f"run {method}"}
        | config,
        "environment": {"python": "3.11"},
        "data": {"name": "toy", "num_classes": 3, "per_seed": {str(seed): {"num_train": 9}}},
        "methods": [{"name": method, "label": method, "group": "baseline"}],
        "runs": [{"method": method, "seed": seed, "final": {"val_accuracy": accuracy}}],
    }


def test_merge_results():
    parts = [_part("glc", 1, 0.6), _part("ce", 1, 0.5), _part("ce", 0, 0.3), _part("glc", 0, 0.5)]
    merged = summary_lib.merge_results(parts, sources=["a", "b", "c", "d"])
    # Registry order for methods, sorted seeds, runs by seed then method.
    assert merged["config"]["methods"] == ["ce", "glc"] and merged["config"]["seeds"] == [0, 1]
    assert [m["name"] for m in merged["methods"]] == ["ce", "glc"]
    assert [(r["seed"], r["method"]) for r in merged["runs"]] == [
        (0, "ce"),
        (0, "glc"),
        (1, "ce"),
        (1, "glc"),
    ]
    assert merged["config"]["command"] is None and merged["config"]["epochs"] == 30
    assert [s["source"] for s in merged["sources"]] == ["a", "b", "c", "d"]
    assert merged["sources"][1]["command"] == "run ce"
    assert sorted(merged["data"]["per_seed"]) == ["0", "1"]
    delta = merged["summary"]["glc"]["delta_vs_ce"]
    assert (delta["mean"], delta["n"]) == (pytest.approx(0.15), 2)
    # The same as summarising the runs of one combined comparison.
    assert merged["summary"] == summary_lib.summarize(merged["runs"], references=("ce", "glc"))


@pytest.mark.parametrize(
    "parts, match",
    [
        (
            [_part("ce", 0, 0.5), _part("gce", 0, 0.6, epochs=20)],
            r"settings differ \(epochs: 30 vs 20\)",
        ),
        (
            [_part("ce", 0, 0.5), _part("gce", 0, 0.6, meta_method="neumann")],
            r"settings differ \(meta_method: 'second_order' vs 'neumann'\)",
        ),
        ([_part("ce", 0, 0.5), _part("ce", 0, 0.6)], "method 'ce', seed 0 is in both a and b"),
        ([_part("ce", 0, 0.5), {**_part("gce", 0, 0.6), "schema_version": 1}], "schema versions"),
    ],
)
def test_merge_results_refuses_what_does_not_belong_together(parts, match):
    with pytest.raises(ValueError, match=match):
        summary_lib.merge_results(parts, sources=["a", "b"])


def test_merge_results_takes_files_written_before_meta_method_as_second_order():
    old, new = _part("ce", 0, 0.5), _part("gce", 0, 0.6, meta_method="second_order")
    assert "meta_method" not in old["config"]
    merged = summary_lib.merge_results([old, new])
    assert merged["config"]["meta_method"] == "second_order"
    assert [r["method"] for r in merged["runs"]] == ["ce", "gce"]


def test_merge_results_refuses_different_data():
    other = _part("gce", 0, 0.6)
    other["data"]["per_seed"]["0"] = {"num_train": 8}
    with pytest.raises(ValueError, match="seed 0 has different data"):
        summary_lib.merge_results([_part("ce", 0, 0.5), other])
    other = _part("gce", 0, 0.6)
    other["data"]["name"] = "digits"
    with pytest.raises(ValueError, match="their data differ"):
        summary_lib.merge_results([_part("ce", 0, 0.5), other])
    with pytest.raises(ValueError, match="at least one"):
        summary_lib.merge_results([])
