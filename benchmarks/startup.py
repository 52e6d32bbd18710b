"""What a ``bench run`` process spends before and around its first cell: the wall time of a one-cell run (the
median of ``--repeats`` fresh processes), the import cost of the heavy packages it loads, and the time of two
commands that run no cell (``bench list methods``, a run refused for a missing file).

    python benchmarks/startup.py [--repeats 5]

Run it on an idle machine: on 2 cores anything else running makes the times meaningless.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN = ["run", "--methods", "imbalanced", "--datasets", "digits", "--ratios", "0.1", "--pairs", "3:5", "--epochs", "1",
       "--seeds", "1", "--quiet", "--no-resume"]
# What a cell process imports, and what it should not (torchvision, inductor) unless a cell needs it.
PROBE = ("import sys, time, torch\n"
         "t = time.perf_counter(); import bench.runner, bench.methods; imports = time.perf_counter() - t\n"
         "from bench.cell import seed_everything\n"
         "t = time.perf_counter(); seed_everything(0, torch.device('cpu')); seeding = time.perf_counter() - t\n"
         "print(f'{imports:.2f} {seeding:.3f}', *(n in sys.modules for n in ('torchvision', 'torch._inductor.config',"
         " 'sklearn', 'imblearn')))")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    bench = shutil.which("bench") or sys.exit("bench is not on PATH: pip install -e . first")
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            start = time.perf_counter()
            subprocess.run([bench, *RUN, "--results", str(Path(tmp) / f"r{i}")], check=True, capture_output=True)
            times.append(time.perf_counter() - start)
    probe = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True, text=True).stdout.split()
    print(f"one-cell bench run: median {statistics.median(times):.2f} s over {args.repeats} processes "
          f"(min {min(times):.2f}, max {max(times):.2f})")
    print(f"import bench.runner + bench.methods (torch already loaded): {probe[0]} s; seed_everything: {probe[1]} s; "
          f"loaded by then: torchvision {probe[2]}, inductor config {probe[3]}, scikit-learn {probe[4]}, "
          f"imbalanced-learn {probe[5]}")
    for args in (["list", "methods"], ["run", "--datasets", "mnist", "--data-dir", "/nonexistent", "--quiet"]):
        start = time.perf_counter()
        subprocess.run([bench, *args], capture_output=True)  # the second is refused: a missing file
        print(f"bench {' '.join(args)}: {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
