"""The structure change keeps every result: the smoke preset gives the same cell keys and the same metrics
as the code before it (``tests/data/smoke_before.json``, written from a smoke run of commit 9279026 with
``python tests/test_same_results.py RESULTS > tests/data/smoke_before.json``). The quick preset (180 cells,
19 minutes with ``--jobs 2`` on 2 cores: too long for a test) is checked by hand the same way against
``tests/data/quick_before.json``: ``bench run --preset quick --threads 1 --jobs 2 --results R``, then
``python tests/test_same_results.py R --against tests/data/quick_before.json`` (prints each difference,
exits 1 on any).

Metrics are compared exactly on the CPU kind that wrote the reference (the suite promises the same numbers
for the same seed on the same device), and within ``TOLERANCE`` on another (vector units change float
sums); the seconds and the thread count are the machine's, never compared.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

REFERENCE = Path(__file__).parent / "data" / "smoke_before.json"
TOLERANCE = 0.02
MACHINE_KEYS = {"threads", "seconds", "fit_seconds"}  # the machine's figures (the ledger's seconds too)
# Metrics added after a reference was written: present on the new side only, never a difference (g_mean_macro:
# issue 29, a function of the confusion matrix that the reference already compares).
ADDED_METRICS = {"g_mean_macro"}


def cpu_kind() -> str:
    return f"torch {torch.__version__.split('+')[0]}, {torch.backends.cpu.get_cpu_capability()}"


def snapshot(results) -> dict:
    """Every done cell of a results folder: its key, method and metrics without the machine's figures."""
    from bench.store import Store

    with Store(results, create=False) as store:
        cells = store.cells()
    out = {}
    for row in cells[cells["status"] == "done"].itertuples():
        out[row.key] = {"method": row.method, "metrics": _without_machine(row.metrics)}
    return {"cpu": cpu_kind(), "cells": dict(sorted(out.items()))}


def _without_machine(value):
    if isinstance(value, dict):
        return {k: _without_machine(v) for k, v in value.items() if k not in MACHINE_KEYS}
    return value


def _numbers(value, prefix=""):
    """Flatten nested metrics to {path: number or text}."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, f"{prefix}{k}.")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _numbers(v, f"{prefix}{i}.")
    else:
        yield prefix.rstrip("."), value


def differences(before: dict, after: dict, tolerance: float) -> list[str]:
    problems = []
    for key, old in before.items():
        new = after.get(key)
        if new is None:
            problems.append(f"{old['method']} {key}: missing after the change")
            continue
        old_values, new_values = dict(_numbers(old["metrics"])), dict(_numbers(new["metrics"]))
        new_values = {k: v for k, v in new_values.items() if k in old_values or k not in ADDED_METRICS}
        if old_values.keys() != new_values.keys():
            problems.append(f"{old['method']} {key}: metrics {sorted(old_values.keys() ^ new_values.keys())} "
                            "appear on one side only")
            continue
        for name, a in old_values.items():
            b = new_values[name]
            if isinstance(a, float) and isinstance(b, float | int) and not (math.isnan(a) and math.isnan(b)):
                if abs(a - b) > tolerance:
                    problems.append(f"{old['method']} {key}: {name} {a!r} -> {b!r}")
            elif a != b:
                problems.append(f"{old['method']} {key}: {name} {a!r} -> {b!r}")
    problems += [f"{after[k]['method']} {k}: new cell" for k in after.keys() - before.keys()]
    return problems


def test_the_smoke_preset_gives_the_keys_and_numbers_of_the_code_before(smoke_run):
    run, results = smoke_run  # bench run --preset smoke --threads 1
    assert run.returncode == 0, run.stderr
    before, after = json.loads(REFERENCE.read_text()), snapshot(results)
    assert after["cells"].keys() == before["cells"].keys()  # the same cells, under the same keys
    exact = before["cpu"] == after["cpu"]
    assert differences(before["cells"], after["cells"], 0.0 if exact else TOLERANCE) == []


def test_the_comparison_sees_a_moved_number_and_a_missing_cell():
    before = json.loads(REFERENCE.read_text())["cells"]
    key = next(iter(before))
    moved = json.loads(json.dumps(before))
    moved[key]["metrics"]["g_mean"] += 0.05
    assert differences(before, moved, TOLERANCE) == [
        f"{before[key]['method']} {key}: g_mean {before[key]['metrics']['g_mean']!r} -> {moved[key]['metrics']['g_mean']!r}"]
    assert differences(before, moved, 0.1) == []
    del moved[key]
    assert differences(before, moved, 0.0) == [f"{before[key]['method']} {key}: missing after the change"]


if __name__ == "__main__":
    now = snapshot(sys.argv[1])
    if len(sys.argv) == 4 and sys.argv[2] == "--against":
        before = json.loads(Path(sys.argv[3]).read_text())
        exact = before["cpu"] == now["cpu"]
        found = differences(before["cells"], now["cells"], 0.0 if exact else TOLERANCE)
        print("\n".join(found) or f"{len(now['cells'])} cells, the same keys and "
                                   f"{'identical' if exact else f'within {TOLERANCE}'} metrics")
        sys.exit(1 if found else 0)
    print(json.dumps(now, indent=1, sort_keys=True))
