"""`tf-metaloss plot LOGFILE`: the loss parameters over training, as a PNG.

Example:

```shell
tf-metaloss plot runs/exp1/audit.jsonl --out phi.png
```
"""

import os
import sys

import numpy as np

from tf_metaloss import plotting
from tf_metaloss.callbacks import audit_reader as audit_lib
from tf_metaloss.callbacks import monitor
from tf_metaloss.commands import SUMMARIES

NAME = "plot"


def register(subparsers):
    """Adds the `plot` subcommand to an argparse subparsers object."""
    parser = subparsers.add_parser(
        NAME,
        help=SUMMARIES[NAME],
        description=(
            "Plot phi after every meta-update recorded in a loss audit log "
            "(tml.callbacks.LossAuditLog), with the meta objective below it, to a "
            "PNG. Parameters with more than 8 values are drawn as their norm."
        ),
    )
    parser.add_argument("logfile", help="the audit log (.jsonl)")
    parser.add_argument("--out", help="output PNG (default: LOGFILE with .png)")
    parser.add_argument(
        "--no-meta-objective",
        "--no-meta-loss",
        dest="no_meta_objective",
        action="store_true",
        help="leave out the meta-objective panel",
    )
    parser.set_defaults(func=run)
    return parser


def trajectories(records):
    """`(steps, series, meta_objective)` of the meta-updates in audit records."""
    updates = [r for r in records if r.get("event") == "meta_update"]
    labels = {}
    for r in records:
        if r.get("event") == "train_begin":
            for name, info in r.get("parameters", {}).items():
                if info.get("labels"):
                    labels[name] = info["labels"]
    steps = np.array([r["step"] for r in updates])
    series = {}
    for name in updates[0]["phi_after"] if updates else []:
        values = np.array(
            [np.asarray(r["phi_after"][name], dtype=np.float64).reshape(-1) for r in updates]
        )
        if values.shape[1] <= monitor.SMALL_PARAMETER:
            for i in range(values.shape[1]):
                series[monitor.element_label(labels, name, i)] = values[:, i]
        else:
            series[f"|{name}|"] = np.linalg.norm(values, axis=1)
    objective = [audit_lib.meta_objective_of(r) for r in updates]
    meta_objective = np.array([np.nan if v is None else v for v in objective])
    return steps, series, meta_objective


def run(args):
    """Writes the PNG; returns the exit code."""
    plotting.require_matplotlib(f"tf-metaloss {NAME}")
    try:
        records = audit_lib.read_audit_log(args.logfile)
    except (audit_lib.AuditLogError, OSError) as error:
        print(f"tf-metaloss {NAME}: error: {error}", file=sys.stderr)
        return 1
    steps, series, meta_objective = trajectories(records)
    if not len(steps):
        print(
            f"tf-metaloss {NAME}: error: {args.logfile} records no meta-updates.", file=sys.stderr
        )
        return 1
    out = args.out or os.path.splitext(args.logfile)[0] + ".png"
    fig = plotting.trajectory_figure(
        steps,
        series,
        None if args.no_meta_objective else meta_objective,
        title=f"phi over training ({len(steps)} meta-updates)",
    )
    try:
        plotting.save_figure(fig, out)
    except OSError as error:
        print(f"tf-metaloss {NAME}: error: cannot write {out}: {error}", file=sys.stderr)
        return 1
    print(f"Wrote {out}")
    return 0
