"""crl: the class rectification loss on hand-made batches, the minority rule, alpha, and end-to-end cells."""

import json

import numpy as np
import pytest
import torch
from helpers import digits_cell, repeatable

import bench.methods.crl  # noqa: F401  (registers "crl")
from bench.cell import CellEnv, run_cell
from bench.datasets.imbalance import make_imbalanced
from bench.methods import FitContext
from bench.methods.classifier import CLASSIFIER_SPEC, Classifier, CommonCNN
from bench.methods.crl import (
    CRL,
    class_rectification_loss,
    crl_batch_loss,
    imbalance_measure,
    minority_classes,
)

CPU = torch.device("cpu")


def _scores(minority_probs, majority_probs):
    """A binary batch: majority samples (label 0) first, then minority (label 1); column 1 holds p(y=1|x)."""
    p1 = torch.tensor(list(majority_probs) + list(minority_probs), dtype=torch.float64)
    labels = torch.tensor([0] * len(majority_probs) + [1] * len(minority_probs))
    return torch.stack([1 - p1, p1], 1), labels


def test_minority_rule_takes_smallest_classes_up_to_half_the_batch():
    # counts: class 0: 9, 1: 5, 2: 4, 3: 1, 4: 1, 5: 0; half the batch = 10. Smallest first: 5 (0), 3 (1),
    # 4 (1), 2 (4) -> running sum 6 <= 10; adding class 1 (5) gives 11 > 10. Classes 3, 4 have one sample.
    labels = torch.tensor([0] * 9 + [1] * 5 + [2] * 4 + [3, 4])
    assert minority_classes(labels, 6).tolist() == [False, False, True, False, False, False]
    assert minority_classes(labels, 6, rho=0.6).tolist() == [False, True, True, False, False, False]
    # Three classes 10/10/12 of 32: the two smallest sum to 20 > 16, so only one of them (the lower index).
    labels = torch.tensor([0] * 10 + [1] * 10 + [2] * 12)
    assert minority_classes(labels, 3).tolist() == [True, False, False]
    # Binary: the smaller class, whichever label it has.
    assert minority_classes(torch.tensor([0] * 60 + [1] * 4), 2).tolist() == [False, True]
    assert minority_classes(torch.tensor([0] * 5 + [1] * 59), 2).tolist() == [True, False]


def test_class_level_relative_loss_is_zero_when_negatives_are_farther_by_the_margin():
    scores, labels = _scores(minority_probs=[0.9, 0.85], majority_probs=[0.1, 0.2, 0.15, 0.05, 0.1, 0.2])
    # Anchor 0.9: d(a,+) = 0.05, nearest negative d(a,-) = 0.9 - 0.2 = 0.7: 0.5 + 0.05 - 0.7 < 0; likewise 0.85.
    loss = class_rectification_loss(scores, None, labels, kappa=25, margin=0.5)
    assert loss.item() == 0.0


def test_class_level_relative_loss_matches_the_hand_computed_value():
    scores, labels = _scores(minority_probs=[0.9, 0.85], majority_probs=[0.1, 0.6, 0.15, 0.05, 0.1, 0.2])
    # kappa = 1: hardest negative 0.6. Anchor 0.9: 0.5 + 0.05 - 0.30 = 0.25; anchor 0.85: 0.5 + 0.05 - 0.25 = 0.30.
    one = class_rectification_loss(scores, None, labels, kappa=1, margin=0.5)
    assert one.item() == pytest.approx(0.275)
    # kappa = 2 adds negative 0.2 (both hinges 0): the mean is over 4 triplets.
    two = class_rectification_loss(scores, None, labels, kappa=2, margin=0.5)
    assert two.item() == pytest.approx(0.55 / 4)
    # Contrastive (absolute) comparison: 0.5 * (0.05^2 + mean(0.2^2, 0.25^2)).
    absolute = class_rectification_loss(scores, None, labels, comparison="absolute", kappa=1, margin=0.5)
    assert absolute.item() == pytest.approx(0.5 * (0.05 ** 2 + (0.2 ** 2 + 0.25 ** 2) / 2))


def test_class_level_loss_pushes_the_hard_negative_down_and_the_anchors_up():
    scores, labels = _scores(minority_probs=[0.9, 0.5], majority_probs=[0.1, 0.6, 0.15])
    scores.requires_grad_(True)
    class_rectification_loss(scores, None, labels, kappa=1, margin=0.5).backward()
    grad = scores.grad[:, 1]
    assert grad[1] > 0  # the hardest negative (0.6): descent lowers its minority score
    assert grad[0] == 0 and grad[2] == 0  # the other negatives are not mined
    assert grad[4] < 0  # the low-scored minority anchor is raised


def test_instance_level_relative_loss_uses_feature_distances():
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    scores = torch.nn.functional.one_hot(labels, 2).double()
    far = torch.tensor([[5.0], [6.0], [7.0], [8.0], [0.0], [1.0]], dtype=torch.float64)
    assert class_rectification_loss(scores, far, labels, level="instance", kappa=1, margin=0.5).item() == 0.0
    near = torch.tensor([[5.0], [6.0], [1.2], [8.0], [0.0], [1.0]], dtype=torch.float64)
    # Anchor 0: d+ = 1, nearest negative 1.2 -> 0.3; anchor 1: d+ = 1, nearest negative 0.2 -> 1.3.
    loss = class_rectification_loss(scores, near, labels, level="instance", kappa=1, margin=0.5)
    assert loss.item() == pytest.approx(0.8)


def test_distribution_comparison_measures_how_often_a_negative_is_nearer():
    scores, labels = _scores(minority_probs=[0.9, 0.85], majority_probs=[0.1, 0.2, 0.15])
    assert class_rectification_loss(scores, None, labels, comparison="distribution").item() == 0.0
    scores, labels = _scores(minority_probs=[0.9, 0.85], majority_probs=[0.99, 0.98, 0.97])
    # Every anchor-negative "distance" p_a - p_- is below every anchor-positive one: probability 1.
    loss = class_rectification_loss(scores, None, labels, comparison="distribution")
    assert loss.item() == pytest.approx(1.0)


def test_no_minority_anchor_means_no_rectification_loss():
    scores, labels = _scores(minority_probs=[0.1], majority_probs=[0.9, 0.8, 0.7])  # one minority sample
    for comparison in ("relative", "absolute", "distribution"):
        assert class_rectification_loss(scores, None, labels, comparison=comparison).item() == 0.0


def test_imbalance_measure_and_alpha():
    assert imbalance_measure([90, 10]) == pytest.approx(40.0)
    assert imbalance_measure([50, 50]) == 0.0
    assert imbalance_measure([70, 20, 10]) == pytest.approx(100 * ((1 / 3 - 0.2) + (1 / 3 - 0.1)))
    assert imbalance_measure([90, 10, 0]) == pytest.approx(40.0)  # absent classes are not counted
    counts = np.array([120, 12])
    assert 0.01 * imbalance_measure(counts) == pytest.approx(0.01 * 100 * (0.5 - 12 / 132))


@pytest.fixture(scope="module")
def task(digits):
    return make_imbalanced(*digits, pair=(3, 5), ratio=0.1, seed=0)


def test_fit_sets_alpha_from_the_training_counts(task, tmp_path):
    ctx = FitContext(device=CPU, seed=0, epochs=1, artifact_dir=tmp_path)
    method = CRL(eta=0.02)
    method.fit(task.train, ctx)
    assert method.alpha == pytest.approx(0.02 * imbalance_measure(task.train.counts()))
    assert 0 < method.alpha < 1
    logged = json.loads((tmp_path / "crl.json").read_text())
    assert logged["alpha"] == method.alpha and logged["margin"] == pytest.approx(np.pi)  # 2 pi / 2 classes


def test_zero_eta_trains_exactly_like_cross_entropy(task, tmp_path):
    ctx = FitContext(device=CPU, seed=4, epochs=2, artifact_dir=tmp_path)
    plain = Classifier()
    plain.fit(task.train, ctx)
    zero = CRL(eta=0.0)
    zero.fit(task.train, ctx)
    assert zero.alpha == 0.0
    for name, weight in plain.model.state_dict().items():
        assert torch.equal(weight, zero.classifier.model.state_dict()[name]), name
    rectified = CRL()
    rectified.fit(task.train, ctx)
    assert not torch.equal(plain.model.head[-1].weight, rectified.classifier.model.head[-1].weight)


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 64, 64)])
def test_every_variant_gives_finite_gradients_at_every_size(shape):
    torch.manual_seed(0)
    model = CommonCNN(shape, 3)
    x = torch.rand(12, *shape) * 2 - 1
    x[11] = x[10]  # identical minority samples: zero feature distance must not give NaN gradients
    y = torch.tensor([0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2])
    comparisons = ("relative", "absolute", "distribution") if shape == (1, 8, 8) else ("relative",)
    for level in ("class", "instance"):
        for comparison in comparisons:
            model.zero_grad()
            loss = crl_batch_loss(model, x, y, 0.5, level=level, comparison=comparison, kappa=3, margin=0.5,
                                  rho=0.5, bins=101)
            loss.backward()
            assert torch.isfinite(loss)
            assert all(torch.isfinite(p.grad).all() for p in model.parameters()), (level, comparison)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="level"):
        CRL(level="pixel")
    with pytest.raises(ValueError, match="comparison"):
        CRL(comparison="cosine")
    with pytest.raises(ValueError, match="kappa"):
        CRL(kappa=0)


def _cell(seed=0, **params):
    return digits_cell("crl", seed, **params)


def test_end_to_end_cell_and_same_seed_same_numbers(digits, tmp_path):
    a = run_cell(_cell(seed=2), *digits, CellEnv(CPU, tmp_path))
    assert a["status"] == "done", a.get("error")
    assert 0 <= a["metrics"]["g_mean"] <= 1
    assert a["params"]["classifier"] == CLASSIFIER_SPEC and a["params"]["level"] == "class"
    logged = json.loads((tmp_path / a["artifacts"] / "crl.json").read_text())
    assert 0 < logged["alpha"] < 1
    b = run_cell(_cell(seed=2), *digits, CellEnv(CPU, tmp_path))
    assert repeatable(a["metrics"]) == repeatable(b["metrics"]) and a["curves"] == b["curves"]


def test_instance_level_fit_is_deterministic(task, tmp_path):
    probas = []
    for _ in range(2):
        method = CRL(level="instance")
        method.fit(task.train, FitContext(device=CPU, seed=1, epochs=1, artifact_dir=tmp_path))
        probas.append(method.predict_proba(task.test.images))
    assert np.array_equal(*probas)
    assert probas[0].shape == (len(task.test), 2) and np.allclose(probas[0].sum(1), 1)
