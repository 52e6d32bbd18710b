"""How many CPU threads torch uses for a cell.

torch's default, one intra-op thread per core, is the fastest on an idle machine and collapses when another
process competes for the cores: its threads wait on each other at every operation while the scheduler runs
the other process. On 2 cores (``benchmarks/threads.py``, ``benchmarks/RESULTS.md``): ``--methods
imbalanced,crl,gan --datasets digits --ratios 0.1 --seeds 1`` took 9.8 s idle with 2 threads and 10.4 s with
one, but 31.0 s with 2 threads beside a second CPU-bound process against 14.5 s with one. OpenMP's passive
wait policy (threads sleep instead of spinning) only halved the loss (22.0 s busy) and cost 35 % idle (13.2 s).

So the default follows the machine. Before a cell (at most every ``RECHECK_S`` seconds, so small cells pay
nothing), ``runnable_elsewhere`` counts the threads of other processes that are runnable right now (Linux:
``/proc/*/task/*/stat`` state R, the median of ``SAMPLES`` samples ``SAMPLE_GAP_S`` apart), and torch gets
``cores - that count`` threads, at least one. An explicit choice is kept as it is: ``--threads N``, or
``OMP_NUM_THREADS`` when set (torch reads it too). CPU workers (``--jobs N``) get ``cores // N`` threads each
(or ``--threads``): they would count each other as load. Where ``/proc`` is missing, torch's default stays.
The count a cell ran with is stored with it (``metrics["threads"]``, and in its device string); the numbers
of a cell do not depend on it beyond floating-point summation order.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

RECHECK_S = 30.0  # how often the sequential path looks at the machine again
SAMPLES = 5
SAMPLE_GAP_S = 0.02


def fixed_threads(threads: int | None) -> int | None:
    """The user's explicit thread count: ``--threads``, else ``OMP_NUM_THREADS``; None for the adaptive default."""
    if threads is not None:
        if threads < 1:
            from bench.errors import BenchError

            raise BenchError(f"--threads must be at least 1; got {threads}")
        return threads
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def runnable_elsewhere(proc: Path = Path("/proc")) -> int | None:
    """Threads of other processes runnable right now (median of a few samples); None without ``/proc``."""
    if not (proc / "self").exists():
        return None
    mine = os.getpid()
    counts = []
    for sample in range(SAMPLES):
        if sample:
            time.sleep(SAMPLE_GAP_S)
        count = 0
        for task in proc.glob("[0-9]*/task/*/stat"):
            if task.parts[-4] == str(mine):
                continue
            try:
                text = task.read_text()
            except OSError:  # the thread ended meanwhile
                continue
            if text[text.rfind(")") + 2:text.rfind(")") + 3] == "R":  # the state follows "(name) "
                count += 1
        counts.append(count)
    return int(statistics.median(counts))


class ThreadPolicy:
    """Sets torch's thread count before each cell of the sequential path (``apply``)."""

    def __init__(self, threads: int | None = None, cores: int | None = None):
        self.fixed = fixed_threads(threads)
        self.cores = cores or os.cpu_count() or 1
        self._checked = -float("inf")

    def apply(self) -> int:
        """The thread count for the next cell, set in torch; looks at the machine again after RECHECK_S."""
        import torch

        if self.fixed is not None:
            if torch.get_num_threads() != self.fixed:
                torch.set_num_threads(self.fixed)
            return self.fixed
        now = time.monotonic()
        if now - self._checked >= RECHECK_S:
            self._checked = now
            others = runnable_elsewhere()
            if others is not None:
                torch.set_num_threads(max(1, self.cores - others))
        return torch.get_num_threads()


def worker_threads(threads: int | None, cpu_workers: int, cores: int | None = None) -> int | None:
    """Threads per CPU worker under ``--jobs``: the user's choice, else cores // workers; None for one."""
    fixed = fixed_threads(threads)
    if fixed is not None:
        return fixed
    return max(1, (cores or os.cpu_count() or 1) // cpu_workers) if cpu_workers > 1 else None
