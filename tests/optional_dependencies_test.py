"""The core install works alone; a missing extra says which `pip install` fixes it."""

import os
import subprocess
import sys
import textwrap

import pytest

import tf_metaloss as tml
from tf_metaloss import _optional
from tf_metaloss import cli
from tf_metaloss import plotting
from tf_metaloss.evaluation import datasets
from tf_metaloss.evaluation import report


@pytest.fixture
def block(monkeypatch):
    """Makes packages unimportable, as if they were not installed."""

    def block_packages(*names):
        for name in names:
            loaded = [m for m in sys.modules if m == name or m.startswith(name + ".")]
            for module in loaded or [name]:
                # `None` in sys.modules makes `import` raise ModuleNotFoundError.
                monkeypatch.setitem(sys.modules, module, None)

    return block_packages


@pytest.mark.parametrize(
    "module, package, extra",
    [
        ("matplotlib", "matplotlib", "eval"),
        ("sklearn.datasets", "scikit-learn", "eval"),
        ("tensorflow_datasets", "tensorflow-datasets", "datasets"),
        ("keras_hub", "keras-hub", "nlp"),
        ("sympy", "sympy", "symbolic"),
        ("ray", "ray", "search"),
    ],
)
def test_import_optional_names_the_package_and_the_extra(block, module, package, extra):
    block(module.split(".")[0])
    with pytest.raises(ImportError) as error:
        _optional.import_optional(module, "This feature", "or do without it")
    assert str(error.value) == (
        f"This feature needs {package}, which is not installed. Install it with: "
        f'pip install "tf_metaloss[{extra}]" (or do without it)'
    )
    assert error.value.name == module.split(".")[0]
    assert isinstance(error.value.__cause__, ModuleNotFoundError)


def test_import_optional_returns_the_module_when_installed():
    assert _optional.import_optional("sklearn.datasets", "x").load_digits


def test_import_optional_keeps_a_broken_dependency_error(monkeypatch):
    # A dependency *of* the optional package is missing: not our extra's fault.
    def broken(name):
        raise ModuleNotFoundError("No module named 'scipy'", name="scipy")

    monkeypatch.setattr(_optional.importlib, "import_module", broken)
    with pytest.raises(ModuleNotFoundError, match="No module named 'scipy'"):
        _optional.import_optional("sklearn", "x")


def test_import_optional_rejects_a_module_that_is_not_an_extra():
    with pytest.raises(ValueError, match="Invalid value for argument `name`.*name='scipy'"):
        _optional.import_optional("scipy", "x")


# -- each feature that needs an extra -------------------------------------------


def test_ray_executor_needs_search(block):
    from tf_metaloss.search import executors

    block("ray")
    with pytest.raises(ImportError, match=r'The Ray executor needs ray.*"tf_metaloss\[search\]"'):
        executors.RayExecutor().start(task=None)


def test_formulas_are_printed_unsimplified_without_sympy(block):
    block("sympy")
    loss = tml.losses.SymbolicLoss(from_logits=True)
    assert loss.formula(simplify=True) == loss.formula() == "-log(p_true + 0)"


def test_load_digits_needs_eval(block):
    block("sklearn")
    with pytest.raises(
        ImportError, match=r'`load_digits` needs scikit-learn.*"tf_metaloss\[eval\]"'
    ):
        datasets.load_digits()


def test_load_tfds_needs_datasets(block):
    block("tensorflow_datasets")
    with pytest.raises(
        ImportError, match=r'`load_tfds` needs tensorflow-datasets.*"tf_metaloss\[datasets\]"'
    ):
        tml.evaluation.load_dataset("cifar10")


def test_figures_need_eval(block):
    block("matplotlib")
    with pytest.raises(ImportError, match=r'matplotlib.*pip install "tf_metaloss\[eval\]"'):
        plotting.curves_figure([0, 1], {"a": [0, 1]}, xlabel="x")


def test_meta_tensorboard_images_need_eval_unless_turned_off(block, tmp_path):
    block("matplotlib")
    with pytest.raises(ImportError, match=r"loss-curve images.*\[eval\].*or pass image_freq=0"):
        tml.callbacks.MetaTensorBoard(str(tmp_path))
    assert tml.callbacks.MetaTensorBoard(str(tmp_path), image_freq=0).image_freq == 0


def test_comparison_figures_need_eval_unless_turned_off(block, tmp_path):
    results = {"config": {}, "methods": [], "runs": []}
    block("matplotlib")
    with pytest.raises(ImportError, match=r"\[eval\].*or pass figures=False"):
        report.write_results(results, str(tmp_path))
    assert not (tmp_path / "results.json").exists()  # failed before writing anything


@pytest.mark.parametrize(
    "call, feature",
    [
        (lambda: tml.text.word_piece_vocabulary(["a good film"]), "word_piece_vocabulary"),
        (lambda: tml.text.bert_classifier(tml.text.BERT_RESERVED_TOKENS, 2), "bert_classifier"),
        (lambda: tml.text.meta_model(None), "meta_model"),
        (
            lambda: tml.evaluation.models.build_model("tiny_bert", (8,), 2, vocabulary_size=9),
            "'tiny_bert' model",
        ),
    ],
)
def test_text_needs_nlp(block, call, feature):
    block("keras_hub")
    with pytest.raises(
        ImportError,
        match=rf'{feature}.* needs keras-hub, which is not installed.*"tf_metaloss\[nlp\]"',
    ):
        call()


@pytest.mark.parametrize(
    "argv, package",
    [
        (["demo", "--tiny"], "scikit-learn"),
        (["compare", "--epochs", "1", "--seeds", "0"], "matplotlib"),
        (["plot", "audit.jsonl"], "matplotlib"),
    ],
)
def test_commands_print_the_install_line(block, tmp_path, monkeypatch, capsys, argv, package):
    monkeypatch.chdir(tmp_path)
    block("sklearn", "matplotlib")
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"tf-metaloss {argv[0]}: error: ")
    assert (
        f'needs {package}, which is not installed. Install it with: pip install "tf_metaloss[eval]"'
        in err
    )
    logs = tmp_path / "tf_metaloss_demo_logs"
    assert not logs.exists() or not os.listdir(logs)  # failed before training


# -- a core-only environment ------------------------------------------------------

CORE_ONLY = textwrap.dedent(
    """
    import importlib.abc
    import sys

    OPTIONAL = ("matplotlib", "sklearn", "tensorflow_datasets", "keras_hub", "keras_nlp")

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in OPTIONAL:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())

    import tf_metaloss as tml

    loaded = sorted(m for m in sys.modules if m.split(".")[0] in OPTIONAL)
    assert not loaded, loaded
    # Every subpackage is reachable after `import tf_metaloss`.
    for name in ("callbacks", "diagnostics", "evaluation", "losses", "models", "plotting", "text"):
        assert getattr(tml, name).__name__ == "tf_metaloss." + name
    assert tml.evaluation.compare.CompareConfig and tml.evaluation.metrics.accuracy
    # The command line starts, and says what a command misses.
    from tf_metaloss import cli

    assert cli.main(["--version"]) == 0
    assert cli.main(["demo", "--tiny"]) == 1
    # The core trains a MetaModel.
    import numpy as np
    import keras

    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    model = tml.MetaModel(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
    model.compile(optimizer="sgd", loss=tml.MetaLoss(from_logits=True))
    model.fit(x, y, meta_split=0.25, batch_size=8, epochs=1, verbose=0)
    print("core only: ok")
    """
)


@pytest.mark.integration
def test_import_and_train_with_the_core_only(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", CORE_ONLY],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        # The tf_metaloss under test, whichever copy (if any) is installed.
        env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(tml.__file__))},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "core only: ok"
    assert (
        "tf-metaloss demo: error: The demo needs scikit-learn, which is not installed. "
        'Install it with: pip install "tf_metaloss[eval]"'
    ) in result.stderr
    assert f"tf-metaloss {tml.__version__}" in result.stdout  # printed by --version
