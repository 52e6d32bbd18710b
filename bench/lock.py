"""One ``bench run`` per results folder: ``<results>/bench.lock``, held with an OS file lock for the run.

Two runs on one folder would both see the same cells pending and run each twice, so the second refuses,
naming the first (pid, host, start time). The lock is the kernel's (``flock``), not the file's existence:
a run killed with ``kill -9`` releases it with its process, so no stale lock ever needs deleting by hand.
Readers (``bench report``, ``bench export``, ``--dry-run``) take no lock: SQLite's WAL lets them read while
the run writes. Where ``fcntl`` does not exist (Windows) there is no lock.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path

from bench.errors import BenchError

try:
    import fcntl
except ImportError:  # pragma: no cover (Windows)
    fcntl = None

LOCK_NAME = "bench.lock"


class RunLock:
    """``with RunLock(results_dir):`` holds the folder's lock or raises ``BenchError`` naming its holder."""

    def __init__(self, results_dir: str | Path):
        self.path = Path(results_dir) / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        if fcntl is None:
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                fix = "free space or give another --results folder"
            else:  # read-only, no permission, or a path that cannot be a folder
                fix = "give a writable --results folder"
            raise BenchError(f"cannot write to {self.path.parent} ({exc.strerror}); {fix}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise BenchError(f"another bench run ({holder}) is writing to {self.path.parent}; wait for it to "
                             "finish, or give this run another --results folder (bench report --results A "
                             "--results B merges them)") from None
        except OSError as exc:  # a file system without locks (some network mounts): run, but say so
            print(f"note: cannot lock {self.path} ({exc.strerror}); make sure no other bench run writes to "
                  f"{self.path.parent} at the same time", file=sys.stderr)
        try:  # who holds it, for the message above; the lock itself is the flock
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(_holder()).encode(), 0)
        except OSError:
            pass  # a full disk must not stop the run here; the store reports it where it matters
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock; the file stays (deleting it would race)
            self._fd = None


def _holder() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info['pid']} on {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"
