"""Dataset faults: each entry of ``FAULTS`` damages a copy of real data in one way and asserts the outcome.

Faults: a corrupt source file (garbled bytes in a gzip IDX file, a pickled batch, a zip or tar.gz archive, a
PNG; a garbled .npz cache), a truncated one (cut in half), one with the wrong checksum (a valid file with
other content: another dataset's file, one modified byte), a cache built from a different source (another
dataset's or folder's cache put in place, sources swapped under a cache, an image replaced by one of the same
size and time), an empty data folder, and a non-image file among the images (GTSRB, ``folder:PATH``).

Outcome: a damaged or missing source stops the load with ONE line (a ``BenchError``) that names the file
and the fix; a damaged or foreign cache is rebuilt from the checked sources, never used stale; a stray file
that is not part of the data (a README.txt; in a GTSRB archive also any file no CSV names) is ignored. The
``cli`` faults run the installed ``bench run`` and also check that exit code 2 prints exactly one ``Error:``
line, no traceback, and leaves an existing results store byte-for-byte unchanged; the ``load`` faults call
``load_dataset`` in-process (a CLI call costs seconds of imports), with the expected MD5s replaced where the
file must pass the checksum to reach the format check. Real data comes from ``SHARED_DATA`` (copied, never
modified); a fault whose data is absent is skipped with the reason. Nothing is downloaded.
"""

from __future__ import annotations

import gzip
import hashlib
import inspect
import io
import os
import pickle
import shutil
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from helpers import SHARED_DATA, require_shared, run_bench

from bench.datasets import cifar10, fashion_mnist, folder, gtsrb, idx, load_dataset, mnist
from bench.datasets.base import ImageSet
from bench.errors import BenchError

MNIST = SHARED_DATA / "mnist"
FASHION = SHARED_DATA / "fashion-mnist"
CIFAR_NPZ = SHARED_DATA / "cifar10" / "cifar10_train_first4000.npz"
GTSRB_NPZ = SHARED_DATA / "gtsrb" / "gtsrb32_classes_00_01.npz"
TRAIN_IMAGES, TRAIN_LABELS = idx.split_files("train")
TEST_IMAGES, TEST_LABELS = idx.split_files("test")
DOWNLOAD_FIX = "delete it and rerun with --download"
CANONICAL_FIX = "replace it with the canonical file"
IMAGE_FIX = "replace it with a valid image or delete it"
RUN = ("--methods", "imbalanced", "--ratios", "0.1", "--seeds", "1", "--epochs", "1", "--quiet")


# --- the faults -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Error:
    """The load must fail with one line naming ``file`` (a file name or path), saying ``says`` and ``fix``."""

    dataset: str
    data_dir: Path | None
    file: str
    says: str
    fix: str
    splits: tuple[str, ...] = ("train", "test")  # what a load_fault loads, in order (a run loads both)


@dataclass(frozen=True)
class Rebuilt:
    """The load must succeed with exactly ``train`` (and ``test``) and leave a valid cache ``cache``."""

    dataset: str
    data_dir: Path | None
    train: ImageSet
    test: ImageSet | None = None
    cache: Path | None = None
    args: tuple = ()  # extra `bench run` arguments, for a cli fault


@dataclass(frozen=True)
class Fault:
    id: str
    kind: str  # one of KINDS
    dataset: str  # mnist, fashion-mnist, cifar10, gtsrb, folder
    via: str  # "cli": through `bench run`; "load": load_dataset in-process
    make: Callable = field(repr=False)  # (tmp_path, monkeypatch) -> Error | Rebuilt

    def __str__(self):
        return self.id


KINDS = ("corrupt", "truncated", "checksum", "cache", "empty", "non-image")
FAULTS: list[Fault] = []


def fault(kind: str, dataset: str, via: str = "load"):
    assert kind in KINDS

    def register(make):
        FAULTS.append(Fault(make.__name__.removeprefix("make_").replace("_", "-"), kind, dataset, via, make))
        return make

    return register


# --- real data, copied ------------------------------------------------------------------------------------


def need(path: Path) -> Path:
    """``path`` under ../shared/data, or skip (fail under BENCH_REQUIRE_DATA, as CI runs): helpers.require_shared."""
    return require_shared(path, f"real data {path.name} (see its SOURCES.md)")


ALL_IDX = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


def copy_idx(source: Path, target: Path, files=ALL_IDX) -> Path:
    """The canonical IDX files of ``source`` (skip when absent) copied into ``target`` (writable copies)."""
    target.mkdir(parents=True, exist_ok=True)
    for file in files:
        shutil.copyfile(need(source / file), target / file)
    return target


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def accept(monkeypatch, module, folder: Path, *files: str) -> None:
    """Take the MD5s of ``files`` as they now are as the expected ones: the format check must catch them."""
    new = {file: md5(folder / file) for file in files}
    monkeypatch.setattr(module, "RESOURCES", tuple((f, new.get(f, m)) for f, m in module.RESOURCES))


def garble(path: Path, at: float = 0.5, n: int = 64) -> None:
    """Invert ``n`` bytes from the fraction ``at`` of the file on."""
    data = bytearray(path.read_bytes())
    start = int(len(data) * at)
    data[start:start + n] = bytes(b ^ 0xFF for b in data[start:start + n])
    path.write_bytes(bytes(data))


def cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def idx_set(source: Path, split: str, class_names) -> ImageSet:
    """A split decoded straight from the canonical files, bypassing any cache: the reference."""
    images_file, labels_file = idx.split_files(split)
    images = idx.read_idx(need(source / images_file), 3)
    labels = idx.read_idx(need(source / labels_file), 1)
    return ImageSet(images[:, None], labels.astype(np.int64), class_names)


@pytest.fixture(scope="module")
def mnist_train():
    return idx_set(MNIST, "train", mnist.CLASS_NAMES)


# CIFAR-10: the official pickled batches written from the real subset, and their tar.gz.
CIFAR_SLICES = {
    "data_batch_1": slice(0, 300), "data_batch_2": slice(300, 320), "data_batch_3": slice(320, 340),
    "data_batch_4": slice(340, 360), "data_batch_5": slice(360, 380), "test_batch": slice(3000, 3050),
}


def cifar_batch(images: np.ndarray, labels: np.ndarray, name: str) -> bytes:
    """One batch as the official files hold it: a protocol-2 pickle of a dict with bytes keys."""
    return pickle.dumps({b"batch_label": name.encode(), b"labels": [int(v) for v in labels],
                         b"data": images.reshape(len(images), -1), b"filenames": [b"x.png"] * len(images)},
                        protocol=2)


@pytest.fixture(scope="module")
def cifar_source(tmp_path_factory):
    """(folder with cifar-10-batches-py/ and cifar-10-python.tar.gz, {file: MD5}, the subset's images,
    its labels)."""
    with np.load(need(CIFAR_NPZ)) as z:
        images, labels = z["images"].transpose(0, 3, 1, 2).copy(), z["labels"].astype(np.int64)
    root = tmp_path_factory.mktemp("cifar-source")
    batches = root / cifar10.BATCH_FOLDER
    batches.mkdir()
    for file, part in CIFAR_SLICES.items():
        (batches / file).write_bytes(cifar_batch(images[part], labels[part], file))
    meta = {b"label_names": [n.encode() for n in cifar10.CLASS_NAMES], b"num_cases_per_batch": 10000}
    (batches / cifar10.META_FILE).write_bytes(pickle.dumps(meta, protocol=2))
    with tarfile.open(root / cifar10.ARCHIVE[0], "w:gz") as tar:
        tar.add(batches, arcname=cifar10.BATCH_FOLDER)
    md5s = {f.name: md5(f) for f in [*batches.iterdir(), root / cifar10.ARCHIVE[0]]}
    return root, md5s, images, labels


def cifar_folder(cifar_source, tmp_path: Path, monkeypatch, archive_only: bool = False) -> Path:
    """A copy of the written CIFAR-10 files in ``tmp_path/cifar10``, their MD5s taken as the official ones."""
    root, md5s, _, _ = cifar_source
    target = tmp_path / "cifar10"
    if archive_only:
        target.mkdir()
        shutil.copyfile(root / cifar10.ARCHIVE[0], target / cifar10.ARCHIVE[0])
    else:
        shutil.copytree(root / cifar10.BATCH_FOLDER, target / cifar10.BATCH_FOLDER)
    monkeypatch.setattr(cifar10, "RESOURCES", tuple((f, md5s[f]) for f, _ in cifar10.RESOURCES))
    monkeypatch.setattr(cifar10, "ARCHIVE", (cifar10.ARCHIVE[0], md5s[cifar10.ARCHIVE[0]]))
    monkeypatch.setattr(cifar10, "MIRRORS", ("http://127.0.0.1:9/never/",))
    return target


def cifar_train(cifar_source) -> ImageSet:
    _, _, images, labels = cifar_source
    parts = [CIFAR_SLICES[f"data_batch_{i}"] for i in range(1, 6)]
    return ImageSet(np.concatenate([images[p] for p in parts]), np.concatenate([labels[p] for p in parts]),
                    cifar10.CLASS_NAMES)


# GTSRB: the three official archives written from the real subset (32x32 PPMs, the whole image as ROI).
def ppm(image: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PPM")
    return out.getvalue()


def gtsrb_members(data: dict, train_index: np.ndarray, test_index: np.ndarray) -> dict[str, dict[str, bytes]]:
    header = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"
    members = {gtsrb.TRAIN_ARCHIVE: {"GTSRB/Readme-Images.txt": b"GTSRB images\n"}, gtsrb.TEST_ARCHIVE: {},
               gtsrb.GT_ARCHIVE: {}}
    rows: dict[int, list[str]] = {}
    for i in train_index:
        class_id, file = int(data["y_train"][i]), str(data["train_filenames"][i]).split("/")[1]
        members[gtsrb.TRAIN_ARCHIVE][f"{gtsrb.TRAIN_DIR}{class_id:05d}/{file}"] = ppm(data["x_train"][i])
        rows.setdefault(class_id, []).append(f"{file};32;32;0;0;31;31;{class_id}")
    for class_id, lines in rows.items():
        csv = "\r\n".join([header, *lines, ""]).encode()
        members[gtsrb.TRAIN_ARCHIVE][f"{gtsrb.TRAIN_DIR}{class_id:05d}/GT-{class_id:05d}.csv"] = csv
    lines = []
    for i in test_index:
        file = str(data["test_filenames"][i])
        members[gtsrb.TEST_ARCHIVE][gtsrb.TEST_DIR + file] = ppm(data["x_test"][i])
        lines.append(f"{file};32;32;0;0;31;31;{int(data['y_test'][i])}")
    members[gtsrb.GT_ARCHIVE][gtsrb.TEST_GT_CSV] = "\r\n".join([header, *lines, ""]).encode()
    return members


def write_zip(path: Path, members: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            zf.writestr(name, content)


@pytest.fixture(scope="module")
def gtsrb_source():
    """(the subset's arrays, two disjoint selections {"a", "b"} of (train index, test index)): 30 train
    images per class and 20 test images each."""
    with np.load(need(GTSRB_NPZ)) as z:
        data = {k: z[k] for k in z.files}
    per_class = [np.flatnonzero(data["y_train"] == c) for c in (0, 1)]
    picks = {}
    for name, start in (("a", 0), ("b", 30)):
        train = np.concatenate([rows[start:start + 30] for rows in per_class])
        picks[name] = train, np.arange(len(data["y_test"]))[start // 30 * 20:start // 30 * 20 + 20]
    return data, picks


def gtsrb_folder(gtsrb_source, target: Path, monkeypatch, pick: str = "a", edit=None
                 ) -> tuple[Path, ImageSet]:
    """The three archives of selection ``pick`` in ``target`` (``edit(members)`` first), their MD5s taken
    as the official ones; returns (folder, the expected train set)."""
    data, picks = gtsrb_source
    train_index, test_index = picks[pick]
    members = gtsrb_members(data, train_index, test_index)
    if edit:
        edit(members)
    for file, content in members.items():
        write_zip(target / file, content)
    monkeypatch.setattr(gtsrb, "RESOURCES", tuple((f, md5(target / f)) for f, _ in gtsrb.RESOURCES))
    monkeypatch.setattr(gtsrb, "MIRRORS", ("http://127.0.0.1:9/never/",))
    order = np.argsort(data["y_train"][train_index], kind="stable")  # class by class, CSV order within
    chosen = train_index[order]
    expected = ImageSet(np.ascontiguousarray(data["x_train"][chosen].transpose(0, 3, 1, 2)),
                        data["y_train"][chosen].astype(np.int64), gtsrb.CLASS_NAMES)
    return target, expected


# folder:PATH: real digits (scikit-learn's bundled 8x8 scans) as binary PGM files, two classes.
def digit_images(n: int = 16) -> dict[str, list[np.ndarray]]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    grey = (digits.images * (255 / 16)).round().astype(np.uint8)
    return {name: list(grey[digits.target == d][:n]) for name, d in (("one", 1), ("zero", 0))}


def pgm(image: np.ndarray) -> bytes:
    """A binary PGM (P5): the same byte size for every image of one shape."""
    return b"P5\n%d %d\n255\n" % (image.shape[1], image.shape[0]) + image.tobytes()


def image_folder(root: Path, classes: dict[str, list[np.ndarray]] | None = None) -> Path:
    for name, images in (classes or digit_images()).items():
        (root / name).mkdir(parents=True)
        for i, image in enumerate(images):
            (root / name / f"{i:05d}.pgm").write_bytes(pgm(image))
    return root


def load_both(dataset: str, data_dir) -> tuple[ImageSet, ImageSet]:
    return load_dataset(dataset, data_dir, "train"), load_dataset(dataset, data_dir, "test")


# --- corrupt ------------------------------------------------------------------------------------------


@fault("corrupt", "mnist", via="cli")
def make_mnist_garbled_gzip(tmp_path, monkeypatch):
    folder = copy_idx(MNIST, tmp_path / "data" / "mnist")
    garble(folder / TEST_LABELS)
    return Error("mnist", tmp_path / "data", str(folder / TEST_LABELS), "is corrupt (MD5", DOWNLOAD_FIX)


@fault("corrupt", "mnist")
def make_mnist_garbled_gzip_that_passes_the_md5(tmp_path, monkeypatch):
    folder = copy_idx(MNIST, tmp_path / "mnist", (TRAIN_IMAGES, TRAIN_LABELS))
    garble(folder / TRAIN_IMAGES, at=0.3)
    accept(monkeypatch, mnist, folder, TRAIN_IMAGES)
    return Error("mnist", tmp_path, str(folder / TRAIN_IMAGES), "is not a valid IDX file (unreadable gzip",
                 DOWNLOAD_FIX)


@fault("corrupt", "cifar10")
def make_cifar10_garbled_batch(tmp_path, monkeypatch, cifar_source):
    folder = cifar_folder(cifar_source, tmp_path, monkeypatch)
    batch = folder / cifar10.BATCH_FOLDER / "data_batch_3"
    garble(batch, at=0.0, n=48)  # the pickle's opcodes, not only pixels
    accept(monkeypatch, cifar10, folder / cifar10.BATCH_FOLDER, "data_batch_3")
    return Error("cifar10", tmp_path, str(batch), "is not a valid CIFAR-10 batch file", "delete it")


@fault("corrupt", "cifar10")
def make_cifar10_garbled_archive(tmp_path, monkeypatch, cifar_source):
    folder = cifar_folder(cifar_source, tmp_path, monkeypatch, archive_only=True)
    archive = folder / cifar10.ARCHIVE[0]
    garble(archive, at=0.4, n=256)
    monkeypatch.setattr(cifar10, "ARCHIVE", (archive.name, md5(archive)))
    return Error("cifar10", tmp_path, str(archive), "is not a readable tar.gz archive", DOWNLOAD_FIX)


@fault("corrupt", "gtsrb")
def make_gtsrb_garbled_zip(tmp_path, monkeypatch, gtsrb_source):
    folder, _ = gtsrb_folder(gtsrb_source, tmp_path / "gtsrb", monkeypatch)
    garble(folder / gtsrb.TRAIN_ARCHIVE, at=0.5, n=32)  # inside a member's compressed data
    accept(monkeypatch, gtsrb, folder, gtsrb.TRAIN_ARCHIVE)
    return Error("gtsrb", tmp_path, str(folder / gtsrb.TRAIN_ARCHIVE), "is not a valid GTSRB archive",
                 DOWNLOAD_FIX)


@fault("corrupt", "mnist")
def make_mnist_garbled_cache(tmp_path, monkeypatch, mnist_train):
    folder = copy_idx(MNIST, tmp_path / "mnist", (TRAIN_IMAGES, TRAIN_LABELS))
    load_dataset("mnist", tmp_path, "train")  # writes train.npz
    garble(folder / "train.npz", at=0.5, n=16)  # inside the stored images: the zip CRC no longer matches
    return Rebuilt("mnist", tmp_path, mnist_train, cache=folder / "train.npz")


@fault("corrupt", "folder")
def make_folder_garbled_image(tmp_path, monkeypatch):
    from PIL import Image

    root = image_folder(tmp_path / "images")
    bad = root / "zero" / "00003.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(bad)
    garble(bad, at=0.5, n=16)  # inside the compressed pixels
    return Error(f"folder:{root}", None, str(bad), "cannot read image", IMAGE_FIX)


# --- truncated ----------------------------------------------------------------------------------------


@fault("truncated", "fashion-mnist", via="cli")
def make_fashion_mnist_truncated_gzip(tmp_path, monkeypatch):
    folder = copy_idx(FASHION, tmp_path / "data" / "fashion-mnist")
    cut_in_half(folder / TRAIN_IMAGES)
    return Error("fashion-mnist", tmp_path / "data", str(folder / TRAIN_IMAGES), "is corrupt (MD5",
                 DOWNLOAD_FIX)


@fault("truncated", "fashion-mnist")
def make_fashion_mnist_truncated_gzip_that_passes_the_md5(tmp_path, monkeypatch):
    folder = copy_idx(FASHION, tmp_path / "fashion-mnist", (TRAIN_IMAGES, TRAIN_LABELS))
    cut_in_half(folder / TRAIN_IMAGES)
    accept(monkeypatch, fashion_mnist, folder, TRAIN_IMAGES)
    return Error("fashion-mnist", tmp_path, str(folder / TRAIN_IMAGES), "is not a valid IDX file",
                 DOWNLOAD_FIX)


@fault("truncated", "cifar10", via="cli")
def make_cifar10_truncated_archive(tmp_path, monkeypatch, cifar_source):
    root, _, _, _ = cifar_source
    folder = tmp_path / "data" / "cifar10"
    folder.mkdir(parents=True)
    archive = folder / cifar10.ARCHIVE[0]
    shutil.copyfile(root / cifar10.ARCHIVE[0], archive)
    cut_in_half(archive)
    return Error("cifar10", tmp_path / "data", str(archive), "is corrupt (MD5", DOWNLOAD_FIX)


@fault("truncated", "cifar10")
def make_cifar10_truncated_archive_that_passes_the_md5(tmp_path, monkeypatch, cifar_source):
    folder = cifar_folder(cifar_source, tmp_path, monkeypatch, archive_only=True)
    archive = folder / cifar10.ARCHIVE[0]
    cut_in_half(archive)
    monkeypatch.setattr(cifar10, "ARCHIVE", (archive.name, md5(archive)))
    return Error("cifar10", tmp_path, str(archive), "is not a readable tar.gz archive", DOWNLOAD_FIX)


@fault("truncated", "cifar10")
def make_cifar10_truncated_batch(tmp_path, monkeypatch, cifar_source):
    folder = cifar_folder(cifar_source, tmp_path, monkeypatch)
    batch = folder / cifar10.BATCH_FOLDER / "test_batch"
    cut_in_half(batch)
    accept(monkeypatch, cifar10, folder / cifar10.BATCH_FOLDER, "test_batch")
    return Error("cifar10", tmp_path, str(batch), "is not a valid CIFAR-10 batch file", "delete it")


@fault("truncated", "gtsrb")
def make_gtsrb_truncated_zip(tmp_path, monkeypatch, gtsrb_source):
    folder, _ = gtsrb_folder(gtsrb_source, tmp_path / "gtsrb", monkeypatch)
    cut_in_half(folder / gtsrb.TEST_ARCHIVE)
    accept(monkeypatch, gtsrb, folder, gtsrb.TEST_ARCHIVE)
    return Error("gtsrb", tmp_path, str(folder / gtsrb.TEST_ARCHIVE), "unreadable zip", DOWNLOAD_FIX)


@fault("truncated", "mnist")
def make_mnist_truncated_cache(tmp_path, monkeypatch, mnist_train):
    folder = copy_idx(MNIST, tmp_path / "mnist", (TRAIN_IMAGES, TRAIN_LABELS))
    load_dataset("mnist", tmp_path, "train")
    cut_in_half(folder / "train.npz")
    return Rebuilt("mnist", tmp_path, mnist_train, cache=folder / "train.npz")


@fault("truncated", "folder")
def make_folder_truncated_image(tmp_path, monkeypatch):
    root = image_folder(tmp_path / "images")
    bad = root / "one" / "00007.pgm"
    cut_in_half(bad)
    return Error(f"folder:{root}", None, str(bad), "cannot read image", IMAGE_FIX)


# --- wrong checksum: valid format, other content ------------------------------------------------------


@fault("checksum", "mnist", via="cli")
def make_mnist_holds_a_fashion_mnist_file(tmp_path, monkeypatch):
    folder = copy_idx(MNIST, tmp_path / "data" / "mnist")
    shutil.copyfile(need(FASHION / TEST_IMAGES), folder / TEST_IMAGES)  # same IDX shape, other images
    return Error("mnist", tmp_path / "data", str(folder / TEST_IMAGES), "is corrupt (MD5", DOWNLOAD_FIX)


@fault("checksum", "fashion-mnist")
def make_fashion_mnist_holds_an_mnist_file(tmp_path, monkeypatch):
    folder = copy_idx(FASHION, tmp_path / "fashion-mnist", (TEST_IMAGES, TEST_LABELS))
    shutil.copyfile(need(MNIST / TEST_LABELS), folder / TEST_LABELS)
    return Error("fashion-mnist", tmp_path, str(folder / TEST_LABELS), "is corrupt (MD5", DOWNLOAD_FIX,
                 splits=("test",))


@fault("checksum", "mnist")
def make_mnist_one_label_changed(tmp_path, monkeypatch):
    folder = copy_idx(MNIST, tmp_path / "mnist", (TEST_IMAGES, TEST_LABELS))
    raw = bytearray(gzip.decompress((folder / TEST_LABELS).read_bytes()))
    raw[8 + 100] = (raw[8 + 100] + 1) % 10  # still a valid label
    (folder / TEST_LABELS).write_bytes(gzip.compress(bytes(raw), mtime=0))
    return Error("mnist", tmp_path, str(folder / TEST_LABELS), "is corrupt (MD5", DOWNLOAD_FIX,
                 splits=("test",))


@fault("checksum", "cifar10")
def make_cifar10_batch_with_other_images(tmp_path, monkeypatch, cifar_source):
    folder = cifar_folder(cifar_source, tmp_path, monkeypatch)
    _, _, images, labels = cifar_source
    batch = folder / cifar10.BATCH_FOLDER / "data_batch_2"
    batch.write_bytes(cifar_batch(images[1000:1020], labels[1000:1020], "data_batch_2"))  # valid, not it
    return Error("cifar10", tmp_path, str(batch), "is corrupt (MD5", "delete it")


@fault("checksum", "gtsrb")
def make_gtsrb_archive_of_other_images(tmp_path, monkeypatch, gtsrb_source):
    folder, _ = gtsrb_folder(gtsrb_source, tmp_path / "gtsrb", monkeypatch)
    expected = gtsrb.RESOURCES
    gtsrb_folder(gtsrb_source, tmp_path / "gtsrb", monkeypatch, pick="b")  # valid archives, other images
    monkeypatch.setattr(gtsrb, "RESOURCES", expected)
    return Error("gtsrb", tmp_path, str(folder / gtsrb.TRAIN_ARCHIVE), "is corrupt (MD5", DOWNLOAD_FIX)


# --- a cache built from a different source -------------------------------------------------------------


@fault("cache", "mnist", via="cli")
def make_mnist_foreign_and_truncated_caches(tmp_path, monkeypatch, mnist_train):
    folder = copy_idx(MNIST, tmp_path / "data" / "mnist")
    mnist_test = idx_set(MNIST, "test", mnist.CLASS_NAMES)
    # Another dataset's cache at this cache's name, and this one's test cache cut in half.
    np.savez(folder / "train.npz", version=1, md5=np.array(["0" * 32, "1" * 32]),
             images=mnist_train.images[:5], labels=mnist_train.labels[:5])
    load_dataset("mnist", tmp_path / "data", "test")
    cut_in_half(folder / "test.npz")
    return Rebuilt("mnist", tmp_path / "data", mnist_train, mnist_test, cache=folder / "test.npz",
                   args=("--pairs", "3:5"))  # one cell: the run must train on the rebuilt data


@fault("cache", "mnist")
def make_mnist_holds_the_fashion_mnist_cache(tmp_path, monkeypatch, mnist_train):
    fashion = copy_idx(FASHION, tmp_path / "fashion-mnist", (TRAIN_IMAGES, TRAIN_LABELS))
    folder = copy_idx(MNIST, tmp_path / "mnist", (TRAIN_IMAGES, TRAIN_LABELS))
    load_dataset("fashion-mnist", tmp_path, "train")
    shutil.copyfile(fashion / "train.npz", folder / "train.npz")
    return Rebuilt("mnist", tmp_path, mnist_train, cache=folder / "train.npz")


@fault("cache", "mnist")
def make_mnist_sources_swapped_under_the_cache(tmp_path, monkeypatch):
    folder = copy_idx(MNIST, tmp_path / "mnist", (TRAIN_IMAGES, TRAIN_LABELS))
    load_dataset("mnist", tmp_path, "train")  # a cache of MNIST
    copy_idx(FASHION, folder, (TRAIN_IMAGES, TRAIN_LABELS))  # new sources under the same names ...
    accept(monkeypatch, mnist, folder, TRAIN_IMAGES, TRAIN_LABELS)  # ... that pass the checksum
    fashion = idx_set(FASHION, "train", mnist.CLASS_NAMES)
    return Rebuilt("mnist", tmp_path, fashion, cache=folder / "train.npz")


@fault("cache", "cifar10")
def make_cifar10_batch_swapped_under_the_cache(tmp_path, monkeypatch, cifar_source):
    folder = cifar_folder(cifar_source, tmp_path, monkeypatch)
    load_dataset("cifar10", tmp_path, "train")
    _, _, images, labels = cifar_source
    batch = folder / cifar10.BATCH_FOLDER / "data_batch_4"
    batch.write_bytes(cifar_batch(images[2000:2030], labels[2000:2030], "data_batch_4"))
    accept(monkeypatch, cifar10, folder / cifar10.BATCH_FOLDER, "data_batch_4")
    old = cifar_train(cifar_source)
    n = [len(range(4000)[CIFAR_SLICES[f"data_batch_{i}"]]) for i in range(1, 6)]
    at = sum(n[:3])
    expected = ImageSet(np.concatenate([old.images[:at], images[2000:2030], old.images[at + n[3]:]]),
                        np.concatenate([old.labels[:at], labels[2000:2030], old.labels[at + n[3]:]]),
                        cifar10.CLASS_NAMES)
    return Rebuilt("cifar10", tmp_path, expected, cache=folder / "train.npz")


@fault("cache", "gtsrb")
def make_gtsrb_archives_swapped_under_the_cache(tmp_path, monkeypatch, gtsrb_source):
    gtsrb_folder(gtsrb_source, tmp_path / "gtsrb", monkeypatch, pick="a")
    load_dataset("gtsrb", tmp_path, "train")
    _, expected = gtsrb_folder(gtsrb_source, tmp_path / "gtsrb", monkeypatch, pick="b")
    return Rebuilt("gtsrb", tmp_path, expected, cache=tmp_path / "gtsrb" / "train_32.npz")


@fault("cache", "gtsrb")
def make_gtsrb_cache_of_another_size_renamed(tmp_path, monkeypatch, gtsrb_source):
    from bench.datasets.base import LoadOptions

    folder, expected = gtsrb_folder(gtsrb_source, tmp_path / "gtsrb", monkeypatch)
    load_dataset("gtsrb", tmp_path, "train", options=LoadOptions(image_size=16))
    os.replace(folder / "train_16.npz", folder / "train_32.npz")
    return Rebuilt("gtsrb", tmp_path, expected, cache=folder / "train_32.npz")


def folder_set(classes: dict[str, list[np.ndarray]], split: str) -> ImageSet:
    """What folder:PATH must give for ``classes`` (grey, 8x8, no resize), through the module's own split."""
    names = tuple(sorted(classes))
    files = {name: [Path(name) / f"{i:05d}.pgm" for i in range(len(classes[name]))] for name in names}
    items = folder._stratified_split(Path("."), files)[split]
    images = np.stack([classes[f.parent.name][int(f.stem)][None] for f, _ in items])
    return ImageSet(images, np.array([label for _, label in items], np.int64), names)


@fault("cache", "folder")
def make_folder_holds_another_folders_cache(tmp_path, monkeypatch):
    digits = digit_images()
    other = image_folder(tmp_path / "other", {name: images[::-1] for name, images in digits.items()})
    root = image_folder(tmp_path / "images", digits)
    load_dataset(f"folder:{other}", None, "train")
    shutil.copytree(other / folder.CACHE_DIR, root / folder.CACHE_DIR)
    return Rebuilt(f"folder:{root}", None, folder_set(digits, "train"), folder_set(digits, "test"),
                   cache=root / folder.CACHE_DIR / "train-8.npz")


@fault("cache", "folder")
def make_folder_image_replaced_keeping_size_and_time(tmp_path, monkeypatch):
    # cp -p, rsync -t or tar x: another image of the same byte size and modification time in its place.
    digits = digit_images()
    root = image_folder(tmp_path / "images", digits)
    load_both(f"folder:{root}", None)
    target = root / "zero" / "00002.pgm"
    stat = target.stat()
    digits["zero"][2] = 255 - digits["zero"][2]
    target.write_bytes(pgm(digits["zero"][2]))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert target.stat().st_size == stat.st_size
    return Rebuilt(f"folder:{root}", None, folder_set(digits, "train"), folder_set(digits, "test"),
                   cache=root / folder.CACHE_DIR / "train-8.npz")


# --- an empty data folder -------------------------------------------------------------------------------


@fault("empty", "gtsrb", via="cli")
def make_gtsrb_empty_folder(tmp_path, monkeypatch):
    (tmp_path / "data" / "gtsrb").mkdir(parents=True)
    return Error("gtsrb", tmp_path / "data", gtsrb.TRAIN_ARCHIVE, "missing file", "rerun with --download")


@fault("empty", "mnist")
def make_mnist_empty_folder(tmp_path, monkeypatch):
    (tmp_path / "mnist").mkdir()
    return Error("mnist", tmp_path, TRAIN_IMAGES, "missing file", "rerun with --download")


@fault("empty", "fashion-mnist")
def make_fashion_mnist_empty_folder(tmp_path, monkeypatch):
    (tmp_path / "fashion-mnist").mkdir()
    return Error("fashion-mnist", tmp_path, TRAIN_IMAGES, "missing file", "rerun with --download")


@fault("empty", "cifar10")
def make_cifar10_empty_folder(tmp_path, monkeypatch):
    (tmp_path / "cifar10").mkdir()
    return Error("cifar10", tmp_path, cifar10.ARCHIVE[0], "missing cifar-10-batches-py/data_batch_1",
                 "rerun with --download")


@fault("empty", "folder")
def make_folder_empty(tmp_path, monkeypatch):
    (tmp_path / "images").mkdir()
    return Error(f"folder:{tmp_path / 'images'}", None, str(tmp_path / "images"), "no class folders",
                 "put the images in")


# --- a non-image file among the images -------------------------------------------------------------------


@fault("non-image", "gtsrb")
def make_gtsrb_text_file_as_a_training_ppm(tmp_path, monkeypatch, gtsrb_source):
    def edit(members):
        name = next(m for m in members[gtsrb.TRAIN_ARCHIVE] if m.startswith(f"{gtsrb.TRAIN_DIR}00001/")
                    and m.endswith(".ppm"))
        members[gtsrb.TRAIN_ARCHIVE][name] = b"Speed limit 30, photographed on a sunny day\n"
        edit.name = name

    gtsrb_folder(gtsrb_source, tmp_path / "gtsrb", monkeypatch, edit=edit)
    return Error("gtsrb", tmp_path, edit.name, "is not a readable image: expected a PPM", DOWNLOAD_FIX)


@fault("non-image", "gtsrb")
def make_gtsrb_text_file_as_a_test_ppm(tmp_path, monkeypatch, gtsrb_source):
    def edit(members):
        name = sorted(m for m in members[gtsrb.TEST_ARCHIVE] if m.endswith(".ppm"))[5]
        members[gtsrb.TEST_ARCHIVE][name] = b""
        edit.name = name

    gtsrb_folder(gtsrb_source, tmp_path / "gtsrb", monkeypatch, edit=edit)
    return Error("gtsrb", tmp_path, edit.name, "is not a readable image", DOWNLOAD_FIX)


@fault("non-image", "gtsrb")
def make_gtsrb_stray_readme_among_the_images(tmp_path, monkeypatch, gtsrb_source):
    def edit(members):  # a file that no CSV names: not part of the data
        members[gtsrb.TRAIN_ARCHIVE][f"{gtsrb.TRAIN_DIR}00000/README.txt"] = b"class 0: speed limit 20\n"
        members[gtsrb.TRAIN_ARCHIVE][f"{gtsrb.TRAIN_DIR}00001/notes.ppm"] = b"not listed in GT-00001.csv\n"

    _, expected = gtsrb_folder(gtsrb_source, tmp_path / "gtsrb", monkeypatch, edit=edit)
    return Rebuilt("gtsrb", tmp_path, expected, cache=tmp_path / "gtsrb" / "train_32.npz")


@fault("non-image", "folder", via="cli")
def make_folder_text_file_named_ppm(tmp_path, monkeypatch):
    root = image_folder(tmp_path / "images")
    bad = root / "one" / "00001.ppm"
    bad.write_text("1 1 1\n")
    return Error(f"folder:{root}", None, str(bad), "expected PPM image data, found a 6-byte file", IMAGE_FIX)


@fault("non-image", "folder")
def make_folder_text_file_named_png(tmp_path, monkeypatch):
    root = image_folder(tmp_path / "images")
    bad = root / "one" / "0.png"  # sorts first: the image the default size is read from
    bad.write_text("see README\n")
    return Error(f"folder:{root}", None, str(bad), "expected PNG image data", IMAGE_FIX)


@fault("non-image", "folder")
def make_folder_stray_readme(tmp_path, monkeypatch):
    digits = digit_images()
    root = image_folder(tmp_path / "images", digits)
    (root / "README.txt").write_text("handwritten digits\n")
    (root / "zero" / "README.txt").write_text("class zero\n")
    (root / "one" / "notes").write_bytes(b"\x00\x01")
    return Rebuilt(f"folder:{root}", None, folder_set(digits, "train"), folder_set(digits, "test"),
                   cache=root / folder.CACHE_DIR / "train-8.npz")


LOAD_FAULTS = [f for f in FAULTS if f.via == "load"]
CLI_FAULTS = [f for f in FAULTS if f.via == "cli"]


# --- the checks -------------------------------------------------------------------------------------------


def inject(f: Fault, request, tmp_path, monkeypatch):
    """Run the fault's setup with the module fixtures it names among its parameters."""
    names = list(inspect.signature(f.make).parameters)[2:]
    return f.make(tmp_path, monkeypatch, *(request.getfixturevalue(name) for name in names))


def assert_names_file_and_fix(message: str, expected: Error) -> None:
    assert "\n" not in message and "Traceback" not in message, message
    assert expected.file in message, f"the message does not name {expected.file}: {message}"
    assert expected.says in message, message
    assert expected.fix in message, f"the message names no fix ({expected.fix!r}): {message}"


def assert_same(got: ImageSet, expected: ImageSet) -> None:
    assert got.images.shape == expected.images.shape and got.class_names == expected.class_names
    assert np.array_equal(got.images, expected.images) and np.array_equal(got.labels, expected.labels)


def assert_rebuilt(expected: Rebuilt) -> None:
    """The load gives the new source's data, and so does the cache it leaves (read by a second load)."""
    for _ in range(2):  # the second load reads the rewritten cache
        assert_same(load_dataset(expected.dataset, expected.data_dir, "train"), expected.train)
        if expected.test is not None:
            assert_same(load_dataset(expected.dataset, expected.data_dir, "test"), expected.test)
    if expected.cache is not None:  # a complete cache of the new data in place of the bad one
        split = expected.test if expected.cache.name.startswith("test") else expected.train
        with np.load(expected.cache, allow_pickle=False) as z:
            assert np.array_equal(z["images"], split.images) and np.array_equal(z["labels"], split.labels)


@pytest.mark.parametrize("f", LOAD_FAULTS, ids=str)
def test_load_fault(f, request, tmp_path, monkeypatch, tally):
    expected = inject(f, request, tmp_path, monkeypatch)
    tally["faults"] += 1
    if isinstance(expected, Rebuilt):
        assert_rebuilt(expected)
    else:
        with pytest.raises(BenchError) as excinfo:
            for split in expected.splits:
                load_dataset(expected.dataset, expected.data_dir, split)
        assert_names_file_and_fix(str(excinfo.value), expected)
    tally["survived"] += 1


def store_files(results: Path) -> dict[str, str]:
    """SHA-256 of the store and its SQLite side files (not the run lock, which a run may leave)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(results.glob("bench.sqlite*"))}


@pytest.fixture(scope="module")
def results_store(tmp_path_factory):
    """A results folder with a finished quick run on the bundled digits."""
    results = tmp_path_factory.mktemp("store") / "results"
    done = run_bench("run", "--datasets", "digits", *RUN, "--results", results)
    assert done.returncode == 0, done.stderr
    assert (results / "bench.sqlite").is_file()
    return results


@pytest.mark.parametrize("f", CLI_FAULTS, ids=str)
def test_cli_fault(f, request, tmp_path, monkeypatch, results_store, tally):
    expected = inject(f, request, tmp_path, monkeypatch)
    tally["faults"] += 1
    results = tmp_path / "results"
    shutil.copytree(results_store, results)
    before = store_files(results)
    data_dir = ("--data-dir", expected.data_dir) if expected.data_dir is not None else ()
    extra = expected.args if isinstance(expected, Rebuilt) else ()
    run = run_bench("run", "--datasets", expected.dataset, *data_dir, *RUN, *extra, "--results", results)
    assert "Traceback" not in run.stderr + run.stdout, run.stderr
    if isinstance(expected, Rebuilt):
        assert run.returncode == 0 and run.stderr == "", run.stderr
        assert_rebuilt(expected)
    else:
        assert run.returncode == 2, (run.returncode, run.stderr)
        lines = run.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), run.stderr
        assert_names_file_and_fix(lines[0], expected)
        assert store_files(results) == before, "the failed run changed the results store"
    tally["survived"] += 1


def test_every_fault_kind_is_injected_for_every_dataset_it_applies_to():
    """The issue's list: each kind on the datasets named there, at least once through the CLI per kind
    that a user meets as an error."""
    covered = {(f.kind, f.dataset) for f in FAULTS}
    wanted = {
        "corrupt": {"mnist", "cifar10", "gtsrb", "folder"},
        "truncated": {"fashion-mnist", "cifar10", "gtsrb", "folder"},
        "checksum": {"mnist", "fashion-mnist", "cifar10", "gtsrb"},
        "cache": {"mnist", "cifar10", "gtsrb", "folder"},
        "empty": {"mnist", "fashion-mnist", "cifar10", "gtsrb", "folder"},
        "non-image": {"gtsrb", "folder"},
    }
    missing = [(kind, d) for kind, datasets in wanted.items() for d in datasets if (kind, d) not in covered]
    assert not missing, missing
    assert {f.kind for f in CLI_FAULTS} == set(KINDS)
    assert {"mnist", "fashion-mnist", "cifar10", "gtsrb", "folder"} <= {f.dataset for f in CLI_FAULTS}
    assert len({f.id for f in FAULTS}) == len(FAULTS)
