"""A learned loss for a keras-hub text classifier (SST-2 sentiment).

Trains a small BERT classifier from scratch, with a WordPiece vocabulary
computed from the training sentences (no download), on a learnable loss
(`tml.MetaLoss`, generalized cross-entropy with a learned q) that is meta-learned on a small
clean meta set. The classifier's preprocessor runs in the `tf.data` pipeline
of the training, meta and validation data alike (`tml.text.preprocess`).
Optionally corrupts the training labels first. Saves the model with its
learned loss, loads it back and checks that the predictions survive.

SST-2 comes from a directory holding `sst2_train.jsonl` and `sst2_dev.jsonl`
(one `{"sentence": ..., "label": 0 or 1}` a line, the GLUE splits), or from
TensorFlow Datasets (`--data sst2`, needs a download and the `datasets`
extra). `--tiny` runs a seconds-long smoke test on a built-in toy corpus.

With network access, start from a pretrained classifier instead:
`--preset bert_tiny_en_uncased` loads it with
`keras_hub.models.TextClassifier.from_preset` (its own vocabulary; use a
fine-tuning learning rate, e.g. `--optimizer adam --learning-rate 5e-5`).

Run:

    python examples/text_classification.py --data /path/to/glue_sst2 --train-size 4000
    python examples/text_classification.py --data /path/to/glue_sst2 --noise 0.3
    python examples/text_classification.py --tiny
"""

import argparse
import os
import tempfile

import keras
import numpy as np

import tf_metaloss as tml
from tf_metaloss.evaluation import inject_label_noise
from tf_metaloss.evaluation import load_sst2

# A toy sentiment corpus for --tiny: filler words around sentiment words.
POSITIVE = ("good", "great", "fun", "moving", "superb", "charming")
NEGATIVE = ("bad", "dull", "boring", "messy", "awful", "tedious")
FILLER = ("the", "film", "is", "a", "plot", "and", "story", "acting")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Meta-learn the loss of a keras-hub BERT text classifier on SST-2 "
        "(trained from scratch, offline), then save and reload it with its learned loss."
    )
    parser.add_argument(
        "--data",
        default=None,
        help="a directory holding sst2_train.jsonl and sst2_dev.jsonl, or 'sst2' "
        "(TensorFlow Datasets, downloads); required unless --tiny",
    )
    parser.add_argument(
        "--train-size",
        type=int,
        default=4000,
        help="training sentences used, meta set included (default: 4000)",
    )
    parser.add_argument(
        "--meta-size", type=int, default=400, help="clean meta sentences (default: 400)"
    )
    parser.add_argument("--epochs", type=int, default=4, help="training epochs (default: 4)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")
    parser.add_argument(
        "--noise",
        type=float,
        default=0.0,
        help="fraction of training labels flipped at random (default: 0)",
    )
    parser.add_argument(
        "--sequence-length", type=int, default=64, help="tokens per sentence (default: 64)"
    )
    parser.add_argument(
        "--optimizer",
        choices=("adam", "sgd"),
        default="adam",
        help="the classifier's optimizer (default: adam)",
    )
    parser.add_argument(
        "--learning-rate", type=float, default=1e-3, help="its learning rate (default: 1e-3)"
    )
    parser.add_argument(
        "--preset",
        default=None,
        help="a keras-hub preset (e.g. bert_tiny_en_uncased) to start from instead of a "
        "random tiny BERT; needs network access",
    )
    parser.add_argument(
        "--output",
        default=None,
        help="where to save the model (default: a temporary directory)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a seconds-long smoke run on a built-in toy corpus (1 epoch)",
    )
    args = parser.parse_args(argv)
    if args.data is None and not args.tiny:
        parser.error("--data is required unless --tiny")
    return args


def toy_sentences(n, seed):
    """`(sentences, labels)`: filler words around two sentiment words of the label."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    sentences = []
    for label in labels:
        words = list(rng.choice(FILLER, 4)) + list(rng.choice((NEGATIVE, POSITIVE)[label], 2))
        rng.shuffle(words)
        sentences.append(" ".join(words))
    return np.array(sentences, dtype=object), labels


def load_data(args):
    """Training, meta and validation `(sentences, labels)`."""
    if args.tiny:
        x, y = toy_sentences(192, args.seed)
        x_val, y_val = toy_sentences(64, args.seed + 1)
        return (x[:160], y[:160]), (x[160:], y[160:]), (x_val, y_val)
    data = load_sst2(None if args.data == "sst2" else args.data)
    order = np.random.default_rng(args.seed).permutation(len(data.x_train))[: args.train_size]
    meta, train = order[: args.meta_size], order[args.meta_size :]
    return (
        (data.x_train[train], data.y_train[train]),
        (data.x_train[meta], data.y_train[meta]),
        (data.x_val, data.y_val),
    )


def build_classifier(args, sentences):
    """A keras-hub `TextClassifier`: a preset, or a tiny BERT from a computed vocabulary."""
    if args.preset:
        import keras_hub

        return keras_hub.models.TextClassifier.from_preset(
            args.preset, num_classes=2, sequence_length=args.sequence_length
        )
    size = 200 if args.tiny else 8000
    vocabulary = tml.text.word_piece_vocabulary(sentences, vocabulary_size=size)
    if args.tiny:
        return tml.text.bert_classifier(
            vocabulary,
            2,
            sequence_length=16,
            hidden_dim=16,
            num_layers=1,
            num_heads=2,
            intermediate_dim=32,
        )
    return tml.text.bert_classifier(
        vocabulary,
        2,
        sequence_length=args.sequence_length,
        hidden_dim=64,
        num_layers=2,
        num_heads=2,
        intermediate_dim=256,
    )


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_meta, y_meta), (x_val, y_val) = load_data(args)
    noisy = inject_label_noise(y_train, args.noise, num_classes=2, seed=args.seed)
    classifier = build_classifier(args, x_train)

    model = tml.text.meta_model(classifier)
    if args.optimizer == "adam":
        optimizer = keras.optimizers.Adam(args.learning_rate)
    else:
        optimizer = keras.optimizers.SGD(args.learning_rate, momentum=0.9)
    model.compile(
        optimizer=optimizer,
        # The classifier outputs logits (unless built with an activation).
        loss=tml.MetaLoss(from_logits=tml.text.from_logits(classifier)),
        meta_optimizer=keras.optimizers.Adam(0.01),
        # The lookahead is a plain SGD step: at Adam's small learning rate it
        # would barely move the weights, and the meta-gradient with them.
        lookahead_learning_rate=0.05,
        metrics=["accuracy"],
    )
    batch_size = 16 if args.tiny else args.batch_size
    # The preprocessor (tokenizer and packer) runs in tf.data for every dataset.
    train = tml.text.preprocess(
        classifier, (x_train, noisy.labels), batch_size=batch_size, shuffle=True, seed=args.seed
    )
    meta = tml.text.preprocess(classifier, (x_meta, y_meta), batch_size=batch_size)
    val = tml.text.preprocess(classifier, (x_val, y_val), batch_size=256)
    model.fit(
        train,
        meta_data=meta,
        validation_data=val,
        epochs=1 if args.tiny else args.epochs,
        shuffle=False,  # shuffled in the pipeline
        verbose=0 if args.tiny else 2,
    )
    accuracy = model.evaluate(val, verbose=0, return_dict=True)["accuracy"]

    tokens = next(iter(val))[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = args.output or os.path.join(tmp, "text_classifier.keras")
        model.save(path)
        restored = keras.models.load_model(path)
        same_predictions = bool(
            np.allclose(
                restored.predict(tokens, verbose=0), model.predict(tokens, verbose=0), atol=1e-5
            )
        )
    phi = {name: float(value) for name, value in model.loss.parameter_summary().items()}
    same_phi = all(
        np.array_equal(a.numpy(), b.numpy())
        for a, b in zip(model.loss.trainable_variables, restored.loss.trainable_variables)
    )

    print(
        f"{len(x_train)} training sentences ({int(noisy.mask.sum())} labels corrupted), "
        f"{len(x_meta)} clean meta sentences, {len(x_val)} validation sentences"
    )
    print(f"validation accuracy: {accuracy:.4f}")
    print("learned loss: " + ", ".join(f"{k} {v:.3f}" for k, v in phi.items()))
    print(
        f"saved to {path} and reloaded: phi restored: {same_phi}, "
        f"predictions match: {same_predictions}"
    )
    return {
        "val_accuracy": float(accuracy),
        "phi": phi,
        "phi_restored": same_phi,
        "predictions_restored": same_predictions,
        "num_corrupted": int(noisy.mask.sum()),
    }


if __name__ == "__main__":
    main()
