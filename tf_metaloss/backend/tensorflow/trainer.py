"""The TensorFlow training loop of `MetaModel` (mixed in like Keras's trainers).

The per-replica steps (`train_step`, `meta_train_step`, `test_step`) are
the backend-neutral ones of `tf_metaloss.models.steps`; this module runs them.
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

import gc

import tensorflow as tf

from tf_metaloss.backend.tensorflow import distribution
from tf_metaloss.meta import data as meta_data_lib
from tf_metaloss.models.steps import MetaSteps


class _Schedule:
    """Device-side schedule state, kept out of Keras's weight tracking."""

    def __init__(self, meta_every):
        self.meta_every = tf.Variable(int(meta_every), dtype=tf.int64, trainable=False)


class MetaTrainer(MetaSteps):
    """Mixin giving `MetaModel` its TensorFlow training loop."""

    _END_OF_DATA = (StopIteration, tf.errors.OutOfRangeError)

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
            self._follow_data(iterator)
            if self._skips_call(iterator):
                self.meta_update_record.start_call()
                return self._step_logs()
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
    def _meta_batches(self, dataset):
        """The batches of a `tf.data.Dataset` of meta data, per replica."""
        return iter(self.distribute_strategy.experimental_distribute_dataset(dataset))

    def _one_meta_batch(self, meta_batch):
        """An iterator over one meta batch `(x_meta, y_meta)`, per replica."""
        return self._meta_batches(meta_data_lib.single_batch_dataset(meta_batch))

    def _release_iterators(self):
        """Frees the iterators `fit` dropped, now, under a distribution strategy.

        A distributed iterator owns tf.data background threads; left to the
        cyclic garbage collector it is freed at an arbitrary later moment,
        e.g. while the next model's function is being traced, and TensorFlow
        2.21 was seen to hang in its destructor there (in the test suite,
        once, under load). Freed here, between two `fit` calls, it is not.
        """
        if self._replicas_in_sync() > 1:
            gc.collect()


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
