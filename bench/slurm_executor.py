"""``--executor slurm``: every unit of work (a cell or a fused group) one task of a Slurm job array, through
submitit (``pip install 'capsan-bench[slurm]'``), the library Slurm users already run.

- **Submission.** ``bench run`` is the driver, run on a login node (or in a small allocation): it submits
  the pending units as one job array (submitit's ``batch``) with ``--slurm-partition``, ``--slurm-time``
  minutes, one CPU and ``--gpus-per-cell`` whole GPUs per task, and stores each row as its task finishes.
  The tasks run this same Python (``sys.executable``), so the package must be installed where the nodes
  see it, as for any Slurm job.
- **What the nodes need.** Only the jobs folder (``--slurm-folder``, default ``<results>/slurm``), which
  submitit needs on a disk that the nodes share with the driver: it holds each task's pickled call, its
  logs and its result. The data folder and the results folder stay on the driver: each dataset is written
  into the jobs folder once and read by the tasks, and a task's files come back in its result
  (``bench/shipping.py``), written into the results folder by the driver.
- **Lost tasks.** A task that ends without a result (its node lost, ``scancel``, out of time) is seen when
  it leaves ``squeue`` without one (a cluster's ``sacct`` is not needed); it is submitted again
  ``retries`` times, then its cells are failed rows naming the job and its log. A task whose Python raised
  is a failed row with the first line of submitit's error.
- **A lost driver.** SIGTERM or Ctrl-C of ``bench run`` cancels every task still queued or running
  (``scancel``); ``kill -9`` cannot, and then the tasks run on but write only into the jobs folder, never
  the results folder, and the same command resumes the grid (the lock is the kernel's, released with the
  killed process).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import pickle
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError
from bench.executors import DEFAULT_RETRIES, Job, lost_rows, name_node
from bench.grid import Cell
from bench.shipping import deliver, run_shipped, ship_datasets, ship_method_files

_POLL_S = 0.5
_QUEUE_EVERY_S = 3.0  # squeue at most this often
_GONE_AFTER = 2  # squeue polls in a row without the task and without its result: it is lost


@dataclass(frozen=True)
class SlurmOptions:
    """``--executor slurm``: where its jobs go and what each task asks for."""

    partition: str | None = None
    time_min: int = 60
    folder: Path | None = None  # default: <results>/slurm
    gpus_per_cell: float = 0.0

    def __post_init__(self):
        if self.time_min < 1:
            raise BenchError(f"--slurm-time must be at least 1 minute; got {self.time_min}")


def _slurm_execute(unit, job: Job, gpus: float, data_file: str, weights_file: str | None) -> dict:
    """A Slurm task: its dataset (and the Inception weights) from the jobs folder, its files back with its rows."""
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    job_id = f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else os.environ.get("SLURM_JOB_ID", "?")
    name_node(f"{socket.gethostname()} (slurm job {job_id})")
    if job.threads is None:  # the task's CPUs, not the node's: torch would use every core of a shared node
        job = dataclasses.replace(job, threads=int(os.environ.get("SLURM_CPUS_PER_TASK", "1")))
    with open(data_file, "rb") as file:
        data = pickle.load(file)
    weights = None if weights_file is None else Path(weights_file).read_bytes()
    return run_shipped(unit, job, "cuda" if gpus > 0 else "cpu", data, weights)


def _stage(folder: Path, name: str, content: bytes) -> str:
    """``content`` as a file of the jobs folder (written whole, once: its name is its hash)."""
    path = folder / "data" / f"{name}-{hashlib.sha256(content).hexdigest()[:16]}"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.part")
        partial.write_bytes(content)
        os.replace(partial, path)
    return str(path)


def _in_queue(job_ids: list[str]) -> set[str] | None:
    """The job ids among ``job_ids`` that Slurm still holds (pending, running, completing); None when squeue
    cannot be asked."""
    try:
        out = subprocess.run(["squeue", "--noheader", "--array", "--format=%i", "--jobs", ",".join(job_ids)],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:  # squeue refuses a list whose jobs have all left: then none is held
        return set() if "Invalid job id" in out.stderr else None
    return {line.strip() for line in out.stdout.splitlines() if line.strip()}


class SlurmExecutor:
    """Every unit a Slurm job-array task; ``data`` maps each ``cell.data_source`` to its ``(train, test)``."""

    def __init__(self, job: Job, data: dict, data_source, options: SlurmOptions, retries: int = DEFAULT_RETRIES,
                 weights: bytes | None = None):
        self.job, self.data, self.data_source, self.options = ship_method_files(job), data, data_source, options
        self.retries, self.weights = retries, weights
        if options.gpus_per_cell < 0 or options.gpus_per_cell != int(options.gpus_per_cell):
            raise BenchError(f"--gpus-per-cell with --executor slurm is a whole number of GPUs; got "
                             f"{options.gpus_per_cell:g} (pack cells on a GPU with --fuse instead)")
        self.folder = Path(options.folder or Path(job.results_dir) / "slurm").expanduser().resolve()

    def _executor(self, submitit):
        executor = submitit.SlurmExecutor(folder=self.folder / "%j", max_num_timeout=0)
        gpus = int(self.options.gpus_per_cell)
        executor.update_parameters(time=self.options.time_min, cpus_per_task=1, ntasks_per_node=1, nodes=1,
                                   job_name="bench", **({"partition": self.options.partition}
                                                        if self.options.partition else {}),
                                   **({"gpus_per_node": gpus} if gpus else {}))
        return executor

    def run(self, units: Iterable) -> Iterator[tuple[Cell, dict]]:
        try:
            import submitit
        except ImportError:
            raise BenchError("--executor slurm needs submitit; pip install 'capsan-bench[slurm]'") from None
        units = list(units)
        if not units:
            return
        logging.getLogger("submitit").setLevel(logging.ERROR)  # a cluster without sacct: squeue is used instead
        executor = self._executor(submitit)
        datasets = ship_datasets(units, self.data, self.data_source,
                                 lambda data: _stage(self.folder, "dataset", pickle.dumps(data, protocol=5)))
        weights = None if self.weights is None else _stage(self.folder, "inception", self.weights)
        calls = [(unit, self.job, self.options.gpus_per_cell, dataset, weights)
                 for unit, dataset in zip(units, datasets, strict=True)]
        pending: dict = {}  # submitit job -> [call, tries, polls unseen]
        try:
            self._submit(executor, calls, pending, 0)
            yield from self._collect(executor, pending)
        finally:
            if pending:  # SIGTERM, Ctrl-C, an error: no task of this run goes on
                subprocess.run(["scancel", *[job.job_id for job in pending]], capture_output=True, check=False)

    def _submit(self, executor, calls: list, pending: dict, tries: int) -> None:
        try:
            with executor.batch():
                jobs = [executor.submit(_slurm_execute, *call) for call in calls]
        except Exception as exc:  # noqa: BLE001 (sbatch refused: no such partition, no controller, ...)
            raise BenchError(f"cannot submit to Slurm: {str(exc).strip().splitlines()[-1]}; check "
                             "--slurm-partition and that sbatch works here") from exc
        for job, call in zip(jobs, calls, strict=True):
            pending[job] = [call, tries, 0]

    def _collect(self, executor, pending: dict) -> Iterator[tuple[Cell, dict]]:
        import submitit

        last_queue = 0.0
        while pending:
            time.sleep(_POLL_S)
            queue = None
            if time.monotonic() - last_queue > _QUEUE_EVERY_S:
                queue, last_queue = _in_queue([job.job_id for job in pending]), time.monotonic()
            again = []
            for job, state in list(pending.items()):
                call, tries = state[0], state[1]
                unit = call[0]
                if job.paths.result_pickle.exists():
                    del pending[job]
                    try:
                        result = job.result()
                    except submitit.core.utils.UncompletedJobError as exc:
                        yield from lost_rows(unit, f"slurm: job {job.job_id} failed: {_first_line(exc)}", "slurm")
                        continue
                    yield from deliver(Path(self.job.results_dir), unit, result)
                    shutil.rmtree(job.paths.folder, ignore_errors=True)  # stored: its pickles are not needed
                    continue
                if queue is None:
                    continue
                state[2] = 0 if job.job_id in queue else state[2] + 1
                if state[2] < _GONE_AFTER:
                    continue
                del pending[job]
                if tries < self.retries:
                    again.append((call, tries + 1))
                else:
                    yield from lost_rows(unit, f"slurm: job {job.job_id} ended without a result (node lost, cancelled "
                                               f"or out of --slurm-time) {tries + 1} time(s); its log: "
                                               f"{job.paths.stderr}", "slurm")
            for call, tries in again:
                self._submit(executor, [call], pending, tries)


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__

