"""`MetaTensorBoard`: TensorBoard summaries of what the loss is learning."""

import collections
import os
import warnings

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tf_metaloss import backend
from tf_metaloss import plotting
from tf_metaloss import validation
from tf_metaloss.callbacks.monitor import MetaStepMonitor
from tf_metaloss.callbacks.monitor import check_meta_model
from tf_metaloss.losses.sample_weighted import SampleWeightedLoss
from tf_metaloss.models import tasks

__all__ = ["MetaTensorBoard", "learned_loss_curve"]


def learned_loss_curve(loss, parameter_values=None, points=101, num_classes=10, residual_range=3.0):
    """The learned loss of one sample as a function of a single number.

    Classification: the loss against the predicted probability of the true
    class `p`, swept over `(0.01, 0.99)`, the remaining probability spread
    evenly over the other `num_classes - 1` classes (one sigmoid unit when
    `num_classes=1`); logits are `log(probs)` when the loss takes logits.
    Regression: the loss against the residual `y_pred - y_true` in
    `[-residual_range, residual_range]` (target 0, one output).

    For `SampleWeightedLoss` the sweep is one batch, so the weights are
    normalised over the swept points.

    Args:
        loss: a `LearnableLoss`.
        parameter_values: list of phi tensors (same order as
            `loss.trainable_variables`); `None` uses the current phi.
        points: number of points of the sweep.
        num_classes: classes of the model's output (classification).
        residual_range: half-width of the residual sweep (regression).

    Returns:
        `(x, values)`: two 1-D numpy arrays.

    Example:

    >>> p, values = tml.callbacks.learned_loss_curve(tml.MetaLoss(from_logits=True), points=5)
    >>> np.allclose(values, (1 - p**0.7) / 0.7, atol=1e-5)   # MetaLoss starts as GCE, q=0.7
    True
    """
    if loss.regression:
        x = np.linspace(-residual_range, residual_range, points).astype("float32")
        y_true = np.zeros((points, 1), "float32")
        y_pred = x[:, None]
    else:
        x = np.linspace(0.01, 0.99, points).astype("float32")
        if num_classes == 1:
            y_true = np.ones((points, 1), "float32")
            y_pred = np.log(x / (1.0 - x)) if loss.from_logits else x
            y_pred = y_pred[:, None].astype("float32")
        else:
            rest = (1.0 - x) / (num_classes - 1)
            probs = np.repeat(rest[:, None], num_classes, axis=1)
            probs[:, 0] = x
            y_true = np.zeros((points,), "int32")
            y_pred = (np.log(probs) if loss.from_logits else probs).astype("float32")
    parameters = loss.parameters(parameter_values)
    values = loss.compute(parameters, ops.convert_to_tensor(y_true), ops.convert_to_tensor(y_pred))
    return x, np.asarray(ops.convert_to_numpy(values), dtype=np.float64)


class MetaTensorBoard(keras.callbacks.Callback):
    """TensorBoard summaries of a `MetaModel`'s learned loss.

    Writes to its own run, `log_dir/run_name` (default `metaloss`), so it can
    be used beside `keras.callbacks.TensorBoard(log_dir)` (runs `train`,
    `validation`) or instead of it. The step axis of every summary is the
    optimizer step (`model.optimizer.iterations`).

    Scalars, per meta-update (every `update_freq`-th one; with
    `update_freq="epoch"` once per epoch, averaged over its updates):

    - `phi/<label>`: every loss parameter (as in the train logs); parameters
      with more than 8 elements (neural losses) as their norm `phi/<name>_norm`;
      `phi/distance_from_start`: L2 distance of phi from its value at the start
      of the first `fit`.
    - `meta/objective`: the meta objective of the update (from the step
      logs, see `tf_metaloss.callbacks.monitor`).
    - `meta/grad_norm`: the meta-gradient norm before clipping.
    - `meta/grad_norm_variance`: the sample variance of `meta/grad_norm` over
      the last `variance_window` meta-updates (with `update_freq="epoch"`: over
      the epoch's updates). It measures how noisy the meta-gradient is from
      step to step; it is *not* the variance of the training gradient, which
      cannot be had from outside the step without another backward pass.
    - `meta/skipped_updates`: steps whose update was skipped (non-finite
      values) since this callback's first `fit` began, meta or plain.

    Every `histogram_freq` epochs: histograms `phi/<name>` of each parameter;
    with `probe_data=(x, y)`, `probe/per_sample_loss` of the learned loss on
    the probe batch and, for `SampleWeightedLoss`, `probe/sample_weights`;
    with `noise_mask` (True where a probe label was corrupted, e.g. the
    `mask` of `tf_metaloss.evaluation.inject_label_noise`), the same
    histograms split into `..._clean` and `..._corrupted`, and scalars
    `probe/mean_weight_clean` / `probe/mean_weight_corrupted`
    (`mean_loss_...` for other losses).

    Every `image_freq` epochs: the image `loss_curve`, the learned loss of one
    sample against the predicted probability of the true class
    (classification) or the residual (regression), drawn over the same curve
    at the start of the first `fit` (see `learned_loss_curve`).

    Every epoch, for a loss with a `formula()` (`SymbolicLoss`): the text
    `loss/formula`, the formula with the constants of the epoch's end.

    Under `MultiWorkerMirroredStrategy` only the chief writes summaries; the
    other workers write nothing.

    Args:
        log_dir: the TensorBoard log directory.
        probe_data: optional `(x, y)` batch for the per-sample histograms.
        noise_mask: optional boolean array (or an object with a `.mask`, such
            as `NoisyLabels`), one entry per probe sample.
        run_name: subdirectory of `log_dir` written to.
        update_freq: write scalars every `update_freq` meta-updates, or
            `"epoch"`.
        histogram_freq: epochs between histograms (0 disables them).
        image_freq: epochs between loss-curve images (0 disables them; they need
            matplotlib, the `eval` extra).
        variance_window: meta-updates in the grad-norm variance window (>= 2).
        num_classes: classes of the model output for the loss curve; `None`
            reads it from the model's output shape.
        curve_points: points of the loss curve.
        residual_range: half-width of the residual axis (regression).

    Example:

    >>> x = np.random.default_rng(0).normal(size=(128, 8)).astype("float32")
    >>> y = (x[:, 0] > 0).astype("int32")
    >>> model = tml.MetaModel(keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)]))
    >>> model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True))
    >>> noisy = tml.evaluation.inject_label_noise(y[:32], rate=0.4, seed=0)
    >>> history = model.fit(x, y, meta_split=0.1, epochs=2, verbose=0, callbacks=[
    ...     keras.callbacks.TensorBoard("runs/exp1"),
    ...     tml.callbacks.MetaTensorBoard(
    ...         "runs/exp1", probe_data=(x[:32], noisy.labels), noise_mask=noisy),
    ... ])
    >>> import os
    >>> sorted(os.listdir("runs/exp1"))  # `tensorboard --logdir runs/exp1` shows both
    ['metaloss', 'train']
    """

    def __init__(
        self,
        log_dir,
        probe_data=None,
        noise_mask=None,
        run_name="metaloss",
        update_freq=1,
        histogram_freq=1,
        image_freq=1,
        variance_window=20,
        num_classes=None,
        curve_points=101,
        residual_range=3.0,
    ):
        super().__init__()
        if not isinstance(log_dir, (str, os.PathLike)) or not str(log_dir):
            raise ValueError(
                "Invalid value for argument `log_dir`. Expected a directory path. "
                f"Received: log_dir={log_dir!r}"
            )
        if update_freq != "epoch":
            validation.check_int(
                "update_freq",
                update_freq,
                minimum=1,
                expected="a positive integer or one of ['epoch']",
            )
        validation.check_int("histogram_freq", histogram_freq, minimum=0)
        validation.check_int("image_freq", image_freq, minimum=0)
        validation.check_int("variance_window", variance_window, minimum=2)
        validation.check_positive_int("num_classes", num_classes, allow_none=True)
        validation.check_positive_int("curve_points", curve_points)
        if image_freq:
            plotting.require_matplotlib(
                "`MetaTensorBoard`'s loss-curve images", "or pass image_freq=0"
            )
        self.log_dir = os.fspath(log_dir)
        self.run_name = run_name
        self.probe_data = self._check_probe(probe_data)
        self.noise_mask = self._check_mask(noise_mask, self.probe_data)
        self.update_freq = update_freq
        self.histogram_freq = histogram_freq
        self.image_freq = image_freq
        self.variance_window = variance_window
        self.num_classes = num_classes
        self.curve_points = curve_points
        self.residual_range = float(residual_range)
        self._monitor = MetaStepMonitor(read_phi=False)
        self._writer = None
        self._start_phi = None
        self._norms = collections.deque(maxlen=variance_window)
        self._epoch_records = []
        self._updates_seen = 0
        self._skipped = 0
        self._warned_units = False
        self._chief = True

    # -- argument checks -------------------------------------------------------
    @staticmethod
    def _check_probe(probe_data):
        if probe_data is None:
            return None
        if not isinstance(probe_data, (tuple, list)) or len(probe_data) != 2:
            raise ValueError(
                "Invalid value for argument `probe_data`. Expected a tuple "
                f"(x, y). Received: probe_data of type {type(probe_data).__name__}"
            )
        x, y = probe_data
        y = np.asarray(y)
        n_x = len(keras.tree.flatten(x)[0])
        if n_x != len(y):
            raise ValueError(
                "Invalid value for argument `probe_data`. x and y must have the "
                f"same number of samples. Received: {n_x} inputs and {len(y)} labels."
            )
        return x, y

    @staticmethod
    def _check_mask(noise_mask, probe_data):
        if noise_mask is None:
            return None
        if probe_data is None:
            raise ValueError(
                "Argument `noise_mask` needs `probe_data`: the mask marks which "
                "probe labels were corrupted. Pass probe_data=(x, noisy_labels)."
            )
        mask = np.asarray(getattr(noise_mask, "mask", noise_mask))
        if mask.dtype != bool or mask.shape != (len(probe_data[1]),):
            raise ValueError(
                "Invalid value for argument `noise_mask`. Expected a boolean array "
                f"with one entry per probe sample (shape ({len(probe_data[1])},)). "
                f"Received: dtype={mask.dtype}, shape={mask.shape}"
            )
        return mask

    # -- fit hooks -----------------------------------------------------------------
    def on_train_begin(self, logs=None):
        check_meta_model(self.model, "MetaTensorBoard")
        self._chief = backend.is_chief(getattr(self.model, "distribute_strategy", None))
        if not self._chief:
            return
        self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, self.run_name))
        if self._start_phi is None:
            self._start_phi = [np.array(v.numpy()) for v in self.model.loss.trainable_variables]

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_records = []
        self._monitor.new_epoch()

    def on_train_batch_begin(self, batch, logs=None):
        if self._chief:
            self._monitor.begin(self.model)

    def on_train_batch_end(self, batch, logs=None):
        if not self._chief:
            return
        record = self._monitor.end(self.model, logs)
        if record is None:
            return
        self._skipped += record.skipped
        if record.meta_updates == 0:
            return
        self._updates_seen += 1
        if record.meta_grad_norm is not None:
            self._norms.append(record.meta_grad_norm)
        self._epoch_records.append(record)
        if self.update_freq != "epoch" and self._updates_seen % self.update_freq == 0:
            variance = np.var(self._norms, ddof=1) if len(self._norms) >= 2 else None
            self._write_scalars(record.step, record.meta_objective, record.meta_grad_norm, variance)

    def on_epoch_end(self, epoch, logs=None):
        if not self._chief:
            return
        step = int(self.model.optimizer.iterations.numpy())
        if self.update_freq == "epoch" and self._epoch_records:
            losses = [r.meta_objective for r in self._epoch_records if r.meta_objective is not None]
            norms = [r.meta_grad_norm for r in self._epoch_records if r.meta_grad_norm is not None]
            self._write_scalars(
                step,
                float(np.mean(losses)) if losses else None,
                float(np.mean(norms)) if norms else None,
                float(np.var(norms, ddof=1)) if len(norms) >= 2 else None,
            )
        with self._writer.as_default(step=step):
            if self.histogram_freq and (epoch + 1) % self.histogram_freq == 0:
                self._write_histograms()
            if self.image_freq and (epoch + 1) % self.image_freq == 0:
                self._write_loss_curve(epoch)
            if callable(getattr(self.model.loss, "formula", None)):
                tf.summary.text("loss/formula", self.model.loss.formula())
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None

    # -- writers ---------------------------------------------------------------
    def _write_scalars(self, step, meta_objective, grad_norm, variance):
        loss = self.model.loss
        with self._writer.as_default(step=step):
            for tag, value in loss.parameter_summary().items():
                tf.summary.scalar(tag, float(value))
            distance = np.sqrt(
                sum(
                    np.sum(np.square(v.numpy() - s))
                    for v, s in zip(loss.trainable_variables, self._start_phi)
                )
            )
            tf.summary.scalar("phi/distance_from_start", float(distance))
            if meta_objective is not None:
                tf.summary.scalar("meta/objective", meta_objective)
            if grad_norm is not None:
                tf.summary.scalar("meta/grad_norm", grad_norm)
            if variance is not None:
                tf.summary.scalar("meta/grad_norm_variance", float(variance))
            tf.summary.scalar("meta/skipped_updates", float(self._skipped))

    def _write_histograms(self):
        loss = self.model.loss
        for name, variable in zip(loss.parameter_names, loss.trainable_variables):
            tf.summary.histogram(f"phi/{name}", variable.numpy())
        if self.probe_data is None:
            return
        x, y = self.probe_data
        y_pred = ops.convert_to_tensor(self.model(x, training=False), "float32")
        per_sample = ops.convert_to_numpy(loss.call(y, y_pred))
        self._write_split("per_sample_loss", "mean_loss", per_sample)
        if isinstance(loss, SampleWeightedLoss):
            weights = ops.convert_to_numpy(loss.sample_weights(y, y_pred))
            self._write_split("sample_weights", "mean_weight", weights)

    def _write_split(self, name, mean_name, values):
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        tf.summary.histogram(f"probe/{name}", values)
        if self.noise_mask is None:
            return
        for part, mask in (("clean", ~self.noise_mask), ("corrupted", self.noise_mask)):
            if mask.any():
                tf.summary.histogram(f"probe/{name}_{part}", values[mask])
                tf.summary.scalar(f"probe/{mean_name}_{part}", float(values[mask].mean()))

    def _write_loss_curve(self, epoch):
        loss = self.model.loss
        units = 1
        if not loss.regression:
            units = self.num_classes or tasks.output_units(self.model)
            if units is None:
                if not self._warned_units:
                    warnings.warn(
                        "MetaTensorBoard: cannot tell the number of classes from "
                        "the model's outputs; pass `num_classes=` to get the "
                        "`loss_curve` image.",
                        stacklevel=2,
                    )
                    self._warned_units = True
                return
        kwargs = dict(
            points=self.curve_points, num_classes=units, residual_range=self.residual_range
        )
        x, start = learned_loss_curve(
            loss, [ops.convert_to_tensor(v) for v in self._start_phi], **kwargs
        )
        _, now = learned_loss_curve(loss, **kwargs)
        xlabel = "residual (y_pred - y_true)" if loss.regression else "p(true class)"
        fig = plotting.curves_figure(
            x,
            {"start of training": start, f"epoch {epoch + 1}": now},
            xlabel=xlabel,
            ylabel="loss",
            title=f"{type(loss).__name__}, epoch {epoch + 1}",
            styles={"start of training": "--"},
        )
        png = plotting.figure_to_png(fig)
        image = tf.expand_dims(tf.io.decode_png(png, channels=4), 0)
        tf.summary.image("loss_curve", image)
