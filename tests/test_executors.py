"""Executors: local worker processes (same numbers as the sequential path, dead workers replaced and their
cells retried, nothing finished lost) and the device plan; Ray in its own test file."""

from __future__ import annotations

import os

import pytest
import torch
from helpers import cli_exit, copy_shared, repeatable, run_bench

from bench.config import RunConfig
from bench.errors import BenchError
from bench.executors import Job, LocalExecutor, SequentialExecutor, plan_devices
from bench.grid import Preset, build_grid
from bench.runner import run_grid
from bench.store import Store

DIES = """
import os
import signal
from pathlib import Path

from bench.methods.imbalanced import Imbalanced


class DiesOnce(Imbalanced):
    '''Kills its own worker process the first time it meets a seed, then fits like imbalanced.'''

    name = "dies-once"

    def fit(self, train, ctx):
        marker = Path(os.environ["BENCH_TEST_MARKERS"]) / f"seed{ctx.seed}"
        if not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        super().fit(train, ctx)


class AlwaysDies(Imbalanced):
    name = "always-dies"

    def fit(self, train, ctx):
        os.kill(os.getpid(), signal.SIGKILL)
"""


def grid(methods=("imbalanced", "smote"), seeds=2):
    config = Preset(name="t", methods=list(methods), datasets=["digits"], ratios=[0.1], seeds=seeds,
                       pairs=[[3, 5], [4, 9]], epochs=2)
    return build_grid(config)


def test_plan_devices_packs_workers_per_gpu_and_refuses_what_cannot_be():
    assert plan_devices(None, None, "auto", 0) == ["cpu"]
    assert plan_devices(3, None, "auto", 0) == ["cpu"] * 3
    assert plan_devices(3, None, "cpu", 2) == ["cpu"] * 3  # --device cpu wins over the GPUs
    assert plan_devices(3, None, "auto", 2) == ["cuda:0", "cuda:1", "cuda:0"]  # round-robin
    assert plan_devices(None, 2, "cuda", 2) == ["cuda:0", "cuda:0", "cuda:1", "cuda:1"]
    assert plan_devices(None, 4, "cuda:1", 2) == ["cuda:1"] * 4
    with pytest.raises(BenchError, match="needs a GPU"):
        plan_devices(None, 2, "auto", 0)
    with pytest.raises(BenchError, match="disagree"):
        plan_devices(3, 2, "cuda", 2)
    with pytest.raises(BenchError, match="at least 1"):
        plan_devices(0, None, "cpu", 0)


def test_two_local_workers_give_the_sequential_numbers(tmp_path, digits):
    from bench.cell import CellEnv, run_cell

    cells = grid()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers below run one thread each: the same arithmetic
    try:
        sequential = {cell.key: row for cell, row in SequentialExecutor(
            lambda cell: run_cell(cell, *digits, CellEnv(torch.device("cpu"), tmp_path / "seq"))).run(cells)}
    finally:
        torch.set_num_threads(threads)
    job = Job(str(tmp_path / "par"), threads=1)
    parallel = list(LocalExecutor(job, ["cpu", "cpu"]).run(cells))
    assert sorted(c.key for c, _ in parallel) == sorted(c.key for c in cells)  # every cell, once
    for cell, row in parallel:
        assert row["status"] == "done", row["error"]
        assert repeatable(row["metrics"]) == repeatable(sequential[cell.key]["metrics"])  # bit for bit
        assert row["curves"] == sequential[cell.key]["curves"]


def test_run_grid_with_jobs_stores_every_cell_from_the_driver(tmp_path):
    cells = grid()
    summary = run_grid(RunConfig.for_cells(cells, tmp_path, jobs=2, quiet=True))
    assert (summary.done, summary.failed) == (len(cells), 0)
    with Store(tmp_path, create=False) as store:
        rows = store.attempts()
    assert sorted(rows["key"]) == sorted(c.key for c in cells) and set(rows["status"]) == {"done"}
    again = run_grid(RunConfig.for_cells(cells, tmp_path, jobs=2, quiet=True))  # resume: nothing left to run
    assert (again.skipped, again.done) == (len(cells), 0)


def run_dying_grid(tmp_path, seeds: int, *executor):
    """``bench run`` of imbalanced, dies-once and always-dies on one digits pair; returns (run, markers, results)."""
    method_file = tmp_path / "dies.py"
    method_file.write_text(DIES)
    markers = tmp_path / "markers"
    markers.mkdir()
    results = tmp_path / "results"
    run = run_bench("run", "--methods", "imbalanced,dies-once,always-dies", "--method-file", method_file,
                    "--datasets", "digits", "--ratios", "0.1", "--seeds", seeds, "--pairs", "3:5", "--epochs", "1",
                    *executor, "--results", results, "--quiet", cwd=tmp_path,
                    env={"BENCH_TEST_MARKERS": str(markers)})
    return run, markers, results


def test_a_killed_worker_is_replaced_its_cell_retried_and_nothing_finished_lost(tmp_path):
    run, markers, results = run_dying_grid(tmp_path, 2, "--jobs", "2")
    assert run.returncode == 1 and "Error: 2 of 6 cells failed" in run.stderr, run.stderr  # always-dies
    assert sorted(p.name for p in markers.iterdir()) == ["seed0", "seed1"]  # each seed's first try was killed
    with Store(results, create=False) as store:
        rows = store.attempts()
    by_method = rows.groupby("method")["status"].apply(sorted).to_dict()
    assert by_method == {"imbalanced": ["done", "done"], "dies-once": ["done", "done"],
                         "always-dies": ["failed", "failed"]}  # one row per cell: the retry, or the failure
    errors = set(rows.loc[rows["method"] == "always-dies", "error"])
    assert errors == {f"worker died (exit code {-9}) while running the cell, 2 time(s); see the machine's "
                      "memory or the method"}
    assert "6 cells: 4 run, 2 failed" in run.stdout


def test_bad_jobs_are_one_line_errors(tmp_path, capsys):
    code, err = cli_exit(["run", "--preset", "smoke", "--jobs", "0", "--results", tmp_path / "r"], capsys)
    assert code == 2 and "--jobs must be at least 1" in err and len(err.strip().splitlines()) == 1
    code, err = cli_exit(["run", "--preset", "smoke", "--jobs-per-gpu", "2", "--device", "cpu", "--results",
                          tmp_path / "r"], capsys)
    assert code == 2 and "--jobs-per-gpu needs a GPU" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()  # refused before any store was made


# --------------------------------------------------------------------------- --dry-run


def test_dry_run_counts_done_failed_and_pending_against_a_known_store(tmp_path, digits):
    from bench.cell import CellEnv, run_cell

    args = ["--methods", "imbalanced,smote,crl", "--datasets", "digits", "--ratios", "0.1", "--seeds", "2",
            "--pairs", "3:5", "--epochs", "1"]
    config = Preset(name="t", methods=["imbalanced", "smote", "crl"], datasets=["digits"], ratios=[0.1],
                       seeds=2, pairs=[[3, 5]], epochs=1)
    cells = {(c.method, c.seed): c for c in build_grid(config)}
    results = tmp_path / "results"
    with Store(results) as store:  # imbalanced: both seeds done; smote: seed 0 done, seed 1 failed; crl: none
        for key in (("imbalanced", 0), ("imbalanced", 1), ("smote", 0)):
            store.add(run_cell(cells[key], *digits, CellEnv(torch.device("cpu"), results)))
        failed = run_cell(cells[("smote", 1)], *digits, CellEnv(torch.device("cpu"), results))
        store.add({**failed, "status": "failed", "metrics": None, "error": "boom"})
    before = (results / "bench.sqlite").read_bytes()
    run = run_bench("run", *args, "--results", results, "--dry-run", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "6 cells: 3 done, 1 failed, 2 pending; 3 to run" in run.stdout
    lines = {line.split()[0]: line.split() for line in run.stdout.splitlines() if line.split()
             and line.split()[0] in ("imbalanced", "smote", "crl")}
    assert lines["imbalanced"][2:6] == ["2", "2", "0", "0"] and lines["smote"][2:6] == ["2", "1", "1", "0"]
    assert lines["crl"][2:6] == ["2", "0", "0", "2"]
    assert "store" in lines["smote"] and "calibrated:" in lines["crl"]  # a measured time, else a calibration
    assert lines["crl"][6] != "?" and float(lines["crl"][6]) >= 0  # an estimate, not "unknown"
    assert (results / "bench.sqlite").read_bytes() == before  # nothing written
    fresh = run_bench("run", *args, "--results", tmp_path / "new", "--dry-run", "--threads", "1", cwd=tmp_path)
    assert fresh.returncode == 0 and "6 cells: 0 done, 0 failed, 6 pending" in fresh.stdout
    assert fresh.stdout.rstrip().endswith(", 1 threads)")  # calibrated with the run's --threads, and says so
    assert not (tmp_path / "new").exists()  # a dry run creates no store


def test_stored_durations_count_only_cells_of_the_same_device_kind_and_speed_settings(tmp_path, digits, monkeypatch):
    """A GPU store's times, or an eager run's, are no estimate for a CPU run, or a compiled one: calibrate."""
    from bench import dryrun
    from bench.cell import CellEnv, run_cell

    monkeypatch.setattr(dryrun, "calibration",
                        lambda cell, train, test, device: dryrun.Speed(1.0, 0.0, 0.0, 0.0, "calibrated: fake"))
    config = Preset(name="t", methods=["imbalanced"], datasets=["digits"], ratios=[0.1], seeds=2,
                       pairs=[[3, 5]], epochs=1)
    first, second = build_grid(config)
    results = tmp_path / "results"
    with Store(results) as store:
        store.add({**run_cell(first, *digits, CellEnv(torch.device("cpu"), results)), "device": "cuda (NVIDIA H100)",
                   "duration_s": 123.0})
    cpu = torch.device("cpu")
    table, _ = dryrun.dry_run([first, second], results, lambda cell: digits, cpu)
    assert table.loc[0, "estimate"] == "calibrated: fake" and table.loc[0, "to_run_s"] == 1.0
    with Store(results) as store:
        store.add({**run_cell(first, *digits, CellEnv(cpu, results)), "duration_s": 7.0})
    table, _ = dryrun.dry_run([first, second], results, lambda cell: digits, cpu)
    assert table.loc[0, "estimate"].startswith("store") and table.loc[0, "to_run_s"] == 7.0
    compiled = build_grid(Preset(**{**config.__dict__, "compile": "default"}))
    table, _ = dryrun.dry_run(compiled, results, lambda cell: digits, cpu)
    assert table.loc[0, "estimate"] == "calibrated: fake"  # the stored cell ran eager


def test_calibrated_estimate_scales_with_each_cells_task_size_and_epochs(tmp_path, digits, monkeypatch):
    """Every pending cell gets the fixed cost plus the per-image epoch cost x its own task's size x its epochs:
    a 0.5 task (more minority images) is estimated above a 0.05 one, by exactly its extra images."""
    from bench import dryrun
    from bench.datasets.imbalance import make_imbalanced

    monkeypatch.setattr(dryrun, "calibration",
                        lambda cell, train, test, device: dryrun.Speed(2.0, 0.01, 0.01, 0.01, "calibrated: fake"))
    config = Preset(name="t", methods=["imbalanced"], datasets=["digits"], ratios=[0.5, 0.05], seeds=2,
                       pairs=[[3, 5]], epochs=3)
    cells = build_grid(config)
    table, line = dryrun.dry_run(cells, tmp_path / "none", lambda cell: digits, torch.device("cpu"))
    sizes = {r: len(make_imbalanced(*digits, pair=(3, 5), ratio=r, seed=0).train) for r in (0.5, 0.05)}
    assert sizes[0.5] > sizes[0.05]
    expected = sum(2.0 + 0.01 * sizes[c.ratio] * 3 for c in cells)
    assert table.loc[0, "to_run_s"] == pytest.approx(expected)
    assert table.loc[0, "s_per_cell"] == pytest.approx(expected / len(cells))
    assert "4 pending" in line and not (tmp_path / "none").exists()


def test_the_calibration_spread_is_shown_and_one_calibration_serves_one_image_shape(digits, monkeypatch):
    """Fits of 1, 2, 3 epochs taking 10, 13 and 18 s: 4 s an epoch (3 to 5), 6 s fixed. MNIST and Fashion-MNIST
    cells (here: two datasets of one shape) share one calibration."""
    from bench import dryrun

    times = {1: 10.0, 2: 13.0, 3: 18.0}
    calls = []
    monkeypatch.setattr(dryrun, "_timed_fit", lambda cell, train, test, device, epochs: calls.append(epochs)
                        or (times[epochs], 0.0))
    monkeypatch.setattr(dryrun, "_WARM", [True])
    config = Preset(name="t", methods=["imbalanced"], datasets=["digits", "mnist"], ratios=[0.1], seeds=1,
                       pairs=[[3, 5]], epochs=2)
    cells = build_grid(config)
    table, line = dryrun.dry_run(cells, "/nonexistent/results", lambda cell: digits, torch.device("cpu"))
    assert calls == [1, 2, 3]  # one calibration for both groups
    n_small = min(dryrun.CALIBRATION_IMAGES, len(dryrun._task(cells[0], *digits).train))
    n = len(dryrun._task(cells[0], *digits).train)
    assert table["to_run_s"].tolist() == pytest.approx([6.0 + 4.0 / n_small * n * 2] * 2)
    assert table["low_s"].tolist() == pytest.approx([6.0 + 3.0 / n_small * n * 2] * 2)
    assert table["high_s"].tolist() == pytest.approx([6.0 + 5.0 / n_small * n * 2] * 2)
    assert "s/epoch (3.00 to 5.00)" in table.loc[0, "estimate"] and "from the calibration's spread" in line


def test_the_prediction_is_estimated_per_test_image_not_as_a_fixed_cost(digits, monkeypatch):
    """validate-table1's capsan cells predict 10,000 MNIST test images after a few seconds of training: the
    calibration predicted 256 and called that a fixed cost, and the dry run said 9 minutes for a preset that
    took over 30. The calibration now times the prediction apart (per test image, the median of its fits), and
    every cell's estimate scales it by that cell's test set: the holdout test (a fifth of the training set)
    costs less to predict than the balanced test split."""
    from bench import dryrun

    predict = {1: 2.0, 2: 3.0, 3: 2.5}  # seconds to predict the calibration's test images; median 2.5
    monkeypatch.setattr(dryrun, "_timed_fit", lambda cell, train, test, device, epochs: (10.0 + epochs, predict[epochs]))
    monkeypatch.setattr(dryrun, "_WARM", [True])
    config = Preset(name="t", methods=["imbalanced"], datasets=["digits"], ratios=[0.5], seeds=1,
                       pairs=[[3, 5]], epochs=1, test_distribution=["balanced", "holdout"])
    cells = build_grid(config)
    task = dryrun._task(cells[0], *digits)
    speed = dryrun.calibration(cells[0], *digits, torch.device("cpu"))
    assert speed.fixed == pytest.approx(10.0)  # 11, 12, 13 s fits: 1 s an epoch, 10 s fixed, no prediction in it
    assert speed.per_test_image == pytest.approx(2.5 / min(dryrun.CALIBRATION_IMAGES, len(task.test)))
    assert "per 1,000 test images" in speed.reason

    fake = dryrun.Speed(10.0, 0.0, 0.0, 0.0, "calibrated: fake", per_test_image=0.01)
    monkeypatch.setattr(dryrun, "calibration", lambda cell, train, test, device: fake)
    by_test = {}
    for cell in cells:
        table, _ = dryrun.dry_run([cell], "/nonexistent/results", lambda c: digits, torch.device("cpu"))
        n_test = len(dryrun._task(cell, *digits).test)
        assert table.loc[0, "to_run_s"] == pytest.approx(10.0 + 0.01 * n_test)
        by_test[cell.options.get("test", "balanced")] = n_test
    assert by_test["holdout"] < by_test["balanced"]


def test_a_dry_run_writes_nothing_into_the_data_folder_and_shows_its_progress(tmp_path):
    """It once left 55 MB of .npz cache in the data folder, silently, although it "writes nothing"."""
    data = copy_shared("mnist", tmp_path / "data").parent  # a writable copy: a normal run would cache here
    before = sorted(os.listdir(data / "mnist"))
    run = run_bench("run", "--methods", "imbalanced", "--datasets", "mnist", "--data-dir", data, "--pairs", "3:5",
                    "--ratios", "0.1", "--seeds", "1", "--epochs", "1", "--results", tmp_path / "r", "--dry-run",
                    cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert sorted(os.listdir(data / "mnist")) == before and not (tmp_path / "r").exists()
    assert "calibrating imbalanced on mnist" in run.stderr  # the progress bar names the method
    assert "1 cells: 0 done, 0 failed, 1 pending" in run.stdout and "calibrated:" in run.stdout
    missing = run_bench("run", "--methods", "imbalanced", "--datasets", "mnist", "--data-dir", tmp_path / "none",
                        "--pairs", "3:5", "--ratios", "0.1", "--seeds", "1", "--results", tmp_path / "r",
                        "--dry-run", "--download", cwd=tmp_path)
    assert missing.returncode == 0 and "no estimate: mnist: missing file" in missing.stdout
    assert not (tmp_path / "none").exists()  # nothing downloaded


def test_a_calibration_that_fails_is_an_unknown_estimate_with_its_reason(digits):
    import math

    from bench.dryrun import calibrate

    config = Preset(name="t", methods=["smote"], datasets=["digits"], ratios=[0.025], seeds=1, pairs=[[3, 5]],
                       epochs=1)
    (cell,) = build_grid(config)  # 3 minority images: too few for SMOTE's 5 neighbours
    seconds, reason = calibrate(cell, *digits, torch.device("cpu"))
    assert math.isnan(seconds) and reason.startswith("calibration failed: ") and "SMOTE" in reason


# --------------------------------------------------------------------------- out of memory

OOM = """
import torch

from bench.methods.imbalanced import Imbalanced


class NeedsHalfBatch(Imbalanced):
    '''Out of memory (simulated) above batch 32: fits at 32.'''

    name = "needs-half-batch"
    defaults = {"batch_size": 64}

    def fit(self, train, ctx):
        if self.params["batch_size"] > 32:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        super().fit(train, ctx)


class NeverFits(Imbalanced):
    name = "never-fits"
    defaults = {"batch_size": 64}

    def fit(self, train, ctx):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB (simulated)")
"""


def test_out_of_memory_is_retried_at_half_the_batch_then_recorded_failed(tmp_path):
    method_file = tmp_path / "oom.py"
    method_file.write_text(OOM)
    results = tmp_path / "results"
    run = run_bench("run", "--methods", "needs-half-batch,never-fits,imbalanced", "--method-file", method_file,
                    "--datasets", "digits", "--ratios", "0.1", "--seeds", "1", "--pairs", "3:5", "--epochs", "1",
                    "--results", results, "--quiet", cwd=tmp_path)
    assert run.returncode == 1 and "Error: 1 of 3 cells failed" in run.stderr, run.stderr  # never-fits
    with Store(results, create=False) as store:
        rows = store.cells().set_index("method")
    half = rows.loc["needs-half-batch"]
    assert half["status"] == "done" and half["params"]["batch_size"] == 64  # stored as asked ...
    assert half["metrics"]["oom_retry"]["batch_size"] == 32  # ... with the retry that went through
    assert "at batch_size 64: CUDA out of memory. Tried to allocate 2.00 GiB" in half["metrics"]["oom_retry"]["first_error"]
    never = rows.loc["never-fits"]
    assert never["status"] == "failed"
    assert "at batch_size 64" in never["error"] and "again at batch_size 32" in never["error"]
    assert "Tried to allocate 9.00 GiB" in never["error"] and "use a smaller batch_size" in never["error"]
    assert rows.loc["imbalanced", "status"] == "done"  # the grid went on
