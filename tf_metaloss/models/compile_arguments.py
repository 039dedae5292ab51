"""The checks and resolution of `MetaModel.compile`'s arguments.

Pure functions of the arguments (and of the model's compute dtype and
optimizer): each returns the resolved value or raises an error that names
the argument, what was expected and what was received.
"""

import warnings

import keras

from tf_metaloss.losses.base import LearnableLoss
from tf_metaloss.losses.fixed import FixedLoss
from tf_metaloss.meta import estimators

_DEPRECATED_COMPILE_ARGUMENTS = {
    "meta_loss": "meta_objective",
    "meta_clipnorm": "meta_global_clipnorm",
}


def renamed_arguments(kwargs, meta_objective, meta_global_clipnorm):
    """Takes the deprecated names out of `kwargs`.

    Returns `(meta_objective, meta_global_clipnorm)`, from their deprecated
    names `meta_loss` and `meta_clipnorm` if given (with a warning).
    """
    given = {"meta_objective": meta_objective, "meta_global_clipnorm": meta_global_clipnorm}
    for old, new in _DEPRECATED_COMPILE_ARGUMENTS.items():
        if old not in kwargs:
            continue
        if given[new] is not None:
            raise ValueError(
                f"Arguments `{new}` and its deprecated name `{old}` were both "
                f"given. Received: {old}={kwargs[old]!r}. Pass only `{new}`."
            )
        warnings.warn(
            f"`MetaModel.compile({old}=...)` is deprecated; use `{new}=...`.",
            DeprecationWarning,
            stacklevel=3,
        )
        given[new] = kwargs.pop(old)
    return given["meta_objective"], given["meta_global_clipnorm"]


def resolve_estimator(meta_method, unroll_steps):
    """The estimator `compile(meta_method=..., unroll_steps=...)` asks for."""
    if isinstance(meta_method, str) and meta_method in estimators.UNROLLED_ALIASES:
        return estimators.Unrolled(steps=unroll_steps, first_order=meta_method == "first_order")
    estimator = estimators.get(meta_method)
    if unroll_steps != 1:
        raise ValueError(
            "Arguments `unroll_steps` and `meta_method` conflict: "
            f"unroll_steps={unroll_steps} applies to the named methods "
            f"{list(estimators.UNROLLED_ALIASES)} only. Received: "
            f"meta_method={meta_method!r}. Give the estimator its own "
            "settings, e.g. `Unrolled(steps=2)`."
        )
    return estimator


def resolve_loss(loss):
    """`compile(loss=...)` as a `LearnableLoss` (instance, registered name or config)."""
    given = loss
    if isinstance(loss, (str, dict)):
        try:
            loss = keras.losses.get(loss)
        except ValueError:
            loss = keras.saving.get_registered_object(loss) if isinstance(loss, str) else None
            loss = loss() if isinstance(loss, type) else loss
    if not isinstance(loss, LearnableLoss):
        raise ValueError(
            "Invalid value for argument `loss`. `MetaModel` needs a learnable "
            "loss from `tf_metaloss.losses` (e.g. `tml.MetaLoss()`, "
            f"`tml.BlendLoss()`). Received: loss={given!r}. To train on a "
            "fixed loss, use a plain `keras.Model`, or pass a learnable loss "
            "with meta_every=0."
        )
    return loss


def check_from_logits(loss, expected):
    """A wrapped keras-hub classifier says what it outputs (`expected`); the loss must agree."""
    if expected is None or loss.regression or loss.from_logits == expected:
        return
    outputs = "logits" if expected else "probabilities (activation='softmax')"
    raise ValueError(
        "Invalid value for argument `loss`. The wrapped classifier outputs "
        f"{outputs}: expected a learnable loss with from_logits={expected}. "
        f"Received: loss={type(loss).__name__}(from_logits={loss.from_logits}). "
        f"Pass e.g. `tml.MetaLoss(from_logits={expected})`."
    )


def resolve_meta_objective(meta_objective, loss):
    """`compile(meta_objective=...)` as a Keras loss (`None`: the default for `loss`)."""
    if meta_objective is None:
        base = "mse" if loss.regression else "mae_classification"
        return FixedLoss(base, from_logits=loss.from_logits, name="meta_objective")
    if isinstance(meta_objective, str):
        try:
            resolved = keras.losses.get(meta_objective)
        except ValueError:
            resolved = None
        if resolved is not None and not isinstance(resolved, keras.losses.Loss):
            # Keras resolves snake_case names to functions; use the class.
            resolved = _keras_loss_class_of(resolved)
        if resolved is None:
            raise ValueError(
                "Invalid value for argument `meta_objective`. Expected a Keras "
                "loss name such as 'sparse_categorical_crossentropy' or "
                f"'mse'. Received: meta_objective={meta_objective!r}"
            )
        config = resolved.get_config()
        if "from_logits" in config:
            config["from_logits"] = loss.from_logits
            resolved = resolved.__class__.from_config(config)
        return resolved
    if isinstance(meta_objective, dict):
        meta_objective = keras.losses.get(meta_objective)
    if isinstance(meta_objective, keras.losses.Loss):
        return meta_objective
    raise ValueError(
        "Invalid value for argument `meta_objective`. Expected a Keras loss "
        "instance, a Keras loss name (e.g. 'sparse_categorical_crossentropy') "
        f"or None. Received: meta_objective={meta_objective!r}"
    )


def check_precision(compute_dtype, optimizer, loss, estimator):
    """float32, float64 or mixed bfloat16 models; phi and its gradient in float32+."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer) or (
        compute_dtype not in ("float32", "float64", "bfloat16")
    ):
        raise ValueError(
            "`MetaModel` supports models computing in float32, float64 or "
            "bfloat16 (the 'mixed_bfloat16' dtype policy). float16 needs loss "
            "scaling, which the second-order meta step does not support. "
            f"Received: a model computing in {compute_dtype} (optimizer "
            f"{type(optimizer).__name__}). Build the model under the "
            "'mixed_bfloat16' (or 'float32') dtype policy."
        )
    if loss.dtype not in ("float32", "float64"):
        raise ValueError(
            "Invalid value for argument `loss`. Expected a learnable loss computing "
            "in float32 or float64 (phi and the meta-gradient stay in full "
            f"precision under mixed precision). Received: a loss with dtype={loss.dtype}. "
            "Create the loss without `dtype`, or with dtype='float32'."
        )
    if compute_dtype == "bfloat16" and estimator.needs_full_precision:
        raise ValueError(
            "Invalid value for argument `meta_method`. Expected an estimator "
            "that is accurate for a model computing in bfloat16: "
            f"{type(estimator).__name__} perturbs the weights or carries tangents "
            "that bfloat16 rounds away. Received: "
            f"meta_method={estimator!r} with a model computing in bfloat16. Use "
            "'second_order', 'neumann' or 'conjugate_gradient', or build the model "
            "under the 'float32' dtype policy."
        )


def _keras_loss_class_of(function):
    """The built-in Keras loss class wrapping `function` (e.g. `kld`), or None."""
    for name in dir(keras.losses):
        candidate = getattr(keras.losses, name)
        if (
            isinstance(candidate, type)
            and issubclass(candidate, keras.losses.Loss)
            and candidate is not keras.losses.Loss
        ):
            try:
                instance = candidate()
            except Exception:  # Classes that need arguments are not aliases.
                continue
            if getattr(instance, "fn", None) is function:
                return instance
    return None
