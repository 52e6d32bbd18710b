"""The paper's reference numbers, shipped with the package (read through importlib.resources)."""

from __future__ import annotations

from importlib import resources

import pandas as pd

PAPER_CITATION = (
    "P. Shamsolmoali, M. Zareapoor, L. Shen, A. H. Sadka and J. Yang, "
    "Imbalanced data learning by minority class augmentation using capsule adversarial networks, "
    "Neurocomputing 459 (2021) 481-493, arXiv:2004.02182"
)
PAPER_SHORT = "Shamsolmoali et al., Neurocomputing 2021"

# The paper's Table 3 covers MNIST binary tasks only.
PAPER_PROTOCOL = "binary"
PAPER_METRICS = ("precision", "recall", "accuracy", "f_measure", "g_mean")

_TABLE3 = "table3_resampling.csv"


def paper_table3() -> pd.DataFrame:
    """The paper's Table 3, one row per (dataset, imbalance, method), with ``ratio`` = 1 - imbalance_pct/100.

    ``ratio`` is minority/majority, as in the results store (Data1..Data7 = 50..98 % -> 0.5..0.02); it is
    rounded to 12 decimals so that 1 - 90/100 reads as 0.1.
    """
    source = resources.files("bench.reports").joinpath("reference", _TABLE3)
    with source.open("r", encoding="utf-8") as handle:
        frame = pd.read_csv(handle)
    frame["ratio"] = (1.0 - frame["imbalance_pct"] / 100.0).round(12)
    return frame
