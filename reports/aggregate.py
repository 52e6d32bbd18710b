"""One aggregation for every report: the pair label, and the mean and 95 % interval over seeds.

Every table and figure aggregates in two stages: first the done cells of one seed are averaged over their
class pairs, then the seed means give the mean, the sample standard deviation (ddof = 1) and the two-sided
Student-t 95 % interval of the mean. The seed, not the pair, is the unit of replication: pairs of one seed
share a training run's randomness and are not independent draws.

``Grid`` decides, once, what a complete row is (every pair the grid ran at the row's task in every seed it
ran, counted over all stored cells, done or failed): Table 3 marks best only complete rows, Figure 3 labels a
line with an incomplete point, and the Friedman ranking leaves out a method whose row is incomplete in a block.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

NO_PAIR = "-"  # pair label of cells from protocols without pairs


def pair_label(pair) -> str:
    """``[3, 5]`` -> ``'3 vs 5'`` (majority vs minority); no pair -> ``'-'``; a label as it is."""
    if isinstance(pair, str):
        return pair
    if pair is None or (isinstance(pair, float) and math.isnan(pair)):
        return NO_PAIR
    return " vs ".join(str(label) for label in pair)


def confidence_interval(values, level: float = 0.95) -> tuple[float, float]:
    """Student-t confidence interval of the mean of ``values`` (NaNs dropped); ``(nan, nan)`` for n < 2."""
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, not {level!r}")
    array = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float).ravel()
    array = array[np.isfinite(array)]
    n = array.size
    if n < 2:
        return (math.nan, math.nan)
    mean = float(array.mean())
    half = float(stats.t.ppf((1.0 + level) / 2.0, n - 1)) * float(array.std(ddof=1)) / math.sqrt(n)
    return (mean - half, mean + half)


def ci_bounds(mean, std, count, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """:func:`confidence_interval` from summaries, element-wise: mean, sample std (ddof=1) and the number of
    values; NaN where count < 2. The tables use it on their per-seed aggregates."""
    mean, std, count = (np.asarray(a, dtype=float) for a in (mean, std, count))
    with np.errstate(invalid="ignore", divide="ignore"):
        t = stats.t.ppf((1.0 + level) / 2.0, np.where(count >= 2, count - 1, np.nan))
        half = t * std / np.sqrt(count)
    half = np.where(count >= 2, half, np.nan)
    return mean - half, mean + half


def seed_means(frame: pd.DataFrame, keys: Sequence[str], values: Sequence[str]) -> pd.DataFrame:
    """Stage 1: one row per (``keys``, seed): the mean over the seed's pairs of the mean over each pair's
    cells (cells that differ only in what ``keys`` do not show). ``frame`` has ``keys``, ``seed``, the
    ``values`` columns (NaN ignored, column by column) and, when the cells have pairs, ``pair`` (a pair
    among ``keys`` makes it a row key instead). Columns: ``keys``, seed, ``values``, ``seed_pairs`` (the
    pairs the seed averaged)."""
    keys, values = list(keys), list(values)
    if "pair" in frame.columns and "pair" not in keys:
        per_pair = frame.groupby(keys + ["seed", "pair"])[values].mean().reset_index()
        return per_pair.groupby(keys + ["seed"]).agg(**{v: (v, "mean") for v in values},
                                                     seed_pairs=("pair", "nunique")).reset_index()
    per_seed = frame.groupby(keys + ["seed"])[values].mean().reset_index()
    return per_seed.assign(seed_pairs=1)


def over_seeds(per_seed: pd.DataFrame, keys: Sequence[str], values: Sequence[str]) -> pd.DataFrame:
    """Stage 2, from :func:`seed_means`: per ``keys``, each value's ``<value>_mean``, ``_std`` (ddof = 1,
    NaN for one seed), ``_ci_low`` and ``_ci_high`` (the Student-t 95 % interval of the mean, NaN below two
    seeds), and ``n_seeds`` (the seeds with a row). Indexed by ``keys``."""
    keys, values = list(keys), list(values)
    by_row = per_seed.groupby(keys)
    stats = by_row[values].agg(["mean", "std", "count"])
    for value in values:
        low, high = ci_bounds(stats[(value, "mean")], stats[(value, "std")], stats[(value, "count")])
        stats[(value, "ci_low")], stats[(value, "ci_high")] = low, high
    stats = stats.drop(columns=[(value, "count") for value in values])
    stats.columns = [f"{value}_{stat}" for value, stat in stats.columns]
    stats["n_seeds"] = by_row.size()
    return stats


@dataclass(frozen=True)
class Grid:
    """What a complete row is, decided once: the pairs and seeds the grid has at a row's task (any cell,
    done or failed, of any method), from the stored cells. A seed missing one of the grid's pairs is
    partial; a row is complete when no seed is partial and it has all the grid's seeds."""

    keys: list  # the task keys the grid is counted over (the row keys without the method)
    pairs: pd.Series  # n_grid_pairs per task
    seeds: pd.Series  # n_grid_seeds per task

    @classmethod
    def of(cls, frame: pd.DataFrame, row_keys: Sequence[str]) -> Grid:
        keys = [k for k in row_keys if k not in ("method", "pair")] + (["pair"] if "pair" in row_keys else [])
        return cls(keys, frame.groupby(keys)["pair"].nunique().rename("n_grid_pairs"),
                   frame.groupby(keys)["seed"].nunique().rename("n_grid_seeds"))

    def partial_seeds(self, per_seed: pd.DataFrame, row_keys: Sequence[str]) -> pd.Series:
        """Per row: the seeds (of :func:`seed_means`, indexed by the row keys and seed) that averaged fewer
        pairs than the grid has."""
        row_pairs = per_seed.join(self.pairs, on=self.keys)
        return (row_pairs["seed_pairs"] < row_pairs["n_grid_pairs"]).groupby(list(row_keys)).sum().rename(
            "n_partial_seeds")

    def complete(self, table: pd.DataFrame) -> pd.DataFrame:
        """``table`` (with ``n_seeds`` and ``n_partial_seeds``) with the grid's pairs and seeds beside each
        row and ``complete``."""
        table = table.join(self.pairs, on=self.keys).join(self.seeds, on=self.keys)
        for count in ("n_grid_pairs", "n_grid_seeds"):
            table[count] = table[count].fillna(0).astype(int)
        table["complete"] = (table["n_partial_seeds"] == 0) & (table["n_seeds"] >= table["n_grid_seeds"])
        return table


    def mark(self, stats: pd.DataFrame, per_seed: pd.DataFrame, row_keys: Sequence[str]) -> pd.DataFrame:
        """``stats`` (:func:`over_seeds` of ``per_seed``, indexed by ``row_keys``) with ``n_partial_seeds``,
        the grid's counts and ``complete``: the one completeness rule, for tables, figures and statistics."""
        row_keys = list(row_keys)
        partial = self.partial_seeds(per_seed.set_index(row_keys + ["seed"]), row_keys)
        table = stats.join(partial).reset_index()
        table["n_partial_seeds"] = table["n_partial_seeds"].fillna(0).astype(int)
        return self.complete(table)


def summarize(frame: pd.DataFrame, keys: Sequence[str], value: str, grid: Grid | None = None) -> pd.DataFrame:
    """The figures' summary of :func:`seed_means` then :func:`over_seeds`: ``keys + [mean, lo, hi, n_seeds,
    complete]``, the band collapsed onto the mean for a single seed (a line, no band). NaN values are ignored.
    ``grid`` (:meth:`Grid.of` the run's cells, done and failed, over ``keys``) decides ``complete`` as the
    tables do; without it every summarized row counts as complete."""
    keys = list(keys)
    columns = keys + ["mean", "lo", "hi", "n_seeds", "complete"]
    data = frame[frame[value].notna()] if len(frame) else frame
    if len(data) == 0:
        return pd.DataFrame(columns=columns)
    per_seed = seed_means(data, keys, [value])
    stats = over_seeds(per_seed, keys, [value])
    stats = grid.mark(stats, per_seed, keys) if grid is not None else stats.reset_index().assign(complete=True)
    single = stats["n_seeds"] == 1
    out = stats[keys].assign(mean=stats[f"{value}_mean"],
                             lo=stats[f"{value}_ci_low"].mask(single, stats[f"{value}_mean"]),
                             hi=stats[f"{value}_ci_high"].mask(single, stats[f"{value}_mean"]),
                             n_seeds=stats["n_seeds"], complete=stats["complete"].astype(bool))
    return out.sort_values(keys, kind="stable").reset_index(drop=True)[columns]
