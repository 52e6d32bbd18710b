"""Classification metrics of one cell, from scikit-learn and imbalanced-learn.

Binary tasks report precision, recall and F-measure of the minority (positive) class; multi-class tasks
macro-average them. Accuracy, balanced accuracy (= ACSA, the mean per-class recall), two G-means, ROC AUC
(binary: of the positive class' probability; multi-class: one-vs-rest, macro) and the confusion matrix complete
the set.

The two G-means are two definitions that papers print under one name:
- ``g_mean``: the geometric mean of the per-class recalls (imbalanced-learn ``average="multiclass"``). It can
  never exceed their arithmetic mean, ACSA, and one class with no correct prediction makes it 0. The CapsAN
  paper's binary G-mean, sqrt(TPR x TNR).
- ``g_mean_macro``: imbalanced-learn's ``average="macro"``: sqrt(mean sensitivity x mean specificity), each
  class's sensitivity and specificity taken one-vs-rest, then macro-averaged before the square root, i.e.
  sqrt(ACSA x mean specificity). With many classes the mean specificity is near 1, so it sits above ACSA:
  DeepSMOTE's GM (``reports/reference/README.md`` gives the evidence).
On a binary task they differ: ``g_mean`` is sqrt(TPR x TNR), the binary G-mean papers print (the CapsAN
paper's), while ``g_mean_macro`` is (TPR + TNR) / 2, the balanced accuracy (each class's sensitivity is the
other's specificity).
A cell stored before ``g_mean_macro`` existed gets it from its stored confusion matrix (``derived_metrics``), the
same number, since both G-means are functions of the confusion matrix.
"""

from __future__ import annotations

import numpy as np

# scikit-learn and imbalanced-learn are imported inside the functions: together about 2.5 s at a process's
# start, which a bench process that stops before its first metric (a refused option, a missing file, a dry
# run, bench list) need not pay.

METRIC_NAMES = ("precision", "recall", "f_measure", "accuracy", "balanced_accuracy", "g_mean", "g_mean_macro",
                "roc_auc")


def classification_metrics(y_true, proba, positive: int | None = 1) -> dict:
    """Metrics of predicted class probabilities ``proba`` (N, n_classes) against labels ``y_true``.

    ``positive`` is the label of the minority class for a binary task; ``None`` macro-averages.
    """
    from imblearn.metrics import geometric_mean_score
    from sklearn import metrics as skm

    y_true = np.asarray(y_true)
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or len(proba) != len(y_true):
        raise ValueError(f"proba must be (N, n_classes) with N = {len(y_true)}; got shape {proba.shape}")
    if not np.all(np.isfinite(proba)):
        raise ValueError("proba holds NaN or Inf values")
    n_classes = proba.shape[1]
    labels = np.arange(n_classes)
    y_pred = proba.argmax(axis=1)
    binary = n_classes == 2 and positive is not None
    average = dict(average="binary", pos_label=positive) if binary else dict(average="macro", labels=labels)

    result = {
        "precision": skm.precision_score(y_true, y_pred, zero_division=0, **average),
        "recall": skm.recall_score(y_true, y_pred, zero_division=0, **average),
        "f_measure": skm.f1_score(y_true, y_pred, zero_division=0, **average),
        "accuracy": skm.accuracy_score(y_true, y_pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y_true, y_pred),
        "g_mean": geometric_mean_score(y_true, y_pred, labels=labels, average="multiclass"),
        "g_mean_macro": geometric_mean_score(y_true, y_pred, labels=labels, average="macro"),
        "roc_auc": _roc_auc(y_true, proba, positive if binary else None),
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "per_class_recall": skm.recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0).tolist(),
    }
    return {k: (float(v) if isinstance(v, np.floating | float) else v) for k, v in result.items()}


def derived_metrics(metrics):
    """``metrics`` (a stored cell's) with the G-mean it predates added: ``g_mean_macro`` from the stored confusion
    matrix, through imbalanced-learn on the labels the matrix counts (exact: the metric is a function of the
    matrix). Anything else, or a cell that already has it, is returned as it is."""
    if not isinstance(metrics, dict) or "g_mean_macro" in metrics or not metrics.get("confusion_matrix"):
        return metrics
    from imblearn.metrics import geometric_mean_score

    matrix = np.asarray(metrics["confusion_matrix"], dtype=np.int64)
    labels = np.arange(len(matrix))
    y_true = np.repeat(labels, matrix.sum(axis=1))
    y_pred = np.concatenate([np.repeat(labels, row) for row in matrix])
    value = geometric_mean_score(y_true, y_pred, labels=labels, average="macro")
    return {**metrics, "g_mean_macro": float(value)}


def roc_points(y_true, proba, positive: int = 1) -> dict:
    """The ROC curve of the positive class (what the report needs to average curves over seeds)."""
    from sklearn import metrics as skm

    y_true = np.asarray(y_true)
    if len(np.unique(y_true)) < 2:
        return {}
    fpr, tpr, _ = skm.roc_curve(y_true == positive, np.asarray(proba)[:, positive])
    return {"fpr": np.round(fpr, 6).tolist(), "tpr": np.round(tpr, 6).tolist()}


def _roc_auc(y_true, proba, positive) -> float:
    from sklearn import metrics as skm

    present = np.unique(y_true)
    if len(present) < 2:  # undefined on a one-class test set
        return float("nan")
    if positive is not None:
        return skm.roc_auc_score(y_true == positive, proba[:, positive])
    if len(present) < proba.shape[1]:
        return float("nan")
    return skm.roc_auc_score(y_true, proba, multi_class="ovr", average="macro")
