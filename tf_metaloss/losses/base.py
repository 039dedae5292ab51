"""The base class of learnable losses: a Keras `Loss` whose parameters learn."""

import keras
from keras import ops

from tf_metaloss.losses import functional


@keras.saving.register_keras_serializable(package="tf_metaloss")
class ClipConstraint(keras.constraints.Constraint):
    """Clips every element of a variable into `[low, high]` after each update.

    Example:

    >>> c = tml.losses.ClipConstraint(low=0.0, high=2.0)
    >>> keras.ops.convert_to_numpy(c(keras.ops.convert_to_tensor([-1.0, 1.0, 3.0]))).tolist()
    [0.0, 1.0, 2.0]
    """

    def __init__(self, low=None, high=None):
        self.low = low
        self.high = high

    def __call__(self, w):
        low = -float("inf") if self.low is None else self.low
        high = float("inf") if self.high is None else self.high
        return ops.clip(w, low, high)

    def get_config(self):
        return {"low": self.low, "high": self.high}


class LossParameters(keras.layers.Layer):
    """Tracks the loss parameters phi (and a frozen copy of their start values).

    Keeping phi in a `Layer` makes it visible to Keras saving, checkpoints and
    `tf.distribute` (variables created under `strategy.scope()` are mirrored).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.built = True


class LearnableLoss(keras.losses.Loss):
    """Base class of losses with trainable parameters phi.

    A subclass creates its parameters with `add_parameter` in `__init__` and
    implements `compute(parameters, y_true, y_pred)`, a pure function returning
    one loss value per sample from a dict of parameter tensors. `call` evaluates
    it at the current variables; `stateless_call` at given values, which is what
    meta-gradients differentiate.

    Args:
        from_logits: whether `y_pred` holds logits (classification only).
        regularization: strength of the penalty `sum((phi - phi_0)^2)` that the
            meta step adds to its objective to keep phi near its start.
            0 (default) disables it.
        bounds: optional `(low, high)`; every parameter is clipped into this
            range after each meta-update. `None` keeps each family's default.
        reduction, name, dtype: as in `keras.losses.Loss`.

    Example:

    >>> loss = tml.losses.BlendLoss(from_logits=True)
    >>> [v.name for v in loss.trainable_variables]
    ['blend_weights']
    """

    def __init__(
        self,
        from_logits=False,
        regularization=0.0,
        bounds=None,
        reduction="sum_over_batch_size",
        name=None,
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not isinstance(from_logits, bool):
            raise ValueError(
                "Invalid value for argument `from_logits`. Expected a bool. "
                f"Received: from_logits={from_logits!r}"
            )
        if not (isinstance(regularization, (int, float)) and regularization >= 0):
            raise ValueError(
                "Invalid value for argument `regularization`. Expected a "
                f"non-negative float. Received: regularization={regularization!r}"
            )
        if bounds is not None:
            if (
                not isinstance(bounds, (tuple, list))
                or len(bounds) != 2
                or not all(b is None or (isinstance(b, (int, float)) and b == b) for b in bounds)
                or (None not in bounds and bounds[0] > bounds[1])
            ):
                raise ValueError(
                    "Invalid value for argument `bounds`. Expected a pair "
                    "(low, high) with low <= high (either may be None). "
                    f"Received: bounds={bounds!r}"
                )
            bounds = tuple(bounds)
        self.from_logits = from_logits
        self.regularization = float(regularization)
        self.bounds = bounds
        self.loss_parameters = LossParameters(name=f"{self.name}_parameters", dtype=self.dtype)
        self._parameter_names = []
        self._initial_values = {}

    # -- parameters -------------------------------------------------------
    def add_parameter(self, name, shape, initializer, default_bounds=None):
        """Creates a trainable loss parameter and records its initial value."""
        bounds = self.bounds if self.bounds is not None else default_bounds
        constraint = ClipConstraint(*bounds) if bounds is not None else None
        variable = self.loss_parameters.add_weight(
            name=name,
            shape=shape,
            initializer=initializer,
            constraint=constraint,
            trainable=True,
            dtype=self.dtype,
        )
        if constraint is not None:
            variable.assign(constraint(variable))
        initial = self.loss_parameters.add_weight(
            name=f"{name}_initial",
            shape=shape,
            initializer="zeros",
            trainable=False,
            dtype=self.dtype,
        )
        initial.assign(variable)
        self._parameter_names.append(name)
        self._initial_values[name] = initial
        return variable

    @property
    def trainable_variables(self):
        """The loss parameters phi, in a fixed order."""
        return self.loss_parameters.trainable_variables

    @property
    def non_trainable_variables(self):
        return self.loss_parameters.non_trainable_variables

    @property
    def variables(self):
        return self.loss_parameters.variables

    @property
    def parameter_names(self):
        return list(self._parameter_names)

    def parameters(self, values=None):
        """Dict `name -> tensor` of phi (current values, or `values` given)."""
        if values is None:
            values = self.trainable_variables
        return dict(zip(self._parameter_names, values))

    def reset_parameters(self):
        """Sets phi back to its initial values."""
        for name, variable in zip(self._parameter_names, self.trainable_variables):
            variable.assign(self._initial_values[name])

    # -- state read from a reference run ----------------------------------
    #: The base loss (a name in `functional`) of a plain training run whose
    #: predictions on the meta data the family learns from (`MetaModel` runs
    #: it beside the model), or `None`.
    reference_objective = None

    def build_state(self, num_classes):
        """Creates state that depends on the model's number of outputs (none here)."""

    def reference_statistics(self, y_true, reference_y_pred):
        """Tensors to sum over the replicas from the reference's meta predictions."""
        return []

    def update_from_reference(self, statistics):
        """Updates the family's state from the summed `reference_statistics`."""

    def starting_copy(self):
        """A new loss of the same configuration with phi at its start values."""
        copy = type(self).from_config(self.get_config())
        num_classes = getattr(self, "num_classes", None)
        if num_classes:
            copy.build_state(num_classes)
        copy.reset_parameters()
        return copy

    # -- evaluation -------------------------------------------------------
    def call(self, y_true, y_pred):
        return self.compute(self.parameters(), y_true, y_pred)

    def stateless_call(self, parameter_values, y_true, y_pred, sample_weight=None):
        """The reduced loss, exactly as `__call__`, with phi = `parameter_values`.

        Tensors in, tensor out: the loss runs in a `keras.StatelessScope` that
        maps phi's variables to `parameter_values`, so nothing is read from or
        written to the variables and the result can be differentiated with
        respect to `parameter_values`.

        Example:

        >>> loss = tml.BlendLoss(["crossentropy", "mae_classification"], from_logits=True)
        >>> y, logits = np.array([0]), np.array([[2.0, 0.0]], "float32")
        >>> pure_mae = [keras.ops.convert_to_tensor([0.0, 1.0])]
        >>> float(loss.stateless_call(pure_mae, y, logits)) == float(
        ...     tml.losses.functional.mae_classification(y, logits, from_logits=True)[0])
        True
        """
        variables = self.trainable_variables
        parameter_values = list(parameter_values)
        if len(parameter_values) != len(variables):
            raise ValueError(
                "Invalid value for argument `parameter_values`. Expected "
                f"{len(variables)} tensors (one per loss parameter "
                f"{self.parameter_names}). Received: {len(parameter_values)} values."
            )
        # The loss's other variables (its statistics) keep the values they have
        # where this is called: a scope nested in another (JAX's jitted step)
        # would otherwise read them from the variables themselves.
        others = [v for v in self.variables if all(v is not t for t in variables)]
        mapping = list(zip(variables, parameter_values))
        mapping += [(v, keras.ops.convert_to_tensor(v)) for v in others]
        with keras.StatelessScope(state_mapping=mapping):
            return self(y_true, y_pred, sample_weight=sample_weight)

    def compute(self, parameters, y_true, y_pred):
        """Pure per-sample loss from a dict of parameter tensors. Override."""
        raise NotImplementedError

    def regularization_penalty(self, parameter_values=None):
        """`regularization * sum((phi - phi_0)^2)` (0 when disabled)."""
        if not self.regularization:
            return ops.convert_to_tensor(0.0, dtype=self.dtype)
        parameters = self.parameters(parameter_values)
        penalty = 0.0
        for name, value in parameters.items():
            penalty = penalty + ops.sum(ops.square(value - self._initial_values[name]))
        return self.regularization * penalty

    def parameter_summary(self):
        """Scalars describing phi for logs (every element when phi is small)."""
        summary = {}
        for name, variable in zip(self._parameter_names, self.trainable_variables):
            size = 1
            for dim in variable.shape:
                size *= dim
            if size <= 8:
                flat = ops.reshape(variable, (-1,))
                labels = self.element_labels(name, size)
                for i in range(size):
                    summary[f"phi/{labels[i]}"] = flat[i]
            else:
                summary[f"phi/{name}_norm"] = ops.sqrt(ops.sum(ops.square(variable)))
        return summary

    def element_labels(self, name, size):
        """Names for the elements of parameter `name` (used in logs)."""
        return [f"{name}_{i}" for i in range(size)]

    # -- config -----------------------------------------------------------
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "from_logits": self.from_logits,
                "regularization": self.regularization,
                "bounds": self.bounds,
                # phi lives in variables of this dtype: keep it across saving.
                "dtype": self.dtype,
            }
        )
        return config


def check_base_losses(argument, names):
    """Validates a list of base-loss names; returns it as a list of str."""
    if isinstance(names, str):
        names = [names]
    names = list(names)
    if not names:
        raise ValueError(
            f"Invalid value for argument `{argument}`. Expected a non-empty list "
            f"of base loss names from {sorted(functional.BASE_LOSSES)}. "
            f"Received: {argument}={names!r}"
        )
    for n in names:
        if n not in functional.BASE_LOSSES:
            raise ValueError(
                f"Invalid value for argument `{argument}`. Expected names from "
                f"{sorted(functional.BASE_LOSSES)}. Received: {n!r} in "
                f"{argument}={names!r}"
            )
    kinds = {functional.is_regression(n) for n in names}
    if len(kinds) > 1:
        raise ValueError(
            f"Invalid value for argument `{argument}`. Classification and "
            f"regression base losses cannot be mixed. Received: {argument}={names!r}"
        )
    return names
