"""`tf-metaloss audit FILE`: summarise a `LossAuditLog` file.

Example:

```shell
tf-metaloss audit runs/exp1/audit.jsonl
tf-metaloss audit runs/exp1/audit.jsonl --json
```
"""

import json
import sys

from tf_metaloss.callbacks import audit_reader as audit_lib
from tf_metaloss.commands import SUMMARIES
from tf_metaloss.commands import arguments

NAME = "audit"


def register(subparsers):
    """Adds the `audit` subcommand to an argparse subparsers object."""
    parser = subparsers.add_parser(
        NAME,
        help=SUMMARIES[NAME],
        description=(
            "Summarise a loss audit log written by tml.callbacks.LossAuditLog: "
            "how many meta-updates, how far the loss parameters moved (L2 and "
            "per parameter, first -> last), when they moved most, and warnings "
            "for skipped updates and parameter bounds that were hit. Exits 1 "
            "for a missing or corrupt file."
        ),
    )
    parser.add_argument("file", help="the audit log (.jsonl)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--top",
        type=arguments.positive_int,
        default=3,
        help="how many of the largest moves to list (default 3)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args):
    """Prints the summary of `args.file`; returns the exit code."""
    try:
        records = audit_lib.read_audit_log(args.file)
    except (audit_lib.AuditLogError, OSError) as error:
        print(f"tf-metaloss {NAME}: error: {error}", file=sys.stderr)
        return 1
    summary = audit_lib.summarize_audit_log(records, top=args.top)
    summary["file"] = args.file
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_summary(summary))
    return 0


def _g(value):
    return "n/a" if value is None else f"{value:.6g}"


def format_summary(summary):
    """The human-readable summary text (epochs counted from 1, as Keras prints)."""
    lines = [f"Audit log: {summary.get('file', '')}"]
    lines.append(f"  fits: {summary['sessions']}   meta-updates: {summary['updates']}")
    if not summary["updates"]:
        lines += ["Warnings:"] + [f"  - {w}" for w in summary["warnings"]]
        return "\n".join(lines)
    (s0, s1), (e0, e1) = summary["steps"], summary["epochs"]
    lines.append(f"  steps {s0} .. {s1}, epochs {e0 + 1} .. {e1 + 1}")
    if "meta_objective" in summary:
        m = summary["meta_objective"]
        lines.append(
            f"  meta objective: first {_g(m['first'])}, last {_g(m['last'])}, "
            f"min {_g(m['min'])} (step {m['min_step']})"
        )
    if "meta_grad_norm" in summary:
        g = summary["meta_grad_norm"]
        if summary.get("clipnorm") is None and not summary["clipped"]:
            clipping = "no clipping (meta_global_clipnorm=None)"
        else:
            clipping = (
                f"clipped in {len(summary['clipped'])} of {summary['updates']} "
                f"updates (meta_global_clipnorm={summary.get('clipnorm')})"
            )
        lines.append(
            f"  meta-gradient norm: mean {_g(g['mean'])}, max {_g(g['max'])} "
            f"(step {g['max_step']}); {clipping}"
        )
    movement = summary["movement"]
    lines.append(
        f"  phi moved: L2 {_g(movement['l2'])} first -> last "
        f"(path length {_g(movement['path_length'])})"
    )
    for name, p in movement["parameters"].items():
        if "elements" in p:
            width = max(len(e["label"]) for e in p["elements"])
            for e in p["elements"]:
                lines.append(f"    {e['label']:<{width}}  {e['first']:+.6f} -> {e['last']:+.6f}")
        else:
            lines.append(
                f"    {name} ({p['size']} values): norm {_g(p['norm_first'])} -> "
                f"{_g(p['norm_last'])}, L2 move {_g(p['l2'])}"
            )
    if summary["largest_moves"]:
        moves = "; ".join(
            f"step {m['step']} (epoch {m['epoch'] + 1}): {_g(m['l2'])}"
            for m in summary["largest_moves"]
        )
        lines.append(f"  largest moves: {moves}")
    if summary["at_bound"]:
        lines.append(f"  at a bound after the last update: {', '.join(summary['at_bound'])}")
    if summary["warnings"]:
        lines.append("Warnings:")
        lines += [f"  - {w}" for w in summary["warnings"]]
    else:
        lines.append("No warnings.")
    return "\n".join(lines)
