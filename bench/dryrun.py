"""``bench run --dry-run`` (benchopt's ``--collect``): which cells are done, failed or pending, and how long
the pending ones should take, without running them and without writing anything anywhere (no store, no
results folder, no dataset cache: the data is read under ``datasets.cache.read_only``; nothing is downloaded).

The estimate per (method, dataset), in order of trust:
1. ``store``: the median duration of the done cells with the same method label, dataset, epochs, precision
   and compile mode that ran on the same kind of device (cpu or cuda);
2. ``calibrated``: the method is fitted for 1, 2 and 3 epochs on at most ``CALIBRATION_IMAGES`` training
   images of one pending cell's task on this run's device. The 1-to-3 difference over 2 is the cost of an
   epoch, the rest a fixed cost; the two one-epoch steps (1 to 2, 2 to 3) give the spread, which the table
   and the summary line show as a range (a busy machine shows a wide one). One calibration serves every
   group of the same method label, image shape and speed settings (MNIST and Fashion-MNIST share one).
   Every pending cell then gets the fixed cost plus the per-image epoch cost x its own task's training-set
   size N x its epochs (every method's budget is epochs x ceil(N / batch) steps; N shrinks with the
   imbalance ratio, so a 0.5 task costs about 1.5x a 0.01 one), plus the prediction's cost per test image
   (timed on ``CALIBRATION_IMAGES`` test images) x its task's test-set size. The prediction was once part of
   the fixed cost, timed on 256 test images where a cell predicts up to 10,000: CapsAN's capsule classifier
   spends 20 to 40 s on MNIST's test split, and validate-table1's estimate fell short 2.5x (9.2 min
   against 23) and validate-gamo's CapsAN cells 1.6x;
3. unknown, when the calibration itself fails (a method refusing a tiny task, data not found): the row
   says why.
A progress bar per calibration says which method is being timed. Wall time divides the cell time by the
number of workers, which assumes the workers do not slow each other (true across GPUs and CPU cores,
optimistic when several share one GPU).
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.datasets.base import ImageSet
from bench.grid import Cell
from bench.store import STORE_NAME, Store

CALIBRATION_IMAGES = 256
CALIBRATION_EPOCHS = (1, 2, 3)
# Fewest images a class keeps in the calibration sample: SMOTE and ADASYN need k + 1 = 6 of a class, and the
# gamo protocol's rarest class (40 of 9,000) would otherwise keep 1 (its calibration failed: "no estimate").
MIN_PER_CLASS = 8
_WARM: list = []  # non-empty once this process has run one (untimed) warm-up fit


@dataclass(frozen=True)
class Speed:
    """A method's measured speed on one device: a fixed cost and a cost per training image per epoch, with
    the range the calibration's epochs gave (``low`` to ``high``); NaNs and the reason when unknown."""

    fixed: float
    per_image: float
    low: float
    high: float
    reason: str
    per_test_image: float = 0.0  # prediction, seconds per test image

    def seconds(self, n_images: int, epochs: int, which: str = "per_image", n_test: int = 0) -> float:
        return self.fixed + getattr(self, which) * n_images * epochs + self.per_test_image * n_test

    @classmethod
    def unknown(cls, reason: str) -> Speed:
        return cls(math.nan, math.nan, math.nan, math.nan, reason)


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
    """What in a cell's options changes its speed but not its task: ``cell.fit_settings``, hashable."""
    from bench.cell import fit_settings

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
    """About ``n`` images, every class kept in proportion, at least ``MIN_PER_CLASS`` of each (or all it has)."""
    if len(images) <= n:
        return images
    rng = np.random.default_rng(seed)
    keep = []
    for c in range(images.n_classes):
        index = np.flatnonzero(images.labels == c)
        if len(index):
            take = max(MIN_PER_CLASS, round(n * len(index) / len(images)))
            keep.append(rng.choice(index, min(take, len(index)), replace=False))
    keep = np.sort(np.concatenate(keep))
    return ImageSet(images.images[keep], images.labels[keep], images.class_names)


def _task(cell: Cell, train: ImageSet, test: ImageSet):
    from bench.datasets.imbalance import make_imbalanced

    return make_imbalanced(train, test, cell.protocol, pair=cell.pair, ratio=cell.ratio, seed=cell.seed,
                           dataset=cell.dataset, test_distribution=cell.options.get("test", "balanced"))


def calibration(cell: Cell, train: ImageSet, test: ImageSet, device) -> Speed:
    """The ``Speed`` of ``cell``'s method on ``device``, or an unknown one with the reason it failed.

    The method is fitted (and predicts) on a small version of the cell's task for 1, 2 and 3 epochs: half
    the 1-to-3 difference is the cost of an epoch of ``CALIBRATION_IMAGES`` images, the rest a fixed cost
    (models, compilation under --compile); the 1-to-2 and 2-to-3 differences bound it. The prediction of
    ``CALIBRATION_IMAGES`` test images is timed apart (the median of the three fits): a cell's prediction
    scales with its test set, not its training set."""
    try:
        task = _task(cell, train, test)
        small = _shrink(task.train, CALIBRATION_IMAGES, cell.seed)
        if not _WARM:  # the process's first fit pays torch's one-off start-up: keep it out of the timing
            _timed_fit(cell, small, task.test, device, 1)
            _WARM.append(True)
        timed = [_timed_fit(cell, small, task.test, device, epochs) for epochs in CALIBRATION_EPOCHS]
    except Exception as exc:  # noqa: BLE001 (a refusal here is only a missing estimate)
        return Speed.unknown(f"calibration failed: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}")
    (one, two, three), predict = (fit for fit, _ in timed), float(np.median([p for _, p in timed]))
    per_epoch = max((three - one) / 2, 0.0)
    steps = sorted(max(step, 0.0) for step in (two - one, three - two))
    fixed = max(one - per_epoch, 0.0)
    n = len(small)
    n_test = min(len(task.test), CALIBRATION_IMAGES)
    return Speed(fixed, per_epoch / n, steps[0] / n, steps[1] / n,
                 f"calibrated: {fixed:.1f} s + {per_epoch:.2f} s/epoch ({steps[0]:.2f} to {steps[1]:.2f}) on {n} "
                 f"images + {predict * 1000 / max(n_test, 1):.2f} s per 1,000 test images, scaled to each task's "
                 "sizes and epochs", predict / max(n_test, 1))


def calibrate(cell: Cell, train: ImageSet, test: ImageSet, device) -> tuple[float, str]:
    """Seconds the full ``cell`` should take (``calibration`` scaled to its task's N training images, its epochs
    and its test images); NaN and the reason when the calibration fails."""
    speed = calibration(cell, train, test, device)
    if math.isnan(speed.fixed):
        return math.nan, speed.reason
    task = _task(cell, train, test)
    return speed.seconds(len(task.train), cell.epochs, n_test=len(task.test)), speed.reason


def _timed_fit(cell: Cell, train: ImageSet, test: ImageSet, device, epochs: int) -> tuple[float, float]:
    """Seconds to fit ``cell``'s method on ``train`` for ``epochs``, and seconds to predict ``CALIBRATION_IMAGES``
    images of ``test``."""
    from bench.cell import fit_settings, seed_everything
    from bench.methods import FitContext, get_method

    seed_everything(cell.seed, device)
    method = get_method(cell.method)(**cell.overrides)
    with tempfile.TemporaryDirectory() as folder:
        ctx = FitContext(device=device, seed=cell.seed, epochs=epochs, artifact_dir=Path(folder),
                         **fit_settings(cell.options))
        clock = time.perf_counter()
        method.fit(train, ctx)
        fitted = time.perf_counter()
        method.predict_proba(test.images[:CALIBRATION_IMAGES])
        return fitted - clock, time.perf_counter() - fitted


def dry_run(cells: list[Cell], results_dir, load, device, workers: int = 1,
            progress: bool = False) -> tuple[pd.DataFrame, str]:
    """The per-(method, dataset) table and a summary line; ``load(cell) -> (train, test)`` reads the data
    (only for the groups that need a calibration), under ``read_only``: nothing is written anywhere.
    ``progress``: a bar per calibration on stderr."""
    from bench.datasets.cache import read_only

    with read_only():
        return _dry_run(cells, results_dir, load, device, workers, progress)


def _dry_run(cells, results_dir, load, device, workers, progress):
    from tqdm import tqdm

    from bench.cell import describe_device

    attempts = stored_attempts(results_dir)
    status = cell_status(cells, attempts)
    stored = stored_durations(attempts, device.type)
    rows = []
    sizes: dict[tuple, tuple[int, int]] = {}  # training- and test-set sizes per task (not the seed's)
    speeds: dict[tuple, Speed] = {}  # one calibration per method label, parameters, image shape and settings

    def size(cell: Cell) -> tuple[int, int]:
        task = (cell.dataset, cell.protocol, cell.pair, cell.ratio, json.dumps(cell.options, sort_keys=True,
                                                                              default=str))
        if task not in sizes:
            made = _task(cell, *load(cell))
            sizes[task] = len(made.train), len(made.test)
        return sizes[task]

    groups: dict[tuple, list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.variant or cell.method, cell.dataset), []).append(cell)
    known_for = {g: stored.get((*g, members[0].epochs, speed_settings(members[0].options)))
                 for g, members in groups.items()}
    to_calibrate = sum(known_for[g] is None and any(status[c.key] != "done" for c in members)
                       for g, members in groups.items())
    bar = tqdm(total=to_calibrate, desc="calibrating", unit="method", file=sys.stderr,
               disable=not progress or not to_calibrate)
    for (label, dataset), members in groups.items():
        counts = {s: sum(status[c.key] == s for c in members) for s in ("done", "failed", "pending")}
        todo = [c for c in members if status[c.key] != "done"]
        known = known_for[(label, dataset)]
        low = high = math.nan
        if known is not None:
            seconds, source = known, "store (median of done cells)"
            to_run = low = high = seconds * len(todo)
        elif todo:
            probe = todo[0]
            bar.set_description(f"calibrating {label} on {dataset}")
            try:
                speed, each_size = _speed(probe, load, device, speeds), [size(c) for c in todo]
            except Exception as exc:  # noqa: BLE001 (data not found, say: only this estimate is missing)
                speed, each_size = Speed.unknown(f"no estimate: {str(exc).splitlines()[0]}"), []
            bar.update(1)
            source = speed.reason
            if math.isnan(speed.fixed):
                seconds = to_run = math.nan
            else:
                work = [(n, c.epochs, t) for (n, t), c in zip(each_size, todo, strict=True)]
                to_run = sum(speed.seconds(n, e, n_test=t) for n, e, t in work)
                low = sum(speed.seconds(n, e, "low", t) for n, e, t in work)
                high = sum(speed.seconds(n, e, "high", t) for n, e, t in work)
                seconds = to_run / len(todo)
        else:
            seconds, to_run, source = math.nan, 0.0, "-"
            low = high = 0.0
        rows.append({"method": label, "dataset": dataset, "cells": len(members), **counts,
                     "s_per_cell": seconds, "estimate": source, "to_run_s": to_run, "low_s": low, "high_s": high})
    bar.close()
    table = pd.DataFrame(rows)
    return table, _summary(table, cells, workers, describe_device(device))


def _speed(cell: Cell, load, device, speeds: dict) -> Speed:
    """The calibration of ``cell``'s method, measured once per label, parameters, image shape and settings."""
    train, test = load(cell)
    key = (cell.variant or cell.method, json.dumps(cell.overrides, sort_keys=True, default=str),
           tuple(train.image_shape), speed_settings(cell.options))
    if key not in speeds:
        speeds[key] = calibration(cell, train, test, device)
    return speeds[key]


def _summary(table: pd.DataFrame, cells, workers: int, device: str) -> str:
    if not len(table):
        return f"{len(cells)} cells: nothing to run"
    to_run = int(table["failed"].sum() + table["pending"].sum())
    total = float(table["to_run_s"].sum(min_count=1))
    low, high = float(table["low_s"].sum(min_count=1)), float(table["high_s"].sum(min_count=1))
    unknown = int(table.loc[table["s_per_cell"].isna() & (table["failed"] + table["pending"] > 0), "cells"].count())
    spread = (f" ({_duration(low)} to {_duration(high)} from the calibration's spread)"
              if not (math.isnan(low) or math.isnan(high)) and high > low else "")
    line = (f"{len(cells)} cells: {int(table['done'].sum())} done, {int(table['failed'].sum())} failed, "
            f"{int(table['pending'].sum())} pending; {to_run} to run, about {_duration(total)} of cell "
            f"time{spread}, {_duration(total / max(1, workers))} wall with {workers} "
            f"worker{'s' if workers > 1 else ''} on {device}")
    if unknown:
        line += f" ({unknown} method/dataset group(s) without an estimate: see the table)"
    return line


def _duration(seconds: float) -> str:
    if seconds is None or math.isnan(seconds):
        return "an unknown time"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
