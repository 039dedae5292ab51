"""Synthetic label noise for robustness experiments.

Two standard noise models:

- **symmetric** (uniform) noise: exactly `round(rate * N)` samples, chosen
  at random, get a label drawn uniformly from the *other* classes. `rate` is
  therefore the fraction of labels that are actually wrong. (Some papers
  instead redraw from *all* classes, so that only `rate * (K - 1) / K` of the
  labels end up wrong; this module does not.)
- **asymmetric** (class-dependent) noise: for each `source -> target` pair of
  a transition map, exactly `round(rate * n_source)` samples of the source
  class, chosen at random, are relabelled `target`. Other classes are never
  touched. For 10 classes the default map is the CIFAR-10 one of Patrini et
  al. (2017): truck -> automobile, bird -> airplane, deer -> horse,
  cat <-> dog. For 2 classes (e.g. SST-2 sentiment) it is one class flipped
  to the other, `1 -> 0` (positive labelled negative): flipping both ways at
  the same rate would be symmetric noise.

`transition_matrix` gives the noise transition matrix `T[i, j] = P(noisy
label j | true label i)` that a noise model targets, and
`empirical_transition_matrix` the one realised on given labels.

Reference:
    Patrini et al., "Making Deep Neural Networks Robust to Label Noise: a
    Loss Correction Approach", CVPR 2017.
"""

import dataclasses

import numpy as np

SYMMETRIC = "symmetric"
ASYMMETRIC = "asymmetric"
KINDS = (SYMMETRIC, ASYMMETRIC)

# CIFAR-10 class indices: 0 airplane, 1 automobile, 2 bird, 3 cat, 4 deer,
# 5 dog, 6 frog, 7 horse, 8 ship, 9 truck.
CIFAR10_TRANSITIONS = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}
# Two classes: class 1 flipped to class 0 (SST-2: positive labelled negative).
BINARY_TRANSITIONS = {1: 0}
DEFAULT_TRANSITIONS = {10: CIFAR10_TRANSITIONS, 2: BINARY_TRANSITIONS}


@dataclasses.dataclass(frozen=True)
class NoisyLabels:
    """Corrupted labels and where they were corrupted.

    Attributes:
        labels: integer array, same shape and dtype as the input labels.
        mask: boolean array, `True` where the label was changed.
    """

    labels: np.ndarray
    mask: np.ndarray

    @property
    def rate(self):
        """Fraction of labels actually corrupted."""
        return float(self.mask.mean()) if self.mask.size else 0.0


def inject_label_noise(
    labels,
    rate,
    kind=SYMMETRIC,
    num_classes=None,
    seed=None,
    transitions=None,
):
    """Returns a corrupted copy of integer class labels.

    The input is never modified. Every corrupted label differs from its
    original, so `noisy.mask == (noisy.labels != labels)`.

    Args:
        labels: 1-D array-like of integer class ids in `[0, num_classes)`.
        rate: float in `[0, 1]`. Symmetric: the fraction of all samples that
            are flipped. Asymmetric: the fraction of each source class that is
            flipped.
        kind: `"symmetric"` or `"asymmetric"`.
        num_classes: number of classes. Defaults to `max(labels) + 1`.
        seed: int or `None`, seeds a `numpy.random.Generator`.
        transitions: asymmetric only, a dict `{source: target}`. Defaults to
            the CIFAR-10 map `{9: 1, 2: 0, 4: 7, 3: 5, 5: 3}` when
            `num_classes == 10` and to `{1: 0}` when `num_classes == 2`;
            required otherwise.

    Returns:
        A `NoisyLabels(labels, mask)`.

    Example:

    >>> noisy = tml.evaluation.inject_label_noise([0, 1, 2, 3] * 25, rate=0.4, seed=0)
    >>> int(noisy.mask.sum())
    40
    """
    original = _validate_labels(labels)
    rate = _validate_rate(rate)
    if kind not in KINDS:
        raise ValueError(
            f"Invalid value for argument `kind`. Expected one of {KINDS}. Received: kind={kind!r}"
        )
    num_classes = _validate_num_classes(num_classes, original)
    rng = np.random.default_rng(seed)
    noisy = original.copy()
    if kind == SYMMETRIC:
        if transitions is not None:
            raise ValueError(
                "Argument `transitions` only applies to kind='asymmetric'. "
                f"Received: kind={kind!r}, transitions={transitions!r}"
            )
        _flip_symmetric(noisy, original, rate, num_classes, rng)
    else:
        transitions = _validate_transitions(transitions, num_classes)
        _flip_asymmetric(noisy, original, rate, transitions, rng)
    return NoisyLabels(labels=noisy, mask=noisy != original)


def transition_matrix(rate, kind=SYMMETRIC, num_classes=None, transitions=None):
    """The noise transition matrix `T[i, j] = P(noisy label j | true label i)`.

    The matrix the noise model of `inject_label_noise` targets: symmetric,
    `1 - rate` on the diagonal and `rate / (K - 1)` elsewhere; asymmetric,
    `1 - rate` and `rate` on the rows of the transition map's source classes
    and the identity on the others.

    Args:
        rate, kind, transitions: as in `inject_label_noise`.
        num_classes: number of classes (required).

    Example:

    >>> tml.evaluation.noise.transition_matrix(0.4, "asymmetric", 3, {0: 1})
    array([[0.6, 0.4, 0. ],
           [0. , 1. , 0. ],
           [0. , 0. , 1. ]])
    """
    rate = _validate_rate(rate)
    if kind not in KINDS:
        raise ValueError(
            f"Invalid value for argument `kind`. Expected one of {KINDS}. Received: kind={kind!r}"
        )
    if num_classes is None:
        raise ValueError(
            "Invalid value for argument `num_classes`. Expected a positive integer. "
            "Received: num_classes=None"
        )
    num_classes = _validate_num_classes(num_classes, np.zeros(0, np.int64))
    matrix = np.eye(num_classes)
    if kind == SYMMETRIC:
        if num_classes > 1:
            matrix = np.full((num_classes, num_classes), rate / (num_classes - 1))
            np.fill_diagonal(matrix, 1.0 - rate)
        return matrix
    for source, target in _validate_transitions(transitions, num_classes).items():
        matrix[source, source] = 1.0 - rate
        matrix[source, target] = rate
    return matrix


def empirical_transition_matrix(clean, noisy, num_classes):
    """The transition matrix realised on labels: `T[i, j]` = the share of the
    samples of true class `i` labelled `j`.

    A class without samples gets an identity row.

    Example:

    >>> tml.evaluation.noise.empirical_transition_matrix([0, 0, 1, 1], [0, 1, 1, 1], 2)
    array([[0.5, 0.5],
           [0. , 1. ]])
    """
    clean = _validate_labels(clean)
    noisy = _validate_labels(noisy)
    if clean.shape != noisy.shape:
        raise ValueError(
            "Invalid value for argument `noisy`. Expected one label per clean label "
            f"({clean.size}). Received: {noisy.size} labels"
        )
    num_classes = _validate_num_classes(num_classes, np.concatenate([clean, noisy]))
    counts = np.zeros((num_classes, num_classes))
    np.add.at(counts, (clean, noisy), 1.0)
    totals = counts.sum(axis=1, keepdims=True)
    return np.where(totals > 0, counts / np.maximum(totals, 1.0), np.eye(num_classes))


def _flip_symmetric(noisy, original, rate, num_classes, rng):
    count = int(round(rate * original.size))
    if count == 0:
        return
    if num_classes < 2:
        raise ValueError(
            f"Symmetric label noise needs at least 2 classes. Received: num_classes={num_classes}"
        )
    chosen = rng.choice(original.size, size=count, replace=False)
    # An offset in [1, K-1] added modulo K gives a uniform draw over the
    # other K-1 classes.
    offsets = rng.integers(1, num_classes, size=count)
    noisy[chosen] = (original[chosen] + offsets) % num_classes


def _flip_asymmetric(noisy, original, rate, transitions, rng):
    # Iterate in sorted order so the result depends only on the seed, not
    # on the dict's insertion order. Indices come from `original`, so a
    # swap such as cat <-> dog flips each class once.
    for source in sorted(transitions):
        members = np.flatnonzero(original == source)
        count = int(round(rate * members.size))
        if count == 0:
            continue
        chosen = rng.choice(members, size=count, replace=False)
        noisy[chosen] = transitions[source]


def _validate_labels(labels):
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(
            "Invalid value for argument `labels`. Expected a 1-D array of "
            "integer class ids (squeeze or argmax one-hot labels first). "
            f"Received: labels with shape {array.shape}"
        )
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if np.issubdtype(array.dtype, np.floating) and np.all(array == np.round(array)):
            array = array.astype(np.int64)
        else:
            raise ValueError(
                "Invalid value for argument `labels`. Expected integer "
                f"class ids. Received: labels with dtype {array.dtype}"
            )
    if array.size and array.min() < 0:
        raise ValueError(
            "Invalid value for argument `labels`. Expected non-negative "
            f"class ids. Received: a label {int(array.min())}"
        )
    return array.copy()


def _validate_rate(rate):
    try:
        value = float(rate)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise ValueError(
            "Invalid value for argument `rate`. Expected a float in "
            f"[0, 1]. Received: rate={rate!r}"
        )
    return value


def _validate_num_classes(num_classes, labels):
    largest = int(labels.max()) if labels.size else -1
    if num_classes is None:
        return largest + 1
    if (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, (int, np.integer))
        or num_classes < 1
    ):
        raise ValueError(
            "Invalid value for argument `num_classes`. Expected a positive "
            f"integer. Received: num_classes={num_classes!r}"
        )
    if largest >= num_classes:
        raise ValueError(
            "Invalid value for argument `labels`. Expected class ids in "
            f"[0, {num_classes}). Received: a label {largest}"
        )
    return int(num_classes)


def _validate_transitions(transitions, num_classes):
    if transitions is None:
        if num_classes not in DEFAULT_TRANSITIONS:
            raise ValueError(
                "Asymmetric label noise needs a `transitions` dict "
                "{source: target} unless num_classes is 10 (the CIFAR-10 map "
                "is the default) or 2 (1 -> 0). Received: "
                f"num_classes={num_classes}"
            )
        return dict(DEFAULT_TRANSITIONS[num_classes])
    if not isinstance(transitions, dict) or not transitions:
        raise ValueError(
            "Invalid value for argument `transitions`. Expected a non-empty "
            f"dict {{source: target}}. Received: transitions={transitions!r}"
        )
    result = {}
    for source, target in transitions.items():
        for value in (source, target):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, np.integer))
                or not 0 <= value < num_classes
            ):
                raise ValueError(
                    "Invalid value for argument `transitions`. Expected "
                    f"class ids in [0, {num_classes}). Received: "
                    f"transitions={transitions!r}"
                )
        if source == target:
            raise ValueError(
                "Invalid value for argument `transitions`. A class cannot "
                f"flip to itself. Received: {source} -> {target}"
            )
        result[int(source)] = int(target)
    return result
