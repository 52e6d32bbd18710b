"""The fault suite's tally: every test here adds what it injected, and the run ends with the totals
(faults injected, survived, bad inputs tried, cells lost), also written to
``$BENCH_TEST_ARTIFACTS/fault-counts.json`` when that folder is set (as in CI)."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

TALLY: Counter = Counter()


@pytest.fixture(scope="session")
def tally() -> Counter:
    """``tally["faults"] += n`` (injected), ``tally["survived"] += n``, ``tally["bad_inputs"] += n``,
    ``tally["cells_lost"] += n`` (a reported-done cell missing from the store: must stay 0)."""
    return TALLY


def pytest_terminal_summary(terminalreporter):
    if not TALLY:
        return
    line = (f"fault suite: {TALLY['faults']} faults injected, {TALLY['survived']} survived, "
            f"{TALLY['bad_inputs']} bad inputs tried, {TALLY['cells_lost']} cells lost")
    terminalreporter.write_sep("-", line)
    folder = os.environ.get("BENCH_TEST_ARTIFACTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "fault-counts.json").write_text(json.dumps(dict(TALLY), indent=1, sort_keys=True) + "\n")
