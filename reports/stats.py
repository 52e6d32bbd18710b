"""Statistics beyond the paper: seed confidence intervals, paired Wilcoxon, Friedman ranking, CD diagram.

The paper reports means only; these functions say how sure those differences are. All of them read the
tidy table (``reports/cells.py``; or plain numbers) and never raise on partial or failed results: what cannot be
computed is NaN, with a ``reason`` saying why.

Choices, in order of use:

* **Cells used.** Only ``status == "done"`` cells whose metric is a finite number. Methods are told apart by
  their ``method`` label, so a swept variant such as ``"capsan[phi=0.5]"`` is a method of its own. Ratios are
  rounded to 10 decimals (as in Table 3) so that 0.1 and 0.1000000000001 are one ratio.
* **Unit.** A unit is one (dataset, protocol, ratio, pair, seed); protocols without pairs use the pair label
  ``"-"``. Cells of one method that share a unit but differ in what the unit does not name (params, epochs)
  are averaged first, so each method has at most one value per unit.
* **Confidence interval** (``aggregate.confidence_interval``): the two-sided Student-t interval of the mean,
  ``mean ± t_{(1+level)/2, n-1} · s / sqrt(n)`` with the sample standard deviation ``s`` (ddof=1), over the
  finite values given (NaNs are dropped). Fewer than two values give ``(nan, nan)``: no spread to estimate.
* **Paired Wilcoxon** (:func:`paired_wilcoxon`): for each method other than the reference, its values are
  paired with the reference's on the units both have (units only one of them has are counted, not used).
  Differences are ``reference - method``, so a positive median difference means the reference scored higher.
  ``scipy.stats.wilcoxon`` runs two-sided with ``zero_method="wilcox"`` (Wilcoxon's original: zero
  differences are dropped before ranking; scipy's default) and ``method="auto"`` (exact null distribution
  for small samples without ties or zeros, the normal approximation otherwise). With fewer than
  ``MIN_PAIRS`` (6) pairs no two-sided test can reach p < 0.05 (the exact minimum is 2/2^n = 0.0625 for
  n = 5), so the p-value is NaN with a reason; likewise when every difference is zero (nothing to rank), or
  when fewer than ``MIN_PAIRS`` differences are non-zero. Holm's step-down adjustment over the methods
  tested is given as ``p_holm`` (the family is one call's comparisons), since one reference is compared
  with many methods: statsmodels' ``multipletests(method="holm")`` on the p-values that exist.
* **Friedman ranking** (:func:`friedman_ranking`), after Demšar (2006), "Statistical comparisons of
  classifiers over multiple data sets", JMLR 7:1-30. Blocks are the (dataset, protocol, ratio) cells; a
  method's value in a block is the mean over seeds of its per-seed mean over pairs (the two-stage mean of
  Table 3), kept only where Table 3 calls the row complete (``aggregate.Grid``: every grid pair in every grid
  seed, so no method is ranked on the pairs it happened to finish). Treatments are the methods with a
  complete value in every block; the others are listed in ``excluded`` with a reason (the block cannot be kept for them: Friedman needs complete blocks). Ranks are taken per
  block with the highest metric ranked 1 and ties given their average rank (``scipy.stats.rankdata``).
  ``scipy.stats.friedmanchisquare`` gives the chi-square statistic and p-value (it needs at least 3 methods;
  we also ask for at least 2 blocks). The Iman-Davenport F correction that Demšar recommends is added as
  ``iman_davenport`` / ``iman_davenport_p`` (F with (k-1, (k-1)(N-1)) degrees of freedom).
* **Nemenyi critical difference.** ``CD = q_alpha · sqrt(k(k+1) / (6N))`` for k methods over N blocks, with
  ``q_alpha = studentized_range.ppf(1 - alpha, k, inf) / sqrt(2)`` (alpha = 0.05): Demšar's Table 5 lists
  exactly these values (2.343 for k = 3, 2.569 for k = 4, ...), being the studentized range statistic for
  infinite degrees of freedom divided by sqrt(2). Two methods whose average ranks differ by at least CD
  differ significantly; the test is only meaningful when Friedman rejects, which the caller should check.
  scikit-posthocs gives the same test pair by pair (``posthoc_nemenyi_friedman``: ``nemenyi_p``, the p-value
  of every pair of methods); it has no CD value, so the CD is computed here from scipy's studentized range
  (``tests/test_stats.py`` checks on Demšar's worked example, four C4.5 variants over 14 data sets, that the
  pairs beyond the CD are the pairs scikit-posthocs finds significant, at alpha 0.05 and 0.10).
* **CD diagram** (:func:`cd_diagram`): scikit-posthocs' ``critical_difference_diagram`` draws it from the
  average ranks and ``nemenyi_p`` (each method hangs from its average rank, the better half labelled on the
  left; crossbars join the maximal groups of methods no pair of which differs significantly, the same groups
  as :func:`cliques` of the CD); the title and the CD are written above it. It draws on a
  ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot state); the file type follows the path's suffix
  (.png, .pdf or .svg). A ranking that could not be computed still gives a figure, showing the reason.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .aggregate import Grid, over_seeds, seed_means
from .cells import as_cells
from .cells import metric as cell_metric

# ``test``: the cell's test set (``cells.Cells.frame``); two test sets are two units, never one.
UNIT_KEYS = ["dataset", "protocol", "test", "ratio", "pair", "seed"]
BLOCK_KEYS = ["dataset", "protocol", "test", "ratio"]
RATIO_DECIMALS = 10
MIN_PAIRS = 6  # fewest pairs (and non-zero differences) for a Wilcoxon p-value
MIN_METHODS = 3  # Friedman's chi-square needs k >= 3
# Fewest blocks for the Friedman test and the CD diagram: below 5 the chi-square approximation is poor and the
# Nemenyi critical difference spans most of the rank scale (8 methods on 2 blocks: CD = 7.42 on ranks 1-8),
# so the report says the test is underpowered and draws no diagram; the average ranks are still given.
MIN_BLOCKS = 5
ALPHA = 0.05
ZERO_METHOD = "wilcox"
FIGURE_SUFFIXES = (".png", ".pdf", ".svg")
WILCOXON_COLUMNS = [
    "reference",
    "method",
    "metric",
    "n_pairs",
    "n_reference_only",
    "n_method_only",
    "reference_median",
    "method_median",
    "median_difference",
    "statistic",
    "p_value",
    "p_holm",
    "reason",
]


# --------------------------------------------------------------------------- confidence interval


def ci_text(low, high, decimals: int = 3) -> str:
    """``[0.887, 0.937]``; empty when the interval is unknown (fewer than two seeds)."""
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return ""
    return f"[{low:.{decimals}f}, {high:.{decimals}f}]"


def readable(value, digits: int = 2) -> str:
    """A statistic as people read it: ``12.33``; ``-`` for a missing one."""
    return "-" if value is None or pd.isna(value) else f"{value:.{digits}f}"


def readable_p(value) -> str:
    """A p-value as people read it: ``0.021``, ``< 0.001``; ``-`` for a missing one."""
    return "-" if value is None or pd.isna(value) else "< 0.001" if value < 0.001 else f"{value:.3f}"


# --------------------------------------------------------------------------- unit values


def unit_values(cells: pd.DataFrame | None, metric: str = "g_mean") -> pd.DataFrame:
    """One row per (method, dataset, protocol, test, ratio, pair, seed) of done cells with a finite ``metric``.

    Columns: method, dataset, protocol, test (the test set; ``balanced`` when the cells' options name none),
    ratio (rounded), pair (label like ``'3 vs 5'`` or ``'-'``), seed,
    value (the mean over cells sharing that unit).
    """
    columns = ["method"] + UNIT_KEYS + ["value"]
    frame = as_cells(cells).done
    if frame.empty:
        return pd.DataFrame(columns=columns)
    frame = _by_unit(frame.assign(value=cell_metric(frame, metric)), ["value"])
    frame = frame.dropna(subset=["value"])
    if frame.empty:
        return pd.DataFrame(columns=columns)
    return frame.groupby(["method"] + UNIT_KEYS, sort=True)["value"].mean().reset_index()[columns]


# --------------------------------------------------------------------------- paired Wilcoxon


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (statsmodels); NaNs stay NaN and do not count in the family."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        adjusted[finite] = multipletests(p[finite], method="holm")[1]
    return adjusted


def _wilcoxon_row(reference: str, method: str, metric: str, ref: pd.Series, other: pd.Series) -> dict:
    common = ref.index.intersection(other.index)
    row = {
        "reference": reference,
        "method": method,
        "metric": metric,
        "n_pairs": int(len(common)),
        "n_reference_only": int(len(ref.index.difference(other.index))),
        "n_method_only": int(len(other.index.difference(ref.index))),
        "reference_median": math.nan,
        "method_median": math.nan,
        "median_difference": math.nan,
        "statistic": math.nan,
        "p_value": math.nan,
        "reason": None,
    }
    if ref.empty:
        row["reason"] = f"reference {reference!r} has no done cells with {metric}"
        return row
    if other.empty:
        row["reason"] = f"{method!r} has no done cells with {metric}"
        return row
    x = ref.loc[common].to_numpy(dtype=float)
    y = other.loc[common].to_numpy(dtype=float)
    if len(common):
        diff = x - y
        row.update(
            reference_median=float(np.median(x)),
            method_median=float(np.median(y)),
            median_difference=float(np.median(diff)),
        )
    nonzero = int(np.count_nonzero(x - y)) if len(common) else 0
    if len(common) < MIN_PAIRS:
        row["reason"] = f"only {len(common)} paired units (need {MIN_PAIRS})"
    elif nonzero == 0:
        row["reason"] = "all paired differences are zero"
    elif nonzero < MIN_PAIRS:
        row["reason"] = f"only {nonzero} non-zero differences (need {MIN_PAIRS})"
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = stats.wilcoxon(x, y, zero_method=ZERO_METHOD, alternative="two-sided")
        row["statistic"] = float(result.statistic)
        row["p_value"] = float(result.pvalue)
    return row


def paired_wilcoxon(
    cells: pd.DataFrame | None, reference: str = "capsan", metric: str = "g_mean"
) -> pd.DataFrame:
    """Two-sided Wilcoxon signed-rank test of ``reference`` against every other method, paired by unit.

    One row per other method (sorted by name), columns :data:`WILCOXON_COLUMNS`. ``median_difference`` is the
    median of ``reference - method`` over the paired units; ``p_value`` is NaN with a ``reason`` when the
    test cannot be run. Empty input gives an empty frame; a reference without results gives one row per
    method with the reason.
    """
    cells = as_cells(cells).frame
    values = unit_values(cells, metric)
    if values.empty:
        return pd.DataFrame(columns=WILCOXON_COLUMNS)
    series = {
        method: group.set_index(UNIT_KEYS)["value"].sort_index()
        for method, group in values.groupby("method", sort=True)
    }
    empty = pd.Series(dtype=float, index=pd.MultiIndex.from_arrays([[]] * len(UNIT_KEYS), names=UNIT_KEYS))
    ref = series.get(reference, empty)
    others = sorted(m for m in series if m != reference)
    if len(cells):  # methods with only failed cells still get a row
        others = sorted(set(others) | {str(m) for m in cells["method"].unique() if m != reference})
    rows = [_wilcoxon_row(reference, m, metric, ref, series.get(m, empty)) for m in others]
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=WILCOXON_COLUMNS)
    table["p_holm"] = holm(table["p_value"])
    return table[WILCOXON_COLUMNS]


def wilcoxon_note(tests: pd.DataFrame, label: str, units: str, lower_is_better: bool = False) -> str:
    """One sentence for a table's notes from :func:`paired_wilcoxon`'s rows; empty when nothing was compared."""
    if tests is None or tests.empty:
        return ""
    reference = tests["reference"].iloc[0]
    parts = []
    for row in tests.itertuples(index=False):
        if pd.isna(row.p_value):
            parts.append(f"{row.method}: not tested, {row.reason}")
        else:
            parts.append(f"{row.method}: p = {row.p_value:.3g}, Holm p = {row.p_holm:.3g} ({row.n_pairs} pairs, "
                         f"median difference {row.median_difference:+.3g})")
    better = "lower" if lower_is_better else "higher"
    return (f"Paired two-sided Wilcoxon signed-rank tests of {reference} against each method on {label}, over "
            f"the {units} both have, Holm-adjusted (difference = {reference} - method; {better} is better): "
            + "; ".join(parts) + ".")


# --------------------------------------------------------------------------- Friedman and Nemenyi


def nemenyi_q(k: int, alpha: float = ALPHA) -> float:
    """Demšar's q_alpha for k methods: ``studentized_range.ppf(1 - alpha, k, inf) / sqrt(2)``."""
    if k < 2:
        return math.nan
    return float(stats.studentized_range.ppf(1.0 - alpha, k, np.inf)) / math.sqrt(2.0)


def critical_difference(k: int, n_blocks: int, alpha: float = ALPHA) -> float:
    """Nemenyi critical difference ``q_alpha * sqrt(k (k + 1) / (6 N))``; NaN when k < 2 or N < 1."""
    if k < 2 or n_blocks < 1:
        return math.nan
    return nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6.0 * n_blocks))


def nemenyi_pairs(values: pd.DataFrame) -> pd.DataFrame:
    """The Nemenyi test's p-value of every pair of methods (scikit-posthocs' ``posthoc_nemenyi_friedman``)
    on blocks x methods ``values`` (higher is better; rank-based, so the sign does not matter)."""
    import scikit_posthocs

    if values.shape[1] < 2 or values.empty:
        return pd.DataFrame()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # all-tied blocks: scikit-posthocs warns, the p-values stand
        out = scikit_posthocs.posthoc_nemenyi_friedman(values.to_numpy(dtype=float))
    out.index = out.columns = list(values.columns)
    return out


def block_values(cells: pd.DataFrame | None, metric: str = "g_mean") -> pd.DataFrame:
    """Blocks (dataset, protocol, ratio) by methods: mean over seeds of the per-seed mean over pairs; NaN
    where the method's row is incomplete (``aggregate.Grid``, Table 3's rule: a seed missing one of the
    grid's pairs, or a grid seed missing), so no method is ranked on easier pairs or luckier seeds."""
    values = unit_values(cells, metric)
    if values.empty:
        return pd.DataFrame()
    keys = ["method"] + BLOCK_KEYS
    per_seed = seed_means(values, keys, ["value"])
    grid = Grid.of(_by_unit(as_cells(cells).frame), keys)
    table = grid.mark(over_seeds(per_seed, keys, ["value"]), per_seed, keys).set_index(keys)
    per_block = table["value_mean"].where(table["complete"])
    return per_block.unstack("method").sort_index()


def _by_unit(cells: pd.DataFrame, extra=()) -> pd.DataFrame:
    """Every cell of a tidy frame, done or failed, with its unit (rounded ratios) and ``extra`` columns: what
    the grid asked of each block, and what ``unit_values`` reads."""
    frame = cells[["method", *UNIT_KEYS, *extra]].copy()
    frame["ratio"] = frame["ratio"].astype(float).round(RATIO_DECIMALS)
    return frame


def _empty_ranking(metric: str, alpha: float, reason: str, **known) -> dict:
    ranking = {
        "metric": metric,
        "alpha": alpha,
        "methods": [],
        "blocks": [],
        "k": 0,
        "n_blocks": 0,
        "values": pd.DataFrame(),
        "ranks": pd.DataFrame(),
        "average_ranks": pd.Series(dtype=float),
        "statistic": math.nan,
        "p_value": math.nan,
        "iman_davenport": math.nan,
        "iman_davenport_p": math.nan,
        "q_alpha": math.nan,
        "cd": math.nan,
        "nemenyi_p": pd.DataFrame(),
        "excluded": {},
        "reason": reason,
    }
    ranking.update(known)
    return ranking


def friedman_ranking(cells: pd.DataFrame | None, metric: str = "g_mean", alpha: float = ALPHA) -> dict:
    """Friedman test and average ranks over (dataset, protocol, ratio) blocks, with the Nemenyi CD.

    Returns a dict: metric, alpha, methods (best average rank first), blocks (list of (dataset, protocol,
    ratio)), k, n_blocks, values (blocks x methods), ranks (blocks x methods, 1 = best), average_ranks
    (Series, best first), statistic and p_value (Friedman chi-square), iman_davenport and iman_davenport_p,
    q_alpha, cd, excluded ({method: why}), reason (None when the test ran). Ranks and CD are given whenever
    at least 2 methods and 1 block are complete, even if the test itself needs more.
    """
    cells = as_cells(cells).frame
    table = block_values(cells, metric)
    if table.empty:
        return _empty_ranking(metric, alpha, f"no done cells with {metric}")
    complete = [m for m in table.columns if table[m].notna().all()]
    excluded = {
        m: f"no complete {metric} row (every grid pair in every grid seed) in {int(table[m].isna().sum())} of "
           f"{len(table)} blocks"
        for m in table.columns
        if m not in complete
    }
    if len(cells):
        for m in cells["method"].unique():
            if str(m) not in table.columns:
                excluded[str(m)] = f"no done cells with {metric}"
    values = table[complete]
    k, n = len(complete), len(values)
    blocks = [tuple(index) for index in values.index]
    if k < 2:
        return _empty_ranking(
            metric,
            alpha,
            f"only {k} method(s) with results in all {n} blocks (need {MIN_METHODS})",
            values=values,
            blocks=blocks,
            n_blocks=n,
            k=k,
            methods=list(complete),
            excluded=excluded,
        )
    ranks = values.apply(lambda row: pd.Series(stats.rankdata(-row.to_numpy()), index=row.index), axis=1)
    average = ranks.mean(axis=0).sort_values(kind="stable")
    ranking = _empty_ranking(
        metric,
        alpha,
        None,
        methods=list(average.index),
        blocks=blocks,
        k=k,
        n_blocks=n,
        values=values,
        ranks=ranks,
        average_ranks=average,
        q_alpha=nemenyi_q(k, alpha),
        cd=critical_difference(k, n, alpha),
        nemenyi_p=nemenyi_pairs(values),
        excluded=excluded,
    )
    if k < MIN_METHODS:
        ranking["reason"] = f"only {k} methods with results in all blocks (Friedman needs {MIN_METHODS})"
    elif n < MIN_BLOCKS:
        ranking["reason"] = (f"underpowered: only {n} block(s) (dataset x protocol x ratio) with every method; "
                             f"the test and the diagram need {MIN_BLOCKS}")
    elif (values.nunique(axis=1) == 1).all():
        ranking["reason"] = "all methods tie in every block"
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = stats.friedmanchisquare(*(values[m].to_numpy() for m in complete))
        chi2 = float(result.statistic)
        ranking["statistic"], ranking["p_value"] = chi2, float(result.pvalue)
        denominator = n * (k - 1) - chi2
        if denominator > 0:
            f = (n - 1) * chi2 / denominator
            ranking["iman_davenport"] = f
            ranking["iman_davenport_p"] = float(stats.f.sf(f, k - 1, (k - 1) * (n - 1)))
        else:  # perfect agreement of all blocks: F is infinite
            ranking["iman_davenport"], ranking["iman_davenport_p"] = math.inf, 0.0
    return ranking


# --------------------------------------------------------------------------- CD diagram


def cliques(average_ranks: pd.Series, cd: float) -> list[list[str]]:
    """Maximal runs (in rank order, of 2+ methods) whose average ranks differ by less than ``cd``."""
    ordered = average_ranks.sort_values(kind="stable")
    names, ranks = list(ordered.index), ordered.to_numpy(dtype=float)
    if not math.isfinite(cd) or len(names) < 2:
        return []
    runs, last_end = [], -1
    for start in range(len(names)):
        end = start
        while end + 1 < len(names) and ranks[end + 1] - ranks[start] < cd:
            end += 1
        if end > start and end > last_end:  # not contained in the previous run
            runs.append(names[start : end + 1])
            last_end = end
    return runs


def cd_diagram(ranking: dict, path: str | Path, title: str | None = None) -> Path:
    """Draw the critical-difference diagram of :func:`friedman_ranking`'s result to ``path``; returns it."""
    import scikit_posthocs
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    if path.suffix.lower() not in FIGURE_SUFFIXES:
        raise ValueError(f"cd_diagram writes {', '.join(FIGURE_SUFFIXES)} files, not {path.name!r}")
    average = ranking.get("average_ranks")
    average = pd.Series(dtype=float) if average is None else pd.Series(average, dtype=float).sort_values()
    k = len(average)
    cd = float(ranking.get("cd", math.nan))
    alpha = ranking.get("alpha", ALPHA)
    if title is None:
        title = f"{ranking.get('metric', '')}: critical difference (Nemenyi, alpha={alpha})"
    p_value = ranking.get("p_value", math.nan)
    note = title if not (p_value == p_value) else f"{title}; Friedman p = {p_value:.3g}"
    if math.isfinite(cd):
        note += f"; CD = {cd:.2f}"
    figure = Figure(figsize=(7.0, 1.6 + 0.3 * max(1, (k + 1) // 2)))
    FigureCanvasAgg(figure)
    pairs = ranking.get("nemenyi_p")
    if k < 2 or pairs is None or len(pairs) != k:
        axes = figure.add_axes((0.0, 0.0, 1.0, 1.0))
        axes.set_axis_off()
        reason = ranking.get("reason") or "fewer than 2 methods to rank"
        axes.text(0.5, 0.6, title, ha="center", va="center", fontsize=10)
        axes.text(0.5, 0.4, f"no diagram: {reason}", ha="center", va="center", fontsize=9)
        figure.savefig(path)
        return path
    axes = figure.add_axes((0.22, 0.05, 0.56, 0.7))
    scikit_posthocs.critical_difference_diagram(average, pairs.loc[average.index, average.index], alpha=alpha,
                                                ax=axes, label_fmt_left="{label} ({rank:.2f})",
                                                label_fmt_right="({rank:.2f}) {label}")
    figure.suptitle(note, fontsize=9)
    figure.savefig(path)
    return path
