"""The task a cell's numbers belong to, beyond dataset, protocol and level: its test set.

A cell's test set is in its options (``bench.grid.Preset.data_options``): absent for the test split as the
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


def test_label(test: str) -> str:
    return TEST_LABELS.get(test, f"{test} test")


def task_label(protocol, test, suffix: str = "") -> str:
    """``gamo, imbalanced test (...)``: the protocol (with ``suffix``, e.g. " protocol"), and the test set when it
    is not the default or when the protocol has two published ones (gamo)."""
    named = test != DEFAULT_TEST or protocol == "gamo"
    return f"{protocol}{suffix}" + (f", {test_label(test)}" if named else "")


def test_set_note(cells: pd.DataFrame) -> str:
    """One line on the test set a group of cells (one table's) used when its protocol asks fixed per-class test
    counts (``counts["test_requested"]``, the gamo protocol): what was asked, and what the test split could
    give where it has fewer images of a class; "" when the cells record no such request."""
    if cells is None or cells.empty or "counts" not in cells:
        return ""
    recorded = [c for c in cells["counts"] if isinstance(c, dict) and c.get("test_requested")]
    if not recorded:
        return ""
    first = recorded[0]
    asked, used, short = first["test_requested"], first.get("test", []), first.get("test_clamped", [])
    if not short:
        return f"Test set: {_counts(used)} images of each class (class 0 first), as the published protocol asks."
    classes = ", ".join(map(str, short))
    many = len(short) > 1
    return (f"Test set: the published protocol asks {_counts(asked)} images of each class (class 0 first); the "
            f"test split has fewer of class{'es' if many else ''} {classes}, which keep{'' if many else 's'} all "
            f"{'they have' if many else 'it has'}: used {_counts(used)}.")


def _counts(values) -> str:
    values = list(values)
    return f"{values[0]:,}" if values and len(set(values)) == 1 else ", ".join(f"{v:,}" for v in values)
