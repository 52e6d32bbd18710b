"""A soak: a large grid of tiny digits cells run to the end while something is killed every few seconds.

    python benchmarks/soak.py --mode jobs               # bench run --jobs 2; kills: the driver, a worker
    python benchmarks/soak.py --mode ray                # a 2-node Ray cluster (tests/ray_cluster.py); kills:
                                                        # the driver, a task's worker, a whole node
    python benchmarks/soak.py --mode jobs --cells 48 --every 2   # the short version (the fault suite's)

Every ``--every`` seconds (drawn from 0.5x to 1.5x, from ``--seed``) one kill of a kind drawn at random
(a worker three times as often as a driver or a node):
``driver`` (``kill -9`` of ``bench run``, then started again with the same command), ``worker`` (``kill -9``
of a process running a cell) or ``node`` (Ray: a worker node's whole process group, then a new node). A
driver that ends by itself (done, or with cells failed after a lost worker's retries) is started again
until every cell is done. After each driver's end the store is checked (``tests/faults/test_kills.py``'s
rules): SQLite's integrity check passes, no cell is done twice, and every cell the driver reported done
(journaled once ``Store.add`` returned: ``tests/faults/instrumented_bench.py``) is stored with the same
metrics. It prints kills injected (by kind), kills survived (the checks after it held), cells lost, cells
stored twice, drivers started and the wall time; ``--json`` writes them too. Run nothing else beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "faults")]
INSTRUMENTED = ROOT / "tests" / "faults" / "instrumented_bench.py"
PAIRS = ["3:5", "4:9", "1:7", "2:8", "0:6"]
RATIOS = [0.1, 0.2, 0.3, 0.5]


def grid_args(cells: int) -> tuple[list[str], int]:
    """A digits grid of about ``cells`` cells of imbalanced at one epoch (pairs x ratios x seeds)."""
    per_seed = len(PAIRS) * len(RATIOS)
    seeds = max(1, -(-cells // per_seed))
    return (["--methods", "imbalanced", "--datasets", "digits", "--pairs", ",".join(PAIRS),
             "--ratios", ",".join(map(str, RATIOS)), "--seeds", str(seeds), "--epochs", "1", "--quiet"],
            seeds * per_seed)


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def _journal(path: Path) -> dict:
    if not path.exists():
        return {}
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {e["key"]: e["metrics"] for e in entries if e["status"] == "done"}


def check_store(results: Path, journal: Path) -> tuple[int, int, int]:
    """(cells done, cells reported done but missing or changed, done cells stored more than once).

    The journal is read first: a line is written only once its row is committed, so every cell it names is in
    the store read after it, however many cells a running driver stores in between."""
    reported = _journal(journal)
    if not (results / "bench.sqlite").exists():
        return 0, len(reported), 0
    with sqlite3.connect(f"file:{results / 'bench.sqlite'}?mode=ro", uri=True, timeout=30) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok", "the store is damaged"
        rows = conn.execute("SELECT key, metrics FROM results WHERE status = 'done'").fetchall()
    stored = {}
    twice = 0
    for key, metrics in rows:
        twice += key in stored
        stored[key] = json.loads(metrics)
    same = lambda a, b: json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # noqa: E731 (NaN == NaN)
    lost = sum(1 for key, metrics in reported.items() if key not in stored or not same(stored[key], metrics))
    return len(stored), lost, twice


class Soak:
    def __init__(self, args):
        self.args, self.rng = args, random.Random(args.seed)
        self.folder = Path(tempfile.mkdtemp(prefix="soak-"))
        self.results, self.journal = self.folder / "results", self.folder / "journal.jsonl"
        self.grid, self.total = grid_args(args.cells)
        self.kills = {"driver": 0, "worker": 0, "node": 0}
        self.survived = self.lost = self.twice = self.drivers = 0
        self.cluster = None
        self.env = {**os.environ, "FAULT_JOURNAL": str(self.journal), "OMP_NUM_THREADS": "1"}
        if args.mode == "ray":
            from ray_cluster import RayCluster

            self.cluster = RayCluster()
            self.cluster.add_worker()
            self.cluster.add_worker()
            self.env.update(self.cluster.env)

    def _command(self) -> list[str]:
        where = (["--jobs", "2"] if self.args.mode == "jobs" else
                 ["--executor", "ray", "--ray-address", self.cluster.address, "--ray-node-wait", "30"])
        return [sys.executable, str(INSTRUMENTED), "run", *self.grid, *where, "--results", str(self.results)]

    def _start(self) -> subprocess.Popen:
        self.drivers += 1
        return subprocess.Popen(self._command(), env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)

    def _kinds(self) -> list[str]:
        """The kinds to draw from: a driver is killed a third as often as a worker (a new driver spends
        seconds starting its workers), a Ray node as often as a driver."""
        return ["driver", "worker", "worker", "worker", "node"][:5 if self.args.mode == "ray" else 4]

    def _kill(self, driver: subprocess.Popen, kind: str) -> bool:
        """One kill of ``kind``; False when there was nothing of that kind to kill just now."""
        if kind == "driver":
            driver.send_signal(signal.SIGKILL)
            driver.wait()
            return True
        if kind == "worker":
            victims = self.cluster.task_pids() if self.args.mode == "ray" else _children(driver.pid)
            victims = [pid for pid in victims if pid != driver.pid]
            if not victims:
                return False
            try:
                os.kill(self.rng.choice(victims), signal.SIGKILL)
            except ProcessLookupError:
                return False
            return True
        self.cluster.kill(self.cluster.workers.pop(self.rng.randrange(len(self.cluster.workers))))
        self.cluster.add_worker()  # the cluster gets a new node, as an autoscaler would
        return True

    def _checked(self, what: str) -> int:
        done, lost, twice = check_store(self.results, self.journal)
        self.lost += lost
        self.twice += twice
        if lost or twice:
            print(f"  after {what}: {lost} cells lost, {twice} stored twice", flush=True)
        return done

    def run(self) -> dict:
        started = time.monotonic()
        driver, next_kill, done = self._start(), time.monotonic() + self._gap(), 0
        while done < self.total and time.monotonic() - started < self.args.limit:
            time.sleep(0.1)
            if driver.poll() is not None:  # ended by itself (done, or cells failed after retries): again
                done = self._checked("a driver's end")
                driver = self._start() if done < self.total else driver
                continue
            if time.monotonic() < next_kill:
                continue
            next_kill = time.monotonic() + self._gap()
            kind = self.rng.choice(self._kinds())
            if not self._kill(driver, kind):
                continue
            self.kills[kind] += 1
            lost_before = self.lost + self.twice
            if kind == "driver":
                done = self._checked("a driver kill")
                driver = self._start()
            else:
                done = self._checked(f"a {kind} kill")
            self.survived += self.lost + self.twice == lost_before
        if driver.poll() is None:
            driver.wait(timeout=120)
        done = self._checked("the end")
        if self.cluster is not None:
            self.cluster.shutdown()
        if not self.args.keep:
            shutil.rmtree(self.folder, ignore_errors=True)
        return {"mode": self.args.mode, "cells": self.total, "cells_done": done, "kills": dict(self.kills),
                "kills_injected": sum(self.kills.values()), "kills_survived": self.survived,
                "cells_lost": self.lost, "cells_stored_twice": self.twice, "drivers_started": self.drivers,
                "wall_s": round(time.monotonic() - started, 1), "seed": self.args.seed, "every_s": self.args.every,
                "results": str(self.results) if self.args.keep else None}

    def _gap(self) -> float:
        return self.args.every * self.rng.uniform(0.5, 1.5)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["jobs", "ray"], default="jobs")
    parser.add_argument("--cells", type=int, default=1000, help="at least this many cells (default 1000)")
    parser.add_argument("--every", type=float, default=5.0, help="mean seconds between kills (default 5)")
    parser.add_argument("--seed", type=int, default=20261205)
    parser.add_argument("--limit", type=float, default=7200, help="give up after this many seconds")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the results folder (default: removed at the end)")
    args = parser.parse_args(argv)
    figures = Soak(args).run()
    print(f"soak ({figures['mode']}): {figures['cells_done']} of {figures['cells']} cells done in "
          f"{figures['wall_s']} s; kills injected {figures['kills_injected']} {figures['kills']}, survived "
          f"{figures['kills_survived']}; cells lost {figures['cells_lost']}, stored twice "
          f"{figures['cells_stored_twice']}; drivers started {figures['drivers_started']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, sort_keys=True) + "\n")
    return figures


if __name__ == "__main__":
    main()
