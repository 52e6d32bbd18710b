"""The Ray executor end to end on the CPU: a local Ray instance started by ``bench run --executor ray``, the
smoke preset, and a worker killed mid-cell (Ray retries the task, then the cell is recorded failed)."""

from __future__ import annotations

import pytest
from helpers import run_bench
from test_executors import run_dying_grid

from bench.store import Store

pytest.importorskip("ray", reason="Ray is in the test extra (pip install 'capsan-bench[ray]')")


def test_the_smoke_preset_runs_as_ray_tasks_a_fused_group_as_one(tmp_path):
    results = tmp_path / "results"
    # the smoke grid at 1 epoch and 2 seeds: where a cell runs is under test here, not what it learns; each
    # method's two seeds are one fused group, one Ray task whose two rows the driver stores
    grid = ["--preset", "smoke", "--epochs", "1", "--seeds", "2", "--fuse", "2", "--executor", "ray",
            "--results", results, "--quiet"]
    run = run_bench("run", *grid, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    with Store(results, create=False) as store:
        rows = store.attempts()
    assert len(rows) == 6 and set(rows["status"]) == {"done"}  # the smoke grid: 6 cells, stored by the driver
    assert all(row.startswith("cpu") and row.endswith(", fused 2") for row in rows["device"])
    assert sorted(rows.groupby("method")["seed"].apply(sorted).tolist()) == [[0, 1]] * 3
    again = run_bench("run", *grid, cwd=tmp_path)
    assert again.returncode == 0 and "6 already done" in again.stdout  # resumes without starting a task


def test_a_lost_ray_worker_is_retried_then_recorded_failed(tmp_path):
    run, markers, results = run_dying_grid(tmp_path, 1, "--executor", "ray")
    assert run.returncode == 1 and "Error: 1 of 3 cells failed" in run.stderr, run.stderr  # always-dies
    assert [p.name for p in markers.iterdir()] == ["seed0"]  # dies-once was killed once ...
    with Store(results, create=False) as store:
        rows = store.attempts().set_index("method")
    assert rows.loc["dies-once", "status"] == "done"  # ... and Ray ran it again
    assert rows.loc["imbalanced", "status"] == "done"
    assert rows.loc["always-dies", "status"] == "failed"
    assert rows.loc["always-dies", "error"].startswith("ray: ") and "after 1 retry" in rows.loc["always-dies", "error"]
