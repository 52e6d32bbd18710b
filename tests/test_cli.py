"""The ``bench`` command end to end: the smoke preset, resume after a kill, and every bad input."""

import os
import signal
import sqlite3
import subprocess
import time

import pytest
from helpers import bench_command, cli_exit, copy_shared, run_bench

from bench.cli import main
from bench.methods import method_names
from bench.store import Store


def _bench_main(capsys, *args):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        main([*map(str, args)])
        raise SystemExit(0)
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_version_and_lists(capsys):
    code, out, _ = _bench_main(capsys, "--version")
    assert code == 0 and "capsan-bench" in out and "0.1.0" in out
    code, out, _ = _bench_main(capsys, "list", "methods")
    assert code == 0 and all(name in out for name in ("imbalanced", "smote", "adasyn", "Chawla"))
    # grouped by family, the paper's first; each method under its own family's heading
    headings = [line for line in out.splitlines() if not line.startswith(" ")]
    assert headings == ["the paper's:", "baseline:", "resampling:", "generative oversampling:", "loss-based:"]
    section = out.split("loss-based:")[1]
    assert all(f"  {name} " in section for name in ("crl", "focal", "cb-focal", "ldam-drw", "balanced-softmax"))
    assert "  smote " not in section and "  capsan " in out.split("baseline:")[0]
    code, out, _ = _bench_main(capsys, "list", "presets")
    assert code == 0 and all(name in out for name in ("smoke", "quick", "paper-table3"))
    code, out, _ = _bench_main(capsys, "list", "datasets", "--data-dir", "/nonexistent")
    assert code == 0 and "digits" in out and "bundled" in out and "not found in /nonexistent/mnist" in out
    from bench.datasets import get_dataset_info

    # the README sends users to this list for each dataset's default pairs
    pairs = ", ".join(f"{a}:{b}" for a, b in get_dataset_info("mnist").default_pairs)
    assert f"default pairs (majority:minority, --pairs default): {pairs}" in out and len(pairs) > 2
    code, out, _ = _bench_main(capsys, "run", "--help")
    from bench.quality import QUALITY_METRICS

    assert code == 0 and all(name in " ".join(out.split()) for name in QUALITY_METRICS)


def test_smoke_preset_end_to_end_then_report(smoke_run, tmp_path, capsys):
    run, results = smoke_run
    report = tmp_path / "report"
    assert run.returncode == 0, run.stderr
    assert "3 cells: 3 run, 0 failed, 0 already done" in run.stdout
    for name in ("imbalanced", "smote", "adasyn"):
        assert name in run.stdout
    with Store(results, create=False) as store:
        cells = store.cells()
    assert sorted(cells["method"]) == ["adasyn", "imbalanced", "smote"]
    assert (cells["status"] == "done").all()
    assert all(0 <= m["g_mean"] <= 1 for m in cells["metrics"])

    again = run_bench("run", "--preset", "smoke", "--results", results, "--quiet", cwd=tmp_path)
    assert "3 cells: 0 run, 0 failed, 3 already done" in again.stdout

    rep = run_bench("report", "--results", results, "--out", report, cwd=tmp_path)
    assert rep.returncode == 0, rep.stderr
    written = {p.name for p in report.iterdir()}
    # One seed and one ratio: Table 3 and the figures of what exists (no CapsAN: no statistics).
    assert {"table3.csv", "table3.tex", "table3.md"} <= written
    assert {"figure3_digits_binary.png", "figure3_digits_binary.pdf", "figure9_digits_binary_r0.1.png"} <= written
    assert not {"table1.md", "table2.md", "wilcoxon.csv"} & written
    assert "skipped table1" in rep.stdout and "skipped statistics" in rep.stdout
    assert "smote" in (report / "table3.md").read_text()
    only = run_bench("report", "--results", results, "--out", tmp_path / "md", "--format", "md", "--tables", "3",
                     cwd=tmp_path)
    assert only.returncode == 0, only.stderr
    assert {p.name for p in (tmp_path / "md").iterdir()} == {"table3.md", "budget.md"}
    export = run_bench("export", "--results", results, "--out", tmp_path / "cells.csv", cwd=tmp_path)
    assert export.returncode == 0, export.stderr
    assert len((tmp_path / "cells.csv").read_text().strip().splitlines()) == 1 + 3  # header + one row per cell
    parquet = run_bench("export", "--results", results, "--out", tmp_path / "cells.parquet", cwd=tmp_path)
    assert parquet.returncode == 0, parquet.stderr
    import pyarrow.parquet

    assert pyarrow.parquet.read_table(tmp_path / "cells.parquet").num_rows == 3  # parquet, not CSV text
    code, err = cli_exit(["export", "--results", results, "--out", tmp_path / "c.parquet", "--format", "csv"], capsys)
    assert code == 2 and "drop --format, or name the file c.csv" in err
    assert len(err.strip().splitlines()) == 1


def _done_count(results):
    # Read only: a plain connect creates a zero-byte bench.sqlite when it polls between the run making the
    # folder and making its store, and the run then refuses that file as damaged (the fault suite's "empty"
    # store), exit 2: a CI run failed that way.
    try:
        with sqlite3.connect(f"{(results / 'bench.sqlite').resolve().as_uri()}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM results WHERE status = 'done'").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


# The common classifier, made to take at least half a second per cell, so that the kill below always lands
# in the middle of the run however fast the machine is.
SLOW_METHOD = """
import time

from bench.methods.imbalanced import Imbalanced


class SlowImbalanced(Imbalanced):
    name = "slow-imbalanced"

    def fit(self, train, ctx):
        time.sleep(0.5)
        super().fit(train, ctx)
"""


# kill -9 and its resume: faults/test_kills.py, at 22 random moments
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_run_resumes_with_only_the_missing_cells(tmp_path, sig, code):
    results = tmp_path / "results"
    method_file = tmp_path / "slow.py"
    method_file.write_text(SLOW_METHOD)
    args = ["run", "--methods", "slow-imbalanced", "--method-file", str(method_file), "--datasets", "digits",
            "--ratios", "0.5,0.4", "--pairs", "3:5,4:9", "--seeds", "2", "--epochs", "2",
            "--results", str(results), "--quiet"]
    total = 8
    # A shell starts background jobs with SIGINT ignored, and the child would inherit that: restore the default
    # so that Python installs its Ctrl-C handler however the test suite itself was launched.
    proc = subprocess.Popen([*bench_command(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while _done_count(results) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    # Ctrl-C, or a scheduler's SIGTERM: one line, then the exit code
    assert err.strip().splitlines()[-1].startswith("Interrupted: every finished cell is stored"), err
    assert "Traceback" not in err
    with Store(results, create=False) as store:
        before = store.attempts()
    done_before = set(before.loc[before["status"] == "done", "key"])
    assert 2 <= len(done_before) < total  # killed in the middle

    rerun = run_bench(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{total} cells: {total - len(done_before)} run, 0 failed, {len(done_before)} already done" in rerun.stdout
    with Store(results, create=False) as store:
        after = store.attempts()
    done_after = after[after["status"] == "done"]
    assert done_after["key"].nunique() == total
    assert not done_after["key"].duplicated().any()  # no finished cell ran twice
    # The rows stored before the kill are intact, byte for byte in their metrics.
    old = before[before["status"] == "done"].set_index("id")["metrics"]
    assert after.set_index("id").loc[old.index, "metrics"].equals(old)


@pytest.mark.parametrize("args, message", [
    (["--methods", "nope"], lambda: f"unknown method 'nope'; valid names: {', '.join(method_names())}"),
    (["--datasets", "nope"], "unknown dataset 'nope'; valid names: celeba, cifar10, digits, fashion-mnist, gtsrb, mnist"),
    (["--preset", "nope"], "unknown preset 'nope'; valid names:"),
    (["--ratios", "0.1,1.5"], r"ratio 1.5 is outside (0, 1]"),
    (["--ratios", "0"], r"ratio 0 is outside (0, 1]"),
    (["--ratios", "abc"], "ratio 'abc' is not a number"),
    (["--ratios", ","], "is an empty list"),
    (["--seeds", "0"], "--seeds must be at least 1"),
    (["--seeds", "-3"], "--seeds must be at least 1"),
    (["--epochs", "0"], "epochs must be at least 1"),
    (["--methods", "smote,smote"], "listed twice"),
    (["--pairs", "3:3"], "names the same class twice"),
    (["--pairs", "3-5"], "is not MAJORITY:MINORITY"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--method-file", "/nonexistent/m.py"], "does not exist"),
    (["--protocol", "gamo"], "not 'digits'; use --protocol longtail or step"),
    (["--protocol", "zipf"], "unknown protocol 'zipf'"),
    (["--image-size", "4"], "--image-size must be between 8 and 512"),
    (["--metrics", "is"], "unknown metric is; --metrics takes ssim, fid, battle or none"),
    (["--datasets", "folder:/nonexistent/images"], "folder:/nonexistent/images"),
])
def test_bad_input_is_a_one_line_error_with_exit_2_and_the_store_untouched(capsys, tmp_path, args, message):
    results = tmp_path / "results"
    with Store(results) as store:
        store.add({"key": "k", "method": "smote", "params": {}, "dataset": "digits", "protocol": "binary",
                   "pair": [3, 5], "ratio": 0.1, "seed": 0, "epochs": 1, "status": "done", "metrics": {"g_mean": 1},
                   "started_at": "t", "finished_at": "t", "duration_s": 0, "device": "cpu", "versions": {}})
    before = (results / "bench.sqlite").read_bytes()
    code, out, err = _bench_main(capsys, "run", "--preset", "smoke", "--results", results, "--quiet", *args)
    assert code == 2
    lines = err.strip().splitlines()
    if callable(message):  # every registered name, from the registry: a new built-in needs no edit here
        message = message()
        assert lines == [f"Error: {message}"], err
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], err
    assert (results / "bench.sqlite").read_bytes() == before
    with Store(results, create=False) as store:
        assert store.done_keys() == {"k"}


def test_a_results_path_that_is_a_file(capsys, tmp_path):
    path = tmp_path / "results"
    path.write_text("mine")
    code, _, err = _bench_main(capsys, "run", "--preset", "smoke", "--results", path, "--quiet")
    assert code == 2 and "is a file" in err and path.read_text() == "mine"


def test_a_missing_data_file_names_the_file_the_folder_and_the_fix(capsys, tmp_path):
    code, _, err = _bench_main(capsys, "run", "--preset", "smoke", "--datasets", "mnist", "--data-dir", tmp_path,
                               "--results", tmp_path / "r", "--quiet")
    assert code == 2
    assert "train-images-idx3-ubyte.gz" in err and str(tmp_path / "mnist") in err
    assert "f68b3c2dcbeaaa9fbdd348bbdeb94873" in err and "--download" in err
    assert len(err.strip().splitlines()) == 1


def test_report_without_results_is_a_clear_error(capsys, tmp_path):
    code, _, err = _bench_main(capsys, "report", "--results", tmp_path / "none", "--out", tmp_path / "out")
    assert code == 2 and "no results store" in err


def test_a_figure_that_fails_makes_bench_report_exit_non_zero_after_writing_the_rest(capsys, tmp_path, monkeypatch):
    from bench.reports import figures

    code, _, err = _bench_main(capsys, "run", "--preset", "smoke", "--epochs", "1", "--results", tmp_path / "r",
                               "--quiet")
    assert code == 0, err

    def broken(cells, out_dir, formats):
        raise ZeroDivisionError("a bug in the figure")

    monkeypatch.setitem(figures._BUILDERS, 3, broken)
    code, out, err = _bench_main(capsys, "report", "--results", tmp_path / "r", "--out", tmp_path / "out",
                                 "--format", "md,png")
    assert code == 1
    assert "failed figure 3: ZeroDivisionError: a bug in the figure" in out
    assert [line for line in err.splitlines() if line.startswith("Error:")] == [
        f"Error: 1 output(s) failed (above, with the traceback); every other table and figure is written in "
        f"{tmp_path / 'out'}: report the failure with the store that caused it"]
    assert (tmp_path / "out" / "table3.md").exists() and list((tmp_path / "out").glob("figure9*.png"))


DECLINES = """
from bench.methods import ResamplingMethod


class FiveOnly(ResamplingMethod):
    name = "five-only"
    defaults = {}

    def skip(self, task):
        return None if task.positive == 5 else f"runs with minority 5 only, not {task.positive}"

    def resample(self, train, ctx):
        raise AssertionError("a declined task is never fitted")
"""


def test_a_method_that_declines_a_task_is_refused_not_failed(tmp_path):
    (tmp_path / "declines.py").write_text(DECLINES)
    run = run_bench("run", "--methods", "imbalanced", "--method-file", tmp_path / "declines.py", "--datasets",
                    "digits", "--pairs", "4:9", "--ratios", "0.1", "--seeds", "1", "--epochs", "1",
                    "--results", tmp_path / "r", "--quiet", cwd=tmp_path)
    assert run.returncode == 0, run.stderr  # a refusal is the cell's answer, not an error
    assert "2 cells: 1 run, 1 failed (1 refused by the method or protocol)" in run.stdout
    with Store(tmp_path / "r", create=False) as store:
        row = store.cells().set_index("method").loc["five-only"]
    assert row["status"] == "failed" and row["error"] == "five-only declines this task: runs with minority 5 only, not 1"


def test_the_readme_method_example_runs_beside_the_baselines(tmp_path):
    readme = (os.path.dirname(os.path.dirname(__file__)) + "/README.md")
    text = open(readme).read()
    start = text.index("```python\n", text.index("## Your own method")) + len("```python\n")
    (tmp_path / "my_method.py").write_text(text[start:text.index("```", start)])
    run = run_bench("run", "--preset", "smoke", "--method-file", tmp_path / "my_method.py",
                    "--results", tmp_path / "r", "--quiet", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "4 cells: 4 run, 0 failed" in run.stdout and "pixel-logreg" in run.stdout
    # with --methods the file's methods join the ones named (they were once dropped silently)
    run = run_bench("run", "--preset", "smoke", "--methods", "imbalanced", "--method-file", tmp_path / "my_method.py",
                    "--results", tmp_path / "r2", "--quiet", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "2 cells: 2 run, 0 failed" in run.stdout and "pixel-logreg" in run.stdout


def test_mnist_from_the_shared_folder_offline(tmp_path):
    data = copy_shared("mnist", tmp_path / "data").parent  # its own copy: the run caches into its data folder
    run = run_bench("run", "--methods", "smote", "--datasets", "mnist", "--data-dir", data,
                    "--pairs", "3:5", "--ratios", "0.02", "--seeds", "1", "--epochs", "1", "--results",
                    tmp_path / "r", "--quiet", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    with Store(tmp_path / "r", create=False) as store:
        row = store.cells().iloc[0]
    assert row["status"] == "done" and row["counts"]["train"] == [6131, 123]  # round(0.02 x 6131)
    assert row["metrics"]["g_mean"] > 0.5  # SMOTE-balanced MNIST 3 vs 5 is far from chance after one epoch


def test_a_multiclass_protocol_runs_and_reports_acsa(tmp_path):
    results = tmp_path / "results"
    out = run_bench("run", "--methods", "imbalanced", "--datasets", "digits", "--protocol", "longtail", "--ratios",
                    "0.2", "--seeds", "1", "--epochs", "2", "--results", results, "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "1 cells: 1 run, 0 failed" in out.stdout
    assert "digits / longtail" in out.stdout and "ACSA" in out.stdout
    with Store(results, create=False) as store:
        cell = store.cells().iloc[0]
    assert cell["pair"] is None and cell["counts"]["train"][0] > cell["counts"]["train"][-1]
    assert len(cell["metrics"]["per_class_recall"]) == 10


@pytest.mark.parametrize("args, message", [
    (["--tables", "4"], "--tables takes any of 1, 2, 3; got '4'"),
    (["--figures", "x"], "--figures takes numbers like 3,4,5,6,7,8,9; got 'x'"),
    (["--format", "gif"], "unknown report format 'gif'; valid formats: csv, latex, md, png, pdf, html"),
])
def test_bad_report_options_are_one_line_errors(capsys, tmp_path, args, message):
    with Store(tmp_path / "results"):
        pass
    code, _, err = _bench_main(capsys, "report", "--results", tmp_path / "results", "--out", tmp_path / "r", *args)
    assert code == 2 and err.strip().splitlines() == [f"Error: {message}"]
