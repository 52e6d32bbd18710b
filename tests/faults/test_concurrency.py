"""Two ``bench run`` on one results folder: the second refuses, naming the first, and writes nothing;
``bench report``, ``bench export`` and ``--dry-run`` read the store while the run writes it (SQLite WAL)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time

from helpers import bench_command, run_bench

from bench.store import Store

# The common classifier, made to wait at the start of each cell while the file $FAULT_HOLD exists: the test
# holds the run in the middle of its grid while the other commands run, however fast the machine.
HELD_METHOD = """
import os
import time

from bench.methods.imbalanced import Imbalanced


class HeldImbalanced(Imbalanced):
    name = "held-imbalanced"

    def fit(self, train, ctx):
        while os.path.exists(os.environ["FAULT_HOLD"]):
            time.sleep(0.05)
        super().fit(train, ctx)
"""


def _done(results) -> int:
    try:
        with sqlite3.connect(f"file:{results / 'bench.sqlite'}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM results WHERE status = 'done'").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_a_second_run_refuses_and_readers_read_during_a_run(tmp_path, tally):
    results = tmp_path / "results"
    method_file, hold = tmp_path / "held.py", tmp_path / "hold"
    method_file.write_text(HELD_METHOD)
    args = ["run", "--methods", "held-imbalanced,imbalanced", "--method-file", str(method_file), "--datasets",
            "digits", "--ratios", "0.5,0.3", "--pairs", "3:5", "--seeds", "3", "--epochs", "2", "--results",
            str(results), "--quiet"]
    total = 12
    first = subprocess.Popen([*bench_command(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1", "FAULT_HOLD": str(hold)})
    deadline = time.time() + 120
    while _done(results) < 2 and first.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    hold.touch()  # the run stops at the start of its next held cell
    assert first.poll() is None, first.communicate()

    second = run_bench(*args)
    tally["faults"] += 1
    lines = second.stderr.strip().splitlines()
    assert second.returncode == 2, second.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: another bench run (pid "), second.stderr
    assert f"pid {first.pid} " in lines[0] and "another --results folder" in lines[0]

    report = run_bench("report", "--results", results, "--out", tmp_path / "report", "--format", "md,html")
    export = run_bench("export", "--results", results, "--out", tmp_path / "cells.csv")
    dry = run_bench(*args, "--dry-run")
    assert first.poll() is None  # held: everything above ran during the run
    for reader in (report, export, dry):
        tally["faults"] += 1
        assert reader.returncode == 0, reader.stderr
    assert "held-imbalanced" in (tmp_path / "report" / "table3.md").read_text()
    exported = len((tmp_path / "cells.csv").read_text().strip().splitlines()) - 1
    assert 2 <= exported < total
    assert "pending" in dry.stdout

    hold.unlink()
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert f"{total} cells: {total} run, 0 failed, 0 already done" in out
    with Store(results, create=False) as store:
        attempts = store.attempts()
    assert len(attempts) == total and attempts["key"].nunique() == total  # no cell ran twice
    assert (attempts["status"] == "done").all()
    tally["survived"] += 4

    # The lock goes with the run: the same command now finds everything done.
    again = run_bench(*args)
    assert again.returncode == 0, again.stderr
    assert f"{total} cells: 0 run, 0 failed, {total} already done" in again.stdout


def test_a_file_system_without_locks_runs_with_a_note(tmp_path, monkeypatch, capsys):
    """Some network mounts refuse flock (ENOLCK): the run goes on and says it cannot guard the folder."""
    import errno

    from bench import lock

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(lock.fcntl, "flock", no_locks)
    with lock.RunLock(tmp_path):
        pass
    err = capsys.readouterr().err
    assert err.startswith(f"note: cannot lock {tmp_path / 'bench.lock'} (No locks available)"), err


def test_a_run_stopped_by_bad_input_leaves_no_folder_and_no_lock(tmp_path):
    """A mistyped --data-dir once left results/bench.lock behind; now the folder is as the run found it."""
    results = tmp_path / "new" / "results"
    run = run_bench("run", "--methods", "smote", "--datasets", "mnist", "--data-dir", tmp_path / "no-such-dir",
                    "--pairs", "3:5", "--ratios", "0.1", "--seeds", "1", "--results", results, cwd=tmp_path)
    assert run.returncode == 2 and "missing file" in run.stderr
    assert not (tmp_path / "new").exists()  # both folders it made are gone
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    run = run_bench("run", "--methods", "smote", "--datasets", "mnist", "--data-dir", tmp_path / "no-such-dir",
                    "--pairs", "3:5", "--ratios", "0.1", "--seeds", "1", "--results", kept, cwd=tmp_path)
    assert run.returncode == 2
    assert sorted(p.name for p in kept.iterdir()) == ["bench.lock", "notes.txt"]  # not only ours: left as is


def test_a_lock_file_removed_between_open_and_flock_is_opened_again(tmp_path, monkeypatch):
    """The race that removing a lock file opens: a run that got the flock of a file another run has just
    removed would hold a lock nobody else can see. It must notice, and lock the file the path names now."""
    from bench import lock

    real_flock, calls = lock.fcntl.flock, []

    def flock_after_removal(fd, operation):
        calls.append(fd)
        if len(calls) == 1:  # the other run removes the file after our open, before our flock
            os.unlink(tmp_path / "bench.lock")
        return real_flock(fd, operation)

    monkeypatch.setattr(lock.fcntl, "flock", flock_after_removal)
    with lock.RunLock(tmp_path) as held:
        assert len(calls) == 2
        assert os.fstat(held._fd).st_ino == os.stat(tmp_path / "bench.lock").st_ino
