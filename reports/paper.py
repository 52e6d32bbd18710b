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

# Other papers' numbers on one of the suite's protocols (``reference_gamo``): their metric names -> ours, each
# beside the definition its source used (README.md in reference/ gives the evidence): DeepSMOTE's GM is
# imbalanced-learn's macro G-mean (it exceeds its ACSA in every row, which the G-mean of the per-class recalls
# never can).
REFERENCE_METRICS = ("balanced_accuracy", "g_mean_macro", "f_measure")
_REFERENCE_NAMES = {"acsa": "balanced_accuracy", "gm": "g_mean_macro", "f1": "f_measure"}
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
    ``balanced_accuracy`` (ACSA), ``g_mean_macro`` (GM: imbalanced-learn's macro G-mean, see :func:`gamo_definitions`) and
    ``f_measure`` (macro F1) as fractions (the paper prints percent), and ``source`` / ``table`` (the citation
    and the paper's table number).
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
    frame = frame.assign(protocol="longtail", test="balanced", g_mean_macro=float("nan"), f_measure=float("nan"))
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


# What a source's numbers are, said under every table that sets them beside ours. Each figure in these notes is
# computed from the shipped numbers, never typed.
def gamo_definitions() -> str:
    """The note on DeepSMOTE's metric definitions, with the evidence its own numbers give."""
    frame = reference_gamo()
    above = int((frame["g_mean_macro"] > frame["balanced_accuracy"]).sum())
    return (f"DeepSMOTE's GM exceeds its ACSA in {above} of its {len(frame)} rows, which the G-mean of the per-class "
            "recalls (never above their mean, ACSA) cannot: it is imbalanced-learn's macro G-mean, sqrt(mean "
            "sensitivity x mean specificity) over the classes taken one-vs-rest, set beside ours of that definition "
            "(G-mean macro); its F1 is the macro F1 and its ACSA the mean per-class recall "
            "(reports/reference/README.md).")


LONGTAIL_DEFINITIONS = (
    "LDAM-DRW's Table 2 numbers are the best test accuracy over all epochs of a run (its cifar_train.py selects the "
    "epoch on the test set), ours the last epoch's.")

# Differences between a method as the suite runs it and as the source of its published number ran it, said under
# every table that sets that number beside ours (each method's module docstring lists them in full).
DEVIATION_NOTES = {
    "deepsmote": "deepsmote: our encoder and decoder (DCGAN blocks, about 2.0 M parameters each) are not the official "
                 "ones (2.9 M and 10.2 M on MNIST), and we decode from the final weights, not the lowest-loss "
                 "checkpoint.",
    "cb-ce": "cb-ce divides by the batch's summed class weights, as LDAM-DRW's code (its CB RW row) does; Cui et al.'s "
             "code divides by the batch size.",
    "cb-focal": "cb-focal is Cui et al.'s sigmoid form; LDAM-DRW's code (its CB Focal row) uses a softmax focal term.",
    "logit-adjust": "logit-adjust trains with LDAM-DRW's longtail-sgd recipe, not its paper's (Nesterov SGD, batch "
                    "128, its own step schedule).",
    "balanced-softmax": "balanced-softmax trains with LDAM-DRW's longtail-sgd recipe, not its paper's (batch 512, "
                        "lr 0.05, weight decay 5e-4, cosine over 13,000 iterations).",
}


def deviation_notes(methods) -> list[str]:
    """The :data:`DEVIATION_NOTES` of the methods (or their variants, ``name[...]``) in ``methods``, in order."""
    names = dict.fromkeys(str(m).split("[")[0] for m in methods)
    return [DEVIATION_NOTES[n] for n in names if n in DEVIATION_NOTES]


def table3_definitions() -> str:
    """The note on what the CapsAN paper's Table 3 numbers can and cannot be (computed from the shipped table)."""
    frame = paper_table3()
    harmonic = 2 * frame["precision"] * frame["recall"] / (frame["precision"] + frame["recall"])
    off = (frame["f_measure"] - harmonic).abs() > 0.01
    worst = (frame["f_measure"] - harmonic).abs().idxmax()
    row = frame.loc[worst]
    return (f"The paper's F-measure is not the harmonic mean of its own precision and recall in {int(off.sum())} of "
            f"its {len(frame)} rows (more than 0.01 apart; {row['data_label']} {row['method']}: "
            f"{row['f_measure']:.3f} printed, {harmonic[worst]:.3f} from its precision and recall), so which "
            "F-measure it prints is unknown; its G-mean is set beside our binary G-mean, sqrt(TPR x TNR). "
            "Its `imbalanced` row is, by its caption, a standard GAN, where ours is the common CNN without "
            "resampling; it repeats each experiment for every two classes, where the suite runs the preset's "
            "class pairs (3:5, 4:9, 0:6 by default).")
