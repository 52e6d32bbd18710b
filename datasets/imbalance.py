"""Imbalance protocols: turn a dataset's train and test sets into one imbalanced learning task.

``binary`` (the CapsAN paper, section 5.1): an ordered class pair (majority, minority). The training set
keeps every majority training image and a seeded random subset, drawn without replacement, of
``round(ratio * n_majority)`` minority images (half rounds up); the test set is the pair's test images,
untouched. Labels are renumbered: 0 = majority, 1 = minority (the positive class of the metrics).

The minority subset is the first k images of one seeded permutation of the class, so for a given seed
the subset at a smaller ratio is contained in the subset at a larger one (nested, as in a sweep).

Multi-class protocols keep every class and its labels; class i keeps n_i training images, the first n_i of
one seeded permutation of the class (nested across ratios too), clamped to what the class has (recorded):
- ``longtail`` (CIFAR-10-LT, Cao et al., LDAM, NeurIPS 2019): n_i = int(n_max x ratio^(i / (C - 1))), classes
  in index order (class 0 is the head), n_max = the mean training count per class (5,000 on CIFAR-10);
- ``step`` (same source): the first C // 2 classes keep n_max, the others int(n_max x ratio);
- ``gamo``: the fixed per-class counts of the GAMO and DeepSMOTE papers (``GAMO_COUNTS``), drawn without
  replacement. The original GAMO code drew with replacement from the first 4,000 indices of each class; we
  draw distinct images from the whole class. The ratio is implied (smallest / largest count).
- ``subset`` (the paper's Table 1): n training images in all, drawn stratified by class (scikit-learn's
  ``train_test_split(train_size=n, stratify=labels, random_state=seed)``); the cell's level is n, not a ratio.
The test set stays as the dataset gives it (balanced for every paper dataset); with ``test="train"`` each
class keeps round(t_i x n_i / max_j n_j) of its t_i test images (at least one, seeded), so the test set
follows the training distribution. ``test="holdout"`` takes no test image at all: a stratified
``HOLDOUT_FRACTION`` (20 %) of the imbalanced training set is held out as the test set and the rest trains
(a validation split, for choosing settings without looking at the test split; VALIDATION.md uses it).

The ``gamo`` protocol's test sets are those of DeepSMOTE's Tables II and III (the published numbers the
suite validates against, ``reports/reference/deepsmote_gamo_protocol.csv``), not the rule above:
- ``test="train"`` (Table II, "imbalanced test"): fixed per-class counts, ``GAMO_TEST_COUNTS``;
- ``test="balanced"`` (Table III): ``GAMO_BALANCED_TEST`` images per class.
Each class keeps a seeded random subset of that many of its test-split images, or all of them where the
split has fewer (MNIST's class 0 has 980 test images for the imbalanced test's 1,000; the balanced test asks
1,200 per class of MNIST and Fashion-MNIST, whose test splits have 892 to 1,135 and 1,000): ``counts``
records ``test_requested`` and ``test_clamped`` (the classes that got fewer), and the report says so.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from bench.datasets.base import ImageSet
from bench.errors import BenchError, CellRefused

PROTOCOLS = ("binary", "longtail", "step", "gamo", "subset")
MULTICLASS = ("longtail", "step", "gamo", "subset")
TEST_CHOICES = ("balanced", "train", "holdout")
HOLDOUT_FRACTION = 0.2  # test="holdout": the share of the imbalanced training set held out as the test set
# GAMO (Mullick et al., ICCV 2019) and DeepSMOTE (Dablain et al., IEEE TNNLS 2022) training counts per class.
GAMO_COUNTS = {
    "mnist": (4000, 2000, 1000, 750, 500, 350, 200, 100, 60, 40),
    "fashion-mnist": (4000, 2000, 1000, 750, 500, 350, 200, 100, 60, 40),
    "cifar10": (4500, 2000, 1000, 800, 600, 500, 400, 250, 150, 80),
    "celeba": (9000, 4500, 1000, 500, 160),  # the 5 hair-colour classes (--celeba-attr hair)
}
# DeepSMOTE (Table I / II) imbalanced test counts per class; MNIST and Fashion-MNIST: the training counts / 4.
GAMO_TEST_COUNTS = {
    "mnist": (1000, 500, 250, 187, 125, 87, 50, 25, 15, 10),
    "fashion-mnist": (1000, 500, 250, 187, 125, 87, 50, 25, 15, 10),
    "cifar10": (1000, 500, 250, 187, 125, 87, 50, 25, 15, 10),
    "celeba": (1000, 500, 111, 55, 17),
}
# DeepSMOTE (Table III) balanced test: images per class, as the paper states them.
GAMO_BALANCED_TEST = {"mnist": 1200, "fashion-mnist": 1200, "cifar10": 1000, "celeba": 900}


@dataclass(frozen=True)
class Task:
    """One imbalanced learning problem, ready for a method."""

    train: ImageSet
    test: ImageSet
    positive: int | None  # the minority label, positive class of binary metrics; None: multi-class (macro)
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


def fixed_ratio(protocol: str, dataset: str) -> float | None:
    """The one imbalance level a protocol's own counts fix for ``dataset`` (``gamo``), else None: the run's
    ratios (or the subset protocol's sizes) give the levels."""
    return gamo_ratio(dataset) if protocol == "gamo" else None


def protocol_key_options(protocol: str, dataset: str, test: str) -> dict:
    """What a protocol adds to a cell's key beyond its name: ``gamo``'s fixed test counts (DeepSMOTE's,
    ``GAMO_TEST_COUNTS``) replaced a proportional rule; the new key keeps cells stored under the old rule
    from being mixed in."""
    if protocol == "gamo" and (test == "train" or (test == "balanced" and dataset == "celeba")):
        return {"test_counts": "deepsmote"}
    return {}


def gamo_ratio(dataset: str) -> float:
    """The imbalance ratio the ``gamo`` protocol implies for ``dataset`` (smallest / largest count)."""
    counts = _gamo_counts(dataset)
    return round(min(counts) / max(counts), 6)


def _gamo_counts(dataset: str | None) -> tuple[int, ...]:
    if dataset not in GAMO_COUNTS:
        raise BenchError(f"the gamo protocol has counts for {', '.join(GAMO_COUNTS)}, not '{dataset}'; "
                         "use --protocol longtail or step")
    return GAMO_COUNTS[dataset]


def target_counts(protocol: str, class_counts, ratio: float | None = None, dataset: str | None = None) -> list[int]:
    """The training images each class should keep under a multi-class ``protocol`` (before clamping)."""
    class_counts = np.asarray(class_counts)
    n_classes = len(class_counts)
    if protocol == "gamo":
        counts = _gamo_counts(dataset)
        if len(counts) != n_classes:
            raise BenchError(f"the gamo protocol's {dataset} counts are for {len(counts)} classes, the data has "
                             f"{n_classes}" + ("; use --celeba-attr hair" if dataset == "celeba" else ""))
        return list(counts)
    ratio = validate_ratio(ratio)
    n_max = len(class_counts) and int(class_counts.sum() // n_classes)
    if protocol == "longtail":
        return [int(n_max * ratio ** (i / max(1, n_classes - 1))) for i in range(n_classes)]
    if protocol == "step":
        return [n_max if i < n_classes // 2 else int(n_max * ratio) for i in range(n_classes)]
    raise BenchError(f"unknown protocol '{protocol}'; valid protocols: {', '.join(PROTOCOLS)}")


def make_imbalanced(train: ImageSet, test: ImageSet, protocol: str = "binary", *, pair=None,
                    ratio: float | None = None, seed: int, dataset: str | None = None,
                    test_distribution: str = "balanced") -> Task:
    """Build the imbalanced task of ``protocol`` from a dataset's full train and test sets."""
    if protocol not in PROTOCOLS:
        raise BenchError(f"unknown protocol '{protocol}'; valid protocols: {', '.join(PROTOCOLS)}")
    if test_distribution not in TEST_CHOICES:
        raise BenchError(f"unknown test distribution '{test_distribution}'; valid: {', '.join(TEST_CHOICES)}")
    if test_distribution == "holdout":
        return _holdout(make_imbalanced(train, test, protocol, pair=pair, ratio=ratio, seed=seed, dataset=dataset),
                        seed)
    if protocol == "subset":
        return _subset(train, test, ratio, seed)
    if protocol in MULTICLASS:
        return _multiclass(train, test, protocol, ratio, seed, dataset, test_distribution)
    ratio = validate_ratio(ratio)
    majority, minority = validate_pair(pair, train.n_classes)

    maj_index = np.flatnonzero(train.labels == majority)
    min_index = np.flatnonzero(train.labels == minority)
    n_majority = len(maj_index)
    requested = int(np.floor(ratio * n_majority + 0.5))
    if requested < 1:
        raise CellRefused(
            f"ratio {ratio:g} keeps 0 minority images of {n_majority} majority images; use a ratio >= {0.5 / n_majority:.3g}"
        )
    # A class pair of unequal sizes can ask for more minority images than exist: keep all, record it.
    n_minority = min(requested, len(min_index))
    rng = np.random.default_rng(seed)
    kept = rng.permutation(min_index)[:n_minority]
    train_index = np.sort(np.concatenate([maj_index, kept]))
    test_index = np.flatnonzero((test.labels == majority) | (test.labels == minority))

    if test_distribution == "train":
        test_index = _follow(test.labels, test_index, {majority: n_majority, minority: n_minority}, rng)
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


def _holdout(task: Task, seed: int) -> Task:
    """The task with a stratified ``HOLDOUT_FRACTION`` of its training set as its test set (scikit-learn's
    ``train_test_split``, seeded): a validation split for choosing a method's settings without the test split."""
    from sklearn.model_selection import train_test_split

    labels = task.train.labels
    present = np.bincount(labels)
    if (present[present > 0] < 2).any():
        raise CellRefused("a holdout split needs at least 2 training images of every class; use a larger ratio")
    fit, held = train_test_split(np.arange(len(labels)), test_size=HOLDOUT_FRACTION, random_state=seed,
                                 stratify=labels)
    train_set, test_set = task.train.subset(np.sort(fit)), task.train.subset(np.sort(held))
    counts = {**task.counts, "train": train_set.counts().tolist(), "test": test_set.counts().tolist(),
              "holdout_of_train": HOLDOUT_FRACTION}
    return Task(train=train_set, test=test_set, positive=task.positive, counts=counts)


def _relabel(images: ImageSet, majority: int, names: tuple[str, str]) -> ImageSet:
    labels = np.where(images.labels == majority, 0, 1).astype(np.int64)
    return ImageSet(images.images, labels, names)


def _multiclass(train: ImageSet, test: ImageSet, protocol: str, ratio, seed: int, dataset, test_distribution) -> Task:
    available = train.counts()
    wanted = target_counts(protocol, available, ratio, dataset)
    if min(wanted) < 1:
        raise CellRefused(f"the {protocol} protocol at ratio {ratio:g} keeps 0 images of some class; use a larger ratio")
    rng = np.random.default_rng(seed)
    kept, realised = [], []
    for c, n in enumerate(wanted):
        members = np.flatnonzero(train.labels == c)
        take = min(n, len(members))  # a class smaller than its target keeps all it has (recorded)
        kept.append(rng.permutation(members)[:take])
        realised.append(take)
    train_index = np.sort(np.concatenate(kept))
    test_index = np.arange(len(test))
    test_wanted = None
    if protocol == "gamo":
        test_wanted = gamo_test_counts(dataset, test_distribution, len(wanted))
        test_index = _draw(test.labels, test_wanted, rng)
    elif test_distribution == "train":
        test_index = _follow(test.labels, test_index, dict(enumerate(realised)), rng)
    train_set, test_set = train.subset(train_index), test.subset(test_index)
    counts = {
        "train": train_set.counts().tolist(),
        "test": test_set.counts().tolist(),
        "requested": [int(n) for n in wanted],
        "clamped": [c for c, (n, r) in enumerate(zip(wanted, realised, strict=True)) if r < n],
        "classes": list(train.class_names),
    }
    if test_wanted is not None:
        got = test_set.counts().tolist()
        counts["test_requested"] = list(test_wanted)
        counts["test_clamped"] = [c for c, (n, r) in enumerate(zip(test_wanted, got, strict=True)) if r < n]
    return Task(train=train_set, test=test_set, positive=None, counts=counts)


def gamo_test_counts(dataset: str, test_distribution: str, n_classes: int) -> list[int]:
    """The per-class test counts of the ``gamo`` protocol (DeepSMOTE's Table II or III test set)."""
    if test_distribution == "train":
        wanted = list(GAMO_TEST_COUNTS[dataset])
    else:
        wanted = [GAMO_BALANCED_TEST[dataset]] * n_classes
    if len(wanted) != n_classes:  # target_counts has already refused a task of another size
        raise BenchError(f"the gamo protocol's {dataset} test counts are for {len(wanted)} classes, not {n_classes}")
    return wanted


def _draw(labels: np.ndarray, wanted, rng) -> np.ndarray:
    """A seeded random subset of ``wanted[c]`` images of each class c, or all of them where it has fewer."""
    keep = [rng.permutation(np.flatnonzero(labels == c))[:n] for c, n in enumerate(wanted)]
    return np.sort(np.concatenate(keep))


def _follow(labels: np.ndarray, index: np.ndarray, train_counts: dict, rng) -> np.ndarray:
    """Subsample the test images ``index`` so that each class keeps round(t_c x n_c / max n) of its t_c images
    (at least one): a test set with the training set's class distribution."""
    largest = max(train_counts.values())
    keep = []
    for c, n in train_counts.items():
        members = index[labels[index] == c]
        k = max(1, int(np.floor(len(members) * n / largest + 0.5))) if len(members) else 0
        keep.append(rng.permutation(members)[:k])
    return np.sort(np.concatenate(keep)) if keep else index


def validate_size(n, n_classes: int, available: int | None = None) -> int:
    """A ``subset`` protocol size: a whole number of images, at least one per class."""
    if float(n) != int(n) or int(n) < n_classes:
        raise BenchError(f"subset size {n:g} must be a whole number of images, at least the {n_classes} classes; "
                         "e.g. --sizes 100,500,1000")
    if available is not None and int(n) > available:
        raise BenchError(f"subset size {int(n)} exceeds the {available} training images; give a smaller size")
    return int(n)


def _subset(train: ImageSet, test: ImageSet, n, seed: int) -> Task:
    from sklearn.model_selection import train_test_split

    n = validate_size(n, train.n_classes, len(train))
    present = train.counts() > 0
    if n == len(train):
        index = np.arange(len(train))
    else:
        index, _ = train_test_split(np.arange(len(train)), train_size=n, random_state=seed,
                                    stratify=train.labels if (train.counts()[present] >= 2).all() else None)
    train_set = train.subset(np.sort(index))
    counts = {"train": train_set.counts().tolist(), "test": test.counts().tolist(), "requested": n,
              "classes": list(train.class_names)}
    return Task(train=train_set, test=test, positive=None, counts=counts)
