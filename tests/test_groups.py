"""Fused groups in the harness (``bench/groups.py``, ``cell.run_group``, ``--fuse``): which cells train together,
and a fused run stores every member as its own cell, with the solo cell's numbers to float rounding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import cli_exit, repeatable

from bench.cell import CellEnv, run_group
from bench.config import RunConfig
from bench.datasets import load_dataset
from bench.errors import BenchError
from bench.executors import Job, LocalExecutor
from bench.grid import Preset, build_grid
from bench.groups import (
    AUTO_GPU_MEMBERS,
    MEMORY_HEADROOM,
    form_groups,
    group_size,
    members_that_fit,
    memory_key,
    parse_fuse,
)
from bench.methods import registry
from bench.methods.gan import GAN
from bench.methods.imbalanced import Imbalanced
from bench.runner import run_grid
from bench.store import Store

CPU = torch.device("cpu")


def grid(methods=("imbalanced", "smote"), seeds=3, ratios=(0.1,), epochs=2):
    preset = Preset(name="t", methods=list(methods), datasets=["digits"], ratios=list(ratios), seeds=seeds,
                    pairs=[[3, 5]], epochs=epochs)
    return build_grid(preset)


class Alone(Imbalanced):
    """``imbalanced`` declared not fusable: its cells run alone."""

    name = "test-alone"
    fusable = False


def test_cells_group_by_everything_but_their_seed(monkeypatch):
    monkeypatch.setitem(registry._REGISTRY, Alone.name, Alone)  # registered for this test only
    cells = grid(("imbalanced", "test-alone"), seeds=3, ratios=(0.1, 0.2))
    groups = form_groups(cells, 8)
    fused = [g for g in groups if len(g) > 1]
    assert len(fused) == 2  # imbalanced at each ratio; test-alone is not fusable: its six cells run alone
    for group in fused:
        assert {c.method for c in group} == {"imbalanced"} and len({c.ratio for c in group}) == 1
        assert sorted(c.seed for c in group) == [0, 1, 2]
    assert sum(len(g) == 1 and g[0].method == "test-alone" for g in groups) == 6
    assert sorted(c.key for g in groups for c in g) == sorted(c.key for c in cells)  # every cell, once
    assert [len(g) for g in form_groups(grid(("imbalanced",), seeds=5), 2)] == [2, 2, 1]
    assert all(len(g) == 1 for g in form_groups(cells, 1))


def test_fuse_settings_are_checked_and_auto_is_on_for_a_gpu_only(capsys):
    assert parse_fuse("auto") == "auto" and parse_fuse("off") == "off" and parse_fuse("4") == 4
    for bad in ("0", "-2", "many"):
        with pytest.raises(BenchError, match="--fuse must be auto, off or a number"):
            parse_fuse(bad)
    assert group_size("auto", "cpu") == 1 and group_size("auto", "cuda") == AUTO_GPU_MEMBERS
    assert group_size("off", "cuda") == 1 and group_size(3, "cpu") == 3
    code, err = cli_exit(["run", "--preset", "smoke", "--fuse", "lots", "--dry-run"], capsys)
    assert code != 0 and "--fuse must be auto, off or a number of members of at least 1; got 'lots'" in err


def stored(results) -> dict:
    with Store(results, create=False) as store:
        rows = store.attempts()
    return {row.key: row for row in rows.itertuples()}


def test_a_fused_run_stores_each_member_as_its_solo_cell(tmp_path):
    # a resampler, a loss on the imbalanced set, and a generative method (its generators train one after
    # another, its classifiers fused)
    cells = grid(("imbalanced", "smote", "gan"), seeds=3)
    fused = run_grid(RunConfig.for_cells(cells, tmp_path / "fused", fuse=3, threads=1, quiet=True))
    solo = run_grid(RunConfig.for_cells(cells, tmp_path / "solo", fuse="off", threads=1, quiet=True))
    assert (fused.done, fused.failed) == (solo.done, solo.failed) == (len(cells), 0)
    fused_rows, solo_rows = stored(tmp_path / "fused"), stored(tmp_path / "solo")
    assert fused_rows.keys() == solo_rows.keys() == {c.key for c in cells}  # the same cells, same keys
    for key, row in fused_rows.items():
        alone = solo_rows[key]
        assert row.metrics["fused"] == 3 and str(row.device).endswith(", fused 3")
        assert "fused" not in alone.metrics and not str(alone.device).endswith("fused 3")
        # each member's own ledger: the solo cell's updates and images
        for role, entry in alone.metrics["budget"]["roles"].items():
            mine = row.metrics["budget"]["roles"][role]
            assert (mine["updates"], mine["images"]) == (entry["updates"], entry["images"])
        # float rounding apart (a grouped convolution adds in another order), the solo cell's numbers
        assert abs(row.metrics["roc_auc"] - alone.metrics["roc_auc"]) < 1e-3
        assert np.array_equal(row.counts, alone.counts)
    again = run_grid(RunConfig.for_cells(cells, tmp_path / "again", fuse=3, threads=1, quiet=True))
    assert again.done == len(cells)
    for key, row in stored(tmp_path / "again").items():  # the same grouping, the same device: bit for bit
        assert repeatable(row.metrics) == repeatable(fused_rows[key].metrics)
    resumed = run_grid(RunConfig.for_cells(cells, tmp_path / "fused", fuse=3, threads=1, quiet=True))
    assert (resumed.skipped, resumed.done) == (len(cells), 0)


class RefusesSeedOne(Imbalanced):
    """``imbalanced`` that fails its seed-1 cells while resampling: a member failing inside a fused group."""

    name = "test-refuses-seed-one"

    def resample(self, train, ctx):
        if ctx.seed == 1:
            raise RuntimeError("seed 1 is not welcome")
        return train


def test_a_member_that_fails_fails_alone_and_the_group_goes_on(tmp_path, monkeypatch):
    monkeypatch.setitem(registry._REGISTRY, RefusesSeedOne.name, RefusesSeedOne)  # registered for this test only
    cells = grid(("test-refuses-seed-one",), seeds=3)
    digits = (load_dataset("digits", split="train"), load_dataset("digits", split="test"))
    rows = run_group(cells, *digits, CellEnv(CPU, tmp_path))
    by_seed = {cell.seed: row for cell, row in zip(cells, rows, strict=True)}
    assert by_seed[1]["status"] == "failed" and "seed 1 is not welcome" in by_seed[1]["error"]
    assert (tmp_path / by_seed[1]["artifacts"] / "error.txt").exists()  # its traceback is kept
    assert by_seed[0]["status"] == by_seed[2]["status"] == "done"
    assert by_seed[0]["metrics"]["fused"] == 3


def test_a_group_is_one_unit_of_work_under_jobs(tmp_path):
    cells = grid(("imbalanced",), seeds=3)
    digits = (load_dataset("digits", split="train"), load_dataset("digits", split="test"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the worker below runs one thread: the same arithmetic
    try:
        here = run_group(cells, *digits, CellEnv(CPU, tmp_path / "here"))
    finally:
        torch.set_num_threads(threads)
    there = list(LocalExecutor(Job(str(tmp_path / "there"), threads=1), ["cpu", "cpu"]).run([cells]))
    assert [c.key for c, _ in there] == [c.key for c in cells]
    for (_, row), mine in zip(there, here, strict=True):
        assert row["status"] == "done" and repeatable(row["metrics"]) == repeatable(mine["metrics"])


class GanOutOfMemory(GAN):
    """``gan`` whose fused generator phase runs out of device memory with more than one member."""

    name = "test-gan-oom"

    @classmethod
    def train_generators(cls, phases):
        if len(phases) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB (simulated)")
        return super().train_generators(phases)


def test_a_generator_group_out_of_memory_is_split_in_halves(tmp_path, monkeypatch):
    """An out-of-memory error inside a fused generator phase is never a member's failure: the group is split in
    halves and run again, down to solo cells."""
    monkeypatch.setitem(registry._REGISTRY, GanOutOfMemory.name, GanOutOfMemory)
    cells = grid((GanOutOfMemory.name,), seeds=3, epochs=1)
    digits = (load_dataset("digits", split="train"), load_dataset("digits", split="test"))
    rows = run_group(cells, *digits, CellEnv(CPU, tmp_path))
    assert [row["status"] for row in rows] == ["done"] * 3
    assert all("fused" not in row["metrics"] for row in rows)  # every half ran out until each cell ran alone


def test_a_group_is_bounded_by_the_measured_memory_of_its_members():
    """``members_that_fit``: nothing measured yet, the whole group (an out-of-memory error then halves it);
    measured, as many members as fit the headroom of the free memory, at least one."""
    assert members_that_fit(10, None, 8e9) == 10 and members_that_fit(10, 1e9, None) == 10
    assert members_that_fit(10, 1e9, 8e9) == int(MEMORY_HEADROOM * 8)  # 6 of 10 at 1 GB each in 8 GB free
    assert members_that_fit(10, 1e8, 8e9) == 10
    assert members_that_fit(10, 9e9, 8e9) == 1
    seeds = grid(("imbalanced",), seeds=2, ratios=(0.1, 0.2))
    assert len({memory_key(cell) for cell in seeds}) == 1  # seeds, ratios and pairs take the same memory
