"""The multi-class protocols (longtail, step, gamo), the test-set option, and their place in the grid."""

import numpy as np
import pytest
from helpers import copy_shared

from bench.datasets import load_dataset
from bench.datasets.base import ImageSet
from bench.datasets.imbalance import GAMO_COUNTS, gamo_ratio, make_imbalanced, target_counts
from bench.errors import BenchError, CellFailure
from bench.grid import Preset, build_grid


def _dataset(counts, offset=0):
    labels = np.repeat(np.arange(len(counts)), counts).astype(np.int64)
    # Pixel value = index (mod 256) plus a second channel of index // 256, so every image is traceable.
    index = np.arange(len(labels)) + offset
    images = np.stack([index % 256, index // 256], axis=1).astype(np.uint8)[:, :, None, None]
    return ImageSet(images, labels, tuple(f"c{i}" for i in range(len(counts))))


def _ids(images: ImageSet) -> set:
    return set((images.images[:, 0, 0, 0].astype(int) + 256 * images.images[:, 1, 0, 0].astype(int)).tolist())


TRAIN = _dataset([100] * 5)
TEST = _dataset([20] * 5, offset=1000)


def test_longtail_counts_decay_exponentially_from_the_head():
    task = make_imbalanced(TRAIN, TEST, "longtail", ratio=0.1, seed=0)
    expected = [int(100 * 0.1 ** (i / 4)) for i in range(5)]
    assert expected == [100, 56, 31, 17, 10]
    assert task.train.counts().tolist() == expected == task.counts["train"] == task.counts["requested"]
    assert task.counts["clamped"] == [] and task.positive is None
    assert task.train.class_names == TRAIN.class_names  # every class, labels unchanged
    assert task.test.counts().tolist() == [20] * 5  # the test set as the dataset gives it


def test_step_keeps_the_first_half_whole_and_cuts_the_rest():
    task = make_imbalanced(TRAIN, TEST, "step", ratio=0.1, seed=0)
    assert task.train.counts().tolist() == [100, 100, 10, 10, 10]


def test_n_max_is_the_mean_class_size_and_small_classes_are_clamped():
    train = _dataset([300, 100, 100, 50, 50])  # mean 120
    task = make_imbalanced(train, TEST, "step", ratio=0.5, seed=0)
    assert task.counts["requested"] == [120, 120, 60, 60, 60]
    assert task.train.counts().tolist() == [120, 100, 60, 50, 50]
    assert task.counts["clamped"] == [1, 3, 4]


def test_subsets_are_seeded_nested_across_ratios_and_drawn_without_replacement():
    small = make_imbalanced(TRAIN, TEST, "longtail", ratio=0.05, seed=3)
    large = make_imbalanced(TRAIN, TEST, "longtail", ratio=0.2, seed=3)
    again = make_imbalanced(TRAIN, TEST, "longtail", ratio=0.05, seed=3)
    other = make_imbalanced(TRAIN, TEST, "longtail", ratio=0.05, seed=4)
    assert _ids(small.train) < _ids(large.train)
    assert np.array_equal(small.train.images, again.train.images)
    assert _ids(small.train) != _ids(other.train)
    assert len(_ids(small.train)) == len(small.train)  # no image twice


def test_gamo_uses_the_papers_fixed_counts():
    train = _dataset([4600] * 10)
    task = make_imbalanced(train, _dataset([5] * 10, offset=60000), "gamo", seed=0, dataset="cifar10")
    assert task.train.counts().tolist() == list(GAMO_COUNTS["cifar10"])
    assert len(_ids(task.train)) == len(task.train)
    assert gamo_ratio("mnist") == pytest.approx(40 / 4000)
    assert gamo_ratio("celeba") == pytest.approx(160 / 9000, abs=1e-6)


def test_gamo_refuses_datasets_and_tasks_it_has_no_counts_for():
    with pytest.raises(BenchError, match="no.*'digits'|not 'digits'"):
        target_counts("gamo", [10] * 10, dataset="digits")
    with pytest.raises(BenchError, match="--celeba-attr hair"):
        target_counts("gamo", [10, 10], dataset="celeba")


def test_a_ratio_that_keeps_no_image_of_a_class_fails_the_cell():
    with pytest.raises(CellFailure, match="keeps 0 images"):
        make_imbalanced(TRAIN, TEST, "longtail", ratio=0.001, seed=0)


def test_test_set_can_follow_the_training_distribution():
    task = make_imbalanced(TRAIN, TEST, "longtail", ratio=0.1, seed=0, test_distribution="train")
    # round(20 x n_i / 100) per class, at least one
    assert task.test.counts().tolist() == [20, 11, 6, 3, 2]
    binary = make_imbalanced(TRAIN, TEST, pair=(0, 1), ratio=0.1, seed=0, test_distribution="train")
    assert binary.test.counts().tolist() == [20, 2]
    with pytest.raises(BenchError, match="unknown test distribution"):
        make_imbalanced(TRAIN, TEST, "longtail", ratio=0.1, seed=0, test_distribution="skewed")


def test_gamo_protocol_on_the_real_mnist(tmp_path):
    data = copy_shared("mnist", tmp_path).parent  # its own copy: loading caches into a writable data folder
    train = load_dataset("mnist", data, "train")
    test = load_dataset("mnist", data, "test")
    task = make_imbalanced(train, test, "gamo", seed=1, dataset="mnist")
    assert task.train.counts().tolist() == list(GAMO_COUNTS["mnist"])
    assert task.test.counts().tolist() == np.bincount(test.labels).tolist()


def _config(**overrides):
    base = dict(name="t", methods=["imbalanced", "smote"], datasets=["mnist"], ratios=[0.1, 0.05], seeds=2,
                epochs=1)
    return Preset(**{**base, **overrides})


def test_multiclass_grids_have_no_pairs_and_gamo_fixes_the_ratio():
    cells = build_grid(_config(protocol="gamo"))
    assert len(cells) == 2 * 2  # methods x seeds: --ratios do not multiply a gamo grid
    assert {c.ratio for c in cells} == {0.01} and {c.pair for c in cells} == {()}
    assert "gamo" in cells[0].label()
    longtail = build_grid(_config(protocol="longtail"))
    assert len(longtail) == 2 * 2 * 2 and {c.ratio for c in longtail} == {0.1, 0.05}


def test_options_that_change_the_data_change_the_key_and_nothing_else_does():
    plain = build_grid(_config())[0]
    assert plain.options == {}
    sized = build_grid(_config(image_size=32))[0]
    follow = build_grid(_config(test_distribution="train"))[0]
    attr = build_grid(_config(celeba_attr="Smiling"))[0]  # not a CelebA grid: no effect
    assert sized.options == {"image_size": 32} and follow.options == {"test": "train"}
    assert len({plain.key, sized.key, follow.key}) == 3 and attr.key == plain.key


@pytest.mark.parametrize("overrides, message", [
    ({"protocol": "zipf"}, "unknown protocol 'zipf'"),
    ({"test_distribution": "skewed"}, "unknown test set .skewed."),
    ({"image_size": 4}, "between 8 and 512"),
])
def test_bad_protocol_settings_are_one_line_errors(overrides, message):
    with pytest.raises(BenchError, match=message):
        build_grid(_config(**overrides))


def test_subset_draws_n_images_stratified_and_keeps_the_test_set():
    train = _dataset([60, 30, 10])
    task = make_imbalanced(train, TEST, "subset", ratio=50, seed=0)
    assert task.train.counts().tolist() == [30, 15, 5]  # class shares kept
    assert len(_ids(task.train)) == 50 and task.test is TEST and task.counts["requested"] == 50
    again = make_imbalanced(train, TEST, "subset", ratio=50, seed=0)
    other = make_imbalanced(train, TEST, "subset", ratio=50, seed=1)
    assert _ids(task.train) == _ids(again.train) != _ids(other.train)
    with pytest.raises(BenchError, match="exceeds the 100 training images"):
        make_imbalanced(train, TEST, "subset", ratio=101, seed=0)
    with pytest.raises(BenchError, match="whole number of images, at least the 3 classes"):
        make_imbalanced(train, TEST, "subset", ratio=2, seed=0)


def test_subset_grids_are_levelled_by_size_and_need_sizes():
    cells = build_grid(_config(protocol="subset", sizes=[100, 500], ratios=[]))
    assert sorted({c.ratio for c in cells}) == [100.0, 500.0] and {c.pair for c in cells} == {()}
    with pytest.raises(BenchError, match="needs sizes; pass --sizes"):
        build_grid(_config(protocol="subset"))
    with pytest.raises(BenchError, match="a size is listed twice"):
        build_grid(_config(protocol="subset", sizes=[100, 100]))


def test_the_paper_table1_preset_pits_the_two_discriminators_as_plain_classifiers():
    from bench.grid import load_preset

    config = load_preset("paper-table1")
    cells = build_grid(config)
    assert {c.method for c in cells} == {"capsan", "capsan-conv"}
    assert all(c.params["gan_epochs"] == 0 for c in cells)
    assert {c.ratio for c in cells} == {100.0, 500.0, 1000.0} and {c.seed for c in cells} == set(range(10))
