"""CPU threads: how long a ``bench run`` takes on an idle machine and beside a second CPU-bound process, under
several thread settings (issue 17, item 6). Not a test: timings depend on the machine and its load.

Each configuration is a set of environment variables (``default`` = none: whatever ``bench`` itself chooses)
or ``--threads N``; each runs ``--repeats`` times on a fresh results folder, and the median wall time is
reported. ``busy``: a competing process does small matrix products on every core the whole time (as a second
torch job would), started before and killed after each timed run.

    python benchmarks/threads.py --loads idle,busy --configs default,OMP_NUM_THREADS=1 --repeats 2 \\
        -- --methods imbalanced,crl,gan --datasets digits --ratios 0.1 --seeds 1
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

COMPETITOR = ("import torch, os\n"
              "torch.set_num_threads(os.cpu_count())\n"
              "x = torch.randn(256, 256)\n"
              "while True:\n"
              "    x = torch.tanh(x @ x)\n")


def timed_run(args: list[str], config: str, busy: bool) -> float:
    env, extra = dict(os.environ), []
    for name in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS"):
        env.pop(name, None)  # each configuration sets its own
    if config.startswith("--threads"):
        extra = config.split()
    elif config != "default":
        env.update(item.split("=", 1) for item in config.split(","))
    results = tempfile.mkdtemp(prefix="threads-")
    competitor = subprocess.Popen([sys.executable, "-c", COMPETITOR]) if busy else None
    try:
        if competitor:
            time.sleep(2.0)  # let it start spinning
        start = time.perf_counter()
        run = subprocess.run(["bench", "run", *args, *extra, "--results", results, "--quiet", "--no-resume"],
                             env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    finally:
        if competitor:
            competitor.kill()
            competitor.wait()
        shutil.rmtree(results, ignore_errors=True)
    if run.returncode != 0:
        raise SystemExit(f"bench run failed under {config}: {run.stderr.strip().splitlines()[-1:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", default="idle,busy")
    parser.add_argument("--configs", default="default,OMP_NUM_THREADS=1")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("bench_args", nargs=argparse.REMAINDER)
    options = parser.parse_args()
    args = [a for a in options.bench_args if a != "--"]
    print(f"bench run {' '.join(args)}; {os.cpu_count()} cores; median of {options.repeats}")
    print(f"{'load':<6} {'configuration':<40} {'median s':>9}  runs")
    for load in options.loads.split(","):
        for config in options.configs.split(";"):
            times = [timed_run(args, config, load == "busy") for _ in range(options.repeats)]
            print(f"{load:<6} {config:<40} {statistics.median(times):9.1f}  {', '.join(f'{t:.1f}' for t in times)}",
                  flush=True)


if __name__ == "__main__":
    main()
