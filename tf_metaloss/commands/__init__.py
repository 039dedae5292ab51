"""Subcommands of the `tf-metaloss` command line (one module each).

`SUMMARIES` holds each subcommand's one-line help, so `tf-metaloss --help` can
list them without importing their modules (and TensorFlow).
"""

SUMMARIES = {
    "demo": "cross-entropy vs a meta-learned loss on noisy digits",
    "compare": "compare fixed and meta-learned losses (tables, JSON, plots)",
    "audit": "summarise a loss audit log (tml.callbacks.LossAuditLog)",
    "landscape": "loss landscapes (and sharpness) of one or two saved models",
    "plot": "plot the loss parameters over training from an audit log",
    "search": "search for a loss formula (genetic programming, proxy training runs)",
}
