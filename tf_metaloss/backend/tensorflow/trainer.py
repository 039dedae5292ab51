"""The TensorFlow training loop of `MetaModel` (mixed in like Keras's trainers).

Two per-replica steps, public so that a subclass can override them as Keras
users expect:

- `train_step(data)`: a plain step on the current learnable loss;
- `meta_train_step(data, meta_batch)`: the meta step (lookahead, meta
  objective, meta-gradient from the estimator, then the weight update with the
  gradient the lookahead already computed, and the update of phi).

`make_train_function` compiles one loop per call of the train function: up to
`steps_per_execution` steps, each choosing on the device between the two steps
from the optimizer's step counter (`iterations % meta_every == 0`) and pulling
a meta batch only on meta steps. Nothing is read back to the host between
steps. With `jit_compile=True` the two steps are compiled by XLA separately and
chosen by a step counter kept on the host (also without reading the device):
XLA on CPU compiles a conditional around a convolutional step many times
slower, and TensorFlow cannot call a compiled function from a conditional
inside a loop.

Logs are read after the replicas ran, in cross-replica context, so metrics
aggregate over the global batch.
"""

import collections

import keras
import tensorflow as tf
from keras import tree

from tf_metaloss import backend
from tf_metaloss.backend.tensorflow import distribution
from tf_metaloss.meta import estimators
from tf_metaloss.meta import gradients
from tf_metaloss.meta import lookahead


def _unpack(data):
    return keras.utils.unpack_x_y_sample_weight(data)


class _Schedule:
    """Device-side schedule state, kept out of Keras's weight tracking."""

    def __init__(self, meta_every):
        self.meta_every = tf.Variable(int(meta_every), dtype=tf.int64, trainable=False)


class MetaTrainer:
    """Mixin giving `MetaModel` its TensorFlow training loop."""

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # The steps run the model through `stateless_call`, which needs built
        # variables: build before tracing, also without a distribution strategy.
        if self._distribute_strategy is None:
            self._symbolic_build(iterator=iterator, data_batch=data_batch)
        else:
            super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    # -- per-replica steps -------------------------------------------------------
    def train_step(self, data):
        """A plain training step on the current learnable loss.

        Forward pass, learnable loss (phi held fixed), weight gradient, the
        optimizer's update unless the loss or gradient is non-finite, metrics.
        Returns the metrics' logs like `keras.Model.train_step`; `fit` reads
        the metrics itself after the step, across replicas.
        """
        x, y, sample_weight = _unpack(data)
        objective = self._training_objective(x, y, sample_weight)
        loss, aux, local_grads = lookahead.loss_and_gradient(
            lambda weights: objective(weights, None), self._weight_values()
        )
        grads = backend.all_reduce_sum(local_grads)
        finite = self._update_weights(loss, grads, local_grads, aux.new_state)
        self._record_step(x, y, aux.y_pred, sample_weight, loss, tf.logical_not(finite))
        return self.get_metrics_result()

    def meta_train_step(self, data, meta_batch):
        """A meta step: meta-gradient of phi, then the weight and phi updates.

        The estimator (`compile(meta_method=...)`) forms the lookahead, the
        meta objective on `meta_batch` and `d objective / d phi`; the weights
        are then updated with the training gradient the lookahead computed at
        the current weights (under phi before this step's update), and phi with
        the clipped, all-reduced meta-gradient. Non-finite values skip the
        update they would corrupt.
        """
        x, y, sample_weight = _unpack(data)
        step = tf.convert_to_tensor(self.optimizer.iterations)
        result = self.meta_estimator.estimate(self._meta_problem(data, meta_batch))
        finite = self._update_weights(
            result.loss, result.grads, result.local_grads, result.aux.new_state
        )
        phi_grads = backend.all_reduce_sum(result.phi_grads)
        norm, meta_finite = self._update_loss_parameters(phi_grads, finite)
        skipped = tf.logical_not(tf.logical_and(finite, meta_finite))
        meta_objective = backend.all_reduce_sum([result.meta_objective])[0]
        self.meta_objective_tracker.update_state(backend.global_value(result.meta_objective))
        self.meta_grad_norm_tracker.update_state(norm)
        clipped = (
            tf.constant(False)
            if self.meta_global_clipnorm is None
            else norm > tf.cast(self.meta_global_clipnorm, norm.dtype)
        )
        self.meta_update_record.update_state(step, meta_objective, norm, clipped, skipped)
        self._record_step(x, y, result.aux.y_pred, sample_weight, result.loss, skipped)
        return self.get_metrics_result()

    def test_step(self, data):
        x, y, sample_weight = _unpack(data)
        y_pred = self(x, training=False)
        loss = self._compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=False
        )
        self._track_loss(x, loss)
        meta_objective = self.meta_objective(y, y_pred, sample_weight=sample_weight)
        self.meta_objective_tracker.update_state(backend.global_value(meta_objective))
        logs = self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        return {k: v for k, v in logs.items() if k in self._test_log_keys()}

    def compute_meta_gradient(self, data, meta_batch):
        """The meta-gradient the meta step would compute now; changes nothing.

        Args:
            data: a training batch `(x, y)` (or `(x, y, sample_weight)`).
            meta_batch: a meta batch `(x_meta, y_meta)`.

        Returns:
            A `tf_metaloss.meta.estimators.MetaGradient`: `phi_grads` (one
            tensor per loss parameter, before clipping), `meta_objective` (the meta
            objective after the lookahead), and the training loss and gradient
            at the current weights. Call it outside a distribution strategy.

        Example:

        >>> inputs = keras.Input((4,))
        >>> model = tml.MetaModel(inputs, keras.layers.Dense(3)(inputs))
        >>> model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True))
        >>> x, y = np.random.rand(8, 4).astype("float32"), np.arange(8) % 3
        >>> result = model.compute_meta_gradient((x, y), (x, y))
        >>> [g.shape for g in result.phi_grads]  # one per loss parameter
        [TensorShape([])]
        """
        return self.meta_estimator.estimate(self._meta_problem(data, meta_batch))

    # -- stages of a step ----------------------------------------------------------
    def _meta_problem(self, data, meta_batch):
        x, y, sample_weight = _unpack(data)
        return estimators.MetaProblem(
            training_objective=self._training_objective(x, y, sample_weight),
            meta_objective=self._meta_objective(meta_batch),
            weights=self._weight_values(),
            phi=[tf.convert_to_tensor(v) for v in self.loss.trainable_variables],
            learning_rate=self._lookahead_learning_rate(),
        )

    def _weight_values(self):
        return [tf.convert_to_tensor(v) for v in self.trainable_variables]

    def _training_objective(self, x, y, sample_weight):
        """`(weights, phi) -> (L_phi(weights), aux)`, a pure function.

        `phi=None` evaluates the loss at its variables (plain step). `aux`
        holds `y_pred` and `new_state` (the model's updated non-trainable
        state, e.g. BatchNormalization statistics).
        """
        non_trainable = [tf.convert_to_tensor(v) for v in self.non_trainable_variables]

        def objective(weights, phi):
            y_pred, new_state, layer_losses = self.stateless_call(
                weights, non_trainable, x, training=True, return_losses=True
            )
            if phi is None:
                loss = self.loss(y, y_pred, sample_weight=sample_weight)
            else:
                loss = self.loss.stateless_call(phi, y, y_pred, sample_weight)
            if layer_losses:
                loss = loss + backend.replica_share(tf.add_n(layer_losses))
            return loss, StepOutputs(y_pred, new_state)

        return objective

    def _meta_objective(self, meta_batch):
        """`(weights, phi) -> (meta objective, meta objective + phi penalty)`."""
        x_meta, y_meta, sw_meta = _unpack(meta_batch)
        non_trainable = [tf.convert_to_tensor(v) for v in self.non_trainable_variables]

        def objective(weights, phi):
            y_pred, _ = self.stateless_call(weights, non_trainable, x_meta, training=True)
            value = self.meta_objective(y_meta, y_pred, sample_weight=sw_meta)
            penalty = backend.replica_share(self.loss.regularization_penalty(phi))
            return value, value + tf.cast(penalty, value.dtype)

        return objective

    def _lookahead_learning_rate(self):
        if self.lookahead_learning_rate is not None:
            return self.lookahead_learning_rate
        return self.optimizer.learning_rate

    def _update_weights(self, loss, grads, local_grads, new_state):
        """Applies the weight gradient unless the loss or gradient is non-finite."""
        finite = tf.logical_and(
            gradients.all_finite(grads),
            gradients.all_finite(backend.all_reduce_sum([loss])),
        )
        distribution.apply_if_finite(self.optimizer, local_grads, self.trainable_variables, finite)
        for variable, value in zip(self.non_trainable_variables, new_state):
            if value.dtype.is_floating:
                value = tf.where(finite, value, variable)
            variable.assign(value)
        return finite

    def _update_loss_parameters(self, phi_grads, finite):
        """Clips and applies the meta-gradient unless it is non-finite.

        Returns `(norm before clipping, applied)`.
        """
        norm = gradients.global_norm(phi_grads)
        finite = tf.logical_and(finite, tf.math.is_finite(norm))
        clipped = gradients.clip_by_global_norm(phi_grads, self.meta_global_clipnorm, norm)
        # The meta optimizer sums the replicas' gradients: hand it each one's share.
        share = [backend.replica_share(g) for g in clipped]
        distribution.apply_if_finite(
            self.meta_optimizer, share, self.loss.trainable_variables, finite
        )
        return norm, finite

    def _track_loss(self, x, loss):
        self._loss_tracker.update_state(
            backend.global_value(loss), sample_weight=tf.shape(tree.flatten(x)[0])[0]
        )

    def _record_step(self, x, y, y_pred, sample_weight, loss, skipped):
        self._track_loss(x, loss)
        # Every replica sees the same `skipped`; the Sum adds the replicas up.
        self.skipped_updates_tracker.update_state(
            backend.replica_share(tf.cast(skipped, "float32"))
        )
        self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    # -- the compiled loop ---------------------------------------------------------
    def _schedule_state(self):
        schedule = getattr(self, "_schedule", None)
        if schedule is None:
            with self.distribute_strategy.scope():
                schedule = _Schedule(self.meta_every)
            self._schedule = schedule
        return schedule

    def _set_device_meta_every(self, value):
        schedule = getattr(self, "_schedule", None)
        if schedule is not None:
            schedule.meta_every.assign(int(value))

    def _step_logs(self):
        logs = self.get_metrics_result()
        logs.update(self.loss.parameter_summary())
        return logs

    def make_train_function(self, force=False):
        if self.train_function is not None and not force:
            return self.train_function
        if self.jit_compile or self.run_eagerly:
            self.train_function = self._host_scheduled_function()
        else:
            self.train_function = self._device_scheduled_function()
        return self.train_function

    def _device_scheduled_function(self):
        strategy = self.distribute_strategy
        schedule = self._schedule_state()

        def one_step(data, meta_iterator):
            if meta_iterator is None:
                strategy.run(self.train_step, args=(data,))
                return

            def meta():
                strategy.run(self.meta_train_step, args=(data, meta_iterator.get_next()))
                return tf.constant(True)

            def plain():
                strategy.run(self.train_step, args=(data,))
                return tf.constant(False)

            every = schedule.meta_every
            is_meta = tf.logical_and(
                every > 0, self.optimizer.iterations % tf.maximum(every, 1) == 0
            )
            tf.cond(is_meta, meta, plain)

        def loop(iterator, meta_iterator):
            self.meta_update_record.start_call()

            def body(done, optional):
                one_step(optional.get_value(), meta_iterator)
                done = done + 1
                following = tf.cond(
                    done < self.steps_per_execution,
                    iterator.get_next_as_optional,
                    lambda: optional,
                )
                return done, following

            def keep_going(done, optional):
                return tf.logical_and(done < self.steps_per_execution, optional.has_value())

            done, _ = tf.while_loop(
                keep_going, body, [tf.constant(0), iterator.get_next_as_optional()]
            )
            return done, self._step_logs()

        def on_data(data, meta_iterator):
            self.meta_update_record.start_call()
            one_step(data, meta_iterator)
            return self._step_logs()

        compiled_loop = tf.function(loop, autograph=False, reduce_retracing=True)
        compiled_on_data = tf.function(on_data, autograph=False, reduce_retracing=True)

        def train_function(iterator):
            if isinstance(iterator, (tf.data.Iterator, tf.distribute.DistributedIterator)):
                done, logs = compiled_loop(iterator, self._meta_iterator)
                if int(done) == 0:
                    raise StopIteration
                return logs
            # `train_on_batch` hands a Python iterator over one batch.
            logs = None
            for _, data in zip(range(self.steps_per_execution), iterator):
                logs = compiled_on_data(data, self._meta_iterator)
            if logs is None:
                raise StopIteration
            return logs

        train_function.compiled_loop = compiled_loop
        return train_function

    def _host_scheduled_function(self):
        strategy = self.distribute_strategy

        def compile_step(step):
            if self.run_eagerly:
                return lambda *args: strategy.run(step, args=args)
            compiled = tf.function(step, jit_compile=self.jit_compile, reduce_retracing=True)
            return tf.function(
                lambda *args: strategy.run(compiled, args=args), reduce_retracing=True
            )

        plain_step = compile_step(self.train_step)
        meta_step = compile_step(self.meta_train_step)
        read_logs = self._step_logs if self.run_eagerly else tf.function(self._step_logs)

        def train_function(iterator):
            if self._host_step is None:
                self._host_step = int(self.optimizer.iterations.numpy())
            self.meta_update_record.start_call()
            done = 0
            for _ in range(self.steps_per_execution):
                try:
                    data = next(iterator)
                except (StopIteration, tf.errors.OutOfRangeError):
                    break
                every = self.meta_every
                if self._meta_iterator is not None and every and self._host_step % every == 0:
                    meta_step(data, next(self._meta_iterator))
                else:
                    plain_step(data)
                self._host_step += 1
                done += 1
            if done == 0:
                raise StopIteration
            return read_logs()

        return train_function


StepOutputs = collections.namedtuple("StepOutputs", ["y_pred", "new_state"])
StepOutputs.__doc__ = "The training objective's aux outputs: predictions and updated state."
