"""One cell, start to finish: build its imbalanced task, fit, predict, score, and return the row to store.

``run_cell`` never raises for a failure inside the cell: a method's refusal, a divergence, an exception or
an out-of-memory error become a ``failed`` row with the reason (an out-of-memory fit is retried once at
half the batch size, the same seed). Everything a worker process needs to run a cell lives here (the
device, the seeding, the dataset loader), so the planner (``runner``) and the executors (``executors``)
both import this module and never each other's privates.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import os
import platform
import random
import re
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

# Deterministic cuBLAS needs this before CUDA initialises (same seed, same device, same numbers).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.datasets import load_dataset  # noqa: E402
from bench.datasets.base import LoadOptions  # noqa: E402
from bench.datasets.imbalance import make_imbalanced  # noqa: E402
from bench.errors import BenchError, CellFailure, CellRefused  # noqa: E402
from bench.grid import Cell  # noqa: E402
from bench.groups import members_that_fit, memory_key  # noqa: E402
from bench.methods import FitContext, get_method  # noqa: E402
from bench.methods.base import is_out_of_memory  # noqa: E402
from bench.methods.budget import Ledger  # noqa: E402
from bench.metrics import classification_metrics, roc_points  # noqa: E402
from bench.quality import battle_against_twin, generative_quality  # noqa: E402

_PACKAGES = ("capsan-bench", "torch", "numpy", "scikit-learn", "imbalanced-learn", "pandas")


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` (the GPU when there is one), ``cpu``, ``cuda`` or ``cuda:N``."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise BenchError(f"--device {spec}: no CUDA GPU is available here; use --device cpu or auto")
        index = spec.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise BenchError(f"--device {spec}: this machine has {torch.cuda.device_count()} GPU(s), cuda:0 ... ")
        return torch.device(spec)
    raise BenchError(f"unknown device '{spec}'; valid: auto, cpu, cuda, cuda:N")


def describe_device(device: torch.device) -> str:
    """The stored device string, which is also the device kind ``bench compare`` matches: the GPU model, or
    the CPU model, the instruction set torch dispatches to and the thread count (each can reorder float sums)."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({_cpu_model()}, {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads)"


@functools.cache
def _cpu_model() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what the platform says (x86_64, arm64)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    return " ".join(line.partition(":")[2].split())
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions() -> dict:
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def deterministic_algorithms() -> None:
    """``torch.use_deterministic_algorithms(True, warn_only=True)`` without importing inductor's configuration.

    The public call imports ``torch._inductor.config`` to set the flag compiled code reads: about 1.5 s on a
    CPU machine, once per bench process and worker, for every run, compiled or not. Eager code reads only the
    flag set here; ``Method.compiled`` passes it on to inductor under ``--compile``. Where torch lacks the
    setter, or inductor is already loaded, the public call runs."""
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        setter(True, warn_only=True)


def seed_everything(seed: int, device: torch.device) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    deterministic_algorithms()
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def cell_row(cell: Cell, started: str, device: str, artifacts: str | None) -> dict:
    """What a stored row says of its cell before any result: identity, device, versions."""
    return {
        "key": cell.key, "method": cell.variant or cell.method, "params": cell.params, "dataset": cell.dataset,
        "protocol": cell.protocol, "pair": list(cell.pair) or None, "ratio": cell.ratio, "seed": cell.seed,
        "epochs": cell.epochs, "started_at": started, "device": device, "versions": package_versions(),
        "artifacts": artifacts, "counts": None, "metrics": None, "curves": None, "error": None,
        "options": cell.options or None, "node": socket.gethostname(),  # a cluster executor names its node
    }


@dataclass(frozen=True)
class CellEnv:
    """What every cell of a run (or of one worker) is given besides its data: one object, not four arguments."""

    device: torch.device
    results_dir: Path  # the run's folder: artifacts go under it
    fid_settings: Any = None  # bench.quality.FidSettings when a cell asks for FID
    progress: Callable | None = None  # progress(epoch, total, logs): the sequential path's epochs bar


def _artifacts(cell: Cell) -> Path:
    """The cell's artifacts folder, relative to the results folder (a folder:PATH dataset name holds slashes
    and a colon: one safe folder name instead)."""
    return Path("artifacts") / re.sub(r"[^A-Za-z0-9._-]+", "_", cell.dataset) / cell.method / cell.key


def _task_and_context(cell: Cell, train, test, env: CellEnv, row: dict):
    """Seed, build the cell's imbalanced task (its counts into ``row``) and its fit context."""
    seed_everything(cell.seed, env.device)
    task = make_imbalanced(train, test, cell.protocol, pair=cell.pair, ratio=cell.ratio, seed=cell.seed,
                           dataset=cell.dataset, test_distribution=cell.options.get("test", "balanced"))
    row["counts"] = task.counts
    ctx = FitContext(device=env.device, seed=cell.seed, epochs=cell.epochs,
                     artifact_dir=Path(env.results_dir) / row["artifacts"], **fit_settings(cell.options),
                     **({"progress": env.progress} if env.progress else {}))
    return task, ctx


def _score(row: dict, cell: Cell, task, train, method, proba, budget: dict, env: CellEnv, ctx) -> None:
    """A fitted cell's metrics, ledger, curves and (when asked) generative quality into ``row``: done."""
    row["metrics"] = classification_metrics(task.test.labels, proba, task.positive)
    row["metrics"]["budget"] = budget
    row["metrics"]["threads"] = torch.get_num_threads()  # also in the device string; --threads N repeats it
    row["curves"] = {"roc": roc_points(task.test.labels, proba, task.positive)} if task.positive is not None else {}
    if cell.options.get("quality"):
        row["metrics"].update(_quality(method, task, train, cell, env.fid_settings, ctx))
    row["status"] = "done"


def _record_failure(row: dict, exc: BaseException, device, results_dir: Path) -> None:
    """A failed cell's row (called in the ``except`` block that caught ``exc``: its traceback is kept)."""
    if isinstance(exc, CellFailure):
        row.update(status="failed", error=str(exc))
        row["refused"] = isinstance(exc, CellRefused)  # not store columns (this and disk_full): the run reads them
    elif _is_oom(exc):
        fix = ("a smaller batch_size, fewer --jobs-per-gpu, --fuse with fewer members, or --device cpu"
               if device.type == "cuda" else "a smaller batch_size or fewer --jobs")
        row.update(status="failed", error=f"out of memory on {device}{_memory_figure(device)}: "
                                          f"{_first_line(exc)}; use {fix}")
    else:  # a bug in one method must not stop the grid; the traceback is kept
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}".splitlines()[0])
        row["disk_full"] = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
        artifacts = Path(row["artifacts"])
        if _keep_traceback(results_dir / artifacts):
            row["error"] += f" (traceback in {artifacts / 'error.txt'})"


def run_cell(cell: Cell, train, test, env: CellEnv) -> dict:
    """Run one cell on the dataset's full ``train`` and ``test`` sets in ``env``; return the row to store."""
    started, clock = _now(), time.perf_counter()
    row = cell_row(cell, started, describe_device(env.device), str(_artifacts(cell)))
    try:
        task, ctx = _task_and_context(cell, train, test, env, row)
        method, proba, retry, budget = _fit_predict(cell, task, ctx)
        _score(row, cell, task, train, method, proba, budget, env, ctx)
        if retry:
            row["metrics"]["oom_retry"] = retry
    except Exception as exc:  # noqa: BLE001 (every failure becomes the cell's row)
        _record_failure(row, exc, env.device, Path(env.results_dir))
    row["finished_at"] = _now()
    row["duration_s"] = round(time.perf_counter() - clock, 3)
    return row


# Peak device memory per member, in bytes, of the groups run in this process, by ``groups.memory_key``: what
# bounds the next group of the same kind (``groups.members_that_fit``). Empty on the CPU.
_MEMBER_BYTES: dict[str, float] = {}


def _free_bytes(device) -> float | None:
    if getattr(device, "type", None) != "cuda" or not torch.cuda.is_available():
        return None
    return float(torch.cuda.mem_get_info(device)[0] + torch.cuda.memory_reserved(device)
                 - torch.cuda.memory_allocated(device))  # the free memory plus the cache's idle blocks


def _measure_start(device) -> int | None:
    if getattr(device, "type", None) != "cuda" or not torch.cuda.is_available():
        return None
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device)


def _measure_end(device, before: int | None, key: str, size: int) -> None:
    if before is not None:
        peak = torch.cuda.max_memory_allocated(device) - before
        _MEMBER_BYTES[key] = max(_MEMBER_BYTES.get(key, 0.0), peak / size)


class _GroupOutOfMemory(Exception):
    """A fused group ran out of memory as a whole: split it and run the halves."""


def run_group(cells: list[Cell], train, test, env: CellEnv) -> list[dict]:
    """Run cells that differ only in their seed (``bench.groups``) as one fused group (``Method.fit_group``)
    and return one row per cell, each what ``run_cell`` would store for it (its own key, task, metrics,
    ledger and artifacts), plus the group's size: ``metrics["fused"]`` and ``", fused S"`` on the device
    string, a device kind of its own for ``bench compare`` (a member matches its solo cell to float rounding,
    not in bits). Its time is the group's, shared equally (``duration_s``, the ledger's seconds). A group of
    one is ``run_cell``; on a GPU a group larger than the measured memory of its members allows runs in chunks
    that fit (``groups.members_that_fit``), and a group out of memory is split in halves, each run again."""
    if len(cells) == 1:
        return [run_cell(cells[0], train, test, env)]
    most = members_that_fit(len(cells), _MEMBER_BYTES.get(memory_key(cells[0])), _free_bytes(env.device))
    if most < len(cells):  # the measured memory of a member says the whole group would not fit: chunks that do
        return run_group(cells[:most], train, test, env) + run_group(cells[most:], train, test, env)
    try:
        before = _measure_start(env.device)
        rows = _run_fused(cells, train, test, env)
        _measure_end(env.device, before, memory_key(cells[0]), len(cells))
        return rows
    except _GroupOutOfMemory:
        _free_device_memory(env.device)
        half = len(cells) // 2
        return run_group(cells[:half], train, test, env) + run_group(cells[half:], train, test, env)


def _run_fused(cells: list[Cell], train, test, env: CellEnv) -> list[dict]:
    clock, size, results_dir = time.perf_counter(), len(cells), Path(env.results_dir)
    env = dataclasses.replace(env, progress=None)  # one epochs bar per cell: a group has none
    device = f"{describe_device(env.device)}, fused {size}"
    rows, members = [], []
    for cell in cells:
        row = cell_row(cell, _now(), device, str(_artifacts(cell)))
        rows.append(row)
        try:
            task, ctx = _task_and_context(cell, train, test, env, row)
            method = get_method(cell.method)(**cell.overrides)
            reason = method.skip(task)
            if reason:
                raise CellRefused(f"{cell.method} declines this task: {reason}")
            members.append((row, cell, task, ctx, method))
        except Exception as exc:  # noqa: BLE001
            _record_failure(row, exc, env.device, results_dir)
    outcomes, probas, fit_seconds = _fit_group(members)
    for i, ((row, cell, task, ctx, method), outcome) in enumerate(zip(members, outcomes, strict=True)):
        try:
            if outcome is not None:
                raise outcome
            budget = {"roles": ctx.ledger.record(), "contract": dict(ctx.ledger.contract),
                      "fit_seconds": round(fit_seconds, 3)}
            proba = probas[i] if i in probas else method.predict_proba(task.test.images)
            _score(row, cell, task, train, method, proba, budget, env, ctx)
            row["metrics"]["fused"] = size
        except Exception as exc:  # noqa: BLE001
            _record_failure(row, exc, env.device, results_dir)
    share = round((time.perf_counter() - clock) / size, 3)
    for row in rows:
        row.update(finished_at=_now(), duration_s=share)
    return rows


def _fit_group(members: list) -> tuple[list, dict, float]:
    """Fit the members ``(row, cell, task, ctx, method)`` as one group (``Method.fit_group``) and predict the
    fitted ones in one batched pass (``Method.predict_group``): (each member's outcome, None or its exception;
    {member index: probabilities}; fit seconds per member). Out of memory as a whole: ``_GroupOutOfMemory``."""
    if not members:
        return [], {}, 0.0
    kind, clock = type(members[0][4]), time.perf_counter()
    try:
        outcomes = kind.fit_group([(method, task.train, ctx) for _, _, task, ctx, method in members])
    except Exception as exc:
        if _is_oom(exc):
            raise _GroupOutOfMemory from exc
        outcomes = [exc] * len(members)  # the group failed as a whole: every member says why
    fit_seconds = (time.perf_counter() - clock) / len(members)
    fitted = [i for i, outcome in enumerate(outcomes) if outcome is None]
    if not fitted:
        return outcomes, {}, fit_seconds
    try:
        probas = dict(zip(fitted, kind.predict_group([members[i][4] for i in fitted],
                                                     [members[i][2].test.images for i in fitted]), strict=True))
    except Exception:  # noqa: BLE001 (each member then predicts alone, and its row records its own failure)
        probas = {}
    return outcomes, probas, fit_seconds


def _keep_traceback(folder: Path) -> bool:
    """The failed cell's traceback in its artifacts folder; False when it cannot be written (a full disk)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "error.txt").write_text(traceback.format_exc())
    except OSError:
        return False
    return True


def fit_settings(options: dict | None) -> dict:
    """The run-wide training settings in a cell's (or a stored row's) options: FitContext's precision and
    compile mode, with their defaults."""
    options = options if isinstance(options, dict) else {}
    return {"precision": options.get("precision", "fp32"), "compile": options.get("compile")}


def _fit_predict(cell: Cell, task, ctx):
    """Fit and predict; an out-of-memory error is retried once at half the batch size (the same seed).
    Returns the method, its probabilities, the retry for the row (None when the first try went through) and
    the budget ledger of the fit that counted (``metrics["budget"]``)."""
    overrides = dict(cell.overrides)
    try:
        method, proba, budget = _fit_once(cell.method, overrides, task, ctx)
        return method, proba, None, budget
    except Exception as exc:
        batch = cell.params.get("batch_size")
        if not _is_oom(exc) or not isinstance(batch, int) or batch < 2:
            raise
        first = f"at batch_size {batch}{_memory_figure(ctx.device)}: {_first_line(exc)}"
    _free_device_memory(ctx.device)
    seed_everything(cell.seed, ctx.device)
    overrides["batch_size"] = batch // 2
    try:
        method, proba, budget = _fit_once(cell.method, overrides, task, ctx)
    except Exception as exc:
        if not _is_oom(exc):
            raise
        raise torch.cuda.OutOfMemoryError(f"{first}; again at batch_size {batch // 2}: {_first_line(exc)}") from exc
    return method, proba, {"batch_size": batch // 2, "first_error": first}, budget


def _fit_once(name: str, overrides: dict, task, ctx):
    """One fit with a fresh ledger, then the test set's probabilities; the ledger's record with the contract
    the method was given and the whole fit's seconds."""
    ctx = dataclasses.replace(ctx, ledger=Ledger())
    method = get_method(name)(**overrides)
    reason = method.skip(task)
    if reason:
        raise CellRefused(f"{name} declines this task: {reason}")
    clock = time.perf_counter()
    method.fit(task.train, ctx)
    fit_seconds = time.perf_counter() - clock
    budget = {"roles": ctx.ledger.record(), "contract": dict(ctx.ledger.contract),
              "fit_seconds": round(fit_seconds, 3)}
    return method, method.predict_proba(task.test.images), budget


def _is_oom(exc: BaseException) -> bool:
    """An out-of-memory error on any device (``methods.base.is_out_of_memory``)."""
    return is_out_of_memory(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _memory_figure(device) -> str:
    """`` (peak 71.2 GiB of 79.1 GiB)`` on a GPU; empty elsewhere."""
    if getattr(device, "type", None) != "cuda" or not torch.cuda.is_available():
        return ""
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    total = torch.cuda.get_device_properties(device).total_memory / 2**30
    return f" (peak {peak:.1f} GiB of {total:.1f} GiB)"


def _free_device_memory(device) -> None:
    import gc

    gc.collect()
    if getattr(device, "type", None) == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _quality(method, task, train, cell: Cell, fid_settings, ctx) -> dict:
    """Generative quality after the classification metrics (``quality``, or ``quality_error`` when it
    fails: the cell's classification results stand)."""
    which = cell.options["quality"]
    try:
        fid_fn = fid_settings.fid_fn(cell.dataset, train, cell.seed) if "fid" in which and fid_settings else None
        quality = generative_quality(method, task.train, train, which, cell.seed, fid_fn, test=task.test)
        if "battle" in which and method.battle_twin is not None:
            twin_ctx = dataclasses.replace(ctx, artifact_dir=ctx.artifact_dir / "battle-twin")
            quality["battle"] = battle_against_twin(method, cell.overrides, task, twin_ctx)
        return {"quality": quality}
    except Exception as exc:  # noqa: BLE001 (any failure here must not lose the classification results)
        return {"quality_error": f"{type(exc).__name__}: {exc}".splitlines()[0]}


def dataset_loader(data_dir=None, download: bool = False):
    """``load(cell) -> (train, test)``, each dataset read once however many cells share it."""
    loaded = {}

    def load(cell: Cell):
        source = data_source(cell)
        if source not in loaded:
            options = _load_options(cell)
            loaded[source] = (load_dataset(cell.dataset, data_dir, "train", download, options),
                              load_dataset(cell.dataset, data_dir, "test", download, options))
        return loaded[source]

    return load


def _load_options(cell: Cell) -> LoadOptions:
    options = {k: cell.options[k] for k in ("image_size", "celeba_attr") if k in cell.options}
    return LoadOptions(**options)


def data_source(cell: Cell) -> tuple:
    """Cells that read the same images share one load."""
    return cell.dataset, cell.options.get("image_size"), cell.options.get("celeba_attr")


def failed_row(cell: Cell, error: str, device: str, node: str | None = None) -> dict:
    """The row of a cell that never returned one (its worker died, Ray or Slurm gave up on it); ``node``:
    where it was lost, when known."""
    row = cell_row(cell, _now(), device, None)
    return {**row, "status": "failed", "error": error, "finished_at": row["started_at"], "duration_s": 0.0,
            "node": node}
