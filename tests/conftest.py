"""Shared fixtures, and the fault suite's tally (``tests/faults/``): every fault test adds what it injected,
and the run ends with the totals (faults injected, survived, bad inputs tried, cells lost), also written to
``$BENCH_TEST_ARTIFACTS/fault-counts.json`` when that folder is set (as in CI). Under pytest-xdist each worker
keeps its own counts and hands them to the controller as it ends (``workeroutput``), which adds them up."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def write_idx(path: Path, array: np.ndarray) -> str:
    """Write a uint8 array as a gzipped IDX file; return the file's MD5."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + np.ascontiguousarray(array, np.uint8).tobytes(), mtime=0))
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def idx_writer():
    """``write_idx(path, uint8 array) -> md5``: one gzipped IDX file in the canonical format."""
    return write_idx


@pytest.fixture
def fake_idx():
    """Factory: write an MNIST-format dataset (``per_class`` random images per class and split) into
    ``folder``; returns ``(data, resources)``, with data[split] = (images (N,28,28), labels) and resources
    the ``(file, md5)`` table in canonical order, ready to monkeypatch over a module's RESOURCES."""

    def make(folder: Path, per_class: int = 3, seed: int = 0):
        rng = np.random.default_rng(seed)
        folder.mkdir(parents=True, exist_ok=True)
        data, resources = {}, []
        for split, (images_file, labels_file) in IDX_FILES.items():
            labels = rng.permutation(np.repeat(np.arange(10, dtype=np.uint8), per_class))
            images = rng.integers(0, 256, (len(labels), 28, 28), dtype=np.uint8)
            resources += [(images_file, write_idx(folder / images_file, images))]
            resources += [(labels_file, write_idx(folder / labels_file, labels))]
            data[split] = images, labels
        return data, tuple(resources)

    return make


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One ``bench run --preset smoke --threads 1`` of the installed command, shared by the tests that check
    what it printed and stored (test_cli, test_threads, test_same_results): (the finished process, its results
    folder). Treat the folder as read-only: a test that writes runs its own."""
    from helpers import run_bench

    folder = tmp_path_factory.mktemp("smoke")
    run = run_bench("run", "--preset", "smoke", "--threads", "1", "--results", folder / "results", "--quiet",
                    cwd=folder)
    return run, folder / "results"


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's bundled digits, (train, test): the data of every end-to-end method test."""
    from bench.datasets import load_dataset

    return load_dataset("digits", split="train"), load_dataset("digits", split="test")


@pytest.fixture(scope="module")
def colour_task():
    """A 3x32x32 two-class task at ratio 0.1: class 1's images are brighter in the red channel, plus noise."""
    from bench.datasets.base import ImageSet
    from bench.datasets.imbalance import make_imbalanced

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], [200, 200])
    images = rng.integers(0, 120, size=(400, 3, 32, 32)).astype(np.uint8)
    images[labels == 1, 0] += 100
    full = ImageSet(images, labels, ["dark", "red"])
    return make_imbalanced(full, full, "binary", pair=(0, 1), ratio=0.1, seed=0)


TALLY: Counter = Counter()


@pytest.fixture(scope="session")
def tally() -> Counter:
    """``tally["faults"] += n`` (injected), ``tally["survived"] += n``, ``tally["bad_inputs"] += n``,
    ``tally["cells_lost"] += n`` (a reported-done cell missing from the store: must stay 0)."""
    return TALLY


def pytest_sessionfinish(session):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: its counts go to the controller
        workeroutput["fault_tally"] = dict(TALLY)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """pytest-xdist's controller: a worker ended; add its counts."""
    TALLY.update(getattr(node, "workeroutput", {}).get("fault_tally", {}))


def pytest_terminal_summary(terminalreporter):
    if not TALLY:
        return
    line = (f"fault suite: {TALLY['faults']} faults injected, {TALLY['survived']} survived, "
            f"{TALLY['bad_inputs']} bad inputs tried, {TALLY['cells_lost']} cells lost")
    terminalreporter.write_sep("-", line)
    folder = os.environ.get("BENCH_TEST_ARTIFACTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "fault-counts.json").write_text(json.dumps(dict(TALLY), indent=1, sort_keys=True) + "\n")
