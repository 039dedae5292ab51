"""Loss landscapes around a model's weights (Li et al. 2018).

`loss_landscape` evaluates the loss on 1-D or 2-D slices `w + a*d1 (+ b*d2)`
through the current weights `w` along random directions, each rescaled filter
by filter (per output unit) to the norm of the matching weights, so that
slices of differently scaled networks (e.g. trained with cross-entropy or with
a learned loss) can be compared. The model runs through `stateless_call` with
the perturbed weights as tensors: its variables are never assigned, so the
weights are exactly as before the call.

Reference: Li et al., "Visualizing the loss landscape of neural nets"
(NeurIPS 2018).
"""

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tf_metaloss import backend
from tf_metaloss import plotting
from tf_metaloss import validation
from tf_metaloss.losses import functional
from tf_metaloss.losses.fixed import FixedLoss

__all__ = [
    "LandscapeResult",
    "filter_normalized_direction",
    "log_landscape_to_tensorboard",
    "loss_landscape",
    "plot_landscape",
]


@dataclasses.dataclass
class LandscapeResult:
    """A loss landscape.

    Attributes:
        alphas: 1-D grid of the step along the first direction.
        betas: 1-D grid along the second direction (`None` for 1-D).
        losses: `(points,)` or `(points, points)` losses (`[i, j]` at
            `alphas[i]`, `betas[j]`).
        center_loss: the loss at the current weights.
        directions: 1 or 2.
        span: the grid covers `[-span, span]`.
        loss_name: the name of the loss evaluated.
        sharpness: dict with `max_increase` (largest loss increase over the
            centre within the grid), `max_increase_relative`
            (`max_increase / (1 + center_loss)`, as in Keskar et al. 2017),
            `curvature` (one per direction: `d^2 loss / d a^2` from a quadratic
            least-squares fit of the 1-D slice through the centre along that
            direction), `fit` (the fits' coefficients `[c2, c1, c0]`) and
            `fit_r2` (their coefficients of determination).
        direction_vectors: per direction, the list of direction tensors
            (numpy, one per trainable weight).
    """

    alphas: np.ndarray
    betas: object
    losses: np.ndarray
    center_loss: float
    directions: int
    span: float
    loss_name: str
    sharpness: dict
    direction_vectors: list = dataclasses.field(repr=False, default_factory=list)

    def to_dict(self):
        """A JSON-able dict (without the direction vectors)."""
        return {
            "directions": self.directions,
            "span": self.span,
            "loss": self.loss_name,
            "center_loss": self.center_loss,
            "sharpness": self.sharpness,
            "alphas": self.alphas.tolist(),
            "betas": None if self.betas is None else self.betas.tolist(),
            "losses": self.losses.tolist(),
        }


def filter_normalized_direction(weights, rng, ignore_biases=True):
    """A random direction rescaled filter by filter to the weights' norms.

    For a weight of rank >= 2 (a Dense kernel `(in, out)`, a convolution kernel
    `(..., in, out)`), each output unit's slice `d[..., k]` of a standard
    normal direction is rescaled to the norm of `w[..., k]`. Weights of rank
    <= 1 (biases, normalisation scales) get a zero direction when
    `ignore_biases` (as in Li et al.), otherwise a direction of the same total
    norm.

    Args:
        weights: list of numpy arrays.
        rng: a `numpy.random.Generator`.
        ignore_biases: keep rank <= 1 weights fixed.
    """
    direction = []
    for w in weights:
        w = np.asarray(w, dtype=np.float64)
        d = rng.standard_normal(w.shape)
        if w.ndim <= 1:
            if ignore_biases:
                d = np.zeros_like(w)
            else:
                d = d / (np.linalg.norm(d) + 1e-12) * np.linalg.norm(w)
        else:
            axes = tuple(range(w.ndim - 1))
            d_norm = np.sqrt(np.sum(d**2, axis=axes, keepdims=True))
            w_norm = np.sqrt(np.sum(w**2, axis=axes, keepdims=True))
            d = d / (d_norm + 1e-12) * w_norm
        direction.append(d)
    return direction


def _resolve_loss(model, loss, from_logits):
    if loss is None:
        # A MetaModel's fixed meta objective (by default the bounded MAE term
        # for classification); pass `loss=` to compare models on one objective.
        loss = getattr(model, "meta_objective", None)
        if loss is None:
            loss = getattr(model, "loss", None)
        if loss is None:
            raise ValueError(
                "Argument `loss` is required for a model that was not compiled "
                "with a loss. Pass e.g. loss='crossentropy'."
            )
    if isinstance(loss, str):
        if loss in functional.BASE_LOSSES:
            loss = FixedLoss(loss, from_logits=bool(from_logits))
        else:
            loss = keras.losses.get(loss)
    if not callable(loss):
        raise ValueError(
            "Invalid value for argument `loss`. Expected a Keras loss, a loss "
            f"name or a callable `(y_true, y_pred)`. Received: loss={loss!r}"
        )
    if isinstance(loss, FixedLoss):
        name = loss.base_loss  # e.g. a MetaModel's meta objective
    else:
        name = getattr(loss, "name", None) or getattr(loss, "__name__", type(loss).__name__)
    return loss, name


def _batches(data, batch_size):
    if isinstance(data, tf.data.Dataset):
        for batch in data.as_numpy_iterator():
            yield keras.utils.unpack_x_y_sample_weight(batch)
        return
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
        raise ValueError(
            "Invalid value for argument `data`. Expected a tuple (x, y) or "
            "(x, y, sample_weight) of arrays, or a batched tf.data.Dataset. "
            f"Received: data of type {type(data).__name__}"
        )
    x, y = data[0], data[1]
    sw = data[2] if len(data) == 3 else None
    n = len(keras.tree.flatten(x)[0])
    for start in range(0, n, batch_size):
        part = slice(start, start + batch_size)
        yield (
            keras.tree.map_structure(lambda a, part=part: a[part], x),
            y[part],
            None if sw is None else sw[part],
        )


def _check_args(directions, span, points, batch_size):
    if isinstance(directions, bool) or directions not in (1, 2):
        validation.invalid("directions", directions, "1 or 2")
    validation.check_positive("span", span)
    validation.check_int("points", points, minimum=3)
    validation.check_positive_int("batch_size", batch_size)


def loss_landscape(
    model,
    data,
    directions=1,
    span=1.0,
    points=21,
    seed=0,
    loss=None,
    from_logits=False,
    ignore_biases=True,
    batch_size=512,
):
    """1-D or 2-D slices of the loss around a model's current weights.

    Args:
        model: a built Keras model (a `MetaModel` too).
        data: `(x, y)` or `(x, y, sample_weight)` arrays, or a finite batched
            `tf.data.Dataset`; the loss is its average over all of it.
        directions: 1 (a line) or 2 (a plane).
        span: the grid covers `[-span, span]` in units of the
            filter-normalised directions (1 = a step as large as the weights).
        points: grid points per direction (>= 3; odd puts one on the centre).
        seed: seed of the random directions (the same seed gives the same raw
            directions to models of the same architecture).
        loss: the loss to evaluate: a Keras loss, a Keras loss name, a base
            loss name of `tf_metaloss.losses.functional` (built with
            `from_logits`), or a callable `(y_true, y_pred)`. `None` uses a
            `MetaModel`'s fixed meta objective, else the compiled loss.
        from_logits: for a base loss name: whether the model outputs logits.
        ignore_biases: keep biases and other rank <= 1 weights fixed.
        batch_size: batch size of the evaluation (array data).

    Returns:
        A `LandscapeResult` (see its `sharpness`).

    Example:

    >>> x = np.random.default_rng(0).normal(size=(128, 8)).astype("float32")
    >>> y = (x[:, 0] > 0).astype("int32")
    >>> model = tml.MetaModel(keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)]))
    >>> model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True))
    >>> history = model.fit(x, y, meta_split=0.1, epochs=2, verbose=0)
    >>> result = tml.diagnostics.loss_landscape(model, (x, y), points=21)
    >>> result.alphas.shape, result.losses.shape
    ((21,), (21,))
    >>> sorted(result.sharpness)
    ['curvature', 'fit', 'fit_r2', 'max_increase', 'max_increase_relative']
    >>> fig = tml.diagnostics.plot_landscape({"learned loss": result}, "landscape.png")
    """
    _check_args(directions, span, points, batch_size)
    loss_fn, loss_name = _resolve_loss(model, loss, from_logits)
    if not model.built:
        raise ValueError("`loss_landscape` needs a built model (call it on data or fit it first).")
    variables = model.trainable_variables
    weights = [ops.convert_to_numpy(v) for v in variables]
    rng = np.random.default_rng(seed)
    vectors = [filter_normalized_direction(weights, rng, ignore_biases) for _ in range(directions)]
    dtypes = [v.dtype for v in variables]
    base = [ops.convert_to_tensor(w) for w in weights]
    d1 = [ops.convert_to_tensor(d, dtype=t) for d, t in zip(vectors[0], dtypes)]
    d2 = (
        [ops.convert_to_tensor(d, dtype=t) for d, t in zip(vectors[1], dtypes)]
        if directions == 2
        else [ops.zeros_like(w) for w in base]
    )
    non_trainable = [ops.convert_to_tensor(v) for v in model.non_trainable_variables]

    def batch_loss(alpha, beta, x, y, sw):
        values = [
            w + ops.cast(alpha, w.dtype) * a + ops.cast(beta, w.dtype) * b
            for w, a, b in zip(base, d1, d2)
        ]
        y_pred, _ = model.stateless_call(values, non_trainable, x, training=False)
        if isinstance(loss_fn, keras.losses.Loss):
            return loss_fn(y, y_pred, sample_weight=sw)
        value = loss_fn(y, y_pred)
        if sw is not None:
            value = value * ops.cast(ops.reshape(sw, ops.shape(value)), value.dtype)
        return functional.mean(value, axis=None)

    # One compiled function for every point (alpha and beta are its inputs,
    # in the weights' widest float type).
    batch_loss = backend.compile_function(batch_loss)
    widest = "float64" if any(str(t) == "float64" for t in dtypes) else "float32"

    def evaluate(alpha, beta):
        total, count = 0.0, 0
        for x, y, sw in _batches(data, batch_size):
            n = int(ops.shape(keras.tree.flatten(x)[0])[0])
            value = batch_loss(np.asarray(alpha, widest), np.asarray(beta, widest), x, y, sw)
            total += float(ops.convert_to_numpy(value)) * n
            count += n
        if count == 0:
            raise ValueError("Invalid value for argument `data`: it holds no samples.")
        return total / count

    grid = np.linspace(-span, span, points)
    center = evaluate(0.0, 0.0)
    if directions == 1:
        losses = np.array([evaluate(a, 0.0) for a in grid])
        slices = [losses]
    else:
        losses = np.array([[evaluate(a, b) for b in grid] for a in grid])
        mid = points // 2
        if points % 2 == 1:
            slices = [losses[:, mid], losses[mid, :]]
        else:
            slices = [
                np.array([evaluate(a, 0.0) for a in grid]),
                np.array([evaluate(0.0, b) for b in grid]),
            ]
    return LandscapeResult(
        alphas=grid,
        betas=grid.copy() if directions == 2 else None,
        losses=losses,
        center_loss=center,
        directions=directions,
        span=float(span),
        loss_name=str(loss_name),
        sharpness=_sharpness(grid, slices, losses, center),
        direction_vectors=vectors,
    )


def _sharpness(grid, slices, losses, center):
    curvature, fits, r2 = [], [], []
    for values in slices:
        coefficients = np.polyfit(grid, values, 2)
        fitted = np.polyval(coefficients, grid)
        spread = np.sum((values - values.mean()) ** 2)
        r2.append(float(1.0 - np.sum((values - fitted) ** 2) / spread) if spread > 0 else 1.0)
        curvature.append(float(2.0 * coefficients[0]))
        fits.append([float(c) for c in coefficients])
    increase = float(np.max(losses) - center)
    return {
        "max_increase": increase,
        "max_increase_relative": increase / (1.0 + abs(center)),
        "curvature": curvature,
        "fit": fits,
        "fit_r2": r2,
    }


def _as_dict(results):
    if isinstance(results, LandscapeResult):
        return {results.loss_name: results}
    if (
        isinstance(results, dict)
        and results
        and all(isinstance(r, LandscapeResult) for r in results.values())
    ):
        return results
    raise ValueError(
        "Invalid value for argument `results`. Expected a `LandscapeResult` or a "
        f"non-empty dict of them (label -> result). Received: {results!r}"
    )


def plot_landscape(results, path=None, title=None):
    """Draws one or several landscapes; writes a PNG when `path` is given.

    Args:
        results: a `LandscapeResult` or a dict `label -> LandscapeResult`
            (1-D: overlaid lines; 2-D: one contour panel each).
        path: optional output file.
        title: figure title.

    Returns:
        The matplotlib `Figure`.
    """
    fig = plotting.landscape_figure(_as_dict(results), title=title)
    if path is not None:
        directory = os.path.dirname(os.path.abspath(os.fspath(path)))
        os.makedirs(directory, exist_ok=True)
        plotting.save_figure(fig, path)
    return fig


def log_landscape_to_tensorboard(results, log_dir, step=0, name="landscape"):
    """Writes landscapes to TensorBoard: an image and sharpness scalars.

    Tags: `<name>` (the figure), and per label `<name>/<label>/center_loss`,
    `.../max_increase`, `.../curvature_<i>` (one per direction).

    Args:
        results: a `LandscapeResult` or a dict `label -> LandscapeResult`.
        log_dir: a directory (a summary writer is created and closed there)
            or a `tf.summary.SummaryWriter`.
        step: the summary step.
        name: the tag prefix.
    """
    results = _as_dict(results)
    own = not isinstance(log_dir, tf.summary.SummaryWriter)
    writer = tf.summary.create_file_writer(os.fspath(log_dir)) if own else log_dir
    png = plotting.figure_to_png(plotting.landscape_figure(results))
    with writer.as_default(step=step):
        tf.summary.image(name, tf.expand_dims(tf.io.decode_png(png, channels=4), 0))
        for label, result in results.items():
            tag = f"{name}/{label}"
            tf.summary.scalar(f"{tag}/center_loss", result.center_loss)
            tf.summary.scalar(f"{tag}/max_increase", result.sharpness["max_increase"])
            for i, value in enumerate(result.sharpness["curvature"]):
                tf.summary.scalar(f"{tag}/curvature_{i + 1}", value)
    writer.flush()
    if own:
        writer.close()
