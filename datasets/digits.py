"""digits: scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes); no download.

Source: E. Alpaydin and C. Kaynak, "Optical Recognition of Handwritten Digits", UCI Machine Learning
Repository, 1998, https://doi.org/10.24432/C50P49 , as shipped by ``sklearn.datasets.load_digits``.
The pixels (counts 0..16 of a 4x4 block) become uint8 by ``round(v * 255 / 16)``. The set has no official
split, so a FIXED one is used, independent of any run seed, so that every run tests on the same images:
stratified ``train_test_split(test_size=0.3, random_state=0)`` (1,257 train, 540 test).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.datasets.base import ImageSet
from bench.errors import BenchError

NAME = "digits"
DESCRIPTION = "scikit-learn's bundled 8x8 handwritten digits, 1,797 images, fixed 70/30 stratified split"
SOURCE = (
    "Alpaydin and Kaynak (1998), UCI Optical Recognition of Handwritten Digits, "
    "https://doi.org/10.24432/C50P49 (sklearn.datasets.load_digits)"
)
CLASS_NAMES = tuple(str(d) for d in range(10))
IMAGE_SHAPE = (1, 8, 8)
# The same easily confused digit pairs as MNIST, so results on the two read side by side.
DEFAULT_PAIRS = ((3, 5), (4, 9), (0, 6))
NEEDS_FILES = False
TEST_SIZE = 0.3
SPLIT_SEED = 0


def load(folder: Path | None = None, split: str = "train", download: bool = False) -> ImageSet:
    """The digits split; ``folder`` and ``download`` are ignored (the data ships with scikit-learn)."""
    if split not in ("train", "test"):
        raise BenchError(f"unknown split '{split}'; valid splits: test, train")
    # Imported here: scikit-learn is slow to import and only this dataset needs it.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = np.round(data.images * 255 / 16).astype(np.uint8)[:, None]
    labels = data.target.astype(np.int64)
    train, test = train_test_split(
        np.arange(len(labels)), test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=labels
    )
    # Sorted: keep the original order within each split.
    index = np.sort(train if split == "train" else test)
    return ImageSet(images[index], labels[index], CLASS_NAMES)


def available(folder: Path | None = None) -> bool:
    return True
