"""Tests of `LossAuditLog`, the step monitor, and reading/summarising logs."""

import functools
import json
import math
import os

import keras
import numpy as np
import pytest

import tf_metaloss as tml
from tf_metaloss import callbacks
from tf_metaloss.callbacks import monitor

# The blend of 0.2: a MetaLoss whose phi has one named weight per base loss.
BLEND = tml.losses.meta_loss.BLEND_BASE_LOSSES["classification"]


@pytest.fixture(scope="session")
def make_data(classification_data):
    """Random (x, y): 5 features, 3 classes (the shared factory)."""
    return functools.partial(classification_data, n=32, features=5, classes=3)


def _model(loss=None, **kwargs):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5,))
    model = tml.MetaModel(inputs, keras.layers.Dense(3)(inputs))
    kwargs.setdefault("meta_optimizer", keras.optimizers.Adam(0.05))
    kwargs.setdefault("meta_guard", None)  # every meta sample in the meta batches
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=loss if loss is not None else tml.MetaLoss(from_logits=True, base_losses=BLEND),
        **kwargs,
    )
    return model


def _updates(path):
    return [r for r in callbacks.read_audit_log(path) if r["event"] == "meta_update"]


@pytest.mark.parametrize("run_eagerly", [False, True])
def test_one_line_per_meta_update(make_data, tmp_path, run_eagerly):
    path = str(tmp_path / "logs" / "audit.jsonl")  # the directory is created
    x, y = make_data()
    model = _model(meta_every=3, run_eagerly=run_eagerly)
    model.fit(
        x,
        y,
        meta_data=(x, y),
        batch_size=4,
        epochs=2,
        verbose=0,
        callbacks=[callbacks.LossAuditLog(path)],
    )
    records = callbacks.read_audit_log(path)
    assert [r["event"] for r in records[:1] + records[-1:]] == ["train_begin", "train_end"]
    begin = records[0]
    assert begin["loss"] == "MetaLoss" and begin["meta_every"] == 3
    assert begin["parameters"]["blend_weights"]["labels"] == list(model.loss.base_losses)
    assert begin["parameters"]["blend_weights"]["bounds"] == [0.0, None]
    updates = [r for r in records if r["event"] == "meta_update"]
    # 16 steps (8 per epoch), meta steps at 0, 3, ..., 15.
    assert [r["step"] for r in updates] == [0, 3, 6, 9, 12, 15]
    assert [r["epoch"] for r in updates] == [0, 0, 0, 1, 1, 1]
    assert [r["batch"] for r in updates] == [0, 3, 6, 1, 4, 7]
    # Plain steps leave phi alone: each update starts where the last ended.
    for a, b in zip(updates, updates[1:]):
        assert a["phi_after"] == b["phi_before"]
    assert updates[0]["phi_before"] == begin["phi"]
    np.testing.assert_allclose(
        updates[-1]["phi_after"]["blend_weights"],
        model.loss.trainable_variables[0].numpy(),
        rtol=1e-7,
    )
    for r in updates:
        assert r["clipnorm"] is None and r["clipped"] is False and r["skipped"] is False
        assert math.isfinite(r["meta_objective"]) and r["meta_grad_norm"] > 0
    assert records[-1]["step"] == 16


def test_logged_meta_objective_and_norm_match_a_hand_computed_first_step(make_data, tmp_path):
    path = str(tmp_path / "audit.jsonl")
    x, y = make_data(n=16)
    xm, ym = make_data(n=12, seed=1)
    lr = 0.1
    model = _model(meta_global_clipnorm=1e-4, meta_objective="sparse_categorical_crossentropy")
    weights = [keras.ops.convert_to_tensor(v.numpy()) for v in model.trainable_variables]
    loss = model.loss
    phi0 = [keras.ops.convert_to_tensor(v.numpy()) for v in loss.trainable_variables]

    # By hand: one SGD lookahead on the first batch (no shuffling), cross-entropy
    # of the lookahead weights on the whole meta set (one meta batch).
    def train_loss(weights, phi):
        y_pred, _ = model.stateless_call(weights, [], x[:8], training=True)
        return loss.stateless_call(phi, y[:8], y_pred)

    def meta_loss(phi):
        _, grads = tml.backend.value_and_grad(train_loss)(weights, phi)
        lookahead = [w - lr * g for w, g in zip(weights, grads)]
        meta_pred, _ = model.stateless_call(lookahead, [], xm, training=True)
        return keras.ops.mean(
            keras.losses.sparse_categorical_crossentropy(ym, meta_pred, from_logits=True)
        )

    expected_loss, phi_grads = tml.backend.value_and_grad(meta_loss, wrt_weights=False)(phi0)
    expected_norm = float(
        np.sqrt(sum(np.sum(keras.ops.convert_to_numpy(g) ** 2) for g in phi_grads))
    )
    model.fit(
        x,
        y,
        meta_data=(xm, ym),
        meta_batch_size=12,
        batch_size=8,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[callbacks.LossAuditLog(path)],
    )
    first = _updates(path)[0]
    assert first["meta_objective"] == pytest.approx(float(expected_loss), rel=1e-5)
    assert first["meta_grad_norm"] == pytest.approx(expected_norm, rel=1e-4)
    assert first["clipped"] is (expected_norm > 1e-4)
    assert first["clipped"]


def test_steps_per_execution_records_the_latest_update_of_each_call(make_data, tmp_path):
    path = str(tmp_path / "audit.jsonl")
    x, y = make_data()
    model = _model(meta_every=3, steps_per_execution=4)
    model.fit(
        x,
        y,
        meta_data=(x, y),
        batch_size=4,
        epochs=1,
        verbose=0,
        callbacks=[callbacks.LossAuditLog(path)],
    )
    updates = _updates(path)
    # 8 steps in two calls of 4: meta steps 0, 3 in the first, 6 in the second.
    assert [r["step"] for r in updates] == [3, 6]
    assert [r.get("meta_updates", 1) for r in updates] == [2, 1]
    assert int(model.meta_optimizer.iterations.numpy()) == 3
    assert updates[1]["phi_before"] == updates[0]["phi_after"]


def test_every_line_is_on_disk_while_the_writer_is_open(make_data, tmp_path, monkeypatch):
    path = str(tmp_path / "audit.jsonl")
    synced = []
    real_fsync = os.fsync

    def counting_fsync(fd):
        synced.append(fd)
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)

    class Reader(keras.callbacks.Callback):
        seen = []

        def on_train_batch_end(self, batch, logs=None):
            with open(path, encoding="utf-8") as f:  # a second, independent handle
                lines = f.read().splitlines()
            self.seen.append([json.loads(line)["event"] for line in lines])

    x, y = make_data(n=16)
    model = _model(meta_every=2)
    log = callbacks.LossAuditLog(path)
    model.fit(x, y, meta_data=(x, y), batch_size=4, epochs=1, verbose=0, callbacks=[log, Reader()])
    # After batch k the file already holds train_begin + ceil((k+1)/2) updates.
    assert [len(events) for events in Reader.seen] == [2, 2, 3, 3]
    assert all(events[0] == "train_begin" for events in Reader.seen)
    assert len(synced) == 1 + 2 + 1  # begin, two updates, end: one fsync each


def test_resuming_appends_and_never_truncates(make_data, tmp_path):
    path = tmp_path / "audit.jsonl"
    x, y = make_data(n=16)
    model = _model()
    model.fit(
        x,
        y,
        meta_data=(x, y),
        batch_size=8,
        epochs=1,
        verbose=0,
        callbacks=[callbacks.LossAuditLog(str(path))],
    )
    first = path.read_bytes()
    model.fit(
        x,
        y,
        meta_data=(x, y),
        batch_size=8,
        epochs=1,
        verbose=0,
        callbacks=[callbacks.LossAuditLog(str(path))],
    )
    second = path.read_bytes()
    assert second.startswith(first) and len(second) > len(first)
    records = callbacks.read_audit_log(str(path))
    assert [r["event"] for r in records].count("train_begin") == 2
    updates = [r for r in records if r["event"] == "meta_update"]
    assert [r["step"] for r in updates] == [0, 1, 2, 3]  # the step count goes on
    assert updates[2]["phi_before"] == updates[1]["phi_after"]
    assert callbacks.summarize_audit_log(records)["sessions"] == 2


def test_a_skipped_update_is_recorded_and_warned_about(make_data, tmp_path):
    path = str(tmp_path / "audit.jsonl")
    x, y = make_data(n=16)
    x[9, 0] = np.nan  # the third batch of 4 (step 2) has a NaN input
    model = _model()
    model.fit(
        x,
        y,
        meta_data=(x[:8], y[:8]),
        batch_size=4,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[callbacks.LossAuditLog(path)],
    )
    updates = _updates(path)
    assert [r["skipped"] for r in updates] == [False, False, True, False]
    assert updates[2]["phi_after"] == updates[2]["phi_before"]  # nothing applied
    assert updates[2]["meta_objective"] is None  # non-finite values become null
    # The update after the skipped one has its own, finite values again.
    assert math.isfinite(updates[3]["meta_objective"]) and updates[3]["meta_grad_norm"] > 0
    summary = callbacks.summarize_audit_log(callbacks.read_audit_log(path))
    assert summary["skipped"] == [2]
    assert any("skipped" in w and "steps 2" in w for w in summary["warnings"])


def test_a_bound_hit_is_recorded(make_data, tmp_path):
    path = str(tmp_path / "audit.jsonl")
    x, y = make_data(n=16)
    loss = tml.PolynomialLoss(
        degree=2, expansion="one_minus_p", bounds=(-1e-3, 1e-3), from_logits=True
    )
    model = _model(loss, meta_optimizer=keras.optimizers.Adam(0.01))
    model.fit(
        x,
        y,
        meta_data=(x, y),
        batch_size=8,
        epochs=1,
        verbose=0,
        callbacks=[callbacks.LossAuditLog(path)],
    )
    updates = _updates(path)
    # Adam's first step moves each coefficient by ~0.01, past the 1e-3 bound.
    assert updates[0]["bound_hit"] == ["coefficients/coefficient_1", "coefficients/coefficient_2"]
    assert sorted(updates[0]["at_bound"]) == sorted(updates[0]["bound_hit"])
    assert all(abs(v) == pytest.approx(1e-3) for v in updates[0]["phi_after"]["coefficients"])
    summary = callbacks.summarize_audit_log(callbacks.read_audit_log(path))
    assert summary["bound_hits"][0]["step"] == 0
    assert any("bound was hit" in w for w in summary["warnings"])


def _hand_made_log(path):
    lines = [
        {
            "event": "train_begin",
            "step": 0,
            "parameters": {
                "w": {"shape": [2], "labels": ["ce", "mae"], "bounds": [0.0, None]},
                "net": {"shape": [10], "labels": None, "bounds": [None, None]},
            },
        },
        {
            "event": "meta_update",
            "step": 0,
            "epoch": 0,
            "phi_before": {"w": [1.0, 0.0], "net": [0.0] * 10},
            "phi_after": {"w": [0.9, 0.1], "net": [0.0] * 10},
            "meta_loss": 2.0,
            "meta_grad_norm": 0.5,
            "clipped": False,
            "skipped": False,
            "bound_hit": [],
            "at_bound": [],
        },
        {
            "event": "meta_update",
            "step": 5,
            "epoch": 0,
            "phi_before": {"w": [0.9, 0.1], "net": [0.0] * 10},
            "phi_after": {"w": [0.9, 0.1], "net": [0.0] * 10},
            "meta_loss": None,
            "meta_grad_norm": None,
            "clipped": False,
            "skipped": True,
            "bound_hit": [],
            "at_bound": [],
        },
        {
            "event": "meta_update",
            "step": 10,
            "epoch": 1,
            "phi_before": {"w": [0.9, 0.1], "net": [0.0] * 10},
            "phi_after": {"w": [0.5, 0.5], "net": [3.0, 4.0] + [0.0] * 8},
            "meta_loss": 1.5,
            "meta_grad_norm": 2.5,
            "clipped": True,
            "skipped": False,
            "bound_hit": ["w/ce"],
            "at_bound": ["w/ce"],
        },
        {"event": "train_end", "step": 12},
    ]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(json.dumps(line) for line in lines) + "\n\n")
    return path


def test_summary_of_a_hand_made_log(tmp_path):
    records = callbacks.read_audit_log(_hand_made_log(tmp_path / "log.jsonl"))
    s = callbacks.summarize_audit_log(records, top=2)
    assert (s["sessions"], s["updates"]) == (1, 3)
    assert s["steps"] == [0, 10] and s["epochs"] == [0, 1]
    assert s["meta_objective"] == {"first": 2.0, "last": 1.5, "min": 1.5, "min_step": 10}
    assert s["meta_grad_norm"] == {"mean": 1.5, "max": 2.5, "max_step": 10}
    w = s["movement"]["parameters"]["w"]
    assert w["l2"] == pytest.approx(math.sqrt(0.5**2 * 2))
    assert w["elements"] == [
        {"label": "w/ce", "first": 1.0, "last": 0.5},
        {"label": "w/mae", "first": 0.0, "last": 0.5},
    ]
    net = s["movement"]["parameters"]["net"]
    assert (net["l2"], net["norm_first"], net["norm_last"]) == (5.0, 0.0, 5.0)
    assert "elements" not in net
    assert s["movement"]["l2"] == pytest.approx(math.sqrt(0.5 + 25.0))
    step0 = math.sqrt(0.02)
    step10 = math.sqrt(0.16 + 0.16 + 25.0)
    assert s["movement"]["path_length"] == pytest.approx(step0 + step10)
    assert s["largest_moves"] == [
        {"step": 10, "epoch": 1, "l2": pytest.approx(step10)},
        {"step": 0, "epoch": 0, "l2": pytest.approx(step0)},
    ]
    assert s["skipped"] == [5] and s["clipped"] == [10] and s["clipnorm"] is None
    assert s["bound_hits"] == [{"step": 10, "epoch": 1, "elements": ["w/ce"]}]
    assert s["at_bound"] == ["w/ce"]
    assert len(s["warnings"]) == 3  # skipped, bound hit, a missing meta loss
    json.dumps(s)  # JSON-able


def test_summary_of_a_log_without_updates(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text(json.dumps({"event": "train_begin", "step": 0}) + "\n")
    s = callbacks.summarize_audit_log(callbacks.read_audit_log(str(path)))
    assert s["updates"] == 0 and s["warnings"] == ["No meta-updates recorded."]


def test_summary_warns_when_steps_go_backwards(tmp_path):
    records = callbacks.read_audit_log(_hand_made_log(tmp_path / "log.jsonl"))
    updates = [r for r in records if r["event"] == "meta_update"]
    s = callbacks.summarize_audit_log(records + updates[:1])
    assert any("goes backwards" in w for w in s["warnings"])


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"event": "train_begin"}\n{"event": "meta_update", "st', "line 2: not valid JSON"),
        ('{"event": "train_begin"}\n\n[1, 2]\n', "line 3: expected a JSON object"),
        ('{"step": 1}\n', "line 1: expected a JSON object with an 'event'"),
        (
            '{"event": "meta_update", "step": 0, "epoch": 0, "phi_before": {}}\n',
            r"line 1: a 'meta_update' record lacks \['phi_after'\]",
        ),
    ],
)
def test_corrupt_logs_name_the_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(callbacks.AuditLogError, match=message):
        callbacks.read_audit_log(str(path))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(callbacks.AuditLogError, match="not found"):
        callbacks.read_audit_log(str(tmp_path / "nope.jsonl"))
    with pytest.raises(callbacks.AuditLogError, match="directory"):
        callbacks.read_audit_log(str(tmp_path))


def test_invalid_path_argument():
    with pytest.raises(ValueError, match="Invalid value for argument `path`"):
        callbacks.LossAuditLog(None)


def test_bound_contacts_distinguishes_hits_from_resting_on_a_bound():
    before = {"w": np.array([0.0, 0.5, 1.0])}
    after = {"w": np.array([0.0, 0.0, 0.7])}
    hit, at_bound = monitor.bound_contacts(before, after, {"w": (0.0, 1.0)}, {"w": ["a", "b", "c"]})
    assert hit == ["w/b"]
    assert at_bound == ["w/a", "w/b"]
