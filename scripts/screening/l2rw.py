"""Prototype: learning-to-reweight (Ren et al. 2018) per-sample weights from the meta-gradient.

python l2rw.py --seed 0 --noise 0.4 --kind symmetric --eval holdout [--base ce|gce] [--train-meta]
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa
import numpy as np  # noqa
import tensorflow as tf  # noqa

from tf_metaloss.evaluation import compare as C  # noqa
from tf_metaloss.evaluation import datasets  # noqa
from tf_metaloss.losses import functional  # noqa

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--noise", type=float, default=0.4)
p.add_argument("--kind", default="symmetric")
p.add_argument("--eval", default="holdout")
p.add_argument("--epochs", type=int, default=30)
p.add_argument("--base", default="ce")
p.add_argument("--obj", default="crossentropy")
p.add_argument("--norm", default="sum")  # sum: weights sum to batch size; none
p.add_argument("--mix", type=float, default=0.0)  # w = (1-mix)*w_l2rw + mix*uniform
p.add_argument("--tag", default="")
p.add_argument("--out", default="docs/figures/screening/results.jsonl")
p.add_argument("--data", default=os.environ.get("CIFAR10_DEV", "cifar10_dev.npz"))
args = p.parse_args()

data = datasets.load_dataset(args.data)
cfg = C.CompareConfig(
    dataset="x",
    noise_rate=args.noise,
    noise_kind=args.kind,
    methods=("ce",),
    seeds=(args.seed,),
    epochs=args.epochs,
    batch_size=128,
    model="cnn",
    eval_split=args.eval,
    meta_fraction=0.1,
)
split = C.make_split(data, cfg, args.seed)
nc = split.num_classes
keras.utils.set_random_seed(args.seed)
model = C.build_model("cnn", split.x_train.shape[1:], nc, 128)
opt = keras.optimizers.SGD(0.05, momentum=0.9)
opt.build(model.trainable_variables)
base_fn = {
    "ce": functional.crossentropy,
    "gce": lambda y, p, from_logits: functional.generalized_crossentropy(y, p, from_logits),
}[args.base]
obj_fn = functional.get(args.obj)
ds, steps = C.training_dataset(split.x_train, split.y_train, 128, args.epochs, args.seed)
meta_ds = (
    tf.data.Dataset.from_tensor_slices((split.x_meta, split.y_meta))
    .shuffle(len(split.x_meta), seed=args.seed)
    .repeat()
    .batch(128, drop_remainder=True)
)
meta_it = iter(meta_ds)
weights = model.trainable_variables


@tf.function
def step(x, y, xm, ym):
    eps = tf.zeros([tf.shape(x)[0]])
    with tf.GradientTape() as outer:
        outer.watch(eps)
        with tf.GradientTape(persistent=True) as inner:
            logits = model(x, training=True)
            per = base_fn(y, logits, from_logits=True)
            loss_eps = tf.reduce_sum(eps * per)
        g = inner.gradient(loss_eps, weights)
        # meta objective at theta - a*g(eps); evaluated at eps=0 so theta'=theta, but we
        # need the dependence on eps: use a first-order expansion via the dot product.
        with tf.GradientTape() as mtape:
            mlogits = model(xm, training=True)
            mloss = tf.reduce_mean(obj_fn(ym, mlogits, from_logits=True))
        gm = mtape.gradient(mloss, weights)
        # d meta(theta - g(eps)) / d eps at eps=0 = -gm . dg/deps
        dot = tf.add_n([tf.reduce_sum(a * tf.stop_gradient(b)) for a, b in zip(g, gm)])
    eps_grad = outer.gradient(dot, eps)  # = gm . grad l_i
    w = tf.maximum(eps_grad, 0.0)  # positive alignment: keep
    total = tf.reduce_sum(w)
    n = tf.cast(tf.shape(x)[0], tf.float32)
    w = tf.where(total > 0, w / total * n, tf.zeros_like(w))
    if args.mix:
        w = (1 - args.mix) * w + args.mix
    wloss = tf.reduce_mean(tf.stop_gradient(w) * per)
    grads = inner.gradient(per, weights, output_gradients=tf.stop_gradient(w) / n)
    opt.apply_gradients(zip(grads, weights))
    return wloss, w


probe = np.random.default_rng(5).permutation(len(split.x_train))[:1024]
curve, diag = [], []
t0 = time.time()
it = iter(ds)
for epoch in range(args.epochs):
    ws, noisy_flags = [], []
    for _s in range(steps):
        x, y = next(it)
        xm, ym = next(meta_it)
        _, w = step(x, y, xm, ym)
    pred = model.predict(split.x_eval, batch_size=512, verbose=0).argmax(-1)
    acc = round(float((pred == split.y_eval).mean()), 4)
    if epoch % 5 == 4 or epoch == args.epochs - 1:
        curve.append(acc)
    if epoch % 5 == 4 or epoch < 3 or epoch == args.epochs - 1:
        # weights on a probe batch: alignment with one meta batch
        xp, yp, mask = (
            split.x_train[probe[:128]],
            split.y_train[probe[:128]],
            split.noisy_mask[probe[:128]],
        )
        xm, ym = next(meta_it)
        _, wp = step.python_function if False else (None, None)
        out = model.predict(split.x_train[probe], batch_size=512, verbose=0)
        memo = float(
            (
                out.argmax(-1)[split.noisy_mask[probe]]
                == split.y_train[probe][split.noisy_mask[probe]]
            ).mean()
        )
        d = {"epoch": epoch + 1, "acc": acc, "memo": round(memo, 3)}
        diag.append(d)
        print(json.dumps(d), flush=True)
rec = {
    "method": f"l2rw_{args.base}" + (f"_mix{args.mix}" if args.mix else ""),
    "tag": args.tag,
    "seed": args.seed,
    "noise": args.noise,
    "kind": args.kind,
    "eval": args.eval,
    "epochs": args.epochs,
    "obj": args.obj,
    "acc": curve[-1],
    "curve": curve,
    "diag": diag,
    "best": max(curve),
    "wall": round(time.time() - t0, 1),
}
print(json.dumps(rec), flush=True)
with open(args.out, "a") as f:
    f.write(json.dumps(rec) + "\n")
