"""`MetaModel`: a Keras model whose learnable loss is meta-learned during `fit`."""

import inspect
import numbers

import keras
import tensorflow as tf
from keras import tree

from tf_metaloss.losses.base import LearnableLoss
from tf_metaloss.losses.fixed import FixedLoss
from tf_metaloss.meta import data as meta_data_lib
from tf_metaloss.meta import lookahead
from tf_metaloss.meta import updates

META_METHODS = ("second_order", "first_order")


def _unpack(data):
    return keras.utils.unpack_x_y_sample_weight(data)


class _MeanOfMetaSteps(keras.metrics.Mean):
    """A running mean that reads NaN, not 0, while it holds no value.

    The meta quantities are measured on meta steps only. An epoch (or the first
    plain steps of one) without a meta step, e.g. after
    `LossParameterEarlyStopping` froze phi, has no meta loss: a 0 would look
    like a perfect score.
    """

    def result(self):
        return keras.ops.where(
            self.count > 0, super().result(), keras.ops.cast(float("nan"), self.dtype)
        )


@keras.saving.register_keras_serializable(package="tf_metaloss")
class MetaModel(keras.Model):
    """A model trained on a learnable loss whose parameters phi are meta-learned.

    Every `meta_every` steps the meta step forms a differentiable lookahead
    `w' = w - lr * grad_w L_phi(w)` (or `unroll_steps` such steps) with the
    model run through `stateless_call`, evaluates the fixed `meta_loss` on a
    meta batch at `w'`, and updates phi with the `meta_optimizer` along
    `d meta_loss / d phi` (second-order, through nested gradient tapes). The
    weights are then updated by the model's optimizer with the gradient the
    lookahead already computed (under phi before this step's meta-update), so
    a meta step costs one extra forward and a second-order backward pass.
    Other steps are plain Keras steps on the current learnable loss.

    Construct it like a functional model, `MetaModel(inputs, outputs)`, or wrap
    an existing Keras model, `MetaModel(model)`.

    Example:

    >>> rng = np.random.default_rng(0)
    >>> x_train = rng.normal(size=(256, 64)).astype("float32")
    >>> y_train = rng.integers(0, 10, size=256)
    >>> x_meta, y_meta = x_train[:32], y_train[:32]  # in practice: a clean held-out set
    >>> inputs = keras.Input((64,))
    >>> hidden = keras.layers.Dense(256, activation="relu")(inputs)
    >>> model = tml.MetaModel(inputs, keras.layers.Dense(10)(hidden))
    >>> model.compile(
    ...     optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
    ...     loss=tml.MetaLoss(from_logits=True),
    ...     meta_optimizer=keras.optimizers.Adam(1e-2),
    ...     metrics=["accuracy"],
    ... )
    >>> history = model.fit(x_train, y_train, meta_data=(x_meta, y_meta), epochs=2, verbose=0)
    >>> model.meta_optimizer.iterations.numpy()  # 8 steps an epoch, each a meta step
    np.int64(16)
    >>> model.save("model.keras")
    >>> restored = keras.models.load_model("model.keras")  # phi is restored with the model
    >>> np.array_equal(restored.loss.trainable_variables[0], model.loss.trainable_variables[0])
    True
    """

    def __init__(self, inputs=None, outputs=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        if isinstance(inputs, keras.Model) and outputs is None:
            model = inputs
        elif inputs is not None and outputs is not None:
            model = keras.Model(inputs=inputs, outputs=outputs)
        else:
            raise ValueError(
                "Invalid arguments to `MetaModel`. Expected either a Keras "
                "model, `MetaModel(model)`, or functional inputs and outputs, "
                f"`MetaModel(inputs, outputs)`. Received: inputs={inputs!r}, "
                f"outputs={outputs!r}"
            )
        self.base_model = model
        if model.built:
            self.built = True
        self._call_has_training = "training" in inspect.signature(model.call).parameters
        self.meta_optimizer = None
        self._meta_iterator = None
        self.meta_loss_tracker = _MeanOfMetaSteps(name="meta_loss")
        self.meta_grad_norm_tracker = _MeanOfMetaSteps(name="meta_grad_norm")
        self.skipped_updates_tracker = keras.metrics.Sum(name="skipped_updates")

    # -- Keras model contract -------------------------------------------------
    def call(self, inputs, training=None):
        if self._call_has_training:
            return self.base_model(inputs, training=training)
        return self.base_model(inputs)

    @property
    def inputs(self):
        return getattr(self.base_model, "inputs", None)

    @property
    def outputs(self):
        return getattr(self.base_model, "outputs", None)

    def get_config(self):
        return {
            "name": self.name,
            "model": keras.saving.serialize_keras_object(self.base_model),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        model = keras.saving.deserialize_keras_object(
            config.pop("model"), custom_objects=custom_objects
        )
        return cls(model, **config)

    # -- compile ----------------------------------------------------------------
    def compile(
        self,
        optimizer="rmsprop",
        loss=None,
        meta_optimizer=None,
        meta_loss=None,
        meta_every=1,
        unroll_steps=1,
        meta_method="second_order",
        meta_clipnorm=None,
        lookahead_learning_rate=None,
        meta_seed=None,
        **kwargs,
    ):
        """Configures the model and the meta-learning of its loss.

        Args:
            optimizer: the optimizer of the model's weights (as in Keras).
            loss: a learnable loss from `tf_metaloss.losses` (instance, or a
                registered name/config such as `"tf_metaloss>MetaLoss"`).
            meta_optimizer: the optimizer of the loss parameters phi (`None`:
                `keras.optimizers.Adam(0.01)`; Keras's default Adam rate of
                1e-3 was too slow for phi in the comparisons of
                docs/RESULTS.md).
            meta_loss: the fixed validation objective minimised by the meta
                step: a Keras loss instance, a Keras loss name (built with the
                learnable loss's `from_logits`), or `None` for the default:
                classification: the bounded MAE objective `2 * (1 - p_true)`
                (`FixedLoss("mae_classification")`, sparse or one-hot
                labels), which held up best with noisy training labels in
                docs/RESULTS.md; regression: MSE.
            meta_every: meta-update every `meta_every` steps (the first step
                is a meta step); 0 freezes the loss.
            unroll_steps: K, the number of differentiable lookahead steps (on
                the same batch) that the meta-gradient backpropagates through.
            meta_method: `"second_order"` (exact) or `"first_order"` (drops
                the second-order terms through the weights across unrolled
                steps; identical to exact when `unroll_steps=1`).
            meta_clipnorm: clip the meta-gradient to this global norm
                (`None`: no clipping).
            lookahead_learning_rate: the lookahead's step size; `None` uses the
                optimizer's current learning rate.
            meta_seed: seed of the meta batches' shuffling.
            **kwargs: any other `keras.Model.compile` argument (`metrics`,
                `jit_compile`, `steps_per_execution`, ...).
        """
        loss = self._resolve_learnable_loss(loss)
        _check_int("meta_every", meta_every, minimum=0, expected="a non-negative integer")
        _check_int("unroll_steps", unroll_steps, minimum=1, expected="an integer >= 1")
        if meta_method not in META_METHODS:
            raise ValueError(
                "Invalid value for argument `meta_method`. Expected one of "
                f"{META_METHODS}. Received: meta_method={meta_method!r}"
            )
        if meta_seed is not None:
            _check_int("meta_seed", meta_seed, minimum=0, expected="a non-negative integer or None")
        for arg, value in (
            ("meta_clipnorm", meta_clipnorm),
            ("lookahead_learning_rate", lookahead_learning_rate),
        ):
            if value is not None and not (
                isinstance(value, numbers.Real) and not isinstance(value, bool) and value > 0
            ):
                raise ValueError(
                    f"Invalid value for argument `{arg}`. Expected a positive "
                    f"float or None. Received: {arg}={value!r}"
                )
        super().compile(optimizer=optimizer, loss=loss, **kwargs)
        compute_dtype = self.base_model.dtype_policy.compute_dtype
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer) or (
            compute_dtype not in ("float32", "float64")
        ):
            raise ValueError(
                "`MetaModel` supports float32 and float64 models only: second-"
                "order meta-gradients in reduced precision are not supported "
                f"yet. Received: a model computing in {compute_dtype} (optimizer "
                f"{type(self.optimizer).__name__}). Build the model under the "
                "'float32' dtype policy."
            )
        if meta_optimizer is None:
            meta_optimizer = keras.optimizers.Adam(learning_rate=0.01)
        self.meta_optimizer = keras.optimizers.get(meta_optimizer)
        if self.meta_optimizer is self.optimizer:
            raise ValueError(
                "Arguments `optimizer` and `meta_optimizer` must be different "
                "optimizer instances (each keeps its own state). Received the "
                "same instance twice. Create a second optimizer for phi."
            )
        self.meta_optimizer.build(loss.trainable_variables)
        self.meta_loss = self._resolve_meta_loss(meta_loss, loss)
        self.meta_every = meta_every
        self.unroll_steps = unroll_steps
        self.meta_method = meta_method
        self.meta_clipnorm = meta_clipnorm
        self.lookahead_learning_rate = lookahead_learning_rate
        self.meta_seed = meta_seed
        self._meta_compile_config = {
            "meta_optimizer": meta_optimizer,
            "meta_loss": meta_loss,
            "meta_every": meta_every,
            "unroll_steps": unroll_steps,
            "meta_method": meta_method,
            "meta_clipnorm": meta_clipnorm,
            "lookahead_learning_rate": lookahead_learning_rate,
            "meta_seed": meta_seed,
        }

    def get_compile_config(self):
        config = super().get_compile_config()
        if self.compiled and hasattr(self, "_meta_compile_config"):
            meta = dict(self._meta_compile_config)
            meta["meta_optimizer"] = self.meta_optimizer
            config.update({k: keras.saving.serialize_keras_object(v) for k, v in meta.items()})
        return config

    def compile_from_config(self, config):
        config = {k: keras.saving.deserialize_keras_object(v) for k, v in config.items()}
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def _resolve_learnable_loss(self, loss):
        given = loss
        if isinstance(loss, (str, dict)):
            try:
                loss = keras.losses.get(loss)
            except ValueError:
                loss = keras.saving.get_registered_object(loss) if isinstance(loss, str) else None
                loss = loss() if isinstance(loss, type) else loss
        if not isinstance(loss, LearnableLoss):
            loss = given
            raise ValueError(
                "Invalid value for argument `loss`. `MetaModel` needs a learnable "
                "loss from `tf_metaloss.losses` (e.g. `tml.MetaLoss()`, "
                "`tml.BlendLoss()`). Received: "
                f"loss={loss!r}. To train on a fixed loss, use a plain "
                "`keras.Model`, or pass a learnable loss with meta_every=0."
            )
        return loss

    @staticmethod
    def _resolve_meta_loss(meta_loss, loss):
        if meta_loss is None:
            base = "mse" if loss.regression else "mae_classification"
            return FixedLoss(base, from_logits=loss.from_logits, name="meta_loss")
        if isinstance(meta_loss, str):
            try:
                resolved = keras.losses.get(meta_loss)
            except ValueError:
                resolved = None
            if resolved is not None and not isinstance(resolved, keras.losses.Loss):
                # Keras resolves snake_case names to functions; use the class.
                resolved = _keras_loss_class_of(resolved)
            if resolved is None:
                raise ValueError(
                    "Invalid value for argument `meta_loss`. Expected a Keras "
                    "loss name such as 'sparse_categorical_crossentropy' or "
                    f"'mse'. Received: meta_loss={meta_loss!r}"
                )
            config = resolved.get_config()
            if "from_logits" in config:
                config["from_logits"] = loss.from_logits
                resolved = resolved.__class__.from_config(config)
            return resolved
        if isinstance(meta_loss, dict):
            meta_loss = keras.losses.get(meta_loss)
        if isinstance(meta_loss, keras.losses.Loss):
            return meta_loss
        raise ValueError(
            "Invalid value for argument `meta_loss`. Expected a Keras loss "
            "instance, a Keras loss name (e.g. 'sparse_categorical_crossentropy') "
            f"or None. Received: meta_loss={meta_loss!r}"
        )

    @property
    def metrics(self):
        own = [self.meta_loss_tracker, self.meta_grad_norm_tracker, self.skipped_updates_tracker]
        metrics = [m for m in super().metrics if all(m is not o for o in own)]
        if not self.compiled:
            return metrics
        # A model compiled with a frozen loss (meta_every=0) logs no meta
        # quantities: they would read 0, which looks like a perfect score.
        if not getattr(self, "_meta_compile_config", {}).get("meta_every", 1):
            own = own[2:]
        return metrics[:1] + own + metrics[1:]

    # -- fit ----------------------------------------------------------------
    def fit(
        self,
        x=None,
        y=None,
        *args,
        meta_data=None,
        meta_split=None,
        meta_batch_size=None,
        **kwargs,
    ):
        """Trains the model like `keras.Model.fit`, meta-learning the loss.

        Args:
            meta_data: `(x_meta, y_meta)` arrays/tensors, or a batched
                `tf.data.Dataset` of them: the data the meta objective is
                evaluated on. Its batches cycle independently of the epochs.
            meta_split: instead of `meta_data`, hold out this fraction (0, 1)
                of `x`, `y` (arrays only; the last samples, before shuffling).
            meta_batch_size: size of a meta batch (array meta data);
                defaults to `batch_size`, or 32.
            Other arguments (positional too) are those of `keras.Model.fit`.
        """
        self._assert_compile_called("fit")
        arguments = inspect.signature(keras.Model.fit).bind(self, x, y, *args, **kwargs).arguments
        del arguments["self"]
        if meta_data is not None and meta_split is not None:
            raise ValueError(
                "Arguments `meta_data` and `meta_split` are mutually exclusive. "
                f"Received: meta_data of type {type(meta_data).__name__} and "
                f"meta_split={meta_split!r}. Pass only one."
            )
        if meta_batch_size is not None:
            _check_int(
                "meta_batch_size", meta_batch_size, minimum=1, expected="a positive integer or None"
            )
        if meta_split is not None:
            train, meta_data = meta_data_lib.split_meta(
                arguments.get("x"),
                arguments.get("y"),
                arguments.get("sample_weight"),
                meta_split,
            )
            arguments["x"], arguments["y"], arguments["sample_weight"] = train
        if self.meta_every > 0:
            if meta_data is None:
                raise ValueError(
                    "`MetaModel.fit` needs data for the meta objective. Pass "
                    "`meta_data=(x_meta, y_meta)` (or a tf.data.Dataset), or "
                    "`meta_split=0.1` to hold out part of x/y. Received neither "
                    "(with meta_every="
                    f"{self.meta_every}; use meta_every=0 to train with a frozen loss)."
                )
            self._meta_iterator = self._make_meta_iterator(
                meta_data, meta_batch_size or arguments.get("batch_size") or 32
            )
        try:
            return super().fit(**arguments)
        finally:
            self._meta_iterator = None

    def train_on_batch(
        self,
        x,
        y=None,
        sample_weight=None,
        class_weight=None,
        return_dict=False,
        meta_batch=None,
    ):
        """`keras.Model.train_on_batch`, meta-learning on `meta_batch`.

        Args:
            meta_batch: `(x_meta, y_meta)` for this step's meta-update. Needed
                when the step is a meta step (every `meta_every` steps).
            Other arguments are those of `keras.Model.train_on_batch`.
        """
        self._assert_compile_called("train_on_batch")
        if meta_batch is not None:
            meta_batch = meta_data_lib.unpack_meta_data(meta_batch)
            meta_data_lib.check_meta_arrays(
                self, meta_batch[0], meta_batch[1], not self.loss.regression
            )
            self._meta_iterator = iter([meta_batch])
        elif self.meta_every and not self._step_count() % self.meta_every:
            raise ValueError(
                "This `train_on_batch` step is a meta step (meta_every="
                f"{self.meta_every}) but received no `meta_batch`. Pass "
                "`meta_batch=(x_meta, y_meta)`, or compile with meta_every=0 "
                "to train with a frozen loss."
            )
        try:
            return super().train_on_batch(
                x,
                y,
                sample_weight=sample_weight,
                class_weight=class_weight,
                return_dict=return_dict,
            )
        finally:
            self._meta_iterator = None

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # The steps run the model through `stateless_call`, which needs built
        # variables: build before tracing, also without a distribution strategy.
        if self._distribute_strategy is None:
            self._symbolic_build(iterator=iterator, data_batch=data_batch)
        else:
            super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def _step_count(self):
        return int(self.optimizer.iterations.numpy())

    def _make_meta_iterator(self, meta_data, batch_size):
        meta_data = meta_data_lib.unpack_meta_data(meta_data)
        if isinstance(meta_data, tf.data.Dataset):
            meta_data_lib.check_meta_dataset(self, meta_data)
        else:
            meta_data_lib.check_meta_arrays(
                self, meta_data[0], meta_data[1], not self.loss.regression
            )
        meta_steps_done = -(-self._step_count() // self.meta_every)
        dataset = meta_data_lib.meta_dataset(
            meta_data, batch_size, seed=self.meta_seed, skip_batches=meta_steps_done
        )
        dataset = self.distribute_strategy.experimental_distribute_dataset(dataset)
        return iter(dataset)

    # -- step functions -------------------------------------------------------
    def make_train_function(self, force=False):
        if self.train_function is not None and not force:
            return self.train_function
        plain_step = self._compile_step(self._plain_train_step)
        meta_step = self._compile_step(self._meta_train_step)
        self._step_functions = {"plain": plain_step, "meta": meta_step}

        def train_function(iterator):
            logs = None
            for _ in range(self.steps_per_execution):
                try:
                    data = next(iterator)
                except StopIteration:
                    if logs is None:
                        raise
                    break
                if self._is_meta_step():
                    logs = meta_step(data, next(self._meta_iterator))
                else:
                    logs = plain_step(data)
            return logs

        self.train_function = train_function
        return train_function

    def _is_meta_step(self):
        if self.meta_every == 0 or self._meta_iterator is None:
            return False
        return self._step_count() % self.meta_every == 0

    def _compile_step(self, step):
        """Wraps a per-replica step: distributed, compiled, returning logs.

        The logs are read after the replicas ran, in cross-replica context, so
        metrics aggregate over the global batch.
        """
        if not self.run_eagerly:
            step = tf.function(step, reduce_retracing=True, jit_compile=self.jit_compile)

        def distributed_step(*args):
            self.distribute_strategy.run(step, args=args)
            logs = self.get_metrics_result()
            logs.update(self.loss.parameter_summary())
            return logs

        if not self.run_eagerly:
            distributed_step = tf.function(distributed_step, reduce_retracing=True)
        return distributed_step

    def _get_metrics_result_or_logs(self, logs):
        # `test_step` reports a subset of the metrics (no meta-gradient norm or
        # skipped updates): read those metrics' aggregated results.
        metric_logs = self.get_metrics_result()
        if isinstance(logs, dict) and logs and set(logs) < set(metric_logs):
            return {key: metric_logs[key] for key in logs}
        return super()._get_metrics_result_or_logs(logs)

    # -- stages of a step -------------------------------------------------------
    def _training_objective(self, x, y, sample_weight, non_trainable, phi):
        """`weights -> (L_phi(weights), (y_pred, new_state))`, a pure function."""

        def objective(weights, pause):
            y_pred, new_state, layer_losses = self.stateless_call(
                weights, non_trainable, x, training=True, return_losses=True
            )
            if phi is None:
                loss = self.loss(y, y_pred, sample_weight=sample_weight)
            else:
                loss = self.loss.stateless_call(phi, y, y_pred, sample_weight, pause_inner=pause)
            if layer_losses:
                loss = loss + tf.add_n(layer_losses) / updates.num_replicas()
            return loss, (y_pred, new_state)

        return objective

    def _lookahead_learning_rate(self):
        if self.lookahead_learning_rate is not None:
            return self.lookahead_learning_rate
        return self.optimizer.learning_rate

    def _meta_objective(self, weights, non_trainable, meta_batch, phi):
        x_meta, y_meta, sw_meta = _unpack(meta_batch)
        y_pred_meta, _ = self.stateless_call(weights, non_trainable, x_meta, training=True)
        meta_loss = self.meta_loss(y_meta, y_pred_meta, sample_weight=sw_meta)
        penalty = self.loss.regularization_penalty(phi) / updates.num_replicas()
        return meta_loss, meta_loss + tf.cast(penalty, meta_loss.dtype)

    def _meta_gradient(self, x, y, sample_weight, meta_batch):
        """Lookahead + meta objective + d(meta objective)/d(phi) (all replicas)."""
        weights = [tf.convert_to_tensor(v) for v in self.trainable_variables]
        non_trainable = [tf.convert_to_tensor(v) for v in self.non_trainable_variables]
        phi_variables = self.loss.trainable_variables
        with tf.GradientTape() as meta_tape:
            phi = [tf.convert_to_tensor(v) for v in phi_variables]
            objective = self._training_objective(x, y, sample_weight, non_trainable, phi)
            result = lookahead.unroll(
                objective,
                weights,
                self._lookahead_learning_rate(),
                self.unroll_steps,
                first_order=self.meta_method == "first_order",
            )
            meta_loss, meta_objective = self._meta_objective(
                result.weights, non_trainable, meta_batch, phi
            )
        meta_grads = meta_tape.gradient(meta_objective, phi_variables)
        meta_grads = [
            tf.zeros_like(v) if g is None else g for g, v in zip(meta_grads, phi_variables)
        ]
        return result, meta_loss, updates.all_reduce_sum(meta_grads)

    def _update_weights(self, loss, grads, local_grads, new_state):
        """Applies the weight gradient unless the loss/gradient is non-finite."""
        finite = tf.logical_and(
            updates.all_finite(grads),
            updates.all_finite(updates.all_reduce_sum([loss])),
        )
        updates.apply_if_finite(self.optimizer, local_grads, self.trainable_variables, finite)
        for variable, value in zip(self.non_trainable_variables, new_state):
            variable.assign(tf.where(finite, value, variable) if value.dtype.is_floating else value)
        return finite

    def _update_loss_parameters(self, meta_grads, finite):
        """Clips and applies the meta-gradient unless it is non-finite."""
        norm = updates.global_norm(meta_grads)
        finite = tf.logical_and(finite, tf.math.is_finite(norm))
        clipped = updates.clip_by_global_norm(meta_grads, self.meta_clipnorm, norm)
        # The meta optimizer sums replicas' gradients: hand it each one's share.
        share = [g / updates.num_replicas() for g in clipped]
        updates.apply_if_finite(self.meta_optimizer, share, self.loss.trainable_variables, finite)
        return norm, finite

    def _track_loss(self, x, loss):
        # Keras losses divide by the replica count; the tracker wants the mean.
        self._loss_tracker.update_state(
            loss * updates.num_replicas(), sample_weight=tf.shape(tree.flatten(x)[0])[0]
        )

    def _record(self, x, y, y_pred, sample_weight, loss, skipped):
        self._track_loss(x, loss)
        # Every replica sees the same `skipped`; the Sum adds the replicas up.
        self.skipped_updates_tracker.update_state(
            tf.cast(skipped, "float32") / updates.num_replicas()
        )
        # Results are read later in cross-replica context (`_compile_step`).
        self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    # -- the two steps ----------------------------------------------------------
    def _plain_train_step(self, data):
        x, y, sample_weight = _unpack(data)
        weights = [tf.convert_to_tensor(v) for v in self.trainable_variables]
        non_trainable = [tf.convert_to_tensor(v) for v in self.non_trainable_variables]
        objective = self._training_objective(x, y, sample_weight, non_trainable, None)
        loss, (y_pred, new_state), grads = lookahead.loss_and_gradient(objective, weights)
        all_grads = updates.all_reduce_sum(grads)
        finite = self._update_weights(loss, all_grads, grads, new_state)
        self._record(x, y, y_pred, sample_weight, loss, tf.logical_not(finite))

    def _meta_train_step(self, data, meta_batch):
        x, y, sample_weight = _unpack(data)
        result, meta_loss, meta_grads = self._meta_gradient(x, y, sample_weight, meta_batch)
        finite = self._update_weights(
            result.loss, result.grads, result.local_grads, result.new_state
        )
        meta_grad_norm, meta_finite = self._update_loss_parameters(meta_grads, finite)
        self.meta_loss_tracker.update_state(meta_loss * updates.num_replicas())
        self.meta_grad_norm_tracker.update_state(meta_grad_norm)
        skipped = tf.logical_not(tf.logical_and(finite, meta_finite))
        self._record(x, y, result.y_pred, sample_weight, result.loss, skipped)

    def test_step(self, data):
        x, y, sample_weight = _unpack(data)
        y_pred = self(x, training=False)
        loss = self._compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=False
        )
        self._track_loss(x, loss)
        meta_loss = self.meta_loss(y, y_pred, sample_weight=sample_weight)
        self.meta_loss_tracker.update_state(meta_loss * updates.num_replicas())
        logs = self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        logs.pop("meta_grad_norm", None)
        logs.pop("skipped_updates", None)
        return logs


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


def _check_int(name, value, minimum, expected):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected {expected}. Received: {name}={value!r}"
        )
