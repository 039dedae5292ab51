"""One training process of the multi-process tests (also imported by them).

Trains a small `MetaModel` (dense, dropout, dense; the `MetaLoss` blend; a meta step
every 2nd step) on a seeded, endless `tf.data` pipeline for 3 epochs of 8
steps, with validation, then evaluates and predicts, and saves what the tests
compare to `--out` (an `.npz`): the weights, phi, both optimizers' variables,
the meta-batch position, the history, evaluation and predictions.

    python tests/distributed/worker.py --out run.npz
    python tests/distributed/worker.py --out run.npz --strategy mirrored
    TF_CONFIG='{"cluster": {"worker": ["127.0.0.1:P0", "127.0.0.1:P1"]},
                "task": {"type": "worker", "index": 0}}' \\
        python tests/distributed/worker.py --out w0.npz --strategy multi_worker

`--backup DIR --save-freq N` adds `tml.callbacks.MetaBackupAndRestore`,
`--audit FILE` a `LossAuditLog`, `--tensorboard DIR` a `MetaTensorBoard`;
`--pause-at-step N --pause-file F` makes the process write `F` before step
`N` and wait there, to be killed with `kill -9` (`{}` in `F` is replaced by
the worker's index; `--pause-worker I` pauses worker `I` only). Started again with the same
arguments (without the pause), it resumes from the backup.
"""

import argparse
import json
import os
import sys
import time

EPOCHS = 3
STEPS_PER_EPOCH = 8
BATCH_SIZE = 32
META_BATCH_SIZE = 16
# The MetaLoss blend of cross-entropy, focal, label smoothing, GCE and MAE.
BLEND_BASE_LOSSES = [
    "crossentropy",
    "focal",
    "label_smoothing",
    "generalized_crossentropy",
    "mae_classification",
]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="where to save the results (.npz)")
    parser.add_argument(
        "--strategy", choices=("default", "mirrored", "multi_worker"), default="default"
    )
    parser.add_argument("--collective-timeout", type=float, default=60.0)
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument("--backup", help="MetaBackupAndRestore directory")
    parser.add_argument("--save-freq", type=int, default=3)
    parser.add_argument("--audit", help="LossAuditLog file")
    parser.add_argument("--tensorboard", help="MetaTensorBoard directory")
    parser.add_argument("--pause-at-step", type=int)
    parser.add_argument("--pause-file")
    parser.add_argument("--pause-worker", type=int, help="pause only this worker (default: all)")
    parser.add_argument(
        "--meta-method", default="second_order", help="a name of tml.meta.estimators.ALIASES"
    )
    return parser.parse_args(argv)


def data():
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 6)).astype("float32")
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("int64") + (x[:, 2] > 1).astype("int64")
    x_meta = rng.normal(size=(64, 6)).astype("float32")
    y_meta = (x_meta[:, 0] + 0.5 * x_meta[:, 1] > 0).astype("int64")
    x_val = rng.normal(size=(64, 6)).astype("float32")
    y_val = (x_val[:, 0] + 0.5 * x_val[:, 1] > 0).astype("int64")
    return (x, y), (x_meta, y_meta), (x_val, y_val)


def build(strategy, steps_per_execution=1, meta_method="second_order"):
    import keras

    import tf_metaloss as tml

    with strategy.scope():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((6,))
        hidden = keras.layers.Dense(16, activation="tanh")(inputs)
        hidden = keras.layers.Dropout(0.1)(hidden)
        model = tml.MetaModel(inputs, keras.layers.Dense(3)(hidden))
        model.compile(
            optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
            # The blend (five weights), as in docs/DISTRIBUTED.md's recorded output.
            loss=tml.MetaLoss(from_logits=True, regularization=0.01, base_losses=BLEND_BASE_LOSSES),
            meta_optimizer=keras.optimizers.Adam(0.05),
            meta_every=2,
            meta_seed=0,
            meta_global_clipnorm=1.0,
            meta_method=meta_method,
            # The other estimators' tests check that phi moved: with these settings the
            # guard would keep its run (trained on the meta data too) and reset phi.
            meta_guard="auto" if meta_method == "second_order" else None,
            metrics=["accuracy"],
            steps_per_execution=steps_per_execution,
        )
    return model


def train(strategy, args):
    """Trains, evaluates and predicts; returns a dict of numpy results."""
    import keras
    import numpy as np

    import tf_metaloss as tml

    (x, y), meta, validation = data()
    model = build(strategy, args.steps_per_execution, args.meta_method)
    callbacks = []
    if args.backup:
        callbacks.append(tml.callbacks.MetaBackupAndRestore(args.backup, save_freq=args.save_freq))
    if args.audit:
        callbacks.append(tml.callbacks.LossAuditLog(args.audit))
    if args.tensorboard:
        callbacks.append(tml.callbacks.MetaTensorBoard(args.tensorboard, image_freq=0))
    index = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {}).get("index", 0)
    if args.pause_at_step is not None and args.pause_worker in (None, index):
        callbacks.append(PauseAt(args.pause_at_step, args.pause_file.format(index)))
    history = model.fit(
        tml.meta.data.resumable_dataset(x, y, batch_size=BATCH_SIZE, seed=1),
        steps_per_epoch=STEPS_PER_EPOCH,
        epochs=EPOCHS,
        meta_data=meta,
        meta_batch_size=META_BATCH_SIZE,
        validation_data=validation,
        validation_batch_size=16,
        shuffle=False,
        verbose=0,
        callbacks=callbacks,
    )
    evaluation = model.evaluate(*validation, batch_size=16, return_dict=True, verbose=0)
    predictions = model.predict(validation[0], batch_size=16, verbose=0)
    results = {
        "step": np.asarray(int(model.optimizer.iterations.numpy())),
        "meta_position": np.asarray(int(model.meta_optimizer.iterations.numpy())),
        "predictions": np.asarray(predictions),
    }
    for i, value in enumerate(model.get_weights()):
        results[f"weight_{i}"] = np.asarray(value)
    for i, variable in enumerate(model.loss.variables):
        results[f"phi_{i}"] = keras.ops.convert_to_numpy(variable)
    for i, variable in enumerate(model.optimizer.variables):
        results[f"optimizer_{i}"] = keras.ops.convert_to_numpy(variable)
    for i, variable in enumerate(model.meta_optimizer.variables):
        results[f"meta_optimizer_{i}"] = keras.ops.convert_to_numpy(variable)
    for key, values in history.history.items():
        results[f"history/{key}"] = np.asarray(values, dtype="float64")
    for key, value in evaluation.items():
        results[f"evaluate/{key}"] = np.asarray(value, dtype="float64")
    return results


class PauseAt:
    """A callback that stops the process before step `step` (to be killed there)."""

    def __new__(cls, step, path):
        import keras

        class Pause(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                if int(self.model.optimizer.iterations.numpy()) == step:
                    with open(path, "w") as f:
                        f.write(str(step))
                    while True:  # Killed here by the test.
                        time.sleep(1)

        return Pause()


def make_strategy(args):
    import tensorflow as tf

    if args.strategy == "multi_worker":
        options = tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=args.collective_timeout
        )
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    if args.strategy == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
        return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    return tf.distribute.get_strategy()


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import numpy as np

    started = time.time()
    strategy = make_strategy(args)
    results = train(strategy, args)
    np.savez(args.out, **results)
    summary = {
        "task": json.loads(os.environ.get("TF_CONFIG", "{}")).get("task"),
        "replicas": strategy.num_replicas_in_sync,
        "step": int(results["step"]),
        "meta_position": int(results["meta_position"]),
        "phi": [round(float(v), 6) for v in np.ravel(results["phi_0"])],
        "val_accuracy": round(float(results["evaluate/accuracy"]), 4),
        "seconds": round(time.time() - started, 1),
    }
    print("RESULT " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    sys.exit(main())
