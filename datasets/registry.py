"""The dataset registry: what each dataset is, where its files live, and one entry point to load it."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.datasets import celeba, cifar10, digits, fashion_mnist, folder, gtsrb, mnist
from bench.datasets.base import ImageSet, LoadOptions, resize_images
from bench.errors import BenchError

SPLITS = ("train", "test")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str  # one line
    source: str  # citation and canonical URL
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]  # (C, H, W)
    default_pairs: tuple[tuple[int, int], ...]  # (majority, minority) class pairs, in order
    needs_files: bool  # False when the data ships with a package (digits)
    load: Callable[..., ImageSet]  # (dataset folder, split, download[, options]) -> ImageSet
    available: Callable[[Path], bool]  # are the source files present in the dataset folder?
    takes_options: bool = False  # True: ``load`` takes a ``LoadOptions`` (and resizes itself)


def _info(module) -> DatasetInfo:
    return DatasetInfo(
        name=module.NAME,
        description=module.DESCRIPTION,
        source=module.SOURCE,
        class_names=module.CLASS_NAMES,
        image_shape=module.IMAGE_SHAPE,
        default_pairs=module.DEFAULT_PAIRS,
        needs_files=module.NEEDS_FILES,
        load=module.load,
        available=module.available,
        takes_options=getattr(module, "TAKES_OPTIONS", False),
    )


_DATASETS = {info.name: info for info in map(_info, (digits, mnist, fashion_mnist, cifar10, gtsrb, celeba))}


def dataset_names() -> list[str]:
    return sorted(_DATASETS)


def get_dataset_info(name: str) -> DatasetInfo:
    if name.startswith(folder.PREFIX):  # the user's own images: folder:PATH
        return DatasetInfo(**folder.describe(name[len(folder.PREFIX):]))
    try:
        return _DATASETS[name]
    except KeyError:
        raise BenchError(f"unknown dataset '{name}'; valid names: {', '.join(dataset_names())}") from None


def default_data_dir() -> Path:
    """``$BENCH_DATA`` when set, else ``~/.cache/capsan-bench``."""
    env = os.environ.get("BENCH_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "capsan-bench"


def dataset_folder(name: str, root: str | Path | None) -> Path:
    """``<root or default_data_dir()>/<name>``."""
    if name.startswith(folder.PREFIX):
        return Path(name[len(folder.PREFIX):]).expanduser()
    get_dataset_info(name)  # reject unknown names before building a path from them
    return Path(root).expanduser() / name if root is not None else default_data_dir() / name


def load_dataset(
    name: str, root: str | Path | None = None, split: str = "train", download: bool = False,
    options: LoadOptions | None = None,
) -> ImageSet:
    """Load one split of a dataset; files are fetched only when ``download`` is true. ``options`` (image size,
    CelebA's task) go to loaders that take them; other datasets are resized here when a size is asked."""
    info = get_dataset_info(name)
    if split not in SPLITS:
        raise BenchError(f"unknown split '{split}'; valid splits: {', '.join(sorted(SPLITS))}")
    options = options or LoadOptions()
    folder = dataset_folder(name, root)
    if info.takes_options:
        return info.load(folder, split, download, options)
    data = info.load(folder, split, download)
    if options.image_size is None:
        return data
    return ImageSet(resize_images(data.images, options.image_size), data.labels, data.class_names)
