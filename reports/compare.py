"""``bench compare``: did a change move the numbers? A results folder against a reference.

A **reference** is a results folder, or a small JSON file that ``bench compare --results DIR --save FILE``
writes (``FORMAT``): every done cell's key, its task (method, dataset, protocol, test set, pair, ratio,
seed), its metrics flattened to dotted names (``g_mean``, ``per_class_recall.1``, ``budget.roles.classifier.updates``,
``quality.5.fid-proxy.value``; the machine's own figures, seconds and threads, left out; every number the cell
stored, ``reports/cells.numbers``, so by the tidy table's rule a stored inf reads as NaN, and a NaN, stored or
inf, stays, saying the metric was undefined), its fit seconds (the budget ledger's), and the run's
device kinds and package versions. Sorted and indented: a file to commit beside the code it guards and to
read in a diff.

**Matching.** Cells are matched by key (a key hashes the method, its parameters, the task, the seed, the
epochs and the options, never the device). The summary counts the matched cells and names those on one side
only; a reference cell without a done cell in the new run (it failed, or was not run) is *missing*.

**Rows and verdicts.** One row per (method, dataset, protocol, test set, ratio) and metric: the old and new
means over the matched cells, their difference, the largest absolute difference of one cell, the 95 % half-width
of the mean difference (``spread``), a paired test over the matched cells, and a verdict:

- ``same``: every matched cell's value is bit-identical;
- ``within``: not ``same``, and not ``changed`` by the rule in force (below);
- ``changed``: beyond the tolerance by the rule in force;
- ``missing``: a reference cell of the row (or its value of this metric) is absent from the new run;
- ``new``: the row is in the new run only (reported; it never fails a comparison).

**Two rules.** On one device kind (the same GPU model, or the same CPU model, instruction set and thread
count) with the same torch and numpy, the suite gives identical numbers for a seed: a row is judged **cell by
cell**, and one cell beyond the tolerance (by default 0, any difference) makes its row ``changed``.

Across device kinds or versions, float sums are reordered, and at small budgets and strong imbalance one
cell can sit on a knife edge (a few minority test images flip, and its G-mean moves by 0.1 while the row's
other cells agree to 0.005). There a row is judged **by its mean**: with ``d_i = new_i - old_i`` over its
``n`` matched cells (a cell whose value is NaN on both sides is left out), mean ``d`` and standard deviation
``s`` (``ddof = 1``), the row is ``changed`` when

    |mean d| > tolerance   and   |mean d| > t(0.975, n - 1) * s / sqrt(n)

that is, when its mean moved by more than the tolerance *and* a two-sided paired t-test at the 5 % level says
the move is not explained by the spread of its cells (``spread`` is the right-hand side; ``s = 0`` with a
mean beyond the tolerance is a change). A row of one cell (a smoke run: one seed, one pair) has no spread,
and the rule is that cell's own difference against the tolerance, as on one device kind. A value that is NaN
on one side only (a metric that became undefined) makes its row ``changed`` under either rule. The t-test,
not Wilcoxon's, decides, because the question is whether the *mean* moved beyond the tolerance: Wilcoxon's
test (shown beside it) answers whether the differences lean to one side, which a harmless systematic
shift of 0.001 already does.

**Unstable cells.** Under the row rule, a cell whose own difference exceeds the tolerance while its row is
not ``changed`` is named *unstable* (``Comparison.unstable``): reported, never failing. Cells beyond the
tolerance in a ``changed`` row (and every such cell under the cell rule) are listed as *moved*. What the
row rule cannot see: a real change confined to a few cells of a row (one pair of three, say) looks like
knife-edge cells; it shows in the unstable list, which is where to look after a change across device kinds.

The paired Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, two-sided) is reported when at least
``stats.MIN_PAIRS`` differences are non-zero, the same rule as the reports' statistics; with fewer, no p-value
can fall below 0.05.

**Tolerance.** ``0`` on one device kind with the same torch and numpy (numbers must be identical);
``DEFAULT_TOLERANCE`` across device kinds or versions, said in one line. A ``tolerance`` given explicitly is
used either way; the rule (cell or row) follows the device kinds and versions only.

**Time** is compared per row as the ratio of the matched cells' summed fit seconds (new / old). Machines
differ, so time never fails a comparison unless ``time_tolerance`` is given: then a row slower than
``1 + time_tolerance`` times the reference is ``slower`` and fails.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from bench.errors import BenchError

from .aggregate import confidence_interval
from .cells import as_cells, leaves, numbers, read
from .stats import MIN_PAIRS

FORMAT = "capsan-bench-reference/1"
# Two points of a metric: about one flipped prediction on the small test sets of smoke presets (the smoke
# preset's digits 3 vs 5 task tests on 55 images per class: one flipped minority image moves its recall by
# 0.018 and its G-mean by about 0.01), so another CPU's reordered sums pass and a real change does not.
DEFAULT_TOLERANCE = 0.02
DEFAULT_METRICS = ("g_mean", "balanced_accuracy", "f_measure", "roc_auc")
ALIASES = {"acsa": "balanced_accuracy", "gm": "g_mean", "f1": "f_measure", "auc": "roc_auc"}
# The versions whose change reorders float arithmetic (with the device kind): exact numbers need them equal.
ARITHMETIC_PACKAGES = ("torch", "numpy")
MACHINE_KEYS = {"threads", "seconds", "fit_seconds"}  # the machine's figures, never compared as metrics
ROW_KEYS = ["method", "dataset", "protocol", "test", "ratio"]
VERDICTS = ("same", "within", "changed", "missing", "new")
FAILING = ("changed", "missing")


@dataclass(frozen=True)
class Side:
    """One side of a comparison: its done cells and where they ran."""

    cells: dict  # key -> {"task": {...}, "metrics": {dotted name: number}, "fit_seconds": float | None}
    device_kinds: tuple = ()
    versions: dict = field(default_factory=dict)  # package -> version, or a sorted list when cells differ
    source: str = ""

    def to_json(self) -> str:
        document = {"format": FORMAT, "device_kinds": list(self.device_kinds), "versions": self.versions,
                    "cells": dict(sorted(self.cells.items()))}
        return json.dumps(document, indent=1, sort_keys=True, allow_nan=True) + "\n"


def load_side(path) -> Side:
    """A results folder (read only) or a reference file written by :func:`save_reference`."""
    path = Path(path)
    if path.is_file():
        return _read_reference(path)
    if not path.exists():
        raise BenchError(f"{path} does not exist; give a results folder (bench run --results) or a reference "
                         "file (bench compare --results DIR --save FILE)")
    return side_of_cells(read([path]), str(path))


def save_reference(side: Side, path) -> Path:
    path = Path(path)
    if not side.cells:
        raise BenchError(f"{side.source} has no done cell to save; run the benchmark first (bench run)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(side.to_json())
    return path


def side_of_cells(cells, source: str = "") -> Side:
    """The done cells of a store (``cells.Cells``, or a frame of ``Store.cells()``)."""
    cells = as_cells(cells)
    frame = cells.done
    metrics = numbers(cells, MACHINE_KEYS)
    found, kinds, versions = {}, set(), {}
    for index, row in frame.iterrows():
        found[row["key"]] = {
            "task": {"method": row["method"], "dataset": row["dataset"], "protocol": row["protocol"],
                     "test": row["test"], "pair": row["pair"], "ratio": float(row["ratio"]), "seed": int(row["seed"])},
            "metrics": metrics[index],
            "fit_seconds": (row["budget"] or {}).get("fit_seconds"),
            "params": dict(leaves(row["params"] if isinstance(row["params"], dict) else {})),
        }
        kinds.add(str(row["device"]))
        for package, value in (row["versions"] or {}).items():
            versions.setdefault(package, set()).add(str(value))
    flat = {p: sorted(v)[0] if len(v) == 1 else sorted(v) for p, v in sorted(versions.items())}
    return Side(found, tuple(sorted(kinds)), flat, source)


def _read_reference(path: Path) -> Side:
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BenchError(f"{path} is not a readable reference file ({type(exc).__name__}); write one with "
                         "bench compare --results DIR --save FILE") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT or not isinstance(document.get("cells"), dict):
        raise BenchError(f"{path} is not a {FORMAT} file; write one with bench compare --results DIR --save FILE")
    return Side(document["cells"], tuple(document.get("device_kinds", ())), document.get("versions", {}), str(path))


# --------------------------------------------------------------------------- the comparison


@dataclass
class Comparison:
    rows: pd.DataFrame  # one per (row keys, metric): n, old, new, diff, max_abs_diff, spread, p_value, verdict
    time: pd.DataFrame  # one per row keys: old_s, new_s, time_ratio (new / old), verdict (slower or -)
    matched: int
    only_old: list  # (key, task label) of reference cells missing from the new run
    only_new: list
    moved: list  # (key, cell label, metric, old, new) of every matched value beyond the tolerance whose row
    #              changed (every one under the cell rule), largest first
    rekeyed: list  # (cell label, parameter changes, metric changes): a missing cell whose task is here under a new key
    tolerance: float
    setting: str  # one line: exact on one device kind, or the tolerance, the rule and why
    by_row: bool = False  # the row rule (across device kinds or versions) rather than cell by cell
    unstable: list = field(default_factory=list)  # like moved: cells beyond the tolerance in a row not changed

    @property
    def counts(self) -> dict:
        counts = dict.fromkeys(VERDICTS, 0)
        counts.update(self.rows["verdict"].value_counts().to_dict() if len(self.rows) else {})
        counts["slower"] = int((self.time["verdict"] == "slower").sum()) if len(self.time) else 0
        return counts

    @property
    def failed(self) -> bool:
        counts = self.counts
        return bool(counts["changed"] or counts["missing"] or counts["slower"])


def compare(old: Side, new: Side, metrics=DEFAULT_METRICS, tolerance: float | None = None,
            time_tolerance: float | None = None) -> Comparison:
    """``new`` against the reference ``old`` (see the module docstring for the rules)."""
    metrics = check_metrics(metrics, old, new)
    if tolerance is not None and not (tolerance >= 0 and math.isfinite(tolerance)):
        raise BenchError(f"--tolerance must be a number >= 0; got {tolerance}")
    if time_tolerance is not None and not (time_tolerance >= 0 and math.isfinite(time_tolerance)):
        raise BenchError(f"--time-tolerance must be a number >= 0 (0.5: fail when 1.5 times slower); got {time_tolerance}")
    setting, default, by_row = _setting(old, new)
    tolerance = default if tolerance is None else float(tolerance)
    if tolerance != default:
        setting += f"; --tolerance {tolerance:g} given"
    matched = sorted(old.cells.keys() & new.cells.keys())
    only_old = sorted(old.cells.keys() - new.cells.keys())
    only_new = sorted(new.cells.keys() - old.cells.keys())
    rows, time, moved, unstable = [], [], [], []
    for row, keys in _rows(old, new).items():
        olds = [k for k in keys if k in old.cells]
        pairs = [k for k in olds if k in new.cells]
        lost = len(olds) - len(pairs)
        for metric in metrics:
            judged, shifted = _metric_row(old, new, keys, pairs, lost, metric, tolerance, by_row)
            rows.append({**dict(zip(ROW_KEYS, row, strict=True)), "metric": metric, **judged})
            (moved if shifted else unstable).extend(_moved_cells(old, new, pairs, metric, tolerance))
        time.append({**dict(zip(ROW_KEYS, row, strict=True)), **_time_row(old, new, pairs, time_tolerance)})
    label = lambda side, k: _label(side.cells[k]["task"])  # noqa: E731
    largest_first = lambda m: -abs(m[4] - m[3]) if math.isfinite(m[4] - m[3]) else -math.inf  # noqa: E731
    return Comparison(pd.DataFrame(rows, columns=ROW_KEYS + ["metric", "n", "old", "new", "diff", "max_abs_diff",
                                                             "spread", "p_value", "verdict"]),
                      pd.DataFrame(time, columns=ROW_KEYS + ["old_s", "new_s", "time_ratio", "verdict"]),
                      len(matched), [(k, label(old, k)) for k in only_old], [(k, label(new, k)) for k in only_new],
                      sorted(moved, key=largest_first), _rekeyed(old, new, only_old, only_new, metrics), tolerance,
                      setting, by_row, sorted(unstable, key=largest_first))


def check_metrics(metrics, old: Side, new: Side) -> list[str]:
    """Metric names (aliases resolved; ``all``: every metric of the reference) that some cell has."""
    names = [ALIASES.get(m, m) for m in ([metrics] if isinstance(metrics, str) else list(metrics))]
    known = sorted({n for side in (old, new) for cell in side.cells.values() for n in cell["metrics"]})
    if names == ["all"]:
        return sorted({n for cell in old.cells.values() for n in cell["metrics"]}) or known
    unknown = [m for m in names if m not in known]
    if not names or unknown:
        plain = [n for n in known if "." not in n]
        raise BenchError(f"unknown metric(s) {', '.join(unknown) or '(none given)'}; these cells have "
                         f"{', '.join(plain)} (or a dotted name like per_class_recall.1, or all)")
    return list(dict.fromkeys(names))


def _setting(old: Side, new: Side) -> tuple[str, float, bool]:
    """The one line saying how numbers are compared, the default tolerance it implies, and whether rows are
    judged by their mean (across device kinds or versions) rather than cell by cell."""
    versions = {p: (old.versions.get(p), new.versions.get(p)) for p in ARITHMETIC_PACKAGES}
    moved = [f"{p} {a} -> {b}" for p, (a, b) in versions.items() if a != b]
    if set(old.device_kinds) != set(new.device_kinds):
        why = (f"device kinds differ (reference: {', '.join(old.device_kinds) or 'none'}; "
               f"this run: {', '.join(new.device_kinds) or 'none'})")
    elif moved:
        why = f"versions differ ({'; '.join(moved)})"
    else:
        kinds = ", ".join(old.device_kinds) or "no cells"
        return f"one device kind ({kinds}), the same torch and numpy: numbers must be identical", 0.0, False
    return (f"{why}: numbers compared within {DEFAULT_TOLERANCE:g}, row by row: a row is changed when its mean "
            "difference exceeds the tolerance and the spread of its cells (paired t, 95 %); a cell beyond the "
            "tolerance in a row that is not changed is unstable (named, never failing)"), DEFAULT_TOLERANCE, True


def _rows(old: Side, new: Side) -> dict:
    """Row keys -> the cell keys of either side in that row, in a stable order."""
    rows = {}
    for side in (old, new):
        for key, cell in side.cells.items():
            task = cell["task"]
            row = tuple(task[k] for k in ROW_KEYS)
            rows.setdefault(row, set()).add(key)
    order = sorted(rows, key=lambda r: (str(r[1]), str(r[2]), str(r[3]), -float(r[4]), str(r[0])))
    return {row: sorted(rows[row]) for row in order}


def _metric_row(old: Side, new: Side, keys, pairs, lost: int, metric: str, tolerance: float,
                by_row: bool) -> tuple[dict, bool]:
    """One row x metric, and whether its matched cells moved beyond the tolerance by the rule in force (what
    decides whether its cells beyond the tolerance are moved or unstable, even in a ``missing`` row)."""
    if not any(k in old.cells for k in keys):
        values = [new.cells[k]["metrics"].get(metric, math.nan) for k in keys]
        return {"n": 0, "old": math.nan, "new": _mean(values), "diff": math.nan, "max_abs_diff": math.nan,
                "spread": math.nan, "p_value": math.nan, "verdict": "new"}, False
    a = [old.cells[k]["metrics"].get(metric) for k in pairs]
    b = [new.cells[k]["metrics"].get(metric) for k in pairs]
    absent = sum(x is not None and y is None for x, y in zip(a, b, strict=True))
    kept = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    a, b = np.array([x for x, _ in kept], dtype=float), np.array([y for _, y in kept], dtype=float)
    both_nan = np.isnan(a) & np.isnan(b)
    identical = bool(np.all((a == b) | both_nan))
    diffs = np.where(both_nan, 0.0, b - a)
    largest = float(np.max(np.abs(diffs))) if diffs.size else math.nan  # NaN on one side only stays NaN
    spread = _spread(diffs[~both_nan])
    if identical:
        shifted = False
    elif not np.all(np.isfinite(diffs)):
        shifted = True  # a value NaN on one side only: the metric became (un)defined
    elif by_row:
        mean = abs(float(np.mean(diffs[~both_nan])))
        shifted = mean > tolerance and not (mean <= spread)  # a NaN spread (one cell): the tolerance alone
    else:
        shifted = largest > tolerance
    if lost or absent:
        verdict = "missing"
    else:
        verdict = "same" if identical else "changed" if shifted else "within"
    return {"n": len(kept), "old": _mean(a), "new": _mean(b), "diff": _mean(b) - _mean(a),
            "max_abs_diff": largest, "spread": spread, "p_value": _wilcoxon(diffs), "verdict": verdict}, shifted


def _spread(diffs: np.ndarray) -> float:
    """The 95 % half-width of the mean of paired differences, t(0.975, n - 1) * s / sqrt(n); NaN below two."""
    if diffs.size < 2 or not np.all(np.isfinite(diffs)):
        return math.nan
    low, high = confidence_interval(diffs)
    return (high - low) / 2


def _rekeyed(old: Side, new: Side, only_old, only_new, metrics) -> list:
    """Missing reference cells whose task (method, data, pair, ratio, seed) this run has under another key:
    what made the key change (the stored parameters that differ) and what that did to the metrics. Matching
    stays by key (they remain ``missing``); this only says why."""
    by_task = {}
    for key in only_new:
        by_task.setdefault(json.dumps(new.cells[key]["task"], sort_keys=True), []).append(key)
    found = []
    for key in only_old:
        twins = by_task.get(json.dumps(old.cells[key]["task"], sort_keys=True), [])
        if len(twins) != 1:
            continue
        a, b = old.cells[key], new.cells[twins[0]]
        pa, pb = a.get("params", {}), b.get("params", {})
        params = [f"{name} {pa.get(name, '(none)')} -> {pb.get(name, '(none)')}"
                  for name in sorted(pa.keys() | pb.keys()) if pa.get(name) != pb.get(name)]
        changes = [(m, a["metrics"].get(m), b["metrics"].get(m)) for m in metrics
                   if a["metrics"].get(m) is not None and b["metrics"].get(m) is not None]
        found.append((_label(a["task"]), params or ["the key's other parts (version, epochs or options)"], changes))
    return found


def _moved_cells(old: Side, new: Side, pairs, metric: str, tolerance: float) -> list:
    """The matched cells whose value of ``metric`` moved beyond ``tolerance`` (NaN on one side only counts)."""
    found = []
    for key in pairs:
        a, b = old.cells[key]["metrics"].get(metric), new.cells[key]["metrics"].get(metric)
        if a is None or b is None or (math.isnan(a) and math.isnan(b)):
            continue
        if math.isnan(a) or math.isnan(b) or abs(b - a) > tolerance:
            found.append((key, _label(new.cells[key]["task"]), metric, a, b))
    return found


def _wilcoxon(diffs: np.ndarray) -> float:
    finite = diffs[np.isfinite(diffs)]
    if np.count_nonzero(finite) < MIN_PAIRS:
        return math.nan
    return float(sps.wilcoxon(finite, zero_method="wilcox").pvalue)


def _time_row(old: Side, new: Side, pairs, time_tolerance: float | None) -> dict:
    seconds = [(old.cells[k].get("fit_seconds"), new.cells[k].get("fit_seconds")) for k in pairs]
    seconds = [(a, b) for a, b in seconds if isinstance(a, int | float) and isinstance(b, int | float)]
    if not seconds:
        return {"old_s": math.nan, "new_s": math.nan, "time_ratio": math.nan, "verdict": "-"}
    old_s, new_s = sum(a for a, _ in seconds), sum(b for _, b in seconds)
    ratio = new_s / old_s if old_s > 0 else math.nan
    slower = time_tolerance is not None and math.isfinite(ratio) and ratio > 1.0 + time_tolerance
    return {"old_s": old_s, "new_s": new_s, "time_ratio": ratio, "verdict": "slower" if slower else "-"}


def _mean(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(np.mean(values)) if values.size else math.nan


def _label(task: dict) -> str:
    pair = "" if task["pair"] == "-" else f" {task['pair']}"
    return f"{task['method']} {task['dataset']}/{task['protocol']}{pair} ratio {task['ratio']:g} seed {task['seed']}"
