"""A full disk while ``bench run`` writes results: a small tmpfs the test mounts and fills (ENOSPC), and a
file-size limit (``RLIMIT_FSIZE``: EFBIG on the store's write-ahead log, on any machine). The run stops with
one ``Error:`` line naming the fix, exit 2; the store passes SQLite's integrity check and keeps every cell it
had; once space is back, the same command finishes only the rest."""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import bench_command
from mounts import can_mount, fill, tmpfs

from bench.store import Store

GRID = ["--methods", "imbalanced,smote", "--datasets", "digits", "--ratios", "0.1", "--pairs", "3:5",
        "--epochs", "1", "--quiet"]
FIRST = [*GRID, "--seeds", "2"]  # 4 cells
MORE = [*GRID, "--seeds", "12"]  # the same grid with 12 seeds: 24 cells, the first 4 done


def _run(args, results: Path, file_limit: int | None = None) -> subprocess.CompletedProcess:
    def limit():
        if file_limit is not None:  # a write past the limit fails with EFBIG instead of killing the process
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    return subprocess.run([*bench_command(), "run", *args, "--results", str(results)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=limit, timeout=300)


def _done(results: Path) -> dict:
    with sqlite3.connect(results / "bench.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with Store(results, create=False) as store:
        attempts = store.attempts()
    done = attempts[attempts["status"] == "done"]
    assert done["key"].is_unique
    return dict(zip(done["key"], done["metrics"], strict=True))


@pytest.mark.parametrize("how", ["tmpfs", "file-size-limit"])
def test_a_full_disk_stops_the_run_cleanly_and_loses_nothing(tmp_path, tally, how):
    if how == "tmpfs" and not can_mount():
        pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN); the file-size-limit case covers a full disk")
    with tmpfs(tmp_path / "disk", 1024) if how == "tmpfs" else _folder(tmp_path / "disk") as disk:
        results = disk / "results"
        first = _run(FIRST, results)
        assert first.returncode == 0, first.stderr
        before = _done(results)
        assert len(before) == 4
        if how == "tmpfs":
            filler = fill(disk, 48 * 1024)
            full = _run(MORE, results)
        else:
            filler = None
            full = _run(MORE, results, file_limit=32 * 1024)  # the write-ahead log outgrows this first
        tally["faults"] += 1
        lines = full.stderr.strip().splitlines()
        assert full.returncode == 2, full.stderr
        assert len(lines) == 1 and lines[0].startswith("Error: "), full.stderr
        assert "full" in lines[0] or "I/O" in lines[0], lines[0]
        assert "run the same command again to finish the rest" in lines[0]

        during = _done(results)  # opens, passes the integrity check, no cell twice
        assert all(during.get(key) == metrics for key, metrics in before.items())  # nothing lost
        assert len(during) < 24

        if filler is not None:
            filler.unlink()
        again = _run(MORE, results)
        assert again.returncode == 0, again.stderr
        assert f"24 cells: {24 - len(during)} run, 0 failed, {len(during)} already done" in again.stdout
        after = _done(results)
        assert len(after) == 24 and all(after[key] == metrics for key, metrics in during.items())
        tally["survived"] += 1


class _folder:
    """A plain folder, as a context manager like ``tmpfs``."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> Path:
        self.path.mkdir(parents=True)
        return self.path

    def __exit__(self, *exc) -> None:
        return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
