"""Tests of `tf-metaloss audit`."""

import argparse
import json
import re

import keras
import pytest

import tf_metaloss as tml
from tf_metaloss import callbacks
from tf_metaloss import cli
from tf_metaloss.commands import audit

# The blend of 0.2: a MetaLoss whose phi has one named weight per base loss.
BLEND = tml.losses.meta_loss.BLEND_BASE_LOSSES["classification"]


def _parse(argv):
    parser = argparse.ArgumentParser(prog="tf-metaloss")
    audit.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def _main(argv):
    args = _parse(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def real_log(tmp_path_factory, classification_data):
    path = str(tmp_path_factory.mktemp("audit") / "audit.jsonl")
    x, y = classification_data(n=32, features=5, classes=3, seed=0, label_dtype="int64")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5,))
    model = tml.MetaModel(inputs, keras.layers.Dense(3)(inputs))
    model.compile(
        optimizer="sgd",
        loss=tml.MetaLoss(from_logits=True, base_losses=BLEND),
        meta_optimizer=keras.optimizers.Adam(0.05),
        meta_every=2,
        meta_global_clipnorm=1e-3,
        run_eagerly=True,
    )
    model.fit(
        x,
        y,
        meta_data=(x, y),
        batch_size=8,
        epochs=2,
        verbose=0,
        callbacks=[callbacks.LossAuditLog(path)],
    )
    return path


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parse(["audit", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: tf-metaloss audit" in out and "--json" in out


def test_text_summary_of_a_real_run(real_log, capsys):
    assert _main(["audit", real_log]) == 0
    out = capsys.readouterr().out
    summary = callbacks.summarize_audit_log(callbacks.read_audit_log(real_log))
    assert summary["updates"] == 4
    assert "fits: 1   meta-updates: 4" in out
    assert "steps 0 .. 6, epochs 1 .. 2" in out
    norms = [
        r["meta_grad_norm"]
        for r in callbacks.read_audit_log(real_log)
        if r["event"] == "meta_update"
    ]
    clipped = sum(norm > 1e-3 for norm in norms)
    assert clipped == len(summary["clipped"]) > 0
    assert f"clipped in {clipped} of 4 updates (meta_global_clipnorm=0.001)" in out
    first = summary["movement"]["parameters"]["blend_weights"]["elements"][1]
    values = "{:+.6f} -> {:+.6f}".format(first["first"], first["last"])
    assert re.search(r"blend_weights/focal +" + re.escape(values), out)
    assert f"phi moved: L2 {summary['movement']['l2']:.6g}" in out


def test_json_summary(real_log, capsys):
    assert _main(["audit", real_log, "--json", "--top", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = callbacks.summarize_audit_log(callbacks.read_audit_log(real_log), top=2)
    assert out == dict(expected, file=real_log)
    assert len(out["largest_moves"]) == 2


def test_warnings_are_printed(tmp_path, capsys):
    path = tmp_path / "log.jsonl"
    update = {
        "event": "meta_update",
        "step": 4,
        "epoch": 0,
        "phi_before": {"w": [1.0]},
        "phi_after": {"w": [1.0]},
        "meta_loss": None,
        "meta_grad_norm": 0.5,
        "skipped": True,
        "bound_hit": ["w[0]"],
        "at_bound": ["w[0]"],
    }
    path.write_text(json.dumps(update) + "\n")
    assert _main(["audit", str(path)]) == 0
    out = capsys.readouterr().out
    assert "meta-gradient norm: mean 0.5, max 0.5 (step 4); no clipping" in out
    assert "Warnings:" in out
    assert "1 of 1 meta-updates were skipped" in out
    assert "A parameter bound was hit in 1 update(s), at steps 4: w[0]." in out


def test_missing_and_corrupt_files_exit_1(tmp_path, capsys):
    assert _main(["audit", str(tmp_path / "missing.jsonl")]) == 1
    assert "error: Audit log not found" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"event": "train_begin"}\nnot json\n')
    assert _main(["audit", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "tf-metaloss audit: error:" in err and "line 2" in err


def test_bad_arguments_exit_2(capsys):
    for argv in (["audit"], ["audit", "f", "--top", "0"], ["audit", "f", "--bogus"]):
        with pytest.raises(SystemExit) as exit_info:
            _parse(argv)
        assert exit_info.value.code == 2
        assert "error:" in capsys.readouterr().err


def test_runs_through_the_real_cli_main(monkeypatch, capsys):
    monkeypatch.setattr(cli, "COMMANDS", tuple(dict.fromkeys(cli.COMMANDS + ("audit",))))
    assert cli.main(["audit", "--help"]) == 0
    assert "usage: tf-metaloss audit" in capsys.readouterr().out
    assert cli.main(["audit", "--no-such-option"]) == 2
    assert "tf-metaloss audit: error:" in capsys.readouterr().err
