"""End-to-end runs of the comparison on toy data."""

import json

import numpy as np
import pytest

from tf_metaloss.evaluation import methods
from tf_metaloss.evaluation import report
from tf_metaloss.evaluation import runner

# One method of each kind of training: plain Keras model, meta-learned blend,
# meta-learned sample weights (paused inner tape), frozen, hand schedule, oracle.
E2E_METHODS = ("ce", "gce", "meta_loss", "sample_weighted", "frozen", "schedule", "oracle")


def _check_end_to_end(toy_dataset, small_config, tmp_path, names):
    config = small_config(
        noise_rate=0.4, methods=names, epochs=2, schedule_final={"mae_classification": 1.0}
    )
    lines = []
    results = runner.run_comparison(config, progress=lines.append, data=toy_dataset())
    assert [m["name"] for m in results["methods"]] == list(names)
    assert len(results["runs"]) == len(names) == len(lines)
    assert lines[0].startswith(f"[{1:>{len(str(len(names)))}}/{len(names)}] seed 0 ce")
    runs = {r["method"]: r for r in results["runs"]}
    for run in runs.values():
        final = run["final"]
        assert 0.0 <= final["val_accuracy"] <= 1.0
        assert final["convergence_epoch"] in (1, 2)
        assert len(run["curves"]["val_accuracy"]) == 2
        assert run["grad_norm_steps"] == 2 * 7  # 108 training samples, batch 16
        assert final["grad_norm_variance"] >= 0 and final["wall_time_s"] > 0
    # Same model, initial weights, data and seed: the frozen MetaLoss (pure
    # cross-entropy at phi_0) trains exactly like the plain cross-entropy model.
    np.testing.assert_allclose(
        runs["frozen"]["curves"]["loss"], runs["ce"]["curves"]["loss"], rtol=1e-5
    )
    assert runs["frozen"]["curves"]["val_accuracy"] == runs["ce"]["curves"]["val_accuracy"]
    # The hand schedule ends at its final phi; the meta-learned phi moved.
    assert runs["schedule"]["phi"]["mix/mae_classification"][-1] == pytest.approx(1.0)
    assert runs["meta_loss"]["phi"]["phi/crossentropy"][-1] != 1.0
    assert runs["ce"]["phi"] == {}
    # Noise: memorization is measured except for the oracle (clean labels).
    assert "memorized" in runs["ce"]["final"] and "memorized" not in runs["oracle"]["final"]
    assert results["data"]["per_seed"]["0"]["train_noise_rate"] > 0.3

    paths = report.write_results(results, str(tmp_path / "out"))
    with open(paths["json"]) as f:
        loaded = json.load(f)
    assert {
        "schema_version",
        "created",
        "config",
        "environment",
        "data",
        "methods",
        "runs",
        "summary",
    } <= set(loaded)
    assert "checks" not in loaded  # a user's report shows results, not the project's goals
    assert loaded["schema_version"] == runner.SCHEMA_VERSION
    assert loaded["config"]["seeds"] == [0] and loaded["config"]["noise_rate"] == 0.4
    assert set(loaded["runs"][0]) == {"method", "seed", "final", "curves", "phi", "grad_norm_steps"}
    assert set(loaded["summary"]["ce"]["val_accuracy"]) == {"mean", "std", "n"}
    with open(paths["markdown"]) as f:
        markdown = f.read()
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| method | val acc % | vs CE (pts) | macro-F1 %")
    assert len(table) == 1 + len(names)  # header + one row per method
    assert all(line.count("|") == table[0].count("|") for line in table)
    assert "| cross-entropy | " in markdown and "Targets" not in markdown
    for key in ("learning_curves", "phi"):
        with open(paths[key], "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.integration
def test_run_comparison_end_to_end_and_result_files(toy_dataset, small_config, tmp_path):
    _check_end_to_end(toy_dataset, small_config, tmp_path, E2E_METHODS)


@pytest.mark.slow
def test_run_comparison_end_to_end_every_method(toy_dataset, small_config, tmp_path):
    _check_end_to_end(toy_dataset, small_config, tmp_path, methods.DEFAULT_METHODS)


def test_run_comparison_without_noise_drops_the_oracle(toy_dataset, small_config):
    config = small_config(noise_rate=0.0, methods="ce,oracle", epochs=1)
    saved = []
    results = runner.run_comparison(
        config, data=toy_dataset(), on_run_end=lambda r: saved.append(len(r["runs"]))
    )
    assert [m["name"] for m in results["methods"]] == ["ce"]
    assert saved == [1]
    assert "memorized" not in results["runs"][0]["final"]
