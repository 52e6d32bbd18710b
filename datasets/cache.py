"""Decoded arrays cached beside a dataset's source files, valid only while the sources' checksums match.

``<folder>/<name>.npz`` holds the images, the labels, a format version and ``md5``: the key the loader
built from its source files' checksums (and any option that changes the decoded arrays). A cache with
another key or version, or one that cannot be read (truncated, garbled, not a zip), is rebuilt; a folder
that is not writable gets none. Inside ``read_only()`` (``bench run --dry-run``, which writes nothing) no
loader writes anything into a data folder: no cache, no cache folder, no extraction.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import tempfile
from pathlib import Path

import numpy as np

from bench.datasets.base import ImageSet

CACHE_VERSION = 1
_READ_ONLY = contextvars.ContextVar("bench_data_read_only", default=False)


@contextlib.contextmanager
def read_only():
    """Within it, loaders read data folders and write nothing there (``--dry-run``)."""
    token = _READ_ONLY.set(True)
    try:
        yield
    finally:
        _READ_ONLY.reset(token)


def writes_allowed() -> bool:
    """False inside :func:`read_only`."""
    return not _READ_ONLY.get()


def read_cache(cache: Path, key: np.ndarray, class_names: tuple[str, ...]) -> ImageSet | None:
    """The cached split when its recorded source MD5s equal ``key``; None (rebuild) on any doubt."""
    if not cache.is_file():
        return None
    try:
        with np.load(cache, allow_pickle=False) as z:
            if int(z["version"]) != CACHE_VERSION or not np.array_equal(z["md5"], key):
                return None
            return ImageSet(z["images"], z["labels"], class_names)
    # A damaged cache can raise almost anything: zipfile.BadZipFile (truncated, or a bad CRC where bytes
    # were garbled), lzma or zlib errors, OSError, KeyError, ValueError, EOFError ... It is only a cache:
    # rebuild it from the checked sources, never stop the run.
    except Exception:  # noqa: BLE001
        return None


def write_cache(cache: Path, key: np.ndarray, data: ImageSet) -> None:
    """Best effort: a folder that is read-only (or any write error) just means no cache."""
    folder = cache.parent
    if not writes_allowed():
        return
    # Root passes os.access on any folder, so also honour the owner's intent shown by the mode bits:
    # a shared data folder with no write bits must stay untouched.
    if not os.access(folder, os.W_OK) or not folder.stat().st_mode & 0o222:
        return
    tmp = None
    try:
        # Write aside and rename, so a reader never sees half a cache.
        with tempfile.NamedTemporaryFile(dir=folder, prefix=cache.name, suffix=".tmp", delete=False) as f:
            tmp = f.name
            np.savez(f, version=CACHE_VERSION, md5=key, images=data.images, labels=data.labels)
        os.chmod(tmp, 0o644)  # the temporary file was created private
        os.replace(tmp, cache)
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
