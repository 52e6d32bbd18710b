"""Fused cells against solo cells on this machine: member-updates per second at S = 1, 2, 4, ... members.

    python benchmarks/fused.py [--device cpu|cuda] [--dataset digits|mnist] [--data-dir DIR]
                               [--methods imbalanced,smote,ldam-drw] [--sizes 1,2,4,8] [--epochs 2]
                               [--compile MODE] [--threads N]

For each method (a ``fusable`` one) and group size S: S cells of one task (the dataset's first default pair,
ratio 0.1, seeds 0 .. S-1) run one after another through ``run_cell`` (solo), then as one group through
``run_group`` (fused), as a grid runs them. Printed per S: both wall times, the members' updates per second
(every network's updates in the ledgers, summed over the S cells, over the wall time) and the speed-up. Both
include everything a cell does (its task, resampling, prediction, metrics); fused G-means are printed beside
the solo ones, which they match to float rounding. The figures go to ``benchmarks/RESULTS.md``; ``--fuse auto``
turns fusion on only where these figures show a gain (``bench/groups.py``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from bench.cell import CellEnv, dataset_loader, describe_device, resolve_device, run_cell, run_group
from bench.grid import Preset, build_grid


def cells_for(method: str, dataset: str, epochs: int, seeds: int, compile_mode: str | None):
    preset = Preset(name="fused", methods=[method], datasets=[dataset], ratios=[0.1], seeds=seeds,
                    pairs="default", epochs=epochs, compile=compile_mode)
    cells = build_grid(preset)
    return [c for c in cells if c.pair == cells[0].pair]


def updates(rows) -> int:
    """Every network's updates (the classifier's, and a generative method's generator, critic ...)."""
    return sum(role["updates"] for r in rows if r["status"] == "done"
               for role in r["metrics"]["budget"]["roles"].values())


def g_means(rows) -> str:
    return " ".join(f"{r['metrics']['g_mean']:.3f}" if r["status"] == "done" else "failed" for r in rows)


def timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    clock = time.perf_counter()
    rows = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return rows, time.perf_counter() - clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--methods", default="imbalanced,smote,ldam-drw")
    parser.add_argument("--sizes", default="1,2,4,8")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--compile", dest="compile_mode")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    load = dataset_loader(args.data_dir)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"fused against solo on {describe_device(device)}: {args.dataset}, {args.epochs} epochs, ratio 0.1, "
          f"{'compile ' + args.compile_mode if args.compile_mode else 'eager'}")
    print(f"{'method':<12} {'S':>3} {'solo s':>8} {'fused s':>8} {'solo upd/s':>11} {'fused upd/s':>12} "
          f"{'speed-up':>9}  G-mean solo | fused")
    for method in args.methods.split(","):
        all_cells = cells_for(method, args.dataset, args.epochs, max(sizes), args.compile_mode)
        train, test = load(all_cells[0])
        run_cell(all_cells[0], train, test, CellEnv(device, Path(tempfile.mkdtemp())))  # warm: imports, caches
        for size in sizes:
            cells = all_cells[:size]
            with tempfile.TemporaryDirectory() as folder:
                env = CellEnv(device, Path(folder))
                solo, solo_s = timed(lambda: [run_cell(c, train, test, env) for c in cells])  # noqa: B023
                fused, fused_s = timed(lambda: run_group(cells, train, test, env))  # noqa: B023
            print(f"{method:<12} {size:>3} {solo_s:8.2f} {fused_s:8.2f} {updates(solo) / solo_s:11.0f} "
                  f"{updates(fused) / fused_s:12.0f} {solo_s / fused_s:8.2f}x  {g_means(solo)} | {g_means(fused)}")


if __name__ == "__main__":
    main()
