"""Statistics beyond the paper (bench.reports.stats), on hand-made cells with known numbers."""

from __future__ import annotations

import math
import re
import statistics

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench.reports.aggregate import ci_bounds, confidence_interval
from bench.reports.render import render_markdown, table_tests
from bench.reports.stats import (
    cd_diagram,
    ci_text,
    cliques,
    critical_difference,
    friedman_ranking,
    holm,
    nemenyi_q,
    paired_wilcoxon,
    wilcoxon_note,
)
from bench.reports.table3 import failed_cells, table3
from bench.store import Store

PAIRS = ([3, 5], [1, 7])


def cell(method, g_mean, *, dataset="mnist", protocol="binary", ratio=0.1, pair=(3, 5), seed=0, error=None):
    return {
        "key": f"{method}-{dataset}-{protocol}-{ratio}-{pair}-{seed}",
        "method": method,
        "params": {},
        "dataset": dataset,
        "protocol": protocol,
        "pair": None if pair is None else list(pair),
        "ratio": ratio,
        "seed": seed,
        "epochs": 1,
        "counts": {},
        "status": "failed" if error else "done",
        "metrics": None if error else {"g_mean": g_mean, "recall": 1 - g_mean},
        "error": error,
    }


def frame(rows) -> pd.DataFrame:
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ confidence interval


def test_confidence_interval_by_hand():
    values = [0.70, 0.80, 0.50, float("nan")]  # the NaN is dropped: n = 3
    mean, sd = statistics.mean(values[:3]), statistics.stdev(values[:3])
    half = 4.302652729911275 * sd / math.sqrt(3)  # t_{0.975, 2} from a table
    low, high = confidence_interval(values)
    assert low == pytest.approx(mean - half)
    assert high == pytest.approx(mean + half)
    low90, high90 = confidence_interval(values, level=0.90)
    assert low < low90 < mean < high90 < high  # a lower level gives a narrower interval


def test_confidence_interval_degenerate():
    assert all(math.isnan(v) for v in confidence_interval([0.4]))
    assert all(math.isnan(v) for v in confidence_interval([float("nan"), 0.4]))
    assert all(math.isnan(v) for v in confidence_interval([]))
    assert confidence_interval([0.3, 0.3, 0.3]) == pytest.approx((0.3, 0.3))
    with pytest.raises(ValueError):
        confidence_interval([1, 2], level=1.5)


def test_ci_bounds_from_summaries_match_the_interval_of_the_values():
    samples = [[0.7, 0.8, 0.5], [0.2, 0.4], [1.0, 2.0, 4.0, 8.0], [0.3]]
    mean = [np.mean(s) for s in samples]
    std = [np.std(s, ddof=1) if len(s) > 1 else math.nan for s in samples]
    low, high = ci_bounds(mean, std, [len(s) for s in samples])
    for s, lo, hi in zip(samples[:3], low[:3], high[:3], strict=True):
        expected = sps.t.interval(0.95, len(s) - 1, loc=np.mean(s), scale=sps.sem(s))  # scipy's own interval
        assert (lo, hi) == (pytest.approx(expected[0]), pytest.approx(expected[1]))
    assert math.isnan(low[3]) and math.isnan(high[3])  # one value: no interval
    assert ci_text(low[0], high[0]) == f"[{expected_text(samples[0])}]" and ci_text(math.nan, 1.0) == ""


def expected_text(values) -> str:
    low, high = sps.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=sps.sem(values))
    return f"{low:.3f}, {high:.3f}"


# ------------------------------------------------------------------ paired Wilcoxon

REF = [0.91, 0.85, 0.88, 0.95, 0.80, 0.79, 0.93, 0.90]
OTHER = [0.90, 0.80, 0.89, 0.85, 0.70, 0.75, 0.83, 0.88]


def wilcoxon_cells():
    rows = []
    for i, (r, o) in enumerate(zip(REF, OTHER, strict=True)):
        pair, seed = PAIRS[i % 2], i // 2
        rows.append(cell("capsan", r, pair=pair, seed=seed))
        rows.append(cell("smote", o, pair=pair, seed=seed))
    return rows


def test_wilcoxon_equals_scipy():
    table = paired_wilcoxon(frame(wilcoxon_cells()))
    row = table.set_index("method").loc["smote"]
    expected = sps.wilcoxon(REF, OTHER, zero_method="wilcox", alternative="two-sided")
    assert row["n_pairs"] == 8
    assert row["p_value"] == pytest.approx(expected.pvalue, rel=1e-12)
    assert row["statistic"] == pytest.approx(expected.statistic)
    assert row["median_difference"] == pytest.approx(np.median(np.subtract(REF, OTHER)))
    assert row["p_holm"] == pytest.approx(expected.pvalue)  # a family of one
    assert pd.isna(row["reason"])


def test_wilcoxon_pairs_only_shared_units():
    rows = wilcoxon_cells()
    # units only one method has: a different ratio for capsan, a different dataset for smote, and a failed
    # smote cell whose capsan twin exists; values far off so that using them would change the p-value
    rows.append(cell("capsan", 0.0, ratio=0.5, seed=0))
    rows.append(cell("smote", 1.0, dataset="cifar10", seed=0))
    rows.append(cell("capsan", 0.1, seed=9))
    rows.append(cell("smote", None, seed=9, error="CUDA out of memory"))
    row = paired_wilcoxon(frame(rows)).set_index("method").loc["smote"]
    expected = sps.wilcoxon(REF, OTHER, zero_method="wilcox")
    assert row["n_pairs"] == 8
    assert row["n_reference_only"] == 2
    assert row["n_method_only"] == 1
    assert row["p_value"] == pytest.approx(expected.pvalue, rel=1e-12)


def test_wilcoxon_reasons():
    rows = [cell("capsan", 0.5 + 0.01 * s, seed=s) for s in range(8)]
    rows += [cell("few", 0.4, seed=s) for s in range(3)]  # 3 pairs
    rows += [cell("same", 0.5 + 0.01 * s, seed=s) for s in range(8)]  # all differences zero
    rows += [cell("broken", None, seed=0, error="boom")]  # only failed cells
    table = paired_wilcoxon(frame(rows)).set_index("method")
    assert list(table.index) == ["broken", "few", "same"]
    assert table["p_value"].isna().all()
    assert "3 paired units" in table.loc["few", "reason"]
    assert "zero" in table.loc["same", "reason"]
    assert "no done cells" in table.loc["broken", "reason"]
    assert table.loc["same", "n_pairs"] == 8


def test_wilcoxon_missing_reference_and_empty():
    table = paired_wilcoxon(frame(wilcoxon_cells()), reference="gamo")
    assert set(table["method"]) == {"capsan", "smote"}
    assert table["reason"].str.contains("reference 'gamo'").all()
    assert paired_wilcoxon(pd.DataFrame()).empty
    assert paired_wilcoxon(None).empty


def test_holm_by_hand():
    adjusted = holm([0.01, 0.04, float("nan"), 0.03])
    # sorted 0.01, 0.03, 0.04 over m = 3: 0.03, max(0.03, 0.06), max(0.06, 0.04) = 0.06
    assert adjusted[0] == pytest.approx(0.03)
    assert adjusted[3] == pytest.approx(0.06)
    assert adjusted[1] == pytest.approx(0.06)
    assert math.isnan(adjusted[2])


# ------------------------------------------------------------------ Friedman and Nemenyi

# blocks (ratios) by methods; every block value is the mean of two pairs x two seeds around it
BLOCKS = {  # five blocks: the fewest the Friedman test runs on (stats.MIN_BLOCKS)
    0.1: {"a": 0.90, "b": 0.80, "c": 0.70},  # ranks a1 b2 c3
    0.2: {"a": 0.85, "b": 0.85, "c": 0.60},  # a1.5 b1.5 c3
    0.3: {"a": 0.70, "b": 0.90, "c": 0.80},  # a3 b1 c2
    0.4: {"a": 0.75, "b": 0.65, "c": 0.95},  # a2 b3 c1
    0.5: {"a": 0.88, "b": 0.78, "c": 0.68},  # a1 b2 c3
}


def friedman_cells(blocks=BLOCKS):
    rows = []
    for ratio, methods in blocks.items():
        for method, value in methods.items():
            for seed in (0, 1):
                for sign, pair in zip((1, -1), PAIRS, strict=True):
                    rows.append(
                        cell(method, value + sign * 0.01 * (seed + 1), ratio=ratio, pair=pair, seed=seed)
                    )
    return rows


def test_friedman_ranks_by_hand_and_scipy():
    ranking = friedman_ranking(frame(friedman_cells()))
    assert ranking["reason"] is None
    assert ranking["k"] == 3 and ranking["n_blocks"] == 5
    assert ranking["average_ranks"].to_dict() == pytest.approx(
        {"a": (1 + 1.5 + 3 + 2 + 1) / 5, "b": (2 + 1.5 + 1 + 3 + 2) / 5, "c": (3 + 3 + 2 + 1 + 3) / 5}
    )
    assert ranking["methods"] == ["a", "b", "c"]
    assert ranking["ranks"].loc[("mnist", "binary", "balanced", 0.2), "a"] == 1.5
    assert ranking["values"].loc[("mnist", "binary", "balanced", 0.1), "b"] == pytest.approx(0.80)
    columns = [[BLOCKS[r][m] for r in BLOCKS] for m in "abc"]
    expected = sps.friedmanchisquare(*columns)
    assert ranking["statistic"] == pytest.approx(expected.statistic)
    assert ranking["p_value"] == pytest.approx(expected.pvalue, rel=1e-12)
    assert ranking["cd"] == pytest.approx(critical_difference(3, 5))


# Demšar (2006), section 3.2.4: four C4.5 variants over N = 14 data sets, average ranks 3.143 (C4.5), 2.000
# (C4.5+m), 2.893 (C4.5+cf) and 1.964 (C4.5+m+cf); CD = 1.25 at alpha 0.05 and 1.12 at 0.10; at 0.10 C4.5 is
# significantly worse than C4.5+m and C4.5+m+cf, at 0.05 no pair differs. The blocks below are ranks built to
# give exactly those average ranks (his table's AUC values are not needed: the tests are rank-based).
DEMSAR = ["C4.5", "C4.5+m", "C4.5+cf", "C4.5+m+cf"]
DEMSAR_RANKS = [(2, 3, 4, 1), (4, 1, 3, 2), (4, 1, 2, 3), (4, 2, 1, 3), (2, 4, 3, 1), (4, 1, 3, 2), (4, 3, 1, 2),
                (3, 4, 2, 1), (2, 1, 4, 3), (1, 3, 4, 2), (4, 1, 3, 2), (3, 1, 4, 2), (3, 2, 4, 1), (4, 1, 2.5, 2.5)]


def _maximal_groups(pairs, alpha):
    """Brute force: the maximal sets of methods no pair of which differs at ``alpha`` (scikit-posthocs' p)."""
    import itertools

    names = list(pairs.index)
    groups = [set(g) for n in range(len(names), 1, -1) for g in itertools.combinations(names, n)
              if all(pairs.loc[a, b] >= alpha for a, b in itertools.combinations(g, 2))]
    return sorted(sorted(g) for g in groups if not any(g < h for h in groups))


@pytest.mark.parametrize("alpha, cd, significant", [(0.05, 1.25, set()),
                                                    (0.10, 1.12, {("C4.5", "C4.5+m"), ("C4.5", "C4.5+m+cf")})])
def test_nemenyi_on_demsars_worked_example_matches_scikit_posthocs(alpha, cd, significant):
    import itertools

    from bench.reports.stats import nemenyi_pairs

    values = pd.DataFrame(-np.array(DEMSAR_RANKS, dtype=float), columns=DEMSAR)  # rank 1 = the highest value
    ranks = values.rank(axis=1, ascending=False).mean()
    assert ranks.round(3).tolist() == [3.143, 2.000, 2.893, 1.964]
    assert critical_difference(4, 14, alpha) == pytest.approx(cd, abs=0.005)
    pairs = nemenyi_pairs(values)  # scikit-posthocs
    beyond_cd = {(a, b) for a, b in itertools.combinations(DEMSAR, 2)
                 if abs(ranks[a] - ranks[b]) >= critical_difference(4, 14, alpha)}
    found = {(a, b) for a, b in itertools.combinations(DEMSAR, 2) if pairs.loc[a, b] < alpha}
    assert beyond_cd == found == significant
    assert sorted(sorted(g) for g in cliques(ranks, critical_difference(4, 14, alpha))) == _maximal_groups(pairs, alpha)


def test_holm_is_statsmodels_and_step_down():
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted.tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])  # 4 x .005, 3 x .01, max(2 x .03, .04)


def test_nemenyi_cd_by_hand():
    assert nemenyi_q(3) == pytest.approx(2.343, abs=1e-3)  # Demsar (2006), Table 5(a)
    assert nemenyi_q(10) == pytest.approx(3.164, abs=1e-3)
    assert critical_difference(3, 10) == pytest.approx(2.343 * math.sqrt(3 * 4 / 60), abs=1e-3)
    assert critical_difference(3, 10) == pytest.approx(1.0481, abs=1e-3)
    assert math.isnan(critical_difference(1, 10))


def test_friedman_excludes_incomplete_methods_and_partial_data():
    rows = friedman_cells()
    rows += [cell("d", 0.99, ratio=0.1, pair=pair, seed=seed) for pair in PAIRS for seed in (0, 1)]  # one block
    rows.append(cell("e", None, ratio=0.1, error="diverged"))  # failed everywhere
    # f is in every block, but lost one pair of one seed at ratio 0.5: Table 3's partial row, not ranked
    rows += [{**r, "method": "f", "key": "f" + r["key"]} for r in friedman_cells()
             if r["method"] == "a" and not (r["ratio"] == 0.5 and r["seed"] == 1 and r["pair"] == list(PAIRS[1]))]
    ranking = friedman_ranking(frame(rows))
    assert ranking["methods"] == ["a", "b", "c"]
    assert set(ranking["excluded"]) == {"d", "e", "f"}
    assert "4 of 5 blocks" in ranking["excluded"]["d"]
    assert "complete g_mean row" in ranking["excluded"]["f"] and "1 of 5 blocks" in ranking["excluded"]["f"]
    # the table marks that row partial too: one rule
    f_row = table3(frame(rows)).query("method == 'f' and ratio == 0.5").iloc[0]
    assert f_row["n_partial_seeds"] == 1 and not f_row["complete"]

    two = friedman_ranking(frame([r for r in friedman_cells() if r["method"] != "c"]))
    assert math.isnan(two["p_value"]) and "Friedman needs 3" in two["reason"]
    assert len(two["average_ranks"]) == 2  # ranks still given
    one_block = friedman_ranking(frame([r for r in friedman_cells() if r["ratio"] == 0.1]))
    assert math.isnan(one_block["p_value"]) and "1 block" in one_block["reason"]
    ties = friedman_ranking(frame(friedman_cells({r: dict.fromkeys("abc", r) for r in BLOCKS})))
    assert math.isnan(ties["p_value"]) and "tie" in ties["reason"]
    for empty in (None, pd.DataFrame(), frame([cell("a", None, error="x")])):
        result = friedman_ranking(empty)
        assert math.isnan(result["p_value"]) and result["reason"]


def test_below_five_blocks_the_test_is_underpowered_and_the_report_says_so_rounded(tmp_path):
    """Two blocks once gave a CD of 7.42 on a 1-8 rank scale, a diagram, and chi2 = 12.333333333333329."""
    from bench.reports.report import friedman_markdown

    two = {r: BLOCKS[r] for r in (0.1, 0.3)}
    rows = friedman_cells(two) + [cell("d", 0.99, ratio=0.1, pair=pair, seed=seed)  # d: one block of the two
                                  for pair in PAIRS for seed in (0, 1)]
    ranking = friedman_ranking(frame(rows))
    assert math.isnan(ranking["p_value"]) and ranking["reason"].startswith("underpowered: only 2 block(s)")
    assert len(ranking["average_ranks"]) == 3  # descriptive ranks are still given
    text = friedman_markdown(ranking)
    assert "Not tested: underpowered" in text and "chi2" not in text
    assert ("Left out (a rank needs a complete row in every block): d: no complete g_mean row (every grid pair "
            "in every grid seed) in 1 of 2 blocks.") in text
    full = friedman_markdown(friedman_ranking(frame(friedman_cells())))
    chi2 = sps.friedmanchisquare(*[[BLOCKS[r][m] for r in BLOCKS] for m in "abc"]).statistic
    assert f"chi2 = {chi2:.2f}, p = " in full and repr(float(chi2)) not in full
    assert re.search(r"critical difference at alpha = 0.05: \d\.\d\d \(ranks 1 to 3\)", full)


def test_cliques_by_hand():
    ranks = pd.Series({"a": 1.0, "b": 1.5, "c": 2.4, "d": 3.9})
    assert cliques(ranks, 1.0) == [["a", "b"], ["b", "c"]]
    assert cliques(ranks, 3.0) == [["a", "b", "c", "d"]]
    assert cliques(ranks, 0.1) == []


@pytest.mark.parametrize("suffix", [".png", ".pdf"])
def test_cd_diagram_written(tmp_path, suffix):
    ranking = friedman_ranking(frame(friedman_cells()))
    path = cd_diagram(ranking, tmp_path / f"cd{suffix}")
    assert path.exists() and path.stat().st_size > 0
    head = path.read_bytes()[:8]
    assert head.startswith(b"\x89PNG") if suffix == ".png" else head.startswith(b"%PDF")


def test_cd_diagram_partial_and_bad_suffix(tmp_path):
    path = cd_diagram(friedman_ranking(None), tmp_path / "empty.png")
    assert path.stat().st_size > 0
    with pytest.raises(ValueError):
        cd_diagram(friedman_ranking(None), tmp_path / "cd.txt")


def _stored(folder, rows):
    with Store(folder) as store:
        for n, row in enumerate(rows):
            store.add(dict(row, key=f"k{n}", started_at="2024-01-01T00:00:00", finished_at="2024-01-01T00:00:01",
                           duration_s=1.0, device="cpu", versions={}))
    with Store(folder, create=False) as store:
        return store.cells()


def test_through_the_store(tmp_path):
    cells = _stored(tmp_path / "both", wilcoxon_cells() + friedman_cells())
    row = paired_wilcoxon(cells).set_index("method").loc["smote"]
    assert row["p_value"] == pytest.approx(sps.wilcoxon(REF, OTHER).pvalue, rel=1e-12)
    # capsan and smote only have the 0.1 block; there they ran seeds 0-3, so the grid's 0.1 block has four
    # seeds and a, b, c (seeds 0-1) are incomplete in it, as Table 3 says: nobody is ranked
    ranking = friedman_ranking(cells)
    assert set(ranking["excluded"]) == {"a", "b", "c", "capsan", "smote"}
    assert "in 1 of 5 blocks" in ranking["excluded"]["a"]
    assert not table3(cells).query("method == 'a' and ratio == 0.1").iloc[0]["complete"]

    ranking = friedman_ranking(_stored(tmp_path / "friedman", friedman_cells()))
    assert ranking["excluded"] == {}
    assert ranking["p_value"] == pytest.approx(
        sps.friedmanchisquare(*[[BLOCKS[r][m] for r in BLOCKS] for m in "abc"]).pvalue
    )


# ------------------------------------------------------------------ the tests in the tables' notes


def test_table3_notes_carry_the_wilcoxon_p_values_of_scipy():
    rows = []
    for i, (r, o) in enumerate(zip(REF, OTHER, strict=True)):  # 8 units: 4 seeds x 2 pairs
        pair, seed = PAIRS[i % 2], i // 2
        rows += [cell("capsan", r, pair=pair, seed=seed), cell("imbalanced", o, pair=pair, seed=seed)]
    rows += [cell("smote", 0.5, pair=PAIRS[0], seed=0), cell("capsan", 0.9, dataset="cifar10")]
    cells = frame(rows)
    notes = table_tests(cells)
    assert set(notes) == {("mnist", "binary", "balanced")}  # cifar10 has capsan alone: nothing to compare
    expected = sps.wilcoxon(REF, OTHER, zero_method="wilcox").pvalue
    note = notes[("mnist", "binary", "balanced")]
    # smote is not tested, so Holm's family holds one test and its p is the raw one
    assert f"imbalanced: p = {expected:.3g}, Holm p = {expected:.3g} (8 pairs" in note
    assert "smote: not tested, only 1 paired units (need 6)" in note
    md = render_markdown(table3(cells), failed_cells(cells), notes)
    mnist = md.split("## mnist, binary")[1]
    assert note in mnist and note not in md.split("## mnist, binary")[0]


def test_wilcoxon_note_is_empty_without_tests_and_says_which_way_is_better():
    assert wilcoxon_note(pd.DataFrame(), "G-mean", "units") == ""
    tests = paired_wilcoxon(frame(wilcoxon_cells()))
    assert "higher is better" in wilcoxon_note(tests, "G-mean", "units")
    assert "lower is better" in wilcoxon_note(tests, "FID", "units", lower_is_better=True)
