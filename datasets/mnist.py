"""MNIST: 70,000 handwritten digits, 28x28 grayscale (60,000 train, 10,000 test).

Source: Y. LeCun, L. Bottou, Y. Bengio and P. Haffner, "Gradient-based learning applied to document
recognition", Proc. IEEE 86(11), 1998; http://yann.lecun.com/exdb/mnist/ . Read from the four canonical IDX
gzip files in ``<data dir>/mnist/``, checked against the MD5s torchvision publishes.
"""

from __future__ import annotations

from pathlib import Path

from bench.datasets import idx
from bench.datasets.base import ImageSet

NAME = "mnist"
DESCRIPTION = "MNIST handwritten digits, 28x28 grayscale, 60,000 train and 10,000 test images"
SOURCE = "LeCun, Bottou, Bengio and Haffner (1998), Proc. IEEE 86(11); http://yann.lecun.com/exdb/mnist/"
CLASS_NAMES = tuple(str(d) for d in range(10))
IMAGE_SHAPE = (1, 28, 28)
# Pairs of digits that are easy to confuse, from the imbalanced-learning literature: 3 vs 5, 4 vs 9, 0 vs 6.
DEFAULT_PAIRS = ((3, 5), (4, 9), (0, 6))
NEEDS_FILES = True

# (file name, MD5) as published by torchvision; module-level so tests can substitute fixtures.
RESOURCES = (
    ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
)
# Tried in order; the original site is often slow or refuses automated downloads, so it comes second.
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


def load(folder: Path, split: str = "train", download: bool = False) -> ImageSet:
    return idx.load_idx_split(NAME, folder, split, download, RESOURCES, MIRRORS, CLASS_NAMES)


def available(folder: Path) -> bool:
    return idx.available(folder, RESOURCES)
