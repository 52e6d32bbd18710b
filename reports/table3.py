"""Table 3 rebuilt from the results store: per-ratio means and stds over seeds, best marks, paper values.

Aggregation is two-stage: for each (dataset, protocol, test, ratio, method[, pair]) row, the done cells of one
seed are first averaged over their pairs (a seed with only some pairs done still counts, and is counted
in ``n_partial_seeds``), then the seed means give the mean and the sample std (ddof=1; NaN for one seed).
``test`` is the cell's test set (``balanced``, the default, or ``train``: following the training distribution;
``cells.Cells.frame``): cells of two test sets are never averaged together.
Completeness is judged against the grid, not against the row itself: ``n_grid_pairs`` is the number of
pairs any cell (done or failed, of any method) has at the row's (dataset, protocol, test, ratio), ``n_grid_seeds``
the number of seeds they have. A seed missing one of the grid's pairs is
partial (a method refused a pair in every seed still makes every seed partial), and a row is ``complete``
when no seed is partial and it has all the grid's seeds. Only complete rows are marked best: a row that
averaged fewer pairs or seeds compares a different task mix.
Cells that differ only in what the row does not show (params, epochs, precision, compilation) are averaged
per (seed, pair) first.
Failed cells carry no metrics (``reports/cells.py``'s rule for inf, NaN, missing and failed): they are counted in ``n_failed`` and the first one's error is kept.
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

from .aggregate import Grid, over_seeds, seed_means
from .cells import as_cells
from .cells import done as finished
from .cells import metric as cell_metric
from .paper import PAPER_METRICS, PAPER_PROTOCOL, REFERENCE_METRICS, paper_table3, published

METRICS = PAPER_METRICS  # shown in the Markdown, LaTeX and terminal tables, in this order
CSV_METRICS = METRICS + ("balanced_accuracy", "g_mean_macro", "roc_auc")
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


# Run settings in a cell's options that can change its numbers (the others select the task or add metrics).
TRAINING_OPTIONS = ("precision", "compile")


def _prepare(cells: pd.DataFrame) -> pd.DataFrame:
    """The columns Table 3 reads of a tidy frame (``cells.Cells.frame``), ratios rounded."""
    frame = cells[["dataset", "protocol", "test", "ratio", "method", "seed", "pair", "status", "error", "epochs",
                   "params"]].copy()  # params: which published numbers apply (``published_matches``)
    frame["ratio"] = frame["ratio"].astype(float).round(RATIO_DECIMALS)
    # What a row does not show but may pool: the training length, the method's parameters, the run settings.
    training = [{k: o[k] for k in TRAINING_OPTIONS if k in o} if isinstance(o, dict) else {} for o in cells["options"]]
    frame["config"] = [json.dumps([e, p, t], sort_keys=True, default=str)
                       for e, p, t in zip(cells["epochs"], cells["params"], training, strict=True)]
    for metric in CSV_METRICS:
        frame[metric] = cell_metric(cells, metric)
    return frame


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
    cells = as_cells(cells).frame
    if cells.empty:
        return pd.DataFrame(columns=columns)
    frame = _prepare(cells)
    frame = frame.loc[frame["status"] != "done", columns]
    return _sort(frame, ["dataset", "protocol", "test", "ratio", "method", "pair", "seed"])


def _aggregate(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    metrics = list(CSV_METRICS)
    done = finished(frame)
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


def _param(params, dotted: str):
    """``params["classifier"]["arch"]`` for ``"classifier.arch"``; None where a level is missing."""
    value = params
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _satisfies(params, requires: dict) -> bool:
    for name, want in requires.items():
        have = _param(params, name)
        if isinstance(want, float):
            try:
                if abs(float(have) - want) > PAPER_TOL:
                    return False
            except (TypeError, ValueError):
                return False
        elif str(have) != str(want):
            return False
    return True


def published_matches(table: pd.DataFrame, frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Every published number (``paper.published``) that applies to a row of ``table``: one line per (row,
    number), ``row`` the table's index, then the reference's columns, the row's primary number first.

    A number applies where the protocol, dataset, test set and method match (a variant such as
    ``focal[gamma=2]``: its method's numbers), the ratio matches (the gamo protocol's numbers fix none), and
    every done cell of the row has the parameters the number requires (the long-tail papers' ResNet-32 with
    SGD, LDAM without DRW's ``drw_fraction`` = 1, ...): a row trained otherwise gets no published value."""
    reference = published()
    done = finished(frame)
    params = {key if isinstance(key, tuple) else (key,): list(group["params"])
              for key, group in done.groupby(keys, sort=False)} if not done.empty else {}
    lines = []
    for index, row in table.iterrows():
        method = str(row["method"]).lower().split("[")[0]
        match = reference[
            (reference["protocol"] == row["protocol"])
            & (reference["dataset"] == str(row["dataset"]).lower())
            & (reference["test"] == row["test"])
            & (reference["method"] == method)
            & (reference["ratio"].isna() | ((reference["ratio"] - float(row["ratio"])).abs() <= PAPER_TOL))
        ]
        cells = params.get(tuple(row[k] for k in keys), [])
        match = match.loc[np.array([all(_satisfies(p, r) for p in cells) for r in match["requires"]], dtype=bool)]
        lines.append(match.sort_values("primary", ascending=False, kind="stable").assign(row=index))
    if not lines:
        return reference.iloc[:0].assign(row=pd.Series(dtype=int))
    return pd.concat(lines, ignore_index=True)


def _add_reference(table: pd.DataFrame, matches: pd.DataFrame) -> None:
    """The first (primary) published number of each row: ``<metric>_ref`` and ``ref_source`` (the citation and
    table; NaN where nothing applies)."""
    first = matches.drop_duplicates("row").set_index("row")
    for metric in REFERENCE_METRICS:
        table[f"{metric}_ref"] = first[metric].reindex(table.index).astype(float)
    source = first["source"] + ", Table " + first["table"].astype(str)
    table["ref_source"] = source.reindex(table.index)


def _build(cells: pd.DataFrame, by_pair: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    keys = row_keys(by_pair)
    frame = _prepare(cells)
    table = _aggregate(frame, keys)
    _mark_best(table, by_pair)
    _add_paper(table)
    matches = published_matches(table, frame, keys)
    _add_reference(table, matches)
    return table, matches


def table3(cells: pd.DataFrame, by_pair: bool = False) -> pd.DataFrame:
    """The Table 3 equivalent of the tidy table (``cells.Cells``, or a frame of ``Store.cells()``): one row per (dataset, protocol, test[, pair], ratio, method).

    Rows are sorted by dataset, protocol, test[, pair], ratio descending, then method (``imbalanced`` first).
    Columns: see :func:`table_columns`. Never raises on partial or failed runs; empty input gives an
    empty frame with the same columns.
    """
    return table3_and_published(cells, by_pair)[0]


def table3_and_published(cells: pd.DataFrame, by_pair: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`table3` and, from the same aggregation, every published number beside the row of ours it applies
    to (not only the first, which the table shows): one line per (row, number), the row's keys, ``n_seeds``,
    ``complete`` and ``<metric>_mean`` / ``_std`` / ``_ci_low`` / ``_ci_high``, then the number's ``source``, ``table``, ``paper_row``,
    ``primary``, ``spread`` and ``<metric>_ref``; rows in the table's order, each row's primary number first."""
    columns = table_columns(by_pair)
    cells = as_cells(cells).frame
    if cells.empty:
        return pd.DataFrame(columns=columns), pd.DataFrame()
    table, matches = _build(cells, by_pair)
    keys = row_keys(by_pair)
    ordered = _sort(table.assign(_row=table.index), keys)
    ours = ordered[keys + ["_row", "n_seeds", "complete"]
                   + [f"{m}_{s}" for m in REFERENCE_METRICS for s in ("mean", "std", "ci_low", "ci_high")]]
    theirs = matches[["row", "source", "table", "paper_row", "primary", "spread", *REFERENCE_METRICS]]
    theirs = theirs.rename(columns={m: f"{m}_ref" for m in REFERENCE_METRICS})
    beside = ours.merge(theirs, left_on="_row", right_on="row").drop(columns=["_row", "row"])  # ours' order
    return ordered[columns], beside
