"""The steps of `MetaModel`, backend-neutral (`keras.ops` and `tf_metaloss.backend`).

A mixin of `MetaModel`, public like Keras's steps so that a subclass can
override them:

- `train_step(data)`: a plain step on the current learnable loss;
- `meta_train_step(data, meta_batch)`: the meta step (lookahead, meta
  objective, meta-gradient from the estimator, then the weight update with the
  gradient the lookahead already computed, and the update of phi);
- `test_step(data)`: the loss, the meta objective and the metrics.

The steps read and assign Keras variables. Each backend's trainer
(`backend/<name>/trainer.py`) runs them its own way: TensorFlow inside
`tf.function` and its distribution strategy (per replica), JAX inside a
`keras.StatelessScope` within one jitted pure function.
"""

import functools
import operator

import keras
from keras import ops
from keras import tree

from tf_metaloss import backend
from tf_metaloss.meta import gradients
from tf_metaloss.meta import lookahead
from tf_metaloss.models.meta_data_term import weighted_meta_loss
from tf_metaloss.models.objectives import MetaObjectives
from tf_metaloss.models.objectives import unpack


def _assign_state(variables, new_state, finite):
    """Assigns a step's new non-trainable state; floating values only where `finite`."""
    for variable, value in zip(variables, new_state):
        if keras.backend.is_float_dtype(value.dtype):
            value = ops.where(finite, value, ops.convert_to_tensor(variable))
        variable.assign(value)


class MetaSteps(MetaObjectives):
    """Mixin: the per-replica steps of `MetaModel` (see the module docstring)."""

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
        self._record_step(x, y, aux.y_pred, sample_weight, loss, ops.logical_not(finite))
        return self.get_metrics_result()

    def meta_train_step(self, data, meta_batch):
        """A meta step: meta-gradient of phi, then the weight and phi updates.

        The estimator (`compile(meta_method=...)`) forms the lookahead, the
        meta objective on `meta_batch` and `d objective / d phi`; the weights
        are then updated with the training gradient the lookahead computed at
        the current weights (under phi before this step's update), plus the
        meta batch's term if the model trains on the meta data
        (`compile(train_on_meta_data=True)`), and phi with the clipped,
        all-reduced meta-gradient. Non-finite values skip the update they
        would corrupt.
        """
        x, y, sample_weight = unpack(data)
        step = backend.read([self.optimizer.iterations])[0]
        result = self.meta_estimator.estimate(self._meta_problem(data, meta_batch))
        grads, local_grads = result.grads, result.local_grads
        if self.meta_data_term is not None:
            local_grads = self.meta_data_term.add_gradients(self, x, meta_batch, local_grads)
            grads = backend.all_reduce_sum(local_grads)
        finite = self._update_weights(result.loss, grads, local_grads, result.aux.new_state)
        if result.state is not None:
            self.estimator_state.assign(result.state, finite)
        phi_grads = backend.all_reduce_sum(result.phi_grads)
        norm, meta_finite = self._update_loss_parameters(phi_grads, finite)
        self._train_references(x, y, sample_weight, meta_batch)
        self._observe_reference(meta_batch)
        skipped = ops.logical_not(ops.logical_and(finite, meta_finite))
        meta_objective = backend.all_reduce_sum([result.meta_objective])[0]
        self.meta_objective_tracker.update_state(backend.global_value(result.meta_objective))
        self.meta_grad_norm_tracker.update_state(norm)
        clipped = (
            ops.convert_to_tensor(False)
            if self.meta_global_clipnorm is None
            else norm > ops.cast(self.meta_global_clipnorm, norm.dtype)
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
        finite = ops.logical_and(
            gradients.all_finite(grads),
            gradients.all_finite(backend.all_reduce_sum([loss])),
        )
        backend.apply_if_finite(self.optimizer, local_grads, self.trainable_variables, finite)
        _assign_state(self.non_trainable_variables, new_state, finite)
        return finite

    def _update_loss_parameters(self, phi_grads, finite):
        """Clips and applies the meta-gradient unless it is non-finite.

        Returns `(norm before clipping, applied)`.
        """
        norm = gradients.global_norm(phi_grads)
        finite = ops.logical_and(finite, ops.isfinite(norm))
        clipped = gradients.clip_by_global_norm(phi_grads, self.meta_global_clipnorm, norm)
        # The meta optimizer sums the replicas' gradients: hand it each one's share.
        share = [backend.replica_share(g) for g in clipped]
        backend.apply_if_finite(self.meta_optimizer, share, self.loss.trainable_variables, finite)
        return norm, finite

    def _train_references(self, x, y, sample_weight, meta_batch=None):
        """A plain step of each reference run on this batch (see `ReferenceRun`).

        A run that trains on the meta data (the guard's) also takes
        `meta_batch`, its loss weighted by the run's `meta_weight`.
        """
        for run in self.reference_runs:
            state = backend.read(run.state)
            meta = meta_batch if run.meta_weight is not None else None

            def objective(weights, run=run, state=state, meta=meta):
                y_pred, new_state, layer_losses = self.stateless_call(
                    weights, state, x, training=True, return_losses=True
                )
                loss = run.objective(y, y_pred, sample_weight=sample_weight)
                if meta is not None:
                    loss = loss + weighted_meta_loss(
                        self, run.objective, run.meta_weight, weights, state, x, meta
                    )
                if layer_losses:
                    layer_loss = functools.reduce(operator.add, layer_losses)
                    loss = loss + backend.replica_share(layer_loss)
                return loss, new_state

            loss, new_state, local_grads = lookahead.loss_and_gradient(
                objective, backend.read(run.weights)
            )
            finite = ops.logical_and(
                gradients.all_finite(backend.all_reduce_sum(local_grads)),
                gradients.all_finite(backend.all_reduce_sum([loss])),
            )
            backend.apply_if_finite(run.optimizer, local_grads, run.weights, finite)
            _assign_state(run.state, new_state, finite)

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
            backend.global_value(loss), sample_weight=ops.shape(tree.flatten(x)[0])[0]
        )

    def _record_step(self, x, y, y_pred, sample_weight, loss, skipped):
        self._track_loss(x, loss)
        # Every replica sees the same `skipped`; the Sum adds the replicas up.
        self.skipped_updates_tracker.update_state(
            backend.replica_share(ops.cast(skipped, "float32"))
        )
        self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def _step_logs(self):
        """The logs of a train call: the metrics and the loss's parameters."""
        logs = self.get_metrics_result()
        logs.update(self.loss.parameter_summary())
        return logs

    def _start_meta_data(self):
        """Builds the meta iterator at the first step of `fit`.

        Built lazily, after the callbacks' `on_train_begin` (where a backup is
        restored), it starts after the meta batches the restored meta
        optimizer has already used.
        """
        if self._meta_iterator is None and self._meta_source is not None:
            meta_data, batch_size, meta_weight = self._meta_source
            self._meta_iterator = self._make_meta_iterator(meta_data, batch_size)
            if self.guard_reference is not None:
                self.guard_reference.meta_weight.assign(meta_weight)
            if self.meta_data_term is not None:
                self.meta_data_term.weight.assign(meta_weight)

    # -- resuming (`tml.callbacks.MetaBackupAndRestore`) ---------------------------
    def _set_resume_point(self, epoch_steps, data_batches):
        """Resumes `fit` mid-epoch: see `tml.callbacks.MetaBackupAndRestore`.

        The restored epoch's first `epoch_steps` steps were run before the
        backup: those calls of the train function train nothing; the data
        iterator first discards the `data_batches` batches it had produced
        by the backup (in the restored epoch, or since `fit` began when
        Keras keeps one iterator across epochs, with `steps_per_epoch`).
        """
        self._resume = {"skip_steps": int(epoch_steps), "discard": int(data_batches)}

    def _follow_data(self, iterator):
        """Counts the batches of the training iterator from here (a new one starts at 0)."""
        if iterator is not self._data_iterator:
            self._data_iterator, self._data_batches = iterator, 0

    def _skips_call(self, iterator):
        """Whether this call of a resumed epoch trains nothing.

        Discards the batches the interrupted run had used; True while the
        steps before the backup are replayed.
        """
        resume = self._resume
        if resume is None:
            return False
        before_epoch = resume["discard"] - resume["skip_steps"]
        if before_epoch > 0:
            self._discard_batches(iterator, before_epoch)
            resume["discard"] -= before_epoch
        if resume["skip_steps"] <= 0:
            self._resume = None
            return False
        count = min(self.steps_per_execution, resume["skip_steps"])
        self._discard_batches(iterator, count)
        resume["skip_steps"] -= count
        resume["discard"] -= count
        return True

    # What a backend's training iterator raises when it has no batch left.
    _END_OF_DATA = (StopIteration,)

    def _discard_batches(self, iterator, count):
        """Draws up to `count` batches from `iterator` and drops them (counted)."""
        for _ in range(count):
            try:
                next(iterator)
            except self._END_OF_DATA:
                break
        self._data_batches += count

    def _data_position(self, epoch_end=False):
        """Batches the training iterator has produced, for a backup.

        At the end of an epoch: 0 unless Keras keeps the iterator for the
        next epoch (with `steps_per_epoch`); a new epoch's iterator starts
        from the beginning of the data.
        """
        if epoch_end and not self._iterator_spans_epochs:
            return 0
        return self._data_batches
