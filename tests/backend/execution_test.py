"""Running functions compiled and on the host, on the active backend."""

import numpy as np
from keras import ops

from tf_metaloss import backend


def test_compile_function_gives_the_eager_result_and_retraces_for_new_shapes():
    def scaled_sum(x, scale):
        return ops.sum(x) * scale

    compiled = backend.compile_function(scaled_sum)
    for x in (np.arange(3, dtype="float32"), np.arange(5, dtype="float32")):
        value = ops.convert_to_numpy(compiled(x, np.float32(2.0)))
        assert float(value) == float(ops.convert_to_numpy(scaled_sum(x, 2.0)))
    assert float(ops.convert_to_numpy(compiled(np.ones(3, "float32"), np.float32(3.0)))) == 9.0


def test_call_on_host_runs_inside_a_compiled_function_in_step_order():
    seen = []

    def step(x):
        total = ops.sum(x)
        backend.call_on_host(lambda value: seen.append(float(value)), total)
        return x * 2.0

    compiled = backend.compile_function(step)
    x = np.ones(3, "float32")
    for _ in range(3):
        x = compiled(x)
    np.testing.assert_array_equal(ops.convert_to_numpy(x), [8.0, 8.0, 8.0])
    assert seen == [3.0, 6.0, 12.0]


def test_call_on_host_runs_eagerly():
    seen = []
    backend.call_on_host(lambda a, b: seen.append((float(a), float(b))), 1.5, np.float32(2.0))
    assert seen == [(1.5, 2.0)]
