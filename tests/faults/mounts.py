"""A small tmpfs the fault tests mount and unmount themselves: a full disk, a read-only folder."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


@functools.cache
def can_mount() -> bool:
    """Whether this process may mount a tmpfs (root with CAP_SYS_ADMIN, as on CI's machines): tried once."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    with tempfile.TemporaryDirectory() as where:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", where],
                                 capture_output=True).returncode == 0
        if mounted:
            subprocess.run(["umount", where], capture_output=True)
    return mounted


@contextlib.contextmanager
def tmpfs(path: Path, size_kb: int):
    """A tmpfs of ``size_kb`` KiB at ``path`` (created) for the ``with`` block."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k,mode=0755", "tmpfs", str(path)], check=True,
                   capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def remount_read_only(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)


def fill(path: Path, leave_bytes: int) -> Path:
    """Fill the filesystem of ``path`` until ``leave_bytes`` (about) are free; returns the filler file."""
    filler = path / "filler"
    free = os.statvfs(path).f_bavail * os.statvfs(path).f_frsize
    with open(filler, "ab") as out:
        out.write(b"\0" * max(0, free - leave_bytes))
    return filler
