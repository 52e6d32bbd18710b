"""Seconds to load one decoded split from its npz cache (datasets/cache.py), the path every load after the
first takes: a CIFAR-10-sized train split (60,000 x 3 x 32 x 32 uint8) by default, or MNIST-sized
(60,000 x 1 x 28 x 28) with ``--mnist``.

    python benchmarks/cache_load.py [--mnist] [--repeats 5]

The arrays are synthetic (random pixels, labels 0..9): only the cache path is measured, not decoding. The
cache is written once into a temporary folder, then read ``--repeats`` times; the file is then in the OS page
cache, so the figures are warm reads (a first read from a cold disk adds the disk's transfer time).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.datasets.base import ImageSet
from bench.datasets.cache import read_cache, write_cache

CLASS_NAMES = tuple(str(c) for c in range(10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", action="store_true", help="60,000 x 1 x 28 x 28 instead of x 3 x 32 x 32")
    parser.add_argument("--images", type=int, default=60000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    shape = (1, 28, 28) if args.mnist else (3, 32, 32)
    rng = np.random.default_rng(0)
    data = ImageSet(
        rng.integers(0, 256, (args.images, *shape), dtype=np.uint8),
        rng.integers(0, 10, args.images).astype(np.int64),
        CLASS_NAMES,
    )
    key = np.array(["0" * 32, "f" * 32])  # two source MD5s, as a loader records them
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "train.npz"
        start = time.perf_counter()
        write_cache(cache, key, data)
        written = time.perf_counter() - start
        if not cache.is_file():
            raise SystemExit(f"no cache written in {tmp}")
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            loaded = read_cache(cache, key, CLASS_NAMES)
            times.append(time.perf_counter() - start)
            assert loaded is not None and np.array_equal(loaded.labels, data.labels)
        size_mb = cache.stat().st_size / 1e6
    print(
        f"cache of {args.images} x {'x'.join(map(str, shape))} uint8 ({size_mb:.0f} MB): written in "
        f"{written:.3f} s; loaded in {min(times):.3f} s best, {statistics.median(times):.3f} s median "
        f"of {args.repeats}"
    )


if __name__ == "__main__":
    main()
