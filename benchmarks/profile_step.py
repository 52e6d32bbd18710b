"""Where a solo cell's training step spends its time (issue 30, part 1): one cell per method under
``torch.profiler``, per optimiser update.

    python benchmarks/profile_step.py [--device cpu|cuda] [--dataset digits|mnist] [--data-dir DIR]
                                      [--methods imbalanced,gan,...] [--epochs 1] [--threads N]

For each method, one cell (the dataset's first default pair, ratio 0.1, seed 0) runs through ``run_cell`` under
the profiler. Printed per method: its optimiser updates (every network's, from the ledger), the wall time per
update, the operators' own time per update (the profiler's self time of every ``aten::`` operator on the CPU;
on a GPU, the kernels' time), the rest (Python, dispatch, the optimiser's bookkeeping: what fusion and
compilation remove) as a share of the wall time, host synchronisations per update (``aten::_local_scalar_dense``
outside the optimisers' steps: ``.item()``, ``.tolist()``, ``int(tensor)``; a GPU stalls on each; the prediction's
and metrics' few included), allocations per update (``[memory]`` events),
and the three operators with the most self time. Wall and operator times include the cell's prediction and
metrics, which a training step does not pay: on these small sets they are a few per cent.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from bench.cell import CellEnv, dataset_loader, describe_device, resolve_device, run_cell
from bench.grid import Preset, build_grid

DEFAULT_METHODS = "imbalanced,smote,crl,gan,acgan,dagan,bagan,bagan-gp,deepsmote,gamo,capsan"


def in_optimizer(event) -> bool:
    """Whether a profiler event ran inside an optimiser's step (Adam reads its step count with ``.item()``
    from a CPU tensor, which stalls no GPU)."""
    while event is not None:
        if event.name.startswith("Optimizer.step"):
            return True
        event = event.cpu_parent
    return False


def first_cell(method: str, dataset: str, epochs: int):
    preset = Preset(name="profile", methods=[method], datasets=[dataset], ratios=[0.1], seeds=1, pairs="default",
                    epochs=epochs)
    return build_grid(preset)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    load = dataset_loader(args.data_dir)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    print(f"solo cells under torch.profiler on {describe_device(device)}: {args.dataset}, {args.epochs} epoch(s), "
          "ratio 0.1, seed 0; per optimiser update")
    print(f"{'method':<11} {'updates':>7} {'wall ms':>8} {'ops ms':>7} {'rest':>5} {'syncs':>6} {'allocs':>7}  "
          "top operators (self ms per update)")
    for method in args.methods.split(","):
        cell = first_cell(method, args.dataset, args.epochs)
        train, test = load(cell)
        run_cell(cell, train, test, CellEnv(device, Path(tempfile.mkdtemp())))  # warm: imports, caches
        with tempfile.TemporaryDirectory() as folder:
            env = CellEnv(device, Path(folder))
            with profile(activities=activities, profile_memory=True) as prof:
                clock = time.perf_counter()
                row = run_cell(cell, train, test, env)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                wall = time.perf_counter() - clock
        if row["status"] != "done":
            print(f"{method:<11} {row['status']}: {row['error']}")
            continue
        updates = sum(role["updates"] for role in row["metrics"]["budget"]["roles"].values())
        averages = prof.key_averages()
        if device.type == "cuda":
            ops = sum(e.self_device_time_total for e in averages) / 1e3  # microseconds -> ms
        else:
            ops = sum(e.self_cpu_time_total for e in averages if e.key.startswith("aten::")) / 1e3
        syncs = sum(1 for e in prof.events() if e.name == "aten::_local_scalar_dense" and not in_optimizer(e))
        allocs = sum(1 for e in prof.events() if e.name == "[memory]")
        top = sorted((e for e in averages if e.key.startswith("aten::")), key=lambda e: -e.self_cpu_time_total)[:3]
        tops = ", ".join(f"{e.key[6:]} {e.self_cpu_time_total / 1e3 / updates:.2f}" for e in top)
        per = 1e3 * wall / updates
        print(f"{method:<11} {updates:>7} {per:>8.2f} {ops / updates:>7.2f} {1 - ops / 1e3 / wall:>5.0%} "
              f"{syncs / updates:>6.2f} {allocs / updates:>7.0f}  {tops}")


if __name__ == "__main__":
    main()
