import numpy as np
import pytest

from tf_metaloss.evaluation import noise


def balanced_labels(per_class=100, num_classes=10):
    return np.repeat(np.arange(num_classes), per_class)


class TestSymmetric:
    @pytest.mark.parametrize("rate", [0.0, 0.2, 0.4, 0.8, 1.0])
    def test_flips_exactly_round_rate_times_n(self, rate):
        labels = balanced_labels()
        noisy = noise.inject_label_noise(labels, rate, seed=0)
        assert int(noisy.mask.sum()) == round(rate * labels.size)
        assert noisy.rate == pytest.approx(rate)

    def test_mask_marks_exactly_the_changed_labels(self):
        labels = balanced_labels()
        noisy = noise.inject_label_noise(labels, 0.37, seed=3)
        np.testing.assert_array_equal(noisy.mask, noisy.labels != labels)
        assert noisy.mask.dtype == bool

    def test_new_labels_are_other_classes_in_range(self):
        labels = balanced_labels()
        noisy = noise.inject_label_noise(labels, 1.0, seed=1)
        assert np.all(noisy.labels != labels)
        assert noisy.labels.min() >= 0 and noisy.labels.max() <= 9

    def test_new_labels_are_roughly_uniform_over_other_classes(self):
        # 9,000 flips of class 0 over classes 1..9: ~1,000 each.
        labels = np.zeros(9000, dtype=np.int64)
        noisy = noise.inject_label_noise(labels, 1.0, num_classes=10, seed=0)
        counts = np.bincount(noisy.labels, minlength=10)
        assert counts[0] == 0
        assert np.all(np.abs(counts[1:] - 1000) < 150)

    def test_rate_zero_returns_an_equal_copy(self):
        labels = balanced_labels()
        noisy = noise.inject_label_noise(labels, 0.0, seed=0)
        np.testing.assert_array_equal(noisy.labels, labels)
        assert not noisy.mask.any()
        assert noisy.labels is not labels

    def test_same_seed_same_result_different_seed_different(self):
        labels = balanced_labels()
        a = noise.inject_label_noise(labels, 0.4, seed=7)
        b = noise.inject_label_noise(labels, 0.4, seed=7)
        c = noise.inject_label_noise(labels, 0.4, seed=8)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.mask, b.mask)
        assert not np.array_equal(a.mask, c.mask)

    def test_input_is_not_modified_and_dtype_kept(self):
        labels = balanced_labels().astype(np.int32)
        before = labels.copy()
        noisy = noise.inject_label_noise(labels, 0.5, seed=0)
        np.testing.assert_array_equal(labels, before)
        assert noisy.labels.dtype == np.int32
        assert noisy.labels.shape == labels.shape

    def test_accepts_lists_and_integral_floats(self):
        noisy = noise.inject_label_noise([0.0, 1.0, 2.0, 1.0], 0.5, seed=0)
        assert int(noisy.mask.sum()) == 2
        assert np.issubdtype(noisy.labels.dtype, np.integer)

    def test_num_classes_allows_classes_absent_from_labels(self):
        labels = np.zeros(500, dtype=np.int64)
        noisy = noise.inject_label_noise(labels, 1.0, num_classes=3, seed=0)
        assert set(np.unique(noisy.labels)) == {1, 2}


class TestAsymmetric:
    def test_default_map_is_cifar10_of_patrini(self):
        assert noise.CIFAR10_TRANSITIONS == {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}

    def test_flips_rate_of_each_source_class_to_its_target(self):
        labels = balanced_labels(per_class=50)
        noisy = noise.inject_label_noise(labels, 0.4, kind="asymmetric", seed=0)
        for source, target in noise.CIFAR10_TRANSITIONS.items():
            flipped = noisy.mask & (labels == source)
            assert int(flipped.sum()) == 20
            assert np.all(noisy.labels[flipped] == target)
        np.testing.assert_array_equal(noisy.mask, noisy.labels != labels)

    def test_only_source_classes_flip(self):
        labels = balanced_labels(per_class=50)
        noisy = noise.inject_label_noise(labels, 1.0, kind="asymmetric", seed=0)
        assert set(np.unique(labels[noisy.mask])) == {2, 3, 4, 5, 9}
        untouched = ~np.isin(labels, [2, 3, 4, 5, 9])
        np.testing.assert_array_equal(noisy.labels[untouched], labels[untouched])

    def test_cat_dog_swap_flips_each_class_once(self):
        labels = balanced_labels(per_class=10)
        noisy = noise.inject_label_noise(labels, 1.0, kind="asymmetric", seed=0)
        assert np.all(noisy.labels[labels == 3] == 5)
        assert np.all(noisy.labels[labels == 5] == 3)

    def test_custom_transitions_and_uneven_classes(self):
        labels = np.array([0] * 10 + [1] * 3 + [2] * 7)
        noisy = noise.inject_label_noise(
            labels, 0.5, kind="asymmetric", transitions={0: 2, 1: 0}, seed=1
        )
        assert int((noisy.mask & (labels == 0)).sum()) == 5
        assert int((noisy.mask & (labels == 1)).sum()) == round(0.5 * 3)
        assert not noisy.mask[labels == 2].any()

    def test_seeded(self):
        labels = balanced_labels()
        a = noise.inject_label_noise(labels, 0.3, kind="asymmetric", seed=2)
        b = noise.inject_label_noise(labels, 0.3, kind="asymmetric", seed=2)
        c = noise.inject_label_noise(labels, 0.3, kind="asymmetric", seed=3)
        np.testing.assert_array_equal(a.labels, b.labels)
        assert not np.array_equal(a.mask, c.mask)

    def test_result_does_not_depend_on_dict_order(self):
        labels = balanced_labels()
        a = noise.inject_label_noise(
            labels, 0.3, kind="asymmetric", transitions={3: 5, 5: 3}, seed=0
        )
        b = noise.inject_label_noise(
            labels, 0.3, kind="asymmetric", transitions={5: 3, 3: 5}, seed=0
        )
        np.testing.assert_array_equal(a.labels, b.labels)


class TestErrors:
    @pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan"), "a", None])
    def test_bad_rate(self, rate):
        with pytest.raises(ValueError, match="argument `rate`"):
            noise.inject_label_noise([0, 1], rate)

    def test_bad_kind(self):
        with pytest.raises(ValueError, match="argument `kind`.*pairflip"):
            noise.inject_label_noise([0, 1], 0.1, kind="pairflip")

    @pytest.mark.parametrize(
        "labels, match",
        [
            (np.zeros((4, 2), dtype=int), "1-D"),
            (np.array([0.5, 1.0]), "integer class ids"),
            (np.array([0, -1]), "non-negative"),
        ],
    )
    def test_bad_labels(self, labels, match):
        with pytest.raises(ValueError, match=match):
            noise.inject_label_noise(labels, 0.1)

    def test_labels_outside_num_classes(self):
        with pytest.raises(ValueError, match=r"\[0, 3\).*5"):
            noise.inject_label_noise([0, 5], 0.1, num_classes=3)

    @pytest.mark.parametrize("num_classes", [0, -2, 2.5, True])
    def test_bad_num_classes(self, num_classes):
        with pytest.raises(ValueError, match="argument `num_classes`"):
            noise.inject_label_noise([0, 1], 0.1, num_classes=num_classes)

    def test_symmetric_needs_two_classes(self):
        with pytest.raises(ValueError, match="at least 2 classes"):
            noise.inject_label_noise([0, 0, 0], 0.5)

    def test_asymmetric_needs_transitions_unless_ten_classes(self):
        with pytest.raises(ValueError, match="needs a `transitions` dict"):
            noise.inject_label_noise([0, 1, 2], 0.5, kind="asymmetric")

    @pytest.mark.parametrize("transitions", [{}, [(0, 1)], {0: 0}, {0: 12}, {-1: 2}, {0: 1.5}])
    def test_bad_transitions(self, transitions):
        with pytest.raises(ValueError, match="`transitions`|itself"):
            noise.inject_label_noise(
                [0, 1, 2],
                0.5,
                kind="asymmetric",
                num_classes=3,
                transitions=transitions,
            )

    def test_transitions_with_symmetric_is_an_error(self):
        with pytest.raises(ValueError, match="only applies to kind='asymmetric'"):
            noise.inject_label_noise([0, 1], 0.5, transitions={0: 1})


class TestTransitionMatrices:
    def test_symmetric_matrix(self):
        matrix = noise.transition_matrix(0.4, "symmetric", num_classes=5)
        np.testing.assert_allclose(np.diag(matrix), 0.6)
        np.testing.assert_allclose(matrix[0, 1:], 0.1)
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0)

    def test_asymmetric_matrix_follows_the_cifar10_map(self):
        matrix = noise.transition_matrix(0.4, "asymmetric", num_classes=10)
        expected = np.eye(10)
        for source, target in noise.CIFAR10_TRANSITIONS.items():
            expected[source, source], expected[source, target] = 0.6, 0.4
        np.testing.assert_array_equal(matrix, expected)

    def test_the_realised_matrix_matches_the_noise_model(self):
        labels = np.repeat(np.arange(10), 200)
        # Asymmetric noise flips exactly `rate` of each source class: exact.
        noisy = noise.inject_label_noise(labels, 0.4, kind="asymmetric", num_classes=10, seed=0)
        realised = noise.empirical_transition_matrix(labels, noisy.labels, 10)
        np.testing.assert_allclose(
            realised, noise.transition_matrix(0.4, "asymmetric", num_classes=10), atol=1e-12
        )
        # Symmetric noise flips exactly `rate` of all samples, spread at random.
        noisy = noise.inject_label_noise(labels, 0.4, kind="symmetric", num_classes=10, seed=0)
        realised = noise.empirical_transition_matrix(labels, noisy.labels, 10)
        np.testing.assert_allclose(realised.sum(axis=1), 1.0)
        assert np.diag(realised).mean() == pytest.approx(0.6, abs=1e-12)
        target = noise.transition_matrix(0.4, "symmetric", num_classes=10)
        assert np.abs(realised - target).max() < 0.06

    def test_empirical_matrix_by_hand_and_missing_classes(self):
        matrix = noise.empirical_transition_matrix([0, 0, 0, 0, 1], [0, 1, 1, 2, 1], 3)
        np.testing.assert_allclose(matrix, [[0.25, 0.5, 0.25], [0, 1, 0], [0, 0, 1]])

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="argument `num_classes`"):
            noise.transition_matrix(0.4)
        with pytest.raises(ValueError, match="argument `rate`"):
            noise.transition_matrix(1.5, num_classes=3)
        with pytest.raises(ValueError, match="argument `kind`"):
            noise.transition_matrix(0.4, "pairs", num_classes=3)
        with pytest.raises(ValueError, match="argument `noisy`"):
            noise.empirical_transition_matrix([0, 1], [0], 2)


def test_asymmetric_noise_on_two_classes_flips_positive_to_negative():
    labels = np.array([0, 1] * 100)
    noisy = noise.inject_label_noise(labels, 0.3, kind="asymmetric", seed=0)
    assert noisy.mask.sum() == 30  # 30% of the 100 positives; negatives untouched
    assert (noisy.labels[noisy.mask] == 0).all() and not noisy.mask[labels == 0].any()
    np.testing.assert_allclose(
        noise.transition_matrix(0.3, kind="asymmetric", num_classes=2), [[1.0, 0.0], [0.3, 0.7]]
    )
