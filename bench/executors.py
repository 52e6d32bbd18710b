"""Where cells run: in this process, in local worker processes, or on a cluster (Ray, Slurm).

Every executor takes the pending units of work, each a cell or a fused group (a list of cells that train as
one batched model, ``bench/groups.py``), and yields ``(cell, row)`` for every cell as its unit finishes, in any
order; the driver (``runner.run_grid``) alone writes the store, so a worker never touches SQLite and a lost
worker loses only its unit in flight (a group's members finish together).

- ``SequentialExecutor``: one cell after another in this process (the default, ``--jobs 1``).
- ``LocalExecutor``: ``--jobs N`` spawned worker processes, each given one device; with GPUs,
  ``--jobs-per-gpu K`` puts K workers on every visible GPU (small models leave an H100 mostly idle, so
  packing several cells per GPU raises the throughput). A worker that dies mid-cell (killed, segfault,
  out of host memory) is replaced and its cell run again, at most ``retries`` times, then recorded as
  failed with the exit code.
- ``bench.ray_executor.RayExecutor`` (``--executor ray``) and ``bench.slurm_executor.SlurmExecutor``
  (``--executor slurm``): each unit a Ray task or a Slurm job-array task, on machines that share no disk
  with the driver (``bench/shipping.py``: the datasets go out once, the rows and every file a cell wrote
  come back).

Workers load each dataset once per process (the loaders' npz caches make that fast) and run the cell
with ``cell.run_cell`` (a group with ``cell.run_group``) exactly as the sequential path does, so a seed gives the same numbers on the
same device whichever executor ran it (CPU workers set their thread count; see ``Job.threads``).
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path

from bench.cell import CellEnv, dataset_loader, failed_row, resolve_device, run_cell, run_group
from bench.errors import BenchError
from bench.grid import Cell

DEFAULT_RETRIES = 1  # a unit whose worker died is run once more before it is recorded as failed


def members(unit: Cell | list[Cell]) -> list[Cell]:
    """The cells of a unit of work: a cell alone, or a fused group's members."""
    return list(unit) if isinstance(unit, list | tuple) else [unit]


@dataclass(frozen=True)
class Job:
    """What every worker needs besides its cell (plain values: it is pickled to other processes)."""

    results_dir: str
    data_dir: str | None = None
    download: bool = False
    fid_weights: str | None = None
    method_files: tuple[str, ...] = ()  # a user's --method-file: workers import them too
    method_sources: tuple[tuple[str, str], ...] = ()  # (file name, text): method files shipped to a cluster
    threads: int | None = None  # torch CPU threads per worker (None: torch's default)


@dataclass
class _WorkerState:
    """What one worker process holds: its device, its datasets, its FID settings (built once)."""

    device: object = None
    load: object = None  # cell.dataset_loader: cell -> (train, test), each dataset read once
    fid_settings: object = None
    ready: bool = False
    node: str | None = None  # what its rows name as their node (None: the host name, ``cell.cell_row``)


_STATE = _WorkerState()


def _prepare(job: Job, device: str) -> None:
    import torch

    from bench.methods import load_method_file

    if _STATE.ready:
        return
    if job.threads:
        torch.set_num_threads(job.threads)
    for path in job.method_files:
        load_method_file(path)
    _STATE.device = resolve_device(device)
    _STATE.load = dataset_loader(job.data_dir, job.download)
    _STATE.ready = True


def execute(unit: Cell | list[Cell], job: Job, device: str = "auto", data: tuple | None = None,
            fid_cache: Path | None = None) -> dict | list[dict]:
    """Run one unit in this process (a worker): a cell's row, or a fused group's rows in its order. The
    process keeps its datasets, read from ``job.data_dir``, unless the unit's ``(train, test)`` is given
    (``data``: shipped by the driver); FID's caches go to ``fid_cache`` (default: the results folder's)."""
    from bench.quality import FidSettings

    _prepare(job, device)
    cell = members(unit)[0]  # a group's members share dataset and options
    if "fid" in cell.options.get("quality", []) and _STATE.fid_settings is None:
        _STATE.fid_settings = FidSettings(job.fid_weights, job.download, _STATE.device,
                                          fid_cache or Path(job.results_dir) / "fid-cache")
    env = CellEnv(_STATE.device, Path(job.results_dir), _STATE.fid_settings)
    train, test = data if data is not None else _STATE.load(cell)
    result = run_group(list(unit), train, test, env) if isinstance(unit, list | tuple) else run_cell(unit, train, test, env)
    if _STATE.node is not None:
        for row in result if isinstance(result, list) else [result]:
            row["node"] = _STATE.node
    return result


def name_node(node: str) -> None:
    """What this worker's rows name as their node from now on (a Ray node, a Slurm job)."""
    _STATE.node = node


def unit_rows(unit, result) -> list[tuple[Cell, dict]]:
    """``(cell, row)`` for every cell of a unit from what ``execute`` returned for it."""
    return list(zip(members(unit), result, strict=True)) if isinstance(unit, list | tuple) else [(unit, result)]


def lost_rows(unit, error: str, device: str, node: str | None = None) -> list[tuple[Cell, dict]]:
    """``(cell, failed row)`` for every cell of a unit that returned no row, with the reason."""
    return [(cell, failed_row(cell, error, device, node)) for cell in members(unit)]


# --------------------------------------------------------------------------- local worker processes


def check_workers(jobs: int | None, jobs_per_gpu: int | None) -> None:
    """``--jobs`` and ``--jobs-per-gpu``, when given, are at least 1."""
    if jobs is not None and jobs < 1:
        raise BenchError(f"--jobs must be at least 1; got {jobs}")
    if jobs_per_gpu is not None and jobs_per_gpu < 1:
        raise BenchError(f"--jobs-per-gpu must be at least 1; got {jobs_per_gpu}")


def plan_devices(jobs: int | None, jobs_per_gpu: int | None, device: str, n_gpus: int) -> list[str]:
    """One device per worker. ``--jobs-per-gpu K`` puts K workers on each of the ``n_gpus`` GPUs (cuda or
    auto); ``--jobs N`` alone spreads N workers over the GPUs round-robin, or runs them all on the CPU."""
    check_workers(jobs, jobs_per_gpu)
    wants_gpu = device == "auto" and n_gpus > 0 or device == "cuda"
    if device.startswith("cuda:"):
        gpus = [device]
    else:
        gpus = [f"cuda:{i}" for i in range(n_gpus)] if wants_gpu else []
    if jobs_per_gpu is not None:
        if not gpus:
            raise BenchError("--jobs-per-gpu needs a GPU, and none is visible here; use --jobs N on the CPU")
        planned = [gpu for gpu in gpus for _ in range(jobs_per_gpu)]
        if jobs is not None and jobs != len(planned):
            raise BenchError(f"--jobs {jobs} and --jobs-per-gpu {jobs_per_gpu} on {len(gpus)} GPU(s) disagree; "
                             "give one of them")
        return planned
    count = jobs or 1
    return [gpus[i % len(gpus)] for i in range(count)] if gpus else ["cpu"] * count


def _worker_main(conn, job: Job, device: str, driver: int) -> None:
    """A worker: receive a unit, send back its row(s), until told to stop (None) or the driver is gone."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's: it stops the workers itself
    _die_with(driver)
    try:
        while True:
            unit = conn.recv()
            if unit is None:
                return
            conn.send(execute(unit, job, device))
    except (EOFError, BrokenPipeError):  # the driver was killed: nobody can store this row, stop quietly
        return


def _die_with(driver: int) -> None:
    """A driver killed with ``kill -9`` cannot stop its workers: on Linux the kernel kills them with it
    (``PR_SET_PDEATHSIG``), so no orphan keeps a GPU busy with a cell nobody will store."""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != driver:  # the driver died before the line above
        os._exit(0)


class SequentialExecutor:
    """The units one by one, here; ``run`` yields each row as soon as it exists."""

    def __init__(self, run_one):
        self.run_one = run_one  # a cell -> its row, a group -> its rows; with the caller's data, device, bars

    def run(self, units: Iterable) -> Iterator[tuple[Cell, dict]]:
        for unit in units:
            yield from unit_rows(unit, self.run_one(unit))


class LocalExecutor:
    """``len(devices)`` spawned worker processes, one device each; dead workers are replaced."""

    def __init__(self, job: Job, devices: list[str], retries: int = DEFAULT_RETRIES):
        if not devices:
            raise BenchError("the local executor needs at least one worker")
        self.job, self.devices, self.retries = job, list(devices), retries
        self._context = multiprocessing.get_context("spawn")  # CUDA cannot be forked

    def _start(self, slot: int):
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_worker_main, args=(child, self.job, self.devices[slot], os.getpid()),
                                        daemon=True, name=f"bench-worker-{slot}")
        process.start()
        child.close()
        return process, parent

    def run(self, units: Iterable) -> Iterator[tuple[Cell, dict]]:
        queue = [(unit, 0) for unit in units]
        queue.reverse()  # pop() takes the first unit first
        workers = {slot: self._start(slot) for slot in range(min(len(self.devices), len(queue)))}
        busy: dict[int, tuple[Cell, int]] = {}
        try:
            while queue or busy:
                for slot, (_, conn) in workers.items():
                    if slot not in busy and queue:
                        unit, tries = queue.pop()
                        conn.send(unit)
                        busy[slot] = (unit, tries)
                ready = wait([conn for _, conn in workers.values()] + [p.sentinel for p, _ in workers.values()])
                for slot, (process, conn) in list(workers.items()):
                    if conn in ready and slot in busy:
                        try:
                            row = conn.recv()
                        except (EOFError, OSError):
                            row = None  # it died while sending: handled below as a death
                        if row is not None:
                            unit, _ = busy.pop(slot)
                            yield from unit_rows(unit, row)
                            continue
                    if process.sentinel in ready or not process.is_alive():
                        process.join(timeout=1)
                        conn.close()
                        lost = busy.pop(slot, None)
                        if lost is not None:
                            unit, tries = lost
                            if tries < self.retries:
                                queue.append((unit, tries + 1))  # next in line
                            else:
                                yield from lost_rows(
                                    unit, f"worker died (exit code {process.exitcode}) while running the cell, "
                                          f"{tries + 1} time(s); see the machine's memory or the method",
                                    self.devices[slot], socket.gethostname())
                        if queue or busy:
                            workers[slot] = self._start(slot)
                        else:
                            del workers[slot]
        finally:
            self._stop(workers)

    @staticmethod
    def _stop(workers) -> None:
        for _, conn in workers.values():
            try:
                conn.send(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 5
        for process, conn in workers.values():
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
            conn.close()
