"""Metrics cross-checked against scikit-learn and imbalanced-learn on hand-built cases."""

import math

import numpy as np
import pytest
from imblearn.metrics import geometric_mean_score
from sklearn import metrics as skm

from bench.metrics import classification_metrics, roc_points


def _binary_case():
    # 10 test images: 6 majority (0), 4 minority (1). Predictions: TP=3, FN=1, FP=2, TN=4.
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    p1 = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.9, 0.8, 0.55, 0.45])
    return y, np.stack([1 - p1, p1], axis=1)


def test_binary_metrics_by_hand_and_against_libraries():
    y, proba = _binary_case()
    m = classification_metrics(y, proba, positive=1)
    # By hand: precision 3/5, recall 3/4, specificity 4/6.
    assert m["precision"] == pytest.approx(3 / 5)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f_measure"] == pytest.approx(2 * 0.6 * 0.75 / (0.6 + 0.75))
    assert m["accuracy"] == pytest.approx(7 / 10)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 4 / 6) / 2)
    assert m["g_mean"] == pytest.approx(math.sqrt(3 / 4 * 4 / 6))
    assert m["confusion_matrix"] == [[4, 2], [1, 3]]
    assert m["per_class_recall"] == pytest.approx([4 / 6, 3 / 4])
    y_pred = proba.argmax(1)
    assert m["g_mean"] == pytest.approx(geometric_mean_score(y, y_pred))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba[:, 1]))
    # AUC by hand: pairs (minority score > majority score) out of 24.
    wins = sum((a > b) + 0.5 * (a == b) for a in proba[y == 1, 1] for b in proba[y == 0, 1])
    assert m["roc_auc"] == pytest.approx(wins / 24)


def test_positive_label_is_the_minority_class():
    y, proba = _binary_case()
    swapped = classification_metrics(1 - y, proba[:, ::-1], positive=0)
    normal = classification_metrics(y, proba, positive=1)
    for name in ("precision", "recall", "f_measure", "g_mean", "roc_auc"):
        assert swapped[name] == pytest.approx(normal[name])


def test_multiclass_macro_against_sklearn():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), [20, 10, 5])
    logits = rng.normal(size=(35, 3)) + 2.0 * np.eye(3)[y]
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = classification_metrics(y, proba, positive=None)
    y_pred = proba.argmax(1)
    assert m["precision"] == pytest.approx(skm.precision_score(y, y_pred, average="macro", zero_division=0))
    assert m["recall"] == pytest.approx(skm.recall_score(y, y_pred, average="macro"))
    assert m["f_measure"] == pytest.approx(skm.f1_score(y, y_pred, average="macro"))
    assert m["balanced_accuracy"] == pytest.approx(np.mean(m["per_class_recall"]))
    assert m["g_mean"] == pytest.approx(geometric_mean_score(y, y_pred))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"))


def test_one_class_test_set_gives_nan_auc_not_a_crash():
    y = np.zeros(4, dtype=int)
    proba = np.tile([0.7, 0.3], (4, 1))
    m = classification_metrics(y, proba)
    assert math.isnan(m["roc_auc"])
    assert m["accuracy"] == 1.0
    assert roc_points(y, proba) == {}


def test_roc_points_end_at_the_corners():
    y, proba = _binary_case()
    roc = roc_points(y, proba)
    assert roc["fpr"][0] == 0 and roc["tpr"][0] == 0
    assert roc["fpr"][-1] == 1 and roc["tpr"][-1] == 1
    assert np.trapezoid(roc["tpr"], roc["fpr"]) == pytest.approx(skm.roc_auc_score(y, proba[:, 1]))


def test_bad_probabilities_are_rejected():
    y, proba = _binary_case()
    with pytest.raises(ValueError, match="shape"):
        classification_metrics(y, proba[:5])
    proba[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        classification_metrics(y, proba)


def _three_classes():
    # 3 classes, 5 / 4 / 3 test images; class 2 is never predicted right
    y = np.array([0] * 5 + [1] * 4 + [2] * 3)
    pred = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1, 0])
    return y, np.eye(3)[pred] * 0.7 + 0.1  # rows sum to 1


def test_the_two_g_means_by_hand():
    """g_mean: the geometric mean of the recalls; g_mean_macro: sqrt(mean sensitivity x mean specificity)."""
    y, proba = _three_classes()
    m = classification_metrics(y, proba, positive=None)
    recalls = [4 / 5, 3 / 4, 0 / 3]
    specificities = [1 - 3 / 7, 1 - 2 / 8, 1 - 0 / 9]  # false positives over the other classes' images
    assert m["per_class_recall"] == pytest.approx(recalls)
    assert m["g_mean"] == 0.0  # one class missed zeroes the recalls' G-mean
    assert m["g_mean_macro"] == pytest.approx(math.sqrt(np.mean(recalls) * np.mean(specificities)))
    assert m["g_mean_macro"] > m["balanced_accuracy"]  # as in every DeepSMOTE row: never so for g_mean
    assert m["g_mean_macro"] == pytest.approx(geometric_mean_score(y, proba.argmax(1), average="macro"))


def test_on_two_classes_the_g_means_differ_the_macro_one_is_balanced_accuracy():
    y, proba = _binary_case()
    m = classification_metrics(y, proba, positive=1)
    assert m["g_mean"] == pytest.approx(math.sqrt(3 / 4 * 4 / 6))  # the binary G-mean, sqrt(TPR x TNR)
    assert m["g_mean_macro"] == pytest.approx((3 / 4 + 4 / 6) / 2) == pytest.approx(m["balanced_accuracy"])


def test_a_cell_stored_before_g_mean_macro_gets_it_from_its_confusion_matrix(tmp_path):
    from bench.metrics import derived_metrics
    from bench.store import Store

    y, proba = _three_classes()
    fresh = classification_metrics(y, proba, positive=None)
    old = {k: v for k, v in fresh.items() if k != "g_mean_macro"}
    assert derived_metrics(old)["g_mean_macro"] == pytest.approx(fresh["g_mean_macro"], abs=1e-15)
    assert derived_metrics(fresh) is fresh and derived_metrics(None) is None
    assert "g_mean_macro" not in derived_metrics({"g_mean": 0.5})  # no matrix: nothing invented
    with Store(tmp_path / "r") as store:  # the store adds it on read and never writes it back
        store.add({"key": "k", "method": "m", "params": {}, "dataset": "d", "protocol": "gamo", "pair": None,
                   "ratio": 0.01, "seed": 0, "epochs": 1, "counts": {}, "status": "done", "metrics": old,
                   "error": None, "started_at": "2026-12-01T00:00:00", "finished_at": "2026-12-01T00:01:00",
                   "duration_s": 60.0, "device": "cpu", "versions": {}})
        assert store.cells()["metrics"][0]["g_mean_macro"] == pytest.approx(fresh["g_mean_macro"])
        raw = store._conn.execute("SELECT metrics FROM results").fetchone()[0]
    assert "g_mean_macro" not in raw
