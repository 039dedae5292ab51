"""Tests of `tf-metaloss plot`."""

import argparse
import io
import json
import pathlib

import numpy as np
import pytest
from matplotlib import image as mpl_image

from tf_metaloss import cli
from tf_metaloss.commands import plot


def _parse(argv):
    parser = argparse.ArgumentParser(prog="tf-metaloss")
    plot.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def _main(argv):
    args = _parse(argv)
    return args.func(args)


def _log(path, updates=4, objective_key="meta_objective"):
    lines = [
        {
            "event": "train_begin",
            "parameters": {
                "w": {"shape": [2], "labels": ["ce", "mae"]},
                "net": {"shape": [9], "labels": None},
            },
        }
    ]
    for k in range(updates):
        lines.append(
            {
                "event": "meta_update",
                "step": 2 * k,
                "epoch": 0,
                "phi_before": {"w": [1.0, 0.0], "net": [0.0] * 9},
                "phi_after": {"w": [1.0 - 0.1 * k, 0.1 * k], "net": [float(k)] + [0.0] * 8},
                objective_key: 1.0 / (k + 1),
            }
        )
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return str(path)


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parse(["plot", "--help"])
    assert exit_info.value.code == 0
    assert "usage: tf-metaloss plot" in capsys.readouterr().out


def test_writes_a_png_next_to_the_log(tmp_path, capsys):
    log = _log(tmp_path / "audit.jsonl")
    assert _main(["plot", log]) == 0
    png = tmp_path / "audit.png"
    assert f"Wrote {png}" in capsys.readouterr().out
    picture = mpl_image.imread(io.BytesIO(png.read_bytes()), format="png")
    assert picture.shape == (680, 700, 4)  # two panels of 7 x 3.4 inches
    steps, series, meta_objective = plot.trajectories(
        [json.loads(line) for line in pathlib.Path(log).read_text().splitlines()]
    )
    np.testing.assert_array_equal(steps, [0, 2, 4, 6])
    assert list(series) == ["w/ce", "w/mae", "|net|"]
    np.testing.assert_allclose(series["w/mae"], [0.0, 0.1, 0.2, 0.3])
    np.testing.assert_allclose(series["|net|"], [0, 1, 2, 3])
    np.testing.assert_allclose(meta_objective, [1, 1 / 2, 1 / 3, 1 / 4])


def test_reads_logs_of_version_0_1(tmp_path):
    # tf_metaloss 0.1 wrote the meta objective as "meta_loss".
    log = _log(tmp_path / "old.jsonl", updates=2, objective_key="meta_loss")
    _, _, meta_objective = plot.trajectories(
        [json.loads(line) for line in pathlib.Path(log).read_text().splitlines()]
    )
    np.testing.assert_allclose(meta_objective, [1, 1 / 2])


def test_out_and_single_panel(tmp_path):
    log = _log(tmp_path / "audit.jsonl")
    out = tmp_path / "phi.png"
    assert _main(["plot", log, "--out", str(out), "--no-meta-objective"]) == 0
    picture = mpl_image.imread(io.BytesIO(out.read_bytes()), format="png")
    assert picture.shape == (340, 700, 4)


def test_errors_exit_1(tmp_path, capsys):
    assert _main(["plot", str(tmp_path / "missing.jsonl")]) == 1
    assert "tf-metaloss plot: error: Audit log not found" in capsys.readouterr().err
    empty = _log(tmp_path / "empty.jsonl", updates=0)
    assert _main(["plot", empty]) == 1
    assert "records no meta-updates" in capsys.readouterr().err
    log = _log(tmp_path / "audit.jsonl")
    assert _main(["plot", log, "--out", str(tmp_path / "no" / "dir" / "x.png")]) == 1
    assert "cannot write" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        _parse(["plot"])
    assert exit_info.value.code == 2


def test_runs_through_the_real_cli_main(monkeypatch, capsys):
    monkeypatch.setattr(cli, "COMMANDS", tuple(dict.fromkeys(cli.COMMANDS + ("plot",))))
    assert cli.main(["plot", "--help"]) == 0
    assert "usage: tf-metaloss plot" in capsys.readouterr().out
    assert cli.main(["plot", "--no-such-option"]) == 2
    assert "tf-metaloss plot: error:" in capsys.readouterr().err
