"""Imbalance protocols: turn a dataset's train and test sets into one imbalanced learning task.

``binary`` (the CapsAN paper, section 5.1): an ordered class pair (majority, minority). The training set
keeps every majority training image and a seeded random subset, drawn without replacement, of
``round(ratio * n_majority)`` minority images (half rounds up); the test set is the pair's test images,
untouched. Labels are renumbered: 0 = majority, 1 = minority (the positive class of the metrics).

The minority subset is the first k images of one seeded permutation of the class, so for a given seed
the subset at a smaller ratio is contained in the subset at a larger one (nested, as in a sweep).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from bench.datasets.base import ImageSet
from bench.errors import BenchError, CellFailure

PROTOCOLS = ("binary",)


@dataclass(frozen=True)
class Task:
    """One imbalanced learning problem, ready for a method."""

    train: ImageSet
    test: ImageSet
    positive: int  # label of the minority class, the positive class for binary metrics
    counts: dict  # realised class counts and what was asked for


def validate_ratio(ratio: float) -> float:
    ratio = float(ratio)
    if not 0.0 < ratio <= 1.0:
        raise BenchError(f"ratio {ratio:g} is outside (0, 1]; give minority/majority, e.g. 0.1 for 10 %")
    return ratio


def validate_pair(pair, n_classes: int) -> tuple[int, int]:
    majority, minority = (int(c) for c in pair)
    if majority == minority:
        raise BenchError(f"pair {majority}:{minority} names the same class twice; give two different classes")
    for c in (majority, minority):
        if not 0 <= c < n_classes:
            raise BenchError(f"class {c} in pair {majority}:{minority} does not exist; classes are 0..{n_classes - 1}")
    return majority, minority


def all_pairs(n_classes: int) -> list[tuple[int, int]]:
    """Every ordered pair of distinct classes."""
    return list(itertools.permutations(range(n_classes), 2))


def make_imbalanced(train: ImageSet, test: ImageSet, protocol: str = "binary", *, pair, ratio: float,
                    seed: int) -> Task:
    """Build the imbalanced task of ``protocol`` from a dataset's full train and test sets."""
    if protocol != "binary":
        raise BenchError(f"unknown protocol '{protocol}'; valid protocols: {', '.join(PROTOCOLS)}")
    ratio = validate_ratio(ratio)
    majority, minority = validate_pair(pair, train.n_classes)

    maj_index = np.flatnonzero(train.labels == majority)
    min_index = np.flatnonzero(train.labels == minority)
    n_majority = len(maj_index)
    requested = int(np.floor(ratio * n_majority + 0.5))
    if requested < 1:
        raise CellFailure(
            f"ratio {ratio:g} keeps 0 minority images of {n_majority} majority images; use a ratio >= {0.5 / n_majority:.3g}"
        )
    # A class pair of unequal sizes can ask for more minority images than exist: keep all, record it.
    n_minority = min(requested, len(min_index))
    rng = np.random.default_rng(seed)
    kept = rng.permutation(min_index)[:n_minority]
    train_index = np.sort(np.concatenate([maj_index, kept]))
    test_index = np.flatnonzero((test.labels == majority) | (test.labels == minority))

    names = (train.class_names[majority], train.class_names[minority])
    train_set = _relabel(train.subset(train_index), majority, names)
    test_set = _relabel(test.subset(test_index), majority, names)
    counts = {
        "train": train_set.counts().tolist(),
        "test": test_set.counts().tolist(),
        "minority_requested": requested,
        "minority_clamped": n_minority < requested,
        "classes": list(names),
    }
    return Task(train=train_set, test=test_set, positive=1, counts=counts)


def _relabel(images: ImageSet, majority: int, names: tuple[str, str]) -> ImageSet:
    labels = np.where(images.labels == majority, 0, 1).astype(np.int64)
    return ImageSet(images.images, labels, names)
