"""Fused training (``methods/fused.py``, issue 30): a member of a group is exactly its own cell.

Each test trains the common classifier for k >= 3 updates in a group and alone, from the same seeds and sets,
and compares every member's parameters (and batch-norm buffers) with its solo cell's. A group of one is the
solo cell bit for bit (the same code); a member of a larger group matches to float rounding, because a grouped
convolution and a batched matrix product add in another order than the plain ones. Tolerances (absolute, on
every weight), with the largest differences measured on this suite's 2-core AVX2 machine:
- the CNN, ``ATOL`` 1e-5 (Adam's first steps move a weight by about lr = 1e-3, so a hundredth of one step):
  measured 3e-8 on 8x8 images, 5e-7 on 28x28;
- ResNet-32, ``ATOL_RESNET`` 5e-4: measured 2e-5 (Adam, 3 updates) and 7e-5 (SGD at lr 0.1 with momentum,
  4 updates). Its training at these settings amplifies rounding: the solo cell itself, with every initial
  weight moved by 1e-7, ends 3e-3 away after 2 updates, 40 times the members' difference.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from bench.datasets import load_dataset
from bench.datasets.base import ImageSet, LoadOptions
from bench.errors import CellFailure
from bench.methods.base import FitContext
from bench.methods.budget import Ledger
from bench.methods.classifier import Classifier, Member, classifier_spec, fit_group, predict_group

ATOL = 1e-5
ATOL_RESNET = 5e-4
CPU = torch.device("cpu")
COUNTS = (96, 20)  # U = 1 x ceil(2 x 96 / 64) = 3 updates at E = 1 with the Adam recipe's batch 64


@functools.cache
def digits(size: int) -> ImageSet:
    options = LoadOptions() if size == 8 else LoadOptions(image_size=size)
    return load_dataset("digits", split="train", options=options)


def image_set(seed: int, size: int = 8, counts=COUNTS) -> ImageSet:
    """A member's own training set: ``counts`` images of the digits 3 and 5 (the bundled set), drawn with
    its seed (so every member's set has the same size and its own images)."""
    rng, source = np.random.default_rng(seed), digits(size)
    chosen = [rng.choice(np.flatnonzero(source.labels == digit), n, replace=False)
              for digit, n in zip((3, 5), counts, strict=True)]
    labels = np.repeat(np.arange(len(counts)), counts).astype(np.int64)
    return ImageSet(source.images[np.concatenate(chosen)], labels, ("3", "5"))


def member(seed: int, tmp_path, spec, loss=None, epochs: int = 1, size: int = 8) -> Member:
    ctx = FitContext(device=CPU, seed=seed, epochs=epochs, artifact_dir=tmp_path / f"s{seed}", ledger=Ledger())
    return Member(Classifier(spec, loss=loss), image_set(seed, size), ctx)


def params(classifier: Classifier) -> dict[str, torch.Tensor]:
    """Every parameter and buffer (batch norm's running statistics) of the trained network."""
    return {name: p.detach().clone().float() for name, p in classifier.model.state_dict().items()}


def solo(seed: int, tmp_path, spec, loss=None, epochs: int = 1, size: int = 8):
    one = member(seed, tmp_path / "solo", spec, loss, epochs, size)
    history = one.classifier.fit(one.train, one.ctx)
    return params(one.classifier), history, one


def largest_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def margin_loss(model, x, y):
    """A loss on the normalised last layer (LDAM's shape of loss): scaled cosines, a margin on the true class."""
    cosines = model(x)
    return torch.nn.functional.cross_entropy(30 * (cosines - 0.2 * torch.nn.functional.one_hot(y, 2)), y)


def feature_loss(model, x, y):
    """A loss that reads the penultimate features as ``crl`` does: embed, then classify those features."""
    features = model.embed(x)
    return torch.nn.functional.cross_entropy(model.classify(features), y) + 1e-3 * features.pow(2).mean()


CASES = {
    "adam": (classifier_spec("cnn", "adam"), None, 1, 8),
    "adam-28x28": (classifier_spec("cnn", "adam"), None, 1, 28),
    # the SGD recipe's batch is 128: E = 2 gives 2 x ceil(192 / 128) = 4 updates, through warm-up and decay
    "longtail-sgd": (classifier_spec("cnn", "longtail-sgd"), None, 2, 8),
    "cosine-head": (classifier_spec("cnn", "adam", head="cosine"), margin_loss, 1, 8),
    "features": (classifier_spec("cnn", "adam"), feature_loss, 1, 8),
    # batch norm: each member's statistics and running buffers its own
    "resnet32": (classifier_spec("resnet32", "adam"), None, 1, 8),
    "resnet32-sgd-cosine": (classifier_spec("resnet32", "longtail-sgd", head="cosine"), margin_loss, 2, 8),
}


@pytest.mark.parametrize("case", CASES)
def test_each_member_of_a_group_is_its_solo_cell(case, tmp_path):
    spec, loss, epochs, size = CASES[case]
    seeds = (0, 1, 2)
    group = [member(seed, tmp_path, spec, loss, epochs, size) for seed in seeds]
    outcomes = fit_group(group)
    for seed, m, outcome in zip(seeds, group, outcomes, strict=True):
        alone, history, one = solo(seed, tmp_path, spec, loss, epochs, size)
        tolerance = ATOL_RESNET if spec["arch"] == "resnet32" else ATOL
        assert largest_difference(params(m.classifier), alone) < tolerance, f"seed {seed}"
        assert np.allclose(outcome, history, rtol=1e-5), f"seed {seed}: epoch losses {outcome} vs {history}"
        # the ledger counts each member's U updates on its own batches, as the solo cell's does
        fused_roles, solo_roles = m.ctx.ledger.record(), one.ctx.ledger.record()
        for key in ("updates", "optimizers", "images"):
            assert fused_roles["classifier"][key] == solo_roles["classifier"][key]
        assert m.ctx.ledger.contract == one.ctx.ledger.contract
    # the members really differ (their seeds and data), so the comparison above could fail
    assert largest_difference(params(group[0].classifier), params(group[1].classifier)) > 1e-3


def test_a_member_gets_the_same_numbers_whatever_its_mates(tmp_path):
    spec = classifier_spec("cnn", "adam")
    beside_two = [member(seed, tmp_path / "a", spec) for seed in (0, 1, 2)]
    beside_one = [member(seed, tmp_path / "b", spec) for seed in (5, 1)]
    fit_group(beside_two)
    fit_group(beside_one)
    assert largest_difference(params(beside_two[1].classifier), params(beside_one[1].classifier)) < ATOL


def test_a_diverging_member_fails_alone(tmp_path):
    spec = classifier_spec("cnn", "adam")

    def exploding(model, x, y):  # this member's loss is NaN from its first update
        return torch.nn.functional.cross_entropy(model(x), y) * float("nan")

    group = [member(0, tmp_path, spec), member(1, tmp_path, spec, loss=exploding), member(2, tmp_path, spec)]
    outcomes = fit_group(group)
    assert isinstance(outcomes[1], CellFailure) and "diverged at epoch 1" in str(outcomes[1])
    for index, seed in ((0, 0), (2, 2)):
        alone, history, _ = solo(seed, tmp_path, spec)
        assert largest_difference(params(group[index].classifier), alone) < ATOL
        assert np.allclose(outcomes[index], history, rtol=1e-5)
    assert not (group[1].ctx.artifact_dir / "classifier_losses.json").exists()
    assert (group[0].ctx.artifact_dir / "classifier_losses.json").exists()


def test_a_group_of_one_is_the_solo_cell_bit_for_bit(tmp_path):
    spec = classifier_spec("cnn", "adam")
    one = member(3, tmp_path / "group", spec)
    fit_group([one])
    alone, _, _ = solo(3, tmp_path, spec)
    assert largest_difference(params(one.classifier), alone) == 0.0


def test_members_that_cannot_train_in_lockstep_are_refused(tmp_path):
    spec = classifier_spec("cnn", "adam")
    other = member(1, tmp_path, spec)
    other.train = image_set(1, counts=(96, 21))  # one more image: batches of another size at a pass's end
    with pytest.raises(ValueError, match="must share recipe, image shape, set size"):
        fit_group([member(0, tmp_path, spec), other])
    with pytest.raises(ValueError, match="must share recipe"):
        fit_group([member(0, tmp_path, spec), member(1, tmp_path, classifier_spec("resnet32", "adam"))])


def test_a_fused_members_loss_sees_only_its_own_outputs(tmp_path):
    spec = classifier_spec("cnn", "adam")

    def foreign(model, x, y):  # calls its model on another batch than the one it was given
        return torch.nn.functional.cross_entropy(model(x.clone()), y)

    with pytest.raises(ValueError, match="must call its model on the batch it was given"):
        fit_group([member(0, tmp_path, spec, loss=foreign), member(1, tmp_path, spec, loss=foreign)])


@pytest.mark.parametrize("backbone", ["cnn", "resnet32"])
def test_a_group_predicts_in_one_pass_what_its_members_predict_alone(backbone, tmp_path):
    """``classifier.predict_group``: the members' networks stacked (batch norm from each one's running
    statistics) give each member's own probabilities."""
    members = [member(seed, tmp_path, classifier_spec(backbone, "adam")) for seed in (0, 1, 2)]
    fit_group(members)
    test = [image_set(seed + 10).images for seed in (0, 1, 2)]
    together = predict_group([m.classifier for m in members], test)
    for m, images, proba in zip(members, test, together, strict=True):
        np.testing.assert_allclose(proba, m.classifier.predict_proba(images), atol=1e-5)
