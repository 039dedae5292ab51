"""Reading and summarising an audit log written by `LossAuditLog`.

`tf-metaloss audit FILE` prints the summary; see `LossAuditLog` for an example.
"""

import json
import math
import os

import numpy as np

from tf_metaloss.callbacks.monitor import SMALL_PARAMETER
from tf_metaloss.callbacks.monitor import element_label

__all__ = ["AuditLogError", "read_audit_log", "summarize_audit_log"]


class AuditLogError(ValueError):
    """A missing, unreadable or corrupt audit log (the message says where)."""


_REQUIRED = ("step", "epoch", "phi_before", "phi_after")


def read_audit_log(path):
    """Reads an audit log; returns its records (dicts), in file order.

    Blank lines are ignored. Raises `AuditLogError` naming the file and line
    number of the first line that is not a JSON object with an `"event"` field,
    or of a `"meta_update"` line missing one of `step`, `epoch`, `phi_before`,
    `phi_after`.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise AuditLogError(f"Audit log not found: {path}")
    if os.path.isdir(path):
        raise AuditLogError(f"Expected an audit log file, got a directory: {path}")
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise AuditLogError(
                    f"{path}, line {number}: not valid JSON ({error.msg}). "
                    "The file may be truncated or not an audit log."
                ) from None
            if not isinstance(record, dict) or "event" not in record:
                raise AuditLogError(
                    f"{path}, line {number}: expected a JSON object with an "
                    f"'event' field. Received: {line.strip()[:80]}"
                )
            if record["event"] == "meta_update":
                missing = [k for k in _REQUIRED if k not in record]
                if missing:
                    raise AuditLogError(
                        f"{path}, line {number}: a 'meta_update' record lacks {missing}."
                    )
                record["_line"] = number
            records.append(record)
    return records


def meta_objective_of(record):
    """A `meta_update` record's meta objective (`meta_loss` in 0.1 logs)."""
    return record.get("meta_objective", record.get("meta_loss"))


def _flat(phi):
    return np.concatenate([np.asarray(v, dtype=np.float64).reshape(-1) for v in phi.values()])


def summarize_audit_log(records, top=3):
    """Summarises audit records (from `read_audit_log`) as a JSON-able dict.

    Keys: `sessions` (fits started), `updates`, `steps` / `epochs`
    (`[first, last]`), `meta_objective` (first, last, min and its step),
    `meta_grad_norm` (mean, max and its step), `movement` (`l2`: the L2
    distance between phi before the first and after the last update;
    `path_length`: the sum of every update's L2 move; `parameters`: per
    parameter the L2 move and, for small ones, every element first -> last),
    `largest_moves` (the `top` updates that moved phi most: step, epoch, l2),
    `clipnorm` (of the last update), `skipped` / `clipped` / `bound_hits`
    (steps), `at_bound` (after the last update) and `warnings`
    (human-readable strings).
    """
    updates = [r for r in records if r.get("event") == "meta_update"]
    begins = [r for r in records if r.get("event") == "train_begin"]
    labels = {}
    for begin in begins:
        for name, info in begin.get("parameters", {}).items():
            if info.get("labels"):
                labels[name] = info["labels"]
    summary = {
        "sessions": len(begins),
        "updates": len(updates),
        "warnings": [],
    }
    if not updates:
        summary["warnings"].append("No meta-updates recorded.")
        return summary

    summary["steps"] = [updates[0]["step"], updates[-1]["step"]]
    summary["epochs"] = [updates[0]["epoch"], updates[-1]["epoch"]]

    losses = [(r["step"], meta_objective_of(r)) for r in updates]
    finite = [(s, v) for s, v in losses if v is not None]
    if finite:
        best = min(finite, key=lambda item: item[1])
        summary["meta_objective"] = {
            "first": finite[0][1],
            "last": finite[-1][1],
            "min": best[1],
            "min_step": best[0],
        }
    norms = [(r["step"], r.get("meta_grad_norm")) for r in updates]
    norms = [(s, v) for s, v in norms if v is not None]
    if norms:
        peak = max(norms, key=lambda item: item[1])
        summary["meta_grad_norm"] = {
            "mean": float(np.mean([v for _, v in norms])),
            "max": peak[1],
            "max_step": peak[0],
        }

    first, last = updates[0]["phi_before"], updates[-1]["phi_after"]
    parameters = {}
    for name in first:
        if name not in last:
            continue
        a = np.asarray(first[name], dtype=np.float64).reshape(-1)
        b = np.asarray(last[name], dtype=np.float64).reshape(-1)
        if a.shape != b.shape:
            continue
        entry = {"l2": float(np.linalg.norm(b - a)), "size": int(a.size)}
        if a.size <= SMALL_PARAMETER:
            entry["elements"] = [
                {"label": element_label(labels, name, i), "first": float(a[i]), "last": float(b[i])}
                for i in range(a.size)
            ]
        else:
            entry["norm_first"] = float(np.linalg.norm(a))
            entry["norm_last"] = float(np.linalg.norm(b))
        parameters[name] = entry
    moves = []
    for r in updates:
        try:
            move = float(np.linalg.norm(_flat(r["phi_after"]) - _flat(r["phi_before"])))
        except ValueError:
            move = float("nan")
        moves.append((move, r["step"], r["epoch"]))
    summary["movement"] = {
        "l2": float(np.sqrt(sum(p["l2"] ** 2 for p in parameters.values()))),
        "path_length": float(np.nansum([m for m, _, _ in moves])),
        "parameters": parameters,
    }
    ranked = sorted((m for m in moves if math.isfinite(m[0])), key=lambda m: -m[0])
    summary["largest_moves"] = [{"step": s, "epoch": e, "l2": m} for m, s, e in ranked[:top]]

    skipped = [r["step"] for r in updates if r.get("skipped")]
    clipped = [r["step"] for r in updates if r.get("clipped")]
    hits = [
        {"step": r["step"], "epoch": r["epoch"], "elements": r["bound_hit"]}
        for r in updates
        if r.get("bound_hit")
    ]
    summary["skipped"] = skipped
    summary["clipnorm"] = updates[-1].get("clipnorm")
    summary["clipped"] = clipped
    summary["bound_hits"] = hits
    summary["at_bound"] = list(updates[-1].get("at_bound", []))

    warnings = summary["warnings"]
    if skipped:
        warnings.append(
            f"{len(skipped)} of {len(updates)} meta-updates were skipped "
            f"(non-finite loss or meta-gradient), at steps {_steps_text(skipped)}."
        )
    if hits:
        elements = sorted({e for h in hits for e in h["elements"]})
        warnings.append(
            f"A parameter bound was hit in {len(hits)} update(s), at steps "
            f"{_steps_text([h['step'] for h in hits])}: {', '.join(elements)}."
        )
    backwards = [b["step"] for a, b in zip(updates, updates[1:]) if b["step"] <= a["step"]]
    if backwards:
        warnings.append(
            "The step count goes backwards at steps "
            f"{_steps_text(backwards)}: the file may hold several independent "
            "runs appended to each other."
        )
    if len(finite) < len(updates):
        warnings.append(
            f"{len(updates) - len(finite)} meta-update(s) have no finite meta objective."
        )
    return summary


def _steps_text(steps, limit=8):
    shown = ", ".join(str(s) for s in steps[:limit])
    return shown + (f" ... ({len(steps)} in all)" if len(steps) > limit else "")
