"""``--executor ray``: every unit of work (a cell or a fused group) one Ray task, on a local Ray or a cluster.

- **Where.** Without ``--ray-address`` a Ray instance is started in this process for the run; with it
  (``auto``, ``HOST:PORT``, ``ray://HOST:10001``) the driver joins an existing cluster. Each task asks for
  ``--gpus-per-cell`` GPUs (Ray sets its ``CUDA_VISIBLE_DEVICES``) and one CPU; every stored row names the
  node that ran it (``host (ray node 1a2b3c4d)``). ``--ray-runtime-env`` passes a Ray runtime environment
  (``{"pip": ["capsan-bench"]}``, ``{"py_modules": [...]}``) for nodes where the package is not installed.
- **No shared disk.** The datasets go to Ray's object store once, not read from ``--data-dir`` on every
  node; a task's files come back with its rows (``bench/shipping.py``).
- **Lost workers and nodes.** Ray runs a task whose worker or node died again (``max_retries``, on another
  node when its own is gone); after that the cell is a failed row naming Ray's error. Rows are stored by the
  driver alone, as their tasks finish (``ray.wait``), so a retried task is stored once and a finished one is
  never lost. A cluster left with no live node that can run a task (every worker node gone) is waited on for
  ``--ray-node-wait`` seconds, then every cell still out is a failed row saying so: the run ends instead of
  hanging, and the same command finishes it once nodes are back.
- **A lost driver.** Ray ties a job's tasks to its driver: when ``bench run`` is killed (``kill -9``
  included) the cluster stops its tasks, and they wrote only to their own scratch folders; SIGTERM and
  Ctrl-C cancel them first (``finally``). The results folder's lock is the kernel's, released with the
  process, so the same command resumes.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from bench.errors import BenchError
from bench.executors import DEFAULT_RETRIES, Job, lost_rows, name_node
from bench.grid import Cell
from bench.shipping import deliver, run_shipped, ship_datasets, ship_method_files

NODE_WAIT_S = 120.0  # how long a cluster with no node able to run a task is waited on (--ray-node-wait)
_POLL_S = 1.0


def _ray_execute(unit, job: Job, gpus: float, data: tuple, weights: bytes | None) -> dict:
    """A Ray task: ``data`` and ``weights`` arrive resolved from the object store. Ray sets
    CUDA_VISIBLE_DEVICES for a task given GPUs, so "cuda" is its share."""
    import ray

    name_node(f"{socket.gethostname()} (ray node {ray.get_runtime_context().get_node_id()[:8]})")
    return run_shipped(unit, job, "cuda" if gpus > 0 else "cpu", data, weights)


class RayExecutor:
    """Every unit (a cell or a fused group) a Ray task; results stream back with ``ray.wait`` as tasks finish.

    ``data`` maps each unit's ``cell.data_source`` to its ``(train, test)`` (loaded by the driver);
    ``weights`` are the Inception weights to ship, if any."""

    def __init__(self, job: Job, data: dict, data_source, address: str | None = None, gpus_per_cell: float = 0.0,
                 cpus_per_cell: float = 1.0, retries: int = DEFAULT_RETRIES, init_options: dict | None = None,
                 node_wait_s: float = NODE_WAIT_S, weights: bytes | None = None):
        if gpus_per_cell < 0 or cpus_per_cell <= 0:
            raise BenchError(f"--gpus-per-cell must be >= 0 and CPUs per cell > 0; got {gpus_per_cell}, {cpus_per_cell}")
        if node_wait_s <= 0:
            raise BenchError(f"--ray-node-wait must be a positive number of seconds; got {node_wait_s}")
        job = ship_method_files(job)
        self.job, self.address, self.gpus, self.cpus, self.retries = job, address, gpus_per_cell, cpus_per_cell, retries
        self.data, self.data_source, self.weights, self.node_wait_s = data, data_source, weights, node_wait_s
        self.init_options = init_options or {}

    def _start(self, ray) -> bool:
        """Join the cluster (or start a local Ray); True when this run started it (and so shuts it down)."""
        if ray.is_initialized():
            return False
        options = {"include_dashboard": False, "log_to_driver": False, **self.init_options}
        if self.address:
            options["address"] = self.address
        # ray.init puts its own SIGTERM handler (exit at once) in place of bench's (stop like Ctrl-C, exit 143)
        previous = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
        try:
            ray.init(**options)
        except (ConnectionError, RuntimeError) as exc:
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
            raise BenchError(f"cannot start or reach {where}: {str(exc).strip().splitlines()[0]}; start it "
                             "(ray start --head) or check --ray-address") from exc
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        return True

    def _can_run(self, ray) -> bool:
        """Whether some live node has the resources one task asks for."""
        try:
            nodes = ray.nodes()
        except Exception:  # noqa: BLE001 (the head itself unreachable: no node can run anything)
            return False
        return any(node.get("Alive") and node["Resources"].get("CPU", 0) >= self.cpus
                   and node["Resources"].get("GPU", 0) >= self.gpus for node in nodes)

    def run(self, units: Iterable) -> Iterator[tuple[Cell, dict]]:
        try:
            import ray
        except ImportError:
            raise BenchError("--executor ray needs Ray; pip install 'capsan-bench[ray]'") from None
        units = list(units)
        if not units:
            return
        started_here = self._start(ray)
        task = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=self.retries,
                          retry_exceptions=False)(_ray_execute)
        weights = None if self.weights is None else ray.put(self.weights)
        datasets = ship_datasets(units, self.data, self.data_source, ray.put)
        refs = {task.remote(unit, self.job, self.gpus, dataset, weights): unit
                for unit, dataset in zip(units, datasets, strict=True)}
        try:
            yield from self._collect(ray, refs)
        finally:
            for ref in refs:  # SIGTERM, Ctrl-C, an error: no task of this run goes on anywhere
                ray.cancel(ref, force=True)
            if started_here:
                ray.shutdown()

    def _collect(self, ray, refs: dict) -> Iterator[tuple[Cell, dict]]:
        stalled_since = None
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=_POLL_S)
            if not ready:
                if self._can_run(ray):
                    stalled_since = None
                elif stalled_since is None:
                    stalled_since = time.monotonic()
                elif time.monotonic() - stalled_since > self.node_wait_s:
                    reason = (f"ray: no live node of the cluster can run it (needs {self.cpus:g} CPU, {self.gpus:g} GPU) "
                              f"for {self.node_wait_s:g} s; start the cluster's nodes and run the same command again")
                    for ref in list(refs):
                        ray.cancel(ref, force=True)
                        yield from lost_rows(refs.pop(ref), reason, "ray")
                continue
            stalled_since = None
            for ref in ready:
                unit = refs.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as exc:  # lost worker or node after the retries, ...
                    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    yield from lost_rows(unit, f"ray: {type(exc).__name__} after {self.retries} retr"
                                               f"{'y' if self.retries == 1 else 'ies'}: {reason}", "ray")
                    continue
                yield from deliver(Path(self.job.results_dir), unit, result)
