"""Fused groups: which pending cells train together as one batched model (``--fuse``; README, "Fused cells").

A group is cells that differ only in their seed: the same method (a ``fusable`` one), parameters, dataset,
protocol, class pair, ratio, epochs and options. The method then trains them in one ``fit_group`` call
(``bench.cell.run_group``), and each stays one cell: its own key, row, ledger, artifacts and store
transaction. Under ``--jobs`` and Ray a group is one unit of work.

``--fuse``: ``off`` (every cell alone), ``N`` (at most N members per group), or ``auto`` (the default): on a
GPU, groups of up to ``AUTO_GPU_MEMBERS``. On a GPU a group is also bounded by memory: once a group or cell of the
same method, parameters and dataset has run in the process, its peak memory per member (measured) sets how many
members fit the device's free memory (``members_that_fit``), and a larger group runs in chunks that fit; a group
that still runs out of memory is split in halves and run again;
on the CPU, off: two CPU cores are bound by arithmetic at these sizes, and no CPU gain is measured yet
(``benchmarks/fused.py``). Ratios and class pairs are not grouped: their sets, and so their batches and
budgets, differ in size.
"""

from __future__ import annotations

import json

from bench.errors import BenchError
from bench.grid import Cell
from bench.methods import get_method

AUTO_GPU_MEMBERS = 10  # the paper's 10 seeds; the common classifier's members take a few MB each
MEMORY_HEADROOM = 0.8  # the share of the device's free memory a fused group plans to take


def memory_key(cell: Cell) -> str:
    """What a member's device memory depends on: the method, its parameters, the dataset (image size) and the
    options (precision); not the seed, ratio or pair."""
    return json.dumps([cell.method, cell.variant, cell.params, cell.dataset, cell.options], sort_keys=True,
                      default=str)


def members_that_fit(size: int, per_member: float | None, free: float | None) -> int:
    """The most of ``size`` members whose memory fits ``MEMORY_HEADROOM`` of ``free`` bytes, at ``per_member``
    bytes each (measured on an earlier group or cell of the same ``memory_key`` in this process); ``size``
    while nothing is measured (an out-of-memory error then halves the group)."""
    if not per_member or free is None:
        return size
    return max(1, min(size, int(MEMORY_HEADROOM * free // per_member)))


def parse_fuse(value: str | int | None) -> str | int:
    """``auto``, ``off`` or a positive member count (``--fuse``)."""
    if value is None or value in ("auto", "off"):
        return value or "auto"
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = 0
    if count < 1:
        raise BenchError(f"--fuse must be auto, off or a number of members of at least 1; got {value!r}")
    return count


def group_size(fuse: str | int, device_type: str) -> int:
    """The most members of a group under ``fuse`` on a device of ``device_type`` ("cpu", "cuda")."""
    if fuse == "off":
        return 1
    if fuse == "auto":
        return AUTO_GPU_MEMBERS if device_type == "cuda" else 1
    return int(fuse)


def _together(cell: Cell) -> str:
    """Everything a group's members share: the cell but its seed."""
    return json.dumps([cell.method, cell.variant, cell.params, cell.dataset, cell.protocol, list(cell.pair),
                       cell.ratio, cell.epochs, cell.options], sort_keys=True, default=str)


def form_groups(cells: list[Cell], most: int) -> list[list[Cell]]:
    """``cells`` in groups of at most ``most`` members that differ only in their seed (a method that is not
    ``fusable`` runs every cell alone), in the order of each group's first cell."""
    if most < 1:
        raise ValueError(f"a group has at least one member; got {most}")
    groups: list[list[Cell]] = []
    open_groups: dict[str, list[Cell]] = {}
    for cell in cells:
        if most == 1 or not get_method(cell.method).fusable:
            groups.append([cell])
            continue
        key = _together(cell)
        group = open_groups.get(key)
        if group is None or len(group) >= most:
            group = open_groups[key] = []
            groups.append(group)
        group.append(cell)
    return groups
