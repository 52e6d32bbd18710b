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
_LONGTAIL = "longtail_cifar10.csv"

# Other papers' numbers on one of the suite's protocols (``reference_gamo``): their metric names -> ours.
REFERENCE_METRICS = ("balanced_accuracy", "g_mean", "f_measure")
_REFERENCE_NAMES = {"acsa": "balanced_accuracy", "gm": "g_mean", "f1": "f_measure"}
# Their test-set names -> the suite's (--test-set): Table II's imbalanced test follows the training shape.
_REFERENCE_TESTS = {"imbalanced": "train", "balanced": "balanced"}
# Their dataset names -> the suite's: CelebA's 5 hair colours are the gamo protocol's celeba task.
_REFERENCE_DATASETS = {"celeba-hair": "celeba"}
REFERENCE_SHORT = "DeepSMOTE (Dablain et al., IEEE TNNLS 2022)"
# The long-tail papers print a top-1 error, a balanced error or a top-1 accuracy, in percent, on CIFAR-10's
# balanced test split, where top-1 accuracy is the mean per-class recall: the suite's balanced_accuracy.
_LONGTAIL_MEASURES = {"top1_error": lambda v: 1.0 - v / 100.0, "balanced_error": lambda v: 1.0 - v / 100.0,
                      "top1_accuracy": lambda v: v / 100.0}
# All three papers trained ResNet-32 with SGD: their numbers are shown only beside cells trained that way.
_LONGTAIL_CLASSIFIER = {"classifier.arch": "resnet32", "classifier.optimizer": "sgd"}


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


def _requires(text) -> dict:
    """``"beta=0.9999;gamma=1.0"`` -> {"beta": 0.9999, "gamma": 1.0} (numbers where they parse)."""
    out = {}
    for part in str(text).split(";") if isinstance(text, str) and text.strip() else ():
        name, _, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            out[name.strip()] = value.strip()
    return out


def reference_longtail() -> pd.DataFrame:
    """The long-tail papers' published CIFAR-10-LT numbers (``longtail_cifar10.csv``), in the suite's terms.

    One row per (source, paper row, imbalance factor): ``protocol`` = ``longtail``, ``test`` = ``balanced``,
    ``ratio`` = 1 / factor, ``method`` the suite's method, ``requires`` the parameters a cell must have for the
    number to apply ({"classifier.arch": "resnet32", "classifier.optimizer": "sgd", ...}: ResNet-32 with SGD,
    plus e.g. ``drw_fraction`` = 1.0 for LDAM without DRW), ``primary`` (the number a report shows first:
    the method's own paper, else LDAM-DRW's Table 2, whose recipe the ``cifar10-lt`` preset follows),
    ``balanced_accuracy`` as a fraction (100 - the printed error, or the printed accuracy), ``spread`` (the
    printed standard error, a fraction; NaN where none is printed), ``paper_row`` the paper's own row name.
    """
    source = resources.files("bench.reports").joinpath("reference", _LONGTAIL)
    with source.open("r", encoding="utf-8") as handle:
        frame = pd.read_csv(handle)
    frame["balanced_accuracy"] = [_LONGTAIL_MEASURES[m](v) for m, v in zip(frame["measure"], frame["value"],
                                                                          strict=True)]
    frame["spread"] = frame["spread"] / 100.0
    frame["requires"] = [{**_LONGTAIL_CLASSIFIER, **_requires(r)} for r in frame["requires"]]
    frame["ratio"] = 1.0 / frame["factor"]
    frame["primary"] = frame["primary"].astype(bool)
    frame = frame.assign(protocol="longtail", test="balanced", g_mean=float("nan"), f_measure=float("nan"))
    return frame[["source", "table", "paper_row", "protocol", "dataset", "test", "ratio", "method", "requires",
                  "primary", *REFERENCE_METRICS, "spread"]]


def published() -> pd.DataFrame:
    """Every other paper's number the reports show, one frame: :func:`reference_gamo` (any ratio: the gamo
    protocol fixes it; no parameter required; primary) and :func:`reference_longtail`."""
    gamo = reference_gamo().assign(paper_row=lambda f: f["method"], ratio=float("nan"), primary=True,
                                   spread=float("nan"))
    gamo["requires"] = [{} for _ in range(len(gamo))]
    frames = [gamo, reference_longtail()]
    return pd.concat([f[frames[1].columns] for f in frames], ignore_index=True)
