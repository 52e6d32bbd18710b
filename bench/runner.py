"""Plan and store a run: skip the cells already done, load each dataset once, hand the cells to an
executor, store every row as it arrives, and show progress.

``run_grid`` takes the run whole (``bench.config.RunConfig``). What one cell does is ``bench/cell.py``;
which cells train together as one fused group is ``bench/groups.py`` (``--fuse``); where cells run is
``bench/executors.py`` (and ``ray_executor.py``, ``slurm_executor.py``). Only this process writes the store, and only one run at a time
writes a results folder (``bench/lock.py``). A kill or Ctrl-C loses at most the cells in flight.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from bench import executors
from bench.cell import CellEnv, data_source, dataset_loader, resolve_device, run_cell, run_group
from bench.config import RunConfig
from bench.errors import BenchError
from bench.grid import Cell
from bench.groups import form_groups, group_size
from bench.lock import RunLock
from bench.quality import FidSettings
from bench.store import STORE_NAME, Store, check_results_dir
from bench.threads import ThreadPolicy, worker_threads


@dataclass
class RunSummary:
    total: int
    skipped: int  # already done in the store
    done: int
    failed: int
    refused: int = 0  # of the failed: tasks the method or protocol cannot do (CellRefused), not run errors


def run_grid(config: RunConfig) -> RunSummary:
    """Run ``config.cells`` not yet done and store each row as it arrives (here, ``config.jobs`` local
    workers, or Ray tasks: ``bench/executors.py``)."""
    cells = config.cells
    results_dir = check_results_dir(config.results)
    torch_device = resolve_device(config.device)
    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    local = config.executor == "local"
    devices = executors.plan_devices(config.jobs, config.jobs_per_gpu, config.device, n_gpus) if local else []
    fid_settings = None
    if any("fid" in c.options.get("quality", []) for c in cells):
        from bench.quality import features

        features.SHOW_PROGRESS = not config.quiet and len(devices) <= 1 and local
        fid_settings = FidSettings(config.fid_weights, config.download, torch_device, results_dir / "fid-cache")
        if fid_settings.notice:  # said once per run, not per cell (nor per worker)
            tqdm.write(f"note: {fid_settings.notice}")
    with RunLock(results_dir):
        # What is done (read-only), then every dataset the pending cells need, before the store is opened
        # for writing: a missing or corrupt file stops the run before any cell starts, the store untouched.
        done_keys = _done_keys(results_dir) if config.resume else set()
        pending = [c for c in cells if c.key not in done_keys]
        load = dataset_loader(config.data_dir, config.download)
        data = {data_source(cell): load(cell) for cell in pending}
        job = executors.Job(str(results_dir), None if config.data_dir is None else str(config.data_dir),
                            config.download, None if config.fid_weights is None else str(config.fid_weights),
                            config.method_files,
                            threads=worker_threads(config.threads, sum(d == "cpu" for d in devices)))
        if not local:
            pool = _cluster_executor(config, job, data, fid_settings)
        elif len(devices) > 1:
            pool = executors.LocalExecutor(job, devices)
        else:
            policy = ThreadPolicy(config.threads)  # torch's CPU threads, set before each cell (bench/threads.py)
            env = CellEnv(torch_device, results_dir, fid_settings)
            pool = executors.SequentialExecutor(lambda cell: _run_with_bars(cell, data, env, config.quiet, policy))
        if isinstance(pool, executors.LocalExecutor):
            data.clear()  # loaded only to fail fast: local workers read their own copies (a cluster's are shipped)
        # where the groups train decides their size (--fuse auto: fused on a GPU only)
        gpus = config.ray.gpus_per_cell if config.executor == "ray" else config.slurm.gpus_per_cell
        kind = torch.device(devices[0]).type if local else "cuda" if gpus > 0 else "cpu"
        groups = form_groups(pending, group_size(config.fuse, kind))
        units = [group[0] if len(group) == 1 else group for group in groups]
        with Store(results_dir) as store:
            summary = RunSummary(total=len(cells), skipped=len(cells) - len(pending), done=0, failed=0)
            return _store_rows(pool.run(units), store, summary, config.quiet)


def _cluster_executor(config: RunConfig, job: executors.Job, data: dict, fid_settings):
    """Ray or Slurm: the nodes share no disk with this driver, so the datasets (and FID's weights) go with the
    cells (``bench/shipping.py``)."""
    from bench.shipping import fid_weights_bytes

    weights = fid_weights_bytes(fid_settings)
    if config.executor == "ray":
        from bench.ray_executor import RayExecutor

        return RayExecutor(job, data, data_source, config.ray.address, config.ray.gpus_per_cell,
                           init_options=config.ray.init_options, node_wait_s=config.ray.node_wait_s, weights=weights)
    from bench.slurm_executor import SlurmExecutor

    return SlurmExecutor(job, data, data_source, config.slurm, weights=weights)


def _done_keys(results_dir: Path) -> set[str]:
    if not (results_dir / STORE_NAME).exists():
        return set()
    with Store(results_dir, create=False) as store:
        return store.done_keys()


def _store_rows(rows, store: Store, summary: RunSummary, quiet: bool) -> RunSummary:
    """Store each (cell, row) as it arrives, counting into ``summary``, with the cells bar; a full disk stops
    the run with one line."""
    with tqdm(total=summary.total - summary.skipped, desc="cells", unit="cell", disable=quiet, dynamic_ncols=True) as bar:
        for cell, row in rows:
            store.add(row)  # a full disk raises BenchError here; every row before it is committed
            if row["status"] == "done":
                summary.done += 1
            else:
                summary.failed += 1
                summary.refused += bool(row.get("refused"))
                if not quiet:
                    tqdm.write(f"failed: {cell.label()}: {row['error']}")
                if row.get("disk_full"):  # every later cell would fail the same way
                    raise BenchError(f"the disk under {store.results_dir} is full ({row['error']}); every finished "
                                     "cell is stored: free space and run the same command again to finish the rest")
            bar.update(1)
            bar.set_postfix(done=summary.done, failed=summary.failed, skipped=summary.skipped)
    return summary


def _run_with_bars(unit: Cell | list[Cell], data: dict, env: CellEnv, quiet: bool,
                   policy: ThreadPolicy | None = None) -> dict | list[dict]:
    """The sequential path: this process's datasets, an epochs bar under the cells bar (a fused group has
    none); ``policy`` sets torch's CPU threads before the cell."""
    if policy is not None:
        policy.apply()
    if isinstance(unit, list):
        return run_group(unit, *data[data_source(unit[0])], env)
    cell = unit
    with tqdm(total=cell.epochs, desc=f"  {cell.label()}", unit="ep", leave=False, disable=quiet,
              dynamic_ncols=True) as epochs_bar:
        def progress(epoch, total, logs, _bar=epochs_bar):
            _bar.total = total
            _bar.update(epoch - _bar.n)
            _bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=False)

        return run_cell(cell, *data[data_source(cell)], dataclasses.replace(env, progress=progress))
