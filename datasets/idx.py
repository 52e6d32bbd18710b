"""The IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/) and the loader MNIST-like datasets share.

An IDX file is a 4-byte magic number ``0x00 0x00 <dtype code> <ndim>``, then ``ndim`` big-endian uint32
dimensions, then the row-major payload in big-endian. The canonical files are gzip-compressed.

Decoded splits are cached beside the source files as ``<split>.npz`` together with the sources' MD5s, and the
cache is used only while those MD5s still match.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.datasets.base import ImageSet
from bench.datasets.cache import read_cache, write_cache
from bench.datasets.download import ensure_files
from bench.errors import BenchError

# IDX dtype codes; the payload is big-endian.
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
# The canonical file names start with "train" or "t10k".
SPLIT_PREFIX = {"train": "train", "test": "t10k"}


def split_files(split: str) -> tuple[str, str]:
    """The (images, labels) file names of a split, e.g. ``t10k-images-idx3-ubyte.gz``."""
    if split not in SPLIT_PREFIX:
        raise BenchError(f"unknown split '{split}'; valid splits: {', '.join(sorted(SPLIT_PREFIX))}")
    prefix = SPLIT_PREFIX[split]
    return f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"


def read_idx(path: Path, ndim: int, dtype: str = ">u1") -> np.ndarray:
    """Decode a gzipped IDX file, checking magic, dtype code, number of dimensions and payload length."""

    def bad(reason: str) -> BenchError:
        return BenchError(
            f"{path} is not a valid IDX file ({reason}); delete it and rerun with --download, "
            "or replace it with the canonical file"
        )

    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; truncation is an EOFError
        raise bad(f"unreadable gzip: {' '.join(str(e).split())}") from e
    if len(data) < 4 or data[:2] != b"\0\0":
        raise bad(f"bad magic number {data[:4].hex() or 'none'}")
    code, n = data[2], data[3]
    if IDX_DTYPES.get(code) != dtype:
        raise bad(f"dtype code 0x{code:02x}, expected {dtype}")
    if n != ndim:
        raise bad(f"{n} dimensions, expected {ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise bad("header cut short")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if len(data) - header != expected:
        raise bad(f"payload of {len(data) - header} bytes, expected {expected} for shape {shape}")
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype[1:])


def load_idx_split(
    name: str,
    folder: Path,
    split: str,
    download: bool,
    resources: Sequence[tuple[str, str]],
    mirrors: Sequence[str],
    class_names: tuple[str, ...],
) -> ImageSet:
    """Load one split of an MNIST-format dataset from ``folder``, checking every source file's MD5."""
    folder = Path(folder)
    images_file, labels_file = split_files(split)
    needed = [r for r in resources if r[0] in (images_file, labels_file)]
    md5s = ensure_files(name, folder, needed, mirrors, download)
    key = np.array([md5s[images_file], md5s[labels_file]])
    cache = folder / f"{split}.npz"
    cached = read_cache(cache, key, class_names)
    if cached is not None:
        return cached
    images = read_idx(folder / images_file, 3)
    labels = read_idx(folder / labels_file, 1)
    if len(images) != len(labels):
        raise BenchError(
            f"{name}: {images_file} has {len(images)} images but {labels_file} has {len(labels)} labels "
            f"in {folder}; replace both with the canonical files"
        )
    if len(labels) and labels.max() >= len(class_names):
        raise BenchError(
            f"{name}: {folder / labels_file} has label {labels.max()} but only {len(class_names)} classes; "
            "replace it with the canonical file"
        )
    result = ImageSet(images[:, None], labels.astype(np.int64), class_names)
    write_cache(cache, key, result)
    return result


def available(folder: Path, resources: Sequence[tuple[str, str]]) -> bool:
    return all((Path(folder) / file).is_file() for file, _ in resources)
