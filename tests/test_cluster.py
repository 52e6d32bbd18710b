"""``bench run --executor ray --ray-address`` against a real multi-node Ray cluster on this machine
(``ray_cluster.RayCluster``: a head with no CPU and two worker nodes, each its own ``ray start``), as a user
would run it: cells spread over the nodes, each row naming its node; worker nodes that cannot see the
driver's data and results folders (a tmpfs covers them in the nodes' mount namespace: no shared disk); a
node lost mid-grid; every node lost; the driver killed (``kill -9``, SIGTERM).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import bench_command, run_bench
from PIL import Image

from bench.errors import BenchError
from bench.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parent / "faults"))
from mounts import can_mount  # noqa: E402
from ray_cluster import RayCluster  # noqa: E402

pytest.importorskip("ray", reason="Ray is in the test extra (pip install 'capsan-bench[ray]')")

# A user's method (shipped to the nodes as text: they cannot read the driver's file): imbalanced, slowed so
# that a kill lands mid-grid
SLOW = """
import time

from bench.methods.imbalanced import Imbalanced


class Slow(Imbalanced):
    name = "slow"

    def fit(self, train, ctx):
        time.sleep(2.5)
        super().fit(train, ctx)
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not can_mount():  # CI's machines are root: the nodes' hidden folder is what this file tests
        pytest.fail("these tests hide the driver's folders from the Ray nodes with a tmpfs: run them as root")
    driver = tmp_path_factory.mktemp("driver")  # everything under it is invisible to the worker nodes
    made = RayCluster(hide=driver)
    try:
        made.add_worker()
        made.add_worker()
        made.driver = driver
        yield made
    finally:
        made.shutdown()


def _image_folder(root: Path) -> Path:
    """Two classes of sklearn's 8x8 digits (3 and 5) as PNG files: a ``folder:PATH`` dataset."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for label, name in ((3, "three"), (5, "five")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(digits.images[digits.target == label][:120]):
            Image.fromarray((image * 255 / 16).astype(np.uint8), "L").save(root / name / f"{i:03d}.png")
    return root


def _folder_for(cluster, name: str) -> Path:
    folder = cluster.driver / name
    folder.mkdir()
    return folder


def _grid(folder: Path, methods: str, seeds: int = 2) -> list:
    method_file = folder / "slow.py"
    method_file.write_text(SLOW)
    return ["--methods", methods, "--method-file", method_file, "--datasets", "digits", "--ratios", "0.5,0.3",
            "--pairs", "3:5", "--seeds", seeds, "--epochs", "1", "--results", folder / "results", "--quiet"]


def _done(results: Path):
    try:
        with Store(results, create=False) as store:
            rows = store.attempts()
    except BenchError:  # not there yet, or being created by the run this moment
        return []
    return rows[rows["status"] == "done"]


def _wait_for(condition, seconds: float, what: str):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}")


def test_hidden_folders_are_hidden_from_the_worker_nodes(cluster):
    (cluster.driver / "probe").write_text("the driver's disk")
    seen = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                           f'mount -t tmpfs tmpfs "{cluster.driver}" && ls -A "{cluster.driver}"'],
                          capture_output=True, text=True)
    assert seen.returncode == 0 and seen.stdout == "", seen.stderr  # what a worker node sees of the folder


def test_cells_spread_over_the_nodes_and_every_artifact_lands_beside_the_driver(cluster):
    folder = _folder_for(cluster, "spread")
    data = _image_folder(folder / "images")
    results = folder / "results"
    run = run_bench("run", "--methods", "imbalanced,gan", "--datasets", f"folder:{data}", "--pairs", "0:1",
                    "--ratios", "0.5,0.3", "--seeds", "2", "--epochs", "1", "--executor", "ray",
                    "--ray-address", cluster.address, "--results", results, "--quiet", cwd=folder, env=cluster.env)
    assert run.returncode == 0, run.stderr
    with Store(results, create=False) as store:
        rows = store.attempts()
    assert len(rows) == 8 and set(rows["status"]) == {"done"}, rows["error"].tolist()
    assert all(" (ray node " in node for node in rows["node"])
    assert rows["node"].nunique() == 2  # both worker nodes ran cells (the head has no CPU)
    for row in rows.itertuples():  # what the cells wrote on nodes without the results folder is here
        written = {p.name for p in (results / row.artifacts).iterdir()}
        assert {"classifier_losses.json", "training_counts.json"} <= written, written
        if row.method == "gan":
            assert {"samples.png", "losses.json"} <= written, written
    assert not any(p.name.startswith(".") and p.suffix == ".part" for p in results.rglob("*"))


def test_a_node_lost_mid_grid_loses_no_cell_and_stores_none_twice(cluster):
    folder = _folder_for(cluster, "lost-node")
    results = folder / "results"
    proc = subprocess.Popen([*bench_command(), "run", *map(str, _grid(folder, "slow", seeds=3)), "--executor", "ray",
                             "--ray-address", cluster.address], cwd=folder, env={**os.environ, **cluster.env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: len(_done(results)) >= 1, 180, "the first stored cell")
        victim = cluster.workers.pop(0)
        cluster.kill(victim)  # a node gone mid-grid, with the cells it was running
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
        cluster.add_worker()  # the cluster whole again for the next test
    assert proc.returncode == 0, err
    done = _done(results)
    assert len(done) == 6 and done["key"].is_unique  # every cell once: the lost node's ran again elsewhere


def test_a_cluster_that_loses_every_node_ends_the_run_and_the_rerun_finishes(cluster):
    folder = _folder_for(cluster, "no-node")
    results = folder / "results"
    cluster.kill_workers()
    try:
        started = time.monotonic()
        run = run_bench("run", *_grid(folder, "imbalanced"), "--executor", "ray", "--ray-address", cluster.address,
                        "--ray-node-wait", "3", cwd=folder, env=cluster.env, timeout=240)
        waited = time.monotonic() - started
    finally:
        cluster.add_worker()
        cluster.add_worker()
    assert run.returncode == 1 and "Error: 8 of 8 cells failed" in run.stderr, run.stderr  # imbalanced and slow
    assert waited < 120  # a bounded wait, not a hang (a guard, not a timing)
    with Store(results, create=False) as store:
        errors = set(store.attempts()["error"])
    assert len(errors) == 1 and errors.pop().startswith("ray: no live node of the cluster can run it")
    again = run_bench("run", *_grid(folder, "imbalanced"), "--executor", "ray", "--ray-address", cluster.address,
                      cwd=folder, env=cluster.env)
    assert again.returncode == 0, again.stderr
    assert len(_done(results)) == 8 and _done(results)["key"].is_unique


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_driver_leaves_no_task_running_and_the_rerun_resumes(cluster, sig):
    folder = _folder_for(cluster, f"driver-{sig.name}")
    results = folder / "results"
    grid = [*map(str, _grid(folder, "slow", seeds=3)), "--executor", "ray", "--ray-address", cluster.address]
    proc = subprocess.Popen([*bench_command(), "run", *grid], cwd=folder, env={**os.environ, **cluster.env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: len(_done(results)) >= 1, 180, "the first stored cell")
        _wait_for(cluster.task_pids, 60, "a running task")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == (-9 if sig == signal.SIGKILL else 143), err
    before = _done(results)
    assert 1 <= len(before) < 6
    _wait_for(lambda: not cluster.task_pids(), 60, "the cluster to stop the dead driver's tasks")
    again = run_bench("run", *grid, cwd=folder, env=cluster.env)  # the lock went with the driver
    assert again.returncode == 0, again.stderr
    assert f"{len(before)} already done" in again.stdout
    after = _done(results)
    assert len(after) == 6 and after["key"].is_unique
    assert after.set_index("key").loc[before["key"], "metrics"].tolist() == before["metrics"].tolist()
