"""SSIM diversity: identical images score 1, noise scores near 0, pairs are seeded, distinct and exact."""

import itertools

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from bench.errors import BenchError
from bench.quality.diversity import sample_pairs, ssim_diversity, ssim_report


def _noise(n, channels=1, size=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, channels, size, size), dtype=np.uint8)


@pytest.mark.parametrize("channels", [1, 3])
def test_copies_of_one_image_have_diversity_one(channels):
    copies = np.repeat(_noise(1, channels), 6, axis=0)
    result = ssim_diversity(copies)
    assert result["mean"] == pytest.approx(1.0) and result["std"] == pytest.approx(0.0)
    assert result["n_pairs"] == 15 and result["metric"] == "ssim-diversity" and result["seed"] == 0


@pytest.mark.parametrize("channels", [1, 3])
def test_noise_images_have_low_ssim(channels):
    result = ssim_diversity(_noise(30, channels, size=32), n_pairs=100)
    assert abs(result["mean"]) < 0.05 and result["n_pairs"] == 100


def test_rgb_and_grey_pairs_match_skimage_on_channels_last_arrays():
    rgb = _noise(2, 3, size=12)
    expected = structural_similarity(rgb[0].transpose(1, 2, 0), rgb[1].transpose(1, 2, 0), data_range=255,
                                     channel_axis=-1)
    assert ssim_diversity(rgb)["mean"] == pytest.approx(expected)
    grey = _noise(2, 1, size=8)  # 8x8 digits-size: the default 7x7 window fits
    assert ssim_diversity(grey)["mean"] == pytest.approx(structural_similarity(grey[0, 0], grey[1, 0],
                                                                               data_range=255))


def test_only_distinct_images_are_paired():
    a, b = _noise(2)
    result = ssim_diversity(np.stack([a, b]), n_pairs=1000)  # the one pair {a, b}; never a with itself
    assert result["n_pairs"] == 1
    assert result["mean"] == pytest.approx(structural_similarity(a[0], b[0], data_range=255))
    assert result["mean"] < 0.5


def test_all_pairs_when_there_are_fewer_than_asked():
    first, second = sample_pairs(6, 1000)
    pairs = sorted(zip(first.tolist(), second.tolist(), strict=True))
    assert pairs == list(itertools.combinations(range(6), 2))


@pytest.mark.parametrize("n_images", [40, 100_000])
def test_sampled_pairs_are_seeded_distinct_and_in_range(n_images):
    first, second = sample_pairs(n_images, 500, seed=3)
    again = sample_pairs(n_images, 500, seed=3)
    other = sample_pairs(n_images, 500, seed=4)
    assert np.array_equal(first, again[0]) and np.array_equal(second, again[1])
    assert not (np.array_equal(first, other[0]) and np.array_equal(second, other[1]))
    assert len(first) == 500 and np.all(first < second) and np.all(first >= 0) and np.all(second < n_images)
    assert len(set(zip(first.tolist(), second.tolist(), strict=True))) == 500


def test_same_seed_same_number_other_seed_other_pairs():
    images = _noise(50, 1, size=8)
    assert ssim_diversity(images, n_pairs=40, seed=1) == ssim_diversity(images, n_pairs=40, seed=1)
    other = ssim_diversity(images, n_pairs=40, seed=2)
    assert ssim_diversity(images, n_pairs=40, seed=1)["mean"] != other["mean"]


def test_report_puts_a_collapsed_generator_above_diverse_real_images():
    real = _noise(20, 3)
    fake = np.repeat(real[:1], 20, axis=0)
    report = ssim_report(real, fake, n_pairs=50)
    assert report["generated"]["mean"] == pytest.approx(1.0)
    assert report["real"]["mean"] < 0.1
    assert report["difference"] == pytest.approx(report["generated"]["mean"] - report["real"]["mean"])
    with pytest.raises(BenchError, match="same"):
        ssim_report(real, _noise(5, 1))


def test_window_shrinks_for_tiny_images_and_bad_inputs_are_refused():
    assert ssim_diversity(_noise(3, 1, size=5))["win_size"] == 5
    assert ssim_diversity(_noise(3, 1, size=8))["win_size"] == 7
    with pytest.raises(BenchError, match="window"):
        ssim_diversity(_noise(3, 1, size=2))
    with pytest.raises(BenchError, match="window"):
        ssim_diversity(_noise(3, 1, size=16), win_size=4)
    with pytest.raises(BenchError, match="uint8"):
        ssim_diversity(_noise(3).astype(np.float32))
    with pytest.raises(BenchError, match="at least 2"):
        ssim_diversity(_noise(1))
    with pytest.raises(BenchError, match="n_pairs"):
        ssim_diversity(_noise(3), n_pairs=0)


def test_progress_bar_can_be_forced_on_and_off(capsys):
    ssim_diversity(_noise(4), progress=True)
    assert "ssim pairs" in capsys.readouterr().err
    ssim_diversity(_noise(4), progress=False)
    assert capsys.readouterr().err == ""
