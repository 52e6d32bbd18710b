"""Dataset registry, loaders, IDX parsing and the decoded-array cache (no network)."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import copy_shared, require_shared

from bench.datasets import (
    DatasetInfo,
    ImageSet,
    dataset_folder,
    dataset_names,
    default_data_dir,
    fashion_mnist,
    get_dataset_info,
    idx,
    load_dataset,
    mnist,
)
from bench.errors import BenchError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MODULES = {"mnist": mnist, "fashion-mnist": fashion_mnist}


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# --- registry -----------------------------------------------------------------------------------------

DATASETS = ["celeba", "cifar10", "digits", "fashion-mnist", "gtsrb", "mnist"]


def test_names_and_infos():
    assert dataset_names() == DATASETS
    for name in dataset_names():
        info = get_dataset_info(name)
        assert isinstance(info, DatasetInfo) and info.name == name
        assert info.description and "\n" not in info.description and "http" in info.source
        n_classes = len(info.class_names)
        assert n_classes == {"gtsrb": 43, "celeba": 2}.get(name, 10)
        for majority, minority in info.default_pairs:
            assert majority != minority and {majority, minority} <= set(range(n_classes))
    assert get_dataset_info("digits").image_shape == (1, 8, 8)
    assert not get_dataset_info("digits").needs_files and get_dataset_info("mnist").needs_files
    fashion = get_dataset_info("fashion-mnist")
    assert fashion.image_shape == (1, 28, 28)
    assert fashion.class_names[0] == "T-shirt/top" and fashion.class_names[9] == "Ankle boot"
    assert [(fashion.class_names[a], fashion.class_names[b]) for a, b in fashion.default_pairs] == [
        ("T-shirt/top", "Shirt"),
        ("Pullover", "Coat"),
        ("Sneaker", "Ankle boot"),
    ]
    assert get_dataset_info("mnist").default_pairs == ((3, 5), (4, 9), (0, 6))


def test_unknown_name_lists_valid_names():
    with pytest.raises(BenchError) as excinfo:
        get_dataset_info("cifar")
    assert one_line_error(excinfo) == "unknown dataset 'cifar'; valid names: " + ", ".join(DATASETS)
    with pytest.raises(BenchError, match="valid names: " + ", ".join(DATASETS)):
        load_dataset("MNIST")


@pytest.mark.parametrize("name", ["digits", "mnist"])
def test_bad_split_lists_valid_splits(name, tmp_path):
    with pytest.raises(BenchError) as excinfo:
        load_dataset(name, tmp_path, split="val")
    assert "'val'" in one_line_error(excinfo) and "test, train" in str(excinfo.value)


def test_data_dir_and_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "data"))
    assert default_data_dir() == tmp_path / "data"
    assert dataset_folder("mnist", None) == tmp_path / "data" / "mnist"
    assert dataset_folder("fashion-mnist", tmp_path / "x") == tmp_path / "x" / "fashion-mnist"
    monkeypatch.delenv("BENCH_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home" / ".cache" / "capsan-bench"


# --- digits -------------------------------------------------------------------------------------------


def test_digits_split_is_fixed_stratified_and_complete(tmp_path):
    from sklearn.datasets import load_digits

    train = load_dataset("digits", tmp_path / "ignored", "train")
    test = load_dataset("digits", split="test")
    assert not (tmp_path / "ignored").exists()
    assert isinstance(train, ImageSet) and train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    assert train.images.shape[1:] == (1, 8, 8) and len(train) + len(test) == 1797 and len(test) == 540
    # 0..16 maps onto 0..255 by round(v * 255 / 16): only those 17 values occur, both ends included.
    allowed = {round(v * 255 / 16) for v in range(17)}
    assert set(np.unique(np.concatenate([train.images, test.images]))) <= allowed
    assert train.images.min() == 0 and train.images.max() == 255
    # Every image lands in exactly one split, and each class is split 70/30 (stratified).
    full = np.bincount(load_digits().target, minlength=10)
    assert np.array_equal(train.counts() + test.counts(), full)
    assert np.all(np.abs(test.counts() - 0.3 * full) <= 1)
    again = load_dataset("digits", split="train")
    assert np.array_equal(again.images, train.images) and np.array_equal(again.labels, train.labels)


# --- real MNIST and Fashion-MNIST (when the shared data folder has them) --------------------------------


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("writable", [False, True], ids=["read-only", "writable"])
def test_real_data(name, writable, tmp_path):
    """On the test's own copy of the real files: a read-only folder is left exactly as found (no cache); a
    writable one gets the documented ``train.npz`` / ``test.npz`` cache, which a second load reads back."""
    folder = copy_shared(name, tmp_path, mode=0o755 if writable else 0o555)
    before = sorted(os.listdir(folder))
    try:
        train = load_dataset(name, tmp_path, "train")
        test = load_dataset(name, tmp_path, "test")
        after = sorted(os.listdir(folder))
        if writable:
            assert after == sorted([*before, "train.npz", "test.npz"])
            again = load_dataset(name, tmp_path, "train")  # from the cache
            assert np.array_equal(again.images, train.images) and np.array_equal(again.labels, train.labels)
        else:
            assert after == before
    finally:
        folder.chmod(0o755)  # so that tmp_path can be cleaned up
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    assert train.images.max() == 255 and test.images.min() == 0
    if name == "mnist":
        assert train.counts().tolist() == MNIST_TRAIN_COUNTS
        assert train.labels[:5].tolist() == [5, 0, 4, 1, 9]
    else:
        assert train.counts().tolist() == [6000] * 10 and test.counts().tolist() == [1000] * 10
        assert train.labels[:4].tolist() == [9, 0, 0, 3]


# --- fixture IDX files ----------------------------------------------------------------------------------


@pytest.fixture(params=["mnist", "fashion-mnist"])
def fake(request, tmp_path, fake_idx, monkeypatch):
    """(dataset name, module, folder, data, resources) for a fake dataset under tmp_path/<name>."""
    name, module = request.param, MODULES[request.param]
    data, resources = fake_idx(tmp_path / name)
    monkeypatch.setattr(module, "RESOURCES", resources)
    monkeypatch.setattr(module, "MIRRORS", ("http://127.0.0.1:9/never/",))
    return name, module, tmp_path / name, data, resources


def test_fixture_round_trip(fake, tmp_path):
    name, module, folder, data, _ = fake
    assert module.available(folder)
    for split in ("train", "test"):
        loaded = load_dataset(name, tmp_path, split)
        images, labels = data[split]
        assert loaded.images.shape == (30, 1, 28, 28) and loaded.images.dtype == np.uint8
        assert loaded.labels.dtype == np.int64 and loaded.class_names == module.CLASS_NAMES
        assert np.array_equal(loaded.images[:, 0], images) and np.array_equal(loaded.labels, labels)
        assert loaded.counts().tolist() == [3] * 10


def test_missing_file(fake, tmp_path):
    name, module, folder, _, resources = fake
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    assert not module.available(folder)
    load_dataset(name, tmp_path, "train")  # the other split does not need it
    with pytest.raises(BenchError) as excinfo:
        load_dataset(name, tmp_path, "test")
    message = one_line_error(excinfo)
    assert message.startswith(f"{name}: missing file t10k-labels-idx1-ubyte.gz in {folder} ")
    assert f"expected MD5 {resources[3][1]}" in message and "--download" in message


def test_corrupt_file(fake, tmp_path, idx_writer):
    name, _, folder, data, resources = fake
    images = data["train"][0].copy()
    images[0, 0, 0] ^= 1
    got = idx_writer(folder / "train-images-idx3-ubyte.gz", images)
    with pytest.raises(BenchError) as excinfo:
        load_dataset(name, tmp_path, "train")
    message = one_line_error(excinfo)
    assert f"{folder / 'train-images-idx3-ubyte.gz'} is corrupt" in message
    assert f"MD5 {got}, expected {resources[0][1]}" in message and "delete it" in message


def broken(folder: Path, module, monkeypatch, file: str, raw: bytes, compress: bool = True) -> Path:
    """Replace ``file`` by ``raw`` (gzipped unless told) and accept its MD5, so the parser must catch it."""
    path = folder / file
    path.write_bytes(gzip.compress(raw, mtime=0) if compress else raw)
    from bench.datasets.download import md5sum

    table = [(f, md5sum(path) if f == file else m) for f, m in module.RESOURCES]
    monkeypatch.setattr(module, "RESOURCES", tuple(table))
    return path


def idx_header(code: int, *shape: int) -> bytes:
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


@pytest.mark.parametrize(
    "file, raw, compress, reason",
    [
        ("train-images-idx3-ubyte.gz", b"not gzip at all", False, "unreadable gzip"),
        ("train-images-idx3-ubyte.gz", b"\x1f\x8b\x08\x00\x00\x00", False, "unreadable gzip"),
        ("train-images-idx3-ubyte.gz", b"\x08\x03" + bytes(20), True, "bad magic number"),
        ("train-images-idx3-ubyte.gz", idx_header(0x0D, 1, 28, 28) + bytes(4 * 784), True, "dtype code 0x0d"),
        ("train-labels-idx1-ubyte.gz", idx_header(0x08, 30, 1, 1) + bytes(30), True, "3 dimensions"),
        ("train-images-idx3-ubyte.gz", idx_header(0x08, 30, 28, 28) + bytes(784), True, "payload of 784"),
        ("train-labels-idx1-ubyte.gz", idx_header(0x08, 30) + bytes(31), True, "payload of 31"),
        ("train-images-idx3-ubyte.gz", bytes([0, 0, 8, 3, 0, 0]), True, "header cut short"),
    ],
    ids=["not-gzip", "gzip-header-only", "magic", "dtype", "ndim", "short-payload", "long-payload", "header"],
)
def test_malformed_idx(fake, tmp_path, monkeypatch, file, raw, compress, reason):
    name, module, folder, _, _ = fake
    path = broken(folder, module, monkeypatch, file, raw, compress)
    with pytest.raises(BenchError) as excinfo:
        load_dataset(name, tmp_path, "train")
    message = one_line_error(excinfo)
    assert message.startswith(f"{path} is not a valid IDX file") and reason in message
    assert "--download" in message


def test_truncated_gzip(fake, tmp_path, monkeypatch):
    name, module, folder, _, _ = fake
    whole = (folder / "train-images-idx3-ubyte.gz").read_bytes()
    path = broken(folder, module, monkeypatch, "train-images-idx3-ubyte.gz", whole[: len(whole) // 2], False)
    with pytest.raises(BenchError, match="unreadable gzip") as excinfo:
        load_dataset(name, tmp_path, "train")
    assert str(path) in one_line_error(excinfo)


def test_label_count_and_range_are_checked(fake, tmp_path, monkeypatch):
    name, module, folder, _, _ = fake
    labels = "train-labels-idx1-ubyte.gz"
    broken(folder, module, monkeypatch, labels, idx_header(0x08, 29) + bytes(29))
    with pytest.raises(BenchError, match="has 30 images but .* has 29 labels"):
        load_dataset(name, tmp_path, "train")
    broken(folder, module, monkeypatch, labels, idx_header(0x08, 30) + bytes([10] * 30))
    with pytest.raises(BenchError, match="has label 10 but only 10 classes"):
        load_dataset(name, tmp_path, "train")


def test_cache_written_reused_and_rebuilt(fake, tmp_path, monkeypatch, idx_writer):
    name, module, folder, data, resources = fake
    cache = folder / "train.npz"
    first = load_dataset(name, tmp_path, "train")
    assert cache.is_file() and not (folder / "test.npz").exists()
    assert list(folder.glob("*.tmp")) == []
    with np.load(cache) as z:
        assert z["md5"].tolist() == [resources[0][1], resources[1][1]]

    # Reused: the IDX files are not parsed again while their MD5s match.
    def no_parse(*args, **kwargs):
        raise AssertionError("parsed despite a valid cache")

    with monkeypatch.context() as m:
        m.setattr(idx, "read_idx", no_parse)
        again = load_dataset(name, tmp_path, "train")
    assert np.array_equal(again.images, first.images) and np.array_equal(again.labels, first.labels)

    # Rebuilt: a new source file (with its new MD5 accepted) invalidates the cache.
    new_images = 255 - data["train"][0]
    new_md5 = idx_writer(folder / "train-images-idx3-ubyte.gz", new_images)
    monkeypatch.setattr(module, "RESOURCES", ((resources[0][0], new_md5),) + resources[1:])
    rebuilt = load_dataset(name, tmp_path, "train")
    assert np.array_equal(rebuilt.images[:, 0], new_images)
    with np.load(cache) as z:
        assert z["md5"][0] == new_md5 and np.array_equal(z["images"][:, 0], new_images)


def test_unreadable_cache_is_rebuilt(fake, tmp_path):
    name, _, folder, data, _ = fake
    (folder / "train.npz").write_bytes(b"garbage")
    loaded = load_dataset(name, tmp_path, "train")
    assert np.array_equal(loaded.images[:, 0], data["train"][0])
    with np.load(folder / "train.npz") as z:
        assert np.array_equal(z["labels"], data["train"][1])


def test_read_only_folder_skips_cache(fake, tmp_path):
    name, _, folder, data, _ = fake
    folder.chmod(0o555)
    try:
        loaded = load_dataset(name, tmp_path, "test")
    finally:
        folder.chmod(0o755)
    assert np.array_equal(loaded.labels, data["test"][1])
    assert not (folder / "test.npz").exists() and list(folder.glob("*.tmp")) == []


def test_missing_shared_data_skips_with_a_reason_or_fails_when_required(tmp_path, monkeypatch):
    missing = tmp_path / "nothing" / "mnist"
    monkeypatch.delenv("BENCH_REQUIRE_DATA", raising=False)
    with pytest.raises(pytest.skip.Exception, match="real mnist files not found at .*nothing"):
        require_shared(missing, "real mnist files")
    monkeypatch.setenv("BENCH_REQUIRE_DATA", "1")
    with pytest.raises(pytest.fail.Exception, match="BENCH_REQUIRE_DATA is set: put the shared data folder"):
        require_shared(missing, "real mnist files")
    assert require_shared(tmp_path, "a folder") == tmp_path


def test_ci_stops_at_once_naming_the_missing_shared_data(tmp_path):
    ci = Path(__file__).resolve().parents[1] / ".ci" / "run"
    (tmp_path / "repo" / ".ci").mkdir(parents=True)  # a checkout with no ../shared beside it
    (tmp_path / "repo" / ".ci" / "run").write_text(ci.read_text())
    run = subprocess.run(["bash", str(tmp_path / "repo" / ".ci" / "run")], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 1
    assert "Error: ../shared/data not found beside the checkout" in run.stderr and str(tmp_path) in run.stderr
