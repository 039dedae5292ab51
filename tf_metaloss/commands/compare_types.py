"""The argparse types of `tf-metaloss compare`'s options.

Each checks one option's text: a bad value is a usage error (exit 2) naming
the option and what it takes, as in every subcommand.
"""

import argparse
import json
import os

from tf_metaloss.commands import arguments
from tf_metaloss.evaluation import config as config_lib
from tf_metaloss.evaluation import datasets
from tf_metaloss.evaluation import imbalance
from tf_metaloss.evaluation import methods as methods_lib
from tf_metaloss.meta import estimators


def _dataset(text):
    """`--dataset`: a form `tml.evaluation.load_dataset` takes."""
    try:
        return datasets.check_spec(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {datasets.SPEC_FORMS}, got {text!r}") from None


def _methods(text):
    """`--methods`: comma-separated method names or sets."""
    try:
        return methods_lib.resolve_methods(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated names from {list(methods_lib.METHODS)} or sets "
            f"{list(methods_lib.METHOD_SETS)}, got {text!r}"
        ) from None


def _schedule_final(text):
    """`--schedule-final`: `name=weight[,name=weight...]`."""
    try:
        return parse_weights(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "expected 'name=weight[,name=weight...]', e.g. "
            f"'generalized_crossentropy=1', got {text!r}"
        ) from None


def _formula(text):
    """`--formula`: a loss formula, or the JSON log of a `tf-metaloss search`
    (its best formula, constants tuned)."""
    if text.strip().endswith(".json") and os.path.isfile(text):
        from tf_metaloss.search import search as search_log  # only for a log

        try:
            best = search_log.best_candidates(search_log.load_log(text), 1)
        except (ValueError, KeyError, OSError) as error:
            raise argparse.ArgumentTypeError(
                f"expected a search log of `tf-metaloss search`, got {text!r}: {error}"
            ) from None
        if not best:
            raise argparse.ArgumentTypeError(f"the search log {text!r} has no scored formula")
        text = json.dumps(best[0]["tuned"])
    try:
        return config_lib.check_formula(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"expected {error.expected} (or a search_log.json), got {text!r}: {error.fix}"
        ) from None


# The argparse type of each option that takes a value to check: a bad value is
# a usage error (exit 2) naming the option and what it takes, as in every
# subcommand.
TYPES = {
    "dataset": _dataset,
    "methods": _methods,
    "schedule_final": _schedule_final,
    "formula": _formula,
    "noise": arguments.fraction(low_closed=True, high_closed=True),
    "holdout_fraction": arguments.fraction(),
    "meta_fraction": arguments.fraction(),
    "imbalance": arguments.argument_type(
        float, imbalance.check_ratio, "a number >= 1 (the imbalance ratio)"
    ),
    "meta_per_class": arguments.positive_int,
    "seeds": arguments.int_at_least(0),
    "epochs": arguments.positive_int,
    "batch_size": arguments.positive_int,
    "learning_rate": arguments.positive_number,
    "momentum": arguments.non_negative_number,
    "hidden_units": arguments.positive_int,
    "vocabulary_size": arguments.positive_int,
    "sequence_length": arguments.positive_int,
    "finetune_epochs": arguments.positive_int,
    "finetune_learning_rate": arguments.positive_number,
    "meta_learning_rate": arguments.positive_number,
    "meta_every": arguments.int_at_least(1),
    "meta_batch_size": arguments.positive_int,
    "meta_clipnorm": arguments.positive_number,
    "regularization": arguments.non_negative_number,
    "unroll_steps": arguments.positive_int,
    "lookahead_learning_rate": arguments.positive_number,
}


def train_subset(text):
    """`--train-subset`: a positive integer, or `all` (no subset)."""
    if text.strip().lower() == "all":
        return None
    return arguments.positive_int(text)


def meta_method(text):
    """`--meta-method`: a name of `tml.meta.estimators.ALIASES`, or an
    estimator's config as JSON (`tml.meta.estimators.serialize`)."""
    text = text.strip()
    try:
        value = json.loads(text) if text.startswith("{") else text
        return config_lib.check_meta_method(value)
    except ValueError as error:  # json.JSONDecodeError is a ValueError.
        reason = f": {error}" if text.startswith("{") else ""
        raise argparse.ArgumentTypeError(
            f"expected one of {list(estimators.ALIASES)} or an estimator's config as JSON "
            f"(tml.meta.estimators.serialize), e.g. '{META_METHOD_EXAMPLE}', got {text!r}"
            f"{reason}"
        ) from None


META_METHOD_EXAMPLE = '{"class_name": "tf_metaloss>Neumann", "config": {"terms": 2}}'


def parse_weights(text):
    """`"a=1,b=0.5"` -> `{"a": 1.0, "b": 0.5}` with a clear error.

    Example:

    >>> from tf_metaloss.commands.compare_types import parse_weights
    >>> parse_weights("generalized_crossentropy=1")
    {'generalized_crossentropy': 1.0}
    """
    weights = {}
    for item in (p.strip() for p in str(text).split(",")):
        name, sep, value = item.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ValueError(
                "Invalid value for argument `--schedule-final`. Expected "
                "'name=weight[,name=weight...]', e.g. "
                f"'generalized_crossentropy=1'. Received: {text!r}"
            )
    return weights
