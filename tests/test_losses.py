"""The loss-based long-tail methods (focal, cb-ce, cb-focal, ldam-drw, logit-adjust, balanced-softmax): each loss
against a value computed by hand on a tiny batch, then each method end to end on digits and on a 3x32x32 task,
deterministic for a seed and different for another. (Their budget is checked with every method's in
``test_budget.py``.)"""

from __future__ import annotations

import math
from fractions import Fraction
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import digits_cell, repeatable

from bench.cell import CellEnv, run_cell
from bench.datasets.base import ImageSet
from bench.methods import FitContext, get_method
from bench.methods.class_balanced import class_balanced_weights
from bench.methods.classifier import CLASSIFIER_SPEC, CommonCNN
from bench.methods.ldam_drw import ldam_loss, ldam_margins

CPU = torch.device("cpu")
LOSSES = ["focal", "cb-ce", "cb-focal", "ldam-drw", "logit-adjust", "balanced-softmax"]


def _method(name, counts, **params):
    method = get_method(name)(**params)
    method.train_counts = np.asarray(counts)
    return method


def _loss(method, logits, y):
    return float(method.batch_loss(lambda x: torch.tensor(logits, dtype=torch.float32), None, torch.tensor(y)))


def test_the_effective_number_weights_by_hand():
    # counts 100 and 10, beta 0.99: 1/E_n = 0.01 / (1 - 0.99^n), normalised to sum to 2
    raw = [0.01 / (1 - 0.99 ** 100), 0.01 / (1 - 0.99 ** 10)]
    assert raw == pytest.approx([0.0157738, 0.1045826], rel=1e-5)
    assert class_balanced_weights([100, 10], 0.99) == pytest.approx([2 * r / sum(raw) for r in raw])
    assert class_balanced_weights([100, 10], 0.0) == pytest.approx([1.0, 1.0])  # beta 0: no re-balancing
    near_one = class_balanced_weights([100, 10], 1 - 1e-9)  # beta -> 1: inverse frequency, 1/100 : 1/10
    assert near_one[1] / near_one[0] == pytest.approx(10.0, rel=1e-4)
    with pytest.raises(ValueError, match="beta"):
        get_method("cb-ce")(beta=1.0)


def test_focal_and_cb_focal_by_hand():
    # logits (0, 0): p_t = 0.5; softmax focal, gamma 2: (1 - 0.5)^2 log 2
    assert _loss(_method("focal", [5, 1]), [[0.0, 0.0]], [0]) == pytest.approx(0.25 * math.log(2))
    assert _loss(_method("focal", [5, 1], gamma=0.0), [[2.0, -1.0]], [1]) == pytest.approx(
        -math.log(math.exp(-1) / (math.exp(2) + math.exp(-1))))  # gamma 0: cross-entropy
    # sigmoid focal, gamma 1, beta 0 (weights 1): two one-vs-all terms of 0.5 log 2 each
    assert _loss(_method("cb-focal", [5, 1], beta=0.0), [[0.0, 0.0]], [0]) == pytest.approx(math.log(2))
    # with weights: the sample's class weight multiplies its terms
    w = class_balanced_weights([5, 1], 0.5)
    assert _loss(_method("cb-focal", [5, 1], beta=0.5), [[0.0, 0.0], [0.0, 0.0]], [0, 1]) == pytest.approx(
        (w[0] + w[1]) * math.log(2) / 2)


def test_cb_ce_is_the_weighted_cross_entropy():
    w = class_balanced_weights([5, 1], 0.9)
    ce = [math.log(1 + math.e ** 1), math.log(1 + math.e ** -1)]  # sample 0 (class 0), sample 1 (class 1)
    assert _loss(_method("cb-ce", [5, 1], beta=0.9), [[0.0, 1.0], [0.0, 1.0]], [0, 1]) == pytest.approx(
        (w[0] * ce[0] + w[1] * ce[1]) / (w[0] + w[1]))


def test_ldam_margins_and_loss_by_hand():
    assert ldam_margins([16, 1], 0.5) == pytest.approx([0.25, 0.5])  # n^-1/4: 1/2 and 1, the largest 0.5
    # cosines (0.2, 0.1), class 1: (0.2, 0.1 - 0.5) scaled by 30 -> -log softmax_1 = log(e^6 + e^-12) + 12
    value = ldam_loss(torch.tensor([[0.2, 0.1]]), torch.tensor([1]), torch.tensor([0.25, 0.5]), 30.0)
    assert float(value) == pytest.approx(18 + math.log1p(math.exp(-18)), rel=1e-6)


def test_ldam_drw_defers_the_class_balanced_weights_to_the_last_fifth():
    method = _method("ldam-drw", [16, 1])
    cosines, y = [[0.3, 0.1], [0.2, 0.4]], [0, 1]
    margins = torch.tensor([0.25, 0.5])
    plain = float(ldam_loss(torch.tensor(cosines), torch.tensor(y), margins, 30.0))
    weights = torch.tensor(class_balanced_weights([16, 1], 0.9999), dtype=torch.float32)
    weighted = float(ldam_loss(torch.tensor(cosines), torch.tensor(y), margins, 30.0, weights))
    assert plain != pytest.approx(weighted)
    for update, expected in ((0, plain), (7, plain), (8, weighted), (9, weighted)):  # U = 10: from update 8
        method.classifier = SimpleNamespace(update=update, updates=10)
        assert _loss(method, cosines, y) == pytest.approx(expected, rel=1e-6), update
    assert get_method("ldam-drw")().key_params()["classifier"] == {**CLASSIFIER_SPEC, "head": "cosine"}
    with pytest.raises(ValueError, match="drw_fraction"):
        get_method("ldam-drw")(drw_fraction=1.5)


def _reweighted_updates(monkeypatch, tmp_path, epochs: int, **params) -> tuple[list[bool], int]:
    """Fit ldam-drw for ``epochs`` on a tiny 1x8x8 task of 200 + 20 images (S = ceil(2 x 200 / 64) = 7 updates
    per epoch); return, per optimiser update in order, whether its loss got class weights, and the ledger's U."""
    import bench.methods.ldam_drw as ldam_drw

    calls = []

    def recording(cosines, y, margins, scale, weight=None):
        calls.append(weight is not None)
        return ldam_loss(cosines, y, margins, scale, weight)

    monkeypatch.setattr(ldam_drw, "ldam_loss", recording)
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], [200, 20]).astype(np.int64)
    images = rng.integers(0, 256, (len(labels), 1, 8, 8), dtype=np.uint8)
    ctx = FitContext(device=CPU, seed=0, epochs=epochs, artifact_dir=tmp_path / f"e{epochs}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: one thread is the fastest (E = 50 is 350 updates)
    try:
        get_method("ldam-drw")(**params).fit(ImageSet(images, labels, ("0", "1")), ctx)
    finally:
        torch.set_num_threads(threads)
    return calls, ctx.ledger.contract["classifier"]


@pytest.mark.parametrize("epochs", [1, 2, 5, 50])
def test_ldam_drw_reweights_the_last_fifth_of_the_updates_for_any_epochs(epochs, monkeypatch, tmp_path):
    """The documented switch: updates ceil(0.8 U) .. U - 1 (0-based) re-weighted, whatever E is; at E a multiple of
    5 that is the official epoch boundary, the first update of epoch 0.8 E + 1."""
    calls, updates = _reweighted_updates(monkeypatch, tmp_path, epochs)
    steps = math.ceil(2 * 200 / 64)
    assert updates == epochs * steps and len(calls) == updates  # one loss per update of the contract's U
    first = math.ceil(Fraction(4, 5) * updates)
    assert calls == [False] * first + [True] * (updates - first)  # off until ``first``, then on to the end
    assert any(calls)  # E = 1 and 2 re-weight too (the per-epoch switch never did below 5 epochs)
    if epochs % 5 == 0:
        assert first == (4 * epochs // 5) * steps  # epochs 0.8 E + 1 .. E, as the official 161-200 of 200


@pytest.mark.parametrize(("drw_fraction", "expected"), [(1.0, False), (0.0, True)])
def test_ldam_drw_fraction_one_never_and_zero_always_reweights(drw_fraction, expected, monkeypatch, tmp_path):
    for epochs in (1, 5):
        calls, updates = _reweighted_updates(monkeypatch, tmp_path, epochs, drw_fraction=drw_fraction)
        assert calls == [expected] * updates


def test_logit_adjustment_and_balanced_softmax_by_hand():
    # counts 3 and 1, logits 0: the prior (0.75, 0.25) inside the softmax; class 1 -> -log 0.25 = log 4
    assert _loss(_method("logit-adjust", [3, 1]), [[0.0, 0.0]], [1]) == pytest.approx(math.log(4))
    assert _loss(_method("balanced-softmax", [3, 1]), [[0.0, 0.0]], [1]) == pytest.approx(math.log(4))
    assert _loss(_method("logit-adjust", [3, 1], tau=0.0), [[0.0, 0.0]], [1]) == pytest.approx(math.log(2))
    # tau 2: offsets 2 log pi -> p_1 = 0.25^2 / (0.75^2 + 0.25^2) = 0.1
    assert _loss(_method("logit-adjust", [3, 1], tau=2.0), [[0.0, 0.0]], [1]) == pytest.approx(-math.log(0.1))


@pytest.mark.parametrize("name", LOSSES)
def test_each_runs_on_digits_same_seed_same_numbers(name, digits, tmp_path):
    a = run_cell(digits_cell(name, seed=1, epochs=30), *digits, CellEnv(CPU, tmp_path / "a"))
    b = run_cell(digits_cell(name, seed=1, epochs=30), *digits, CellEnv(CPU, tmp_path / "b"))
    assert a["status"] == "done", a["error"]
    assert repeatable(a["metrics"]) == repeatable(b["metrics"]) and a["curves"] == b["curves"]
    assert a["metrics"]["budget"]["roles"]["classifier"]["updates"] == a["metrics"]["budget"]["contract"]["classifier"]
    assert a["metrics"]["g_mean"] > 0.8  # it learned: the smoke preset's 30 epochs on digits 3 vs 5


@pytest.mark.parametrize("name", LOSSES)
def test_each_trains_on_a_3x32x32_task_and_the_seed_matters(name, colour_task, tmp_path):
    probas = {}
    for run, seed in (("a", 0), ("b", 0), ("c", 1)):
        method = get_method(name)()
        method.fit(colour_task.train, FitContext(device=CPU, seed=seed, epochs=2, artifact_dir=tmp_path / run))
        probas[run] = method.predict_proba(colour_task.test.images)
    assert probas["a"].shape == (len(colour_task.test), 2) and np.allclose(probas["a"].sum(1), 1)
    assert np.array_equal(probas["a"], probas["b"]) and not np.allclose(probas["a"], probas["c"])
    if name == "ldam-drw":
        assert isinstance(method.classifier.model, CommonCNN) and method.classifier.model.head[-1].weight.shape == (2, 128)


def test_logit_adjust_at_tau_1_and_balanced_softmax_predict_alike(colour_task, tmp_path):
    """log n_c and log pi_c differ by a constant the softmax ignores: the same training up to float rounding."""
    probas = []
    for name in ("logit-adjust", "balanced-softmax"):
        method = get_method(name)()
        method.fit(colour_task.train, FitContext(device=CPU, seed=0, epochs=2, artifact_dir=tmp_path / name))
        probas.append(method.predict_proba(colour_task.test.images))
    assert np.allclose(probas[0], probas[1], atol=1e-4)
    assert (probas[0].argmax(1) == probas[1].argmax(1)).mean() > 0.99
