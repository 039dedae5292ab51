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

import tensorflow as tf
from keras import tree

from tf_metaloss import backend
from tf_metaloss.backend.tensorflow import distribution
from tf_metaloss.meta import gradients
from tf_metaloss.meta import lookahead
from tf_metaloss.models.objectives import MetaObjectives
from tf_metaloss.models.objectives import unpack


class _Schedule:
    """Device-side schedule state, kept out of Keras's weight tracking."""

    def __init__(self, meta_every):
        self.meta_every = tf.Variable(int(meta_every), dtype=tf.int64, trainable=False)


class MetaTrainer(MetaObjectives):
    """Mixin giving `MetaModel` its TensorFlow training loop."""

    def _variable_scope(self):
        """Where the model's own extra variables are created (its strategy's scope)."""
        return self.distribute_strategy.scope()

    def _replicas_in_sync(self):
        return self.distribute_strategy.num_replicas_in_sync

    def _check_fit_supported(self, method):
        """Raises for what this backend's loop cannot run (TensorFlow runs all)."""

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # The steps run the model through `stateless_call`, which needs built
        # variables: build before tracing, also without a distribution strategy.
        strategy = self._distribute_strategy
        if strategy is None:
            self._symbolic_build(iterator=iterator, data_batch=data_batch)
            self._build_references()
            return
        if iterator is not None and data_batch is None:
            # Keras reduces the first batch across replicas, eagerly, which
            # fails across workers: build from the local replica's batch.
            for _, _, batches in iterator:
                with strategy.scope():
                    data_batch = distribution.local_value(next(batches))
                break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)
        self._build_references()

    # -- per-replica steps -------------------------------------------------------
    def train_step(self, data):
        """A plain training step on the current learnable loss.

        Forward pass, learnable loss (phi held fixed), weight gradient, the
        optimizer's update unless the loss or gradient is non-finite, metrics.
        Returns the metrics' logs like `keras.Model.train_step`; `fit` reads
        the metrics itself after the step, across replicas.
        """
        x, y, sample_weight = unpack(data)
        objective = self._training_objective(x, y, sample_weight)
        loss, aux, local_grads = lookahead.loss_and_gradient(
            lambda weights: objective(weights, None), self._weight_values()
        )
        grads = backend.all_reduce_sum(local_grads)
        finite = self._update_weights(loss, grads, local_grads, aux.new_state)
        self._train_references(x, y, sample_weight)
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
        x, y, sample_weight = unpack(data)
        step = tf.convert_to_tensor(self.optimizer.iterations)
        result = self.meta_estimator.estimate(self._meta_problem(data, meta_batch))
        finite = self._update_weights(
            result.loss, result.grads, result.local_grads, result.aux.new_state
        )
        if result.state is not None:
            self.estimator_state.assign(result.state, finite)
        phi_grads = backend.all_reduce_sum(result.phi_grads)
        norm, meta_finite = self._update_loss_parameters(phi_grads, finite)
        self._train_references(x, y, sample_weight, meta_batch)
        self._observe_reference(meta_batch)
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
        x, y, sample_weight = unpack(data)
        y_pred = self(x, training=False)
        loss = self._compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=False
        )
        self._track_loss(x, loss)
        meta_objective = self.meta_objective(y, y_pred, sample_weight=sample_weight)
        self.meta_objective_tracker.update_state(backend.global_value(meta_objective))
        logs = self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        return {k: v for k, v in logs.items() if k in self._test_log_keys()}

    # -- stages of a step ----------------------------------------------------------
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

    def _train_references(self, x, y, sample_weight, meta_batch=None):
        """A plain step of each reference run on this batch (see `ReferenceRun`).

        A run that trains on the meta data (the guard's) also takes
        `meta_batch`, its loss weighted by the run's `meta_weight`.
        """
        for run in self.reference_runs:
            state = [tf.convert_to_tensor(v) for v in run.state]
            meta = meta_batch if run.meta_weight is not None else None

            def objective(weights, run=run, state=state, meta=meta):
                y_pred, new_state, layer_losses = self.stateless_call(
                    weights, state, x, training=True, return_losses=True
                )
                loss = run.objective(y, y_pred, sample_weight=sample_weight)
                if meta is not None:
                    x_meta, y_meta, meta_sample_weight = unpack(meta)
                    # The meta batch's pass does not move the running statistics.
                    y_meta_pred, _ = self.stateless_call(
                        weights, state, self._in_input_order(x_meta), training=True
                    )
                    meta_loss = run.objective(y_meta, y_meta_pred, sample_weight=meta_sample_weight)
                    batch = tf.shape(tree.flatten(x)[0])[0] * self._replicas_in_sync()
                    weight = tf.cast(run.meta_weight, loss.dtype) / tf.cast(batch, loss.dtype)
                    loss = loss + weight * meta_loss
                if layer_losses:
                    loss = loss + backend.replica_share(tf.add_n(layer_losses))
                return loss, new_state

            loss, new_state, local_grads = lookahead.loss_and_gradient(
                objective, [tf.convert_to_tensor(v) for v in run.weights]
            )
            finite = tf.logical_and(
                gradients.all_finite(backend.all_reduce_sum(local_grads)),
                gradients.all_finite(backend.all_reduce_sum([loss])),
            )
            distribution.apply_if_finite(run.optimizer, local_grads, run.weights, finite)
            for variable, value in zip(run.state, new_state):
                if value.dtype.is_floating:
                    value = tf.where(finite, value, variable)
                variable.assign(value)

    def _observe_reference(self, meta_batch):
        """Feeds the loss's reference run's meta predictions to the loss."""
        run = self.loss_reference
        if run is None:
            return
        x_meta, y_meta, _ = unpack(meta_batch)
        y_pred = run.predict_on(self, self._in_input_order(x_meta))
        statistics = backend.all_reduce_sum(self.loss.reference_statistics(y_meta, y_pred))
        self.loss.update_from_reference(statistics)

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
            run_steps, run_on_data = self._host_scheduled_steps()
        else:
            run_steps, run_on_data = self._device_scheduled_steps()

        def train_function(iterator):
            if not isinstance(iterator, (tf.data.Iterator, tf.distribute.DistributedIterator)):
                # `train_on_batch` hands a Python iterator over one batch.
                logs = None
                for _, data in zip(range(self.steps_per_execution), iterator):
                    logs = run_on_data(data)
                if logs is None:
                    raise StopIteration
                return logs
            self._start_meta_data()
            if iterator is not self._data_iterator:
                self._data_iterator, self._data_batches = iterator, 0
            if self._resume is not None:
                logs = self._fast_forward(iterator)
                if logs is not None:
                    return logs
            done, logs = run_steps(iterator)
            self._data_batches += done
            if done == 0:
                raise StopIteration
            return logs

        train_function.run_steps = run_steps
        train_function.compiled_loop = getattr(run_steps, "compiled_loop", None)
        self.train_function = train_function
        return train_function

    def _device_scheduled_steps(self):
        """Steps scheduled on the device: one `tf.function`, one `tf.while_loop`."""
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
            done = _while_over_batches(
                iterator, self.steps_per_execution, lambda data: one_step(data, meta_iterator)
            )
            return done, self._step_logs()

        def on_data(data, meta_iterator):
            self.meta_update_record.start_call()
            one_step(data, meta_iterator)
            return self._step_logs()

        compiled_loop = tf.function(loop, autograph=False, reduce_retracing=True)
        compiled_on_data = tf.function(on_data, autograph=False, reduce_retracing=True)

        def run_steps(iterator):
            done, logs = compiled_loop(iterator, self._meta_iterator)
            # One read per call (like Keras's `has_value()` check): did any
            # batch remain?
            return int(done), logs

        run_steps.compiled_loop = compiled_loop
        return run_steps, lambda data: compiled_on_data(data, self._meta_iterator)

    def _host_scheduled_steps(self):
        """Steps chosen by a host-side step counter (XLA and eager execution)."""
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

        def one_step(data):
            if self._host_step is None:
                self._host_step = int(self.optimizer.iterations.numpy())
            every = self.meta_every
            if self._meta_iterator is not None and every and self._host_step % every == 0:
                meta_step(data, next(self._meta_iterator))
            else:
                plain_step(data)
            self._host_step += 1

        def run_steps(iterator):
            self.meta_update_record.start_call()
            done = 0
            for _ in range(self.steps_per_execution):
                try:
                    data = next(iterator)
                except (StopIteration, tf.errors.OutOfRangeError):
                    break
                one_step(data)
                done += 1
            return done, read_logs()

        def run_on_data(data):
            self.meta_update_record.start_call()
            one_step(data)
            return read_logs()

        run_steps.plain_step, run_steps.meta_step = plain_step, meta_step
        return run_steps, run_on_data

    # -- evaluation ------------------------------------------------------------------
    def make_test_function(self, force=False):
        """The test loop, reading the metrics after the replicas ran.

        Keras reduces each replica's logs with `strategy.reduce(..., axis=0)`,
        which fails for scalars across workers; the metrics are read here in
        cross-replica context instead, as in the train loop.
        """
        if self.test_function is not None and not force:
            return self.test_function
        strategy = self.distribute_strategy
        step = self.test_step
        if self.jit_compile and not self.run_eagerly:
            step = tf.function(step, jit_compile=True, reduce_retracing=True)

        def one_step(data):
            strategy.run(step, args=(data,))

        def loop(iterator):
            done = _while_over_batches(iterator, self.steps_per_execution, one_step)
            return done, self._test_logs()

        def on_data(data):
            one_step(data)
            return self._test_logs()

        if not self.run_eagerly:
            loop = tf.function(loop, autograph=False, reduce_retracing=True)
            on_data = tf.function(on_data, autograph=False, reduce_retracing=True)

        def test_function(iterator):
            if isinstance(iterator, (tf.data.Iterator, tf.distribute.DistributedIterator)):
                done, logs = loop(iterator)
                if int(done) == 0:
                    raise StopIteration
                return logs
            logs = None
            for _, data in zip(range(self.steps_per_execution), iterator):
                logs = on_data(data)
            if logs is None:
                raise StopIteration
            return logs

        test_function.compiled_loop = loop
        self.test_function = test_function
        return test_function

    def _test_logs(self):
        keys = self._test_log_keys()
        return {k: v for k, v in self.get_metrics_result().items() if k in keys}

    # -- meta data and resuming ------------------------------------------------------
    def _start_meta_data(self):
        """Builds the meta iterator at the first step of `fit`.

        Built lazily, after the callbacks' `on_train_begin` (where a backup is
        restored), it starts after the meta batches the restored meta
        optimizer has already used.
        """
        if self._meta_iterator is None and self._meta_source is not None:
            meta_data, batch_size, guard_meta_weight = self._meta_source
            self._meta_iterator = self._make_meta_iterator(meta_data, batch_size)
            if self.guard_reference is not None:
                self.guard_reference.meta_weight.assign(guard_meta_weight)

    def _set_resume_point(self, epoch_steps, data_batches):
        """Resumes `fit` mid-epoch: see `tml.callbacks.MetaBackupAndRestore`.

        The restored epoch's first `epoch_steps` steps were run before the
        backup: those calls of the train function train nothing; the data
        iterator first discards the `data_batches` batches it had produced
        by the backup (in the restored epoch, or since `fit` began when
        Keras keeps one iterator across epochs, with `steps_per_epoch`).
        """
        self._resume = {"skip_steps": int(epoch_steps), "discard": int(data_batches)}

    def _fast_forward(self, iterator):
        """One call of a resumed epoch: discards data; returns logs if it trained nothing."""
        resume = self._resume
        before_epoch = resume["discard"] - resume["skip_steps"]
        if before_epoch > 0:
            _discard(iterator, before_epoch)
            self._data_batches += before_epoch
            resume["discard"] -= before_epoch
        if resume["skip_steps"] <= 0:
            self._resume = None
            return None
        count = min(self.steps_per_execution, resume["skip_steps"])
        _discard(iterator, count)
        self._data_batches += count
        resume["skip_steps"] -= count
        resume["discard"] -= count
        self.meta_update_record.start_call()
        return self._step_logs()

    def _data_position(self, epoch_end=False):
        """Batches the training iterator has produced, for a backup.

        At the end of an epoch: 0 unless Keras keeps the iterator for the
        next epoch (with `steps_per_epoch`); a new epoch's iterator starts
        from the beginning of the data.
        """
        if epoch_end and not self._iterator_spans_epochs:
            return 0
        return self._data_batches


def _while_over_batches(iterator, steps, one_step):
    """Runs `one_step(batch)` for up to `steps` batches of `iterator` in a
    `tf.while_loop`; returns how many ran (a tensor)."""

    def body(done, optional):
        one_step(optional.get_value())
        done = done + 1
        following = tf.cond(done < steps, iterator.get_next_as_optional, lambda: optional)
        return done, following

    def keep_going(done, optional):
        return tf.logical_and(done < steps, optional.has_value())

    done, _ = tf.while_loop(keep_going, body, [tf.constant(0), iterator.get_next_as_optional()])
    return done


def _discard(iterator, count):
    for _ in range(count):
        try:
            next(iterator)
        except (StopIteration, tf.errors.OutOfRangeError):
            return
