"""Shared test helpers (not fixtures): paths and a subprocess runner for the installed ``bench`` command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def bench_command() -> list[str]:
    """The installed console script; fall back to the module so the tests run from any environment."""
    exe = shutil.which("bench", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    return [exe] if exe else [sys.executable, "-m", "bench.cli"]


def run_bench(*args, cwd=None, env=None, timeout=600) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([*bench_command(), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env=full_env, timeout=timeout)


def digits_cell(method: str, seed: int = 0, epochs: int = 2, **params):
    """One grid cell: ``method`` (with ``params``) on the digits pair 3:5 at ratio 0.1 with ``seed``; its key
    (and so its artifact folder) is the seed's own."""
    import dataclasses

    from bench.grid import RunConfig, build_grid

    config = RunConfig(name="t", methods=[method], datasets=["digits"], ratios=[0.1], seeds=1, pairs=[[3, 5]],
                       epochs=epochs, method_params={method: params} if params else {})
    return dataclasses.replace(build_grid(config)[0], seed=seed, key="")
