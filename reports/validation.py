"""``validation.md``: the suite's numbers beside published ones, with the differences (``bench report --validation``).

The tables of ``VALIDATION.md`` are this module's output, never typed by hand. From one store (or several read
as one) it writes whichever of these the store has cells for:

- **GAMO protocol vs DeepSMOTE** (``validate-gamo``): per dataset and test set, each method's ACSA, GM and macro
  F1 as mean ± std over seeds (percent), DeepSMOTE's published value and ours minus theirs, in points.
- **Long tail vs the long-tail papers** (``cifar10-lt``): per dataset and ratio, each method's balanced
  accuracy (mean ± std, percent) beside every published number that applies to it (LDAM-DRW's Table 2, logit
  adjustment's Table 3, balanced softmax's Tables 2 and 5; ``table3_and_published``), the report's own first.
- **CapsAN paper, Table 3** (``validate-table3``): binary MNIST tasks on the balanced test split; G-mean,
  F-measure and accuracy, ours beside the paper's, differences in points.
- **CapsAN paper, Table 1** (``validate-table1``): the discriminators' error rate at n training images.

Every table takes its rows from the report's own aggregation (``table3.table3``, ``tables12.table1``), so the
validation and the normal report cannot disagree. A difference is flagged ``gap`` when it exceeds
``GAP_POINTS`` (2 points); ``VALIDATION.md`` investigates each one. Under the tables: what ran (cells done and
failed, devices, the span from the first cell's start to the last one's end, the summed cell seconds) and the
budget each method spent (median classifier and generator updates from the ledger).
"""

from __future__ import annotations

import pandas as pd

from .budget import budget_table
from .cells import as_cells, done
from .paper import (
    LONGTAIL_DEFINITIONS,
    PAPER_CITATION,
    REFERENCE_METRICS,
    deviation_notes,
    gamo_definitions,
    table3_definitions,
)
from .table3 import table3_and_published
from .tasks import test_label, test_set_note

GAP_POINTS = 2.0  # |ours - published| above this many points (of a percentage) is investigated
NAMES = {"balanced_accuracy": "ACSA", "g_mean": "GM", "g_mean_macro": "GM (macro)", "f_measure": "F1", "accuracy": "accuracy",
         "precision": "precision", "recall": "recall"}
TABLE3_METRICS = ("g_mean", "f_measure", "accuracy")
NONE = "-"


def _pct(value) -> str:
    return NONE if pd.isna(value) else f"{100 * value:.2f}"


def _ours(row, metric: str) -> str:
    """``mean ± std [ci_low, ci_high]`` of ``metric`` in ``row``, percent (the interval where there is one)."""
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    if pd.isna(mean):
        return NONE
    low, high = row.get(f"{metric}_ci_low"), row.get(f"{metric}_ci_high")
    interval = "" if pd.isna(low) or pd.isna(high) else f" [{100 * low:.2f}, {100 * high:.2f}]"
    return f"{100 * mean:.2f}" + ("" if pd.isna(std) else f" ± {100 * std:.2f}") + interval


def _diff(row, metric: str, published) -> tuple[str, bool]:
    """Ours minus ``published`` in points, flagged ``gap`` only where the difference is beyond ``GAP_POINTS``
    AND the published value lies outside our 95 % interval of the mean: a difference the seeds' spread
    explains is not a finding. A row without an interval (one seed) is never flagged."""
    mean = row[f"{metric}_mean"]
    if pd.isna(mean) or pd.isna(published):
        return NONE, False
    points = 100 * (mean - published)
    low, high = row.get(f"{metric}_ci_low"), row.get(f"{metric}_ci_high")
    outside = not (pd.isna(low) or pd.isna(high)) and not low <= published <= high
    gap = abs(points) > GAP_POINTS and outside
    return f"{points:+.2f}" + (" gap" if gap else ""), gap


RULE = (f"`gap`: the published value lies outside our 95 % interval of the mean (Student t over the seeds, in "
        f"brackets) and more than {GAP_POINTS:g} points away; a difference inside the interval is not flagged, "
        "however large, and a row of one seed (no interval) never is")


def _gap_count(gaps: int) -> str:
    return f"{gaps} gap(s): published values outside our 95 % interval and more than {GAP_POINTS:g} points away."


def _markdown(rows: list[list[str]], headers: list[str]) -> str:
    return pd.DataFrame(rows, columns=headers).to_markdown(index=False, disable_numparse=True)


def gamo_section(table: pd.DataFrame, cells: pd.DataFrame) -> list[str]:
    """Markdown lines: one table per (dataset, test set) of the gamo protocol that has published values, with
    the test set the cells used."""
    rows_with = table[(table["protocol"] == "gamo")]
    if rows_with.empty or rows_with[[f"{m}_ref" for m in REFERENCE_METRICS]].isna().all().all():
        return []
    lines = ["## GAMO protocol: ours beside DeepSMOTE's published numbers", "",
             "Percent; ours: mean ± std over the seeds (n) [95 % interval]; published: the source's value; diff: "
             f"ours minus published, in points ({RULE}).", ""]
    gaps = 0
    for (dataset, test), group in rows_with.groupby(["dataset", "test"], sort=False):
        headers = ["method", "n"]
        for metric in REFERENCE_METRICS:
            headers += [f"{NAMES[metric]} ours", "published", "diff"]
        body = []
        for _, row in group.iterrows():
            line = [str(row["method"]), str(row["n_seeds"])]
            for metric in REFERENCE_METRICS:
                diff, gap = _diff(row, metric, row[f"{metric}_ref"])
                gaps += gap
                line += [_ours(row, metric), _pct(row[f"{metric}_ref"]), diff]
            body.append(line)
        sources = [s for s in dict.fromkeys(group["ref_source"]) if isinstance(s, str)]
        lines += [f"### {dataset}, {test_label(test)}", "", _markdown(body, headers), ""]
        notes = " ".join([gamo_definitions(), *deviation_notes(group.loc[group["ref_source"].notna(), "method"])])
        lines += [f"published: {'; '.join(sources) or 'no published row for these methods'}. {notes}", ""]
        used = done(cells[(cells["protocol"] == "gamo") & (cells["dataset"] == dataset) & (cells["test"] == test)])
        note = test_set_note(used)
        lines += [note, ""] if note else []
    lines += [_gap_count(gaps), ""]
    return lines


def longtail_section(beside: pd.DataFrame) -> list[str]:
    """Markdown lines: one table per (dataset, test set) of the longtail protocol with published numbers, every
    number that applies to a row beside it (the row's primary one first; ``table3_and_published``)."""
    beside = beside[beside["protocol"] == "longtail"] if not beside.empty else beside
    if beside.empty:
        return []
    lines = ["## Long tail: ours beside the long-tail papers' published numbers", "",
             "Balanced accuracy (the top-1 accuracy of a balanced test split), percent; ours: mean ± std over the "
             "seeds (n) [95 % interval]; published: the paper's value (100 minus the error where it prints an "
             "error; ± its standard error where it prints one); diff: ours minus published, in points "
             f"({RULE}). A row's first number is the one the report shows. {LONGTAIL_DEFINITIONS}", ""]
    headers = ["ratio", "method", "n", "ours", "published", "diff", "paper's row", "source"]
    gaps = 0
    for (dataset, test), group in beside.groupby(["dataset", "test"], sort=False):
        body = []
        for _, row in group.iterrows():
            diff, gap = _diff(row, "balanced_accuracy", row["balanced_accuracy_ref"])
            gaps += gap
            spread = "" if pd.isna(row["spread"]) else f" ± {100 * row['spread']:.1f}"
            body.append([f"{row['ratio']:g}", str(row["method"]), str(row["n_seeds"]),
                         _ours(row, "balanced_accuracy"),
                         _pct(row["balanced_accuracy_ref"]) + spread, diff, str(row["paper_row"]),
                         f"{str(row['source']).split(' (')[0]}, Table {row['table']}"])
        lines += [f"### {dataset}, {test_label(test)}", "", _markdown(body, headers), ""]
        notes = " ".join(deviation_notes(group["method"]))
        lines += [f"sources: {'; '.join(dict.fromkeys(group['source']))}." + (f" {notes}" if notes else ""), ""]
    lines += [_gap_count(gaps), ""]
    return lines


def table3_section(table: pd.DataFrame) -> list[str]:
    """Markdown lines: the binary rows that have the CapsAN paper's Table 3 values, ratio by ratio."""
    rows_with = table[(table["protocol"] == "binary") & (table["test"] == "balanced")]
    rows_with = rows_with[rows_with[[f"{m}_paper" for m in TABLE3_METRICS]].notna().any(axis=1)]
    if rows_with.empty:
        return []
    lines = ["## CapsAN paper, Table 3: ours beside the paper's", "",
             "Binary MNIST tasks (minority-class F-measure; the paper does not state its positive class), the mean "
             "over the class pairs per seed, then mean ± std over the seeds (n) [95 % interval], percent; paper: "
             f"{PAPER_CITATION}, Table 3; diff in points ({RULE}).", "", table3_definitions(), ""]
    headers = ["ratio", "method", "n", "pairs"]
    for metric in TABLE3_METRICS:
        headers += [f"{NAMES[metric]} ours", "paper", "diff"]
    gaps = 0
    for dataset, group in rows_with.groupby("dataset", sort=False):
        body = []
        for _, row in group.iterrows():
            cells = [f"{row['ratio']:g}", str(row["method"]), str(row["n_seeds"]), str(row["n_pairs"])]
            for metric in TABLE3_METRICS:
                diff, gap = _diff(row, metric, row[f"{metric}_paper"])
                gaps += gap
                cells += [_ours(row, metric), _pct(row[f"{metric}_paper"]), diff]
            body.append(cells)
        lines += [f"### {dataset}", "", _markdown(body, headers), ""]
    lines += [_gap_count(gaps), ""]
    return lines


def table1_section(cells: pd.DataFrame) -> list[str]:
    """Markdown lines: the discriminators' error rate at each n, ours beside the paper's Table 1."""
    from .tables12 import table1

    table = table1(cells)
    if table.empty or not (table["n_seeds"] > 0).any():
        return []
    lines = ["## CapsAN paper, Table 1: ours beside the paper's", "",
             "Error rate (1 - accuracy) of each discriminator trained as a classifier on n images, percent, mean ± "
             f"std over the seeds (n) [95 % interval]; paper: {PAPER_CITATION}, Table 1; diff in points ({RULE}).",
             ""]
    headers = ["dataset", "n images", "discriminator", "seeds", "error ours", "paper", "diff"]
    body, gaps = [], 0
    for _, row in table.iterrows():
        diff, gap = _diff(row, "error", row["error_paper"])
        gaps += gap
        body.append([str(row["dataset"]), f"{row['n']:g}", str(row["discriminator"]), str(row["n_seeds"]),
                     _ours(row, "error"), _pct(row["error_paper"]), diff])
    return lines + [_markdown(body, headers), "", _gap_count(gaps), ""]


def run_section(cells: pd.DataFrame) -> list[str]:
    """Markdown lines: what ran (cells, devices, time) and what each method spent (the budget ledger)."""
    finished = done(cells)
    start = pd.to_datetime(cells["started_at"], utc=True).min()
    end = pd.to_datetime(cells["finished_at"], utc=True).max()
    span = (end - start).total_seconds()
    devices = ", ".join(sorted(set(map(str, cells["device"]))))
    lines = ["## What ran", "",
             f"- cells: {len(finished)} done, {len(cells) - len(finished)} failed; device: {devices}",
             f"- first cell started {start:%Y-%m-%d %H:%M} UTC, last ended {end:%Y-%m-%d %H:%M} UTC: "
             f"{span / 3600:.2f} h; the cells' own times sum to {cells['duration_s'].sum() / 3600:.2f} h", ""]
    budget = budget_table(cells)
    if budget.empty or "classifier_updates" not in budget:
        return lines
    headers = ["dataset", "method", "cells", "classifier updates (U)", "generator updates", "fit s"]
    body = []
    for _, row in budget.iterrows():
        generator = row.get("generator_updates")
        k = row.get("generator_optimizers")
        gen = NONE if pd.isna(generator) else f"{generator:.0f}" + (f" x {k:.0f}" if not pd.isna(k) and k > 1 else "")
        fit = row.get("fit_seconds")
        body.append([str(row["dataset"]), str(row["method"]), str(row["cells"]),
                     NONE if pd.isna(row["classifier_updates"]) else f"{row['classifier_updates']:.0f}", gen,
                     NONE if pd.isna(fit) else f"{fit:.1f}"])
    return lines + ["Budget (medians over each method's done cells, from the ledger):", "",
                    _markdown(body, headers), ""]


def render_validation(cells: pd.DataFrame) -> str:
    """``validation.md`` for the cells of a store (``cells.Cells``, or ``Store.cells()``): the sections it has
    data for."""
    cells = as_cells(cells).frame
    if cells.empty:
        return "# Validation\n\nNo results in the store yet.\n"
    table, beside = table3_and_published(cells)
    parts = gamo_section(table, cells) + longtail_section(beside) + table3_section(table) + table1_section(cells)
    if not parts:
        parts = ["No cell in the store matches a published number (run --preset validate-gamo, cifar10-lt, "
                 "validate-table3 or validate-table1).", ""]
    return "\n".join(["# Validation", ""] + parts + run_section(cells))
