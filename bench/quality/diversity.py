"""Intra-class diversity of generated images by SSIM (the CapsAN paper's Figure 4).

SSIM: Wang, Bovik, Sheikh and Simoncelli, "Image quality assessment: from error visibility to structural
similarity", IEEE Transactions on Image Processing 13(4), 2004, computed by scikit-image's
``skimage.metrics.structural_similarity``. The diversity score of a set of images of ONE class is the mean
SSIM over random pairs of distinct images of the set (the protocol of Odena et al.'s AC-GAN MS-SSIM
diversity, which CapsAN's Figure 4 follows with plain SSIM): 1.0 means every pair is identical, so LOWER
means MORE diverse. The real images of the same class are the reference (``ssim_report``): a generator
whose score is well above the real one has collapsed towards few modes.

Choices (all ours, the paper gives none):
- Input: uint8 ``(N, C, H, W)`` images, C = 1 (grey) or 3 (RGB), as everywhere in the suite, at least 2 per
  set, real and generated of one (C, H, W) (checked by ``bench/quality/images.py``). SSIM is taken
  on the raw pixels with ``data_range=255``; grey images are compared as 2-D arrays, RGB images with
  ``channel_axis=-1`` (skimage averages the per-channel SSIM).
- Window: skimage's default uniform 7x7 window (``gaussian_weights=False``, K1 = 0.01, K2 = 0.03), so
  images must be at least 7 px on a side; 8x8 digits work (skimage crops the (7 - 1) / 2 = 3-px border,
  so an 8x8 image's SSIM is the mean of its 2x2 = 4 full windows: coarse, but defined). Smaller images get
  the largest odd window that fits (at least 3); ``win_size`` overrides.
- Pairs: unordered pairs {i, j} of distinct indices i != j (distinct positions in the set: two equal
  copies still form a pair, so n copies of one image score exactly 1.0). With N images there are
  N (N - 1) / 2 pairs; ``n_pairs`` (default ``DEFAULT_PAIRS`` = 1000) of them are drawn without
  replacement by ``numpy.random.default_rng(seed)``, or all of them, in order, when there are no more than
  ``n_pairs``. Same images, same ``n_pairs`` and seed: the same pairs and the same numbers.
- ``std`` is the population standard deviation (ddof = 0) of the per-pair SSIM values.
- A tqdm progress bar (on stderr) shows when at least ``PROGRESS_FROM`` pairs are scored; ``progress``
  forces it on or off.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity
from tqdm.auto import tqdm

from bench.errors import BenchError
from bench.quality.images import check_images

METRIC = "ssim-diversity"
DEFAULT_PAIRS = 1000
DEFAULT_WINDOW = 7  # skimage's default win_size (uniform filter)
PROGRESS_FROM = 5000
DATA_RANGE = 255  # uint8 pixels


def ssim_diversity(images, n_pairs: int = DEFAULT_PAIRS, seed: int = 0, win_size: int | None = None,
                   progress: bool | None = None) -> dict:
    """Mean SSIM over random pairs of distinct images of one class; lower = more diverse.

    ``images``: uint8 (N, C, H, W), N >= 2, C in {1, 3}. Returns ``{"metric": "ssim-diversity", "mean",
    "std", "n_pairs", "seed", "n_images", "win_size"}`` (``n_pairs`` is the number actually scored).
    """
    (images,) = check_images("SSIM diversity", at_least=2, images=images)
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, int | np.integer) or n_pairs < 1:
        raise BenchError(f"n_pairs must be a positive integer; got {n_pairs!r}: give e.g. n_pairs=1000")
    win = _window(images.shape[2:], win_size)
    first, second = sample_pairs(len(images), n_pairs, seed)
    hwc = np.ascontiguousarray(images.transpose(0, 2, 3, 1))  # skimage wants channels last
    rgb = hwc.shape[-1] == 3
    if not rgb:
        hwc = hwc[..., 0]
    show = len(first) >= PROGRESS_FROM if progress is None else progress
    values = np.empty(len(first), dtype=np.float64)
    for k in tqdm(range(len(first)), desc="ssim pairs", disable=not show, leave=False):
        values[k] = structural_similarity(hwc[first[k]], hwc[second[k]], win_size=win, data_range=DATA_RANGE,
                                          channel_axis=-1 if rgb else None)
    return {"metric": METRIC, "mean": float(values.mean()), "std": float(values.std()),
            "n_pairs": int(len(values)), "seed": int(seed), "n_images": int(len(images)),
            "win_size": int(win)}


def ssim_report(real, fake, n_pairs: int = DEFAULT_PAIRS, seed: int = 0, win_size: int | None = None,
                progress: bool | None = None) -> dict:
    """SSIM diversity of one class's generated images (``fake``) next to its real images (``real``).

    Both uint8 (N, C, H, W) of the same image shape; the same ``n_pairs``, seed and window are used for
    both. Returns ``{"metric", "generated": ssim_diversity(fake), "real": ssim_diversity(real),
    "difference": generated mean - real mean}``: a positive difference means the generated images are
    less diverse than the real ones.
    """
    real, fake = check_images("SSIM diversity", at_least=2, real=real, fake=fake)
    generated = ssim_diversity(fake, n_pairs, seed, win_size, progress)
    reference = ssim_diversity(real, n_pairs, seed, win_size, progress)
    return {"metric": METRIC, "generated": generated, "real": reference,
            "difference": generated["mean"] - reference["mean"]}


def sample_pairs(n_images: int, n_pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays (first, second), first < second: ``n_pairs`` distinct unordered pairs of distinct
    indices in ``range(n_images)``, drawn without replacement (seeded), or all pairs when there are no more
    than ``n_pairs``."""
    if n_images < 2:
        raise BenchError(f"SSIM diversity needs at least 2 images; got {n_images}: "
                         "generate or pick more images")
    total = n_images * (n_images - 1) // 2
    if n_pairs >= total:
        first, second = np.triu_indices(n_images, k=1)
        return first.astype(np.int64), second.astype(np.int64)
    rng = np.random.default_rng(seed)
    linear = np.sort(rng.choice(total, size=n_pairs, replace=False)).astype(np.int64)
    return _unrank(linear)


def _unrank(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear index k -> (b, a), b < a, in the order (0,1), (0,2), (1,2), (0,3), ...:
    k = a (a - 1) / 2 + b."""
    a = np.floor((1 + np.sqrt(1 + 8 * k.astype(np.float64))) / 2).astype(np.int64)
    # Exact integer corrections of the floating-point square root.
    a = np.where(a * (a - 1) // 2 > k, a - 1, a)
    a = np.where((a + 1) * a // 2 <= k, a + 1, a)
    return k - a * (a - 1) // 2, a


def _window(size: tuple[int, int], win_size: int | None) -> int:
    side = min(size)
    if win_size is None:
        win_size = DEFAULT_WINDOW if side >= DEFAULT_WINDOW else side - (1 - side % 2)
    if win_size < 3 or win_size % 2 == 0 or win_size > side:
        raise BenchError(f"SSIM window {win_size} does not fit {size[0]}x{size[1]} images: it must be odd, "
                         f">= 3 and <= the image side; resize the images to at least 7 px or pass win_size")
    return int(win_size)
