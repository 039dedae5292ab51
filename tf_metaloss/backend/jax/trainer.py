"""The JAX training loop of `MetaModel` (mixed in like Keras's `JAXTrainer`).

Keras on JAX trains with a pure `train_step(state, data) -> (logs, state)`
jitted once, the model's variables threaded through it as values. This loop
keeps that contract: `fit`, `evaluate` and `train_on_batch` are Keras's own
(`keras/src/backend/jax/trainer.py`), and the train function they call runs
the backend-neutral steps of `tf_metaloss.models.steps` inside a
`keras.StatelessScope`, within `jax.jit`, so that every variable a step reads
or assigns is an input and an output of one pure function.

The state Keras threads (weights, non-trainable state, optimizer slots,
metrics) is extended with what the meta step also changes: the loss's
variables (phi and its statistics), the meta optimizer's, the estimator's
state and the reference runs' (the guard's), and any other variable a step
assigns (found by tracing it once). Like Keras's own state, those values stay
with the loop between steps and are written to the variables by
`jax_state_sync`: at the end of each epoch and of `fit`, and whenever a
callback reads `self.model`.

The plain and the meta step are compiled separately and chosen by a step
counter kept on the host (read from the device once, at the start of `fit`),
as TensorFlow does under XLA; the meta batch is pulled on the host only for a
meta step. `steps_per_execution` steps run per call of the train function.
"""

import contextlib

import jax
import keras
import numpy as np

from tf_metaloss.backend.jax import distribution
from tf_metaloss.models.steps import MetaSteps


def _current(variable, cache):
    """The variable's value as the last step left it, else its own."""
    entry = cache.get(id(variable))
    return variable.value if entry is None else entry[1]


def _split(values, sizes):
    """`values` cut into consecutive groups of `sizes` (Keras's state tuple)."""
    groups, start = [], 0
    for size in sizes:
        groups.append(values[start : start + size])
        start += size
    return tuple(groups)


def _over_batches(state, iterator, steps, one_step):
    """Runs `one_step(state, batch, first)` on up to `steps` batches of
    `iterator`; returns the last logs, the state and how many ran. Raises
    `StopIteration` if the iterator had no batch."""
    logs, done = None, 0
    for i in range(steps):
        try:
            data = next(iterator)
        except StopIteration:
            if i == 0:
                raise
            break
        logs, state = one_step(state, data, i == 0)
        done += 1
    return logs, state, done


def _unique(variables):
    seen, unique = set(), []
    for variable in variables:
        if id(variable) not in seen:
            seen.add(id(variable))
            unique.append(variable)
    return unique


class _ThreadedScope(keras.StatelessScope):
    """A `keras.StatelessScope` over the variables threaded through a jitted
    step. A step that assigns any other variable (a callback may wrap the
    optimizer, say) would lose that update: with `found`, such variables are
    collected (to be threaded); without, the scope raises."""

    def __init__(self, variables, values, found=None):
        super().__init__(state_mapping=list(zip(variables, values)))
        self._threaded = {id(v) for v in variables}
        self._found = found

    def add_update(self, update):
        variable = update[0]
        if id(variable) not in self._threaded:
            if self._found is None:
                raise RuntimeError(
                    f"A MetaModel step on JAX assigned the variable {variable.path!r}, "
                    "which is not threaded through the jitted step: its update would be "
                    "lost. This is a bug of tf_metaloss: please report it."
                )
            self._threaded.add(id(variable))
            self._found.append(variable)
        super().add_update(update)


class MetaTrainer(MetaSteps):
    """Mixin giving `MetaModel` its JAX training loop."""

    def _variable_scope(self):
        """Where the model's own extra variables are created (no scope on JAX)."""
        return contextlib.nullcontext()

    def _replicas_in_sync(self):
        return 1  # a jitted step sees the global batch

    def _check_fit_supported(self, method):
        """Raises for what this backend's loop cannot run."""
        distribution.check_supported(f"MetaModel.{method}")

    def _set_device_meta_every(self, value):
        pass  # the schedule is read on the host at each step

    def _symbolic_build(self, *args, **kwargs):
        # The steps run the model through `stateless_call`, which needs built
        # variables; the reference runs copy them.
        super()._symbolic_build(*args, **kwargs)
        self._build_references()

    # -- the state the steps thread -------------------------------------------------
    def _meta_variables(self):
        """The variables the steps change beyond Keras's train state."""
        variables = list(self.loss.variables)
        if getattr(self, "meta_optimizer", None) is not None:
            variables += self.meta_optimizer.variables
        if self.estimator_state is not None:
            variables += self.estimator_state.variables
        if self.meta_data_term is not None:
            variables.append(self.meta_data_term.weight)
        for run in self.reference_runs:
            variables += run.variables + run.optimizer.variables
            if run.meta_weight is not None:
                variables.append(run.meta_weight)
        return _unique(variables)

    def _run_step(self, step, variables, values, first, args, found=None):
        """Runs `step(*args)` with `variables` mapped to `values`; returns
        `(logs, new values)`. `first` (a boolean) marks the first step of a call
        of the train function: the per-update record starts afresh there."""
        with _ThreadedScope(variables, values, found) as scope:
            record = self.meta_update_record
            record.count.assign(keras.ops.where(first, 0.0, record.count.value))
            step(*args)
            logs = self._step_logs()
        new_values = []
        for variable, value in zip(variables, values):
            new = scope.get_current_value(variable)
            new_values.append(value if new is None else new)
        return logs, new_values

    def _pure_step(self, step, variables, values, first, args):
        """`step` as a pure (jitted) function `(values, first, *args) -> (logs,
        values)` over `variables` and every other variable it assigns, found by
        tracing it once; returns the function and the variables it threads."""
        found = []
        jax.eval_shape(
            lambda values, first, *args: self._run_step(
                step, variables, values, first, args, found
            )[0],
            values,
            first,
            *args,
        )
        threaded = variables + found

        def pure(values, first, *args):
            return self._run_step(step, threaded, values, first, args)

        if self.run_eagerly or not self.jit_compile:
            return pure, threaded
        return jax.jit(pure), threaded

    # -- the train function -------------------------------------------------------
    def make_train_function(self, force=False):
        if self.train_function is not None and not force:
            return self.train_function
        # Keras's state, in the order `fit` hands it, then the meta variables.
        state_variables = [
            self.trainable_variables,
            self.non_trainable_variables,
            self.optimizer.variables,
            self.metrics_variables,
        ]
        sizes = [len(group) for group in state_variables]
        in_state = sum(sizes)
        variables = [v for group in state_variables for v in group] + self._meta_variables()
        steps = {}  # kind -> (pure step, the variables it threads)
        iterations_index = next(
            i for i, v in enumerate(self.optimizer.variables) if v is self.optimizer.iterations
        )

        def one_step(state, data, first):
            if self._host_step is None:
                self._host_step = int(state[2][iterations_index])
            every = self.meta_every
            if self._meta_iterator is not None and every and self._host_step % every == 0:
                kind, step, args = "meta", self.meta_train_step, (data, next(self._meta_iterator))
            else:
                kind, step, args = "plain", self.train_step, (data,)
            cache = self._meta_values
            values = [v for group in state for v in group]
            if kind not in steps:
                here = values + [_current(v, cache) for v in variables[in_state:]]
                steps[kind] = self._pure_step(step, variables, here, first, args)
            pure, threaded = steps[kind]
            values += [_current(v, cache) for v in threaded[in_state:]]
            logs, values = pure(values, first, *args)
            self._host_step += 1
            # Beyond Keras's state: kept here, written to the variables when
            # Keras syncs its own (`jax_state_sync`).
            for variable, value in zip(threaded[in_state:], values[in_state:]):
                cache[id(variable)] = (variable, value)
            return logs, _split(values, sizes)

        def train_function(state, iterator):
            self._start_meta_data()
            self._follow_data(iterator)
            if self._skips_call(iterator):
                # A step replayed after a restore: no training, the record emptied.
                keras_variables = [v for group in state_variables for v in group]
                logs, values = self._run_step(
                    lambda: None, keras_variables, [v for g in state for v in g], True, ()
                )
                return logs, _split(values, sizes)
            logs, state, done = _over_batches(state, iterator, self.steps_per_execution, one_step)
            self._data_batches += done
            return logs, state

        self.train_function = train_function
        return train_function

    @property
    def _meta_values(self):
        """`id(variable) -> (variable, value)`: the threaded variables beyond
        Keras's state, as the last step left them (empty once synced)."""
        cache = self.__dict__.get("_threaded_meta_values")
        if cache is None:
            cache = {}
            object.__setattr__(self, "_threaded_meta_values", cache)
        return cache

    def jax_state_sync(self):
        """Writes the step's state back to the variables (Keras's and the meta
        step's): at the end of an epoch, of `fit`, and when a callback reads
        `self.model`."""
        cache = self._meta_values
        for variable, value in cache.values():
            variable.assign(value)
        cache.clear()
        super().jax_state_sync()

    # -- evaluation ------------------------------------------------------------------
    def make_test_function(self, force=False):
        if self.test_function is not None and not force:
            return self.test_function
        state_variables = [
            self.trainable_variables,
            self.non_trainable_variables,
            self.metrics_variables,
        ]
        # The loss (phi) is read by the test step: an input, not a constant.
        loss_variables = _unique(self.loss.variables)
        variables = [v for group in state_variables for v in group] + loss_variables
        sizes = [len(group) for group in state_variables]

        def pure(values, data):
            with _ThreadedScope(variables, values) as scope:
                logs = self.test_step(data)
            new_values = []
            for variable, value in zip(variables, values[: sum(sizes)]):
                new = scope.get_current_value(variable)
                new_values.append(value if new is None else new)
            return logs, new_values

        if not self.run_eagerly and self.jit_compile:
            pure = jax.jit(pure)

        def one_step(state, data, first):
            values = [v for group in state for v in group]
            values += [v.value for v in loss_variables]
            logs, values = pure(values, data)
            return logs, _split(values, sizes)

        def test_function(state, iterator):
            logs, state, _ = _over_batches(state, iterator, self.steps_per_execution, one_step)
            return logs, state

        self.test_function = test_function
        return test_function

    # -- meta data ---------------------------------------------------------------------
    def _meta_batches(self, dataset):
        """The batches of a `tf.data.Dataset` of meta data, as JAX arrays laid
        out like the training batches (split over the devices under
        `keras.distribution.DataParallel`)."""
        return map(distribution.distribute_batch, dataset.as_numpy_iterator())

    def _one_meta_batch(self, meta_batch):
        batch = keras.tree.map_structure(np.asarray, tuple(meta_batch))
        return iter([distribution.distribute_batch(batch)])

    def _release_iterators(self):
        pass  # the meta batches come from a NumPy iterator
