"""The raw per-cell table, for analysis elsewhere: one row per cell of the tidy table (``reports/cells.py``),
its scalar columns.

Columns, in order: id, key, method, dataset, protocol, pair ("majority vs minority", "" without a pair),
ratio, seed, epochs, status, error ("" when none), duration_s, device, started_at, finished_at, then every
scalar metric (a number or bool in ``metrics``; the usual classification metrics first, in ``METRIC_ORDER``,
any others alphabetically; NaN where a cell lacks one or it is not a finite number, and for a failed cell:
``cells.py``'s rule), then train_counts and
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

from .aggregate import NO_PAIR
from .cells import METRICS, as_cells, number, stored_name

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
METRIC_ORDER = METRICS  # the usual classification metrics first (``cells.METRICS``)


def _is_scalar(value) -> bool:
    return isinstance(value, (bool, int, float)) and not isinstance(value, complex)


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _json(value) -> str:
    return "" if value is None else json.dumps(value, sort_keys=True, default=str)


def _budget(ledger) -> dict:
    """The budget ledger's numbers as scalar metrics: ``budget_<role>_updates`` / ``_optimizers`` /
    ``_seconds`` and ``budget_fit_seconds`` (the ledger itself stays nested in the store)."""
    if not isinstance(ledger, dict):
        return {}
    flat = {f"budget_{role}_{k}": v for role, entry in (ledger.get("roles") or {}).items()
            for k, v in entry.items() if k in ("updates", "optimizers", "seconds")}
    return {**flat, "budget_fit_seconds": ledger.get("fit_seconds")}


def _scalar_metrics(cells) -> dict[str, pd.Series]:
    """{name: values} of every scalar metric (``cells.py``'s columns without a dot: the nested ones stay in the
    store) and the ledger's numbers, in ``METRIC_ORDER`` then alphabetically."""
    frame = cells.frame
    found = {stored_name(c): frame[c] for c in cells.metrics if "." not in c}
    ledgers = [_budget(b) for b in frame["budget"]]
    for name in sorted({n for ledger in ledgers for n, v in ledger.items() if _is_scalar(v)}):
        found[name] = pd.Series([number(ledger.get(name)) for ledger in ledgers], index=frame.index, dtype=float)
    known = [name for name in METRIC_ORDER if name in found]
    return {name: found[name] for name in known + sorted(set(found) - set(known))}


def cells_table(cells) -> pd.DataFrame:
    """The tidy per-cell frame that :func:`export_cells` writes (columns: see the module docstring)."""
    table = as_cells(cells)
    frame = table.frame
    if frame.empty:
        return pd.DataFrame(columns=FIXED_COLUMNS + JSON_COLUMNS)
    counts = [c if isinstance(c, dict) else {} for c in frame["counts"]]
    data = {
        "id": pd.to_numeric(frame["id"], errors="coerce").astype("Int64"),
        "key": [_text(v) for v in frame["key"]],
        "method": [_text(v) for v in frame["method"]],
        "dataset": [_text(v) for v in frame["dataset"]],
        "protocol": [_text(v) for v in frame["protocol"]],
        "pair": ["" if p == NO_PAIR else p for p in frame["pair"]],
        "ratio": frame["ratio"],
        "seed": pd.to_numeric(frame["seed"], errors="coerce").astype("Int64"),
        "epochs": pd.to_numeric(frame["epochs"], errors="coerce").astype("Int64"),
        "status": [_text(v) for v in frame["status"]],
        "error": [_text(v) for v in frame["error"]],
        "duration_s": pd.to_numeric(frame["duration_s"], errors="coerce").astype(float),
        "device": [_text(v) for v in frame["device"]],
        "started_at": [_text(v) for v in frame["started_at"]],
        "finished_at": [_text(v) for v in frame["finished_at"]],
    }
    out = pd.DataFrame(data)
    for name, values in _scalar_metrics(table).items():
        out[name if name not in FIXED_COLUMNS + JSON_COLUMNS else f"metric_{name}"] = values.to_numpy(dtype=float)
    out["train_counts"] = [_json(c.get("train")) for c in counts]
    out["test_counts"] = [_json(c.get("test")) for c in counts]
    out["params"] = [_json(p) for p in frame["params"]]
    out["options"] = [_json(o) for o in frame["options"]]
    return out


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
