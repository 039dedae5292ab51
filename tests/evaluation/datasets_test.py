import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tf_metaloss.evaluation import datasets


class TestLoadDigits:
    def test_shapes_dtypes_and_range(self):
        data = datasets.load_digits(val_fraction=0.2, seed=0)
        assert data.x_train.shape == (1437, 64)
        assert data.x_val.shape == (360, 64)
        assert data.y_train.shape == (1437,) and data.y_val.shape == (360,)
        assert data.x_train.dtype == np.float32 and data.x_val.dtype == np.float32
        assert data.y_train.dtype == np.int64
        assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0
        assert data.num_classes == 10 and data.name == "digits"
        assert data.input_shape == (64,)

    def test_split_is_stratified(self):
        data = datasets.load_digits(val_fraction=0.2, seed=0)
        train = np.bincount(data.y_train, minlength=10) / len(data.y_train)
        val = np.bincount(data.y_val, minlength=10) / len(data.y_val)
        np.testing.assert_allclose(train, val, atol=0.01)

    def test_split_is_disjoint_and_complete(self):
        data = datasets.load_digits(val_fraction=0.25, seed=1)
        rows = np.concatenate([data.x_train, data.x_val])
        assert len(rows) == 1797
        # digits has a few duplicate images; compare the multiset of rows.
        from sklearn import datasets as sk

        expected = (sk.load_digits().data / 16.0).astype(np.float32)
        assert sorted(map(bytes, rows)) == sorted(map(bytes, expected))

    def test_seeded(self):
        a = datasets.load_digits(seed=3)
        b = datasets.load_digits(seed=3)
        c = datasets.load_digits(seed=4)
        np.testing.assert_array_equal(a.y_train, b.y_train)
        assert not np.array_equal(a.y_train, c.y_train)

    def test_images(self):
        data = datasets.load_digits(flatten=False)
        assert data.x_train.shape[1:] == (8, 8, 1)

    @pytest.mark.parametrize("fraction", [0.0, 1.0, -0.5])
    def test_bad_fraction(self, fraction):
        with pytest.raises(ValueError, match="argument `val_fraction`"):
            datasets.load_digits(val_fraction=fraction)


def write_npz(path, **overrides):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (12, 4, 4, 3), dtype=np.uint8),
        "y_train": rng.integers(0, 3, (12, 1)),
        "x_val": rng.integers(0, 256, (5, 4, 4, 3), dtype=np.uint8),
        "y_val": np.array([0, 1, 2, 1, 0]),
    }
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return arrays


class TestLoadNpz:
    def test_round_trip(self, tmp_path):
        path = tmp_path / "mine.npz"
        arrays = write_npz(path)
        data = datasets.load_npz(path)
        np.testing.assert_allclose(data.x_train, arrays["x_train"] / 255.0, rtol=1e-6)
        np.testing.assert_allclose(data.x_val, arrays["x_val"] / 255.0, rtol=1e-6)
        np.testing.assert_array_equal(data.y_train, arrays["y_train"][:, 0])
        np.testing.assert_array_equal(data.y_val, arrays["y_val"])
        assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
        assert data.num_classes == 3 and data.name == "mine.npz"

    def test_float_inputs_kept_and_class_names_set_num_classes(self, tmp_path):
        path = tmp_path / "f.npz"
        x = np.linspace(-2, 2, 12, dtype=np.float64).reshape(6, 2)
        write_npz(
            path,
            x_train=x,
            y_train=np.arange(6) % 2,
            x_val=x[:2],
            y_val=np.array([0, 1]),
            class_names=np.array(["a", "b", "c", "d"]),
        )
        data = datasets.load_npz(path)
        np.testing.assert_allclose(data.x_train, x.astype(np.float32))
        assert data.num_classes == 4

    def test_missing_keys_are_named(self, tmp_path):
        path = tmp_path / "partial.npz"
        write_npz(path, x_val=None, y_val=None)
        with pytest.raises(KeyError, match=r"missing the array\(s\) \['x_val', 'y_val'\]"):
            datasets.load_npz(path)

    def test_missing_file(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="nope.npz"):
            datasets.load_npz(tmp_path / "nope.npz")

    def test_label_count_mismatch(self, tmp_path):
        path = tmp_path / "bad.npz"
        write_npz(path, y_val=np.array([0, 1]))
        with pytest.raises(ValueError, match=r"`y_val`.*\(5,\)"):
            datasets.load_npz(path)

    def test_non_integer_labels(self, tmp_path):
        path = tmp_path / "bad.npz"
        write_npz(path, y_val=np.array([0.5, 1, 2, 1, 0]))
        with pytest.raises(ValueError, match="integer class ids"):
            datasets.load_npz(path)


class TestLoadTfds:
    def test_cifar10_with_mock_data(self):
        with tfds.testing.mock_data(num_examples=16):
            data = datasets.load_tfds("cifar10", max_val=8)
        assert data.x_train.shape == (16, 32, 32, 3)
        assert data.x_val.shape == (8, 32, 32, 3)
        assert data.x_train.dtype == np.float32
        assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
        assert data.y_train.shape == (16,) and data.y_train.dtype == np.int64
        assert data.num_classes == 10 and data.name == "cifar10"

    def test_unknown_dataset(self):
        with tfds.testing.mock_data(num_examples=4):
            with pytest.raises(ValueError, match="no_such_dataset"):
                datasets.load_tfds("no_such_dataset")

    def test_missing_lazy_dependency_names_the_pip_package(self, monkeypatch):
        def load(*args, **kwargs):
            raise ModuleNotFoundError(
                "No module named 'importlib_resources'", name="importlib_resources"
            )

        monkeypatch.setattr(tfds, "load", load)
        with pytest.raises(ImportError, match="pip install importlib-resources"):
            datasets.load_tfds("cifar10")


class TestLoadDataset:
    def test_digits(self):
        assert datasets.load_dataset("digits", seed=1).name == "digits"

    def test_npz_path(self, tmp_path):
        path = tmp_path / "d.npz"
        write_npz(path)
        assert datasets.load_dataset(str(path)).x_train.shape == (12, 4, 4, 3)

    def test_cifar10_and_tfds_prefix(self):
        with tfds.testing.mock_data(num_examples=4):
            assert datasets.load_dataset("cifar10").x_train.shape == (4, 32, 32, 3)
            assert datasets.load_dataset("tfds:mnist").x_train.shape == (4, 28, 28, 1)

    @pytest.mark.parametrize("spec", ["", "imagenet", "tfds:", None])
    def test_unknown_spec(self, spec):
        with pytest.raises(ValueError, match="argument `spec`"):
            datasets.load_dataset(spec)


def write_sst2(directory, train=None, dev=None):
    """SST-2 .jsonl files: `train`/`dev` lists of `(sentence, label)`."""
    directory.mkdir(parents=True, exist_ok=True)
    train = train or [
        (f"a good film {i}", 1) if i % 2 else (f"a dull plot {i}", 0) for i in range(12)
    ]
    dev = dev or [("good", 1), ("dull", 0), ("a good plot", 1)]
    for name, rows in (("sst2_train.jsonl", train), ("sst2_dev.jsonl", dev)):
        lines = [json.dumps({"sentence": s, "label": y, "idx": i}) for i, (s, y) in enumerate(rows)]
        (directory / name).write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    return directory


class TestLoadSst2:
    def test_from_a_directory_or_the_training_file(self, tmp_path):
        directory = write_sst2(tmp_path / "glue")
        data = datasets.load_sst2(directory)
        assert data.x_train.shape == (12,) and data.x_val.shape == (3,)
        assert data.x_train.dtype == object and data.is_text
        assert data.y_train.dtype == np.int64 and list(data.y_val) == [1, 0, 1]
        assert data.x_train[1] == "a good film 1" and data.num_classes == 2
        assert data.name == "sst2"
        same = datasets.load_sst2(directory / "sst2_train.jsonl", max_train=5, max_val=2)
        assert same.x_train.shape == (5,) and same.x_val.shape == (2,)
        np.testing.assert_array_equal(same.x_train, data.x_train[:5])

    def test_load_dataset_recognises_sst2_paths(self, tmp_path):
        directory = write_sst2(tmp_path / "glue")
        assert datasets.load_dataset(str(directory)).name == "sst2"
        assert datasets.load_dataset(str(directory / "sst2_train.jsonl")).is_text
        assert datasets.is_text_spec(str(directory)) and datasets.is_text_spec("sst2")
        assert not datasets.is_text_spec("digits") and not datasets.is_text_spec(str(tmp_path))

    def test_from_tfds_with_mock_data(self):
        with tfds.testing.mock_data(num_examples=6):
            data = datasets.load_dataset("sst2")
        assert data.x_train.shape == (6,) and data.is_text
        assert set(data.y_train) <= {0, 1} and data.num_classes == 2

    def test_errors_name_the_file_and_the_line(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="No such SST-2 file"):
            datasets.load_sst2(tmp_path)
        write_sst2(tmp_path / "a")
        (tmp_path / "a" / "sst2_dev.jsonl").write_text('{"sentence": "x", "label": 1}\nnot json\n')
        with pytest.raises(ValueError, match="Invalid SST-2 line 2 of .*sst2_dev.jsonl"):
            datasets.load_sst2(tmp_path / "a")
        write_sst2(tmp_path / "b", dev=[("x", 2)])
        with pytest.raises(ValueError, match="Expected 0 .negative. or 1 .positive."):
            datasets.load_sst2(tmp_path / "b")


class TestTokenize:
    def test_vocabulary_from_the_training_subset_and_padded_token_ids(self, tmp_path):
        data = datasets.load_sst2(write_sst2(tmp_path / "glue"))
        tokens = datasets.tokenize(data, vocabulary_size=60, sequence_length=6, train_subset=8)
        keep = datasets.subset_indices(12, 8)
        assert tokens.x_train.shape == (8, 6) and tokens.x_val.shape == (3, 6)
        assert tokens.x_train.dtype == np.int32 and not tokens.is_text
        np.testing.assert_array_equal(tokens.y_train, data.y_train[keep])
        assert tokens.vocabulary[:5] == ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
        # [CLS] word pieces [SEP], then [PAD] (0) up to 6 tokens.
        assert (tokens.x_train[:, 0] == 1).all() and (tokens.x_val[:, 0] == 1).all()
        short = list(tokens.x_val[1])  # "dull": [CLS] pieces of "dull" [SEP] [PAD] ...
        end = short.index(2)
        assert 1 < end < 6 and all(t == 0 for t in short[end + 1 :])
        assert all(0 < t < len(tokens.vocabulary) for t in short[1:end])

    def test_needs_strings(self):
        data = datasets.Dataset(np.zeros((2, 3)), np.array([0, 1]), np.zeros((1, 3)), [0], 2, "x")
        with pytest.raises(ValueError, match="Expected a Dataset of strings"):
            datasets.tokenize(data)
