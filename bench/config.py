"""``RunConfig``: one run, whole: what it runs, where, and how.

The command line builds it once from the preset and the options and hands it to ``runner.run_grid`` (or to
the dry run); nothing between the command line and a cell takes a long list of settings. It is frozen and
validated when built, so a bad value is one ``BenchError`` before anything runs.

- what: ``preset`` (``grid.Preset``: methods, datasets, protocol, ratios or sizes, seeds, pairs, epochs,
  sweeps, test sets, image size, the quality ``metrics``, ``precision`` and ``compile``; everything in it
  that changes a result is part of the cell key);
- where: ``results`` (the results folder), ``data_dir`` / ``download`` (the datasets), ``fid_weights``;
- how: ``device``, ``threads``, ``jobs`` / ``jobs_per_gpu`` / ``executor`` / ``ray`` / ``slurm`` (where cells
  run: ``bench/executors.py``, ``bench/ray_executor.py``, ``bench/slurm_executor.py``), ``fuse`` (which cells train together as one batched model: ``bench/groups.py``),
  ``resume``, ``quiet``, ``method_files`` (a user's methods, imported by workers too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from bench.cell import resolve_device
from bench.errors import BenchError
from bench.executors import check_workers
from bench.grid import Cell, Preset, build_grid
from bench.groups import parse_fuse
from bench.ray_executor import NODE_WAIT_S
from bench.slurm_executor import SlurmOptions
from bench.threads import fixed_threads

EXECUTORS = ("local", "ray", "slurm")


@dataclass(frozen=True)
class RayOptions:
    """``--executor ray``: the cluster to join (None: start a local one), each cell's GPU share, how long a
    cluster with no node able to run a cell is waited on, and extra ``ray.init`` arguments (a runtime
    environment; tests start a small local Ray)."""

    address: str | None = None
    gpus_per_cell: float = 0.0
    init_options: dict = field(default_factory=dict)
    node_wait_s: float = NODE_WAIT_S


@dataclass(frozen=True)
class RunConfig:
    """One run. ``cells`` is the preset's grid, built (and so validated) once."""

    preset: Preset
    results: Path = Path("results")
    data_dir: Path | None = None
    download: bool = False
    fid_weights: Path | None = None
    device: str = "auto"
    threads: int | None = None
    jobs: int | None = None
    jobs_per_gpu: int | None = None
    executor: str = "local"
    ray: RayOptions = field(default_factory=RayOptions)
    slurm: SlurmOptions = field(default_factory=SlurmOptions)
    fuse: str | int = "auto"  # --fuse: auto, off or the most members of a fused group (bench/groups.py)
    method_files: tuple[str, ...] = ()
    resume: bool = True
    quiet: bool = False

    def __post_init__(self):
        for name in ("results", "data_dir", "fid_weights"):  # str from click or a caller: Paths from here on
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value).expanduser())
        object.__setattr__(self, "method_files", tuple(map(str, self.method_files)))
        # each setting checked by the module that owns it (the GPU share by the Ray executor, when it starts)
        if self.executor not in EXECUTORS:
            raise BenchError(f"unknown executor '{self.executor}'; valid: {', '.join(EXECUTORS)}")
        resolve_device(self.device)
        check_workers(self.jobs, self.jobs_per_gpu)
        fixed_threads(self.threads)
        object.__setattr__(self, "fuse", parse_fuse(self.fuse))

    @cached_property
    def cells(self) -> list[Cell]:
        return build_grid(self.preset)

    @classmethod
    def for_cells(cls, cells: list[Cell], results, **settings) -> RunConfig:
        """A run of cells already built (tests, benchmarks): the preset is only their description."""
        config = cls(Preset(name="cells"), results, **settings)
        object.__setattr__(config, "cells", list(cells))  # cached_property's slot: the grid is these cells
        return config
