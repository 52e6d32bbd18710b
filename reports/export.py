"""The raw per-cell table, for analysis elsewhere: one row per cell of ``Store.cells()``, tidy scalar columns.

Columns, in order: id, key, method, dataset, protocol, pair ("majority vs minority", "" without a pair),
ratio, seed, epochs, status, error ("" when none), duration_s, device, started_at, finished_at, then every
scalar metric (a number or bool in ``metrics``; the usual classification metrics first, in ``METRIC_ORDER``,
any others alphabetically; NaN where a cell lacks one, e.g. a failed cell), then train_counts and
test_counts (the ``counts`` lists as JSON, "" when missing), params (the method's full parameters as
JSON with sorted keys) and options (the run settings in the cell's key: image size, test set, quality
metrics, precision, compile; JSON, "" for none). The budget ledger's numbers come as scalar columns
``budget_<role>_updates``, ``budget_<role>_optimizers``, ``budget_<role>_seconds`` and ``budget_fit_seconds``.
Nested metrics (confusion_matrix, per_class_recall, quality, battle, the ledger itself) and curves are not
scalars and stay in the store. A metric named like a fixed column gets a ``metric_`` prefix.

Text columns use "" for missing so that the CSV reads back unchanged with :func:`read_export`
(``pd.read_csv`` turns "" into NaN). Parquet needs pyarrow, which the suite does not require: without it
the export raises a one-line BenchError naming ``pip install pyarrow``.
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import pandas as pd

from bench.errors import BenchError

from .aggregate import pair_label

FORMATS = ("csv", "parquet")
FIXED_COLUMNS = [
    "id",
    "key",
    "method",
    "dataset",
    "protocol",
    "pair",
    "ratio",
    "seed",
    "epochs",
    "status",
    "error",
    "duration_s",
    "device",
    "started_at",
    "finished_at",
]
JSON_COLUMNS = ["train_counts", "test_counts", "params", "options"]
TEXT_COLUMNS = [
    "key",
    "method",
    "dataset",
    "protocol",
    "pair",
    "status",
    "error",
    "device",
    "started_at",
    "finished_at",
] + JSON_COLUMNS
METRIC_ORDER = (
    "accuracy",
    "balanced_accuracy",
    "precision",
    "recall",
    "f_measure",
    "g_mean",
    "g_mean_macro",
    "roc_auc",
)


def _is_scalar(value) -> bool:
    return isinstance(value, (bool, int, float)) and not isinstance(value, complex)


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _json(value) -> str:
    return "" if value is None else json.dumps(value, sort_keys=True, default=str)


def _pair(pair) -> str:
    label = pair_label(pair)
    return "" if label == "-" else label


def _with_budget(metrics):
    """The budget ledger's numbers as scalar metrics: ``budget_<role>_updates`` / ``_optimizers`` /
    ``_seconds`` and ``budget_fit_seconds`` (the ledger itself stays nested in the store)."""
    budget = metrics.get("budget") if isinstance(metrics, dict) else None
    if not isinstance(budget, dict):
        return metrics
    flat = {f"budget_{role}_{k}": v for role, entry in (budget.get("roles") or {}).items()
            for k, v in entry.items() if k in ("updates", "optimizers", "seconds")}
    return {**metrics, **flat, "budget_fit_seconds": budget.get("fit_seconds")}


def _metric_names(metrics_column) -> list[str]:
    found = set()
    for metrics in metrics_column:
        if isinstance(metrics, dict):
            found.update(name for name, value in metrics.items() if _is_scalar(value))
    known = [name for name in METRIC_ORDER if name in found]
    return known + sorted(found - set(known))


def cells_table(cells: pd.DataFrame) -> pd.DataFrame:
    """The tidy per-cell frame that :func:`export_cells` writes (columns: see the module docstring)."""
    if cells is not None and not isinstance(cells, pd.DataFrame):
        raise BenchError(f"expected the DataFrame of Store.cells(), got {type(cells).__name__}")
    if cells is None or cells.empty:
        return pd.DataFrame(columns=FIXED_COLUMNS + JSON_COLUMNS)
    cells = cells.reset_index(drop=True)
    get = lambda name: cells[name] if name in cells else pd.Series([None] * len(cells))  # noqa: E731
    metrics = [_with_budget(m) for m in get("metrics")]
    names = _metric_names(metrics)
    counts = [c if isinstance(c, dict) else {} for c in get("counts")]
    data = {
        "id": pd.to_numeric(get("id"), errors="coerce").astype("Int64"),
        "key": [_text(v) for v in get("key")],
        "method": [_text(v) for v in get("method")],
        "dataset": [_text(v) for v in get("dataset")],
        "protocol": [_text(v) for v in get("protocol")],
        "pair": [_pair(v) for v in get("pair")],
        "ratio": pd.to_numeric(get("ratio"), errors="coerce").astype(float),
        "seed": pd.to_numeric(get("seed"), errors="coerce").astype("Int64"),
        "epochs": pd.to_numeric(get("epochs"), errors="coerce").astype("Int64"),
        "status": [_text(v) for v in get("status")],
        "error": [_text(v) for v in get("error")],
        "duration_s": pd.to_numeric(get("duration_s"), errors="coerce").astype(float),
        "device": [_text(v) for v in get("device")],
        "started_at": [_text(v) for v in get("started_at")],
        "finished_at": [_text(v) for v in get("finished_at")],
    }
    frame = pd.DataFrame(data)
    for name in names:
        column = name if name not in FIXED_COLUMNS + JSON_COLUMNS else f"metric_{name}"
        values = [m.get(name) if isinstance(m, dict) else None for m in metrics]
        frame[column] = [float(v) if _is_scalar(v) else float("nan") for v in values]
    frame["train_counts"] = [_json(c.get("train")) for c in counts]
    frame["test_counts"] = [_json(c.get("test")) for c in counts]
    frame["params"] = [_json(p) for p in get("params")]
    frame["options"] = [_json(o) for o in get("options")]
    return frame


def read_export(path) -> pd.DataFrame:
    """Read a CSV written by :func:`export_cells` back into the frame :func:`cells_table` built."""
    frame = pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS})
    for column in TEXT_COLUMNS:
        if column in frame:
            frame[column] = frame[column].fillna("")
    for column in ("id", "seed", "epochs"):
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    return frame


def _require_pyarrow() -> None:
    try:
        importlib.import_module("pyarrow")
    except ImportError:
        raise BenchError("parquet export needs pyarrow: pip install 'capsan-bench[parquet]' (or pyarrow), "
                         "or export as csv") from None


SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def export_format(path, fmt: str | None) -> str:
    """The format to write: ``fmt``, else the one ``path``'s suffix names (csv when it names none). A suffix
    that names the other format is refused: a ``.parquet`` file of CSV text fools every reader."""
    implied = SUFFIXES.get(Path(path).suffix.lower())
    if fmt is None:
        return implied or "csv"
    if fmt not in FORMATS:
        raise BenchError(f"unknown export format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    if implied is not None and implied != fmt:
        raise BenchError(f"--format {fmt} but {path} names {implied}: drop --format, or name the file "
                         f"{Path(path).with_suffix('.' + fmt).name}")
    return fmt


def export_cells(cells: pd.DataFrame, path, fmt: str | None = None) -> Path:
    """Write :func:`cells_table` of ``cells`` to ``path`` as ``csv`` or ``parquet`` (None: as the file's
    suffix says, see :func:`export_format`); return the path."""
    fmt = export_format(path, fmt)
    frame = cells_table(cells)
    out = Path(path)
    if fmt == "parquet":
        _require_pyarrow()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            frame.to_csv(out, index=False)
        else:
            frame.to_parquet(out, index=False)
    except OSError as exc:
        raise BenchError(f"cannot write {out} ({exc.strerror or exc}); give another path") from exc
    return out
