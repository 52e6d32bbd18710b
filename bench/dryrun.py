"""``bench run --dry-run`` (benchopt's ``--collect``): which cells are done, failed or pending, and how long
the pending ones should take, without running them or writing the store.

The estimate per (method, dataset), in order of trust:
1. ``store``: the median duration of the done cells with the same method label, dataset, epochs, precision
   and compile mode that ran on the same kind of device (cpu or cuda);
2. ``calibrated``: the group's first pending cell, fitted for 1 and then 3 epochs on at most
   ``CALIBRATION_IMAGES`` training images of its task on this run's device; the difference is the cost of
   an epoch, the rest a fixed cost. Every pending cell of the group then gets the fixed cost plus the
   per-image epoch cost x its own task's training-set size N x its epochs (every method's budget is
   epochs x ceil(N / batch) steps; N shrinks with the imbalance ratio, so a 0.5 task costs about 1.5x a
   0.01 one);
3. unknown, when the calibration itself fails (a method refusing a tiny task): the row says why.
Wall time divides the cell time by the number of workers, which assumes the workers do not slow each
other (true across GPUs and CPU cores, optimistic when several share one GPU).
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.datasets.base import ImageSet
from bench.grid import Cell
from bench.store import STORE_NAME, Store

CALIBRATION_IMAGES = 512
_WARM: list = []  # non-empty once this process has run one (untimed) warm-up fit


def stored_attempts(results_dir) -> pd.DataFrame:
    """Every attempt in the store (read only), or an empty frame when there is no store yet."""
    if not (Path(results_dir) / STORE_NAME).exists():
        return pd.DataFrame(columns=["key", "status", "method", "dataset", "epochs", "duration_s"])
    with Store(results_dir, create=False) as store:
        return store.attempts()


def cell_status(cells: list[Cell], attempts: pd.DataFrame) -> dict[str, str]:
    """key -> "done", "failed" (attempted, never done) or "pending" (never attempted)."""
    done = set(attempts.loc[attempts["status"] == "done", "key"])
    failed = set(attempts["key"]) - done
    return {c.key: "done" if c.key in done else "failed" if c.key in failed else "pending" for c in cells}


def speed_settings(options) -> tuple:
    """What in a cell's options changes its speed but not its task: ``runner.fit_settings``, hashable."""
    from bench.runner import fit_settings

    return tuple(sorted(fit_settings(options).items()))


def stored_durations(attempts: pd.DataFrame, device_type: str) -> dict[tuple, float]:
    """(method label, dataset, epochs, speed settings) -> median seconds of its done cells that ran on this
    kind of device (a store of GPU cells says nothing of a CPU run, and the other way round)."""
    done = attempts[attempts["status"] == "done"]
    if "device" in done:
        done = done[done["device"].astype(str).str.startswith(device_type)]
    done = done.assign(speed=[speed_settings(o) for o in done.get("options", pd.Series([None] * len(done)))])
    groups = done.groupby(["method", "dataset", "epochs", "speed"])["duration_s"]
    return {key: float(group.median()) for key, group in groups}


def _shrink(images: ImageSet, n: int, seed: int) -> ImageSet:
    """At most ``n`` images, every class kept in proportion (at least one image each)."""
    if len(images) <= n:
        return images
    rng = np.random.default_rng(seed)
    keep = []
    for c in range(images.n_classes):
        index = np.flatnonzero(images.labels == c)
        if len(index):
            take = max(1, round(n * len(index) / len(images)))
            keep.append(rng.choice(index, min(take, len(index)), replace=False))
    keep = np.sort(np.concatenate(keep))
    return ImageSet(images.images[keep], images.labels[keep], images.class_names)


def _task(cell: Cell, train: ImageSet, test: ImageSet):
    from bench.datasets.imbalance import make_imbalanced

    return make_imbalanced(train, test, cell.protocol, pair=cell.pair, ratio=cell.ratio, seed=cell.seed,
                           dataset=cell.dataset, test_distribution=cell.options.get("test", "balanced"))


def calibration(cell: Cell, train: ImageSet, test: ImageSet, device) -> tuple[float, float, str]:
    """(fixed seconds, seconds per training image per epoch, how they were found) for ``cell``'s method on
    ``device``; NaNs and the reason when the calibration fails.

    The cell's method is fitted (and predicts) twice on a small version of its task, for 1 and 3 epochs: half
    the difference is the cost of an epoch of ``CALIBRATION_IMAGES`` images, the rest a fixed cost (models,
    prediction, compilation under --compile)."""
    try:
        task = _task(cell, train, test)
        small = _shrink(task.train, CALIBRATION_IMAGES, cell.seed)
        if not _WARM:  # the process's first fit pays torch's one-off start-up: keep it out of the timing
            _timed_fit(cell, small, task.test, device, 1)
            _WARM.append(True)
        one, three = (_timed_fit(cell, small, task.test, device, epochs) for epochs in (1, 3))
    except Exception as exc:  # noqa: BLE001 (a refusal here is only a missing estimate)
        reason = f"calibration failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return math.nan, math.nan, reason
    per_epoch = max((three - one) / 2, 0.0)
    fixed = max(one - per_epoch, 0.0)
    return fixed, per_epoch / len(small), (f"calibrated: {fixed:.1f} s + {per_epoch:.2f} s/epoch on "
                                           f"{len(small)} images, scaled to each task's size and epochs")


def calibrate(cell: Cell, train: ImageSet, test: ImageSet, device) -> tuple[float, str]:
    """Seconds the full ``cell`` should take (``calibration`` scaled to its task's N images and its epochs);
    NaN and the reason when the calibration fails."""
    fixed, per_image, reason = calibration(cell, train, test, device)
    if math.isnan(fixed):
        return math.nan, reason
    return fixed + per_image * len(_task(cell, train, test).train) * cell.epochs, reason


def _timed_fit(cell: Cell, train: ImageSet, test: ImageSet, device, epochs: int) -> float:
    from bench.methods import FitContext, get_method
    from bench.runner import fit_settings, seed_everything

    seed_everything(cell.seed, device)
    method = get_method(cell.method)(**cell.overrides)
    with tempfile.TemporaryDirectory() as folder:
        ctx = FitContext(device=device, seed=cell.seed, epochs=epochs, artifact_dir=Path(folder),
                         **fit_settings(cell.options))
        clock = time.perf_counter()
        method.fit(train, ctx)
        method.predict_proba(test.images[:CALIBRATION_IMAGES])
        return time.perf_counter() - clock


def dry_run(cells: list[Cell], results_dir, load, device, workers: int = 1) -> tuple[pd.DataFrame, str]:
    """The per-(method, dataset) table and a summary line; ``load(cell) -> (train, test)`` reads the data
    (only for the groups that need a calibration)."""
    from bench.runner import describe_device

    attempts = stored_attempts(results_dir)
    status = cell_status(cells, attempts)
    stored = stored_durations(attempts, device.type)
    rows = []
    sizes: dict[tuple, int] = {}  # training-set size per task (it does not depend on the seed)

    def size(cell: Cell) -> int:
        task = (cell.dataset, cell.protocol, cell.pair, cell.ratio, cell.options.get("test"),
                cell.options.get("image_size"), cell.options.get("celeba_attr"))
        if task not in sizes:
            sizes[task] = len(_task(cell, *load(cell)).train)
        return sizes[task]

    groups: dict[tuple, list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.variant or cell.method, cell.dataset), []).append(cell)
    for (label, dataset), members in groups.items():
        counts = {s: sum(status[c.key] == s for c in members) for s in ("done", "failed", "pending")}
        todo = [c for c in members if status[c.key] != "done"]
        known = stored.get((label, dataset, members[0].epochs, speed_settings(members[0].options)))
        if known is not None:
            seconds, source = known, "store (median of done cells)"
            to_run = seconds * len(todo)
        elif todo:
            probe = todo[0]
            fixed, per_image, source = calibration(probe, *load(probe), device)
            each = [fixed + per_image * size(c) * c.epochs for c in todo] if not math.isnan(fixed) else [math.nan]
            seconds, to_run = float(np.mean(each)), float(np.sum(each)) if not math.isnan(fixed) else math.nan
        else:
            seconds, to_run, source = math.nan, 0.0, "-"
        rows.append({"method": label, "dataset": dataset, "cells": len(members), **counts,
                     "s_per_cell": seconds, "estimate": source, "to_run_s": to_run})
    table = pd.DataFrame(rows)
    to_run = int(table["failed"].sum() + table["pending"].sum()) if len(table) else 0
    total = float(table["to_run_s"].sum(min_count=1)) if len(table) else 0.0
    unknown = int(table.loc[table["s_per_cell"].isna() & (table["failed"] + table["pending"] > 0), "cells"].count())
    line = (f"{len(cells)} cells: {int(table['done'].sum()) if len(table) else 0} done, "
            f"{int(table['failed'].sum()) if len(table) else 0} failed, "
            f"{int(table['pending'].sum()) if len(table) else 0} pending; {to_run} to run, "
            f"about {_duration(total)} of cell time, {_duration(total / max(1, workers))} wall with {workers} "
            f"worker{'s' if workers > 1 else ''} on {describe_device(device)}")
    if unknown:
        line += f" ({unknown} method/dataset group(s) without an estimate: see the table)"
    return table, line


def _duration(seconds: float) -> str:
    if seconds is None or math.isnan(seconds):
        return "an unknown time"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
