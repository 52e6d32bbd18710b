"""The soak's short version (``benchmarks/soak.py``): a 20-cell digits grid under ``--jobs 2`` run to the end
while the driver or a worker is killed every few seconds; every cell is stored exactly once, none lost.
(40 cells with a kill every 3 s took 105 s of CI's 20 minutes; the 1,000-cell soaks are in RESULTS.md.)"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import soak  # noqa: E402


def test_a_short_soak_under_jobs_loses_no_cell_and_stores_none_twice(tally):
    figures = soak.main(["--mode", "jobs", "--cells", "20", "--every", "3", "--limit", "400"])
    tally["faults"] += figures["kills_injected"]
    tally["survived"] += figures["kills_survived"]
    tally["cells_lost"] += figures["cells_lost"]
    assert figures["kills_injected"] >= 5, figures  # a soak, not a quiet run
    assert figures["cells_done"] == figures["cells"] == 20, figures
    assert figures["cells_lost"] == 0 and figures["cells_stored_twice"] == 0, figures
    assert figures["kills_survived"] == figures["kills_injected"], figures
