"""The fitness of one candidate loss: a screen, constant tuning, a proxy run.

`evaluate_candidate(tree, task)` is what a search runs for every new
candidate, in a worker process or a Ray task: it takes only plain data (a
nested list and a `ProxyTask`) and returns a JSON-able record.

1. Screen: the expression must parse, fit the task, give finite values and
   finite, non-zero gradients with respect to the logits on random batches
   (ordinary and extreme logits). A candidate that fails is rejected with the
   reason, before any training.
2. Constant tuning (`tune_epochs > 0` and the tree has constants): a short
   `MetaModel` run on the noisy training data with `SymbolicLoss(tree)`, the
   constants meta-learned online against the clean meta set.
3. Proxy run: a fresh network from the same initial weights trained for
   `epochs` on the noisy training data with the tuned formula frozen
   (`FormulaLoss`); the fitness is the objective (lower is better) on the clean
   holdout, which neither the training nor the tuning saw.
"""

import dataclasses
import math
import time

import keras
import numpy as np

from tf_metaloss import backend
from tf_metaloss import validation
from tf_metaloss.evaluation import models
from tf_metaloss.losses import expressions
from tf_metaloss.losses import functional
from tf_metaloss.losses.symbolic import FormulaLoss
from tf_metaloss.losses.symbolic import SymbolicLoss

OBJECTIVES = ("mae_classification", "crossentropy", "error")


@dataclasses.dataclass
class ProxyTask:
    """The data and the training recipe every candidate of a search gets.

    Attributes:
        x_train, y_train: the (noisy) training data of the proxy run.
        x_meta, y_meta: the clean meta set the constants are tuned on.
        x_holdout, y_holdout: the clean holdout the fitness is measured on
            (a part of the training split, never the validation split).
        num_classes: number of classes.
        model: a network of `tml.evaluation.models.build_model`.
        hidden_units: its width.
        epochs: epochs of the proxy run.
        tune_epochs: epochs of the constant-tuning run (0: no tuning).
        batch_size: batch size of both runs.
        learning_rate, momentum: SGD of the network.
        meta_learning_rate: Adam of the constants.
        objective: the fitness on the holdout, lower is better:
            `"mae_classification"` (the default meta objective of
            `MetaModel`, `2 (1 - p_true)` averaged), `"crossentropy"` or
            `"error"` (1 - accuracy).
        seed: seeds the networks' initial weights and the batches.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_meta: np.ndarray
    y_meta: np.ndarray
    x_holdout: np.ndarray
    y_holdout: np.ndarray
    num_classes: int
    model: str = "auto"
    hidden_units: int = 64
    epochs: int = 5
    tune_epochs: int = 2
    batch_size: int = 64
    learning_rate: float = 0.05
    momentum: float = 0.9
    meta_learning_rate: float = 0.01
    objective: str = "mae_classification"
    seed: int = 0

    def __post_init__(self):
        validation.check_positive_int("epochs", self.epochs)
        validation.check_int("tune_epochs", self.tune_epochs, minimum=0)
        validation.check_positive_int("batch_size", self.batch_size)
        validation.check_positive_int("hidden_units", self.hidden_units)
        validation.check_choice("objective", self.objective, OBJECTIVES)
        for name in ("train", "meta", "holdout"):
            x, y = getattr(self, f"x_{name}"), getattr(self, f"y_{name}")
            if len(x) == 0 or len(x) != len(y):
                raise ValueError(
                    f"Invalid value for argument `x_{name}`. Expected a non-empty array "
                    f"with one label per sample. Received: {len(x)} samples and "
                    f"{len(y)} labels."
                )

    def summary(self):
        """The recipe without the arrays (for logs)."""
        sizes = {f"n_{n}": len(getattr(self, f"x_{n}")) for n in ("train", "meta", "holdout")}
        recipe = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if not f.name.startswith(("x_", "y_"))
        }
        return {**sizes, **recipe}


def _rejected(record, reason, start):
    record.update(status="rejected", reason=reason, seconds=round(time.time() - start, 3))
    return record


def screen(expression, num_classes, seed=0):
    """Why a loss cannot train a classifier, or `None` if it passes.

    Checks finite values and gradients, and a gradient that is not zero
    everywhere, on random batches of ordinary and extreme logits.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, 32)
    for scale in (1.0, 30.0):
        logits = keras.ops.convert_to_tensor(
            (rng.normal(size=(32, num_classes)) * scale).astype("float32")
        )

        def loss(values, labels=labels):
            return keras.ops.mean(expression.evaluate(labels, values[0], from_logits=True))

        value, (gradient,) = backend.value_and_grad(loss, wrt_weights=False)([logits])
        gradient = np.asarray(gradient)
        if not math.isfinite(float(value)):
            return f"non-finite loss on random logits (scale {scale:g})"
        if not np.isfinite(gradient).all():
            return f"non-finite gradient on random logits (scale {scale:g})"
        if scale == 1.0 and np.abs(gradient).max() < 1e-8:
            return "no gradient with respect to the predictions: it cannot train a model"
    return None


def _network(task):
    keras.utils.set_random_seed(task.seed)
    return models.build_model(
        task.model, task.x_train.shape[1:], task.num_classes, hidden_units=task.hidden_units
    )


def _optimizer(task):
    return keras.optimizers.SGD(task.learning_rate, momentum=task.momentum)


def tune_constants(expression, task):
    """The constants after a `MetaModel` run of `tune_epochs` (a list of floats)."""
    from tf_metaloss.models import MetaModel

    network = _network(task)
    model = MetaModel(network)
    loss = SymbolicLoss(expression.to_list(), from_logits=True)
    model.compile(
        optimizer=_optimizer(task),
        loss=loss,
        meta_optimizer=keras.optimizers.Adam(task.meta_learning_rate),
        meta_global_clipnorm=1.0,
    )
    model.fit(
        task.x_train,
        task.y_train,
        meta_data=(task.x_meta, task.y_meta),
        epochs=task.tune_epochs,
        batch_size=task.batch_size,
        verbose=0,
    )
    return loss.current_constants()


def holdout_scores(model, task):
    """`(objective, accuracy)` of a trained network on the holdout."""
    logits = model.predict(task.x_holdout, batch_size=512, verbose=0)
    accuracy = float(np.mean(np.argmax(logits, -1) == task.y_holdout))
    if task.objective == "error":
        return 1.0 - accuracy, accuracy
    values = functional.get(task.objective)(task.y_holdout, logits, from_logits=True)
    return float(np.mean(keras.ops.convert_to_numpy(values))), accuracy


def evaluate_candidate(tree, task):
    """Screens, tunes and scores one candidate; returns a JSON-able record.

    An error while a candidate trains rejects it (the reason names the
    error) instead of stopping the search.

    The record holds `status` (`"ok"` or `"rejected"`), `reason` (why it was
    rejected), `fitness` (the holdout objective, lower is better),
    `accuracy` (holdout accuracy), `tuned` (the tree with the tuned constants),
    `formula` (its readable formula) and `seconds`.

    Example:

    >>> from tf_metaloss.search import fitness
    >>> data = tml.evaluation.load_digits()
    >>> task = fitness.ProxyTask(data.x_train[:200], data.y_train[:200],
    ...     data.x_train[200:250], data.y_train[200:250], data.x_train[250:300],
    ...     data.y_train[250:300], num_classes=10, hidden_units=8, epochs=1, tune_epochs=0)
    >>> fitness.evaluate_candidate(["neg", "log_p_true"], task)["status"]
    'ok'
    >>> fitness.evaluate_candidate(["pow", "p_true", -100.0], task)["reason"]
    'non-finite loss on random logits (scale 1)'
    """
    start = time.time()
    try:
        return _evaluate(tree, task, start)
    except Exception as error:  # noqa: BLE001 -- one bad candidate must not end a search.
        record = _empty_record(tree)
        message = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        return _rejected(record, f"error: {type(error).__name__}: {message}", start)


def _empty_record(tree):
    return {
        "expression": tree,
        "status": "ok",
        "reason": None,
        "fitness": None,
        "accuracy": None,
        "tuned": None,
        "formula": None,
        "seconds": None,
    }


def _evaluate(tree, task, start):
    record = _empty_record(tree)
    try:
        expression = expressions.Expression(tree)
    except ValueError as error:
        return _rejected(record, f"invalid expression: {error}", start)
    if expression.regression:
        return _rejected(record, "a regression expression for a classification task", start)
    reason = screen(expression, task.num_classes, task.seed)
    if reason:
        return _rejected(record, reason, start)
    constants = expression.constants
    if task.tune_epochs and constants:
        constants = tune_constants(expression, task)
        if not all(math.isfinite(c) for c in constants):
            return _rejected(record, "non-finite constants after tuning", start)
    tuned = expression.with_constants(constants)
    record.update(tuned=tuned.to_list(), formula=tuned.formula())
    reason = screen(tuned, task.num_classes, task.seed)
    if reason:
        return _rejected(record, f"after tuning: {reason}", start)
    model = _network(task)
    model.compile(optimizer=_optimizer(task), loss=FormulaLoss(tuned.to_list(), from_logits=True))
    history = model.fit(
        task.x_train, task.y_train, epochs=task.epochs, batch_size=task.batch_size, verbose=0
    )
    if not all(math.isfinite(v) for v in history.history["loss"]):
        return _rejected(record, "non-finite training loss in the proxy run", start)
    objective, accuracy = holdout_scores(model, task)
    if not math.isfinite(objective):
        return _rejected(record, "non-finite holdout objective", start)
    record.update(fitness=objective, accuracy=accuracy, seconds=round(time.time() - start, 3))
    return record
