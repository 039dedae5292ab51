"""MetaModel over keras-hub text classifiers, offline: tiny backbones from configs."""

import os
import subprocess
import sys
import textwrap

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

import tf_metaloss as tml

POSITIVE = ("good", "great", "fun", "moving", "superb")
NEGATIVE = ("bad", "dull", "boring", "messy", "awful")
FILLER = ("the", "film", "is", "a", "plot", "and")
VOCABULARY = list(tml.text.BERT_RESERVED_TOKENS) + list(POSITIVE + NEGATIVE + FILLER)
SEQUENCE_LENGTH = 12


def sentiment_sentences(n, seed=0):
    """`(sentences, labels)`: filler words around sentiment words of the label."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    sentences = []
    for label in labels:
        words = list(rng.choice(FILLER, 3)) + list(rng.choice((NEGATIVE, POSITIVE)[label], 2))
        rng.shuffle(words)
        sentences.append(" ".join(words))
    return np.array(sentences, dtype=object), labels


def tiny_classifier(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    kwargs = {
        "sequence_length": SEQUENCE_LENGTH,
        "num_layers": 1,
        "hidden_dim": 16,
        "num_heads": 2,
        "intermediate_dim": 32,
        **kwargs,
    }
    return tml.text.bert_classifier(VOCABULARY, num_classes=2, **kwargs)


def compiled(classifier, **kwargs):
    model = tml.text.meta_model(classifier)
    kwargs.setdefault("optimizer", keras.optimizers.SGD(0.1, momentum=0.9))
    kwargs.setdefault(
        "loss", tml.MetaLoss(family="generalized_ce", from_logits=True, bounds=(0.001, 1.0))
    )
    kwargs.setdefault("meta_optimizer", keras.optimizers.Adam(0.05))
    # These tests check the meta step's mechanics: no guard, whose revert would restore phi.
    kwargs.setdefault("meta_guard", None)
    model.compile(**kwargs)
    return model


@pytest.fixture(scope="module")
def data():
    x, y = sentiment_sentences(96, seed=0)
    x_meta, y_meta = sentiment_sentences(32, seed=1)
    return x, y, x_meta, y_meta


# -- the model -----------------------------------------------------------------------


def test_meta_model_is_the_backbone_and_head_without_the_preprocessor():
    classifier = tiny_classifier()
    model = tml.text.meta_model(classifier)
    assert isinstance(model, tml.MetaModel)
    core = model.base_model
    assert sorted(core.input) == ["padding_mask", "segment_ids", "token_ids"]
    assert classifier.preprocessor not in core.layers
    # The weights are the classifier's own (shared, not copied).
    assert {id(v) for v in core.weights} == {id(v) for v in classifier.weights}
    x = classifier.preprocessor(["good film", "awful plot"])
    np.testing.assert_array_equal(model(x), classifier(x))


def test_metamodel_wraps_a_task_like_meta_model():
    classifier = tiny_classifier()
    model = tml.MetaModel(classifier)
    assert sorted(model.base_model.input) == ["padding_mask", "segment_ids", "token_ids"]
    assert not tml.text.is_task(model.base_model)
    assert tml.text.is_task(classifier)


def test_meta_model_rejects_what_is_not_a_text_classifier():
    plain = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="Invalid value for argument `classifier`.*TextClassifier"):
        tml.text.meta_model(plain)


def test_compile_checks_from_logits_against_the_classifier():
    with pytest.raises(ValueError, match=r"outputs logits: expected .*from_logits=True"):
        compiled(tiny_classifier(), loss=tml.MetaLoss())
    keras.utils.set_random_seed(0)
    backbone = tiny_classifier().backbone
    softmax = keras_hub.models.BertTextClassifier(
        backbone, num_classes=2, activation="softmax", compile=False
    )
    assert not tml.text.from_logits(softmax)
    with pytest.raises(ValueError, match=r"outputs probabilities .*from_logits=False"):
        compiled(softmax, loss=tml.MetaLoss(from_logits=True))
    model = compiled(softmax, loss=tml.MetaLoss(from_logits=False))
    assert not model.loss.from_logits


def test_the_classifiers_compile_defaults_do_not_replace_the_learnable_loss(data):
    x, y, x_meta, y_meta = data
    keras.utils.set_random_seed(0)
    classifier = keras_hub.models.BertTextClassifier(
        tiny_classifier().backbone,
        num_classes=2,
        preprocessor=tiny_classifier().preprocessor,
    )  # keras-hub compiles it: Adam(5e-5) and sparse categorical cross-entropy
    assert isinstance(classifier.loss, keras.losses.SparseCategoricalCrossentropy)
    optimizer = keras.optimizers.SGD(0.1)
    model = compiled(classifier, optimizer=optimizer, metrics=["accuracy"])
    assert isinstance(model.loss, tml.MetaLoss) and model.optimizer is optimizer
    train = tml.text.preprocess(classifier, (x, y), batch_size=32)
    meta = tml.text.preprocess(classifier, (x_meta, y_meta), batch_size=16)
    model.fit(train, meta_data=meta, epochs=1, shuffle=False, verbose=0)
    assert int(model.optimizer.iterations) == 3
    assert int(classifier.optimizer.iterations) == 0  # the classifier's own was never used


def test_distilbert_classifier_trains_through_the_meta_step(data):
    x, y, x_meta, y_meta = data
    keras.utils.set_random_seed(0)
    tokenizer = keras_hub.models.DistilBertTokenizer(vocabulary=VOCABULARY)
    preprocessor = keras_hub.models.DistilBertTextClassifierPreprocessor(
        tokenizer, sequence_length=SEQUENCE_LENGTH
    )
    backbone = keras_hub.models.DistilBertBackbone(
        vocabulary_size=len(VOCABULARY),
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=SEQUENCE_LENGTH,
    )
    classifier = keras_hub.models.DistilBertTextClassifier(
        backbone, num_classes=2, preprocessor=preprocessor, hidden_dim=16
    )
    model = compiled(classifier)
    assert sorted(model.base_model.input) == ["padding_mask", "token_ids"]
    phi = model.loss.trainable_variables[0].numpy().copy()
    model.fit(
        tml.text.preprocess(classifier, (x, y), batch_size=32),
        meta_data=tml.text.preprocess(classifier, (x_meta, y_meta), batch_size=16),
        epochs=1,
        shuffle=False,
        verbose=0,
    )
    assert int(model.meta_optimizer.iterations) == 3
    assert not np.array_equal(model.loss.trainable_variables[0].numpy(), phi)


# -- training with preprocessed data -------------------------------------------------


def test_fit_meta_learns_on_preprocessed_training_meta_and_validation_data(data):
    x, y, x_meta, y_meta = data
    classifier = tiny_classifier()
    model = compiled(classifier, metrics=["accuracy"])
    phi = model.loss.trainable_variables[0].numpy().copy()
    history = model.fit(
        tml.text.preprocess(classifier, (x, y), batch_size=16, shuffle=True, seed=0),
        meta_data=tml.text.preprocess(classifier, (x_meta, y_meta), batch_size=16),
        validation_data=tml.text.preprocess(classifier, (x_meta, y_meta), batch_size=16),
        epochs=2,
        verbose=0,
        shuffle=False,
    )
    # A meta step on every one of the 2 x 6 steps, each on a meta batch of tokens.
    assert int(model.meta_optimizer.iterations) == 12
    assert not np.array_equal(model.loss.trainable_variables[0].numpy(), phi)
    for key in ("loss", "meta_objective", "val_accuracy", "val_meta_objective"):
        assert np.all(np.isfinite(history.history[key])), key
    assert len(history.history["val_accuracy"]) == 2


def test_meta_data_as_dicts_of_token_arrays(data):
    x, y, x_meta, y_meta = data
    classifier = tiny_classifier()
    tokens = {k: keras.ops.convert_to_numpy(v) for k, v in classifier.preprocessor(list(x)).items()}
    meta_tokens = {
        k: keras.ops.convert_to_numpy(v) for k, v in classifier.preprocessor(list(x_meta)).items()
    }

    model = compiled(classifier)
    model.fit(tokens, y, meta_data=(meta_tokens, y_meta), batch_size=32, epochs=1, verbose=0)
    assert int(model.meta_optimizer.iterations) == 3

    split = compiled(tiny_classifier())
    split.fit(tokens, y, meta_split=0.25, batch_size=24, epochs=1, verbose=0)
    assert int(split.optimizer.iterations) == 3  # 72 training samples

    stepped = compiled(tiny_classifier())
    batch = ({k: v[:8] for k, v in tokens.items()}, y[:8])
    meta_batch = ({k: v[:8] for k, v in meta_tokens.items()}, y_meta[:8])
    stepped.train_on_batch(*batch, meta_batch=meta_batch)
    assert int(stepped.meta_optimizer.iterations) == 1
    result = stepped.compute_meta_gradient(batch, meta_batch)
    assert all(np.all(np.isfinite(g)) for g in result.phi_grads)
    assert np.linalg.norm(np.concatenate([np.ravel(g) for g in result.phi_grads])) > 0


def test_meta_data_token_shapes_are_checked(data):
    x, y, x_meta, y_meta = data
    classifier = tiny_classifier()
    model = compiled(classifier)
    unbatched = tml.text.preprocess(classifier, (x_meta, y_meta), batch_size=4).unbatch()
    with pytest.raises(ValueError, match="Expected a batched tf.data.Dataset"):
        model.fit(
            tml.text.preprocess(classifier, (x, y)),
            meta_data=unbatched,
            epochs=1,
            verbose=0,
            shuffle=False,
        )


@pytest.mark.parametrize("where", ["meta_data arrays", "meta_data dataset", "x"])
def test_raw_strings_are_rejected_with_the_fix(data, where):
    x, y, x_meta, y_meta = data
    classifier = tiny_classifier()
    model = compiled(classifier)
    train = tml.text.preprocess(classifier, (x, y), batch_size=32)
    meta = tml.text.preprocess(classifier, (x_meta, y_meta), batch_size=16)
    if where == "meta_data arrays":
        arguments = {"x": train, "meta_data": (x_meta, y_meta)}
    elif where == "meta_data dataset":
        raw = tf.data.Dataset.from_tensor_slices((list(x_meta), y_meta)).batch(8)
        arguments = {"x": train, "meta_data": raw}
    else:
        raw = tf.data.Dataset.from_tensor_slices((list(x), y)).batch(8)
        arguments = {"x": raw, "meta_data": meta}
    name = "x" if where == "x" else "meta_data"
    with pytest.raises(
        ValueError,
        match=rf"Invalid value for argument `{name}`\. Expected preprocessed inputs.*"
        r"tml\.text\.preprocess",
    ):
        model.fit(**arguments, epochs=1, verbose=0, shuffle=False)


# -- preprocess ----------------------------------------------------------------------


def test_preprocess_arrays_datasets_and_sample_weights(data):
    x, y, _, _ = data
    classifier = tiny_classifier()
    preprocessor = classifier.preprocessor
    from_arrays = tml.text.preprocess(preprocessor, (x, y), batch_size=40)
    batches = list(from_arrays)
    assert [len(b[1]) for b in batches] == [40, 40, 16]
    expected = preprocessor(list(x[:40]))
    for key in expected:
        np.testing.assert_array_equal(batches[0][0][key], expected[key])
    np.testing.assert_array_equal(batches[0][1], y[:40])

    unbatched = tf.data.Dataset.from_tensor_slices((list(x), y))
    from_unbatched = list(tml.text.preprocess(classifier, unbatched, batch_size=40))
    np.testing.assert_array_equal(from_unbatched[0][0]["token_ids"], batches[0][0]["token_ids"])
    batched = list(tml.text.preprocess(classifier, unbatched.batch(40)))
    np.testing.assert_array_equal(batched[2][0]["token_ids"], batches[2][0]["token_ids"])

    weights = np.linspace(0.5, 1.5, len(x))
    weighted = next(iter(tml.text.preprocess(classifier, (x, y, weights), batch_size=8)))
    assert len(weighted) == 3
    np.testing.assert_allclose(weighted[2], weights[:8])

    inputs_only = next(iter(tml.text.preprocess(classifier, x, batch_size=8)))
    assert sorted(inputs_only) == ["padding_mask", "segment_ids", "token_ids"]


def test_preprocess_shuffles_by_seed(data):
    x, y, _, _ = data
    classifier = tiny_classifier()

    def labels(seed):
        dataset = tml.text.preprocess(classifier, (x, y), batch_size=96, shuffle=True, seed=seed)
        return next(iter(dataset))[1].numpy()

    assert np.array_equal(labels(1), labels(1))
    assert sorted(labels(1)) == sorted(y) and not np.array_equal(labels(1), y)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"data": ["good", 3]}, "argument `data`. Expected a 1-D list or array of strings"),
        ({"data": (["good", "bad"], [1])}, "argument `data`. Expected one label per sentence"),
        ({"batch_size": 0}, "argument `batch_size`. Expected a positive integer"),
        ({"batched": True, "batch_size": 4}, "argument `batch_size`. Expected None for a data"),
        ({"batched": True, "shuffle": True}, "argument `shuffle`. Expected False for a data"),
        ({"preprocessor": "tokenizer"}, "argument `preprocessor`. Expected a keras-hub pre"),
    ],
)
def test_preprocess_argument_errors(arguments, message):
    classifier = tiny_classifier()
    arguments = {"preprocessor": classifier, "data": (["good", "bad"], [1, 0]), **arguments}
    if arguments.pop("batched", False):
        arguments["data"] = tf.data.Dataset.from_tensor_slices((["good"], [1])).batch(1)
    with pytest.raises(ValueError, match=message):
        tml.text.preprocess(**arguments)


def test_preprocess_needs_a_task_with_a_preprocessor():
    classifier = keras_hub.models.BertTextClassifier(
        tiny_classifier().backbone, num_classes=2, compile=False
    )
    with pytest.raises(ValueError, match="The task's preprocessor is None"):
        tml.text.preprocess(classifier, ["good"])


# -- vocabulary and the offline classifier -----------------------------------------


def test_word_piece_vocabulary_from_the_training_text(data):
    x, _, _, _ = data
    vocabulary = tml.text.word_piece_vocabulary(x, vocabulary_size=200)
    assert vocabulary[:5] == list(tml.text.BERT_RESERVED_TOKENS)
    assert {"good", "awful", "film"} <= set(vocabulary)
    classifier = tml.text.bert_classifier(
        vocabulary, 2, sequence_length=8, hidden_dim=8, num_heads=1, intermediate_dim=8
    )
    token_ids = classifier.preprocessor(["the film is good"])["token_ids"]
    tokens = keras.ops.convert_to_numpy(token_ids)[0]
    ids = [vocabulary.index(w) for w in ("the", "film", "is", "good")]
    assert list(tokens) == [1, *ids, 2, 0, 0]


def test_bert_classifier_argument_errors():
    with pytest.raises(ValueError, match=r"argument `vocabulary`.*special tokens"):
        tml.text.bert_classifier(["good", "bad"], 2)
    with pytest.raises(ValueError, match="argument `num_heads`. Expected a divisor of hidden_dim"):
        tml.text.bert_classifier(VOCABULARY, 2, hidden_dim=10, num_heads=4)
    with pytest.raises(ValueError, match="argument `num_classes`"):
        tml.text.bert_classifier(VOCABULARY, 0)


# -- saving --------------------------------------------------------------------------


def test_save_and_load_restore_the_backbone_head_and_the_learned_loss(data, tmp_path):
    x, y, x_meta, y_meta = data
    classifier = tiny_classifier()
    model = compiled(classifier, meta_seed=3, metrics=["accuracy"])
    train = tml.text.preprocess(classifier, (x, y), batch_size=32)
    meta = tml.text.preprocess(classifier, (x_meta, y_meta), batch_size=16)
    model.fit(train, meta_data=meta, epochs=1, shuffle=False, verbose=0)
    path = str(tmp_path / "text.keras")
    model.save(path)
    restored = keras.models.load_model(path)

    assert isinstance(restored, tml.MetaModel) and isinstance(restored.loss, tml.MetaLoss)
    assert restored.loss.from_logits and restored.meta_seed == 3
    assert len(restored.weights) == len(model.weights)
    for a, b in zip(restored.base_model.weights, model.base_model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(
        restored.loss.trainable_variables[0].numpy(), model.loss.trainable_variables[0].numpy()
    )
    for a, b in zip(restored.meta_optimizer.variables, model.meta_optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    tokens = next(iter(train))[0]
    np.testing.assert_allclose(
        restored.predict(tokens, verbose=0), model.predict(tokens, verbose=0)
    )
    restored.fit(train, meta_data=meta, epochs=1, shuffle=False, verbose=0)
    assert int(restored.meta_optimizer.iterations) == 6


@pytest.mark.integration
def test_a_fresh_process_loads_the_model_without_importing_keras_hub(data, tmp_path):
    x, y, x_meta, y_meta = data
    classifier = tiny_classifier()
    model = compiled(classifier)
    model.fit(
        tml.text.preprocess(classifier, (x, y), batch_size=32),
        meta_data=tml.text.preprocess(classifier, (x_meta, y_meta), batch_size=16),
        epochs=1,
        shuffle=False,
        verbose=0,
    )
    path = tmp_path / "text.keras"
    model.save(path)
    tokens = {k: v.numpy() for k, v in classifier.preprocessor(list(x[:4])).items()}
    np.savez(tmp_path / "tokens.npz", **tokens)
    np.save(tmp_path / "expected.npy", model.predict(tokens, verbose=0))
    script = textwrap.dedent(
        f"""
        import sys
        import keras
        import numpy as np
        import tf_metaloss

        assert "keras_hub" not in sys.modules
        model = keras.models.load_model({str(path)!r})
        tokens = dict(np.load({str(tmp_path / "tokens.npz")!r}))
        np.testing.assert_allclose(
            model.predict(tokens, verbose=0), np.load({str(tmp_path / "expected.npy")!r}),
            rtol=1e-5, atol=1e-6)
        print(type(model).__name__, type(model.loss).__name__)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "MetaModel MetaLoss"
