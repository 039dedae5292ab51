"""Cost of a meta step vs a plain step, and of `fit` with meta-learning.

Step level: the plain step (`MetaModel.train_step`) and the meta step
(`meta_train_step`), each compiled on its own, interleaved in one process (so
machine load affects both alike); ratios are taken from medians of the same
run. Peak memory (resident set size, reset after warm-up so it covers the
steps alone) is measured in a fresh subprocess per configuration (Linux only).

Fit level (`--fit`): wall time per step of `model.fit` on an in-memory
dataset for a plain `keras.Model` with cross-entropy and for a `MetaModel`
with `meta_every` 1 and 5, interleaved; timed inside each `fit` call from the
end of its first step to the end of its last (`step_clock`), so it includes
the training loop's dispatch but not each call's setup and teardown. The
fit level uses only `compile`/`fit`, so `--fit-only` also runs against an
older checkout (`PYTHONPATH=old/checkout python ... --fit-only`),
and on either Keras backend: `--backend tensorflow jax` runs it on each, one
after the other in the same invocation (a backend other than the active one
in a child process with `KERAS_BACKEND` set; on JAX with XLA only: Keras on
JAX without `jit_compile` runs each op eagerly). The step level is
TensorFlow's (it compiles the steps with `tf.function`).

`--models resnet18` is a ResNet-18 with the CIFAR stem (3x3 convolution, no
max pooling; 11.2M weights) on 32x32 images, for a machine with a GPU (JAX
and TensorFlow pick the device themselves):

    python benchmarks/step_cost.py                 # MLP and CNN, XLA off and on
    python benchmarks/step_cost.py --models mlp --repeats 5 --steps 10
    python benchmarks/step_cost.py --models cnn --xla off --fit-only
    python benchmarks/step_cost.py --fit-only --xla on --backend tensorflow jax --repeats 9
    python benchmarks/step_cost.py --fit-only --backend jax --models cnn \
        --meta-method finite_difference         # another estimator at the fit level
    python benchmarks/step_cost.py --fit-only --xla on --backend jax tensorflow \
        --models resnet18 --fit-steps 20      # on a GPU

Never run by the test suite.
"""

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# MetaLoss's blend of cross-entropy, focal, label smoothing, GCE and MAE.
BLEND = [
    "crossentropy",
    "focal",
    "label_smoothing",
    "generalized_crossentropy",
    "mae_classification",
]


def resnet18_features(inputs):
    """ResNet-18 with the CIFAR stem: 3x3 convolution, four stages of two basic
    blocks (64, 128, 256, 512 filters), global average pooling."""
    import keras

    layers = keras.layers

    def conv_bn(x, filters, strides=1, relu=True):
        x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU()(x) if relu else x

    x = conv_bn(inputs, 64)
    for stage, filters in enumerate((64, 128, 256, 512)):
        for block in range(2):
            strides = 2 if stage > 0 and block == 0 else 1
            shortcut = x
            y = conv_bn(x, filters, strides)
            y = conv_bn(y, filters, relu=False)
            if strides != 1 or shortcut.shape[-1] != filters:
                shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False)(shortcut)
                shortcut = layers.BatchNormalization()(shortcut)
            x = layers.ReLU()(layers.Add()([y, shortcut]))
    return layers.GlobalAveragePooling2D()(x)


def build_model(name, jit_compile, meta_every, unroll_steps=1):
    import keras

    import tf_metaloss as tml

    keras.utils.set_random_seed(0)
    if name == "mlp":
        inputs = keras.Input((64,))
        x = keras.layers.Dense(256, activation="relu")(inputs)
        x = keras.layers.Dense(256, activation="relu")(x)
    elif name == "resnet18":
        inputs = keras.Input((32, 32, 3))
        x = resnet18_features(inputs)
    else:
        inputs = keras.Input((32, 32, 3))
        x = keras.layers.Conv2D(32, 3, activation="relu", padding="same")(inputs)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Conv2D(64, 3, activation="relu", padding="same")(x)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(128, activation="relu")(x)
    model = tml.MetaModel(inputs, keras.layers.Dense(10)(x))
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        # The blend of docs/BENCHMARKS.md's measurements (the 0.2 default; the
        # PyTorch peer of estimators.py computes it too).
        loss=tml.MetaLoss(from_logits=True, base_losses=BLEND),
        meta_optimizer=keras.optimizers.Adam(1e-3),
        meta_every=meta_every,
        unroll_steps=unroll_steps,
        jit_compile=jit_compile,
        # The meta step alone: on these random labels the guard would take its
        # run back after the first fit and freeze the loss (meta_every=0).
        meta_guard=None,
    )
    return model


def make_batches(name, batch_size, meta_batch_size=None):
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    shape = (64,) if name == "mlp" else (32, 32, 3)
    x = tf.constant(rng.normal(size=(batch_size,) + shape).astype("float32"))
    y = tf.constant(rng.integers(0, 10, batch_size))
    m = meta_batch_size or batch_size
    return (x, y), (x[:m], y[:m])


def step_functions(model, data, meta_batch):
    """The public steps, each compiled on its own (as `jit_compile` says)."""
    import tensorflow as tf

    # One fit step builds the model and the optimizers.
    x, y = data
    model.fit(x, y, meta_data=meta_batch, batch_size=len(x), epochs=1, verbose=0)
    strategy = model.distribute_strategy
    plain = tf.function(
        lambda d: strategy.run(model.train_step, args=(d,)), jit_compile=model.jit_compile
    )
    meta = tf.function(
        lambda d, m: strategy.run(model.meta_train_step, args=(d, m)),
        jit_compile=model.jit_compile,
    )
    return (lambda: plain(data)), (lambda: meta(data, meta_batch))


def breakdown_functions(model, data, jit_compile):
    """A forward pass and a forward+backward pass, for where the time goes."""
    import tensorflow as tf

    x, y = data

    @tf.function(jit_compile=jit_compile)
    def forward():
        return {"loss": tf.reduce_sum(model(x, training=True))}

    @tf.function(jit_compile=jit_compile)
    def forward_backward():
        with tf.GradientTape() as tape:
            loss = model.loss(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        return {"loss": loss + 0 * tf.add_n([tf.reduce_sum(g) for g in grads])}

    return forward, forward_backward


def freeze_warm_objects():
    """Moves every object alive after warm-up out of Python's cyclic collector.

    A process that has imported TensorFlow and Keras and traced these models
    holds about half a million Python objects (measured: 458k after the
    imports, 513k after two CNN meta models' first `fit`); a full collection
    scans them all (0.35 s measured) and falls wherever an allocation triggers
    it (py-spy caught one in `fit`'s teardown). Frozen, they are not scanned.
    """
    gc.collect()
    gc.freeze()


def timed(fn, steps):
    start = time.perf_counter()
    for _ in range(steps):
        logs = fn()
    float(logs["loss"])  # Waits for the last step.
    return (time.perf_counter() - start) / steps * 1000.0


def measure_time(name, jit_compile, batch_size, steps, repeats, unroll_steps, meta_batch_size=None):
    model = build_model(name, jit_compile, meta_every=1, unroll_steps=unroll_steps)
    data, meta_batch = make_batches(name, batch_size, meta_batch_size)
    plain, meta = step_functions(model, data, meta_batch)

    def every_5th():
        meta()
        for _ in range(4):
            logs = plain()
        return logs

    forward, gradient = breakdown_functions(model, data, jit_compile)
    for fn in (plain, meta, every_5th, forward, gradient):  # Warm-up (tracing, XLA).
        timed(fn, 2)
    freeze_warm_objects()
    samples = {
        "plain": [],
        "meta_every_1": [],
        "meta_every_5": [],
        "forward": [],
        "forward_backward": [],
    }
    for _ in range(repeats):
        samples["forward"].append(timed(forward, steps))
        samples["forward_backward"].append(timed(gradient, steps))
        samples["plain"].append(timed(plain, steps))
        samples["meta_every_1"].append(timed(meta, steps))
        samples["meta_every_5"].append(timed(every_5th, max(1, steps // 5)) / 5)
    medians = {k: statistics.median(v) for k, v in samples.items()}
    return {
        "model": name,
        "xla": jit_compile,
        "unroll_steps": unroll_steps,
        "meta_batch_size": int(meta_batch[0].shape[0]),
        "ms_forward": medians["forward"],
        "ms_forward_backward": medians["forward_backward"],
        "ms_plain": medians["plain"],
        "ms_meta_every_1": medians["meta_every_1"],
        "ms_meta_every_5": medians["meta_every_5"],
        "ratio_meta_every_1": medians["meta_every_1"] / medians["plain"],
        "ratio_meta_every_5": medians["meta_every_5"] / medians["plain"],
    }


def build_keras_model(name, jit_compile):
    """The same network as a plain `keras.Model` on cross-entropy."""
    import keras

    reference = build_model(name, jit_compile, meta_every=0)
    model = keras.Model(reference.inputs, reference.outputs)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    return model


def step_clock(steps_per_execution=1):
    """A callback that times the steps of each `fit` call, from the end of its
    first step to the end of its last, each waited for (`float` of its loss):
    the per-step cost of `fit`'s loop, without what each `fit` call costs once
    (building and tearing down its iterators and callbacks: 0.6-0.8 s per call
    for the CNN on TensorFlow here, which in a short `fit` swamped the steps).
    """
    import keras

    class StepClock(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start, self.end, self.calls = None, None, 0

        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])
            now = time.perf_counter()
            if self.start is None:
                self.start = now
            else:
                self.end, self.calls = now, self.calls + 1

        def ms_per_step(self):
            return (self.end - self.start) / (self.calls * steps_per_execution) * 1000.0

    return StepClock()


def measure_fit(
    name, jit_compile, batch_size, steps, repeats, steps_per_execution=1, meta_method="second_order"
):
    """ms per step of `fit` (plain Keras, meta_every 1 and 5), interleaved."""
    import keras
    import tensorflow as tf

    (x, y), (xm, ym) = make_batches(name, batch_size)
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    meta = (xm.numpy(), ym.numpy())
    models = {"keras": build_keras_model(name, jit_compile)}
    for every in (1, 5):
        model = build_model(name, jit_compile, meta_every=every)
        model.compile(
            optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
            loss=model.loss,
            meta_optimizer=keras.optimizers.Adam(1e-3),
            meta_every=every,
            meta_method=meta_method,
            jit_compile=jit_compile,
            steps_per_execution=steps_per_execution,
            meta_guard=None,
        )
        models[f"meta_every_{every}"] = model
    models["keras"].compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )

    clock = step_clock(steps_per_execution)

    def fit(key, n):
        kwargs = {} if key == "keras" else {"meta_data": meta, "meta_batch_size": batch_size}
        models[key].fit(data, steps_per_epoch=n, epochs=1, verbose=0, callbacks=[clock], **kwargs)
        return clock.ms_per_step()

    for key in models:  # Warm-up: tracing, XLA.
        fit(key, 10)
    freeze_warm_objects()
    samples = {key: [] for key in models}
    for _ in range(repeats):
        for key in models:
            samples[key].append(fit(key, steps))
    medians = {k: statistics.median(v) for k, v in samples.items()}
    return {
        "backend": keras.backend.backend(),
        "model": name,
        "xla": jit_compile,
        "steps_per_execution": steps_per_execution,
        "meta_method": meta_method,
        "fit_ms_keras": medians["keras"],
        "fit_ms_meta_every_1": medians["meta_every_1"],
        "fit_ms_meta_every_5": medians["meta_every_5"],
        "fit_ratio_meta_every_1": medians["meta_every_1"] / medians["keras"],
        "fit_ratio_meta_every_5": medians["meta_every_5"] / medians["keras"],
    }


def _status_mb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_memory_child(name, jit_compile, batch_size, kind):
    """Prints the peak RSS (MB) while running 10 steps of one kind.

    The peak is reset (Linux `clear_refs`) after warm-up, so it covers the
    steps alone, not TensorFlow's start-up or tracing.
    """
    model = build_model(name, jit_compile, meta_every=0 if kind == "plain" else 1)
    data, meta_batch = make_batches(name, batch_size)
    plain, meta = step_functions(model, data, meta_batch)
    fn = plain if kind == "plain" else meta
    timed(fn, 3)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    timed(fn, 10)
    print(_status_mb("VmHWM"))


def peak_memory(name, jit_compile, batch_size, kind):
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--memory-child",
            name,
            str(int(jit_compile)),
            str(batch_size),
            kind,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out.strip().splitlines()[-1])


def fit_rows_in_child(backend, args):
    """The fit level on another Keras backend, in a child process."""
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "rows.json")
        command = [sys.executable, os.path.abspath(__file__), "--fit-only", "--backend", backend]
        command += ["--models", *args.models, "--xla", *args.xla, "--json", path]
        command += ["--batch-size", str(args.batch_size), "--fit-steps", str(args.fit_steps)]
        command += ["--repeats", str(args.repeats)]
        command += ["--steps-per-execution", str(args.steps_per_execution)]
        command += ["--meta-method", args.meta_method]
        env = dict(os.environ, KERAS_BACKEND=backend)
        subprocess.run(command, env=env, check=True)
        with open(path) as f:
            return json.load(f)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn", "resnet18"]
    )
    parser.add_argument(
        "--backend",
        nargs="+",
        choices=["tensorflow", "jax"],
        default=None,
        help="Keras backend(s) of the fit level (default: the active one)",
    )
    parser.add_argument("--xla", nargs="+", default=["off", "on"], choices=["off", "on"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="steps per timing sample")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved samples per kind")
    parser.add_argument("--unroll-steps", type=int, default=1)
    parser.add_argument(
        "--meta-method",
        default="second_order",
        help="the fit level's `compile(meta_method=...)`, e.g. finite_difference",
    )
    parser.add_argument(
        "--meta-batch-size",
        type=int,
        default=None,
        help="meta batch size (default: the batch size)",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip peak-memory runs")
    parser.add_argument("--fit", action="store_true", help="also time whole fit() calls")
    parser.add_argument(
        "--fit-only",
        action="store_true",
        help="time only fit() (public API: runs against older versions too)",
    )
    parser.add_argument("--fit-steps", type=int, default=50, help="steps per fit sample")
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--memory-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        name, jit, batch, kind = args.memory_child
        peak_memory_child(name, bool(int(jit)), int(batch), kind)
        return 0

    import keras

    active = keras.backend.backend()
    if args.fit or args.fit_only:
        fit_rows = []
        for backend in args.backend or [active]:
            if backend != active:
                fit_rows += fit_rows_in_child(backend, args)
                continue
            for name in args.models:
                for xla in args.xla:
                    if backend == "jax" and xla == "off":
                        print("(JAX: XLA off skipped; Keras on JAX without jit runs ops eagerly)")
                        continue
                    row = measure_fit(
                        name,
                        xla == "on",
                        args.batch_size,
                        args.fit_steps,
                        args.repeats,
                        args.steps_per_execution,
                        args.meta_method,
                    )
                    fit_rows.append(row)
                    print(json.dumps(row), flush=True)
        print()
        print(
            "| backend | model | XLA | steps/execution | Keras fit ms/step | meta every step "
            "ms (ratio) | meta every 5th ms (ratio) |"
        )
        print("|---|---|---|---|---|---|---|")
        for r in fit_rows:
            print(
                f"| {r.get('backend', 'tensorflow')} | {r['model']} | "
                f"{'on' if r['xla'] else 'off'} | "
                f"{r['steps_per_execution']} | {r['fit_ms_keras']:.2f} | "
                f"{r['fit_ms_meta_every_1']:.2f} ({r['fit_ratio_meta_every_1']:.2f}x) | "
                f"{r['fit_ms_meta_every_5']:.2f} ({r['fit_ratio_meta_every_5']:.2f}x) |"
            )
        if args.fit_only:
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(fit_rows, f, indent=2)
            return 0

    if active != "tensorflow":
        print(f"The step level runs on TensorFlow (active backend: {active}); use --fit-only.")
        return 2
    rows = []
    for name in args.models:
        for xla in args.xla:
            row = measure_time(
                name,
                xla == "on",
                args.batch_size,
                args.steps,
                args.repeats,
                args.unroll_steps,
                args.meta_batch_size,
            )
            if not args.no_memory:
                row["peak_mb_plain"] = peak_memory(name, xla == "on", args.batch_size, "plain")
                row["peak_mb_meta"] = peak_memory(name, xla == "on", args.batch_size, "meta")
            rows.append(row)
            print(json.dumps(row), flush=True)
    header = (
        "| model | XLA | forward ms | fwd+bwd ms | plain step ms | "
        "meta every step ms (ratio) | meta every 5th ms (ratio) | "
        "peak MB plain / meta |"
    )
    print()
    print(header)
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        memory = (
            f"{r['peak_mb_plain']:.0f} / {r['peak_mb_meta']:.0f}" if "peak_mb_plain" in r else "-"
        )
        print(
            f"| {r['model']} | {'on' if r['xla'] else 'off'} | {r['ms_forward']:.2f} | "
            f"{r['ms_forward_backward']:.2f} | {r['ms_plain']:.2f} | "
            f"{r['ms_meta_every_1']:.2f} ({r['ratio_meta_every_1']:.2f}x) | "
            f"{r['ms_meta_every_5']:.2f} ({r['ratio_meta_every_5']:.2f}x) | {memory} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
