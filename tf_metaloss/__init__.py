"""tf_metaloss: Keras losses that learn while the model trains.

`import tf_metaloss` loads the whole library, so `keras.models.load_model` finds
every class it registers. Only the command line (`tf-metaloss`, `python -m
tf_metaloss`) loads lazily, what the command it runs needs, so `--help` and
`--version` answer without loading TensorFlow.

Example:

>>> import keras
>>> import numpy as np
>>> import tf_metaloss as tml
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(256, 8)).astype("float32")
>>> y = (x[:, 0] > 0).astype("int32")
>>> model = tml.MetaModel(keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)]))
>>> model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True), meta_optimizer="adam")
>>> history = model.fit(x, y, meta_split=0.1, epochs=2, verbose=0)
>>> sorted(history.history)  # the meta objective and phi are logged with the loss
['guard_objective', 'guard_reverted', 'guard_start_objective', 'loss', 'meta_grad_norm',
 'meta_objective', 'phi/correction', 'skipped_updates']
"""

import importlib
import sys

__version__ = "0.2.0"

# Public name -> the module that defines it. Importing them loads Keras and
# TensorFlow (seconds), so the package loads them on first use (PEP 562):
# `import tf_metaloss` alone, e.g. for `tf-metaloss --help`, stays instant.
_SUBMODULES = (
    "callbacks",
    "diagnostics",
    "evaluation",
    "losses",
    "meta",
    "models",
    "plotting",
    "search",
    "testing",
    "text",
)
_NAMES = {
    "BlendLoss": "tf_metaloss.losses",
    "LearnableLoss": "tf_metaloss.losses",
    "MetaLoss": "tf_metaloss.losses",
    "NeuralLoss": "tf_metaloss.losses",
    "PolynomialLoss": "tf_metaloss.losses",
    "SampleWeightedLoss": "tf_metaloss.losses",
    "MetaModel": "tf_metaloss.models",
}

__all__ = sorted(_NAMES) + list(_SUBMODULES)


_loading = False


def _load():
    """Imports the whole library, so that every class it registers with Keras
    (`keras.saving.register_keras_serializable`) is known to
    `keras.models.load_model`, as after an eager `import tf_metaloss`."""
    global _loading
    if _loading:
        return
    _loading = True
    try:
        for name in _SUBMODULES:
            importlib.import_module(f"{__name__}.{name}")
        for name, module in _NAMES.items():
            globals()[name] = getattr(sys.modules[module], name)
    finally:
        _loading = False


def __getattr__(name):
    # A subpackage loads alone: the library's own modules import each other as
    # `from tf_metaloss import losses`, which must not load everything midway.
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    # A class is what a program uses first (`tml.MetaModel`): load everything.
    if name in _NAMES:
        _load()
        if name not in globals():  # Asked for while the library loads.
            return getattr(importlib.import_module(_NAMES[name]), name)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


def _is_command_line():
    """True while `tf-metaloss` or `python -m tf_metaloss` starts: the command
    line loads only what the command it runs needs (`--help` needs nothing)."""
    program = sys.argv[0] if sys.argv else ""
    return program == "-m" or program.replace("\\", "/").rsplit("/", 1)[-1] in (
        "tf-metaloss",
        "tf-metaloss.exe",
    )


# A program loads everything at once, so every class is registered for
# `keras.models.load_model` whatever it imports next; only the command line
# waits until a command needs the library.
if "keras" in sys.modules or not _is_command_line():
    _load()
