"""``bench run --executor slurm`` against a real Slurm started on this machine (``slurm_cluster.SlurmCluster``:
munge, slurmctld and one slurmd from Debian's packages, which ``.ci/run`` installs), through submitit:
every unit a job-array task (a fused group one task), rows naming their Slurm job, a compute node that sees
neither the data nor the results folder, a task lost mid-grid submitted again, the driver's SIGTERM
cancelling its tasks, and a refused submission as one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import bench_command, run_bench
from slurm_cluster import SlurmCluster, missing
from test_cluster import SLOW, _done, _image_folder, _wait_for

from bench.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parent / "faults"))
from mounts import can_mount  # noqa: E402

pytest.importorskip("submitit", reason="submitit is in the test extra (pip install 'capsan-bench[slurm]')")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    if missing():
        pytest.fail(f"Slurm is not installed here (missing {', '.join(missing())}); apt-get install slurm-wlm "
                    "munge, as .ci/run does")
    if not can_mount():
        pytest.fail("these tests hide the driver's folders from the Slurm node with a tmpfs: run them as root")
    driver = tmp_path_factory.mktemp("slurm-driver")  # invisible to the compute node
    cluster = SlurmCluster(hide=driver)
    cluster.driver = driver
    cluster.jobs = tmp_path_factory.mktemp("slurm-jobs")  # the one folder the node shares with the driver
    try:
        yield cluster
    finally:
        cluster.stop()


def _slurm_args(slurm, folder: Path) -> list:
    return ["--executor", "slurm", "--slurm-folder", slurm.jobs / folder.name, "--slurm-time", "10"]


def test_every_unit_is_an_array_task_a_fused_group_one_and_its_files_come_back(slurm):
    folder = slurm.driver / "spread"
    data = _image_folder(folder / "images")
    results = folder / "results"
    run = run_bench("run", "--methods", "imbalanced,gan", "--datasets", f"folder:{data}", "--pairs", "0:1",
                    "--ratios", "0.5", "--seeds", "2", "--epochs", "1", "--fuse", "2", *_slurm_args(slurm, folder),
                    "--results", results, "--quiet", cwd=folder, env=slurm.env)
    assert run.returncode == 0, run.stderr
    with Store(results, create=False) as store:
        rows = store.attempts()
    assert len(rows) == 4 and set(rows["status"]) == {"done"}, rows["error"].tolist()
    assert all(device.endswith(", fused 2") for device in rows["device"])
    jobs = rows.groupby("method")["node"].unique()  # each method's two seeds: one group, one array task
    assert all(len(nodes) == 1 and " (slurm job " in nodes[0] for nodes in jobs)
    assert jobs["imbalanced"][0] != jobs["gan"][0]
    for row in rows.itertuples():  # written on a node without the results folder, landed here
        written = {p.name for p in (results / row.artifacts).iterdir()}
        assert {"classifier_losses.json", "training_counts.json"} <= written, written
        if row.method == "gan":
            assert {"samples.png", "losses.json"} <= written, written
    _wait_for(lambda: not slurm.queue(), 60, "the tasks to leave the queue")  # nothing left behind


def _slow_run(slurm, name: str, seeds: int):
    """``bench run`` of the slow method over 2 ratios x ``seeds`` seeds, started: (grid, results, process)."""
    folder = slurm.driver / name
    folder.mkdir()
    (folder / "slow.py").write_text(SLOW)
    results = folder / "results"
    grid = ["--methods", "slow", "--method-file", folder / "slow.py", "--datasets", "digits", "--ratios", "0.5,0.3",
            "--pairs", "3:5", "--seeds", seeds, "--epochs", "1", "--fuse", "off", *_slurm_args(slurm, folder),
            "--results", results, "--quiet"]
    proc = subprocess.Popen([*bench_command(), "run", *map(str, grid)], cwd=folder, env={**os.environ, **slurm.env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return grid, results, proc


def test_a_task_lost_mid_grid_is_submitted_again_and_stored_once(slurm):
    _, results, proc = _slow_run(slurm, "lost", 2)
    try:
        lost = _wait_for(slurm.running, 120, "a running task")[0]
        slurm.cancel(lost)  # as a node lost with it would: no result, gone from the queue
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    done = _done(results)
    assert len(done) == 4 and done["key"].is_unique
    assert lost not in " ".join(done["node"])  # the lost task's cell came from its second submission


def test_sigterm_of_the_driver_cancels_its_tasks_and_the_rerun_resumes(slurm):
    grid, results, proc = _slow_run(slurm, "sigterm", 3)
    folder = results.parent
    try:
        _wait_for(lambda: len(_done(results)) >= 1, 180, "the first stored cell")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    deadline = time.time() + 60
    while slurm.queue() and time.time() < deadline:
        time.sleep(0.5)
    assert not slurm.queue()  # every task of the stopped run cancelled, none left writing
    before = _done(results)
    assert 1 <= len(before) < 6
    again = run_bench("run", *grid, cwd=folder, env=slurm.env)
    assert again.returncode == 0, again.stderr
    assert f"{len(before)} already done" in again.stdout
    assert len(_done(results)) == 6 and _done(results)["key"].is_unique


def test_a_refused_submission_is_one_line(slurm, tmp_path):
    run = run_bench("run", "--methods", "imbalanced", "--datasets", "digits", "--ratios", "0.5", "--pairs", "3:5",
                    "--seeds", "1", "--epochs", "1", "--executor", "slurm", "--slurm-partition", "nope",
                    "--slurm-folder", tmp_path / "jobs", "--results", tmp_path / "results", "--quiet", env=slurm.env)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1].startswith("Error: cannot submit to Slurm: "), run.stderr
    assert "--slurm-partition" in run.stderr and "Traceback" not in run.stderr
