"""No shared disk (``bench/shipping.py``), in this process: a unit run on its shipped data in a scratch folder
returns its rows and every file it wrote, leaves nothing behind, and the driver writes those files whole into
the results folder, refusing a path that would leave it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from bench.datasets import load_dataset
from bench.errors import BenchError
from bench.executors import Job
from bench.grid import Preset, build_grid
from bench.shipping import land, run_shipped, ship_method_files

USER_METHOD = """
from bench.methods.imbalanced import Imbalanced


class Shipped(Imbalanced):
    name = "shipped-imbalanced"
"""


def test_a_shipped_unit_brings_back_its_rows_and_files_and_leaves_no_scratch(tmp_path):
    cells = build_grid(Preset(name="t", methods=["imbalanced"], datasets=["digits"], ratios=[0.5], seeds=2,
                              pairs=[(3, 5)], epochs=1))
    data = (load_dataset("digits", None, "train"), load_dataset("digits", None, "test"))
    before = set(Path(tempfile.gettempdir()).glob("bench-unit-*"))
    job = Job(str(tmp_path / "never-written"), data_dir=str(tmp_path / "no-such-data"))
    result = run_shipped(cells, job, "cpu", data)  # a fused group of two, as one unit
    assert [row["key"] for row in result["rows"]] == [cell.key for cell in cells]
    assert all(row["status"] == "done" for row in result["rows"])
    for row in result["rows"]:
        assert f"{row['artifacts']}/classifier_losses.json" in result["files"]
    assert not (tmp_path / "never-written").exists()  # the driver's results folder is not touched
    assert set(Path(tempfile.gettempdir()).glob("bench-unit-*")) == before  # the scratch folder is gone
    results = tmp_path / "results"
    land(results, result["files"])
    for name, content in result["files"].items():
        assert (results / name).read_bytes() == content
    assert not [p for p in results.rglob("*.part")]


def test_a_method_file_goes_as_text(tmp_path):
    path = tmp_path / "user_method.py"
    path.write_text(USER_METHOD)
    job = ship_method_files(Job(str(tmp_path), method_files=(str(path),)))
    assert job.method_files == () and job.method_sources == (("user_method.py", USER_METHOD),)


@pytest.mark.parametrize("name", ["../outside.txt", "/etc/evil", "artifacts/../../outside.txt"])
def test_a_file_outside_the_results_folder_is_refused(tmp_path, name):
    with pytest.raises(BenchError, match="outside the results folder"):
        land(tmp_path / "results", {name: b"x"})
    assert not (tmp_path / "outside.txt").exists()
