"""The binary protocol: counts, seeding, nesting, relabelling and validation."""

import numpy as np
import pytest

from bench.datasets.base import ImageSet
from bench.datasets.imbalance import all_pairs, make_imbalanced
from bench.errors import BenchError, CellFailure


def _dataset(counts, offset=0):
    labels = np.repeat(np.arange(len(counts)), counts).astype(np.int64)
    # Pixel value = index (mod 256) so the kept images can be traced back.
    images = ((np.arange(len(labels)) + offset) % 256).astype(np.uint8)[:, None, None, None].repeat(4, 2).repeat(4, 3)
    return ImageSet(images, labels, tuple(f"c{i}" for i in range(len(counts))))


TRAIN = _dataset([100, 80, 60, 200])
TEST = _dataset([10, 11, 12, 13], offset=7)


@pytest.mark.parametrize("ratio, expected", [(0.1, 20), (0.5, 100), (0.025, 5), (0.0125, 3), (0.3, 60)])
def test_counts_follow_round_ratio_times_majority(ratio, expected):
    task = make_imbalanced(TRAIN, TEST, pair=(3, 0), ratio=ratio, seed=0)
    assert task.train.counts().tolist() == [200, expected]  # 0.0125 * 200 = 2.5 rounds up to 3
    assert task.counts["train"] == [200, expected]
    assert task.counts["minority_requested"] == expected
    assert task.counts["test"] == [13, 10]
    assert task.train.class_names == ("c3", "c0")
    assert task.positive == 1


def test_every_majority_image_is_kept_and_minority_images_are_distinct():
    task = make_imbalanced(TRAIN, TEST, pair=(0, 2), ratio=0.3, seed=4)
    values = task.train.images[:, 0, 0, 0]
    majority = values[task.train.labels == 0]
    minority = values[task.train.labels == 1]
    assert sorted(majority.tolist()) == list(range(0, 100))
    assert len(set(minority.tolist())) == 30
    assert all(180 <= v < 240 for v in minority.tolist())  # class 2 occupies indices 180..239


def test_test_set_is_the_pair_untouched():
    task = make_imbalanced(TRAIN, TEST, pair=(1, 2), ratio=0.1, seed=0)
    expected = TEST.images[(TEST.labels == 1) | (TEST.labels == 2)]
    np.testing.assert_array_equal(task.test.images, expected)
    assert task.test.counts().tolist() == [11, 12]


def test_seeding_is_reproducible_and_seeds_differ():
    a = make_imbalanced(TRAIN, TEST, pair=(3, 1), ratio=0.2, seed=1)
    b = make_imbalanced(TRAIN, TEST, pair=(3, 1), ratio=0.2, seed=1)
    c = make_imbalanced(TRAIN, TEST, pair=(3, 1), ratio=0.2, seed=2)
    np.testing.assert_array_equal(a.train.images, b.train.images)
    assert not np.array_equal(a.train.images, c.train.images)


def test_subsets_are_nested_across_ratios_for_one_seed():
    small = make_imbalanced(TRAIN, TEST, pair=(3, 1), ratio=0.05, seed=3)
    large = make_imbalanced(TRAIN, TEST, pair=(3, 1), ratio=0.3, seed=3)
    pick = lambda t: set(t.train.images[t.train.labels == 1, 0, 0, 0].tolist())  # noqa: E731
    assert pick(small) < pick(large)


def test_asking_for_more_minority_images_than_exist_is_clamped_and_recorded():
    task = make_imbalanced(TRAIN, TEST, pair=(3, 2), ratio=0.5, seed=0)  # asks 100, class 2 has 60
    assert task.train.counts().tolist() == [200, 60]
    assert task.counts["minority_requested"] == 100
    assert task.counts["minority_clamped"] is True


@pytest.mark.parametrize("ratio", [0.0, -0.1, 1.5, float("nan")])
def test_ratios_outside_the_unit_interval_are_rejected(ratio):
    with pytest.raises(BenchError, match=r"outside \(0, 1\]"):
        make_imbalanced(TRAIN, TEST, pair=(0, 1), ratio=ratio, seed=0)


def test_pairs_naming_one_class_or_a_missing_class_are_rejected():
    with pytest.raises(BenchError, match="same class"):
        make_imbalanced(TRAIN, TEST, pair=(2, 2), ratio=0.1, seed=0)
    with pytest.raises(BenchError, match="does not exist"):
        make_imbalanced(TRAIN, TEST, pair=(0, 9), ratio=0.1, seed=0)


def test_a_ratio_that_keeps_no_minority_image_fails_the_cell():
    with pytest.raises(CellFailure, match="keeps 0 minority images"):
        make_imbalanced(TRAIN, TEST, pair=(1, 0), ratio=0.001, seed=0)


def test_all_pairs_are_ordered_and_distinct():
    pairs = all_pairs(4)
    assert len(pairs) == 12 and (0, 1) in pairs and (1, 0) in pairs
    assert all(a != b for a, b in pairs)
