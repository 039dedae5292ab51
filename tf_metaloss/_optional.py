"""Optional dependencies: imported when first needed, never by `import tf_metaloss`.

The core install (`pip install tf_metaloss`) brings TensorFlow, Keras,
TensorBoard and numpy. Everything else comes with an extra named for what it
enables; a feature that needs a missing one raises an `ImportError` that names
the `pip install` line to run.
"""

import importlib

# Top-level module -> (the package that provides it, the extra that installs it).
OPTIONAL_MODULES = {
    "matplotlib": ("matplotlib", "eval"),
    "sklearn": ("scikit-learn", "eval"),
    "tensorflow_datasets": ("tensorflow-datasets", "datasets"),
    "keras_hub": ("keras-hub", "nlp"),
    "sympy": ("sympy", "symbolic"),
    "ray": ("ray", "search"),
}


def install_hint(extra):
    """The command that installs an extra, e.g. `pip install "tf_metaloss[eval]"`."""
    return f'pip install "tf_metaloss[{extra}]"'


def import_optional(name, feature, alternative=None):
    """Imports the optional module `name`, or says which extra installs it.

    Args:
        name: a module of an optional dependency, e.g. `"sklearn.datasets"`.
        feature: what needs it, for the message, e.g. `"load_digits"`.
        alternative: optional text appended to the message (another way to
            avoid the dependency).

    Returns:
        The imported module.

    Raises:
        ImportError: the dependency is not installed; the message names the
            `pip install` line to run. An `ImportError` raised from inside an
            installed dependency (a broken install) propagates unchanged.
    """
    top = name.split(".")[0]
    if top not in OPTIONAL_MODULES:
        raise ValueError(
            "Invalid value for argument `name`. Expected a module of one of "
            f"{sorted(OPTIONAL_MODULES)}. Received: name={name!r}"
        )
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] != top:
            raise
        package, extra = OPTIONAL_MODULES[top]
        message = (
            f"{feature} needs {package}, which is not installed. Install it "
            f"with: {install_hint(extra)}"
        )
        if alternative:
            message += f" ({alternative})"
        raise ImportError(message, name=top) from error
