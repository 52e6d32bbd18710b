"""One ``bench run`` per results folder: ``<results>/bench.lock``, held with an OS file lock for the run.

Two runs on one folder would both see the same cells pending and run each twice, so the second refuses,
naming the first (pid, host, start time). The lock is the kernel's (``flock``), not the file's existence:
a run killed with ``kill -9`` releases it with its process, so no stale lock ever needs deleting by hand.
Readers (``bench report``, ``bench export``, ``--dry-run``) take no lock: SQLite's WAL lets them read while
the run writes. Where ``fcntl`` does not exist (Windows) there is no lock.
A run that stops with an error while the folder holds nothing but its lock (a mistyped ``--data-dir``, a
missing dataset file) leaves the folder as it found it: the lock file is removed while still held, and the
folder too if the run created it. Removing a lock file races with a run that opened it just before: so a run
that gets the flock checks that the path still names the file it locked, and opens it again if not.
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
        self._created: list[Path] = []  # the folders this lock made, innermost first

    def __enter__(self) -> RunLock:
        if fcntl is None:
            return self
        self._created = [p for p in (self.path.parent, *self.path.parent.parents) if not p.exists()]
        for _ in range(10):  # another run may remove the file between our open and our flock: open it again
            fd = self._open()
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
                break
            if _same_file(self.path, fd):
                break
            os.close(fd)
        else:
            raise BenchError(f"cannot hold {self.path}: other runs keep replacing it; give this run another "
                             "--results folder")
        try:  # who holds it, for the message above; the lock itself is the flock
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(_holder()).encode(), 0)
        except OSError:
            pass  # a full disk must not stop the run here; the store reports it where it matters
        self._fd = fd
        return self

    def _open(self) -> int:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                fix = "free space or give another --results folder"
            else:  # read-only, no permission, or a path that cannot be a folder
                fix = "give a writable --results folder"
            raise BenchError(f"cannot write to {self.path.parent} ({exc.strerror}); {fix}") from exc

    def __exit__(self, exc_type, *exc) -> None:
        if self._fd is None:
            return
        folder = self.path.parent
        try:
            if exc_type is not None and {p.name for p in folder.iterdir()} <= {LOCK_NAME}:
                self.path.unlink(missing_ok=True)  # while held: a run waiting on it opens the new path
                for made in self._created:
                    made.rmdir()  # empty, as this run made it; stops at the first folder that is not
        except OSError:
            pass  # tidying up must never hide the run's own error
        finally:
            os.close(self._fd)  # closing releases the flock; after a run that wrote, the file stays
            self._fd = None


def _same_file(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (a finished run may have removed it)."""
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except OSError:
        return False


def _holder() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info['pid']} on {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"
