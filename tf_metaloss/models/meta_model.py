"""`MetaModel`: a Keras model whose learnable loss is meta-learned during `fit`."""

import inspect
import warnings

import keras

from tf_metaloss import backend
from tf_metaloss.losses.fixed import FixedLoss
from tf_metaloss.meta import data as meta_data_lib
from tf_metaloss.meta import records
from tf_metaloss.models import compile_arguments
from tf_metaloss.models import fit_callbacks
from tf_metaloss.models import guard as guard_lib
from tf_metaloss.models import tasks
from tf_metaloss.models.estimator_state import EstimatorState
from tf_metaloss.models.meta_data_term import MetaDataTerm
from tf_metaloss.models.meta_data_term import weight_variable
from tf_metaloss.models.reference import ReferenceRun
from tf_metaloss.validation import check_bool
from tf_metaloss.validation import check_int
from tf_metaloss.validation import check_positive
from tf_metaloss.validation import check_positive_int

# Log keys of the per-update record: per-step values, not epoch aggregates.
UPDATE_LOG_KEYS = records.LOG_KEYS


# The training loop of the active backend, as Keras picks its own trainer.
if backend.name() == "jax":
    from tf_metaloss.backend.jax.trainer import MetaTrainer
else:
    from tf_metaloss.backend.tensorflow.trainer import MetaTrainer


@keras.saving.register_keras_serializable(package="tf_metaloss")
class MetaModel(MetaTrainer, keras.Model):
    """A model trained on a learnable loss whose parameters phi are meta-learned.

    Every `meta_every` steps the meta step forms a differentiable lookahead
    `w' = w - lr * grad_w L_phi(w)` (or several such steps, see `meta_method`)
    with the model run through `stateless_call`, evaluates the fixed
    `meta_objective` on a meta batch at `w'`, and updates phi with the
    `meta_optimizer` along `d meta_objective / d phi` (second order, through
    nested gradients). The weights are then updated by the model's optimizer
    with the gradient the lookahead already computed (under phi before this
    step's meta-update), so a meta step costs one extra forward and a
    second-order backward pass. Other steps are plain Keras steps on the
    current learnable loss. Both steps are public (`meta_train_step`,
    `train_step`) and can be overridden in a subclass.

    Construct it like a functional model, `MetaModel(inputs, outputs)`, or wrap
    an existing Keras model, `MetaModel(model)`. A keras-hub task (e.g. a
    `BertTextClassifier`) is wrapped without its preprocessor, which belongs in
    the input pipeline: see `tml.text`.

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
    >>> sorted(k for k in history.history if not k.startswith("phi/"))
    ['accuracy', 'guard_objective', 'guard_reverted', 'guard_start_objective', 'loss',
     'meta_grad_norm', 'meta_objective', 'skipped_updates']
    >>> int(model.meta_optimizer.iterations)  # 8 steps an epoch, each a meta step
    16
    >>> model.save("model.keras")
    >>> restored = keras.models.load_model("model.keras")  # phi is restored with the model
    >>> np.array_equal(restored.loss.trainable_variables[0], model.loss.trainable_variables[0])
    True
    """

    def __init__(self, inputs=None, outputs=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self._output_from_logits = None
        if isinstance(inputs, keras.Model) and outputs is None:
            model = inputs
            if tasks.is_task(model):
                # Backbone and head only; the preprocessor runs in tf.data.
                if hasattr(model, "activation"):
                    self._output_from_logits = tasks.from_logits(model)
                model = tasks.task_without_preprocessor(model)
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
        self.meta_estimator = None
        self._meta_every = 1
        self._meta_iterator = None
        self._meta_source = None
        self._host_step = None
        self._data_iterator = None
        self._data_batches = 0
        self._resume = None
        self._restored_step = None
        self._iterator_spans_epochs = False
        self.meta_objective_tracker = records.MeanOfMetaUpdates(name="meta_objective")
        self.meta_grad_norm_tracker = records.MeanOfMetaUpdates(name="meta_grad_norm")
        self.skipped_updates_tracker = keras.metrics.Sum(name="skipped_updates")
        self.meta_update_record = records.MetaUpdateRecord()
        self.meta_guard = None
        self.loss_reference = None
        self.guard_reference = None
        self.estimator_state = None
        self.guard_reverted = False
        self.meta_data_term = None

    # -- Keras model contract -------------------------------------------------
    def call(self, inputs, training=None):
        inputs = self._in_input_order(inputs)
        if self._call_has_training:
            return self.base_model(inputs, training=training)
        return self.base_model(inputs)

    def _in_input_order(self, inputs):
        # tf.data sorts a dict's keys; a functional base model expects its own order.
        names = getattr(self.base_model, "_inputs_struct", None)
        if isinstance(inputs, dict) and isinstance(names, dict) and set(inputs) == set(names):
            return {key: inputs[key] for key in names}
        return inputs

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
        meta_objective=None,
        meta_every=1,
        unroll_steps=1,
        meta_method="second_order",
        meta_global_clipnorm=None,
        lookahead_learning_rate=None,
        meta_seed=None,
        meta_guard="auto",
        train_on_meta_data=True,
        **kwargs,
    ):
        """Configures the model and the meta-learning of its loss.

        Args:
            optimizer: the optimizer of the model's weights (as in Keras).
            loss: a learnable loss from `tf_metaloss.losses` (instance, or a
                registered name/config such as `"tf_metaloss>MetaLoss"`).
            meta_optimizer: the optimizer of the loss parameters phi (`None`:
                `keras.optimizers.Adam(0.01)`).
            meta_objective: the fixed validation objective minimised by the
                meta step on the meta data: a Keras loss instance, a Keras
                loss name (built with the learnable loss's `from_logits`), or
                `None` for the default: classification: the bounded MAE
                objective `2 * (1 - p_true)` (`FixedLoss("mae_classification")`);
                regression: MSE.
            meta_every: meta-update every `meta_every` steps (the first step
                is a meta step); 0 freezes the loss.
            unroll_steps: with a named `meta_method`, the number K of
                differentiable lookahead steps (on the same batch).
            meta_method: how the meta-gradient is computed: `"second_order"`
                (exact, `Unrolled(unroll_steps)`), `"first_order"`
                (`Unrolled(unroll_steps, first_order=True)`), `"neumann"`,
                `"conjugate_gradient"`, `"finite_difference"` (those
                estimators with their defaults), or an estimator from
                `tf_metaloss.meta.estimators` (or its config), e.g.
                `Neumann(terms=5)` or `FiniteDifference()`.
            meta_global_clipnorm: clip the meta-gradient to this global norm
                (over all of phi, like Keras's `global_clipnorm`; `None`: no
                clipping). Applied after the all-reduce across replicas.
            lookahead_learning_rate: the lookahead's step size; `None` uses the
                optimizer's current learning rate.
            meta_seed: seed of the meta batches' shuffling.
            meta_guard: `"auto"` (default) or a `tml.models.Guard`: hold part
                of the meta data out as check data, train a copy of the network
                on the loss at its start on the training and the other meta
                data, and if the model scores worse on the check data at the
                end of `fit`, give it the copy's weights (each step costs one
                plain step more). `None` turns it off. See `tml.models.guard`.
            train_on_meta_data: the model also trains on the meta data (not
                held out as check data) with the loss at its start, as a user
                of that fixed loss would; phi is still learned on the training
                data. See `tml.models.meta_data_term`.
            **kwargs: any other `keras.Model.compile` argument (`metrics`,
                `jit_compile`, `steps_per_execution`, ...). `meta_loss` and
                `meta_clipnorm` are deprecated names of `meta_objective` and
                `meta_global_clipnorm`.
        """
        meta_objective, meta_global_clipnorm = compile_arguments.renamed_arguments(
            kwargs, meta_objective, meta_global_clipnorm
        )
        loss = compile_arguments.resolve_loss(loss)
        compile_arguments.check_from_logits(loss, self._output_from_logits)
        meta_every = check_int(
            "meta_every", meta_every, minimum=0, expected="a non-negative integer"
        )
        unroll_steps = check_int("unroll_steps", unroll_steps, minimum=1)
        estimator = compile_arguments.resolve_estimator(meta_method, unroll_steps)
        check_int(
            "meta_seed",
            meta_seed,
            minimum=0,
            allow_none=True,
            expected="a non-negative integer or None",
        )
        meta_global_clipnorm = check_positive(
            "meta_global_clipnorm", meta_global_clipnorm, allow_none=True
        )
        lookahead_learning_rate = check_positive(
            "lookahead_learning_rate", lookahead_learning_rate, allow_none=True
        )
        meta_guard = guard_lib.get(meta_guard)
        check_bool("train_on_meta_data", train_on_meta_data)
        super().compile(optimizer=optimizer, loss=loss, **kwargs)
        compile_arguments.check_precision(
            self.base_model.dtype_policy.compute_dtype, self.optimizer, loss, estimator
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
        self.meta_objective = compile_arguments.resolve_meta_objective(meta_objective, loss)
        self.meta_estimator = estimator
        self.meta_every = meta_every
        self.meta_global_clipnorm = meta_global_clipnorm
        self.lookahead_learning_rate = lookahead_learning_rate
        self.meta_seed = meta_seed
        # A frozen loss has nothing to guard.
        self.meta_guard = meta_guard if meta_every > 0 else None
        self._meta_compile_config = {
            "meta_optimizer": meta_optimizer,
            "meta_objective": meta_objective,
            "meta_every": meta_every,
            "meta_method": estimator,
            "meta_global_clipnorm": meta_global_clipnorm,
            "lookahead_learning_rate": lookahead_learning_rate,
            "meta_seed": meta_seed,
            "meta_guard": None if meta_guard is None else meta_guard.get_config(),
            "train_on_meta_data": train_on_meta_data,
        }
        if meta_every > 0:
            estimator.check_training(
                self.optimizer,
                meta_every,
                lookahead_learning_rate,
                self._replicas_in_sync(),
            )
        self.loss_reference = self.guard_reference = self.meta_data_term = None
        self.estimator_state = None
        self.guard_reverted = False
        self._build_references()

    # -- reference runs and the guard -------------------------------------------
    @property
    def reference_runs(self):
        """The `ReferenceRun`s trained beside the model (loss's, then guard's)."""
        return [r for r in (self.loss_reference, self.guard_reference) if r is not None]

    def _build_references(self):
        """Creates the estimator's and the loss's state and the reference runs, once built."""
        if not self.compiled or not self.built:
            return
        estimator = self.meta_estimator
        if estimator.stateful and self.estimator_state is None and self.meta_every > 0:
            with self._variable_scope():
                self.estimator_state = EstimatorState(self)
        if self.reference_runs:
            return
        loss = self.loss
        frozen = not self._meta_compile_config.get("meta_every", 1)
        if self._meta_compile_config.get("train_on_meta_data") and not frozen:
            with self._variable_scope():
                self.meta_data_term = MetaDataTerm(loss.starting_copy(), weight_variable())
        if getattr(loss, "num_classes", 0) is None and tasks.output_units(self):
            loss.build_state(tasks.output_units(self))
        with self._variable_scope():
            # A loss still without `num_classes` (a subclassed model) has no
            # state to feed: it keeps its neutral start (no correction).
            if loss.reference_objective and not frozen and getattr(loss, "num_classes", 1):
                objective = FixedLoss(
                    loss.reference_objective, from_logits=loss.from_logits, name="reference"
                )
                self.loss_reference = ReferenceRun(self, objective, "loss_reference")
            if self.meta_guard is not None:
                self.guard_reference = ReferenceRun(
                    self, loss.starting_copy(), "guard_reference", trains_on_meta=True
                )

    def revert_to_guard_reference(self):
        """Gives the model the starting loss's run: its weights, optimizer slots, phi.

        Called by the guard (`tml.models.guard.GuardCheck`) when the model
        scores worse than that run on the check data. The loss parameters go
        back to their start and the loss is frozen (`meta_every = 0`).
        """
        if self.guard_reference is None:
            raise ValueError(
                "`revert_to_guard_reference` needs a model compiled with a guard "
                "(`meta_guard='auto'`). Received: meta_guard=None."
            )
        self.guard_reference.copy_to(self)
        self.loss.reset_parameters()
        self.meta_every = 0
        self.guard_reverted = True

    def get_compile_config(self):
        config = super().get_compile_config()
        if self.compiled and hasattr(self, "_meta_compile_config"):
            meta = dict(self._meta_compile_config)
            meta["meta_optimizer"] = self.meta_optimizer
            config.update({k: keras.saving.serialize_keras_object(v) for k, v in meta.items()})
        return config

    def compile_from_config(self, config):
        config = {k: keras.saving.deserialize_keras_object(v) for k, v in config.items()}
        with warnings.catch_warnings():
            # Files saved by tf_metaloss 0.1 use the deprecated names.
            warnings.simplefilter("ignore", DeprecationWarning)
            self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    @property
    def meta_every(self):
        """Meta-update every `meta_every` steps; 0 freezes the loss.

        Setting it (e.g. to 0, as `LossParameterEarlyStopping` does) takes
        effect at the next step, also in a running `fit`.
        """
        return self._meta_every

    @meta_every.setter
    def meta_every(self, value):
        self._meta_every = check_int(
            "meta_every", value, minimum=0, expected="a non-negative integer"
        )
        self._set_device_meta_every(self._meta_every)

    @property
    def unroll_steps(self):
        """Unrolled lookahead steps of the estimator (`None` if it has none)."""
        return getattr(self.meta_estimator, "steps", None)

    @property
    def meta_loss(self):
        """Deprecated name of `meta_objective`."""
        warnings.warn(
            "`MetaModel.meta_loss` is deprecated; use `meta_objective`.",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.meta_objective

    @property
    def meta_clipnorm(self):
        """Deprecated name of `meta_global_clipnorm`."""
        warnings.warn(
            "`MetaModel.meta_clipnorm` is deprecated; use `meta_global_clipnorm`.",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.meta_global_clipnorm

    # -- metrics and logs ---------------------------------------------------------
    @property
    def metrics(self):
        own = [
            self.meta_objective_tracker,
            self.meta_grad_norm_tracker,
            self.meta_update_record,
            self.skipped_updates_tracker,
        ]
        metrics = [m for m in super().metrics if all(m is not o for o in own)]
        if not self.compiled:
            return metrics
        # A model compiled with a frozen loss (meta_every=0) logs no meta
        # quantities: they would read 0, which looks like a perfect score.
        if not getattr(self, "_meta_compile_config", {}).get("meta_every", 1):
            own = own[-1:]
        return metrics[:1] + own + metrics[1:]

    def _test_log_keys(self):
        excluded = {"meta_grad_norm", "skipped_updates", *UPDATE_LOG_KEYS}
        return [k for k in self.get_metrics_result() if k not in excluded]

    def _get_metrics_result_or_logs(self, logs):
        # Epoch logs: the metrics' aggregated values for the keys the steps
        # logged (the test step logs a subset), phi as last logged, and not the
        # per-update record (per-step values, not epoch aggregates).
        if not isinstance(logs, dict) or not logs:
            return super()._get_metrics_result_or_logs(logs)
        metric_logs = self.get_metrics_result()
        return {k: metric_logs.get(k, v) for k, v in logs.items() if k not in UPDATE_LOG_KEYS}

    # What one `fit` call holds, kept out of Keras's and TensorFlow's tracking: tracked,
    # dicts of inputs became `TrackedDict`s (not a JAX type), iterators checkpoint dependencies.
    _PER_CALL_ATTRIBUTES = frozenset({"_meta_iterator", "_meta_source", "_data_iterator"})

    def __setattr__(self, name, value):
        if name in self._PER_CALL_ATTRIBUTES:
            return object.__setattr__(self, name, value)
        super().__setattr__(name, value)

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

        The meta batches start at the first step, after the callbacks'
        `on_train_begin`, with the meta batch after the last one the meta
        optimizer used. Callbacks that restore a backup
        (`tml.callbacks.MetaBackupAndRestore`, `keras.callbacks.BackupAndRestore`)
        run before the others, so everything starts from the restored state.
        The progress bar (`tml.callbacks.MetaProgbarLogger`) shows the loss,
        the metrics and the meta objective; `History` holds every entry.
        """
        self._assert_compile_called("fit")
        self._check_fit_supported("fit")
        arguments = inspect.signature(keras.Model.fit).bind(self, x, y, *args, **kwargs).arguments
        del arguments["self"]
        if meta_data is not None and meta_split is not None:
            raise ValueError(
                "Arguments `meta_data` and `meta_split` are mutually exclusive. "
                f"Received: meta_data of type {type(meta_data).__name__} and "
                f"meta_split={meta_split!r}. Pass only one."
            )
        check_positive_int("meta_batch_size", meta_batch_size, allow_none=True)
        meta_data_lib.check_not_text("x", arguments.get("x"))
        if meta_split is not None:
            train, meta_data = meta_data_lib.split_meta(
                arguments.get("x"), arguments.get("y"), arguments.get("sample_weight"), meta_split
            )
            arguments["x"], arguments["y"], arguments["sample_weight"] = train
        if self.meta_every > 0:
            if meta_data is None:
                raise ValueError(
                    "`MetaModel.fit` needs data for the meta objective. Pass "
                    "`meta_data=(x_meta, y_meta)` (or a tf.data.Dataset), or "
                    "`meta_split=0.1` to hold out part of x/y. Received neither "
                    f"(with meta_every={self.meta_every}; use meta_every=0 to "
                    "train with a frozen loss)."
                )
            # The iterator is built at the first step, after the callbacks'
            # `on_train_begin` (where a backup may restore the meta position).
            meta_data = self._check_meta_data(meta_data)
        callbacks, guard_check = arguments.get("callbacks"), None
        if self.meta_guard is not None and meta_data is not None and self.meta_every > 0:
            meta_data, check_data = guard_lib.split_check_data(meta_data, self.meta_guard)
            if check_data is not None:
                guard_check = guard_lib.GuardCheck(check_data, self.meta_guard)
        if self.meta_every > 0:
            # Third: the weight of the meta batches the model and the guard's run train on.
            self._meta_source = (
                meta_data,
                meta_batch_size or arguments.get("batch_size") or 32,
                guard_lib.meta_samples_per_step(
                    arguments.get("x"), meta_data, self.meta_every, arguments
                ),
            )
        arguments["callbacks"] = fit_callbacks.arranged(
            callbacks, arguments.get("verbose", "auto"), guard_check
        )
        self._host_step = None
        self._data_iterator, self._data_batches, self._resume = None, 0, None
        self._restored_step = None  # Set by a backup callback that restored a step.
        # With `steps_per_epoch` Keras keeps one data iterator across epochs.
        self._iterator_spans_epochs = arguments.get("steps_per_epoch") is not None
        try:
            return super().fit(**arguments)
        finally:
            self._meta_iterator, self._meta_source = None, None
            self._data_iterator, self._resume = None, None
            self._release_iterators()

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
        self._check_fit_supported("train_on_batch")
        step = int(self.optimizer.iterations.numpy())
        if meta_batch is not None:
            meta_batch = meta_data_lib.unpack_meta_data(meta_batch)
            meta_data_lib.check_meta_arrays(
                self, meta_batch[0], meta_batch[1], not self.loss.regression
            )
            self._meta_iterator = self._one_meta_batch(meta_batch)
        elif self.meta_every and not step % self.meta_every:
            raise ValueError(
                "This `train_on_batch` step is a meta step (meta_every="
                f"{self.meta_every}) but received no `meta_batch`. Pass "
                "`meta_batch=(x_meta, y_meta)`, or compile with meta_every=0 "
                "to train with a frozen loss."
            )
        self._host_step = None
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

    def _check_meta_data(self, meta_data):
        meta_data = meta_data_lib.unpack_meta_data(meta_data)
        if meta_data_lib.is_dataset(meta_data):
            meta_data_lib.check_meta_dataset(self, meta_data)
        else:
            meta_data_lib.check_meta_arrays(
                self, meta_data[0], meta_data[1], not self.loss.regression
            )
        return meta_data

    def _make_meta_iterator(self, meta_data, batch_size):
        # Every meta step (applied or skipped) used one meta batch and counted
        # one meta-optimizer iteration: a restored or reloaded model goes on
        # with the meta batch an uninterrupted run would use next.
        meta_steps_done = int(self.meta_optimizer.iterations.numpy())
        dataset = meta_data_lib.meta_dataset(
            meta_data, batch_size, seed=self.meta_seed, skip_batches=meta_steps_done
        )
        return self._meta_batches(dataset)
