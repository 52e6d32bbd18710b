"""CIFAR-10 loader: the official pickled batches (extracted folder or tar.gz), real pixels where the shared
folder has them, the cache, malformed files, safe extraction, and downloads from a server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
from helpers import SHARED_DATA, require_shared, serve_files

from bench.datasets import cifar10
from bench.errors import BenchError

SHARED_NPZ = SHARED_DATA / "cifar10" / "cifar10_train_first4000.npz"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
ALL_FILES = [*TRAIN_FILES, "test_batch", "batches.meta"]


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# --- writing the official format ----------------------------------------------------------------------------


class Py2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2's cPickle wrote the official batches: every str a Python 2 string
    (SHORT_BINSTRING / BINSTRING, read back as bytes with encoding="bytes") and numpy's globals under their
    Python 2 module names (``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``)."""

    dispatch = dict(pickle._Pickler.dispatch)
    GLOBALS = {
        "_reconstruct": b"numpy.core.multiarray\n_reconstruct\n",
        "ndarray": b"numpy\nndarray\n",
        "dtype": b"numpy\ndtype\n",
    }

    def save_py2_str(self, obj):
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str

    def save_global(self, obj, name=None):
        self.write(pickle.GLOBAL + self.GLOBALS[name or obj.__name__])
        self.memoize(obj)


def py2_pickle(obj) -> bytes:
    out = io.BytesIO()
    Py2Pickler(out, protocol=2).dump(obj)
    return out.getvalue()


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_batch(path: Path, images: np.ndarray, labels, batch_label: str) -> str:
    """One batch file as the official ones: dict with data uint8 (N, 3072) = R, G, B planes of each
    (3, 32, 32) image row-major, labels a list of ints, batch_label and filenames; returns its MD5."""
    data = np.ascontiguousarray(images, np.uint8).reshape(len(images), 3072)
    batch = {
        "batch_label": batch_label,
        "labels": [int(v) for v in labels],
        "data": data,
        "filenames": [f"image_{i:05d}.png" for i in range(len(images))],
    }
    path.write_bytes(py2_pickle(batch))
    return md5(path)


def write_meta(path: Path, names=cifar10.CLASS_NAMES) -> str:
    path.write_bytes(py2_pickle({"num_cases_per_batch": 10000, "label_names": list(names), "num_vis": 3072}))
    return md5(path)


def write_batches(folder: Path, splits: dict) -> tuple[tuple[str, str], ...]:
    """``folder/cifar-10-batches-py/``: data_batch_1..5 from splits["train"] (a list of five
    (images (N, 3, 32, 32), labels)), test_batch from splits["test"] (one), batches.meta; the (file, MD5)
    table in the order of cifar10.RESOURCES."""
    batches = folder / cifar10.BATCH_FOLDER
    batches.mkdir(parents=True, exist_ok=True)
    md5s = {}
    for i, (images, labels) in enumerate(splits["train"], 1):
        md5s[f"data_batch_{i}"] = write_batch(
            batches / f"data_batch_{i}", images, labels, f"training batch {i} of 5"
        )
    md5s["test_batch"] = write_batch(batches / "test_batch", *splits["test"], "testing batch 1 of 1")
    md5s["batches.meta"] = write_meta(batches / "batches.meta")
    return tuple((file, md5s[file]) for file, _ in cifar10.RESOURCES)


def synthetic(seed: int = 0) -> dict:
    """Five train batches of 10, 10, 20, 10, 10 images and a test batch of 20 (each class in each batch)."""
    rng = np.random.default_rng(seed)

    def batch(n):
        labels = rng.permutation(np.arange(n) % 10)
        return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), labels

    return {"train": [batch(n) for n in (10, 10, 20, 10, 10)], "test": batch(20)}


def make_archive(path: Path, source: Path, members=None) -> str:
    """A tar.gz laid out as the official one: the folder ``cifar-10-batches-py/`` with the seven files and a
    readme; ``members`` (name -> bytes) replaces the files. Returns its MD5."""
    if members is None:
        members = {
            f"{cifar10.BATCH_FOLDER}/{f}": (source / cifar10.BATCH_FOLDER / f).read_bytes() for f in ALL_FILES
        }
        members[f"{cifar10.BATCH_FOLDER}/readme.html"] = b"<html>readme</html>"
    with tarfile.open(path, "w:gz") as tar:
        folder = tarfile.TarInfo(cifar10.BATCH_FOLDER)
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return md5(path)


@pytest.fixture
def cifar(tmp_path, monkeypatch):
    """Synthetic CIFAR-10 extracted in tmp_path/cifar10, its MD5s patched in: (folder, data, resources)."""
    folder = tmp_path / "cifar10"
    data = synthetic()
    resources = write_batches(folder, data)
    monkeypatch.setattr(cifar10, "RESOURCES", resources)
    monkeypatch.setattr(cifar10, "MIRRORS", ("http://127.0.0.1:9/never/",))
    return folder, data, resources


def train_arrays(data: dict) -> tuple[np.ndarray, np.ndarray]:
    return (np.concatenate([i for i, _ in data["train"]]), np.concatenate([lab for _, lab in data["train"]]))


# --- module facts -------------------------------------------------------------------------------------------


def test_module_facts():
    assert cifar10.IMAGE_SHAPE == (3, 32, 32) and len(cifar10.CLASS_NAMES) == 10
    names = cifar10.CLASS_NAMES
    assert [(names[a], names[b]) for a, b in cifar10.DEFAULT_PAIRS] == [
        ("cat", "dog"),
        ("automobile", "truck"),
        ("deer", "horse"),
    ]
    # The download URL is mirror + archive name: the official one.
    assert (
        cifar10.MIRRORS[0] + cifar10.ARCHIVE[0] == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    )
    assert [f for f, _ in cifar10.RESOURCES] == ALL_FILES
    assert all(re.fullmatch(r"[0-9a-f]{32}", m) for _, m in (*cifar10.RESOURCES, cifar10.ARCHIVE))


def test_fixture_pickles_are_python2_style(cifar):
    """The fixtures must look like the official files, or the loader would be tested on the wrong format."""
    folder, _, _ = cifar
    raw = (folder / cifar10.BATCH_FOLDER / "data_batch_1").read_bytes()
    assert raw.startswith(b"\x80\x02}") and b"U\x04data" in raw and b"U\x06labels" in raw
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in raw and b"_codecs" not in raw
    assert set(pickle.loads(raw, encoding="bytes")) == {b"batch_label", b"labels", b"data", b"filenames"}


# --- real pixels --------------------------------------------------------------------------------------------


def test_real_pixels_round_trip(tmp_path, monkeypatch):
    require_shared(SHARED_NPZ, "real CIFAR-10 subset cifar10_train_first4000.npz")
    with np.load(SHARED_NPZ) as z:
        images = z["images"].transpose(0, 3, 1, 2)  # HWC -> the official CHW planes
        labels = z["labels"].astype(np.int64)
    # data_batch_1: the first 4,000 real images (the official one has 10,000); the other batches and the
    # test batch: small distinct slices, so the order of concatenation shows.
    slices = [slice(0, 4000), slice(4000 - 7, 4000), slice(100, 105), slice(2000, 2009), slice(50, 53)]
    splits = {
        "train": [(images[s], labels[s]) for s in slices],
        "test": (images[3000:3040], labels[3000:3040]),
    }
    folder = tmp_path / "cifar10"
    monkeypatch.setattr(cifar10, "RESOURCES", write_batches(folder, splits))
    train = cifar10.load(folder, "train")
    test = cifar10.load(folder, "test")
    assert train.images.shape == (4024, 3, 32, 32) and train.images.dtype == np.uint8
    assert train.labels.dtype == np.int64 and train.class_names == cifar10.CLASS_NAMES
    assert np.array_equal(train.images, np.concatenate([images[s] for s in slices]))
    assert np.array_equal(train.labels, np.concatenate([labels[s] for s in slices]))
    assert np.array_equal(test.images, images[3000:3040]) and np.array_equal(test.labels, labels[3000:3040])
    # Known values of the official data_batch_1 row 0 (R plane first, row-major) and its first labels.
    assert train.images[0, 0, 0, :3].tolist() == [59, 43, 50]
    assert train.images[0, 2, 31, 29:].tolist() == [140, 84, 72]
    assert train.labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]


# --- extracted folder and archive ---------------------------------------------------------------------------


def test_extracted_folder_round_trip(cifar):
    folder, data, _ = cifar
    assert cifar10.available(folder)
    train = cifar10.load(folder, "train")
    images, labels = train_arrays(data)
    assert train.images.shape == (60, 3, 32, 32) and np.array_equal(train.images, images)
    assert np.array_equal(train.labels, labels) and train.counts().tolist() == [6] * 10
    test = cifar10.load(folder, "test")
    assert np.array_equal(test.images, data["test"][0]) and np.array_equal(test.labels, data["test"][1])
    with pytest.raises(BenchError, match="unknown split 'val'"):
        cifar10.load(folder, "val")


def test_archive_only_is_checked_and_extracted(cifar, tmp_path, monkeypatch):
    source, data, resources = cifar
    folder = tmp_path / "fresh"
    folder.mkdir()
    monkeypatch.setattr(
        cifar10, "ARCHIVE", (cifar10.ARCHIVE[0], make_archive(folder / cifar10.ARCHIVE[0], source))
    )
    assert cifar10.available(folder)
    train = cifar10.load(folder, "train")
    assert np.array_equal(train.images, train_arrays(data)[0])
    batches = folder / cifar10.BATCH_FOLDER
    # All seven files came out at once, byte for byte; the readme and the staging folder did not stay.
    assert sorted(os.listdir(batches)) == sorted(ALL_FILES)
    assert all(md5(batches / f) == m for f, m in resources)
    assert {p.name for p in folder.iterdir()} == {cifar10.ARCHIVE[0], cifar10.BATCH_FOLDER, "train.npz"}
    # The test split needs no second pass over the archive.
    (folder / cifar10.ARCHIVE[0]).unlink()
    assert np.array_equal(cifar10.load(folder, "test").labels, data["test"][1])


def test_corrupt_archive_is_not_extracted(cifar, tmp_path, monkeypatch):
    source, _, _ = cifar
    folder = tmp_path / "fresh"
    folder.mkdir()
    archive = folder / cifar10.ARCHIVE[0]
    good = make_archive(archive, source)
    archive.write_bytes(archive.read_bytes()[:-1] + b"x")
    monkeypatch.setattr(cifar10, "ARCHIVE", (cifar10.ARCHIVE[0], good))
    with pytest.raises(BenchError) as excinfo:
        cifar10.load(folder, "train")
    message = one_line_error(excinfo)
    assert f"{archive} is corrupt" in message and f"expected {good}" in message and "--download" in message
    assert not (folder / cifar10.BATCH_FOLDER).exists()


def test_only_missing_files_are_extracted(cifar, monkeypatch):
    folder, data, _ = cifar
    batches = folder / cifar10.BATCH_FOLDER
    monkeypatch.setattr(
        cifar10, "ARCHIVE", (cifar10.ARCHIVE[0], make_archive(folder / cifar10.ARCHIVE[0], folder))
    )
    (batches / "data_batch_4").unlink()
    kept = (batches / "data_batch_2").stat().st_ino
    assert np.array_equal(cifar10.load(folder, "train").labels, train_arrays(data)[1])
    assert (batches / "data_batch_4").is_file() and (batches / "data_batch_2").stat().st_ino == kept
    # A present file with the wrong MD5 is reported, never overwritten from the archive.
    (batches / "data_batch_2").write_bytes(b"user's own file")
    (batches / "data_batch_5").unlink()
    with pytest.raises(BenchError) as excinfo:
        cifar10.load(folder, "train")
    assert f"{batches / 'data_batch_2'} is corrupt" in one_line_error(excinfo)
    assert (batches / "data_batch_2").read_bytes() == b"user's own file"


@pytest.mark.parametrize(
    "name, kind, problem",
    [
        ("../evil", tarfile.REGTYPE, "outside the data folder"),
        ("cifar-10-batches-py/../../evil", tarfile.REGTYPE, "outside the data folder"),
        ("/tmp/evil", tarfile.REGTYPE, "outside the data folder"),
        ("evil", tarfile.REGTYPE, "outside cifar-10-batches-py/"),
        ("cifar-10-batches-py/data_batch_9", tarfile.SYMTYPE, "link or special file"),
        ("cifar-10-batches-py/data_batch_9", tarfile.LNKTYPE, "link or special file"),
    ],
    ids=["dotdot", "dotdot-inside", "absolute", "top-level", "symlink", "hardlink"],
)
def test_unsafe_archive_is_refused_whole(cifar, tmp_path, monkeypatch, name, kind, problem):
    source, _, _ = cifar
    folder = tmp_path / "fresh"
    folder.mkdir()
    archive = folder / cifar10.ARCHIVE[0]
    good = {
        f"{cifar10.BATCH_FOLDER}/{f}": (source / cifar10.BATCH_FOLDER / f).read_bytes() for f in ALL_FILES
    }
    make_archive(archive, source, good)
    # Append the bad member after the good ones: nothing may have been put in place when it is met.
    with tarfile.open(archive, "r:gz") as tar:
        kept = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]
    with tarfile.open(archive, "w:gz") as tar:
        for member, body in kept:
            tar.addfile(member, io.BytesIO(body) if body is not None else None)
        bad = tarfile.TarInfo(name)
        bad.type = kind
        if kind == tarfile.REGTYPE:
            bad.size = 4
        else:
            bad.linkname = "/etc/passwd"
        tar.addfile(bad, io.BytesIO(b"evil") if kind == tarfile.REGTYPE else None)
    monkeypatch.setattr(cifar10, "ARCHIVE", (cifar10.ARCHIVE[0], md5(archive)))
    with pytest.raises(BenchError) as excinfo:
        cifar10.load(folder, "train")
    message = one_line_error(excinfo)
    assert f"{archive} has an unsafe member '{name}'" in message and problem in message
    assert list((folder / cifar10.BATCH_FOLDER).iterdir()) == []
    assert {p.name for p in folder.iterdir()} == {cifar10.ARCHIVE[0], cifar10.BATCH_FOLDER}
    assert not (tmp_path / "evil").exists()


def test_archive_without_a_batch(cifar, tmp_path, monkeypatch):
    source, _, _ = cifar
    folder = tmp_path / "fresh"
    folder.mkdir()
    members = {
        f"{cifar10.BATCH_FOLDER}/{f}": (source / cifar10.BATCH_FOLDER / f).read_bytes()
        for f in ALL_FILES
        if f != "data_batch_3"
    }
    monkeypatch.setattr(
        cifar10, "ARCHIVE", (cifar10.ARCHIVE[0], make_archive(folder / cifar10.ARCHIVE[0], source, members))
    )
    with pytest.raises(BenchError) as excinfo:
        cifar10.load(folder, "test")
    assert "has no cifar-10-batches-py/data_batch_3" in one_line_error(excinfo)
    assert not (folder / cifar10.BATCH_FOLDER / "test_batch").exists()


def test_truncated_archive(cifar, tmp_path, monkeypatch):
    source, _, _ = cifar
    folder = tmp_path / "fresh"
    folder.mkdir()
    archive = folder / cifar10.ARCHIVE[0]
    make_archive(archive, source)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    monkeypatch.setattr(cifar10, "ARCHIVE", (cifar10.ARCHIVE[0], md5(archive)))
    with pytest.raises(BenchError) as excinfo:
        cifar10.load(folder, "train")
    message = one_line_error(excinfo)
    assert f"{archive} is not a readable tar.gz archive" in message and "--download" in message
    assert list((folder / cifar10.BATCH_FOLDER).iterdir()) == []


def test_read_only_folder(cifar, tmp_path, monkeypatch):
    """A read-only data folder is read, never written: no cache, and no extraction (a one-line error)."""
    folder, data, _ = cifar
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    monkeypatch.setattr(
        cifar10, "ARCHIVE", (cifar10.ARCHIVE[0], make_archive(fresh / cifar10.ARCHIVE[0], folder))
    )
    for path in (folder, fresh):
        path.chmod(0o555)
    try:
        loaded = cifar10.load(folder, "test")
        with pytest.raises(BenchError) as excinfo:
            cifar10.load(fresh, "test")
    finally:
        for path in (folder, fresh):
            path.chmod(0o755)
    assert np.array_equal(loaded.images, data["test"][0]) and not (folder / "test.npz").exists()
    message = one_line_error(excinfo)
    assert f"cannot extract {fresh / cifar10.ARCHIVE[0]}" in message and "read-only" in message
    assert [p.name for p in fresh.iterdir()] == [cifar10.ARCHIVE[0]]


# --- missing, corrupt and malformed files -------------------------------------------------------------------


def test_missing_file(cifar):
    folder, _, _ = cifar
    (folder / cifar10.BATCH_FOLDER / "test_batch").unlink()
    assert not cifar10.available(folder)
    cifar10.load(folder, "train")  # the other split does not need it
    with pytest.raises(BenchError) as excinfo:
        cifar10.load(folder, "test")
    message = one_line_error(excinfo)
    assert message.startswith(f"cifar10: missing cifar-10-batches-py/test_batch in {folder} ")
    assert (
        "no cifar-10-python.tar.gz" in message and cifar10.ARCHIVE[1] in message and "--download" in message
    )


def test_corrupt_file(cifar):
    folder, data, resources = cifar
    path = folder / cifar10.BATCH_FOLDER / "data_batch_3"
    images, labels = data["train"][2]
    got = write_batch(path, 255 - images, labels, "training batch 3 of 5")
    with pytest.raises(BenchError) as excinfo:
        cifar10.load(folder, "train")
    message = one_line_error(excinfo)
    assert f"{path} is corrupt (MD5 {got}, expected {dict(resources)['data_batch_3']})" in message
    assert "delete it" in message and "--download" in message


class Exploit:
    """Unpickling this would create ``marker``: the loader must refuse the global instead."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def bad_batches(tmp_path):
    ok = np.zeros((2, 3072), np.uint8)
    return {
        "truncated": (None, "unpickling failed: UnpicklingError: pickle data was truncated"),
        "not-pickle": (b"not a pickle at all", "unpickling failed"),
        "exploit": (
            pickle.dumps({b"data": Exploit(tmp_path / "owned")}),
            f"refused global {os.mkdir.__module__}.mkdir",
        ),
        "list": (py2_pickle([1, 2]), "holds a list, expected a dict"),
        "no-labels": (py2_pickle({"data": ok}), "no b'labels' entry"),
        "wrong-shape": (
            py2_pickle({"data": np.zeros((2, 3000), np.uint8), "labels": [0, 1]}),
            "shape (2, 3000), expected uint8 of shape (N, 3072)",
        ),
        "wrong-dtype": (py2_pickle({"data": ok.astype(np.int16), "labels": [0, 1]}), "int16"),
        "data-list": (py2_pickle({"data": [1, 2], "labels": [0, 1]}), "data is list"),
        "label-count": (py2_pickle({"data": ok, "labels": [0]}), "expected 2 integers"),
        "label-range": (py2_pickle({"data": ok, "labels": [0, 10]}), "label 10 outside 0..9"),
        "label-type": (py2_pickle({"data": ok, "labels": ["a", "b"]}), "expected 2 integers"),
    }


@pytest.mark.parametrize("case", list(bad_batches(Path("/unused"))))
def test_malformed_batch(cifar, tmp_path, monkeypatch, case):
    folder, _, resources = cifar
    path = folder / cifar10.BATCH_FOLDER / "data_batch_2"
    raw, reason = bad_batches(tmp_path)[case]
    path.write_bytes(path.read_bytes()[:500] if raw is None else raw)
    # Accept the new MD5, so the parser (not the checksum) must catch it.
    monkeypatch.setattr(
        cifar10, "RESOURCES", tuple((f, md5(path) if f == path.name else m) for f, m in resources)
    )
    with pytest.raises(BenchError) as excinfo:
        cifar10.load(folder, "train")
    message = one_line_error(excinfo)
    assert message.startswith(f"cifar10: {path} is not a valid CIFAR-10 batch file (")
    assert reason in message and "delete it" in message
    assert not (tmp_path / "owned").exists()
    assert not (folder / "train.npz").exists()


def test_meta_must_name_the_classes(cifar, monkeypatch):
    folder, _, resources = cifar
    path = folder / cifar10.BATCH_FOLDER / "batches.meta"
    new = write_meta(path, [*cifar10.CLASS_NAMES[:9], "lorry"])
    monkeypatch.setattr(cifar10, "RESOURCES", tuple((f, new if f == path.name else m) for f, m in resources))
    with pytest.raises(BenchError) as excinfo:
        cifar10.load(folder, "test")
    assert f"{path} is not a valid" in one_line_error(excinfo) and "ship, lorry; expected" in str(
        excinfo.value
    )


# --- the cache ----------------------------------------------------------------------------------------------


def test_cache_written_reused_and_rebuilt(cifar, monkeypatch):
    folder, data, resources = cifar
    cache = folder / "train.npz"
    first = cifar10.load(folder, "train")
    assert cache.is_file() and not (folder / "test.npz").exists() and list(folder.glob("*.tmp")) == []
    table = dict(resources)
    with np.load(cache) as z:
        assert z["md5"].tolist() == [table[f] for f in (*TRAIN_FILES, "batches.meta")]

    def no_parse(*args, **kwargs):
        raise AssertionError("unpickled despite a valid cache")

    with monkeypatch.context() as m:
        m.setattr(cifar10, "unpickle", no_parse)
        again = cifar10.load(folder, "train")
    assert np.array_equal(again.images, first.images) and np.array_equal(again.labels, first.labels)

    # A changed source file (its new MD5 accepted) rebuilds the cache.
    images, labels = data["train"][2]
    new = write_batch(
        folder / cifar10.BATCH_FOLDER / "data_batch_3", 255 - images, labels, "training batch 3 of 5"
    )
    monkeypatch.setattr(
        cifar10, "RESOURCES", tuple((f, new if f == "data_batch_3" else m) for f, m in resources)
    )
    rebuilt = cifar10.load(folder, "train")
    assert np.array_equal(rebuilt.images[20:40], 255 - images)
    assert np.array_equal(rebuilt.images[:20], first.images[:20])
    with np.load(cache) as z:
        assert z["md5"][2] == new and np.array_equal(z["images"][20:40], 255 - images)


# --- downloads from a local server --------------------------------------------------------------------------


@pytest.fixture
def server(cifar, tmp_path, monkeypatch):
    """The fixture archive served at <server>/kriz/cifar-10-python.tar.gz; yields (server, archive bytes)."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")  # a configured proxy must not intercept
    source, _, _ = cifar
    archive = tmp_path / "published.tar.gz"
    monkeypatch.setattr(cifar10, "ARCHIVE", (cifar10.ARCHIVE[0], make_archive(archive, source)))
    with serve_files({f"/kriz/{cifar10.ARCHIVE[0]}": archive.read_bytes()}) as httpd:
        monkeypatch.setattr(cifar10, "MIRRORS", (f"{httpd.url}/kriz/",))
        yield httpd, archive.read_bytes()


def test_download_fetches_checks_and_extracts(cifar, server, tmp_path):
    _, data, _ = cifar
    httpd, body = server
    folder = tmp_path / "data" / "cifar10"
    with pytest.raises(BenchError, match="--download"):
        cifar10.load(folder, "train")
    assert httpd.requests == [] and not folder.exists()
    train = cifar10.load(folder, "train", download=True)
    assert np.array_equal(train.images, train_arrays(data)[0])
    assert (folder / cifar10.ARCHIVE[0]).read_bytes() == body and list(folder.glob("*.part")) == []
    assert httpd.requests == [(f"/kriz/{cifar10.ARCHIVE[0]}", None)]
    httpd.requests.clear()
    cifar10.load(folder, "test", download=True)
    assert httpd.requests == []  # extracted files and the archive are never fetched again


def test_download_md5_mismatch_deletes_the_file(server, tmp_path):
    httpd, body = server
    path = f"/kriz/{cifar10.ARCHIVE[0]}"
    httpd.files[path] = body[:-1] + bytes([body[-1] ^ 1])
    folder = tmp_path / "data" / "cifar10"
    with pytest.raises(BenchError) as excinfo:
        cifar10.load(folder, "train", download=True)
    message = one_line_error(excinfo)
    got = re.search(r"has MD5 ([0-9a-f]{32}), expected ([0-9a-f]{32})", message)
    assert f"{httpd.url}{path}" in message and "deleted" in message
    assert got and got.group(2) == cifar10.ARCHIVE[1] and got.group(1) != cifar10.ARCHIVE[1]
    assert list(folder.iterdir()) == []


def test_interrupted_download_resumes(cifar, server, tmp_path):
    _, data, _ = cifar
    httpd, body = server
    httpd.cuts = 1
    folder = tmp_path / "data" / "cifar10"
    part = folder / (cifar10.ARCHIVE[0] + ".part")
    with pytest.raises(BenchError) as excinfo:
        cifar10.load(folder, "train", download=True)
    assert "interrupted" in one_line_error(excinfo) and "could not download" in str(excinfo.value)
    assert part.read_bytes() == body[: len(body) // 2]
    train = cifar10.load(folder, "train", download=True)  # rerun: resumes where it stopped
    assert np.array_equal(train.labels, train_arrays(data)[1])
    assert httpd.requests[-1] == (f"/kriz/{cifar10.ARCHIVE[0]}", f"bytes={len(body) // 2}-")
    assert (folder / cifar10.ARCHIVE[0]).read_bytes() == body and not part.exists()
