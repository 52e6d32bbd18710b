"""The figures VALIDATION.md's prose cites, each computed from a committed store (never typed by hand).

A figure in the prose sits between ``<!-- fact NAME -->`` and ``<!-- /fact -->``; ``update.py`` writes
``value(NAME)`` there and ``update.py --check`` (the freshness test, ``tests/test_validation.py``) fails when the
text differs, so an edited or stale number is caught. NAME is ``KIND:ARGUMENTS`` separated by colons:

- ``pct:FOLDER:DATASET:TEST:METHOD:METRIC[:STAT[:RATIO]]``: a Table 3 row's value in percent, two decimals.
  STAT is ``mean`` (default), ``std``, ``lo`` / ``hi`` (the 95 % interval) or ``n`` (seeds); RATIO picks a row
  of a binary store (default: the store's only ratio).
- ``frac:...``: the same arguments, as a fraction with three decimals (``.853``), the binary tables' unit.
- ``vs:FOLDER:DATASET:TEST:METHOD:METRIC:PUBLISHED[:RATIO]``: ours (METRIC's mean) minus the published value
  of PUBLISHED, in points (``vs:...:g_mean:g_mean_macro``: the G-mean of the recalls set against DeepSMOTE's GM).
- ``paper:FOLDER:DATASET:TEST:METHOD:METRIC[:RATIO]``: the published value beside a row (the CapsAN paper's,
  else another paper's), percent.
- ``bgap:FOLDER:METHOD:E:METRIC[:n|lo|hi]``: the budget study (``budget_curve``): ours minus published at one E,
  in points, for METRIC ``balanced_accuracy``, ``g_mean_macro`` or ``f_measure``; ``lo`` / ``hi`` the ends of our interval minus
  published; ``n`` the seeds done.
- ``seeds:FOLDER:DATASET:TEST:METHOD:METRIC[:RATIO]``: the per-seed values (mean over the pairs), as fractions,
  ``a / b / c`` in seed order.
- ``paired:FOLDER:DATASET:TEST:A:B:METRIC[:RATIO]``: A minus B over their matched (seed, pair) cells: the mean
  difference in points, its 95 % interval (Student t over the cells) and the count, ``-4.1 [-9.0, 0.8] over 9``.
- ``paired_seeds:...``: the same arguments, over the seeds (each seed's mean over its pairs first), ``over 3 seeds``.
- ``lower:FOLDER:DATASET:TEST:A:B:METRIC[:RATIO]``: in how many of their matched cells A is below B, ``7 of 9``,
  and the two-sided sign test's p (ties dropped).
- ``median_s:FOLDER:METHOD[:DATASET]``: the median fit seconds of a method's done cells (the ledger's).
- ``updates:FOLDER:METHOD:ROLE``: the median updates the ledger counted for a role (``classifier``,
  ``generator``) over a method's done cells.
- ``share:FOLDER:METHOD``: the method's share of the sum over methods of their median cell times, percent.
- ``hours:FOLDER:span`` / ``hours:FOLDER:cells`` / ``hours:FOLDER:medians``: the wall span from the first cell's
  start to the last one's end, the summed cell seconds, and the per-(dataset, test, method) medians times the
  cells, in hours (``1.96 h``).
- ``count:FOLDER:done`` / ``count:FOLDER:failed``: cells.
- ``cmp:NEW:OLD:WHAT``: ``bench compare`` of the re-run store NEW against the store OLD (its cells of the same
  methods): WHAT ``same`` / ``within`` / ``changed`` / ``rows`` (rows x metrics), ``unstable`` (values),
  ``unstable_cells``, or ``max-METRIC`` (the largest move of a row's mean, points).
- ``gaps:FOLDER``: the validation report's gap count (published values outside our interval and 2 points away).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from bench.reports.cells import done  # the one done filter

ROOT = Path(__file__).resolve().parents[2]
STORES = Path("benchmarks/validation")


@functools.cache
def tidy(folder: str):
    """The store's ``reports.cells.Cells``: what every report reads."""
    from bench.reports.cells import read

    return read([ROOT / STORES / folder])


def cells(folder: str) -> pd.DataFrame:
    return tidy(folder).frame


@functools.cache
def table(folder: str) -> pd.DataFrame:
    from bench.reports.table3 import table3

    return table3(cells(folder))


def _ratio(frame: pd.DataFrame, ratio: str | None) -> pd.DataFrame:
    return frame if ratio is None else frame[(frame["ratio"] - float(ratio)).abs() < 1e-9]


def _row(folder, dataset, test, method, ratio=None) -> pd.Series:
    frame = table(folder)
    frame = _ratio(frame[(frame["dataset"] == dataset) & (frame["test"] == test) & (frame["method"] == method)], ratio)
    if len(frame) != 1:
        raise KeyError(f"{folder}: {len(frame)} rows for {dataset} / {test} / {method} / ratio {ratio}")
    return frame.iloc[0]


def _stat(row: pd.Series, metric: str, stat: str) -> float:
    column = {"mean": "mean", "std": "std", "lo": "ci_low", "hi": "ci_high"}[stat]
    return float(row[f"{metric}_{column}"])


def _units(folder, dataset, test, method, metric, ratio=None) -> pd.Series:
    """One value per (seed, pair) of a method's done cells."""
    frame = cells(folder)
    frame = done(frame[(frame["dataset"] == dataset) & (frame["test"] == test) & (frame["method"] == method)])
    frame = _ratio(frame, ratio)
    values = frame[metric]
    index = pd.MultiIndex.from_arrays([frame["seed"], frame["ratio"].round(10), frame["pair"]])
    return pd.Series(values.to_numpy(), index=index).sort_index()


def _paired(folder, dataset, test, a, b, metric, ratio=None) -> pd.Series:
    first, second = (_units(folder, dataset, test, m, metric, ratio) for m in (a, b))
    common = first.index.intersection(second.index)
    return first[common] - second[common]


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"


def value(name: str) -> str:
    kind, *args = name.split(":")
    if kind in ("pct", "frac"):
        folder, dataset, test, method, metric, *rest = args
        stat = rest[0] if rest else "mean"
        row = _row(folder, dataset, test, method, rest[1] if len(rest) > 1 else None)
        if stat == "n":
            return str(int(row["n_seeds"]))
        number = _stat(row, metric, stat)
        return f"{100 * number:.2f}" if kind == "pct" else f"{number:.3f}".lstrip("0").replace("-0.", "-.")
    if kind == "vs":
        folder, dataset, test, method, metric, published, *rest = args
        row = _row(folder, dataset, test, method, rest[0] if rest else None)
        return f"{100 * (row[f'{metric}_mean'] - row[f'{published}_ref']):+.2f}"
    if kind == "paper":
        folder, dataset, test, method, metric, *rest = args
        row = _row(folder, dataset, test, method, rest[0] if rest else None)
        number = row.get(f"{metric}_paper")
        number = row[f"{metric}_ref"] if pd.isna(number) else number
        return f"{100 * number:.2f}"
    if kind == "bgap":  # the budget study: ours minus published, points, at one E ("n" there: seeds done)
        folder, method, e, metric, *rest = args
        label = BUDGET_METRICS[metric]
        frame = budget_curve(folder)
        row = frame[(frame["method"] == method) & (frame["E"] == int(e)) & (frame["metric"] == label)].iloc[0]
        if rest and rest[0] == "n":
            return str(int(row["n"]))
        if rest and rest[0] in ("lo", "hi"):
            return f"{row[rest[0]] - row['published']:+.1f}"
        return f"{row['gap']:+.1f}"
    if kind == "seeds":
        folder, dataset, test, method, metric, *rest = args
        units = _units(folder, dataset, test, method, metric, rest[0] if rest else None)
        per_seed = units.groupby(level=0).mean()
        return " / ".join(f"{v:.3f}".lstrip("0") for v in per_seed)
    if kind == "paired":
        folder, dataset, test, a, b, metric, *rest = args
        from bench.reports.aggregate import confidence_interval

        diff = 100 * _paired(folder, dataset, test, a, b, metric, rest[0] if rest else None)
        low, high = confidence_interval(diff.to_numpy())
        return f"{diff.mean():+.1f} [{low:+.1f}, {high:+.1f}] over {len(diff)}"
    if kind == "paired_seeds":  # the same over the seeds: each seed's mean over its pairs first (Table 3's unit)
        from bench.reports.aggregate import confidence_interval

        folder, dataset, test, a, b, metric, *rest = args
        diff = 100 * _paired(folder, dataset, test, a, b, metric, rest[0] if rest else None).groupby(level=0).mean()
        low, high = confidence_interval(diff.to_numpy())
        return f"{diff.mean():+.1f} [{low:+.1f}, {high:+.1f}] over {len(diff)} seeds"
    if kind == "lower":
        folder, dataset, test, a, b, metric, *rest = args
        diff = _paired(folder, dataset, test, a, b, metric, rest[0] if rest else None)
        below, above = int((diff < 0).sum()), int((diff > 0).sum())
        from scipy import stats

        p = stats.binomtest(below, below + above).pvalue if below + above else float("nan")
        return f"{below} of {len(diff)} (sign test p = {p:.2g})"
    if kind == "median_s":
        folder, method, *rest = args
        frame = cells(folder)
        frame = done(frame[frame["method"] == method])
        if rest:
            frame = frame[frame["dataset"] == rest[0]]
        return f"{frame['budget'].map(lambda b: b['fit_seconds']).median():.0f} s"
    if kind == "updates":  # the ledger: the median updates of one role (classifier, generator) of a method's cells
        folder, method, role = args
        frame = cells(folder)
        frame = done(frame[frame["method"] == method])
        return f"{frame['budget'].map(lambda b: b['roles'][role]['updates']).median():,.0f}"
    if kind == "share":
        folder, method = args
        medians = _medians(folder)
        return f"{100 * medians[medians['method'] == method]['total'].sum() / medians['total'].sum():.0f} %"
    if kind == "hours":
        folder, what = args
        frame = cells(folder)
        if what == "span":
            start = pd.to_datetime(frame["started_at"], utc=True).min()
            end = pd.to_datetime(frame["finished_at"], utc=True).max()
            return _hours((end - start).total_seconds())
        if what == "cells":
            return _hours(float(frame["duration_s"].sum()))
        return _hours(float(_medians(folder)["total"].sum()))
    if kind == "count":
        folder, what = args
        frame = cells(folder)
        finished = len(done(frame))
        return str(finished if what == "done" else len(frame) - finished)
    if kind == "cmp":  # bench compare of a re-run (NEW) against the store it re-ran part of (OLD)
        new, old, what = args
        result = comparison(new, old)
        if what in ("same", "within", "changed"):
            return str(int((result.rows["verdict"] == what).sum()))
        if what == "rows":
            return str(len(result.rows))
        if what == "unstable":
            return str(len(result.unstable))
        if what == "unstable_cells":
            return str(len({entry[0] for entry in result.unstable}))
        metric = what.removeprefix("max-")  # the largest move of a row's mean, points
        rows = result.rows[result.rows["metric"] == metric]
        return f"{100 * rows['diff'].abs().max():.2f}"
    if kind == "gaps":
        from bench.reports.validation import render_validation

        (folder,) = args
        line = [t for t in render_validation(cells(folder)).splitlines() if " gap(s): " in t]
        return str(sum(int(t.split()[0]) for t in line))
    raise KeyError(f"unknown fact kind '{kind}' in '{name}'; see benchmarks/validation/facts.py")


@functools.cache
def comparison(new: str, old: str):
    """``bench compare`` of the store NEW against the store OLD's cells of the methods NEW ran."""
    from bench.reports.compare import compare, side_of_cells

    after, before = tidy(new), tidy(old)
    before = before.where(before.frame["method"].isin(set(after.frame["method"])))
    return compare(side_of_cells(before, old), side_of_cells(after, new))


def _medians(folder: str) -> pd.DataFrame:
    """Per (dataset, test, method): the median cell duration times the number of cells."""
    frame = cells(folder)
    frame = done(frame)
    grouped = frame.groupby(["dataset", "test", "method"])["duration_s"]
    out = (grouped.median() * grouped.size()).rename("total").reset_index()
    return out.assign(total=out["total"].astype(np.float64))


BUDGET_METRICS = {"balanced_accuracy": "ACSA", "g_mean_macro": "GM (macro)", "f_measure": "F1"}


def budget_curve(folder: str) -> pd.DataFrame:
    """The budget study: one row per (dataset, test, method, E, metric) of the stores ``FOLDER/e<E>``, ours (mean,
    95 % interval, seeds) beside the published value and the gap, in points."""
    rows = []
    for sub in sorted((ROOT / STORES / folder).glob("e*"), key=lambda p: int(p.name[1:])):
        if not (sub / "bench.sqlite").exists():
            continue
        for _, row in table(f"{folder}/{sub.name}").iterrows():
            for metric, label in BUDGET_METRICS.items():
                published = row.get(f"{metric}_ref")
                rows.append({"dataset": row["dataset"], "test": row["test"], "method": row["method"],
                             "E": int(sub.name[1:]), "metric": label, "n": int(row["n_seeds"]),
                             "mean": 100 * row[f"{metric}_mean"], "lo": 100 * row[f"{metric}_ci_low"],
                             "hi": 100 * row[f"{metric}_ci_high"],
                             "published": 100 * published if pd.notna(published) else np.nan})
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["gap"] = frame["mean"] - frame["published"]
    return frame


def budget_markdown(folder: str) -> str:
    """The budget study as a Markdown table: per method and E, each metric's ours [interval], published, gap."""
    frame = budget_curve(folder)
    if frame.empty:
        return "No cell of the budget study is done yet.\n"
    lines = []
    for (dataset, test), group in frame.groupby(["dataset", "test"], sort=False):
        body = []
        for (method, e), cells_ in group.groupby(["method", "E"], sort=True):
            line = [method, str(e), str(cells_["n"].iloc[0])]
            for _, r in cells_.iterrows():
                interval = "" if pd.isna(r["lo"]) else f" [{r['lo']:.1f}, {r['hi']:.1f}]"
                outside = not pd.isna(r["lo"]) and not r["lo"] <= r["published"] <= r["hi"]
                flag = " gap" if outside and abs(r["gap"]) > 2 else ""  # reports/validation.py's rule
                line += [f"{r['mean']:.1f}{interval}", "-" if pd.isna(r["published"]) else f"{r['published']:.2f}",
                         "-" if pd.isna(r["gap"]) else f"{r['gap']:+.1f}{flag}"]
            body.append(line)
        headers = ["method", "E", "n"]
        for label in BUDGET_METRICS.values():
            headers += [f"{label} ours", "published", "gap"]
        lines.append(f"{dataset}, {'imbalanced' if test == 'train' else test} test, percent; gap = ours minus "
                     "published, in points, flagged `gap` where the published value lies outside our 95 % interval "
                     "(brackets, Student t over the seeds) and more than 2 points away.\n")
        lines.append(pd.DataFrame(body, columns=headers).to_markdown(index=False, disable_numparse=True) + "\n")
    return "\n".join(lines)


def budget_figure(folder: str, path: Path) -> Path:
    """The gap (ours minus published, points) against E, one panel per metric, one line per method, the 95 %
    interval as error bars: what VALIDATION.md shows beside the budget table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = budget_curve(folder).dropna(subset=["published"])
    fig, axes = plt.subplots(1, len(BUDGET_METRICS), figsize=(12, 3.6), sharey=True)
    for ax, label in zip(axes, BUDGET_METRICS.values(), strict=True):
        part = frame[frame["metric"] == label]
        for i, (method, group) in enumerate(part.groupby("method", sort=True)):
            group = group.sort_values("E")
            low = (group["mean"] - group["lo"]).fillna(0).to_numpy()
            high = (group["hi"] - group["mean"]).fillna(0).to_numpy()
            shift = 1 + 0.04 * (i - 1.5)  # side by side at each E, so the intervals do not hide each other
            ax.errorbar(group["E"] * shift, group["gap"], yerr=[low, high], marker="o", capsize=3, label=method)
        ax.axhline(0, color="grey", lw=0.8)
        ax.axhspan(-2, 2, color="grey", alpha=0.15, lw=0)
        ax.set_xscale("log")
        ax.set_xticks(sorted(frame["E"].unique()))
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title(label)
        ax.set_xlabel("E (budget-contract epochs)")
    axes[0].set_ylabel("ours minus published (points)")
    axes[-1].legend(loc="best", fontsize=8)
    fig.suptitle("GAMO protocol, MNIST, imbalanced test: ours minus DeepSMOTE's Table II against the budget "
                 "(bars: our 95 % interval; band: 2 points)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
