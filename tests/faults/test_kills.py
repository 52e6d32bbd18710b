"""kill -9 of ``bench run`` at random moments of a smoke grid, some of them inside a store write.

After every kill: the store opens and passes SQLite's integrity check, every cell the run reported done
(journaled once ``Store.add`` returned, by ``instrumented_bench.py``) is there with the same metrics, no cell
is done twice, and the rerun runs only the cells not yet done. The moments are drawn from a seeded
generator (``FAULT_SEED`` picks another draw); a failure prints the seed and the kill that broke it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.store import Store

HERE = Path(__file__).resolve().parent
KILLS = 22  # at least 20 kills, across the grid below
# A smoke grid: the bundled digits, the fast baselines, every cell well under a second.
GRID = ["--methods", "imbalanced,smote", "--datasets", "digits", "--ratios", "0.1,0.3", "--pairs", "3:5,4:9",
        "--seeds", "2", "--epochs", "10", "--quiet"]
TOTAL = 16


def _start(results: Path, journal: Path, kill_write: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "FAULT_JOURNAL": str(journal), "OMP_NUM_THREADS": "1"}
    env.pop("FAULT_KILL_WRITE", None)
    if kill_write:
        env["FAULT_KILL_WRITE"] = kill_write
    return subprocess.Popen([sys.executable, str(HERE / "instrumented_bench.py"), "run", *GRID,
                             "--results", str(results)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def _journal(journal: Path) -> list[dict]:
    return [json.loads(line) for line in journal.read_text().splitlines()] if journal.exists() else []


def _check_store(results: Path, journal: Path, what: str, tally=None) -> dict:
    """The invariants after a kill; returns {key: metrics} of the done cells. Lost cells go to the tally."""
    if not (results / "bench.sqlite").exists():
        assert not _journal(journal), f"{what}: cells were reported done but there is no store"
        return {}
    with sqlite3.connect(results / "bench.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok", what
    with Store(results, create=False) as store:
        attempts = store.attempts()
    done = attempts[attempts["status"] == "done"]
    assert not done["key"].duplicated().any(), f"{what}: a done cell ran again"
    stored = dict(zip(done["key"], done["metrics"], strict=True))
    reported = {e["key"]: e["metrics"] for e in _journal(journal) if e["status"] == "done"}
    lost = sorted(set(reported) - set(stored))
    if tally is not None:
        tally["cells_lost"] += len(lost)
    assert not lost, f"{what}: cells {lost} were reported done and are lost"
    for key, metrics in reported.items():
        assert stored[key] == json.loads(json.dumps(metrics)), f"{what}: the metrics of {key} changed"
    return stored


def _wait_for_journal(proc, journal: Path, lines: int, deadline: float) -> None:
    while len(_journal(journal)) < lines and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)


def test_kill_9_at_random_moments_loses_no_reported_cell(tmp_path, tally):
    seed = int(os.environ.get("FAULT_SEED", "20261126"))
    rng = random.Random(seed)
    rounds, kills, in_write, log = 0, 0, 0, []
    results = journal = None
    deadline = time.time() + 480  # a guard against a hang, not a timing
    while kills < KILLS:
        assert time.time() < deadline, f"seed {seed}: only {kills} kills in 480 s; log {log}"
        if results is None or len(_check_store(results, journal, "round check")) == TOTAL:
            rounds += 1  # the grid finished: the next kills go to a fresh results folder
            results, journal = tmp_path / f"results{rounds}", tmp_path / f"journal{rounds}.jsonl"
        before = _check_store(results, journal, "before")
        mode = rng.choice(["time", "after-cells", "after-cells", "in-write"])
        if mode == "in-write":  # a kill inside the n-th store write of this process
            where = ("insert", "commit", "after")[in_write % 3]  # each point of a write, in turn
            in_write += 1
            kill = f"{rng.randint(1, 3)}:{where}:{rng.randint(1, 40)}"
            proc = _start(results, journal, kill)
            proc.communicate(timeout=120)
            what = f"seed {seed}, kill {kills}: in store write {kill}"
        else:
            proc = _start(results, journal)
            if mode == "time":  # anywhere: imports, data loading, a cell, a write, the summary
                delay = rng.uniform(0.5, 6.0)
                try:
                    proc.wait(timeout=delay)
                except subprocess.TimeoutExpired:
                    pass
                what = f"seed {seed}, kill {kills}: at {delay:.2f} s"
            else:  # in the middle of the grid: after the k-th stored cell, plus a fraction of a cell
                k, delay = rng.randint(1, 4), rng.uniform(0.0, 0.6)
                _wait_for_journal(proc, journal, len(_journal(journal)) + k, time.time() + 120)
                time.sleep(delay)
                what = f"seed {seed}, kill {kills}: {delay:.2f} s after {k} more cells"
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=60)
        log.append(what)
        if proc.returncode != -signal.SIGKILL:  # the run finished before the kill: not a fault
            assert proc.returncode == 0, f"{what}: exit {proc.returncode}"
            continue
        kills += 1
        tally["faults"] += 1
        after = _check_store(results, journal, what, tally)
        assert set(before) <= set(after), f"{what}: a stored cell disappeared"
        if mode == "in-write" and where == "commit":
            assert len(after) == len(before) + int(kill.split(":")[0]) - 1, f"{what}: the killed write committed"
        if mode == "in-write" and where == "after":
            assert len(after) == len(before) + int(kill.split(":")[0]), f"{what}: the committed write is lost"
        tally["survived"] += 1

    # The rerun finishes only what is missing, and every cell ends done exactly once.
    done = _check_store(results, journal, "before the final rerun")
    proc = _start(results, journal)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert f"{TOTAL} cells: {TOTAL - len(done)} run, 0 failed, {len(done)} already done" in out
    final = _check_store(results, journal, "after the final rerun", tally)
    assert len(final) == TOTAL
    assert all(final[key] == metrics for key, metrics in done.items())


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


# With FAULT_SLEEP set, each cell of this method sleeps that long first: the workers are mid-cell when the
# driver is killed, and would compute on for that long if they outlived it.
SLEEPY_METHOD = """
import os
import time

from bench.methods.imbalanced import Imbalanced


class Sleepy(Imbalanced):
    name = "sleepy"

    def fit(self, train, ctx):
        time.sleep(float(os.environ.get("FAULT_SLEEP", "0")))
        super().fit(train, ctx)
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads worker processes from /proc (Linux)")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_kill_9_or_sigterm_of_a_run_with_workers_takes_the_workers_with_it(tmp_path, tally, sig):
    """``--jobs 2``: the workers die with their driver, killed (the kernel's parent-death signal) or stopped by
    it (SIGTERM: a scheduler's preemption, exit code 143), so no orphan computes on a cell nobody will store;
    the store keeps what was reported, the lock is released, and the rerun runs only the rest."""
    results, journal, method_file = tmp_path / "results", tmp_path / "journal.jsonl", tmp_path / "sleepy.py"
    method_file.write_text(SLEEPY_METHOD)
    grid = ["--methods", "imbalanced,sleepy", "--method-file", str(method_file), "--datasets", "digits",
            "--ratios", "0.1", "--pairs", "3:5", "--seeds", "2", "--epochs", "1", "--jobs", "2", "--quiet",
            "--results", str(results)]
    env = {**os.environ, "FAULT_JOURNAL": str(journal), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(HERE / "instrumented_bench.py"), "run", *grid],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**env, "FAULT_SLEEP": "300"})
    _wait_for_journal(proc, journal, 2, time.time() + 180)  # both imbalanced cells: both workers now sleep
    workers = _children(proc.pid)
    assert proc.poll() is None and len(workers) >= 2, "the run ended before the kill"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    tally["faults"] += 1
    assert proc.returncode == (-9 if sig == signal.SIGKILL else 143), err
    deadline = time.time() + 30  # a guard; without the fix they would sleep on for 300 s
    while any(_alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not [w for w in workers if _alive(w)], "workers outlived their killed driver"
    done = _check_store(results, journal, f"{sig.name} of a --jobs 2 run", tally)
    assert len(done) == 2

    rerun = subprocess.run([sys.executable, str(HERE / "instrumented_bench.py"), "run", *grid],
                           capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "4 cells: 2 run, 0 failed, 2 already done" in rerun.stdout
    assert len(_check_store(results, journal, "after the rerun", tally)) == 4
    tally["survived"] += 1


# With FAULT_SLEEP set, every member of this method's fused group sleeps that long while it resamples: the
# group is mid-fit when the driver is killed.
SLEEPY_GROUP_METHOD = """
import os
import time

from bench.methods.imbalanced import Imbalanced


class SleepyGroup(Imbalanced):
    name = "sleepy-group"

    def resample(self, train, ctx):
        time.sleep(float(os.environ.get("FAULT_SLEEP", "0")))
        return train
"""


def test_kill_9_inside_a_fused_group_loses_only_its_unstored_members(tmp_path, tally):
    """``--fuse 3``: a kill while a group trains loses that group's members and nothing stored; the resumed run
    groups again what is pending (here with one more seed: the new seed of the stored method runs alone)."""
    results, journal, method_file = tmp_path / "results", tmp_path / "journal.jsonl", tmp_path / "sleepy.py"
    method_file.write_text(SLEEPY_GROUP_METHOD)

    def grid(seeds: int) -> list[str]:
        return ["--methods", "imbalanced,sleepy-group", "--method-file", str(method_file), "--datasets", "digits",
                "--ratios", "0.1", "--pairs", "3:5", "--seeds", str(seeds), "--epochs", "1", "--fuse", "3",
                "--quiet", "--results", str(results)]

    env = {**os.environ, "FAULT_JOURNAL": str(journal), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(HERE / "instrumented_bench.py"), "run", *grid(3)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**env, "FAULT_SLEEP": "300"})
    _wait_for_journal(proc, journal, 3, time.time() + 180)  # imbalanced's group is stored; sleepy-group sleeps
    time.sleep(0.5)
    assert proc.poll() is None, "the run ended before the kill"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    tally["faults"] += 1
    done = _check_store(results, journal, "kill -9 inside a fused group", tally)
    assert len(done) == 3 and all(metrics["fused"] == 3 for metrics in done.values())

    rerun = subprocess.run([sys.executable, str(HERE / "instrumented_bench.py"), "run", *grid(4)],
                           capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "8 cells: 5 run, 0 failed, 3 already done" in rerun.stdout
    with Store(results, create=False) as store:
        cells = store.cells()
    sizes = {(row.method, row.seed): (row.metrics or {}).get("fused", 1) for row in cells.itertuples()}
    assert sizes == {("imbalanced", 0): 3, ("imbalanced", 1): 3, ("imbalanced", 2): 3, ("imbalanced", 3): 1,
                     ("sleepy-group", 0): 3, ("sleepy-group", 1): 3, ("sleepy-group", 2): 3, ("sleepy-group", 3): 1}
    assert len(_check_store(results, journal, "after the rerun", tally)) == 8
    tally["survived"] += 1
