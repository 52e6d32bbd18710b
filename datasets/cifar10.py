"""CIFAR-10: 60,000 natural colour images in 10 classes, 32x32 RGB (50,000 train, 10,000 test).

Source: A. Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", technical report, University
of Toronto, 2009; https://www.cs.toronto.edu/~kriz/cifar.html . Read from the official "python version"
``cifar-10-python.tar.gz`` (https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz, MD5
c58f30108f718f92721af3b95e74349a) in ``<data dir>/cifar10/``, or from its extracted ``cifar-10-batches-py/``
folder there. The per-file MD5s are the ones torchvision publishes (``torchvision.datasets.CIFAR10``).

Format: each of ``data_batch_1`` .. ``data_batch_5``, ``test_batch`` is a Python 2 pickle (protocol 2) of a
dict; read with ``encoding="bytes"`` its keys are bytes: ``b"data"`` a uint8 numpy array (N, 3072), each row
the 1024 red, then 1024 green, then 1024 blue values of one image in row-major order, and ``b"labels"`` a list
of N ints in 0..9 (also ``b"batch_label"`` and ``b"filenames"``, unused). ``batches.meta`` holds
``b"label_names"``. A row therefore reshapes straight into (3, 32, 32), the (C, H, W) layout of ``ImageSet``.
Train is data_batch_1..5 concatenated in that order; test is test_batch.

Choices:
* The pickles are read by an unpickler that resolves only the few globals the official files use (numpy's
  array reconstruction, ``numpy.ndarray``, ``numpy.dtype``, and ``_codecs.encode`` which Python 3 writes for
  bytes at protocol 2), so a hostile file cannot run code; every file is MD5-checked before it is read anyway.
* The archive is touched only when a needed batch file is missing from ``cifar-10-batches-py/``: then it is
  MD5-checked (downloaded first with ``download=True``) and the missing files are extracted, each written
  aside and renamed, never over a file already there. An archive with any member outside
  ``cifar-10-batches-py/``, or any link or special file, is refused as a whole.
* Decoded splits are cached as ``<split>.npz`` beside the archive (datasets/cache.py), keyed on the MD5s of
  the split's batch files and ``batches.meta``.
"""

from __future__ import annotations

import codecs
import gzip
import io
import os
import pickle
import posixpath
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

import numpy as np

from bench.datasets.base import ImageSet
from bench.datasets.cache import read_cache, write_cache, writes_allowed
from bench.datasets.download import ensure_files, md5sum
from bench.errors import BenchError, one_line

try:  # numpy >= 2 moved the array reconstructor; its old path still names it in the official pickles
    from numpy._core.multiarray import _reconstruct, scalar
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct, scalar

NAME = "cifar10"
DESCRIPTION = "CIFAR-10 natural images, 32x32 RGB, 10 classes, 50,000 train and 10,000 test images"
SOURCE = (
    "Krizhevsky (2009), Learning Multiple Layers of Features from Tiny Images; "
    "https://www.cs.toronto.edu/~kriz/cifar.html"
)
# The official label names (batches.meta), in label order.
CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
IMAGE_SHAPE = (3, 32, 32)
# The visually closest class pairs, the ones CIFAR-10 classifiers confuse most (the largest off-diagonal
# cells of a typical confusion matrix): cat vs dog, automobile vs truck, deer vs horse.
DEFAULT_PAIRS = ((3, 5), (1, 9), (4, 7))
NEEDS_FILES = True

# Module-level so tests can substitute fixtures (monkeypatch), as with mnist.RESOURCES.
ARCHIVE = ("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")
MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)
BATCH_FOLDER = "cifar-10-batches-py"
# (file in BATCH_FOLDER, MD5) as published by torchvision.
RESOURCES = (
    ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
    ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
    ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
    ("data_batch_4", "634d18415352ddfa80567beed471001a"),
    ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
    ("test_batch", "40351d587109b95175f43aff81a1287e"),
    ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
)
META_FILE = "batches.meta"
SPLIT_FILES = {
    "train": ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"),
    "test": ("test_batch",),
}
ROW_SIZE = 3 * 32 * 32

# The only globals the official pickles (Python 2, numpy arrays) and a Python 3 protocol-2 rewrite of them
# need; the keys are (module, name) as written in the pickle.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): scalar,
    ("numpy._core.multiarray", "scalar"): scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


def load(folder: Path, split: str = "train", download: bool = False) -> ImageSet:
    """Load one split from ``folder`` (``cifar-10-batches-py/`` or the archive), checking every MD5."""
    folder = Path(folder)
    if split not in SPLIT_FILES:
        raise BenchError(f"unknown split '{split}'; valid splits: {', '.join(sorted(SPLIT_FILES))}")
    files = SPLIT_FILES[split] + (META_FILE,)
    md5s = _ensure_batches(folder, files, download)
    key = np.array([md5s[f] for f in files])
    cache = folder / f"{split}.npz"
    cached = read_cache(cache, key, CLASS_NAMES)
    if cached is not None:
        return cached
    batches = folder / BATCH_FOLDER
    _check_meta(batches / META_FILE)
    parts = [read_batch(batches / f) for f in SPLIT_FILES[split]]
    images = np.concatenate([data for data, _ in parts]).reshape(-1, *IMAGE_SHAPE)
    labels = np.concatenate([labels for _, labels in parts])
    result = ImageSet(images, labels, CLASS_NAMES)
    write_cache(cache, key, result)
    return result


def available(folder: Path) -> bool:
    """The extracted batch files, or the archive to extract them from, are present."""
    folder = Path(folder)
    batches = folder / BATCH_FOLDER
    return (folder / ARCHIVE[0]).is_file() or all((batches / f).is_file() for f, _ in RESOURCES)


# --- source files ----------------------------------------------------------------------------------------


def _ensure_batches(folder: Path, files: tuple[str, ...], download: bool) -> dict[str, str]:
    """MD5-check ``files`` in ``cifar-10-batches-py/``, extracting missing ones from the archive first
    (fetching it when ``download``); return file -> MD5."""
    expected = dict(RESOURCES)
    batches = folder / BATCH_FOLDER
    missing = [f for f in files if not (batches / f).is_file()]
    if missing:
        archive, archive_md5 = ARCHIVE
        if not (folder / archive).is_file() and not download:
            raise BenchError(
                f"{NAME}: missing {BATCH_FOLDER}/{missing[0]} in {folder} and no {archive} to extract it "
                f"from (expected MD5 {archive_md5}); copy the official archive or its extracted "
                f"{BATCH_FOLDER} folder there, or rerun with --download"
            )
        ensure_files(NAME, folder, [ARCHIVE], MIRRORS, download)  # MD5 check; fetched when missing
        # Extract every known file that is missing, not only this split's: the other split then needs no
        # second pass over the archive.
        _extract(folder / archive, batches, [f for f, _ in RESOURCES if not (batches / f).is_file()])
    md5s = {}
    for file in files:
        path = batches / file
        got = md5sum(path)
        if got != expected[file]:
            raise BenchError(
                f"{NAME}: {path} is corrupt (MD5 {got}, expected {expected[file]}); delete it (it is then "
                f"extracted again from {ARCHIVE[0]}, or with --download fetched) or replace it with the "
                "canonical file"
            )
        md5s[file] = got
    return md5s


def _member_problem(member: tarfile.TarInfo) -> str | None:
    """Why ``member`` may not be extracted, or None when it is a plain file or folder inside BATCH_FOLDER."""
    name = posixpath.normpath(member.name)
    if name.startswith("/") or name == ".." or name.startswith("../"):
        return "points outside the data folder"
    if name != BATCH_FOLDER and not name.startswith(BATCH_FOLDER + "/"):
        return f"lies outside {BATCH_FOLDER}/"
    if not (member.isfile() or member.isdir()):
        return "is a link or special file"
    return None


def _check_writable(archive: Path, batches: Path) -> None:
    """Extraction may write here: not a dry run, and neither folder read-only."""
    folder = batches.parent
    if not writes_allowed():
        raise BenchError(f"{NAME}: {archive} is not extracted yet, and --dry-run writes nothing; run any cell "
                         "once (it extracts the archive), then the dry run can calibrate")
    # Root passes os.access anywhere, so also honour the mode bits (as datasets/cache.py does): a shared,
    # read-only data folder is never written to.
    for target in (folder, batches) if batches.is_dir() else (folder,):
        if not os.access(target, os.W_OK) or not target.stat().st_mode & 0o222:
            raise BenchError(
                f"{NAME}: cannot extract {archive} into {batches} ({target} is read-only); make it writable "
                f"or put the extracted {BATCH_FOLDER} folder there yourself"
            )


def _stream_members(archive: Path, wanted: list[str], staging: Path) -> set[str]:
    """Check every member of ``archive`` and copy the ``wanted`` ones into ``staging``; the names copied."""
    found = set()
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            problem = _member_problem(member)
            if problem:
                raise BenchError(
                    f"{NAME}: {archive} has an unsafe member '{member.name}' ({problem}); "
                    "nothing was extracted; delete the archive and rerun with --download, or replace "
                    "it with the official one"
                )
            file = posixpath.normpath(member.name)[len(BATCH_FOLDER) + 1 :]
            if member.isfile() and file in wanted:
                source = tar.extractfile(member)
                with source, open(staging / file, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
                found.add(file)
        # tarfile takes a damaged header after the first member for the end of the archive; reading the gzip
        # stream to its end runs its CRC check, so damage is reported as such, never as members that are missing.
        while tar.fileobj.read(1 << 20):
            pass
    return found


def _extract(archive: Path, batches: Path, wanted: list[str]) -> None:
    """Extract ``wanted`` (names in BATCH_FOLDER) from ``archive`` into ``batches``, safely.

    Every member is checked before anything is renamed into place: one unsafe member refuses the whole
    archive. Members are streamed into a private temporary folder (their names are never used as paths) and
    renamed in only when the whole archive has been read; files already present are never replaced.
    """
    folder = batches.parent
    _check_writable(archive, batches)
    try:
        batches.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder, prefix=".cifar10-extract-"))
    except OSError as e:
        raise BenchError(
            f"{NAME}: cannot extract {archive} into {batches} ({one_line(e)}); make {folder} writable "
            f"or extract the archive there yourself"
        ) from e
    try:
        try:
            found = _stream_members(archive, wanted, staging)
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise BenchError(
                f"{NAME}: {archive} is not a readable tar.gz archive ({one_line(e)}); delete it and rerun "
                "with --download, or replace it with the official one"
            ) from e
        except OSError as e:
            raise BenchError(
                f"{NAME}: cannot extract {archive} into {batches} ({one_line(e)}); free some space or "
                "choose a writable data folder"
            ) from e
        absent = [f for f in wanted if f not in found]
        if absent:
            raise BenchError(
                f"{NAME}: {archive} has no {BATCH_FOLDER}/{absent[0]}; replace it with the official archive "
                f"(or put the extracted {BATCH_FOLDER} folder into {folder})"
            )
        for file in wanted:
            if not (batches / file).exists():  # a concurrent load may have put it there
                os.chmod(staging / file, 0o644)
                os.replace(staging / file, batches / file)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --- the pickled batches -----------------------------------------------------------------------------------


class _BatchUnpickler(pickle.Unpickler):
    """Resolves only the globals in ``_ALLOWED_GLOBALS``; anything else is refused, never imported."""

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}") from None


def _bad(path: Path, reason: str) -> BenchError:
    return BenchError(
        f"{NAME}: {path} is not a valid CIFAR-10 batch file ({reason}); delete it (it is then extracted "
        f"again from {ARCHIVE[0]}, or with --download fetched) or replace it with the canonical file"
    )


def unpickle(path: Path) -> dict:
    """Safely unpickle an official batch file (Python 2 strings read as bytes); a dict, or a BenchError."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise _bad(path, f"unreadable: {one_line(e)}") from e
    try:
        obj = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    # A malformed pickle can raise almost anything (UnpicklingError, EOFError when truncated, ValueError,
    # TypeError, IndexError, struct errors ...); each is a bad file, never a crash.
    except Exception as e:
        raise _bad(path, f"unpickling failed: {type(e).__name__}: {one_line(e)}") from e
    if not isinstance(obj, dict):
        raise _bad(path, f"holds a {type(obj).__name__}, expected a dict")
    # The official files read with encoding="bytes" have bytes keys; accept str keys from a Python 3 rewrite.
    return {k.encode() if isinstance(k, str) else k: v for k, v in obj.items()}


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(data uint8 (N, 3072), labels int64 (N,))`` of one batch file, validated."""
    batch = unpickle(path)
    for key in (b"data", b"labels"):
        if key not in batch:
            raise _bad(path, f"no {key!r} entry; keys: {sorted(map(repr, batch))}")
    data = batch[b"data"]
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != ROW_SIZE
    ):
        shape = getattr(data, "shape", None)
        raise _bad(
            path,
            f"data is {type(data).__name__} {getattr(data, 'dtype', '')} of shape {shape}, "
            f"expected uint8 of shape (N, {ROW_SIZE})",
        )
    try:
        labels = np.asarray(batch[b"labels"])
    except (ValueError, TypeError) as e:
        raise _bad(path, f"labels are not a list of integers ({one_line(e)})") from e
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(data):
        raise _bad(path, f"labels are {labels.dtype} of shape {labels.shape}, expected {len(data)} integers")
    outside = labels[(labels < 0) | (labels >= len(CLASS_NAMES))]
    if len(outside):
        raise _bad(path, f"label {outside[0]} outside 0..{len(CLASS_NAMES) - 1}")
    return data, labels.astype(np.int64)


def _check_meta(path: Path) -> None:
    """``batches.meta`` must name the ten classes in the official order."""
    meta = unpickle(path)
    names = meta.get(b"label_names")
    if not isinstance(names, list) or not all(isinstance(n, bytes | str) for n in names):
        raise _bad(path, "no b'label_names' list")
    decoded = tuple(n.decode("latin-1") if isinstance(n, bytes) else n for n in names)
    if decoded != CLASS_NAMES:
        raise _bad(path, f"label names {', '.join(decoded)}; expected {', '.join(CLASS_NAMES)}")


