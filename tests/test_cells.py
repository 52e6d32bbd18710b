"""reports/cells.py: the store as one tidy table, and its one rule for inf, NaN, missing and failed, which every
table, figure and statistic now follows alike."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.errors import BenchError
from bench.reports import cells as C
from bench.reports.compare import side_of_cells
from bench.reports.export import cells_table
from bench.reports.figures import accuracy_data, fid_data, ssim_data
from bench.reports.stats import unit_values
from bench.reports.table3 import table3
from bench.reports.tables12 import table2
from bench.store import Store

QUALITY = {
    "5": {"ssim": {"generated": {"mean": 0.4}, "real": {"mean": 0.3}, "metric": "ssim-diversity"},
          "fid-proxy": {"value": 12.0, "kid": 0.5, "feature_extractor": "proxy cnn"},
          "real_vs_real": {"fid-proxy": {"value": 2.0, "feature_extractor": "proxy cnn"}},
          "n_fake": 10},
    "3": {"fid-proxy": {"value": math.inf, "feature_extractor": "never counted"},
          "ssim": {"generated": {"mean": 0.6}, "real": {"mean": 0.5}}},
    "battle": {"r_test": math.nan, "r_samples": math.inf, "winner": "undecided"},
}


def row(n, balanced, *, seed=0, status="done", g_mean=0.5, quality=None, method="gan", ratio=0.1):
    metrics = None
    if status == "done":
        metrics = {"accuracy": 0.9, "balanced_accuracy": balanced, "g_mean": g_mean, "f_measure": 0.4,
                   "precision": 0.5, "recall": 0.5, "roc_auc": "n/a", "per_class_recall": [1.0, 0.25],
                   "threads": 2, "budget": {"fit_seconds": 1.5, "roles": {"classifier": {"updates": 4, "optimizers": 1,
                                                                                       "seconds": 1.0}}}}
        if quality is not None:
            metrics["quality"] = quality
    return {"id": n, "key": f"k{n}", "method": method, "params": {"phi": 0.5}, "dataset": "mnist",
            "protocol": "binary", "pair": [3, 5], "ratio": ratio, "seed": seed, "epochs": 1,
            "counts": {"train": [10, 1]}, "status": status, "metrics": metrics, "curves": None,
            "error": None if status == "done" else "boom", "started_at": "", "finished_at": "", "duration_s": 1.0,
            "device": "cpu", "versions": {"torch": "2"}, "artifacts": None, "options": {"test": "train"}}


@pytest.fixture
def raw() -> pd.DataFrame:
    """Seeds 0-2 of one row: seed 1 stored an inf balanced accuracy, seed 2 failed; seed 0 has quality."""
    return pd.DataFrame([row(0, 0.8, seed=0, quality=QUALITY), row(1, math.inf, seed=1, g_mean=math.nan),
                         row(2, 0.7, seed=2, status="failed")])


def test_one_row_per_cell_metrics_as_floats_by_the_rule(raw):
    cells = C.as_cells(raw)
    frame = cells.frame
    assert list(frame["key"]) == ["k0", "k1", "k2"] and list(frame["pair"]) == ["3 vs 5"] * 3
    assert list(frame["test"]) == ["train"] * 3
    assert cells.metrics[:6] == ("accuracy", "balanced_accuracy", "precision", "recall", "f_measure", "g_mean")
    assert "roc_auc" not in cells.metrics  # no cell stored it as a number: no metric
    assert {"per_class_recall.0", "per_class_recall.1", "threads"} <= set(cells.metrics)
    assert "budget" not in cells.metrics and "quality.5.ssim.generated.mean" not in frame
    for metric in cells.metrics:
        assert frame[metric].dtype == float
    balanced = frame["balanced_accuracy"].tolist()
    assert balanced[0] == 0.8 and math.isnan(balanced[1]) and math.isnan(balanced[2])  # inf and failed: NaN
    assert frame.loc[0, "per_class_recall.1"] == 0.25
    assert frame.loc[2, "status"] == "failed" and frame.loc[2, "error"] == "boom"  # failed cells keep their row
    assert frame.loc[0, "budget"]["roles"]["classifier"]["updates"] == 4  # the ledger, a record of its own
    assert C.done(frame)["key"].tolist() == ["k0", "k1"]


def test_quality_is_one_long_table(raw):
    quality = C.as_cells(raw).quality
    assert list(quality.columns) == list(C.QUALITY_COLUMNS) and set(quality["cell"]) == {0}
    fid = quality[(quality["metric"] == "fid-proxy") & (quality["field"] == "value")]
    assert fid.set_index(["class", "source"])["value"].to_dict().keys() == {("5", "generated"), ("3", "generated"),
                                                                             ("5", "real_vs_real")}
    assert math.isnan(fid[(fid["class"] == "3")]["value"].iloc[0])  # inf is NaN here too
    battle = quality[quality["metric"] == "battle"].set_index("field")
    assert battle.loc["winner", "text"] == "undecided" and math.isnan(battle.loc["r_samples", "value"])
    assert quality[(quality["field"] == "n_fake")]["value"].tolist() == [10.0]
    cells = C.as_cells(raw)
    assert C.class_means(cells, "fid-proxy", "value").to_dict() == {0: 12.0}  # the inf class left out
    assert C.class_means(cells, "ssim", "generated.mean").to_dict() == {0: pytest.approx(0.5)}
    assert C.class_means(cells, "fid-proxy", "value", C.REAL).to_dict() == {0: 2.0}


def test_every_reader_treats_a_cell_alike(raw):
    """One store, one rule: the inf seed counts in no table, figure or statistic (Table 3 once kept it)."""
    table = table3(raw)
    assert table["balanced_accuracy_mean"].iloc[0] == pytest.approx(0.8)
    assert table["n_failed"].iloc[0] == 1
    figure = accuracy_data(raw)
    assert figure["mean"].iloc[0] == pytest.approx(0.8) and figure["n_seeds"].iloc[0] == 1
    assert unit_values(raw, "balanced_accuracy")["value"].tolist() == [0.8]
    exported = cells_table(raw)["balanced_accuracy"]
    assert exported.iloc[0] == 0.8 and np.isnan(exported.iloc[1])
    fids = table2(raw)["fid-proxy"].set_index("method")["fid_mean"]
    assert fids["gan"] == 12.0 and fids["real"] == 2.0
    assert table2(raw)["fid-proxy"].set_index("method").loc["gan", "feature_extractor"] == "proxy cnn"
    assert fid_data(raw)["value"].tolist() == [12.0, 2.0]
    assert ssim_data(raw)["generated"].tolist() == [pytest.approx(0.5)]


def test_compare_reads_the_same_table(raw):
    side = side_of_cells(raw)
    assert set(side.cells) == {"k0", "k1"}
    first = side.cells["k0"]["metrics"]
    assert first["balanced_accuracy"] == 0.8 and "threads" not in first
    assert first["budget.roles.classifier.updates"] == 4.0 and "budget.roles.classifier.seconds" not in first
    assert first["quality.5.fid-proxy.value"] == 12.0 and first["quality.5.real_vs_real.fid-proxy.value"] == 2.0
    assert "quality.5.fid-proxy.feature_extractor" not in first  # text is no metric
    # a recorded metric that is NaN stays (undefined: a change against a number); a NaN elsewhere is absent
    assert math.isnan(side.cells["k1"]["metrics"]["g_mean"])
    assert "quality.3.fid-proxy.value" in first and math.isnan(first["quality.3.fid-proxy.value"])
    assert side.cells["k1"]["task"] == {"method": "gan", "dataset": "mnist", "protocol": "binary", "test": "train",
                                        "pair": "3 vs 5", "ratio": 0.1, "seed": 1}


def test_as_cells_takes_cells_a_tidy_frame_or_nothing(raw):
    cells = C.as_cells(raw)
    assert C.as_cells(cells) is cells
    part = C.as_cells(cells.frame.iloc[:1])
    assert part.frame is not None and "g_mean" in part.metrics and part.quality.empty
    assert C.as_cells(None).frame.empty
    with pytest.raises(BenchError, match="expected the DataFrame of Store.cells"):
        C.as_cells([1, 2])
    assert C.param(cells.frame, "phi").tolist() == [0.5] * 3 and C.param(cells.frame, "nope").isna().all()


def test_read_reads_a_store(tmp_path, raw):
    with Store(tmp_path / "r") as store:
        store.add({k: v for k, v in raw.iloc[0].to_dict().items() if k != "id"})
    cells = C.read(tmp_path / "r")
    assert cells.frame["key"].tolist() == ["k0"] and cells.frame["results"].tolist() == [str(tmp_path / "r")]
    assert not cells.quality.empty


def test_numbers_name_what_each_cell_stored(raw):
    extra = row(3, 0.6, seed=3)
    extra["metrics"] = {**extra["metrics"], "flag": True, "note": "text", "fused": None}
    del extra["metrics"]["roc_auc"]
    cells = C.as_cells(pd.concat([raw, pd.DataFrame([extra])], ignore_index=True))
    assert "flag" in cells.metrics and cells.frame.loc[3, "flag"] == 1.0  # a bool is 0 or 1 in the table
    assert "note" not in cells.metrics and "fused" not in cells.metrics  # text or None: no metric
    found = C.numbers(cells)
    assert set(found) == {0, 1, 3}  # done cells only
    assert "flag" not in found[3] and "note" not in found[3]  # a flag is no number the cell measured
    assert "g_mean" in found[1] and math.isnan(found[1]["g_mean"])  # stored NaN: kept, undefined
    assert "balanced_accuracy" in found[1] and math.isnan(found[1]["balanced_accuracy"])  # stored inf: NaN
    assert found[0]["budget.fit_seconds"] == 1.5 and found[0]["quality.battle.r_test"] != found[0]["quality.battle.r_test"]
    assert found[0]["quality.5.n_fake"] == 10.0 and "quality.battle.winner" not in found[0]
    assert "threads" not in C.numbers(cells, {"threads", "seconds"})[0]


def test_a_frame_is_tidy_or_raw_never_guessed(raw):
    cells = C.as_cells(raw)
    with pytest.raises(BenchError, match="lacks test"):
        C.as_cells(cells.frame.drop(columns="test"))
    tidy = C.as_cells(cells.frame.assign(config="text"))
    assert "config" not in tidy.metrics and "g_mean" in tidy.metrics
    no_options = raw.drop(columns="options").assign(test="holdout")
    assert set(C.as_cells(no_options).frame["test"]) == {"holdout"}  # a raw frame's own test set stays
    part = cells.where(cells.frame["seed"] == 0)
    assert list(part.frame.index) == [0] and set(part.quality["cell"]) == {0}
    assert cells.where(cells.frame["seed"] == 1).quality.empty
