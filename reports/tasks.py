"""The task a cell's numbers belong to, beyond dataset, protocol and level: its test set.

A cell's test set is in its options (``bench.grid.RunConfig.data_options``): absent for the test split as the
dataset gives it (``balanced``), ``"train"`` for a test set that follows the training distribution (for the
``gamo`` protocol, DeepSMOTE's Table II test set). The reports keep the two apart everywhere: a row, a
statistic or a figure never averages cells of two test sets.
"""

from __future__ import annotations

import pandas as pd

DEFAULT_TEST = "balanced"
TEST_LABELS = {"balanced": "balanced test", "train": "imbalanced test (follows the training distribution)",
               "holdout": "holdout (20 % of the training set, no test image)"}


def test_of(options) -> str:
    """The test set named by one cell's options."""
    return str(options.get("test", DEFAULT_TEST)) if isinstance(options, dict) else DEFAULT_TEST


def with_test(cells: pd.DataFrame) -> pd.DataFrame:
    """``cells`` with a ``test`` column (a copy; unchanged when it has one already)."""
    if cells is None or "test" in cells:
        return cells
    options = cells["options"] if "options" in cells else pd.Series([None] * len(cells), index=cells.index)
    return cells.assign(test=[test_of(o) for o in options])


def test_label(test: str) -> str:
    return TEST_LABELS.get(test, f"{test} test")
