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
_GAMO = "deepsmote_gamo_protocol.csv"

# Other papers' numbers on one of the suite's protocols (``reference_gamo``): their metric names -> ours.
REFERENCE_METRICS = ("balanced_accuracy", "g_mean", "f_measure")
_REFERENCE_NAMES = {"acsa": "balanced_accuracy", "gm": "g_mean", "f1": "f_measure"}
# Their test-set names -> the suite's (--test-set): Table II's imbalanced test follows the training shape.
_REFERENCE_TESTS = {"imbalanced": "train", "balanced": "balanced"}
# Their dataset names -> the suite's: CelebA's 5 hair colours are the gamo protocol's celeba task.
_REFERENCE_DATASETS = {"celeba-hair": "celeba"}
REFERENCE_SHORT = "DeepSMOTE (Dablain et al., IEEE TNNLS 2022)"


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


def reference_gamo() -> pd.DataFrame:
    """DeepSMOTE's published numbers on the GAMO protocol, in the suite's terms.

    One row per (dataset, test, method): ``protocol`` = ``gamo``, ``dataset`` and ``test`` as the suite names
    them (``celeba`` = the hair-colour task, ``train`` = the imbalanced test of DeepSMOTE's Table II),
    ``balanced_accuracy`` (ACSA), ``g_mean`` (GM) and ``f_measure`` (macro F1) as fractions (the paper prints
    percent), and ``source`` / ``table`` (the citation and the paper's table number).
    """
    source = resources.files("bench.reports").joinpath("reference", _GAMO)
    with source.open("r", encoding="utf-8") as handle:
        frame = pd.read_csv(handle)
    frame = frame.rename(columns=_REFERENCE_NAMES)
    for metric in REFERENCE_METRICS:
        frame[metric] = frame[metric] / 100.0
    frame["test"] = frame.pop("test_set").map(_REFERENCE_TESTS)
    frame["dataset"] = frame["dataset"].replace(_REFERENCE_DATASETS)
    frame["method"] = frame["method"].str.lower()
    frame["protocol"] = "gamo"
    return frame[["source", "table", "protocol", "dataset", "test", "method", *REFERENCE_METRICS]]
