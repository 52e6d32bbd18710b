"""The raw per-cell export: written from a hand-built store, read back unchanged."""

from __future__ import annotations

import json
import math
import sys

import pandas as pd
import pytest

from bench.errors import BenchError
from bench.reports.export import cells_table, export_cells, read_export
from bench.store import Store


def stored_cell(n, method, seed, *, pair=None, protocol="binary", metrics=None, error=None, params=None):
    return {
        "key": f"cell-{n}",
        "method": method,
        "params": params or {"lr": 0.0002, "z_dim": 128},
        "dataset": "mnist",
        "protocol": protocol,
        "pair": pair,
        "ratio": 0.1,
        "seed": seed,
        "epochs": 3,
        "counts": {"train": [6131, 613], "test": [1010, 892], "classes": ["3", "5"]},
        "status": "failed" if error else "done",
        "metrics": None if error else metrics,
        "error": error,
        "started_at": "2024-01-01T00:00:00",
        "finished_at": "2024-01-01T00:00:02",
        "duration_s": 2.5,
        "device": "cpu",
        "versions": {},
        "artifacts": None,
    }


@pytest.fixture
def cells(tmp_path) -> pd.DataFrame:
    with Store(tmp_path / "results") as store:
        store.add(
            stored_cell(
                0,
                "capsan",
                0,
                pair=[3, 5],
                metrics={
                    "accuracy": 0.9,
                    "precision": 0.8,
                    "confusion_matrix": [[1, 0], [0, 1]],
                    "per_class_recall": [1.0, 1.0],
                    "quality": {"5": {"fid-proxy": {"value": 12.0}}},
                },
            )
        )
        store.add(
            stored_cell(1, "smote", 1, pair=[3, 5], metrics={"accuracy": 0.7, "precision": 0.6, "extra": 3})
        )
        store.add(stored_cell(2, "gan", 0, protocol="longtail", error="generator diverged"))
        cells = store.cells()
    return cells


def test_one_tidy_row_per_cell(cells):
    frame = cells_table(cells)
    assert len(frame) == 3
    assert list(frame.columns[:6]) == ["id", "key", "method", "dataset", "protocol", "pair"]
    assert list(frame["pair"]) == ["3 vs 5", "3 vs 5", ""]
    assert {"confusion_matrix", "per_class_recall", "quality", "metrics", "counts"}.isdisjoint(frame.columns)
    assert list(frame["accuracy"][:2]) == [0.9, 0.7] and math.isnan(frame["accuracy"][2])
    assert math.isnan(frame["extra"][0]) and frame["extra"][1] == 3.0  # a metric only some cells have
    assert list(frame.columns).index("accuracy") < list(frame.columns).index("extra")
    failed = frame.iloc[2]
    assert failed["status"] == "failed" and failed["error"] == "generator diverged"
    assert frame["error"][0] == ""
    assert json.loads(frame["train_counts"][0]) == [6131, 613]
    assert json.loads(frame["test_counts"][1]) == [1010, 892]
    assert json.loads(frame["params"][0]) == {"lr": 0.0002, "z_dim": 128}
    assert frame["seed"].tolist() == [0, 1, 0] and frame["epochs"].tolist() == [3, 3, 3]


def test_csv_round_trip(cells, tmp_path):
    path = export_cells(cells, tmp_path / "out" / "cells.csv")
    assert path.exists()
    pd.testing.assert_frame_equal(read_export(path), cells_table(cells))
    plain = pd.read_csv(path)  # any reader gets the same numbers
    assert plain["accuracy"].tolist()[:2] == [0.9, 0.7] and plain["ratio"].tolist() == [0.1, 0.1, 0.1]


def test_empty_store_exports_a_header(tmp_path):
    path = export_cells(pd.DataFrame(), tmp_path / "empty.csv")
    assert pd.read_csv(path).empty and "method" in pd.read_csv(path).columns


def test_parquet_without_pyarrow_names_the_install(cells, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    with pytest.raises(BenchError, match=r"pip install 'capsan-bench\[parquet\]' \(or pyarrow\)") as caught:
        export_cells(cells, tmp_path / "cells.parquet", fmt="parquet")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "cells.parquet").exists()


def test_parquet_round_trip(cells, tmp_path):
    import pyarrow.parquet  # the test extra installs it

    path = export_cells(cells, tmp_path / "cells.parquet", fmt="parquet")
    read = pyarrow.parquet.read_table(path).to_pandas()
    pd.testing.assert_frame_equal(read, cells_table(cells), check_dtype=False)


def test_the_file_suffix_chooses_the_format_and_a_contradiction_is_refused(cells, tmp_path):
    """``bench export --out cells.parquet`` once wrote CSV text into a .parquet file."""
    import pyarrow.parquet

    for name in ("cells.parquet", "cells.pq"):
        path = export_cells(cells, tmp_path / name)
        assert path.read_bytes()[:4] == b"PAR1"  # parquet's magic number, not CSV text
        assert pyarrow.parquet.read_table(path).num_rows == len(cells_table(cells))
    columns = ",".join(cells_table(cells).columns[:2])
    assert export_cells(cells, tmp_path / "cells.csv").read_text().startswith(columns)
    assert export_cells(cells, tmp_path / "cells.txt").read_text().startswith(columns)  # no suffix rule: csv
    with pytest.raises(BenchError, match="--format csv but .*cells.parquet names parquet: drop --format, or name "
                                         "the file cells.csv"):
        export_cells(cells, tmp_path / "x" / "cells.parquet", fmt="csv")
    assert not (tmp_path / "x").exists()


def test_bad_format_and_path(cells, tmp_path):
    with pytest.raises(BenchError, match="valid formats"):
        export_cells(cells, tmp_path / "x.json", fmt="json")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(BenchError, match="cannot write"):
        export_cells(cells, blocker / "cells.csv")
