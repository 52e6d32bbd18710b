"""Throughput of the suite on this machine: per method, and with K cells packed on one device.

    python benchmarks/throughput.py [--device cpu|cuda] [--dataset digits] [--data-dir DIR]
                                    [--methods imbalanced,gan,capsan] [--epochs 2] [--batches 64,256]
                                    [--packing 1,2,4,8] [--cells-per-worker 2]
                                    [--precision fp32|bf16] [--compile MODE]

Part 1, per method and batch size (methods without a ``batch_size`` parameter train the common classifier at
its fixed batch): one cell (the dataset's first default pair, ratio 0.1, seed 0) through ``run_cell``, as a
grid runs it. Printed: seconds, training images per second (epochs x training-set size / seconds: the
budget every method spends, comparable across devices) and the peak device memory (CUDA only).

Part 2, packing: K worker processes on the one device (``LocalExecutor``, each CPU worker with cores / K
threads), running K x ``--cells-per-worker`` cells of the first method (seeds 0, 1, ...); printed: the wall
time, cells per minute, and the speed-up over K = 1. Worker start-up (importing torch, loading the data)
is inside the wall time, as it is in a real run.

``--precision`` and ``--compile`` run every cell as ``bench run`` would with them (compilation, once per
process, is inside the times).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from bench.cell import CellEnv, dataset_loader, describe_device, resolve_device, run_cell
from bench.executors import Job, LocalExecutor
from bench.grid import Preset, build_grid
from bench.methods import get_method


def cells_for(method: str, dataset: str, epochs: int, seeds: int, batch: int | None = None,
              precision: str = "fp32", compile_mode: str | None = None):
    params = {method: {"batch_size": batch}} if batch is not None else {}
    config = Preset(name="bench", methods=[method], datasets=[dataset], ratios=[0.1], seeds=seeds,
                       pairs="default", epochs=epochs, method_params=params, precision=precision,
                       compile=compile_mode)
    cells = build_grid(config)
    first_pair = cells[0].pair
    return [c for c in cells if c.pair == first_pair]


def per_method(args, device, load) -> None:
    print(f"per method on {describe_device(device)} ({args.dataset}, {args.epochs} epochs, one cell each, "
          f"{args.precision}{', compile ' + args.compile if args.compile else ''})")
    print(f"{'method':<12} {'batch':>6} {'seconds':>8} {'train img/s':>12} {'peak MiB':>9}  status")
    for method in args.methods.split(","):
        has_batch = "batch_size" in get_method(method).defaults
        for batch in (args.batches if has_batch else [None]):
            (cell,) = cells_for(method, args.dataset, args.epochs, 1, batch, args.precision, args.compile)[:1]
            train, test = load(cell)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            with tempfile.TemporaryDirectory() as folder:
                clock = time.perf_counter()
                row = run_cell(cell, train, test, CellEnv(device, Path(folder)))
                seconds = time.perf_counter() - clock
            n_train = sum(row["counts"]["train"]) if row.get("counts") else float("nan")
            peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
            shown = batch if batch is not None else "fixed"
            print(f"{method:<12} {shown!s:>6} {seconds:8.2f} {args.epochs * n_train / seconds:12.0f} {peak:9.0f}  "
                  f"{row['status']}{'' if row['status'] == 'done' else ': ' + str(row['error'])[:80]}")


def packing(args, device) -> None:
    method = args.methods.split(",")[0]
    print(f"\npacking {method} cells on one device ({describe_device(device)}), {args.cells_per_worker} cells per worker")
    print(f"{'K':>3} {'cells':>6} {'wall s':>8} {'cells/min':>10} {'speed-up':>9}")
    base = None
    for k in args.packing:
        cells = cells_for(method, args.dataset, args.epochs, k * args.cells_per_worker, None, args.precision,
                          args.compile)
        threads = max(1, (os.cpu_count() or 1) // k) if device.type == "cpu" else None
        with tempfile.TemporaryDirectory() as folder:
            job = Job(folder, args.data_dir, threads=threads)
            clock = time.perf_counter()
            rows = [row for _, row in LocalExecutor(job, [str(device)] * k).run(cells)]
            wall = time.perf_counter() - clock
        failed = sum(r["status"] != "done" for r in rows)
        rate = len(cells) / wall * 60
        base = base or rate
        print(f"{k:>3} {len(cells):>6} {wall:8.1f} {rate:10.2f} {rate / base:8.2f}x"
              + (f"  ({failed} failed)" if failed else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir")
    parser.add_argument("--methods", default="imbalanced,gan,capsan")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batches", default="64,256", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--packing", default="1,2,4,8", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--cells-per-worker", type=int, default=2)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--compile", default=None, choices=["default", "reduce-overhead", "max-autotune"])
    args = parser.parse_args()
    device = resolve_device(args.device)
    per_method(args, device, dataset_loader(args.data_dir))
    packing(args, device)


if __name__ == "__main__":
    main()
