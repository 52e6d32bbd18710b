"""Tables 1 and 2 from hand-built cells whose expected numbers are worked out by hand (see each comment)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats as scipy_stats

from bench.errors import BenchError
from bench.reports.tables12 import (
    TABLE1_COLUMNS,
    TABLE2_COLUMNS,
    paper_table1,
    paper_table2,
    render_table1,
    render_table2,
    table1,
    table1_tests,
    table2,
    table2_tests,
)

REFERENCE = Path(__file__).resolve().parents[1] / "reports" / "reference"
INCEPTION = "inception-v3 pool3 2048"
PROXY = "common-cnn penultimate 128 trained on mnist train"


def cell(method, dataset, seed, *, protocol="subset", ratio=100.0, accuracy=None, quality=None, failed=False):
    metrics = None
    if not failed:
        metrics = {"accuracy": accuracy if accuracy is not None else 0.5}
        if quality is not None:
            metrics["quality"] = quality
    return {
        "method": method,
        "dataset": dataset,
        "protocol": protocol,
        "ratio": ratio,
        "seed": seed,
        "pair": None,
        "status": "failed" if failed else "done",
        "metrics": metrics,
        "error": "CUDA out of memory" if failed else None,
        "params": {},
        "epochs": 1,
    }


def fid(variant, extractor, **values):
    """quality metrics: one entry per generated class, each with one FID variant."""
    return {
        cls: {"n_real": 10, variant: {"metric": variant, "value": v, "feature_extractor": extractor}}
        for cls, v in values.items()
    }


@pytest.fixture
def t1_cells() -> pd.DataFrame:
    rows = [
        # mnist n=100: capsule errors .8 .7 .6 -> mean .7, std .1; convolutional .9 .8 -> .85, std .0707
        *[cell("capsan", "mnist", s, accuracy=a) for s, a in enumerate([0.2, 0.3, 0.4])],
        *[cell("capsan-conv", "mnist", s, accuracy=a) for s, a in enumerate([0.1, 0.2])],
        # mnist n=500: capsule one seed (error .5, no std); convolutional only failed -> dash, n_failed 1
        cell("capsan", "mnist", 0, ratio=500.0, accuracy=0.5),
        cell("capsan-conv", "mnist", 0, ratio=500.0, failed=True),
        # svhn (not in the paper): a tie, both best
        cell("capsan", "svhn", 0, accuracy=0.6),
        cell("capsan-conv", "svhn", 0, accuracy=0.6),
        # not Table 1: another protocol, a swept variant, another method
        cell("capsan", "mnist", 0, protocol="binary", ratio=0.1, accuracy=0.99),
        cell("capsan[phi=0.5]", "mnist", 0, accuracy=0.99),
        cell("gan", "mnist", 0, accuracy=0.99),
    ]
    return pd.DataFrame(rows)


def t1_row(table, dataset, n, discriminator) -> pd.Series:
    match = table[
        (table["dataset"] == dataset) & (table["n"] == n) & (table["discriminator"] == discriminator)
    ]
    assert len(match) == 1
    return match.iloc[0]


def test_paper_loaders_match_the_shared_reference():
    table = paper_table1()
    raw = pd.read_csv(REFERENCE / "table1_discriminator_error.csv")
    pd.testing.assert_frame_equal(table, raw)
    assert len(table) == 18
    fids = paper_table2()
    assert list(fids.columns) == ["method", "dataset", "fid"]
    assert len(fids) == 20
    lookup = {(m, d): f for m, d, f in fids.itertuples(index=False)}
    assert lookup[("capsan", "mnist")] == 4.81
    assert lookup[("real", "fashion-mnist")] == 2.60


def test_table1_means_stds_best_and_paper(t1_cells):
    table = table1(t1_cells)
    assert list(table.columns) == TABLE1_COLUMNS
    assert len(table) == 6  # (mnist, 100), (mnist, 500), (svhn, 100) x 2 discriminators
    capsule = t1_row(table, "mnist", 100.0, "capsule")
    assert capsule["method"] == "capsan" and capsule["n_seeds"] == 3
    assert capsule["error_mean"] == pytest.approx(0.7)
    assert capsule["error_std"] == pytest.approx(0.1)
    assert capsule["error_best"]
    assert capsule["error_paper"] == pytest.approx(0.8153)
    conv = t1_row(table, "mnist", 100.0, "convolutional")
    assert conv["n_seeds"] == 2
    assert conv["error_mean"] == pytest.approx(0.85)
    assert conv["error_std"] == pytest.approx(math.sqrt(0.005))
    assert not conv["error_best"]
    assert conv["error_paper"] == pytest.approx(0.8204)
    assert list(table["discriminator"][:2]) == ["capsule", "convolutional"]
    for row, mean, std, n in ((capsule, 0.7, 0.1, 3), (conv, 0.85, math.sqrt(0.005), 2)):
        low, high = scipy_stats.t.interval(0.95, n - 1, loc=mean, scale=std / math.sqrt(n))
        assert (row["error_ci_low"], row["error_ci_high"]) == (pytest.approx(low), pytest.approx(high))


def test_table1_partial_rows_and_ties(t1_cells):
    table = table1(t1_cells)
    one = t1_row(table, "mnist", 500.0, "capsule")
    assert one["n_seeds"] == 1 and one["error_mean"] == pytest.approx(0.5) and math.isnan(one["error_std"])
    assert one["error_best"] and math.isnan(one["error_ci_low"])  # one seed: no interval
    missing = t1_row(table, "mnist", 500.0, "convolutional")
    assert missing["n_seeds"] == 0 and missing["n_failed"] == 1
    assert math.isnan(missing["error_mean"]) and not missing["error_best"]
    assert missing["error_paper"] == pytest.approx(0.7927)
    tie = table[table["dataset"] == "svhn"]
    assert tie["error_best"].all() and tie["error_paper"].isna().all()
    md = render_table1(table, "md")
    line = next(x for x in md.splitlines() if "| mnist" in x and "| 500" in x and "convolutional" in x)
    assert "| -" in line and "0.7927" in line


def test_table1_renders(t1_cells):
    table = table1(t1_cells)
    md = render_table1(table, "md")
    assert "**0.7000 ± 0.1000 [0.4516, 0.9484]**" in md  # 3 seeds: 0.7 ± t(.975, 2) 0.1 / sqrt(3)
    assert "0.8500 ± 0.0707 [0.2147, 1.4853]" in md and "**0.8500" not in md
    latex = render_table1(table, "latex")
    assert latex.count("{") == latex.count("}")
    for rule in ("\\toprule", "\\midrule", "\\bottomrule"):
        assert latex.count(rule) == 1
    assert "\\textbf{0.7000 $\\pm$ 0.1000 {\\scriptsize [0.4516, 0.9484]}}" in latex
    back = pd.read_csv(pd.io.common.StringIO(render_table1(table, "csv")))
    assert back["error_mean"].round(12).equals(table["error_mean"].astype(float).round(12))
    with pytest.raises(BenchError, match="valid formats"):
        render_table1(table, "html")


def test_table1_empty_and_one_sided():
    assert table1(None).empty and list(table1(pd.DataFrame()).columns) == TABLE1_COLUMNS
    only_conv = table1(pd.DataFrame([cell("capsan-conv", "mnist", 0, accuracy=0.7)]))
    capsule = t1_row(only_conv, "mnist", 100.0, "capsule")
    assert capsule["n_seeds"] == 0 and math.isnan(capsule["error_mean"])
    assert t1_row(only_conv, "mnist", 100.0, "convolutional")["error_best"]
    assert "No Table 1 results" in render_table1(table1(None), "md")


@pytest.fixture
def t2_cells() -> pd.DataFrame:
    rows = [
        # capsan mnist inception: seed 0 classes 10, 20 -> 15; seed 1 -> 25 (a NaN class skipped): 20 ± 7.071
        cell(
            "capsan",
            "mnist",
            0,
            protocol="binary",
            ratio=0.1,
            quality=fid("fid-inception", INCEPTION, a=10, b=20),
        ),
        cell(
            "capsan",
            "mnist",
            1,
            protocol="binary",
            ratio=0.1,
            quality=fid("fid-inception", INCEPTION, a=25, b=float("nan")),
        ),
        cell("gan", "mnist", 0, protocol="binary", ratio=0.1, quality=fid("fid-inception", INCEPTION, a=30)),
        # capsan cifar10 inception: one seed, two cells (8, 12) -> 10, n_cells 2
        cell(
            "capsan", "cifar10", 0, protocol="binary", ratio=0.1, quality=fid("fid-inception", INCEPTION, a=8)
        ),
        cell(
            "capsan", "cifar10", 0, protocol="step", ratio=0.2, quality=fid("fid-inception", INCEPTION, a=12)
        ),
        cell("gan", "cifar10", 0, protocol="binary", ratio=0.1, failed=True),
        # proxy: gan 300, 100 -> 200 ± 141.42; capsan 50 (best)
        cell("gan", "mnist", 0, protocol="binary", ratio=0.05, quality=fid("fid-proxy", PROXY, a=300)),
        cell("gan", "mnist", 1, protocol="binary", ratio=0.05, quality=fid("fid-proxy", PROXY, a=100)),
        cell("capsan", "mnist", 0, protocol="binary", ratio=0.05, quality=fid("fid-proxy", PROXY, a=50)),
        cell("smote", "mnist", 0, protocol="binary", ratio=0.05),  # no quality: not in Table 2
    ]
    return pd.DataFrame(rows)


def t2_row(table, method, dataset) -> pd.Series:
    match = table[(table["method"] == method) & (table["dataset"] == dataset)]
    assert len(match) == 1, (method, dataset)
    return match.iloc[0]


def test_table2_one_table_per_variant(t2_cells):
    tables = table2(t2_cells)
    assert list(tables) == ["fid-inception", "fid-proxy"]
    for variant, table in tables.items():
        assert list(table.columns) == TABLE2_COLUMNS
        assert set(table["variant"]) == {variant}
    assert set(tables["fid-proxy"]["feature_extractor"]) == {PROXY}
    assert "smote" not in set(tables["fid-inception"]["method"]) | set(tables["fid-proxy"]["method"])


def test_table2_inception_numbers_and_paper(t2_cells):
    table = table2(t2_cells)["fid-inception"]
    capsan = t2_row(table, "capsan", "mnist")
    assert capsan["fid_mean"] == pytest.approx(20.0) and capsan["fid_std"] == pytest.approx(math.sqrt(50))
    assert capsan["n_seeds"] == 2 and capsan["fid_best"] and capsan["fid_paper"] == pytest.approx(4.81)
    gan = t2_row(table, "gan", "mnist")
    assert gan["fid_mean"] == pytest.approx(30.0) and not gan["fid_best"] and gan["fid_paper"] == 17.81
    cifar = t2_row(table, "capsan", "cifar10")
    assert cifar["fid_mean"] == pytest.approx(10.0) and cifar["n_seeds"] == 1 and cifar["n_cells"] == 2
    assert cifar["protocols"] == "binary, step" and math.isnan(cifar["fid_std"])
    real = t2_row(table, "real", "mnist")
    assert real["fid_paper"] == 1.25 and real["n_seeds"] == 0 and not real["fid_best"]
    assert t2_row(table, "real", "cifar10")["fid_paper"] == 5.19
    gamo = t2_row(table, "gamo", "mnist")  # a paper method we did not run: paper value, our dash
    assert math.isnan(gamo["fid_mean"]) and gamo["fid_paper"] == 7.53
    assert "celeba" not in set(table["dataset"])  # only the datasets we have
    assert table["method"].iloc[0] == "real"


def test_table2_proxy_has_no_paper(t2_cells):
    table = table2(t2_cells)["fid-proxy"]
    assert table["fid_paper"].isna().all()
    assert "real" not in set(table["method"]) and len(table) == 2
    gan = t2_row(table, "gan", "mnist")
    assert gan["fid_mean"] == pytest.approx(200.0) and gan["fid_std"] == pytest.approx(math.sqrt(20000))
    assert t2_row(table, "capsan", "mnist")["fid_best"] and not gan["fid_best"]


def test_table2_renders(t2_cells):
    tables = table2(t2_cells)
    md = render_table2(tables, "md")
    inception, proxy = md.split("## fid-proxy")
    assert "(paper)" in inception and "(paper)" not in proxy
    assert INCEPTION in inception and PROXY in proxy and INCEPTION not in proxy
    # mean ± std [95 % t interval] (seeds): 20 ± 7.07 over 2 seeds -> 20 ± 12.706 x 5 = [-43.53, 83.53]
    assert "**20.00 ± 7.07 [-43.53, 83.53] (2)**" in inception and "| real" in inception and "1.25" in inception
    assert "**50.00 (1)**" in proxy and "200.00 ± 141.42 [-1070.62, 1470.62] (2)" in proxy
    gan_line = next(x for x in inception.splitlines() if x.startswith("| gan"))
    assert "- (0)" in gan_line  # gan cifar10 only failed: a dash, zero seeds
    latex = render_table2(tables, "latex")
    assert latex.count("{") == latex.count("}")
    assert latex.count("\\begin{table}") == 2
    for rule in ("\\toprule", "\\midrule", "\\bottomrule"):
        assert latex.count(rule) == 2
    assert "\\textbf{20.00 $\\pm$ 7.07 {\\scriptsize [-43.53, 83.53]} (2)}" in latex and "fid-proxy" in latex
    csv = pd.read_csv(pd.io.common.StringIO(render_table2(tables, "csv")))
    assert set(csv["variant"]) == {"fid-inception", "fid-proxy"}
    assert len(csv) == sum(len(t) for t in tables.values())


def test_table2_empty_and_failed_only():
    assert table2(None) == {} and table2(pd.DataFrame()) == {}
    failed = pd.DataFrame([cell("gan", "mnist", 0, failed=True), cell("smote", "mnist", 0)])
    assert table2(failed) == {}
    assert "No FID results" in render_table2({}, "md")
    assert render_table2({}, "latex").startswith("%")
    with pytest.raises(BenchError):
        render_table2(pd.DataFrame(), "md")


# ---------------------------------------------------------------------------------------------- tests in notes

CAPSULE = [0.62, 0.55, 0.71, 0.66, 0.58, 0.69, 0.60]  # accuracies over 7 (n, seed) units
CONV = [0.50, 0.57, 0.61, 0.52, 0.49, 0.63, 0.55]


def test_table1_note_has_scipys_wilcoxon_per_dataset():
    rows = [cell("capsan", "mnist", s % 4, ratio=100.0 * (1 + s // 4), accuracy=a) for s, a in enumerate(CAPSULE)]
    rows += [cell("capsan-conv", "mnist", s % 4, ratio=100.0 * (1 + s // 4), accuracy=a) for s, a in enumerate(CONV)]
    rows += [cell("capsan", "svhn", 0, accuracy=0.6), cell("capsan-conv", "svhn", 0, accuracy=0.5)]
    cells = pd.DataFrame(rows)
    note = table1_tests(cells)
    p = scipy_stats.wilcoxon(CAPSULE, CONV).pvalue
    assert "mnist: " in note and f"capsan-conv: p = {p:.3g}, Holm p = {p:.3g} (7 pairs" in note
    assert "svhn: " in note and "only 1 paired units" in note
    md = render_table1(table1(cells), "md", note)
    assert md.rstrip().endswith(note)
    latex = render_table1(table1(cells), "latex", note)
    footnote = latex.split("\\footnotesize")[1]
    assert "Wilcoxon signed-rank" in footnote and f"capsan-conv: p = {p:.3g}" in footnote


def test_table2_note_tests_capsan_per_variant_lower_is_better(t2_cells):
    notes = table2_tests(t2_cells)
    assert set(notes) == {"fid-inception", "fid-proxy"}
    assert "lower is better" in notes["fid-proxy"] and "gan: not tested, only 1 paired units" in notes["fid-proxy"]
    rows = [cell(m, "mnist", s, protocol="binary", ratio=0.1, quality=fid("fid-proxy", PROXY, a=v))
            for m, values in (("capsan", [10, 12, 9, 14, 11, 13]), ("gan", [20, 19, 25, 18, 22, 30]))
            for s, v in enumerate(values)]
    note = table2_tests(pd.DataFrame(rows))["fid-proxy"]
    p = scipy_stats.wilcoxon([10, 12, 9, 14, 11, 13], [20, 19, 25, 18, 22, 30]).pvalue
    assert f"gan: p = {p:.3g}" in note and "median difference -" in note  # capsan's FID is lower
    md = render_table2(table2(pd.DataFrame(rows)), "md", {"fid-proxy": note})
    assert note in md


def test_table2_has_our_real_vs_real_row_beside_the_papers():
    def with_floor(value, floor):
        quality = fid("fid-inception", INCEPTION, a=value)
        quality["a"]["real_vs_real"] = {"fid-inception": {"metric": "fid-inception", "value": floor,
                                                          "feature_extractor": INCEPTION}}
        return quality

    rows = [cell("capsan", "mnist", s, protocol="binary", ratio=0.1, quality=with_floor(v, f))
            for s, (v, f) in enumerate([(10.0, 2.0), (14.0, 3.0)])]
    table = table2(pd.DataFrame(rows))["fid-inception"]
    real = t2_row(table, "real", "mnist")
    assert real["fid_mean"] == pytest.approx(2.5) and real["n_seeds"] == 2  # ours, over the seeds
    assert real["fid_paper"] == paper_value("real", "mnist") and not real["fid_best"]  # never competes
    assert t2_row(table, "capsan", "mnist")["fid_best"]  # though its FID is higher than the real floor
    md = render_table2({"fid-inception": table}, "md")
    assert next(x for x in md.splitlines() if x.startswith("| real")).count("2.50 ± 0.71") == 1


def paper_value(method, dataset) -> float:
    lookup = {(m, d): f for m, d, f in paper_table2().itertuples(index=False)}
    return lookup[(method, dataset)]
