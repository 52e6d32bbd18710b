"""``bench compare``: matching by key, verdicts, exit codes and outputs, on hand-built stores with known numbers."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from helpers import run_bench
from scipy import stats as sps

from bench.cli import main
from bench.errors import BenchError
from bench.reports.compare import DEFAULT_TOLERANCE, compare, load_side, save_reference
from bench.reports.compare_output import render
from bench.store import Store

CPU = "cpu (Test CPU 9000, AVX2, 1 threads)"
VERSIONS = {"capsan-bench": "0.1.0", "torch": "2.14.1", "numpy": "2.1.0"}


def row(method, seed, g_mean=0.8, *, ratio=0.1, pair=(3, 5), status="done", device=CPU, versions=VERSIONS,
        fit_seconds=2.0, extra=None, params=None):
    metrics = None
    if status == "done":
        metrics = {"g_mean": g_mean, "balanced_accuracy": g_mean + 0.05, "f_measure": g_mean - 0.1,
                   "roc_auc": 0.9, "per_class_recall": [0.9, g_mean], "threads": 1,
                   "budget": {"classifier": {"updates": 100, "seconds": 1.5}, "fit_seconds": fit_seconds},
                   **(extra or {})}
    tag = "".join(f"-{k}{v}" for k, v in (params or {}).items())  # other parameters, another key
    return {"key": f"{method}-{ratio}-{list(pair)}-{seed}{tag}", "method": method, "params": params or {"k": 5},
            "dataset": "digits",
            "protocol": "binary", "pair": list(pair), "ratio": ratio, "seed": seed, "epochs": 1, "counts": {},
            "status": status, "metrics": metrics, "curves": None, "error": None if status == "done" else "boom",
            "started_at": "2026-01-01T00:00:00", "finished_at": "2026-01-01T00:00:01", "duration_s": 1.0,
            "device": device, "versions": versions, "artifacts": None, "options": None}


def stored(folder, rows):
    with Store(folder) as store:
        for r in rows:
            store.add(r)
    return folder


def grid(**changes):
    """Two methods x two ratios x eight seeds; ``changes`` maps (method, ratio, seed) to a new g_mean."""
    rows = []
    for method in ("smote", "capsan"):
        for ratio in (0.1, 0.05):
            for seed in range(8):
                g = 0.7 + 0.01 * seed + (0.1 if method == "capsan" else 0.0)
                rows.append(row(method, seed, changes.get(f"{method}-{ratio}-{seed}", g), ratio=ratio))
    return rows


@pytest.fixture
def reference(tmp_path):
    return stored(tmp_path / "ref", grid())


def test_a_store_against_itself_is_same_everywhere_and_exits_0(reference):
    result = compare(load_side(reference), load_side(reference))
    assert result.matched == 32 and not result.only_old and not result.only_new
    assert set(result.rows["verdict"]) == {"same"} and not result.failed
    assert len(result.rows) == 4 * 4  # 4 rows (method x ratio) x 4 default metrics
    assert result.tolerance == 0.0 and "must be identical" in result.setting
    run = run_bench("compare", "--results", reference, "--against", reference)
    assert run.returncode == 0, run.stderr
    assert "32 cells matched by key" in run.stdout and "16 same, 0 within, 0 changed" in run.stdout


def test_one_metric_of_one_cell_moved_by_005_fails_naming_that_cell(tmp_path, reference):
    moved = stored(tmp_path / "new", grid(**{"capsan-0.05-3": 0.83 + 0.05}))
    result = compare(load_side(reference), load_side(moved))
    bad = result.rows[result.rows["verdict"] != "same"]
    # g_mean, balanced_accuracy and f_measure follow g_mean in row(); roc_auc does not move
    assert set(bad["metric"]) == {"g_mean", "balanced_accuracy", "f_measure"}
    assert set(bad["verdict"]) == {"changed"} and set(bad["method"]) == {"capsan"} and set(bad["ratio"]) == {0.05}
    g = bad.set_index("metric").loc["g_mean"]
    assert g["max_abs_diff"] == pytest.approx(0.05) and g["diff"] == pytest.approx(0.05 / 8)
    assert math.isnan(g["p_value"])  # one non-zero difference of eight: no p-value
    run = run_bench("compare", "--results", moved, "--against", reference)
    assert run.returncode == 1
    assert "capsan digits/binary 3 vs 5 ratio 0.05 seed 3: g_mean 0.8300 -> 0.8800 (+0.0500)" in run.stdout
    (error,) = run.stderr.splitlines()
    assert error.startswith("Error: 3 changed (rows x metrics, above)") and f"--save {reference}" not in error


def test_within_tolerance_and_the_paired_test(tmp_path, reference):
    shifted = stored(tmp_path / "new", grid(**{f"smote-0.1-{s}": 0.7 + 0.01 * s + 0.001 * (s + 1) for s in range(8)}))
    old, new = load_side(reference), load_side(shifted)
    exact = compare(old, new, ["g_mean"]).rows.set_index(["method", "ratio"])
    assert exact.loc[("smote", 0.1), "verdict"] == "changed"  # one device kind: any difference is a change
    within = compare(old, new, ["g_mean"], tolerance=0.01).rows.set_index(["method", "ratio"])
    assert within.loc[("smote", 0.1), "verdict"] == "within" and within.loc[("capsan", 0.1), "verdict"] == "same"
    a = [0.7 + 0.01 * s for s in range(8)]
    b = [x + 0.001 * (s + 1) for s, x in enumerate(a)]
    expected = sps.wilcoxon([y - x for x, y in zip(a, b, strict=True)]).pvalue
    assert within.loc[("smote", 0.1), "p_value"] == pytest.approx(expected)
    assert not compare(old, new, ["g_mean"], tolerance=0.01).failed


def test_missing_extra_and_failed_cells(tmp_path, reference):
    rows = [r for r in grid() if r["key"] != "smote-0.1-[3, 5]-0"]
    rows = [{**r, "status": "failed", "metrics": None, "error": "boom"} if r["key"] == "capsan-0.1-[3, 5]-1" else r
            for r in rows]
    rows.append(row("dagan", 0))  # a method the reference never ran
    result = compare(load_side(reference), load_side(stored(tmp_path / "new", rows)))
    verdicts = result.rows.groupby(["method", "ratio"])["verdict"].agg(set)
    assert verdicts[("smote", 0.1)] == {"missing"} and verdicts[("capsan", 0.1)] == {"missing"}
    assert verdicts[("smote", 0.05)] == {"same"} and verdicts[("dagan", 0.1)] == {"new"}
    assert [label for _, label in result.only_old] == ["capsan digits/binary 3 vs 5 ratio 0.1 seed 1",
                                                       "smote digits/binary 3 vs 5 ratio 0.1 seed 0"]
    assert [label for _, label in result.only_new] == ["dagan digits/binary 3 vs 5 ratio 0.1 seed 0"]
    assert result.failed and result.counts["missing"] == 8 and result.counts["new"] == 4
    assert result.rekeyed == []  # no missing cell's task is here under another key
    only_new = compare(load_side(reference), load_side(stored(tmp_path / "more", grid() + [row("dagan", 0)])))
    assert not only_new.failed  # a new row alone never fails


def test_a_changed_default_is_a_missing_cell_whose_new_key_and_parameters_are_named(tmp_path, reference):
    rows = [row("smote", 0, 0.75, params={"k": 3}) if r["key"] == "smote-0.1-[3, 5]-0" else r for r in grid()]
    result = compare(load_side(reference), load_side(stored(tmp_path / "new", rows)), ["g_mean"])
    assert result.failed and result.counts["missing"] == 1  # matching stays by key
    ((label, params, changes),) = result.rekeyed
    assert label == "smote digits/binary 3 vs 5 ratio 0.1 seed 0" and params == ["k 5 -> 3"]
    assert changes == [("g_mean", 0.7, 0.75)]
    text = render(result, "text", "new", "ref")
    assert "1 missing cell(s) are here under a new key" in text and "seed 0: k 5 -> 3; g_mean 0.7000 -> 0.7500" in text


def test_a_store_from_another_device_kind_falls_back_to_the_tolerance(tmp_path, reference):
    gpu = [{**r, "device": "cuda:0 (NVIDIA H200)"} for r in grid(**{"smote-0.1-2": 0.72 + 0.015})]
    result = compare(load_side(reference), load_side(stored(tmp_path / "gpu", gpu)), ["g_mean"])
    assert result.tolerance == DEFAULT_TOLERANCE
    assert result.setting.startswith("device kinds differ") and "NVIDIA H200" in result.setting
    assert result.rows.set_index(["method", "ratio"]).loc[("smote", 0.1), "verdict"] == "within"
    torch_moved = [{**r, "versions": {**VERSIONS, "torch": "2.15.0"}} for r in grid()]
    result = compare(load_side(reference), load_side(stored(tmp_path / "torch", torch_moved)))
    assert "versions differ (torch 2.14.1 -> 2.15.0)" in result.setting and result.tolerance == DEFAULT_TOLERANCE
    assert set(result.rows["verdict"]) == {"same"}  # bit-identical is still said


def test_the_reference_file_round_trips_exactly_and_is_small(tmp_path, reference):
    path = save_reference(load_side(reference), tmp_path / "ref.json")
    document = json.loads(path.read_text())
    assert document["format"] == "capsan-bench-reference/1" and document["device_kinds"] == [CPU]
    assert document["versions"]["torch"] == "2.14.1" and len(document["cells"]) == 32
    cell = document["cells"]["smote-0.1-[3, 5]-0"]
    assert cell["metrics"]["per_class_recall.1"] == 0.7 and cell["fit_seconds"] == 2.0
    assert "threads" not in cell["metrics"] and "budget.classifier.seconds" not in cell["metrics"]
    assert cell["metrics"]["budget.classifier.updates"] == 100  # the contract is compared, the clock is not
    result = compare(load_side(path), load_side(reference), "all")
    assert set(result.rows["verdict"]) == {"same"} and "per_class_recall.0" in set(result.rows["metric"])
    run = run_bench("compare", "--results", reference, "--save", tmp_path / "cli.json")
    assert run.returncode == 0 and (tmp_path / "cli.json").read_text() == path.read_text()


def test_time_is_reported_and_fails_only_when_asked(tmp_path, reference):
    slow = stored(tmp_path / "slow", [{**r, "metrics": {**r["metrics"], "budget": {**r["metrics"]["budget"],
                                                                                  "fit_seconds": 5.0}}}
                                      for r in grid()])
    old, new = load_side(reference), load_side(slow)
    relaxed = compare(old, new)
    assert not relaxed.failed and (relaxed.time["time_ratio"] == 2.5).all()
    strict = compare(old, new, time_tolerance=2.0)  # 2.5x is within 3x
    assert not strict.failed
    assert compare(old, new, time_tolerance=0.5).failed and compare(old, new, time_tolerance=0.5).counts["slower"] == 4


def test_markdown_and_json_outputs(tmp_path, reference):
    moved = stored(tmp_path / "new", grid(**{"capsan-0.05-3": 0.88}))
    result = compare(load_side(reference), load_side(moved), ["g_mean"])
    md = render(result, "md", "new", "ref")
    assert md.startswith("## bench compare: new against ref\n")
    assert "| method | dataset | protocol | test | ratio | metric |" in re.sub(" +", " ", md)
    (changed,) = [line for line in md.splitlines() if "**changed**" in line]
    assert "capsan" in changed and "0.05" in changed and "+0.006" in changed
    assert "Fit seconds" in md and "1.00x" in md
    document = json.loads(render(result, "json", "new", "ref"))
    assert document["failed"] and document["counts"]["changed"] == 1 and document["counts"]["same"] == 3
    (bad,) = [r for r in document["rows"] if r["verdict"] == "changed"]
    assert (bad["method"], bad["ratio"], bad["p_value"]) == ("capsan", 0.05, None)
    run = run_bench("compare", "--results", moved, "--against", reference, "--format", "md", "--metrics", "gm",
                    "--out", tmp_path / "pr.md")
    assert run.returncode == 1 and (tmp_path / "pr.md").read_text() == run.stdout


def test_bad_input_is_one_line_and_exit_2(tmp_path, reference, capsys):
    (tmp_path / "junk.json").write_text("{not json")
    (tmp_path / "other.json").write_text(json.dumps({"cells": {}}))
    cases = [
        (["--results", reference], "give --against REFERENCE"),
        (["--results", tmp_path / "nowhere", "--against", reference], "does not exist"),
        (["--results", reference, "--against", tmp_path / "junk.json"], "not a readable reference file"),
        (["--results", reference, "--against", tmp_path / "other.json"], "is not a capsan-bench-reference/1 file"),
        (["--results", reference, "--against", reference, "--metrics", "gmean"], "unknown metric(s) gmean"),
        (["--results", reference, "--against", reference, "--tolerance", "-1"], "--tolerance must be"),
    ]
    run = run_bench("compare", *cases[0][0])  # the installed command, once
    assert run.returncode == 2 and cases[0][1] in run.stderr and len(run.stderr.strip().splitlines()) == 1
    for args, message in cases[1:]:  # the same entry point, in this process
        with pytest.raises(SystemExit) as exit_code:
            main(["compare", *map(str, args)])
        err = capsys.readouterr().err
        assert exit_code.value.code == 2, (args, err)
        assert message in err and len(err.strip().splitlines()) == 1, err
    with pytest.raises(BenchError, match="no done cell to save"):
        save_reference(load_side(stored(tmp_path / "empty", [row("smote", 0, status="failed")])), tmp_path / "x.json")


# --------------------------------------------------------------------------- across device kinds: rows by their mean

GPU = "cuda:0 (NVIDIA H200)"


def jitter(seed):
    """A small move of one cell, within 0.005 either way, different per seed (another CPU's reordered sums)."""
    return (0.004, -0.003, 0.002, -0.005, 0.001, 0.003, -0.002, 0.0)[seed]


def test_one_knife_edge_cell_across_device_kinds_is_named_unstable_and_does_not_fail(tmp_path, reference):
    # smote at ratio 0.1: seed 3 moves by 0.12 (a few minority test images flip), the others within 0.005
    moves = {s: 0.12 if s == 3 else jitter(s) for s in range(8)}
    rows = grid(**{f"smote-0.1-{s}": 0.7 + 0.01 * s + d for s, d in moves.items()})
    other = stored(tmp_path / "gpu", [{**r, "device": GPU} for r in rows])
    result = compare(load_side(reference), load_side(other))
    assert result.by_row and result.tolerance == DEFAULT_TOLERANCE and "row by row" in result.setting
    g = result.rows.set_index(["method", "ratio", "metric"]).loc[("smote", 0.1, "g_mean")]
    assert g["verdict"] == "within" and g["max_abs_diff"] == pytest.approx(0.12)
    assert g["diff"] == pytest.approx(np.mean(list(moves.values())))
    assert not result.failed and result.moved == []
    # the cell is named, once per metric that follows g_mean in row(); roc_auc did not move
    assert {(label, metric) for _, label, metric, _, _ in result.unstable} == {
        ("smote digits/binary 3 vs 5 ratio 0.1 seed 3", m) for m in ("g_mean", "balanced_accuracy", "f_measure")}
    md = render(result, "md", "gpu", "ref")
    assert "3 unstable value(s)" in md and "- smote digits/binary 3 vs 5 ratio 0.1 seed 3: g_mean 0.7300 -> 0.8500" in md
    document = json.loads(render(result, "json", "gpu", "ref"))
    assert document["rule"] == "row" and not document["failed"] and document["moved"] == []
    assert [u["cell"] for u in document["unstable"]] == ["smote digits/binary 3 vs 5 ratio 0.1 seed 3"] * 3
    run = run_bench("compare", "--results", other, "--against", reference, "--metrics", "gm")
    assert run.returncode == 0, run.stderr
    assert "1 unstable cell value(s)" in run.stdout and "unstable value(s)" in run.stdout and "seed 3: g_mean" in run.stdout
    # the same store on the reference's device kind: that one cell is a real change
    same_kind = compare(load_side(reference), load_side(stored(tmp_path / "cpu", rows)), ["g_mean"])
    assert not same_kind.by_row and same_kind.unstable == [] and same_kind.failed
    assert same_kind.rows.set_index(["method", "ratio"]).loc[("smote", 0.1), "verdict"] == "changed"
    assert [label for _, label, _, _, _ in same_kind.moved][0] == "smote digits/binary 3 vs 5 ratio 0.1 seed 3"


def test_a_knife_edge_cell_that_carries_the_mean_beyond_the_tolerance_is_explained_by_the_spread(tmp_path):
    # three cells (seeds) in a row: one moves by 0.12, the mean moves by about 0.04, twice the tolerance
    old_rows = [row("crl", s, 0.78 - 0.01 * s, ratio=0.02) for s in range(3)]
    moves = [0.12, 0.003, -0.002]
    new_rows = [{**row("crl", s, 0.78 - 0.01 * s + moves[s], ratio=0.02), "device": GPU} for s in range(3)]
    result = compare(load_side(stored(tmp_path / "ref", old_rows)), load_side(stored(tmp_path / "new", new_rows)),
                     ["g_mean"])
    (g,) = result.rows.to_dict("records")
    expected = sps.t.ppf(0.975, 2) * np.std(moves, ddof=1) / math.sqrt(3)
    assert g["diff"] == pytest.approx(np.mean(moves)) and g["diff"] > DEFAULT_TOLERANCE
    assert g["spread"] == pytest.approx(expected) and g["spread"] > g["diff"]
    assert g["verdict"] == "within" and not result.failed and len(result.unstable) == 1
    # the same mean move in every cell alike has no spread to explain it
    alike = [{**row("crl", s, 0.78 - 0.01 * s + np.mean(moves), ratio=0.02), "device": GPU} for s in range(3)]
    result = compare(load_side(tmp_path / "ref"), load_side(stored(tmp_path / "alike", alike)), ["g_mean"])
    assert result.rows["verdict"].tolist() == ["changed"] and result.unstable == [] and len(result.moved) == 3


def test_every_cell_of_a_row_moving_005_one_way_across_device_kinds_is_changed(tmp_path, reference):
    rows = grid(**{f"capsan-0.05-{s}": 0.8 + 0.01 * s + 0.05 + jitter(s) for s in range(8)})
    other = stored(tmp_path / "gpu", [{**r, "device": GPU} for r in rows])
    result = compare(load_side(reference), load_side(other), ["g_mean"])
    by_row = result.rows.set_index(["method", "ratio"])
    assert by_row.loc[("capsan", 0.05), "verdict"] == "changed"
    assert by_row.loc[("capsan", 0.05), "diff"] == pytest.approx(0.05 + np.mean([jitter(s) for s in range(8)]))
    assert by_row.loc[("capsan", 0.05), "spread"] < 0.01  # the cells agree: the move is the row's
    assert set(by_row.drop(("capsan", 0.05))["verdict"]) == {"same"}
    assert result.failed and result.unstable == []
    assert len(result.moved) == 8 and {label.split(" seed ")[0] for _, label, _, _, _ in result.moved} == {
        "capsan digits/binary 3 vs 5 ratio 0.05"}
    run = run_bench("compare", "--results", other, "--against", reference, "--format", "json")
    assert run.returncode == 1
    (error,) = run.stderr.splitlines()
    assert error.startswith("Error: 3 changed (rows x metrics, above)")  # g_mean, balanced_accuracy, f_measure
    document = json.loads(run.stdout)
    assert document["rule"] == "row" and document["unstable"] == [] and len(document["moved"]) == 24


def test_across_versions_the_row_rule_holds_and_a_row_of_one_cell_is_that_cell(tmp_path):
    # a smoke run: one cell per row; its move beyond the tolerance is the row's, whatever the device kind
    old = stored(tmp_path / "ref", [row("smote", 0, 0.8), row("capsan", 0, 0.8)])
    torch_moved = {**VERSIONS, "torch": "2.15.0"}
    new = stored(tmp_path / "new", [{**row("smote", 0, 0.8 + 0.03), "versions": torch_moved},
                                    {**row("capsan", 0, 0.8 + 0.015), "versions": torch_moved}])
    result = compare(load_side(old), load_side(new), ["g_mean"])
    assert result.by_row and "versions differ" in result.setting
    verdicts = result.rows.set_index("method")
    assert verdicts.loc["smote", "verdict"] == "changed" and verdicts.loc["capsan", "verdict"] == "within"
    assert math.isnan(verdicts.loc["smote", "spread"]) and result.unstable == []
    # a metric that became undefined (NaN on one side only) is a change under either rule
    nan = stored(tmp_path / "nan", [{**row("smote", 0, 0.8, extra={"roc_auc": math.nan}), "versions": torch_moved},
                                    {**row("capsan", 0, 0.8), "versions": torch_moved}])
    result = compare(load_side(old), load_side(nan), ["roc_auc"])
    assert result.rows.set_index("method").loc["smote", "verdict"] == "changed" and result.failed
