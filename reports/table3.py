"""Table 3 rebuilt from the results store: per-ratio means and stds over seeds, best marks, paper values.

Aggregation is two-stage: for each (dataset, protocol, test, ratio, method[, pair]) row, the done cells of one
seed are first averaged over their pairs (a seed with only some pairs done still counts, and is counted
in ``n_partial_seeds``), then the seed means give the mean and the sample std (ddof=1; NaN for one seed).
``test`` is the cell's test set (``balanced``, the default, or ``train``: following the training distribution;
``tasks.with_test``): cells of two test sets are never averaged together.
Completeness is judged against the grid, not against the row itself: ``n_grid_pairs`` is the number of
pairs any cell (done or failed, of any method) has at the row's (dataset, protocol, test, ratio), ``n_grid_seeds``
the number of seeds they have. A seed missing one of the grid's pairs is
partial (a method refused a pair in every seed still makes every seed partial), and a row is ``complete``
when no seed is partial and it has all the grid's seeds. Only complete rows are marked best: a row that
averaged fewer pairs or seeds compares a different task mix.
Cells that differ only in what the row does not show (params, epochs, precision, compilation) are averaged
per (seed, pair) first.
Failed cells carry no metrics: they are counted in ``n_failed`` and the first one's error is kept.
``n_configs`` counts the distinct (epochs, parameters, precision and compile mode) among a row's done cells, ``epochs_min`` and
``epochs_max`` bound their training lengths: above one configuration, the row pools runs that differ in
what it does not show, and the rendered tables say so.
``<metric>_ci_low`` / ``_ci_high``: the 95 % Student-t confidence interval of the mean over the seed means
(``aggregate.over_seeds``; NaN below two seeds). The two stages and the completeness rule are ``aggregate.py``'s, shared by every table.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from .aggregate import Grid, over_seeds, pair_label, seed_means
from .paper import PAPER_METRICS, PAPER_PROTOCOL, REFERENCE_METRICS, paper_table3, reference_gamo
from .tasks import with_test

METRICS = PAPER_METRICS  # shown in the Markdown, LaTeX and terminal tables, in this order
CSV_METRICS = METRICS + ("balanced_accuracy", "roc_auc")
BASELINE = "imbalanced"  # listed first in every group
RATIO_DECIMALS = 10  # ratios are grouped after rounding, so 0.1 and 0.1000000000001 are one row
TIE_TOL = 1e-12  # means this close to the best are ties
PAPER_TOL = 1e-9  # ratio tolerance when looking up the paper's value


def row_keys(by_pair: bool = False) -> list[str]:
    return ["dataset", "protocol", "test"] + (["pair"] if by_pair else []) + ["ratio", "method"]


def table_columns(by_pair: bool = False) -> list[str]:
    columns = row_keys(by_pair) + ["n_seeds", "n_pairs", "n_partial_seeds", "n_grid_seeds", "n_grid_pairs",
                                   "complete", "n_failed", "n_configs", "epochs_min", "epochs_max", "error"]
    for metric in CSV_METRICS:
        columns += [f"{metric}_mean", f"{metric}_std", f"{metric}_ci_low", f"{metric}_ci_high", f"{metric}_best"]
        if metric in PAPER_METRICS:
            columns.append(f"{metric}_paper")
        if metric in REFERENCE_METRICS:
            columns.append(f"{metric}_ref")
    return columns + ["ref_source"]


def _metric(metrics, name: str) -> float:
    value = (metrics or {}).get(name) if isinstance(metrics, dict) else None
    return float("nan") if value is None else float(value)


# Run settings in a cell's options that can change its numbers (the others select the task or add metrics).
TRAINING_OPTIONS = ("precision", "compile")


def _prepare(cells: pd.DataFrame) -> pd.DataFrame:
    cells = with_test(cells)
    frame = cells[
        ["dataset", "protocol", "test", "ratio", "method", "seed", "pair", "status", "metrics", "error"]
    ].copy()
    frame["pair"] = frame["pair"].map(pair_label)
    frame["ratio"] = frame["ratio"].astype(float).round(RATIO_DECIMALS)
    # What a row does not show but may pool: the training length and the method's parameters.
    epochs = cells["epochs"] if "epochs" in cells else pd.Series([None] * len(cells), index=cells.index)
    params = cells["params"] if "params" in cells else pd.Series([None] * len(cells), index=cells.index)
    options = cells["options"] if "options" in cells else pd.Series([None] * len(cells), index=cells.index)
    training = [{k: o[k] for k in TRAINING_OPTIONS if k in o} if isinstance(o, dict) else {} for o in options]
    frame["epochs"] = epochs
    frame["config"] = [json.dumps([e, p, t], sort_keys=True, default=str)
                       for e, p, t in zip(epochs, params, training, strict=True)]
    for metric in CSV_METRICS:
        frame[metric] = [_metric(m, metric) for m in frame["metrics"]]
    return frame.drop(columns="metrics")


def _sort(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    def key(column: pd.Series) -> pd.Series:
        if column.name == "method":  # the baseline first, then alphabetical
            return column.map(lambda m: ("0" if m == BASELINE else "1") + str(m))
        return column

    ascending = [name != "ratio" for name in keys]
    return frame.sort_values(keys, ascending=ascending, key=key, kind="stable").reset_index(drop=True)


def failed_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """The failed cells, one row each: dataset, protocol, ratio, method, pair, seed, error."""
    columns = ["dataset", "protocol", "test", "ratio", "method", "pair", "seed", "error"]
    if cells is None or cells.empty:
        return pd.DataFrame(columns=columns)
    frame = _prepare(cells)
    frame = frame.loc[frame["status"] != "done", columns]
    return _sort(frame, ["dataset", "protocol", "test", "ratio", "method", "pair", "seed"])


def _aggregate(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    metrics = list(CSV_METRICS)
    done = frame[frame["status"] == "done"]
    per_seed = seed_means(done, keys, metrics).set_index(keys + ["seed"])
    stats = over_seeds(per_seed, keys, metrics)
    n_seeds = stats.pop("n_seeds")
    n_pairs = done.groupby(keys)["pair"].nunique().rename("n_pairs")
    grid = Grid.of(frame, keys)
    failed = (
        frame[frame["status"] != "done"]
        .groupby(keys)
        .agg(n_failed=("status", "size"), error=("error", "first"))
    )
    if per_seed.empty:  # every cell failed: rows of dashes (pandas cannot join or align empty Arrow keys)
        table = failed.reset_index().assign(**{c: np.nan for c in stats.columns}, n_seeds=0, n_pairs=0,
                                            n_partial_seeds=0, n_configs=0, epochs_min=np.nan, epochs_max=np.nan)
        return grid.complete(table.astype({c: float for c in stats.columns}))
    partial = grid.partial_seeds(per_seed, keys)
    configs = done.groupby(keys).agg(n_configs=("config", "nunique"), epochs_min=("epochs", "min"),
                                     epochs_max=("epochs", "max"))
    parts = [stats, n_seeds, n_pairs, partial, failed, configs]
    table = pd.concat(parts, axis=1).reset_index()
    for count in ("n_seeds", "n_pairs", "n_partial_seeds", "n_failed", "n_configs"):
        table[count] = table[count].fillna(0).astype(int)
    return grid.complete(table)


def _mark_best(table: pd.DataFrame, by_pair: bool) -> None:
    """The best mean among the COMPLETE rows of each group; an incomplete row is never marked."""
    groups = ["dataset", "protocol", "test", "ratio"] + (["pair"] if by_pair else [])
    complete = table["complete"].astype(bool)
    for metric in CSV_METRICS:
        mean = table[f"{metric}_mean"].where(complete)
        best = mean.groupby([table[g] for g in groups]).transform("max")
        table[f"{metric}_best"] = (mean >= best - TIE_TOL) & mean.notna()


def _add_paper(table: pd.DataFrame) -> None:
    paper = paper_table3()
    for metric in PAPER_METRICS:
        table[f"{metric}_paper"] = np.nan
    for index, row in table.iterrows():
        if row["protocol"] != PAPER_PROTOCOL or row["test"] != "balanced":
            continue
        match = paper[
            (paper["dataset"].str.lower() == str(row["dataset"]).lower())
            & (paper["method"].str.lower() == str(row["method"]).lower())
            & ((paper["ratio"] - row["ratio"]).abs() <= PAPER_TOL)
        ]
        if not match.empty:
            for metric in PAPER_METRICS:
                table.loc[index, f"{metric}_paper"] = float(match[metric].iloc[0])


def _add_reference(table: pd.DataFrame) -> None:
    """Other papers' published numbers (``paper.reference_gamo``) where dataset, protocol, test set and method
    match: ``<metric>_ref`` and ``ref_source`` (the citation and table; NaN where nothing matches)."""
    reference = reference_gamo()
    for metric in REFERENCE_METRICS:
        table[f"{metric}_ref"] = np.nan
    sources = []
    for index, row in table.iterrows():
        match = reference[
            (reference["protocol"] == row["protocol"])
            & (reference["dataset"] == str(row["dataset"]).lower())
            & (reference["test"] == row["test"])
            & (reference["method"] == str(row["method"]).lower().split("[")[0])  # a variant: its method's row
        ]
        sources.append(np.nan if match.empty else f"{match['source'].iloc[0]}, Table {match['table'].iloc[0]}")
        for metric in REFERENCE_METRICS if not match.empty else ():
            table.loc[index, f"{metric}_ref"] = float(match[metric].iloc[0])
    table["ref_source"] = sources


def table3(cells: pd.DataFrame, by_pair: bool = False) -> pd.DataFrame:
    """The Table 3 equivalent of ``Store.cells()``: one row per (dataset, protocol, test[, pair], ratio, method).

    Rows are sorted by dataset, protocol, test[, pair], ratio descending, then method (``imbalanced`` first).
    Columns: see :func:`table_columns`. Never raises on partial or failed runs; empty input gives an
    empty frame with the same columns.
    """
    columns = table_columns(by_pair)
    if cells is None or cells.empty:
        return pd.DataFrame(columns=columns)
    keys = row_keys(by_pair)
    table = _aggregate(_prepare(cells), keys)
    _mark_best(table, by_pair)
    _add_paper(table)
    _add_reference(table)
    return _sort(table, keys)[columns]
