"""The compiled loops are TPU-ready: static shapes, one trace, nothing read back.

And the pieces multi-worker training needs that one process can test: the
test loop reads its metrics across replicas, and the chief/worker helpers.
"""

import types

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_metaloss as tml
from tf_metaloss import backend

# Ops that call back into Python or print from inside a graph.
HOST_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc", "PrintV2", "Print"}


def _data(n=128, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = rng.integers(0, 3, n)
    return x, y


def _model(strategy=None, **compile_kwargs):
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((6,))
        hidden = keras.layers.Dense(8, activation="tanh")(inputs)
        hidden = keras.layers.Dropout(0.1)(hidden)
        model = tml.MetaModel(inputs, keras.layers.Dense(3)(hidden))
        model.compile(
            optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
            loss=tml.MetaLoss(from_logits=True),
            meta_optimizer=keras.optimizers.Adam(0.05),
            meta_every=3,
            meta_seed=0,
            metrics=["accuracy"],
            **compile_kwargs,
        )
    return model


class _CaptureIterators(keras.callbacks.Callback):
    """Keeps the data and meta iterators `fit` passed to the compiled loop."""

    iterators = None

    def on_train_batch_end(self, batch, logs=None):
        self.iterators = (self.model._data_iterator, self.model._meta_iterator)


def _fit(model, epochs=2, validation=True, callbacks=()):
    x, y = _data()
    x_val, y_val = _data(n=32, seed=1)
    return model.fit(
        tml.meta.data.resumable_dataset(x, y, batch_size=16, seed=0),
        steps_per_epoch=8,
        epochs=epochs,
        shuffle=False,
        meta_data=(x[:48], y[:48]),
        validation_data=(x_val, y_val) if validation else None,
        validation_batch_size=16,
        verbose=0,
        callbacks=list(callbacks),
    )


def _tensor_specs(element_spec):
    """The `TensorSpec`s of an element spec (each replica's, when distributed)."""
    for spec in tf.nest.flatten(element_spec):
        if hasattr(spec, "_value_specs"):  # PerReplicaSpec
            yield from _tensor_specs(spec._value_specs)
        else:
            yield spec


def _graph_ops(concrete):
    """Every op type in a concrete function, including loop bodies and branches."""
    graph_def = concrete.graph.as_graph_def()
    ops = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        ops |= {node.op for node in function.node_def}
    return ops


@pytest.mark.parametrize("distributed", [False, True], ids=["one_device", "mirrored"])
def test_fit_and_evaluate_trace_once_with_static_shapes(distributed, mirrored_strategy):
    strategy = mirrored_strategy() if distributed else None
    model = _model(strategy, steps_per_execution=2)
    capture = _CaptureIterators()
    _fit(model, callbacks=[capture])
    x_val, y_val = _data(n=32, seed=1)
    model.evaluate(x_val, y_val, batch_size=16, verbose=0)
    # Two epochs of meta and plain steps, two validations and an evaluate:
    # one trace of the training loop, one of the test loop.
    loop = model.train_function.compiled_loop
    assert loop.experimental_get_tracing_count() == 1
    assert model.test_function.compiled_loop.experimental_get_tracing_count() == 1
    assert int(model.optimizer.iterations.numpy()) == 16

    # The loop's inputs have static shapes, and its graph calls nothing on the host.
    for iterator in capture.iterators:
        for spec in _tensor_specs(iterator.element_spec):
            assert spec.shape.is_fully_defined(), spec
    concrete = loop.get_concrete_function(*capture.iterators)
    assert loop.experimental_get_tracing_count() == 1  # the same trace
    ops = _graph_ops(concrete)
    assert {"While", "StatelessWhile"} & ops and {"If", "StatelessIf"} & ops
    assert not ops & HOST_OPS, ops & HOST_OPS


@pytest.mark.parametrize("meta_method", ["neumann", "conjugate_gradient", "finite_difference"])
def test_the_estimators_keep_one_trace_and_no_host_ops(meta_method):
    model = _model(meta_method=meta_method, steps_per_execution=2)
    capture = _CaptureIterators()
    _fit(model, validation=False, callbacks=[capture])
    loop = model.train_function.compiled_loop
    assert loop.experimental_get_tracing_count() == 1
    assert int(model.meta_optimizer.iterations.numpy()) == 6  # steps 0, 3, ..., 15
    ops = _graph_ops(loop.get_concrete_function(*capture.iterators))
    assert loop.experimental_get_tracing_count() == 1
    assert not ops & HOST_OPS, ops & HOST_OPS


def test_xla_steps_trace_once():
    model = _model(jit_compile=True)
    _fit(model, validation=False)
    run_steps = model.train_function.run_steps
    assert run_steps.meta_step.experimental_get_tracing_count() == 1
    assert run_steps.plain_step.experimental_get_tracing_count() == 1
    # Meta steps 0, 3, ..., 15 of 16.
    assert int(model.meta_optimizer.iterations.numpy()) == 6


def test_evaluate_under_mirrored_strategy_matches_one_device(mirrored_strategy):
    x, y = _data(n=64, seed=2)
    one = _model()
    mirrored = _model(mirrored_strategy())
    mirrored.set_weights(one.get_weights())
    expected = one.evaluate(x, y, batch_size=16, return_dict=True, verbose=0)
    logs = mirrored.evaluate(x, y, batch_size=16, return_dict=True, verbose=0)
    assert sorted(logs) == ["accuracy", "loss", "meta_objective"]
    for key, value in expected.items():
        assert logs[key] == pytest.approx(value, rel=1e-6), key
    test_logs = mirrored.test_on_batch(x[:16], y[:16], return_dict=True)
    assert sorted(test_logs) == sorted(logs)
    np.testing.assert_allclose(
        mirrored.predict(x, batch_size=16, verbose=0),
        one.predict(x, batch_size=16, verbose=0),
        rtol=1e-6,
        atol=1e-6,
    )


def _strategy_of(cluster, task_type, task_id):
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id
    )
    return types.SimpleNamespace(cluster_resolver=resolver)


@pytest.mark.parametrize(
    "cluster, task_type, task_id, chief, index",
    [
        ({"worker": ["a:1", "b:1"]}, "worker", 0, True, 0),
        ({"worker": ["a:1", "b:1"]}, "worker", 1, False, 1),
        ({"chief": ["c:1"], "worker": ["a:1", "b:1"]}, "chief", 0, True, 0),
        ({"chief": ["c:1"], "worker": ["a:1", "b:1"]}, "worker", 0, False, 1),
        ({"chief": ["c:1"], "worker": ["a:1", "b:1"]}, "worker", 1, False, 2),
    ],
)
def test_chief_and_worker_index(cluster, task_type, task_id, chief, index):
    strategy = _strategy_of(cluster, task_type, task_id)
    assert backend.is_chief(strategy) is chief
    assert backend.worker_index(strategy) == index


def test_one_process_is_the_chief(mirrored_strategy):
    assert backend.is_chief() and backend.worker_index() == 0
    assert backend.is_chief(mirrored_strategy())
    assert backend.is_chief(types.SimpleNamespace(cluster_resolver=None))
