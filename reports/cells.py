"""The store as one tidy table, read once: what every table, figure, statistic, page, export and comparison
reads.

``read(results)`` reads one or several results folders (``bench.store.read_cells``) and ``as_cells(frame)``
turns a frame of ``Store.cells()`` into :class:`Cells`, two tables:

``Cells.frame``, one row per cell (a fresh ``RangeIndex``):
- what the cell is: ``id``, ``key``, ``status``, ``method``, ``params`` (the method's parameters, one dict:
  what a published number requires is matched on it), ``dataset``, ``protocol``, ``test`` (the test set,
  ``reports.tasks.test_of`` of the options), ``ratio`` (a float; the subset protocol's n), ``pair`` (its
  label, ``"3 vs 5"``, or ``"-"``), ``seed``, ``epochs``, ``options``;
- where and when it ran: ``device``, ``node``, ``versions``, ``started_at``, ``finished_at``, ``duration_s``,
  ``results`` (the folder), ``artifacts`` (an absolute path or None), ``error``;
- what it recorded beside its metrics: ``counts`` (the class counts), ``curves`` (ROC points), ``budget`` (the
  budget ledger, ``metrics["budget"]`` as the runner wrote it, or None), ``quality_error``, ``recorded`` (the
  metric names the cell stored as a number, inf and NaN included: what :func:`numbers` names);
- every metric some cell stored as a number or a bool, one float column each (``METRICS`` first, then the
  others sorted): nested metrics by dotted name (``per_class_recall.1``, ``confusion_matrix.0.1``); a metric
  named like a column above gets a ``metric_`` prefix. ``Cells.metrics`` lists these columns.

``Cells.quality``, the per-class generative quality (``metrics["quality"]``) of the done cells, long: one row
per number or text the store holds (a None or a flag is no measurement: left out), columns ``cell`` (the row of ``frame``), ``class`` (the generated class's name; ``""``
for the cell-level battle), ``source`` (``generated``: the method's images; ``real_vs_real``: the class's
real train images against its real test images, the reference), ``metric`` (``fid-inception``,
``fid-proxy``, ``ssim``, ``battle``; ``""`` for a class's own counts), ``field`` (the dotted name inside it:
``value``, ``kid``, ``generated.mean``, ``n_fake``), ``value`` (a float) and ``text`` (a string leaf, such
as ``feature_extractor``, else None).

**The rule for inf, NaN, missing and failed** (one, here, for every reader):
- a metric value is a finite float or NaN. NaN stands for everything a mean, a test or a plot cannot use:
  a missing metric, ``None``, a non-number, and inf, -inf and NaN themselves (the battle's ratios over a zero
  count are inf; the store keeps them, and so does the battle's ``winner`` text);
- a cell that is not ``done`` (failed; a task a method refuses is stored failed too) keeps its row, its status
  and its error, and every metric of it is NaN:
  a reader that counts failures counts rows, a reader that aggregates takes :func:`done` rows;
- a boolean metric is 0.0 or 1.0.

Nothing here writes to the store; reading twice gives the same tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.errors import BenchError

from .aggregate import pair_label
from .tasks import test_of

# The usual classification metrics, in this order; any other metric follows alphabetically.
METRICS = ("accuracy", "balanced_accuracy", "precision", "recall", "f_measure", "g_mean", "g_mean_macro", "roc_auc")
COLUMNS = ("id", "key", "status", "method", "params", "dataset", "protocol", "test", "ratio", "pair", "seed",
           "epochs", "options", "device", "node", "versions", "started_at", "finished_at", "duration_s", "results",
           "artifacts", "error", "counts", "curves", "budget", "quality_error", "recorded")
# What a frame must have to be taken as tidy already (a part of ``Cells.frame``, or one a report built so).
TIDY = ("status", "method", "dataset", "protocol", "test", "ratio", "pair", "seed")
RECORDS = ("budget", "quality", "quality_error")  # in the stored metrics, but not metrics: columns or ``quality``
QUALITY_COLUMNS = ("cell", "class", "source", "metric", "field", "value", "text")
BATTLE = "battle"  # the one cell-level entry of ``metrics["quality"]``, beside the classes
REAL = "real_vs_real"


@dataclass(frozen=True)
class Cells:
    """The tidy per-cell table and the long per-class quality table (module docstring)."""

    frame: pd.DataFrame
    quality: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=QUALITY_COLUMNS))
    metrics: tuple[str, ...] = ()

    @property
    def done(self) -> pd.DataFrame:
        return done(self.frame)

    def where(self, mask) -> Cells:
        """The cells where ``mask`` (over ``frame``) holds, with their quality rows."""
        frame = self.frame[mask]
        return Cells(frame, self.quality[self.quality["cell"].isin(frame.index)], self.metrics)


def number(value) -> float:
    """The rule: a finite float, else NaN (module docstring)."""
    if isinstance(value, bool):
        return float(value)
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out if math.isfinite(out) else math.nan


def done(frame: pd.DataFrame) -> pd.DataFrame:
    """The done cells: the only rows a table, a figure or a statistic aggregates."""
    return frame[frame["status"] == "done"] if len(frame) else frame


def read(results) -> Cells:
    """One or several results folders (``bench.store.read_cells``: a key in two, its newest done attempt) as
    :class:`Cells`."""
    from bench.store import read_cells

    return as_cells(read_cells(results))


def as_cells(cells) -> Cells:
    """:class:`Cells` of a frame of ``Store.cells()``; a :class:`Cells` or an already tidy frame as it is
    (the latter with no quality rows). None is an empty table."""
    if isinstance(cells, Cells):
        return cells
    if cells is None or (isinstance(cells, pd.DataFrame) and cells.empty and "metrics" not in cells):
        return Cells(pd.DataFrame(columns=list(COLUMNS)))
    if not isinstance(cells, pd.DataFrame):
        raise BenchError(f"expected the DataFrame of Store.cells(), got {type(cells).__name__}")
    if "metrics" in cells:
        return _tidy(cells.reset_index(drop=True))
    missing = [c for c in TIDY if c not in cells]
    if missing:
        raise BenchError(f"expected the DataFrame of Store.cells() (with metrics) or a tidy one; this one lacks "
                         f"{', '.join(missing)}")
    # tidy already (a part of Cells.frame): its metrics are its float columns; no quality rows
    metrics = tuple(c for c in cells.columns if c not in COLUMNS and pd.api.types.is_float_dtype(cells[c]))
    return Cells(cells, metrics=metrics)


def _tidy(raw: pd.DataFrame) -> Cells:
    get = lambda name: raw[name] if name in raw else pd.Series([None] * len(raw), dtype=object)  # noqa: E731
    stored = [m if isinstance(m, dict) else {} for m in get("metrics")]
    is_done = [s == "done" for s in get("status")]
    frame = pd.DataFrame({
        "id": get("id"), "key": get("key"), "status": get("status"), "method": get("method"),
        "params": get("params"), "dataset": get("dataset"), "protocol": get("protocol"),
        "test": [test_of(o) for o in get("options")] if "options" in raw or "test" not in raw else raw["test"],
        "ratio": pd.to_numeric(get("ratio"), errors="coerce").astype(float),
        "pair": [pair_label(p) for p in get("pair")], "seed": get("seed"), "epochs": get("epochs"),
        "options": get("options"), "device": get("device"), "node": get("node"), "versions": get("versions"),
        "started_at": get("started_at"), "finished_at": get("finished_at"), "duration_s": get("duration_s"),
        "results": get("results"), "artifacts": get("artifacts"), "error": get("error"), "counts": get("counts"),
        "curves": get("curves"),
        "budget": [m.get("budget") if isinstance(m.get("budget"), dict) else None for m in stored],
        "quality_error": [m.get("quality_error") for m in stored],
    }, index=raw.index)
    values = [dict(leaves({k: v for k, v in m.items() if k not in RECORDS})) if ok else {}
              for m, ok in zip(stored, is_done, strict=True)]
    # the names each cell stored as a number (inf and NaN too; never a bool or text): what ``numbers`` names
    frame["recorded"] = [frozenset(n for n, v in v.items() if _stored_number(v)) for v in values]
    found = {name for v in values for name, leaf in v.items() if _stored_number(leaf) or isinstance(leaf, bool)}
    names = [m for m in METRICS if m in found] + sorted(found - set(METRICS))
    columns = {}
    for name in names:
        column = f"metric_{name}" if name in COLUMNS else name
        columns[column] = [number(v.get(name)) for v in values]
    frame = pd.concat([frame, pd.DataFrame(columns, index=raw.index, dtype=float)], axis=1)
    quality = [row for index, m, ok in zip(raw.index, stored, is_done, strict=True) if ok
               for row in _quality_rows(index, m.get("quality"))]
    return Cells(frame, pd.DataFrame(quality, columns=list(QUALITY_COLUMNS)), tuple(columns))


def _stored_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def leaves(value, skip=frozenset(), prefix: str = ""):
    """Nested dicts and lists as (dotted name, leaf) pairs, leaving out the keys ``skip``."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in skip:
                yield from leaves(item, skip, f"{prefix}{key}.")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from leaves(item, skip, f"{prefix}{index}.")
    else:
        yield prefix.rstrip("."), value


def _quality_rows(cell, quality):
    """The long rows of one cell's ``metrics["quality"]``."""
    if not isinstance(quality, dict):
        return
    for name, entry in quality.items():
        if name == BATTLE:
            yield from _entry_rows(cell, "", "generated", BATTLE, entry)
            continue
        if not isinstance(entry, dict):  # a cell-level number beside the classes
            yield from _entry_rows(cell, "", "generated", "", {name: entry})
            continue
        for metric, result in entry.items():
            if metric == REAL and isinstance(result, dict):
                for variant, inner in result.items():
                    yield from _entry_rows(cell, str(name), REAL, str(variant), inner)
            elif isinstance(result, dict):
                yield from _entry_rows(cell, str(name), "generated", str(metric), result)
            else:  # a class's own counts and reference
                yield from _entry_rows(cell, str(name), "generated", "", {metric: result})


def _entry_rows(cell, name: str, source: str, metric: str, entry):
    for path, leaf in leaves(entry) if isinstance(entry, dict) else ():
        if leaf is None or isinstance(leaf, bool):  # no measurement (a flag is a record, not a number)
            continue
        text = leaf if isinstance(leaf, str) else None
        yield cell, name, source, metric, path, number(leaf), text


def metric(frame: pd.DataFrame, name: str) -> pd.Series:
    """One metric column of a tidy frame; all NaN where no cell stored it (the rule: missing is NaN)."""
    return frame[name] if name in frame else pd.Series(math.nan, index=frame.index, dtype=float)


def stored_name(column: str) -> str:
    """The metric's name in the store for one of ``Cells.metrics``: its column without the ``metric_`` prefix a
    name clashing with a column above gets."""
    name = column.removeprefix("metric_")
    return name if name != column and name in COLUMNS else column


def param(frame: pd.DataFrame, name: str) -> pd.Series:
    """One method parameter of every row, by the rule for numbers (NaN where a method has none)."""
    return pd.Series([number(p.get(name)) if isinstance(p, dict) else math.nan for p in frame["params"]],
                     index=frame.index, dtype=float)


def class_means(cells: Cells, metric: str, field: str, source: str = "generated") -> pd.Series:
    """Per cell (``frame``'s index), the mean of ``metric``'s ``field`` over its generated classes (NaN
    values left out; cells without one absent)."""
    q = cells.quality
    rows = q[(q["metric"] == metric) & (q["field"] == field) & (q["source"] == source) & q["value"].notna()]
    # np.mean over the classes in stored order: the sums every figure and table made before this table
    return rows.groupby("cell", sort=True)["value"].agg(lambda v: float(np.mean(v.to_numpy())))


def quality_name(name: str, source: str, metric: str, field: str) -> str:
    """A quality row's dotted name as the store nests it: ``quality.<class>[.real_vs_real].<metric>.<field>``,
    ``quality.battle.<field>``, ``quality.<field>`` for a cell-level number."""
    where = [BATTLE] if metric == BATTLE else [*([name] if name else []), *([REAL] if source == REAL else []),
                                               *([metric] if metric else [])]
    return ".".join(["quality", *where, field])


def numbers(cells: Cells, skip=frozenset()) -> dict[int, dict[str, float]]:
    """{cell: {dotted name: number}} of the done cells, by the names the store's nesting gives them (what
    ``bench compare`` and the MLflow export name a cell's numbers): the metrics the cell stored as a number
    (``recorded``), the ledger's counts and seconds as ``budget.<name>``, and the quality table's numbers as
    ``quality.<class>[.real_vs_real].<metric>.<field>`` (``quality.battle.<field>``, a cell-level one as
    ``quality.<field>``). Values by the rule: a stored inf or NaN is NaN (a caller that lists only numbers
    drops it; ``bench compare`` keeps it, so a metric that became undefined is a change). A name with a part
    in ``skip`` is left out."""
    frame = done(cells.frame)
    column = {stored_name(c): c for c in cells.metrics}
    out: dict[int, dict[str, float]] = {}
    for index in frame.index:
        row = frame.loc[index]
        recorded = row["recorded"] if isinstance(row.get("recorded"), frozenset) else frozenset(column)
        found = {name: float(row[column[name]]) for name in recorded if name in column}
        ledger = row["budget"] if isinstance(row["budget"], dict) else {}
        found.update({f"budget.{name}": number(v) for name, v in leaves(ledger) if _stored_number(v)})
        out[index] = found
    quality = cells.quality
    for row in quality[quality["text"].isna() & quality["cell"].isin(frame.index)].itertuples(index=False):
        out[row.cell][quality_name(row[1], row.source, row.metric, row.field)] = float(row.value)
    return {index: {n: v for n, v in found.items() if not skip & set(n.split("."))} for index, found in out.items()}
