"""Screening runner: one prototype family, one seed, full-length noisy CIFAR-10-dev.

The prototypes (families.py, l2rw.py) were screened here before any became a
library family; docs/RESULTS.md ("Screening") reports what they gave. Scored on
a holdout (20% of the training split), never on the validation split.

python scripts/screening/screen.py METHOD --seed 0 --noise 0.4 --kind symmetric \
    --eval holdout --epochs 30
Writes a JSON line to results.jsonl.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa
import numpy as np  # noqa
import tensorflow as tf  # noqa

sys.path.insert(0, os.path.dirname(__file__))
import families  # noqa
from tf_metaloss import losses as L  # noqa
from tf_metaloss.evaluation import compare as C  # noqa
from tf_metaloss.evaluation import datasets, noise as noise_lib  # noqa
from tf_metaloss.models.meta_model import MetaModel  # noqa

p = argparse.ArgumentParser()
p.add_argument("method")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--noise", type=float, default=0.4)
p.add_argument("--kind", default="symmetric")
p.add_argument("--eval", default="holdout")
p.add_argument("--epochs", type=int, default=30)
p.add_argument("--mlr", type=float, default=0.01)
p.add_argument("--obj", default="crossentropy")
p.add_argument("--every", type=int, default=1)
p.add_argument("--tag", default="")
p.add_argument("--out", default="docs/figures/screening/results.jsonl")
p.add_argument("--data", default=os.environ.get("CIFAR10_DEV", "cifar10_dev.npz"))
p.add_argument("--clip", type=float, default=None)
p.add_argument("--lalr", type=float, default=None)
p.add_argument("--normdir", action="store_true")
p.add_argument("--unroll", type=int, default=1)
p.add_argument("--neumann", type=int, default=None)
p.add_argument("--esphi", type=int, default=None)  # patience in meta-updates
args = p.parse_args()

if args.normdir:
    from tf_metaloss.meta import lookahead as _la

    def _sgd_update_direction(weights, grads, learning_rate):
        # The same lookahead point, but the meta-gradient sees only the direction:
        # the step's length is held constant.
        norm = tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(g)) for g in grads]))
        scale = tf.stop_gradient(norm) / tf.maximum(norm, 1e-12)
        return [w - tf.cast(learning_rate, w.dtype) * scale * g for w, g in zip(weights, grads)]

    _la.sgd_update = _sgd_update_direction

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

M = args.method
keras.utils.set_random_seed(args.seed)
base = C.build_model("cnn", split.x_train.shape[1:], nc, 128)
opt = keras.optimizers.SGD(0.05, momentum=0.9)

fixed = {
    "ce": L.FixedLoss("crossentropy", from_logits=True),
    "gce": L.FixedLoss("generalized_crossentropy", q=0.7, from_logits=True),
    "gce0.8": L.FixedLoss("generalized_crossentropy", q=0.8, from_logits=True),
    "gce0.9": L.FixedLoss("generalized_crossentropy", q=0.9, from_logits=True),
    "gce0.5": L.FixedLoss("generalized_crossentropy", q=0.5, from_logits=True),
    "oracle": L.FixedLoss("crossentropy", from_logits=True),
}


def learned(name):
    s = args.seed
    if name == "metaloss":
        return L.MetaLoss(from_logits=True)
    if name == "metaloss_gce":
        return L.MetaLoss(from_logits=True, initial_weights=[0.0, 0.0, 0.0, 1.0, 0.0])
    if name == "sw":
        return L.SampleWeightedLoss(from_logits=True, seed=s)
    if name.startswith("wn_"):
        # wn_<base>_<feat+feat>[_h<units>][_nonorm][_f<floor>]
        parts = name.split("_")
        basel = {
            "ce": "crossentropy",
            "gce": "generalized_crossentropy",
            "mae": "mae_classification",
        }[parts[1]]
        feats = parts[2].split("+")
        hidden, norm, floor, cap = (32,), True, 0.0, None
        for extra in parts[3:]:
            if extra.startswith("cap"):
                cap = float(extra[3:])
            if extra.startswith("h"):
                hidden = (int(extra[1:]),)
            elif extra == "nonorm":
                norm = False
            elif extra.startswith("f"):
                floor = float(extra[1:])
        return families.WeightNetLoss(
            basel, feats, hidden, norm, nc, seed=s, floor=floor, cap=cap, from_logits=True
        )
    if name.startswith("mono_"):
        # mono_<base>_<feature>[_nobias]
        parts = name.split("_")
        basel = {"ce": "crossentropy", "gce": "generalized_crossentropy"}[parts[1]]
        slope = [float(x[1:]) for x in parts[3:] if x.startswith("s")]
        return families.MonotoneWeightLoss(
            basel,
            nc,
            parts[2],
            "nobias" not in parts,
            init_slope=slope[0] if slope else 0.0,
            from_logits=True,
        )
    if name.startswith("small_"):
        # small_<base>_<drop>[_ramp<epochs>]
        parts = name.split("_")
        basel = {"ce": "crossentropy", "gce": "generalized_crossentropy"}[parts[1]]
        return families.SmallLossLoss(
            basel,
            0.0 if any(x.startswith("ramp") for x in parts) else float(parts[2]),
            from_logits=True,
        )
    if name.startswith("gceq"):
        # gceq_<init>[_pc]
        parts = name.split("_")
        qmax = [float(x[3:]) for x in parts if x.startswith("max")]
        return families.LearnedQLoss(
            float(parts[1]), "pc" in parts, nc, q_max=qmax[0] if qmax else 1.0, from_logits=True
        )
    if name.startswith("transition"):
        # transition[_<base>][_d<diag>]
        parts = name.split("_")
        base_ = "gce" if "gce" in parts else "ce"
        diag_ = [float(x[1:]) for x in parts if x.startswith("d")]
        return families.TransitionLoss(nc, diag_[0] if diag_ else 0.9, base_, from_logits=True)
    if name.startswith("boot_"):
        feats = name.split("_")[1].split("+")
        return families.BootstrapNetLoss(feats, (32,), nc, seed=s, from_logits=True)
    raise ValueError(name)


x_fit, y_fit = split.x_train, split.y_train


def train_plain(x, y, loss, epochs, seed, lr=0.05, init=None):
    keras.utils.set_random_seed(seed)
    m = C.build_model("cnn", split.x_train.shape[1:], nc, 128)
    if init is not None:
        m.set_weights(init.get_weights())
    m.compile(optimizer=keras.optimizers.SGD(lr, momentum=0.9), loss=loss)
    ds, st = C.training_dataset(x, y, 128, epochs, seed)
    m.fit(ds, epochs=epochs, steps_per_epoch=st, verbose=0)
    return m


def softmax_np(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


class CorrectedCE(keras.losses.Loss):
    """y_true = [label, trusted]; forward-corrected CE for untrusted samples."""

    def __init__(self, T, **kw):
        super().__init__(**kw)
        self.T = tf.constant(T, tf.float32)

    def call(self, y_true, y_pred):
        label = tf.cast(y_true[:, 0], tf.int32)
        trusted = tf.cast(y_true[:, 1], tf.float32)
        p = tf.nn.softmax(y_pred)
        noisy_p = tf.matmul(p, self.T)
        oh = tf.one_hot(label, nc)
        ce_clean = -tf.reduce_sum(oh * tf.math.log(tf.maximum(p, 1e-7)), -1)
        ce_noisy = -tf.reduce_sum(oh * tf.math.log(tf.maximum(noisy_p, 1e-7)), -1)
        return trusted * ce_clean + (1 - trusted) * ce_noisy


if M in ("glc", "fc_est", "finetune"):
    t0 = time.time()
    x_all = np.concatenate([split.x_train, split.x_meta])
    y_all = np.concatenate([split.y_train, split.y_meta])
    ce = L.FixedLoss("crossentropy", from_logits=True)
    if M == "finetune":
        stage1 = train_plain(x_all, y_all, ce, args.epochs, args.seed)
        model = train_plain(split.x_meta, split.y_meta, ce, 10, args.seed, lr=0.01, init=stage1)
        T_est = None
    else:
        if M == "glc":  # Hendrycks et al. 2018: stage 1 on untrusted data only
            stage1 = train_plain(split.x_train, split.y_train, ce, args.epochs, args.seed)
            probs = softmax_np(stage1.predict(split.x_meta, batch_size=512, verbose=0))
            T_est = np.stack([probs[split.y_meta == i].mean(0) for i in range(nc)])
            trusted = np.concatenate([np.zeros(len(split.x_train)), np.ones(len(split.x_meta))])
        else:  # Patrini et al. 2017: anchor points on the noisy data, no trusted set
            stage1 = train_plain(x_all, y_all, ce, args.epochs, args.seed)
            probs = softmax_np(stage1.predict(x_all, batch_size=512, verbose=0))
            T_est = np.stack([probs[np.argmax(probs[:, i])] for i in range(nc)])
            trusted = np.zeros(len(x_all))
        y2 = np.stack([y_all, trusted], 1).astype("float32")
        model = train_plain(x_all, y2, CorrectedCE(T_est), args.epochs, args.seed)
    pred = model.predict(split.x_eval, batch_size=512, verbose=0).argmax(-1)
    acc = round(float((pred == split.y_eval).mean()), 4)
    rec = {
        "method": M,
        "tag": args.tag,
        "seed": args.seed,
        "noise": args.noise,
        "kind": args.kind,
        "eval": args.eval,
        "epochs": args.epochs,
        "acc": acc,
        "curve": [acc],
        "best": acc,
        "wall": round(time.time() - t0, 1),
    }
    if T_est is not None:
        rec["T_diag"] = np.round(np.diag(T_est), 3).tolist()
    print(json.dumps(rec), flush=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    sys.exit(0)

if M in fixed:
    loss = fixed[M]
    if M == "oracle":
        y_fit = split.y_train_clean
    # fair: baselines also train on the clean meta set
    x_fit = np.concatenate([x_fit, split.x_meta])
    y_fit = np.concatenate([y_fit, split.y_meta])
    model = base
    model.compile(optimizer=opt, loss=loss)
    fit_kwargs = {}
else:
    loss = learned(M)
    model = MetaModel(base)
    model.compile(
        optimizer=opt,
        loss=loss,
        meta_optimizer=keras.optimizers.Adam(args.mlr),
        meta_objective=L.FixedLoss(args.obj, from_logits=True),
        meta_every=args.every,
        meta_seed=args.seed,
        meta_global_clipnorm=args.clip,
        lookahead_learning_rate=args.lalr,
        **(
            {"meta_method": __import__("tf_metaloss").meta.estimators.Neumann(terms=args.neumann)}
            if args.neumann is not None
            else {"unroll_steps": args.unroll}
        ),
    )
    fit_kwargs = {"meta_data": (split.x_meta, split.y_meta), "meta_batch_size": 128}

ds, steps = C.training_dataset(x_fit, y_fit, 128, args.epochs, args.seed)
curve = []


diag = []
probe = np.random.default_rng(5).permutation(len(split.x_train))[:1024]


class Eval(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch % 5 == 4 or epoch == args.epochs - 1 or epoch < 3:
            pred = model.predict(split.x_eval, batch_size=512, verbose=0).argmax(-1)
            acc = round(float((pred == split.y_eval).mean()), 4)
            if epoch % 5 == 4 or epoch == args.epochs - 1:
                curve.append(acc)
            d = {"epoch": epoch + 1, "acc": acc}
            if hasattr(loss, "sample_weights") and args.noise > 0:
                from sklearn.metrics import roc_auc_score

                xp, yp_noisy, mask = (
                    split.x_train[probe],
                    split.y_train[probe],
                    split.noisy_mask[probe],
                )
                out = model.predict(xp, batch_size=512, verbose=0)
                w = np.concatenate(
                    [
                        np.asarray(loss.sample_weights(yp_noisy[i : i + 128], out[i : i + 128]))
                        for i in range(0, 1024, 128)
                    ]
                )
                d.update(
                    auc=round(float(roc_auc_score(~mask, w)), 3),
                    wmax=round(float(w.max()), 2),
                    wmin=round(float(w.min()), 3),
                    w_noisy=round(float(w[mask].mean()), 3),
                    memo=round(float((out.argmax(-1)[mask] == yp_noisy[mask]).mean()), 3),
                )
            if isinstance(loss, families.TransitionLoss):
                d["T_diag_mean"] = round(float(np.diag(np.asarray(loss.transition())).mean()), 3)
            if isinstance(loss, families.SmallLossLoss):
                d["drop"] = round(float(loss.trainable_variables[0].numpy()), 3)
            if isinstance(loss, families.MonotoneWeightLoss):
                d["slope"] = round(float(loss.trainable_variables[0].numpy()), 3)
            if isinstance(loss, families.LearnedQLoss):
                d["q"] = np.round(np.asarray(loss.trainable_variables[0].numpy()), 3).tolist()
            if hasattr(loss, "mixture_weights"):
                d["mix"] = np.round(np.asarray(loss.mixture_weights()), 2).tolist()
            diag.append(d)
            print(json.dumps(d), flush=True)


callbacks = [Eval()]
if args.esphi:
    import tf_metaloss as _tml

    callbacks.append(
        _tml.callbacks.LossParameterEarlyStopping(
            patience=args.esphi, window=steps, restore_best=True
        )
    )
ramp = [x for x in M.split("_") if x.startswith("ramp")]
if M.startswith("small_") and ramp:
    target, ramp_epochs = float(M.split("_")[2]), int(ramp[0][4:])

    class Ramp(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            loss.trainable_variables[0].assign(target * min(1.0, epoch / ramp_epochs))

    callbacks.insert(0, Ramp())
t0 = time.time()
model.fit(
    ds, epochs=args.epochs, steps_per_epoch=steps, verbose=0, callbacks=callbacks, **fit_kwargs
)
wall = time.time() - t0
rec = {
    "method": M,
    "tag": args.tag,
    "seed": args.seed,
    "noise": args.noise,
    "kind": args.kind,
    "eval": args.eval,
    "epochs": args.epochs,
    "obj": args.obj,
    "mlr": args.mlr,
    "every": args.every,
    "clip": args.clip,
    "lalr": args.lalr,
    "normdir": args.normdir,
    "unroll": args.unroll,
    "neumann": args.neumann,
    "esphi": args.esphi,
    "acc": curve[-1],
    "curve": curve,
    "diag": diag,
    "best": max(curve),
    "wall": round(wall, 1),
}
if hasattr(loss, "sample_weights") and args.noise > 0:
    from sklearn.metrics import roc_auc_score

    w = []
    for i in range(0, len(split.x_train), 512):
        yp = model.predict(split.x_train[i : i + 512], verbose=0)
        w.append(np.asarray(loss.sample_weights(split.y_train[i : i + 512], yp)))
    w = np.concatenate(w)
    rec["auc_clean_vs_noisy"] = round(float(roc_auc_score(~split.noisy_mask, w)), 4)
    rec["w_clean"] = round(float(w[~split.noisy_mask].mean()), 3)
    rec["w_noisy"] = round(float(w[split.noisy_mask].mean()), 3)
if isinstance(loss, families.TransitionLoss):
    rec["T_diag"] = np.round(np.diag(np.asarray(loss.transition())), 3).tolist()
if hasattr(loss, "mixture_weights"):
    rec["mix"] = np.round(np.asarray(loss.mixture_weights()), 3).tolist()
print(json.dumps(rec), flush=True)
with open(args.out, "a") as f:
    f.write(json.dumps(rec) + "\n")
