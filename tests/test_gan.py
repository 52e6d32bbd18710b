"""The DCGAN networks, the generative-oversampling base and the ``gan`` baseline."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import digits_cell, repeatable

from bench.cell import CellEnv, run_cell
from bench.methods import FitContext, get_method
from bench.methods.dcgan_nets import DCGANDiscriminator, DCGANGenerator, DCGANTrunk
from bench.methods.gan import d_loss_fn, g_loss_fn
from bench.methods.generative import to_uint8, top_up_counts

CPU = torch.device("cpu")
SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 64, 64)]


@pytest.mark.parametrize("shape", SHAPES)
def test_dcgan_generator_and_discriminator_fit_every_supported_size(shape):
    torch.manual_seed(0)
    g, d = DCGANGenerator(shape, in_dim=100), DCGANDiscriminator(shape, n_outputs=3)
    images = g(torch.randn(4, 100))
    assert images.shape == (4, *shape)
    assert images.min() >= -1 and images.max() <= 1
    assert d(images).shape == (4, 3)


@pytest.mark.parametrize("norm", ["batch", "layer", "none"])
def test_trunk_normalisation_options(norm):
    trunk = DCGANTrunk((1, 28, 28), norm=norm)
    kinds = {type(m).__name__ for m in trunk.modules()}
    assert ("BatchNorm2d" in kinds) == (norm == "batch")
    assert ("GroupNorm" in kinds) == (norm == "layer")
    assert trunk(torch.zeros(2, 1, 28, 28)).shape == (2, trunk.out_features)


def test_dcgan_networks_reject_bad_input():
    with pytest.raises(ValueError, match="square"):
        DCGANGenerator((1, 28, 32), in_dim=10)
    with pytest.raises(ValueError, match="norm"):
        DCGANTrunk((1, 28, 28), norm="instance")


def test_top_up_counts_balances_and_skips_absent_classes():
    assert top_up_counts([100, 10, 0, 40], 1.0) == [0, 90, 0, 60]
    assert top_up_counts([100, 10], 0.5) == [0, 45]


def test_to_uint8_maps_the_tanh_range_onto_pixels():
    out = to_uint8(torch.tensor([-1.0, 0.0, 1.0, 2.0]))
    assert out.dtype == torch.uint8 and out.tolist() == [0, 128, 255, 255]


def test_gan_losses_equal_the_hand_computed_log_likelihoods():
    d_real, d_fake = torch.tensor([[2.0], [-1.0]]), torch.tensor([[0.5], [-3.0]])
    sig = torch.sigmoid
    expected_d = (-torch.log(sig(d_real)).mean() - torch.log(1 - sig(d_fake)).mean())
    assert torch.allclose(d_loss_fn(d_real, d_fake), expected_d)
    assert torch.allclose(g_loss_fn(d_fake), -torch.log(sig(d_fake)).mean())  # non-saturating
    assert torch.allclose(g_loss_fn(d_fake), F.softplus(-d_fake).mean())


def test_gan_cell_balances_with_samples_and_stores_its_losses(digits, tmp_path):
    row = run_cell(digits_cell("gan", epoch_scale=1.5), *digits, CellEnv(CPU, tmp_path))
    assert row["status"] == "done", row["error"]
    assert 0 <= row["metrics"]["g_mean"] <= 1
    folder = tmp_path / row["artifacts"]
    losses = json.loads((folder / "losses.json").read_text())
    assert len(losses["d_loss"]) == len(losses["g_loss"]) == 3  # round(1.5 x 2) generator epochs
    n_major, n_minor = row["counts"]["train"]
    assert losses["generated_counts"] == [0, n_major - n_minor]
    counts = json.loads((folder / "training_counts.json").read_text())
    assert counts["after"] == [n_major, n_major]
    assert len(json.loads((folder / "classifier_losses.json").read_text())["epoch_loss"]) == 2
    assert (folder / "samples.png").stat().st_size > 0


def test_gan_trains_one_generator_per_class_that_is_topped_up(digits, tmp_path):
    train = digits[0].subset(np.flatnonzero(digits[0].labels < 3))
    keep = np.concatenate([np.flatnonzero(train.labels == 0),
                           np.flatnonzero(train.labels == 1)[:20], np.flatnonzero(train.labels == 2)[:30]])
    train = train.subset(keep)
    method = get_method("gan")(gan_epochs=1)
    method.fit(train, FitContext(device=CPU, seed=0, epochs=1, artifact_dir=tmp_path))
    assert sorted(method.generators) == [1, 2]  # the largest class needs none
    images = method.sample(5, 2)
    assert images.dtype == np.uint8 and images.shape == (5, 1, 8, 8)
    with pytest.raises(ValueError, match="no generator for class 0"):
        method.sample(1, 0)
    proba = method.predict_proba(train.images[:4])
    assert proba.shape == (4, 10) and np.allclose(proba.sum(1), 1)


def test_gan_same_seed_same_numbers_and_another_seed_differs(digits, tmp_path):
    a = run_cell(digits_cell("gan", seed=1), *digits, CellEnv(CPU, tmp_path))
    b = run_cell(digits_cell("gan", seed=1), *digits, CellEnv(CPU, tmp_path))
    c = run_cell(digits_cell("gan", seed=2), *digits, CellEnv(CPU, tmp_path))
    assert a["status"] == b["status"] == c["status"] == "done"
    assert repeatable(a["metrics"]) == repeatable(b["metrics"])
    losses = [json.loads((tmp_path / r["artifacts"] / "losses.json").read_text())["d_loss"] for r in (a, b, c)]
    assert losses[0] == losses[1] != losses[2]


def test_a_diverging_gan_is_a_failed_cell_naming_the_epoch(digits, tmp_path):
    row = run_cell(digits_cell("gan", lr=1e30), *digits, CellEnv(CPU, tmp_path))
    assert row["status"] == "failed"
    assert "diverged at epoch" in row["error"]
