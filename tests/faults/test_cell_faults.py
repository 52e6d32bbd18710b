"""Cells that go wrong inside a grid: a real divergence (GAN at lr 1e30: NaN losses), an exception inside a
method, a simulated CUDA out-of-memory error (once, then always), and a real one from the CPU allocator.
Each is recorded failed with its reason, the grid goes on to the cells after it, the run exits 1 with one
line saying so, the report lists them, and a rerun retries only them."""

from __future__ import annotations

from helpers import run_bench

from bench.store import Store

FAULTY_METHODS = """
import os

import torch

from bench.methods.imbalanced import Imbalanced


class Raises(Imbalanced):
    name = "raises"  # a bug that shows on seed 1 only

    def fit(self, train, ctx):
        if ctx.seed == 1:
            raise ValueError("operands could not be broadcast together")
        super().fit(train, ctx)


class CudaOomAt64(Imbalanced):
    name = "cuda-oom-at-64"  # CUDA's error, raised as a GPU raises it, at batch 64 and not at 32
    defaults = {"batch_size": 64}

    def fit(self, train, ctx):
        if self.params["batch_size"] >= 64:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        super().fit(train, ctx)


class CudaOomAlways(CudaOomAt64):
    name = "cuda-oom-always"

    def fit(self, train, ctx):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")


class HostOom(Imbalanced):
    name = "host-oom"  # a real allocation failure: 256 TiB from the CPU allocator
    defaults = {"batch_size": 64}

    def fit(self, train, ctx):
        torch.empty(2**48, dtype=torch.uint8)
"""

PRESET = """
description = "faulty cells"
methods = ["gan", "raises", "cuda-oom-at-64", "cuda-oom-always", "host-oom", "imbalanced"]
datasets = ["digits"]
ratios = [0.1]
seeds = 2
pairs = [[3, 5]]
epochs = 1
[sweep]
gan = {lr = [1e30]}
"""


def test_failing_cells_are_recorded_the_grid_goes_on_and_the_report_lists_them(tmp_path, tally):
    (tmp_path / "faulty.py").write_text(FAULTY_METHODS)
    (tmp_path / "faulty.toml").write_text(PRESET)
    results = tmp_path / "results"
    args = ["run", "--preset", tmp_path / "faulty.toml", "--method-file", tmp_path / "faulty.py",
            "--results", results, "--quiet"]
    run = run_bench(*args, env={"OMP_NUM_THREADS": "1"})
    tally["faults"] += 2 * 5  # per seed: divergence, exception (seed 1), OOM once, OOM always, host OOM
    assert run.returncode == 1, run.stderr
    lines = run.stderr.strip().splitlines()
    assert lines == ["Error: 7 of 12 cells failed (reasons above); every other cell is stored, and running "
                     "the same command again retries only the failed ones"]
    assert "12 cells: 5 run, 7 failed, 0 already done" in run.stdout

    with Store(results, create=False) as store:
        cells = store.cells()
    assert len(cells) == 12  # every cell has its row: the grid went on past each failure
    rows = {(m, s): r for m, s, r in zip(cells["method"], cells["seed"], cells.to_dict("records"), strict=True)}
    for seed in (0, 1):
        gan = rows[("gan[lr=1e+30]", seed)]
        assert gan["status"] == "failed" and gan["error"].startswith("diverged at epoch 1: d_loss is nan")
        assert "lower the method's learning rate" in gan["error"]
        retried = rows[("cuda-oom-at-64", seed)]
        assert retried["status"] == "done" and retried["metrics"]["oom_retry"]["batch_size"] == 32
        always = rows[("cuda-oom-always", seed)]
        assert always["status"] == "failed" and always["error"].startswith(
            "out of memory on cpu: at batch_size 64: CUDA out of memory. Tried to allocate 2.00 GiB (simulated); "
            "again at batch_size 32")
        assert always["error"].endswith("use a smaller batch_size or fewer --jobs")
        host = rows[("host-oom", seed)]
        assert host["status"] == "failed" and "DefaultCPUAllocator: can't allocate memory" in host["error"]
        assert host["error"].startswith("out of memory on cpu: at batch_size 64")
        assert rows[("imbalanced", seed)]["status"] == "done"  # the last method of each seed, after the faults
    assert rows[("raises", 0)]["status"] == "done"
    bug = rows[("raises", 1)]
    assert bug["status"] == "failed" and bug["error"].startswith("ValueError: operands could not be broadcast")
    assert "operands could not be broadcast" in (results / bug["artifacts"] / "error.txt").read_text()
    assert all("\n" not in row["error"] for row in rows.values() if row["status"] == "failed")

    report = run_bench("report", "--results", results, "--out", tmp_path / "report", "--format", "md,html")
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "report" / "report.html").read_text()
    table = (tmp_path / "report" / "table3.md").read_text()
    assert "Failed cells (7)" in page
    for text in (page, table):
        assert "diverged at epoch 1" in text and "operands could not be broadcast" in text
        assert "out of memory on cpu" in text and ("can't allocate" in text or "can&#x27;t allocate" in text)

    again = run_bench(*args, env={"OMP_NUM_THREADS": "1"})
    assert again.returncode == 1
    assert "12 cells: 0 run, 7 failed, 5 already done" in again.stdout  # only the failed cells ran again
    with Store(results, create=False) as store:
        attempts = store.attempts()
    done = attempts[attempts["status"] == "done"]
    assert len(done) == 5 and done["key"].is_unique
    tally["survived"] += 2 * 5


def test_a_method_that_refuses_its_task_is_recorded_but_is_not_a_run_error(tmp_path, tally):
    """SMOTE needs 5 neighbours; at ratio 0.025 a digits pair keeps 3 minority images. The refusal is the
    cell's answer (recorded failed, with the library's message), so the run still exits 0."""
    results = tmp_path / "results"
    run = run_bench("run", "--methods", "smote,imbalanced", "--datasets", "digits", "--ratios", "0.025",
                    "--pairs", "3:5", "--seeds", "1", "--epochs", "1", "--results", results, "--quiet",
                    env={"OMP_NUM_THREADS": "1"})
    tally["faults"] += 1
    assert run.returncode == 0 and run.stderr == "", run.stderr
    assert "2 cells: 1 run, 1 failed (1 refused by the method or protocol), 0 already done" in run.stdout
    with Store(results, create=False) as store:
        smote = store.cells().set_index("method").loc["smote"]
    assert smote["status"] == "failed" and smote["error"].startswith("SMOTE refused: Expected n_neighbors <= ")
    tally["survived"] += 1
