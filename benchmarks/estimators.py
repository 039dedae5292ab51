"""Meta-gradient estimators: time per meta step, peak memory, accuracy, PyTorch peer.

For the MLP and the small CNN of `step_cost.py` (batch 128, the `MetaLoss`
blend, default bounded-MAE meta objective, SGD with momentum, meta Adam):

- time: ms per step of a plain step and of a meta step with each estimator
  (`Unrolled` K = 1, 2, 4, 8; `Neumann` and `ConjugateGradient` with 1..10
  terms or iterations; `FiniteDifference`; `ForwardMode`, one JVP per phi
  element, here the blend's 5), each compiled on its own (without the guard's
  reference run) and
  measured interleaved in one process (`--repeats` rounds of `--steps` steps
  each; medians; ratios to the plain step of the same run);
- the PyTorch peer (`--torch`, needs `pip install torch`): the same network,
  the same learned loss (the MetaLoss blend of cross-entropy, focal,
  label-smoothed cross-entropy, generalized cross-entropy and MAE, normalised
  weights) and meta objective, a plain step and the same one-step meta step
  (lookahead `w' = w - lr g`, meta objective at `w'`, gradient w.r.t. phi,
  then SGD-momentum on w with the lookahead's gradient and Adam on phi),
  written with `torch.func` (`functional_call`, `grad`) and with
  `torch.autograd.grad(create_graph=True)`, timed in the same rounds, with
  the same thread count as TensorFlow;
- memory (unless `--no-memory`): peak resident set size over 10 steps in a
  fresh process per configuration (the peak is reset after warm-up);
- accuracy: cosine similarity of each estimator's meta-gradient to the exact
  one-step meta-gradient (`Unrolled(steps=1)`) on several batches (not for
  `ForwardMode`, which estimates the derivative of the whole run);
- `--hvp`: one Hessian-vector product of the training loss by nested tapes
  (reverse over reverse) and by `tf.autodiff.ForwardAccumulator` over a
  tape (forward over reverse), interleaved.

    python benchmarks/estimators.py                      # everything, both models
    python benchmarks/estimators.py --models cnn --configs plain unrolled_1 fd --torch
    python benchmarks/estimators.py --models mlp --no-memory --repeats 3

Never run by the test suite.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# PyTorch's OpenMP threads spin at barriers by default; on a machine shared with
# other jobs a descheduled thread then stalls every step (seen here: 2 -> 300 ms
# for the MLP's plain step). Passive waiting is what TensorFlow's pool does.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

CONFIGS = {
    "plain": None,
    "unrolled_1": ("Unrolled", {"steps": 1}),
    "unrolled_2": ("Unrolled", {"steps": 2}),
    "unrolled_4": ("Unrolled", {"steps": 4}),
    "unrolled_8": ("Unrolled", {"steps": 8}),
    "neumann_0": ("Neumann", {"terms": 0}),
    "neumann_1": ("Neumann", {"terms": 1}),
    "neumann_2": ("Neumann", {"terms": 2}),
    "neumann_5": ("Neumann", {"terms": 5}),
    "neumann_10": ("Neumann", {"terms": 10}),
    "cg_1": ("ConjugateGradient", {"iterations": 1}),
    "cg_2": ("ConjugateGradient", {"iterations": 2}),
    "cg_5": ("ConjugateGradient", {"iterations": 5}),
    "cg_10": ("ConjugateGradient", {"iterations": 10}),
    "fd": ("FiniteDifference", {}),
    "forward_mode": ("ForwardMode", {}),
    "fd_one_sided": ("FiniteDifference", {"central": False}),
    "fd_eps1e-3": ("FiniteDifference", {"epsilon": 1e-3}),
    "fd_one_sided_eps1e-3": ("FiniteDifference", {"epsilon": 1e-3, "central": False}),
    "fd_eps1e-1": ("FiniteDifference", {"epsilon": 0.1}),
    "fd_one_sided_eps1e-4": ("FiniteDifference", {"epsilon": 1e-4, "central": False}),
}
# The default run times these; the other FiniteDifference settings differ in accuracy only.
TIME_CONFIGS = [c for c in CONFIGS if "eps" not in c]
MEMORY_CONFIGS = [
    "plain",
    "unrolled_1",
    "unrolled_2",
    "unrolled_4",
    "unrolled_8",
    "neumann_1",
    "neumann_5",
    "neumann_10",
    "cg_1",
    "cg_5",
    "cg_10",
    "fd",
    "forward_mode",
]
# Estimators of another quantity than the one-step meta-gradient: no cosine.
NOT_ONE_STEP = ("forward_mode",)
LEARNING_RATE = 0.01


def set_threads(threads):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def estimator(config):
    import tf_metaloss as tml

    name, kwargs = CONFIGS[config]
    return getattr(tml.meta.estimators, name)(**kwargs)


def tf_step(name, config, data, meta_batch):
    """A compiled step of one kind (`plain` or a meta step with an estimator)."""
    import keras
    import tensorflow as tf
    from step_cost import build_model

    model = build_model(name, jit_compile=False, meta_every=0 if config == "plain" else 1)
    if config != "plain":
        model.compile(
            optimizer=keras.optimizers.SGD(LEARNING_RATE, momentum=0.9),
            loss=model.loss,
            meta_optimizer=keras.optimizers.Adam(1e-3),
            meta_method=estimator(config),
            meta_guard=None,  # the estimator's cost alone, without the guard's run
        )
    x, y = data
    model.fit(x, y, meta_data=meta_batch, batch_size=len(x), epochs=1, verbose=0)
    if config == "plain":
        step = tf.function(lambda d: model.train_step(d))
        return model, lambda: step(data)
    step = tf.function(lambda d, m: model.meta_train_step(d, m))
    return model, lambda: step(data, meta_batch)


def timed(fn, steps, cpu=False):
    """ms per step (wall clock), or `(wall, cpu)` with the process's CPU time."""
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        out = fn()
    float(out["loss"].detach() if hasattr(out["loss"], "detach") else out["loss"])  # Waits.
    wall = (time.perf_counter() - start) / steps * 1000.0
    if cpu:
        return wall, (time.process_time() - start_cpu) / steps * 1000.0
    return wall


# -- PyTorch peer ------------------------------------------------------------------
def torch_steps(name, batch_size, threads):
    """A plain and a one-step meta step in PyTorch (torch.func and autograd)."""
    import numpy as np
    import torch
    from torch import nn
    from torch.func import functional_call
    from torch.func import grad

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if name == "mlp":
        model = nn.Sequential(
            nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)
        )
        shape = (64,)
    else:
        model = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(4096, 128),
            nn.ReLU(),
            nn.Linear(128, 10),
        )
        shape = (3, 32, 32)
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(batch_size,) + shape).astype("float32"))
    y = torch.tensor(rng.integers(0, 10, batch_size))
    xm, ym = x, y  # the meta batch is the batch, as in the TensorFlow steps
    phi = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0], requires_grad=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=0.9)
    meta_optimizer = torch.optim.Adam([phi], lr=1e-3)
    names = [n for n, _ in model.named_parameters()]

    def meta_loss(phi, logits, labels):
        """MetaLoss: normalised blend of CE, focal, label smoothing, GCE, MAE."""
        log_probs = torch.log_softmax(logits, -1)
        probs = log_probs.exp()
        one_hot = nn.functional.one_hot(labels, logits.shape[-1]).to(logits.dtype)
        ce = -(one_hot * log_probs).sum(-1)
        focal = -(one_hot * (1 - probs) ** 2 * log_probs).sum(-1)
        smoothed = one_hot * 0.9 + 0.1 / logits.shape[-1]
        smoothing = -(smoothed * log_probs).sum(-1)
        p_true = (one_hot * probs).sum(-1)
        gce = (1 - p_true.clamp_min(1e-7) ** 0.7) / 0.7
        mae = (one_hot - probs).abs().sum(-1)
        weights = phi / phi.sum().clamp_min(1e-7)
        terms = torch.stack([ce, focal, smoothing, gce, mae], -1)
        return (terms * weights).sum(-1).mean()

    def meta_objective(logits, labels):
        probs = torch.softmax(logits, -1)
        one_hot = nn.functional.one_hot(labels, logits.shape[-1]).to(logits.dtype)
        return (one_hot - probs).abs().sum(-1).mean()

    def plain():
        optimizer.zero_grad()
        loss = meta_loss(phi.detach(), model(x), y)
        loss.backward()
        optimizer.step()
        return {"loss": loss}

    def train_loss(params, phi):
        return meta_loss(phi, functional_call(model, params, (x,)), y)

    train_grad = grad(train_loss, has_aux=False)

    def lookahead_objective(phi, params):
        grads = train_grad(params, phi)
        ahead = {k: params[k] - LEARNING_RATE * grads[k] for k in params}
        objective = meta_objective(functional_call(model, ahead, (xm,)), ym)
        return objective, {k: g.detach() for k, g in grads.items()}

    phi_grad = grad(lookahead_objective, has_aux=True)

    def apply(weight_grads, phi_gradient):
        for name_, parameter in model.named_parameters():
            parameter.grad = weight_grads[name_]
        optimizer.step()
        phi.grad = phi_gradient
        meta_optimizer.step()

    def meta_func():
        params = {k: v.detach() for k, v in model.named_parameters()}
        phi_gradient, weight_grads = phi_grad(phi.detach(), params)
        apply(weight_grads, phi_gradient)
        return {"loss": phi_gradient[0]}

    def meta_autograd():
        params = [p for p in model.parameters()]
        loss = meta_loss(phi, model(x), y)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        ahead = {k: p - LEARNING_RATE * g for k, p, g in zip(names, params, grads)}
        objective = meta_objective(functional_call(model, ahead, (xm,)), ym)
        (phi_gradient,) = torch.autograd.grad(objective, [phi])
        apply({k: g.detach() for k, g in zip(names, grads)}, phi_gradient)
        return {"loss": objective}

    return {
        "torch_plain": plain,
        "torch_func_meta": meta_func,
        "torch_autograd_meta": meta_autograd,
    }


# -- measurements -------------------------------------------------------------------
def measure_time(name, configs, batch_size, steps, repeats, with_torch, threads):
    from step_cost import make_batches

    data, meta_batch = make_batches(name, batch_size)
    fns = {}
    for config in configs:
        print(f"tracing {name} {config}", file=sys.stderr, flush=True)
        fns[config] = tf_step(name, config, data, meta_batch)[1]
        timed(fns[config], 2)  # Warm-up: tracing.
    if with_torch:
        fns.update(torch_steps(name, batch_size, threads))
        for key in ("torch_plain", "torch_func_meta", "torch_autograd_meta"):
            timed(fns[key], 2)
    samples = {key: [] for key in fns}
    cpu_samples = {key: [] for key in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            wall, cpu = timed(fn, steps, cpu=True)
            samples[key].append(wall)
            cpu_samples[key].append(cpu)
    medians = {k: statistics.median(v) for k, v in samples.items()}
    cpu_medians = {k: statistics.median(v) for k, v in cpu_samples.items()}
    rows = []
    for key, ms in medians.items():
        base = "torch_plain" if key.startswith("torch") else "plain"
        known = base in medians
        rows.append(
            {
                "model": name,
                "config": key,
                "ms": ms,
                "ratio": ms / medians[base] if known else None,
                "cpu_ms": cpu_medians[key],
                "cpu_ratio": cpu_medians[key] / cpu_medians[base] if known else None,
                "samples": samples[key],
                "cpu_samples": cpu_samples[key],
            }
        )
    return rows


def measure_cosine(name, configs, batch_size, batches=10):
    """Cosine similarity of each estimator's meta-gradient to the exact one-step."""
    import numpy as np
    import tensorflow as tf
    from step_cost import build_model

    model = build_model(name, jit_compile=False, meta_every=1)
    rng = np.random.default_rng(1)
    shape = (64,) if name == "mlp" else (32, 32, 3)
    results = {c: [] for c in configs}
    exact_estimator = estimator("unrolled_1")
    for _ in range(batches):
        x = tf.constant(rng.normal(size=(batch_size,) + shape).astype("float32"))
        y = tf.constant(rng.integers(0, 10, batch_size))
        xm = tf.constant(rng.normal(size=(batch_size,) + shape).astype("float32"))
        ym = tf.constant(rng.integers(0, 10, batch_size))
        model.meta_estimator = exact_estimator
        exact = np.concatenate(
            [np.ravel(g) for g in model.compute_meta_gradient((x, y), (xm, ym)).phi_grads]
        )
        for config in configs:
            model.meta_estimator = estimator(config)
            approx = np.concatenate(
                [np.ravel(g) for g in model.compute_meta_gradient((x, y), (xm, ym)).phi_grads]
            )
            cosine = approx @ exact / (np.linalg.norm(approx) * np.linalg.norm(exact))
            results[config].append(float(cosine))
    return {c: {"min": min(v), "median": statistics.median(v)} for c, v in results.items()}


def measure_hvp(name, batch_size, steps, repeats):
    """ms per Hessian-vector product: reverse over reverse vs forward over reverse."""
    import numpy as np
    import tensorflow as tf
    from step_cost import build_model
    from step_cost import make_batches

    model = build_model(name, jit_compile=False, meta_every=1)
    (x, y), _ = make_batches(name, batch_size)
    weights = [tf.convert_to_tensor(v) for v in model.trainable_variables]
    rng = np.random.default_rng(2)
    vector = [tf.constant(rng.normal(size=w.shape).astype("float32")) for w in weights]

    def loss_of(w):
        y_pred, _ = model.stateless_call(w, [], x, training=True)
        return model.loss(y, y_pred)

    @tf.function(autograph=False)
    def reverse():
        with tf.GradientTape() as outer:
            outer.watch(weights)
            with tf.GradientTape() as inner:
                inner.watch(weights)
                loss = loss_of(weights)
            grads = inner.gradient(loss, weights)
        return outer.gradient(grads, weights, output_gradients=vector)

    @tf.function(autograph=False)
    def forward():
        with tf.autodiff.ForwardAccumulator(weights, vector) as accumulator:
            with tf.GradientTape() as tape:
                tape.watch(weights)
                loss = loss_of(weights)
            grads = tape.gradient(loss, weights)
        return [accumulator.jvp(g) for g in grads]

    a, b = reverse(), forward()
    difference = max(
        float(tf.reduce_max(tf.abs(p - q)) / tf.reduce_max(tf.abs(p))) for p, q in zip(a, b)
    )

    def run(fn):
        def call():
            out = fn()
            return {"loss": out[0][..., :1]}

        return call

    fns = {"hvp_reverse_over_reverse": run(reverse), "hvp_forward_over_reverse": run(forward)}
    samples = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            start = time.perf_counter()
            for _ in range(steps):
                out = fn()
            np.asarray(out["loss"])
            samples[key].append((time.perf_counter() - start) / steps * 1000.0)
    return {
        "model": name,
        **{k: statistics.median(v) for k, v in samples.items()},
        "max_relative_difference": difference,
    }


def _status_mb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(name, config, batch_size, threads):
    if config.startswith("torch"):  # Without importing TensorFlow.
        fn = torch_steps(name, batch_size, threads)[config]
    else:
        from step_cost import make_batches

        set_threads(threads)
        data, meta_batch = make_batches(name, batch_size)
        fn = tf_step(name, config, data, meta_batch)[1]
    timed(fn, 3)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    timed(fn, 10)
    print(_status_mb("VmHWM"))


def peak_memory(name, config, batch_size, threads):
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", name, config, str(batch_size), str(threads)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out.strip().splitlines()[-1])


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    parser.add_argument("--configs", nargs="+", default=TIME_CONFIGS, choices=list(CONFIGS))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="steps per timing sample")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow and PyTorch threads")
    parser.add_argument("--torch", action="store_true", help="add the PyTorch peer column")
    parser.add_argument("--no-time", action="store_true", help="skip the timing rounds")
    parser.add_argument("--no-memory", action="store_true", help="skip peak-memory runs")
    parser.add_argument(
        "--memory-configs", nargs="+", default=MEMORY_CONFIGS, help="configurations for memory"
    )
    parser.add_argument("--no-cosine", action="store_true", help="skip the cosine similarities")
    parser.add_argument("--cosine-batches", type=int, default=10, help="batches for the cosines")
    parser.add_argument("--hvp", action="store_true", help="also time the two kinds of HVP")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--memory-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        name, config, batch, threads = args.memory_child
        memory_child(name, config, int(batch), int(threads))
        return 0
    set_threads(args.threads)
    print(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load", os.getloadavg(), flush=True)
    results = {"time": [], "memory": [], "cosine": {}, "hvp": []}
    for name in args.models:
        if not args.no_time:
            rows = measure_time(
                name,
                args.configs,
                args.batch_size,
                args.steps,
                args.repeats,
                args.torch,
                args.threads,
            )
            results["time"] += rows
            print()
            print(
                f"{name}: ms per step, median of {args.repeats} interleaved rounds, "
                "ratio to the plain step (PyTorch: to its own plain step)"
            )
            print("| configuration | wall ms | ratio | CPU ms | CPU ratio |")
            print("|---|---|---|---|---|")
            for r in rows:
                print(
                    f"| {r['config']} | {r['ms']:.2f} | {_fmt(r['ratio'], '.2f')}x | "
                    f"{r['cpu_ms']:.2f} | {_fmt(r['cpu_ratio'], '.2f')}x |"
                )
        if not args.no_cosine:
            configs = [c for c in args.configs if c not in ("plain", *NOT_ONE_STEP)]
            cosine = measure_cosine(name, configs, args.batch_size, args.cosine_batches)
            results["cosine"][name] = cosine
            print()
            print(f"{name}: cosine similarity to Unrolled(steps=1), {args.cosine_batches} batches")
            print("| configuration | min | median |")
            print("|---|---|---|")
            for config, c in cosine.items():
                print(f"| {config} | {c['min']:.6f} | {c['median']:.6f} |")
        if args.hvp:
            row = measure_hvp(name, args.batch_size, args.steps, args.repeats)
            results["hvp"].append(row)
            print()
            print(json.dumps(row))
        if not args.no_memory:
            configs = list(args.memory_configs) + (
                ["torch_plain", "torch_func_meta"] if args.torch else []
            )
            print()
            print(f"{name}: peak MB over 10 steps, fresh process each")
            print("| configuration | peak MB | over its plain step |")
            print("|---|---|---|")
            plain = {}
            for config in configs:
                mb = peak_memory(name, config, args.batch_size, args.threads)
                base = "torch_plain" if config.startswith("torch") else "plain"
                plain.setdefault(base, mb if config == base else None)
                results["memory"].append({"model": name, "config": config, "peak_mb": mb})
                extra = "-" if plain.get(base) is None else f"{mb - plain[base]:+.0f}"
                print(f"| {config} | {mb:.0f} | {extra} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
