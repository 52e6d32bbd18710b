"""Solo cells' wall time per method, in this process: what must not drop when the training code changes.

    python benchmarks/solo_time.py METHODS [EPOCHS] [SEEDS]

For each method: the digits cells of pair 3:5, ratio 0.1 and seeds 0 .. SEEDS-1 (default 3) at EPOCHS (default
10), one after another through ``run_cell`` on the CPU with torch's 2 threads, after one untimed warm-up cell;
the best of two passes is printed, with the cells' G-means. Run it with the package before and after a change
(``pip install --no-deps --target DIR``, then ``PYTHONPATH=DIR``) and compare.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.cell import CellEnv, dataset_loader, run_cell
from bench.grid import Preset, build_grid


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    methods = sys.argv[1].split(",")
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    seeds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    torch.set_num_threads(2)
    load, cpu = dataset_loader(None), torch.device("cpu")
    for method in methods:
        preset = Preset(name="solo", methods=[method], datasets=["digits"], ratios=[0.1], seeds=seeds,
                        pairs=[[3, 5]], epochs=epochs)
        cells = build_grid(preset)
        train, test = load(cells[0])
        run_cell(cells[0], train, test, CellEnv(cpu, Path(tempfile.mkdtemp())))  # warm: imports, caches
        best, rows = float("inf"), []
        for _ in range(2):
            env = CellEnv(cpu, Path(tempfile.mkdtemp()))
            clock = time.perf_counter()
            rows = [run_cell(cell, train, test, env) for cell in cells]
            best = min(best, time.perf_counter() - clock)
        g_means = " ".join(f"{row['metrics']['g_mean']:.3f}" if row["status"] == "done" else "failed" for row in rows)
        print(f"{method:<10} {best:7.2f} s  G-means {g_means}", flush=True)


if __name__ == "__main__":
    main()
