"""Validation against published numbers: DeepSMOTE's GAMO-protocol table shipped as data, the protocol's test
sets, the two-test-set grid, the reference columns of Table 3 and ``bench report --validation``."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import SHARED_DATA, bench_command, cli_exit, require_shared

from bench.datasets.base import ImageSet
from bench.datasets.imbalance import GAMO_BALANCED_TEST, GAMO_COUNTS, GAMO_TEST_COUNTS, make_imbalanced
from bench.errors import BenchError
from bench.grid import Preset, build_grid, load_preset
from bench.reports import reference_gamo, table3
from bench.reports.render import render_markdown, table3_text
from bench.reports.table3 import failed_cells
from bench.reports.validation import GAP_POINTS, render_validation
from bench.store import Store

SHARED_REFERENCE = SHARED_DATA.parent / "reference" / "deepsmote_gamo_protocol.csv"
ROOT = Path(__file__).resolve().parents[1]


def _dataset(counts, offset=0):
    labels = np.repeat(np.arange(len(counts)), counts).astype(np.int64)
    index = np.arange(len(labels)) + offset
    images = np.stack([index % 256, index // 256], axis=1).astype(np.uint8)[:, :, None, None]
    return ImageSet(images, labels, tuple(f"c{i}" for i in range(len(counts))))


# ----------------------------------------------------------------------------------------- the shipped numbers


def test_the_shipped_reference_is_the_published_table_in_the_suites_terms():
    shared = require_shared(SHARED_REFERENCE, "DeepSMOTE's GAMO-protocol table")
    # the sandbox copy leaves the source field unquoted: split from the right, then compare value by value
    lines = shared.read_text().splitlines()
    published = [line.rsplit(",", 7) for line in lines[1:] if line.strip()]
    ours = reference_gamo()
    assert len(ours) == len(published) == 20
    tests = {"imbalanced": "train", "balanced": "balanced"}
    for source, table, test_set, dataset, method, acsa, gm, f1 in published:
        match = ours[(ours["dataset"] == dataset.replace("celeba-hair", "celeba")) & (ours["method"] == method)
                     & (ours["test"] == tests[test_set])]
        assert len(match) == 1, (dataset, method, test_set)
        row = match.iloc[0]
        assert row["source"] == source and row["table"] == table and row["protocol"] == "gamo"
        assert (row["balanced_accuracy"], row["g_mean_macro"], row["f_measure"]) == pytest.approx(
            (float(acsa) / 100, float(gm) / 100, float(f1) / 100))


# ----------------------------------------------------------------------------------------- the protocol


def test_gamo_imbalanced_test_has_deepsmotes_counts_and_records_a_short_class():
    train = _dataset([4600] * 10)
    test = _dataset([980] + [1100] * 9, offset=60000)  # class 0 has fewer test images than the 1,000 asked
    task = make_imbalanced(train, test, "gamo", seed=0, dataset="mnist", test_distribution="train")
    expected = list(GAMO_TEST_COUNTS["mnist"])
    assert expected == [n // 4 for n in GAMO_COUNTS["mnist"]]  # the training shape, a quarter of it
    assert task.test.counts().tolist() == [980] + expected[1:]
    assert task.counts["test_requested"] == expected and task.counts["test_clamped"] == [0]
    again = make_imbalanced(train, test, "gamo", seed=0, dataset="mnist", test_distribution="train")
    other = make_imbalanced(train, test, "gamo", seed=1, dataset="mnist", test_distribution="train")
    assert np.array_equal(task.test.images, again.test.images)
    assert not np.array_equal(task.test.images, other.test.images)  # a seeded draw, not the first n


def test_gamo_balanced_test_asks_deepsmotes_count_per_class_and_takes_what_the_split_has():
    train = _dataset([4600] * 10)
    task = make_imbalanced(train, _dataset([1500] * 10, offset=60000), "gamo", seed=0, dataset="mnist")
    assert task.test.counts().tolist() == [GAMO_BALANCED_TEST["mnist"]] * 10 == [1200] * 10
    assert task.counts["test_clamped"] == []
    short = make_imbalanced(train, _dataset([1000] * 10, offset=60000), "gamo", seed=0, dataset="fashion-mnist")
    assert short.test.counts().tolist() == [1000] * 10  # Fashion-MNIST's split: 1,000 a class
    assert short.counts["test_requested"] == [1200] * 10 and short.counts["test_clamped"] == list(range(10))


def test_other_protocols_keep_the_proportional_test_rule():
    task = make_imbalanced(_dataset([100] * 5), _dataset([20] * 5, offset=1000), "longtail", ratio=0.1, seed=0,
                           test_distribution="train")
    assert task.test.counts().tolist() == [20, 11, 6, 3, 2] and "test_requested" not in task.counts


# ----------------------------------------------------------------------------------------- the grid


def _config(**overrides):
    base = dict(name="t", methods=["imbalanced", "smote"], datasets=["mnist"], protocol="gamo", ratios=[0.01],
                seeds=2, epochs=1)
    return Preset(**{**base, **overrides})


def test_two_test_sets_run_every_cell_once_per_test_set_under_its_own_key():
    one = build_grid(_config())
    both = build_grid(_config(test_distribution=["balanced", "train"]))
    assert len(both) == 2 * len(one)
    balanced = [c for c in both if c.options.get("test") is None]
    follow = [c for c in both if c.options.get("test") == "train"]
    assert [c.key for c in balanced] == [c.key for c in one]  # the default test set keeps its keys
    assert len({c.key for c in both}) == len(both)
    # the gamo protocol's DeepSMOTE test counts are a key of their own: cells of the old rule are not reused
    assert all(c.options == {"test": "train", "test_counts": "deepsmote"} for c in follow)
    binary = build_grid(_config(protocol="binary", test_distribution="train", pairs=[[3, 5]]))
    assert all(c.options == {"test": "train"} for c in binary)


@pytest.mark.parametrize("tests, message", [
    (["balanced", "skewed"], "unknown test set 'skewed'"),
    (["train", "train"], "listed twice"),
    ([], "unknown test set none"),
])
def test_bad_test_sets_are_one_line_errors(tests, message):
    with pytest.raises(BenchError, match=message):
        build_grid(_config(test_distribution=tests))


def test_the_validation_presets_build_the_grids_the_issue_asks_for():
    gamo = build_grid(load_preset("validate-gamo"))
    assert {c.method for c in gamo} == {"imbalanced", "smote", "bagan", "gamo", "capsan"}
    assert {c.dataset for c in gamo} == {"mnist", "fashion-mnist"}
    assert {c.options.get("test", "balanced") for c in gamo} == {"balanced", "train"}
    assert {c.seed for c in gamo} == {0, 1, 2} and len(gamo) == 5 * 2 * 2 * 3
    table3_cells = build_grid(load_preset("validate-table3"))
    assert {c.method for c in table3_cells} == {"imbalanced", "smote", "adasyn", "crl", "capsan"}
    assert {c.ratio for c in table3_cells} == {0.5, 0.1, 0.02} and len(table3_cells) == 5 * 3 * 3 * 3
    table1 = build_grid(load_preset("validate-table1"))
    assert {c.ratio for c in table1} == {100.0, 500.0, 1000.0} and {c.dataset for c in table1} == {"mnist"}
    assert all(c.params["gan_epochs"] == 0 for c in table1) and len(table1) == 2 * 3 * 3
    paper = build_grid(load_preset("validate-gamo-paper"))
    assert {c.variant for c in paper} == {"", "bagan[schedule=paper]", "gamo[schedule=paper]"} and len(paper) == 60
    for name in ("validate-gamo", "validate-table3"):  # the GPU variants: the same cells at a larger budget
        cpu, gpu = build_grid(load_preset(name)), build_grid(load_preset(f"{name}-gpu"))
        def what(cells):
            return sorted((c.method, c.dataset, c.ratio, c.pair, c.seed, str(c.options)) for c in cells)

        assert what(cpu) == what(gpu) and min(c.epochs for c in gpu) > max(c.epochs for c in cpu)


def test_the_command_line_takes_both_test_sets(tmp_path, capsys):
    out = subprocess.run(bench_command() + ["run", "--methods", "imbalanced", "--datasets", "digits", "--ratios",
                                            "0.1", "--pairs", "3:5", "--epochs", "1", "--seeds", "1",
                                            "--test-set", "balanced,train",
                                            "--results", str(tmp_path / "r"), "--quiet"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    with Store(tmp_path / "r", create=False) as store:
        cells = store.cells()
    assert sorted(str(o.get("test")) for o in cells["options"].map(lambda o: o or {})) == ["None", "train"]
    code, err = cli_exit(["run", "--test-set", "skewed", "--dry-run", "--results", tmp_path / "bad"], capsys)
    assert code == 2 and err.strip().count("\n") == 0 and "unknown test set" in err


# ----------------------------------------------------------------------------------------- the report


def _cell(n, method, test, seed, acsa, dataset="mnist", status="done"):
    metrics = {"balanced_accuracy": acsa, "g_mean": acsa - 0.05, "g_mean_macro": acsa - 0.01, "f_measure": acsa - 0.02,
               "precision": acsa,
               "recall": acsa, "accuracy": acsa, "roc_auc": 0.99,
               "budget": {"roles": {"classifier": {"updates": 625, "optimizers": 1, "seconds": 1.0}},
                          "contract": {"classifier": 625}, "fit_seconds": 2.0}}
    return {"key": f"k{n}", "method": method, "params": {}, "dataset": dataset, "protocol": "gamo", "pair": None,
            "ratio": 0.01, "seed": seed, "epochs": 1, "counts": {}, "status": status,
            "metrics": metrics if status == "done" else None, "error": None if status == "done" else "boom",
            "started_at": f"2026-12-01T00:0{n % 10}:00", "finished_at": f"2026-12-01T01:0{n % 10}:00",
            "duration_s": 60.0, "device": "cpu", "versions": {},
            "options": {"test": "train", "test_counts": "deepsmote"} if test == "train" else None}


@pytest.fixture
def gamo_cells(tmp_path) -> pd.DataFrame:
    rows = []
    for seed, (balanced, follow) in enumerate([(0.90, 0.80), (0.92, 0.82), (0.94, 0.84)]):
        rows += [("smote", "balanced", seed, balanced), ("smote", "train", seed, follow),
                 ("gamo", "balanced", seed, 0.955), ("gamo", "train", seed, 0.954)]
    rows.append(("gamo", "train", 3, None))  # a failed cell of the imbalanced test only
    with Store(tmp_path / "r") as store:
        for n, (method, test, seed, acsa) in enumerate(rows):
            store.add(_cell(n, method, test, seed, acsa or 0, status="failed" if acsa is None else "done"))
        return store.cells()


def test_cells_of_two_test_sets_are_two_rows_and_only_matching_rows_get_published_values(gamo_cells):
    table = table3(gamo_cells)
    assert len(table) == 4 and set(table["test"]) == {"balanced", "train"}
    smote = table[(table["method"] == "smote")].set_index("test")
    assert smote.loc["balanced", "balanced_accuracy_mean"] == pytest.approx(0.92)  # never pooled with train
    assert smote.loc["train", "balanced_accuracy_mean"] == pytest.approx(0.82)
    # DeepSMOTE publishes SMOTE on the imbalanced test only (Table II), GAMO on both
    assert np.isnan(smote.loc["balanced", "balanced_accuracy_ref"])
    assert smote.loc["train", "balanced_accuracy_ref"] == pytest.approx(0.8148)
    assert "Table II" in smote.loc["train", "ref_source"] and "DeepSMOTE" in smote.loc["train", "ref_source"]
    gamo = table[(table["method"] == "gamo")].set_index("test")
    # DeepSMOTE's GM is the one-vs-rest G-mean: it stands beside ours of that definition, never the recalls' one
    assert gamo.loc["balanced", "g_mean_macro_ref"] == pytest.approx(0.9747) and "g_mean_ref" not in gamo
    assert "Table III" in gamo.loc["balanced", "ref_source"]
    variant = table3(gamo_cells.assign(method=gamo_cells["method"].replace({"gamo": "gamo[schedule=paper]"})))
    assert variant.set_index(["method", "test"]).loc[("gamo[schedule=paper]", "balanced"), "g_mean_macro_ref"] == \
        pytest.approx(0.9747)  # a variant of a method is compared with that method's published row
    failed = failed_cells(gamo_cells)
    assert failed[["method", "test"]].values.tolist() == [["gamo", "train"]]


def test_the_rendered_tables_name_the_test_set_and_the_source(gamo_cells):
    markdown = render_markdown(table3(gamo_cells), failed_cells(gamo_cells))
    assert "## mnist, gamo, balanced test" in markdown and "## mnist, gamo, imbalanced test" in markdown
    assert markdown.count("| published") >= 2 and "Dablain, Krawczyk, Chawla" in markdown
    imbalanced_part = markdown.split("## mnist, gamo, imbalanced test")[1]
    assert "0.815" in imbalanced_part and "Failed cells" in imbalanced_part  # SMOTE's published ACSA, the failure
    assert "Failed cells" not in markdown.split("## mnist, gamo, imbalanced test")[0]
    text = table3_text(gamo_cells)
    assert "published values (DeepSMOTE" in text and ".815" in text


def test_validation_shows_differences_in_points_and_flags_gaps(gamo_cells):
    text = render_validation(gamo_cells)
    smote_follow = text.split("### mnist, imbalanced test")[1].split("###")[0]
    # ours 82.00 +- 2.00 against DeepSMOTE's 81.48: +0.52 points, under the gap threshold
    smote_row = [c.strip() for c in smote_follow.split("| smote")[1].split("\n")[0].split("|")]
    # the 95 % interval of 3 seeds: 82.00 -+ t(0.975, 2) x 2.00 / sqrt(3) = 82.00 -+ 4.97
    assert smote_row[2:5] == ["82.00 ± 2.00 [77.03, 86.97]", "81.48", "+0.52"]
    assert GAP_POINTS == 2.0
    # GAMO on the balanced test: ours 95.50 vs 95.52 ACSA (-0.02), GM (one-vs-rest) 94.50 vs 97.47 (-2.97,
    # outside an interval of no width: a gap)
    gamo_balanced = text.split("### mnist, balanced test")[1].split("###")[0]
    gamo_row = [c.strip() for c in gamo_balanced.split("| gamo")[1].split("\n")[0].split("|")]
    assert gamo_row[2:8] == ["95.50 ± 0.00 [95.50, 95.50]", "95.52", "-0.02", "94.50 ± 0.00 [94.50, 94.50]",
                             "97.47", "-2.97 gap"]
    assert "GM (macro) ours" in gamo_balanced and "exceeds its ACSA in 20 of its 20 rows" in gamo_balanced
    assert "cells: 12 done, 1 failed" in text and "classifier updates (U)" in text and "| 625 " in text
    assert "outside our 95 % interval and more than 2 points away" in text


def test_a_difference_the_seeds_spread_explains_is_not_a_gap(tmp_path):
    """Beyond 2 points but inside our 95 % interval: shown, never flagged; one seed (no interval): never flagged."""
    with Store(tmp_path / "r") as store:
        for n, acsa in enumerate([0.76, 0.84, 0.92]):  # mean 84.00, +2.52 against DeepSMOTE's 81.48, std 8.00
            store.add(_cell(n, "smote", "train", n, acsa))
        store.add(_cell(3, "gamo", "train", 0, 0.90))  # one seed: -5.45 points, no interval
        cells = store.cells()
    part = render_validation(cells).split("### mnist, imbalanced test")[1]
    smote_row = [c.strip() for c in part.split("| smote")[1].split("\n")[0].split("|")]
    assert smote_row[2:5] == ["84.00 ± 8.00 [64.13, 103.87]", "81.48", "+2.52"]
    gamo_row = [c.strip() for c in part.split("| gamo")[1].split("\n")[0].split("|")]
    assert gamo_row[2:5] == ["90.00", "95.45", "-5.45"]
    assert "0 gap(s)" in part
    # a mean far enough away, with a spread that does not reach the published value, is a gap
    with Store(tmp_path / "far") as store:
        for n, acsa in enumerate([0.92, 0.94, 0.96]):
            store.add(_cell(n, "smote", "train", n, acsa))
        far = store.cells()
    assert "+12.52 gap" in render_validation(far)


def test_report_writes_validation_md_from_the_store(tmp_path, gamo_cells):
    results = tmp_path / "r"
    out = subprocess.run(bench_command() + ["report", "--results", str(results), "--out", str(tmp_path / "o"),
                                            "--format", "md", "--tables", "3", "--validation"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    written = (tmp_path / "o" / "validation.md").read_text()
    assert written == render_validation(gamo_cells)
    assert "published values (DeepSMOTE" in out.stdout


def test_the_dry_runs_calibration_sample_keeps_enough_of_the_rarest_class_for_smote():
    from bench.datasets.imbalance import GAMO_COUNTS
    from bench.dryrun import CALIBRATION_IMAGES, MIN_PER_CLASS, _shrink

    small = _shrink(_dataset(GAMO_COUNTS["mnist"]), CALIBRATION_IMAGES, seed=0)
    counts = small.counts().tolist()
    assert min(counts) == MIN_PER_CLASS >= 6  # SMOTE's 5 neighbours and the point itself
    assert counts[0] == round(CALIBRATION_IMAGES * 4000 / 9000) and len(small) < CALIBRATION_IMAGES + 10 * MIN_PER_CLASS
    assert _shrink(_dataset([3, 100]), 50, seed=0).counts().tolist() == [3, 49]  # a class smaller keeps all


def test_a_holdout_test_set_is_a_stratified_part_of_the_training_set_and_no_test_image():
    from bench.datasets.imbalance import HOLDOUT_FRACTION

    train, test = _dataset([500, 500]), _dataset([50, 50], offset=5000)
    task = make_imbalanced(train, test, pair=(0, 1), ratio=0.1, seed=0, test_distribution="holdout")
    full = make_imbalanced(train, test, pair=(0, 1), ratio=0.1, seed=0)
    ids = lambda s: set((s.images[:, 0, 0, 0].astype(int) + 256 * s.images[:, 1, 0, 0].astype(int)).tolist())  # noqa: E731
    assert ids(task.train) | ids(task.test) == ids(full.train) and not ids(task.train) & ids(task.test)
    assert task.test.counts().tolist() == [round(500 * HOLDOUT_FRACTION), round(50 * HOLDOUT_FRACTION)]
    assert task.counts["holdout_of_train"] == HOLDOUT_FRACTION and task.positive == 1
    other = make_imbalanced(train, test, pair=(0, 1), ratio=0.1, seed=1, test_distribution="holdout")
    assert ids(other.test) != ids(task.test)
    cell = build_grid(_config(protocol="binary", pairs=[[3, 5]], test_distribution="holdout"))[0]
    assert cell.options == {"test": "holdout"}
    from bench.errors import CellRefused

    with pytest.raises(CellRefused, match="at least 2 training images"):
        make_imbalanced(_dataset([100, 100]), test, pair=(0, 1), ratio=0.01, seed=0, test_distribution="holdout")


def test_the_report_says_which_test_set_was_used_where_the_split_falls_short():
    from bench.reports.render import table_budgets
    from bench.reports.tasks import test_set_note

    counts = {"test": [980, 500, 250], "test_requested": [1000, 500, 250], "test_clamped": [0]}
    frame = pd.DataFrame({"counts": [counts], "status": ["done"]})
    note = test_set_note(frame)
    assert "asks 1,000, 500, 250 images" in note and "fewer of class 0, which keeps all it has" in note
    assert "used 980, 500, 250" in note
    whole = {"test": [1000, 500, 250], "test_requested": [1000, 500, 250], "test_clamped": []}
    assert "as the published protocol asks" in test_set_note(pd.DataFrame({"counts": [whole], "status": ["done"]}))
    assert test_set_note(pd.DataFrame({"counts": [{"test": [5, 5]}], "status": ["done"]})) == ""  # no request
    cells = pd.DataFrame([{**_cell(0, "smote", "train", 0, 0.8), "counts": counts}])
    assert "used 980" in table_budgets(cells)[("mnist", "gamo", "train")]


def _update_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("update", ROOT / "benchmarks" / "validation" / "update.py")
    update = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(update)
    return update


def test_validation_md_holds_what_the_committed_stores_render():
    """VALIDATION.md's measured tables and every figure its prose cites are the suite's output: each block and
    each fact equals a fresh rendering of its store."""
    update = _update_module()
    text = (ROOT / "VALIDATION.md").read_text(encoding="utf-8")
    blocks = [(m.group("kind"), m.group("folder")) for m in update.BLOCK.finditer(text)]
    assert {f"benchmarks/validation/{name}" for name in (
        "validate-gamo", "budget-study", "validate-table3", "validate-table1", "capsule-study/e5",
        "capsan-study")} <= {f for _, f in blocks}
    compared = [(m.group("new"), m.group("old")) for m in update.COMPARE.finditer(text)]
    assert [new for new, _ in compared] == ["benchmarks/validation/validate-table3-1thread",
                                            "benchmarks/validation/validate-gamo-1thread"]
    blocks += [("compare", folder) for pair in compared for folder in pair]
    for kind, folder in blocks:
        stores = list((ROOT / folder).glob("e*/bench.sqlite")) if kind == "budget" else [ROOT / folder / "bench.sqlite"]
        assert stores and all(s.is_file() for s in stores), f"{folder} has no committed store"
    assert len(update.FACT.findall(text)) >= 60  # the prose's figures are facts, not typed numbers
    assert update.refresh(text) == text, "VALIDATION.md is stale: run python benchmarks/validation/update.py"
    assert not re.search(r"\b(RUN_FACTS|GAPS|CAPSAN_STUDY|BUDGET_ANSWER|CAPSULE_ANSWER|CAPSULE_WORDS|E20BLOCK|E20PAIRED|OTHER_KIND|GAMOGPU|DEVIATIONS)\b",
                         text), "VALIDATION.md still holds a placeholder"
    assert (ROOT / "benchmarks" / "validation" / "budget-study.png").is_file()


def test_an_edited_prose_figure_is_caught_and_restored():
    """The freshness check sees a hand-edited cited figure (here the no-resampling ACSA on Fashion-MNIST's
    imbalanced test, the one the issue found stale at 76.9), and an unknown fact is an error, not a blank."""
    update = _update_module()
    text = (ROOT / "VALIDATION.md").read_text(encoding="utf-8")
    name = "pct:validate-gamo:fashion-mnist:train:imbalanced:balanced_accuracy"
    marker = f"<!-- fact {name} -->"
    assert marker in text
    value = text.split(marker)[1].split("<!-- /fact -->")[0]
    edited = text.replace(f"{marker}{value}<!--", f"{marker}76.9<!--")
    assert edited != text and update.refresh_facts(edited) == update.refresh_facts(text) != edited
    with pytest.raises(KeyError, match="unknown fact kind"):
        update.refresh_facts("<!-- fact typed:42 -->42<!-- /fact -->")


def test_a_declared_difference_is_said_under_the_table_that_shows_the_published_number(tmp_path):
    with Store(tmp_path / "r") as store:
        for n, method in enumerate(["deepsmote", "smote"]):
            store.add(_cell(n, method, "train", 0, 0.9))
        cells = store.cells()
    text = render_validation(cells)
    assert "deepsmote: our encoder and decoder" in text and "lowest-loss checkpoint" in text
    assert "deepsmote: our encoder" in render_markdown(table3(cells), failed_cells(cells))
    without = render_validation(cells[cells["method"] == "smote"])
    assert "deepsmote:" not in without and "exceeds its ACSA" in without
