"""Fashion-MNIST: 70,000 Zalando article images in 10 classes, 28x28 grayscale (60,000 train, 10,000 test).

Source: H. Xiao, K. Rasul and R. Vollgraf, "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine
Learning Algorithms", arXiv:1708.07747, 2017; https://github.com/zalandoresearch/fashion-mnist (MIT licence).
Read from the four canonical IDX gzip files in ``<data dir>/fashion-mnist/``, checked against the MD5s
torchvision publishes.
"""

from __future__ import annotations

from pathlib import Path

from bench.datasets import idx
from bench.datasets.base import ImageSet

NAME = "fashion-mnist"
DESCRIPTION = "Fashion-MNIST clothing articles, 28x28 grayscale, 60,000 train and 10,000 test images"
SOURCE = "Xiao, Rasul and Vollgraf (2017), arXiv:1708.07747; https://github.com/zalandoresearch/fashion-mnist"
# The official label names, in label order.
CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
IMAGE_SHAPE = (1, 28, 28)
# The classes most often confused with each other: T-shirt/top vs Shirt, Pullover vs Coat,
# Sneaker vs Ankle boot.
DEFAULT_PAIRS = ((0, 6), (2, 4), (7, 9))
NEEDS_FILES = True

# (file name, MD5) as published by torchvision; module-level so tests can substitute fixtures.
RESOURCES = (
    ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
    ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
    ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
)
MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)


def load(folder: Path, split: str = "train", download: bool = False) -> ImageSet:
    return idx.load_idx_split(NAME, folder, split, download, RESOURCES, MIRRORS, CLASS_NAMES)


def available(folder: Path) -> bool:
    return idx.available(folder, RESOURCES)
