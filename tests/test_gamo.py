
"""GAMO: convex generation, the adversarial signs, GAMO2pix, determinism and an end-to-end cell."""

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import digits_cell, repeatable
from PIL import Image

import bench.methods.gamo  # noqa: F401  (registers the method)
from bench.cell import CellEnv, run_cell
from bench.datasets.base import ImageSet
from bench.methods import FitContext, get_method
from bench.methods.gamo import GamoTrainer, classifier_loss
from bench.methods.gamo_nets import ConditionalDiscriminator, ConvexGenerator, FeatureVAE

CPU = torch.device("cpu")
SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 64, 64)]


def test_convex_weights_are_a_distribution_and_samples_lie_in_the_hull():
    torch.manual_seed(0)
    instances = torch.tensor([[0.0, 2.0, -1.0], [1.0, 5.0, -3.0], [4.0, 3.0, 0.5], [2.0, -1.0, 1.0]])
    g = ConvexGenerator(n_classes=3, class_sizes={2: 4}, z_dim=5)
    g.train()
    z = torch.randn(16, 5)
    weights = g.convex_weights(z, 2)
    assert weights.shape == (16, 4)
    assert (weights >= 0).all() and torch.allclose(weights.sum(1), torch.ones(16))
    samples = g(z, 2, instances)
    assert samples.shape == (16, 3)
    assert torch.allclose(samples, weights @ instances)
    low, high = instances.min(0).values, instances.max(0).values
    assert (samples >= low - 1e-6).all() and (samples <= high + 1e-6).all()
    # Not a trivial copy of one instance: the weights of a fresh generator are spread out.
    assert (weights.max(1).values < 0.99).all()


@pytest.mark.parametrize("shape", SHAPES)
def test_gamo2pix_maps_features_to_images_of_the_data_shape_in_tanh_range(shape):
    torch.manual_seed(0)
    vae = FeatureVAE(feature_dim=40, image_shape=shape)
    images, mean, log_var = vae(torch.randn(3, 40))
    assert images.shape == (3, *shape) and mean.shape == log_var.shape == (3, 100)
    assert images.min() >= -1 and images.max() <= 1
    loss = FeatureVAE.loss(torch.zeros_like(images), images, mean, log_var)
    assert loss.ndim == 0 and loss.item() > 0


def test_discriminator_is_conditioned_on_the_class():
    torch.manual_seed(0)
    d = ConditionalDiscriminator(feature_dim=6, n_classes=3)
    feats = torch.randn(4, 6)
    a, b = d(feats, torch.tensor([0, 0, 0, 0])), d(feats, torch.tensor([2, 2, 2, 2]))
    assert a.shape == (4, 1) and not torch.allclose(a, b)


def _imbalanced(train: ImageSet, classes=(3, 5), keep=15) -> ImageSet:
    """The first class whole, the others cut to ``keep`` images, relabelled 0, 1, ..."""
    index = np.concatenate([np.flatnonzero(train.labels == c)[: None if i == 0 else keep]
                            for i, c in enumerate(classes)])
    labels = np.searchsorted(np.array(classes), train.labels[index]).astype(np.int64)
    return ImageSet(train.images[index], labels, tuple(str(c) for c in classes))


def _built(train: ImageSet, **params):
    """A solo cell's trainer (a group of one) with its networks built and the banks filled; its method."""
    method = get_method("gamo")(**params)
    phase = method._prepare(train, FitContext(device=CPU, seed=0, epochs=1, artifact_dir=None))
    trainer = GamoTrainer([phase])
    trainer.refresh_banks()
    method.banks = {c: bank[0] for c, bank in trainer.banks.items()}
    return method, trainer


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


def test_a_generator_step_raises_the_classifiers_loss_on_generated_samples(digits):
    method, trainer = _built(_imbalanced(digits[0]))
    assert method.minority == [1]
    z = torch.randn(32, 100, generator=torch.Generator().manual_seed(1))
    onehot = F.one_hot(torch.full((32,), 1), 2).float()

    def m_loss():  # M's own loss (true class 1) on a fixed generated batch, dropout off
        method.M.head.eval()
        method.G.train()
        with torch.no_grad():
            loss = classifier_loss(method.M.head(method.G(z, 1, method.banks[1])), onehot).item()
        method.M.head.train()
        return loss

    def d_real():  # D's belief that the same batch is real
        with torch.no_grad():
            return torch.sigmoid(method.D(method.G(z, 1, method.banks[1]), torch.full((32,), 1))).mean().item()

    head, disc = _params(method.M.head), _params(method.D)
    before_m, before_d = m_loss(), d_real()
    for _ in range(5):
        trainer.g_step_against_m(1, 32)
    after_m = m_loss()
    assert after_m > before_m  # G maximises M's loss on its samples
    for _ in range(5):
        trainer.g_step_against_d(1, 32)
    assert d_real() > before_d  # and tries to pass them off as real
    # G's steps train G only: M's head and D are untouched.
    assert all(torch.equal(a, b) for a, b in zip(head, _params(method.M.head), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(disc, _params(method.D), strict=True))

    # M's step on generated samples labelled with their class lowers M's loss on them: the opposite sign.
    with torch.no_grad():
        method.G.train()
        fake = method.G(z, 1, method.banks[1])
    for _ in range(5):
        trainer.m_step(fake[None], torch.full((1, 32), 1))
    assert m_loss() < after_m


def test_generated_features_are_convex_combinations_of_the_class_features(digits):
    train = _imbalanced(digits[0])
    method, _ = _built(train)
    x = torch.as_tensor(train.images).float().div(127.5).sub(1.0)
    bank = method.banks[1]
    assert torch.equal(bank, method.features(x[torch.as_tensor(train.labels) == 1]))  # current F-features
    fake = method.generate_features(50, 1, torch.Generator().manual_seed(0)).detach()
    assert fake.shape == (50, method.feature_dim)
    assert (fake >= bank.min(0).values - 1e-5).all() and (fake <= bank.max(0).values + 1e-5).all()


def test_max_instances_caps_each_convex_combination(digits):
    method, _ = _built(_imbalanced(digits[0], keep=40), max_instances=10)
    assert len(method.members[1]) == 10 and method.banks[1].shape[0] == 10
    assert method.G.igus["1"].out_features == 10


def test_multiclass_fit_samples_predicts_and_generates_only_minority_classes(digits, tmp_path):
    train = _imbalanced(digits[0], classes=(0, 1, 2), keep=12)
    method = get_method("gamo")(gamo_epochs=2, pix_epochs=1)
    method.fit(train, FitContext(device=CPU, seed=0, epochs=1, artifact_dir=tmp_path))
    assert method.minority == [1, 2]
    images = method.sample(5, 2)
    assert images.dtype == np.uint8 and images.shape == (5, 1, 8, 8)
    assert len(np.unique(images)) > 2  # not a constant image
    with pytest.raises(ValueError):
        method.sample(3, 0)  # the largest class is never generated
    proba = method.predict_proba(train.images[:7])
    assert proba.shape == (7, 3) and np.allclose(proba.sum(1), 1) and (proba >= 0).all()
    losses = json.loads((tmp_path / "losses.json").read_text())
    assert len(losses["g_m"]) == 2 and len(losses["pix_loss"]) == 1
    counts = losses["generated_counts"]
    assert counts[0] == 0 and counts[1] > 0 and counts[2] > 0
    assert sum(counts) == 2 * len(train)  # one generated batch per real batch in every game step
    grid = Image.open(tmp_path / "samples.png")
    assert grid.size == (8 * 9 + 1, 2 * 9 + 1)  # 8 per minority class, one row each


def test_three_channel_32px_images(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 3, 32, 32), dtype=np.uint8)
    labels = np.array([0] * 24 + [1] * 6, dtype=np.int64)
    method = get_method("gamo")(gamo_epochs=1, pix_epochs=1, batch_size=16)
    method.fit(ImageSet(images, labels, ("a", "b")), FitContext(device=CPU, seed=0, epochs=1, artifact_dir=tmp_path))
    assert method.sample(4, 1).shape == (4, 3, 32, 32)
    assert method.predict_proba(images[:3]).shape == (3, 2)


def test_an_epoch_ending_in_a_one_image_batch_still_trains(tmp_path):
    # 17 images in batches of 16: the last real batch holds one image; G's updates must not shrink with it
    # (its batch normalisation needs two samples).
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (17, 1, 8, 8), dtype=np.uint8)
    labels = np.array([0] * 12 + [1] * 5, dtype=np.int64)
    method = get_method("gamo")(gamo_epochs=1, pix_epochs=1, batch_size=16)
    method.fit(ImageSet(images, labels, ("a", "b")), FitContext(device=CPU, seed=0, epochs=1, artifact_dir=tmp_path))
    assert method.predict_proba(images).shape == (17, 2)


def _cell(seed=0, epochs=2, **params):
    return digits_cell("gamo", seed, epochs, **params)


def test_end_to_end_cell_stores_metrics_samples_and_losses(digits, tmp_path):
    row = run_cell(_cell(pix_epochs=1), *digits, CellEnv(CPU, tmp_path))
    assert row["status"] == "done", row["error"]
    assert 0 <= row["metrics"]["g_mean"] <= 1
    folder = tmp_path / row["artifacts"]
    losses = json.loads((folder / "losses.json").read_text())
    assert all(len(losses[k]) == 2 for k in ("f_loss", "m_loss", "d_real", "d_fake", "g_m", "g_d"))
    assert len(losses["pix_loss"]) == 1
    n_major, n_minor = row["counts"]["train"]
    assert losses["instances_per_class"] == {"1": n_minor}
    assert losses["generated_counts"][0] == 0 and losses["generated_counts"][1] == 2 * (n_major + n_minor)
    assert Image.open(folder / "samples.png").size == (8 * 9 + 1, 1 * 9 + 1)


def test_same_seed_same_numbers_on_the_cpu(digits, tmp_path):
    a = run_cell(_cell(seed=3, epochs=1), *digits, CellEnv(CPU, tmp_path / "a"))
    b = run_cell(_cell(seed=3, epochs=1), *digits, CellEnv(CPU, tmp_path / "b"))
    assert a["status"] == b["status"] == "done"
    assert repeatable(a["metrics"]) == repeatable(b["metrics"])
    la = json.loads((tmp_path / "a" / a["artifacts"] / "losses.json").read_text())
    lb = json.loads((tmp_path / "b" / b["artifacts"] / "losses.json").read_text())
    assert la == lb
    c = run_cell(_cell(seed=4, epochs=1), *digits, CellEnv(CPU, tmp_path / "c"))
    lc = json.loads((tmp_path / "c" / c["artifacts"] / "losses.json").read_text())
    assert lc["g_m"] != la["g_m"]  # the seed matters


def test_epoch_knobs_set_the_phases(digits, tmp_path):
    cell = dataclasses.replace(_cell(epoch_scale=0.5), epochs=4)
    row = run_cell(cell, *digits, CellEnv(CPU, tmp_path))
    losses = json.loads((tmp_path / row["artifacts"] / "losses.json").read_text())
    assert len(losses["g_m"]) == 2 and len(losses["pix_loss"]) == 2  # pix_epochs follows gamo_epochs


def test_nan_losses_become_a_divergence_failure(digits, tmp_path, monkeypatch):
    real_loss = bench.methods.gamo.discriminator_loss
    monkeypatch.setattr(bench.methods.gamo, "discriminator_loss", lambda lg, t: real_loss(lg, t) * float("nan"))
    row = run_cell(_cell(), *digits, CellEnv(CPU, tmp_path))
    assert row["status"] == "failed" and row["error"].startswith("diverged at epoch 1")
