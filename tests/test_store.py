"""The results store: round trip, append-only history, resume keys, bad paths."""

import sqlite3

import pytest

from bench.errors import BenchError
from bench.store import Store, read_cells


def _row(key, status="done", **extra):
    row = {
        "key": key, "method": "smote", "params": {"k_neighbors": 5}, "dataset": "digits", "protocol": "binary",
        "pair": [3, 5], "ratio": 0.1, "seed": 0, "epochs": 2, "counts": {"train": [120, 12]}, "status": status,
        "metrics": {"g_mean": 0.9} if status == "done" else None, "error": None if status == "done" else "boom",
        "started_at": "2026-01-01T00:00:00+00:00", "finished_at": "2026-01-01T00:00:01+00:00", "duration_s": 1.0,
        "device": "cpu", "versions": {"torch": "x"}, "artifacts": "artifacts/x",
    }
    row.update(extra)
    return row


def test_round_trip_decodes_json_columns(tmp_path):
    with Store(tmp_path) as store:
        store.add(_row("a"))
    with Store(tmp_path, create=False) as store:
        cells = store.cells()
    assert len(cells) == 1
    row = cells.iloc[0]
    assert row["params"] == {"k_neighbors": 5}
    assert row["pair"] == [3, 5]
    assert row["metrics"] == {"g_mean": 0.9}
    assert row["counts"] == {"train": [120, 12]}
    assert row["status"] == "done"


def test_done_keys_and_newest_done_attempt_wins(tmp_path):
    with Store(tmp_path) as store:
        store.add(_row("a", status="failed"))
        store.add(_row("b", status="failed"))
        store.add(_row("a", metrics={"g_mean": 0.5}))
        store.add(_row("a", status="failed"))  # a later failure never hides a finished result
        assert store.done_keys() == {"a"}
        cells = store.cells().set_index("key")
        assert len(store.attempts()) == 4  # nothing is ever overwritten
    assert cells.loc["a", "status"] == "done" and cells.loc["a", "metrics"] == {"g_mean": 0.5}
    assert cells.loc["b", "status"] == "failed" and cells.loc["b", "error"] == "boom"


def test_status_is_constrained(tmp_path):
    with Store(tmp_path) as store, pytest.raises(sqlite3.IntegrityError):
        store.add(_row("a", status="maybe"))


def test_missing_store_and_file_path_are_clear_errors(tmp_path):
    with pytest.raises(BenchError, match="no results store"):
        Store(tmp_path / "nothing", create=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(BenchError, match="is a file"):
        Store(tmp_path / "file")


def test_a_corrupt_store_is_a_clear_error_and_left_alone(tmp_path):
    path = tmp_path / "bench.sqlite"
    path.write_bytes(b"not a database" * 100)
    before = path.read_bytes()
    with pytest.raises(BenchError, match="cannot open results store"):
        Store(tmp_path)
    assert path.read_bytes() == before


def test_wal_mode_lets_a_reader_see_committed_rows_while_a_writer_is_open(tmp_path):
    writer = Store(tmp_path)
    writer.add(_row("a"))
    with Store(tmp_path, create=False) as reader:
        assert reader.done_keys() == {"a"}
    writer.close()


def test_several_folders_read_as_one_newest_done_wins(tmp_path):
    cpu, gpu = tmp_path / "cpu", tmp_path / "gpu"
    with Store(cpu) as store:
        store.add(_row("shared", metrics={"g_mean": 0.1}, finished_at="2026-01-01T00:00:01+00:00"))
        store.add(_row("failed-here", status="failed"))
        store.add(_row("cpu-only"))
    with Store(gpu) as store:
        store.add(_row("shared", metrics={"g_mean": 0.2}, finished_at="2026-02-01T00:00:01+00:00", device="cuda"))
        store.add(_row("failed-here", finished_at="2025-01-01T00:00:01+00:00"))  # older, but done: it wins
        store.add(_row("gpu-only", artifacts="artifacts/y"))
    before = {p: p.read_bytes() for p in (cpu / "bench.sqlite", gpu / "bench.sqlite")}
    cells = read_cells([cpu, gpu]).set_index("key")
    assert sorted(cells.index) == ["cpu-only", "failed-here", "gpu-only", "shared"]
    assert cells.loc["shared", "metrics"] == {"g_mean": 0.2} and cells.loc["shared", "results"] == str(gpu)
    assert cells.loc["failed-here", "status"] == "done"
    assert cells.loc["gpu-only", "artifacts"] == str(gpu.resolve() / "artifacts" / "y")  # absolute now
    assert cells.loc["cpu-only", "results"] == str(cpu)
    assert {p: p.read_bytes() for p in before} == before  # only read
    assert len(read_cells(cpu)) == 3 and len(read_cells([cpu, cpu])) == 3  # a folder named twice counts once
    with pytest.raises(BenchError, match="no results store"):
        read_cells([cpu, tmp_path / "missing"])
    with pytest.raises(BenchError, match="no results folder given"):
        read_cells([])
