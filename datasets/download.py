"""Source files of file-based datasets: MD5 checks and opt-in downloads from mirrors.

Nothing is fetched unless the caller passes ``download=True``. A download is written to ``<file>.part`` and
renamed only once its MD5 matches, so a file under its canonical name is always complete. An interrupted
``.part`` file is resumed with an HTTP Range request when the server honours it.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from bench.errors import BenchError, one_line

CHUNK = 1 << 16
TIMEOUT_S = 60
# Some mirrors refuse urllib's default agent.
USER_AGENT = "capsan-bench/0.1 (+python urllib)"
# Everything a flaky network or server can raise while opening or streaming a response.
NETWORK_ERRORS = (OSError, http.client.HTTPException, ValueError)


def file_digest(path: Path, algorithm: str = "md5") -> str:
    """The hex digest of a file, read in 1 MiB blocks (large archives never sit in memory whole)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def md5sum(path: Path) -> str:
    return file_digest(path, "md5")


def ensure_files(
    name: str,
    folder: Path,
    resources: Sequence[tuple[str, str]],
    mirrors: Sequence[str],
    download: bool,
) -> dict[str, str]:
    """Check (and with ``download``, fetch when missing) each ``(file, md5)``; return file -> MD5.

    A present file with the wrong MD5 is never replaced silently: the user may have put it there.
    """
    md5s = {}
    for file, expected in resources:
        path = folder / file
        if path.is_file():
            got = md5sum(path)
        elif download:
            got = download_file(name, folder, file, expected, mirrors)
        else:
            raise BenchError(
                f"{name}: missing file {file} in {folder} (expected MD5 {expected}); "
                "copy the canonical file there or rerun with --download"
            )
        if got != expected:
            raise BenchError(
                f"{name}: {path} is corrupt (MD5 {got}, expected {expected}); delete it and rerun "
                "with --download, or replace it with the canonical file"
            )
        md5s[file] = got
    return md5s


def download_file(name: str, folder: Path, file: str, expected: str, mirrors: Sequence[str]) -> str:
    """Fetch ``file`` from the first mirror that serves it; return its MD5 (equal to ``expected``)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BenchError(
            f"{name}: cannot create {folder} ({one_line(e)}); choose a writable data folder"
        ) from e
    part = folder / (file + ".part")
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + file
        try:
            _fetch(url, part, file)
        except _NetworkError as e:
            failures.append(f"{url}: {e}")
            continue
        got = md5sum(part)
        if got != expected:
            part.unlink(missing_ok=True)
            raise BenchError(
                f"{name}: download of {url} has MD5 {got}, expected {expected}; the file was deleted; "
                f"rerun later or copy the canonical file into {folder}"
            )
        os.replace(part, folder / file)
        return got
    raise BenchError(
        f"{name}: could not download {file} ({'; '.join(failures) or 'no mirrors'}); "
        f"check the network connection or copy the canonical file into {folder}"
    )


class _NetworkError(Exception):
    """This mirror failed; try the next one (any .part file is kept for resuming)."""


def _fetch(url: str, part: Path, desc: str) -> None:
    """Stream ``url`` into ``part``, resuming from its current size when the server honours Range."""
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            # The .part does not fit what the server has (often: it is already complete but was never
            # renamed, or it is stale). Start over; the MD5 check decides in the end.
            part.unlink(missing_ok=True)
            return _fetch(url, part, desc)
        raise _NetworkError(one_line(e)) from e
    except NETWORK_ERRORS as e:
        raise _NetworkError(one_line(e)) from e
    with response:
        # Append only when the server answers the Range from exactly our offset; a plain 200 restarts.
        resumed = response.status == 206 and (response.headers.get("Content-Range") or "").startswith(
            f"bytes {offset}-"
        )
        if not resumed:
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        received = offset
        try:
            out = open(part, "ab" if resumed else "wb")
        except OSError as e:
            raise BenchError(f"cannot write {part} ({one_line(e)}); choose a writable data folder") from e
        # disable=None: a bar on a terminal, silence in logs and under pytest.
        with (
            out,
            tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=desc, disable=None) as bar,
        ):
            while True:
                try:
                    chunk = response.read(CHUNK)
                except NETWORK_ERRORS as e:
                    raise _NetworkError(f"interrupted after {received} bytes ({one_line(e)})") from e
                if not chunk:
                    break
                try:
                    out.write(chunk)
                except OSError as e:
                    raise BenchError(
                        f"cannot write {part} ({one_line(e)}); free some space and rerun"
                    ) from e
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received < total:
        raise _NetworkError(f"interrupted after {received} of {total} bytes")


