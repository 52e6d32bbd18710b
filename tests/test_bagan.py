"""BAGAN: class Gaussians, class ratios, losses, the autoencoder initialisation, cells end to end."""

import json

import numpy as np
import pytest
import torch
from helpers import digits_cell, repeatable

import bench.methods.bagan as bagan  # noqa: F401  (registers "bagan")
from bench.cell import CellEnv, run_cell
from bench.methods import FitContext, get_method
from bench.methods.bagan import (
    class_ratios,
    covariance_factor,
    d_loss_fn,
    fit_class_gaussians,
    g_loss_fn,
    sample_labels,
)

CPU = torch.device("cpu")
SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 64, 64)]


@pytest.mark.parametrize("shape", SHAPES)
def test_networks_fit_every_supported_size(shape):
    torch.manual_seed(0)
    method = get_method("bagan")()
    method.build(shape, 3, CPU)
    x = torch.rand(4, *shape) * 2 - 1
    codes = method.encoder(x)
    assert codes.shape == (4, 100)
    images = method.decoder(codes)
    assert images.shape == (4, *shape) and images.min() >= -1 and images.max() <= 1
    assert method.D(images).shape == (4, 4)  # c + 1 logits
    # the discriminator's trunk and the encoder's trunk are the same network, so weights can pass over
    assert method.D.trunk.state_dict().keys() == method.encoder.trunk.state_dict().keys()
    assert sum(isinstance(m, torch.nn.Dropout) for m in method.D.modules()) >= 1


def test_class_gaussians_match_numpy_mean_and_covariance():
    rng = np.random.default_rng(0)
    d = 5
    codes = rng.normal(size=(44, d)) @ rng.normal(size=(d, d)) + 3.0
    labels = np.array([0] * 30 + [1] * 3 + [3] * 5 + [4] * 6)  # class 2 absent; 1 and 3 have <= d codes
    means, covs = fit_class_gaussians(codes, labels, 5, ridge=0.1)
    for c in (0, 4):  # enough codes (d + 1 or more): the plain unbiased estimate, no ridge
        full = codes[labels == c]
        assert np.allclose(means[c], full.mean(0))
        assert np.allclose(covs[c], np.cov(full, rowvar=False))
    for c in (1, 3):
        few = codes[labels == c]
        raw = np.cov(few, rowvar=False)
        assert np.linalg.matrix_rank(raw) < d  # singular: why the ridge is needed
        assert np.allclose(means[c], few.mean(0))
        assert np.allclose(covs[c], raw + 0.1 * np.trace(raw) / d * np.eye(d))
        assert np.linalg.eigvalsh(covs[c]).min() > 0
    assert np.isnan(means[2]).all()


def test_a_single_image_class_gets_the_pooled_ridge():
    codes = np.arange(12.0).reshape(4, 3) ** 1.5
    means, covs = fit_class_gaussians(codes, np.array([0, 0, 0, 1]), 2, ridge=0.5)
    pooled = np.var(codes, axis=0, ddof=1).mean()
    assert np.allclose(means[1], codes[3])
    assert np.allclose(covs[1], 0.5 * pooled * np.eye(3))


def test_latents_are_drawn_from_the_class_gaussians():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(3, 3))
    cov = a @ a.T + 0.1 * np.eye(3)
    factor = covariance_factor(cov)
    assert np.allclose(factor @ factor.T, cov)
    method = get_method("bagan")()
    method._mu = torch.tensor([[0.0, 0.0, 0.0], [5.0, -2.0, 1.0]])
    method._factor = torch.stack([torch.zeros(3, 3), torch.as_tensor(factor, dtype=torch.float32)])
    z = method.latents(torch.ones(20000, dtype=torch.long), torch.Generator().manual_seed(0)).double().numpy()
    assert np.allclose(z.mean(0), [5.0, -2.0, 1.0], atol=0.05)
    assert np.allclose(np.cov(z, rowvar=False), cov, atol=0.1 * np.abs(cov).max())


def test_class_ratios_follow_the_official_modes():
    counts = np.array([90, 10])
    assert np.allclose(class_ratios(counts, "uniform"), [0.5, 0.5])
    assert np.allclose(class_ratios(counts, "rebalance"), [1.0 - 0.9, 1.0 - 0.1])  # 2/c - p_c
    # four classes, one very large: its 2/c - p_c is negative, set to 0, the rest renormalised
    counts = np.array([700, 100, 100, 100])
    raw = np.clip(0.5 - counts / 1000, 0, None)
    assert np.allclose(class_ratios(counts, "rebalance"), raw / raw.sum())
    assert np.allclose(class_ratios(np.array([50, 0, 10]), "uniform"), [0.5, 0, 0.5])  # absent: never drawn
    with pytest.raises(ValueError, match="sampling"):
        class_ratios(counts, "balanced")


def test_sampled_labels_never_include_the_fake_class():
    ratios = torch.as_tensor(class_ratios(np.array([5, 0, 100]), "rebalance"), dtype=torch.float32)
    labels = sample_labels(ratios, 5000, torch.Generator().manual_seed(0))
    assert labels.min() >= 0 and labels.max() < 3 and not (labels == 1).any()
    assert abs((labels == 0).float().mean().item() - ratios[0].item()) < 0.03


def test_losses_equal_the_hand_computed_cross_entropies():
    logits_real = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])  # 2 classes + fake
    logits_fake = torch.tensor([[0.0, 1.0, 3.0]])
    labels = torch.tensor([0, 1])

    def nll(row, target):
        row = row.double().numpy()
        return -(row[target] - np.log(np.exp(row).sum()))

    expected_d = (nll(logits_real[0], 0) + nll(logits_real[1], 1) + nll(logits_fake[0], 2)) / 3
    assert np.isclose(d_loss_fn(logits_real, labels, logits_fake).item(), expected_d, atol=1e-6)
    expected_g = (nll(logits_real[0], 0) + nll(logits_real[1], 1)) / 2
    assert np.isclose(g_loss_fn(logits_real, labels).item(), expected_g, atol=1e-6)


def _small_train(digits):
    train = digits[0].subset(np.flatnonzero(digits[0].labels < 3))
    keep = np.concatenate([np.flatnonzero(train.labels == 0), np.flatnonzero(train.labels == 1)[:15],
                           np.flatnonzero(train.labels == 2)[:40]])
    return train.subset(keep)


def test_gan_starts_from_the_trained_autoencoder(digits):
    train = _small_train(digits)
    method = get_method("bagan")(ae_epochs=2, gan_epochs=0)  # the autoencoder's 2 epochs, then init_gan
    torch.manual_seed(0)
    method.build(train.image_shape, train.n_classes, CPU)  # what the generator phase builds from seed 0
    fresh_decoder = {k: v.clone() for k, v in method.decoder.state_dict().items()}
    phase = method._prepare(train, FitContext(device=CPU, seed=0, epochs=1, artifact_dir=None))
    assert type(method).train_generators([phase]) == [None]
    assert list(method.history) == ["ae_loss"] and len(method.history["ae_loss"]) == 2
    x = phase.x
    g, dec = method.G.state_dict(), method.decoder.state_dict()
    assert all(torch.equal(g[k], dec[k]) for k in dec)  # G = the decoder after pre-training
    assert any(not torch.equal(dec[k], fresh_decoder[k]) for k in dec)  # ... which pre-training changed
    trunk, enc = method.D.trunk.state_dict(), method.encoder.trunk.state_dict()
    assert all(torch.equal(trunk[k], enc[k]) for k in enc)  # D's trunk = the encoder's trunk
    assert method.D.head.out_features == train.n_classes + 1
    # the class Gaussians are those of the encoder's (dropout-free) codes
    method.encoder.eval()
    with torch.no_grad():
        codes = method.encoder(x).double().numpy()
    assert np.allclose(method.means[2], codes[train.labels == 2].mean(0), atol=1e-5)
    assert np.allclose(method.covariances[0], np.cov(codes[train.labels == 0], rowvar=False), atol=1e-6)
    assert np.isnan(method.means[5]).all()  # absent class


def test_fit_generates_for_minorities_and_never_targets_the_fake_class(digits, tmp_path, monkeypatch):
    targets = []
    original = bagan.g_loss_fn

    def recording(logits, labels):
        targets.append((logits.shape[1], labels.clone()))
        return original(logits, labels)

    monkeypatch.setattr(bagan, "g_loss_fn", recording)
    train = _small_train(digits)
    method = get_method("bagan")(gan_epochs=1, ae_epochs=1)
    method.fit(train, FitContext(device=CPU, seed=0, epochs=1, artifact_dir=tmp_path))
    assert targets and all(n_out == 11 for n_out, _ in targets)
    labels = torch.cat([t for _, t in targets])
    assert set(labels.tolist()) <= {0, 1, 2}  # present classes only; 10 (the fake class) never
    images = method.sample(6, 1)
    assert images.dtype == np.uint8 and images.shape == (6, 1, 8, 8)
    with pytest.raises(ValueError, match="absent"):
        method.sample(1, 7)
    counts = train.counts()
    assert method.generated_counts == [int(counts.max() - n) if n else 0 for n in counts]
    proba = method.predict_proba(train.images[:4])
    assert proba.shape == (4, 10) and np.allclose(proba.sum(1), 1)
    losses = json.loads((tmp_path / "losses.json").read_text())
    assert len(losses["ae_loss"]) == len(losses["d_loss"]) == len(losses["g_loss"]) == 1


def _cell(seed=0, epochs=2, **params):
    return digits_cell("bagan", seed, epochs, **params)


def test_cell_end_to_end_with_the_epoch_split(digits, tmp_path):
    row = run_cell(_cell(epochs=2, ae_epochs=3), *digits, CellEnv(CPU, tmp_path))
    assert row["status"] == "done", row["error"]
    assert 0 <= row["metrics"]["g_mean"] <= 1
    folder = tmp_path / row["artifacts"]
    losses = json.loads((folder / "losses.json").read_text())
    assert len(losses["ae_loss"]) == 3 and len(losses["d_loss"]) == len(losses["g_loss"]) == 2
    n_major, n_minor = row["counts"]["train"]
    assert losses["generated_counts"] == [0, n_major - n_minor]
    assert len(json.loads((folder / "classifier_losses.json").read_text())["epoch_loss"]) == 2
    assert (folder / "samples.png").stat().st_size > 0


def test_ae_epochs_default_to_the_adversarial_epochs():
    method = get_method("bagan")(epoch_scale=1.5)
    assert method.adversarial_epochs(4, 10) == method.autoencoder_epochs(4, 10) == 6
    assert method.gan_epochs(4, 10) == 12
    assert get_method("bagan")(gan_epochs=2, ae_epochs=0).gan_epochs(10, 10) == 2


def test_same_seed_same_numbers_and_another_seed_differs(digits, tmp_path):
    a = run_cell(_cell(seed=1), *digits, CellEnv(CPU, tmp_path))
    b = run_cell(_cell(seed=1), *digits, CellEnv(CPU, tmp_path))
    c = run_cell(_cell(seed=2), *digits, CellEnv(CPU, tmp_path))
    assert a["status"] == b["status"] == c["status"] == "done"
    assert repeatable(a["metrics"]) == repeatable(b["metrics"])
    losses = [json.loads((tmp_path / r["artifacts"] / "losses.json").read_text()) for r in (a, b, c)]
    assert losses[0] == losses[1]
    assert losses[0]["d_loss"] != losses[2]["d_loss"]


def test_a_diverging_bagan_is_a_failed_cell(digits, tmp_path):
    row = run_cell(_cell(lr=1e30), *digits, CellEnv(CPU, tmp_path))
    assert row["status"] == "failed"
    assert "diverged at epoch" in row["error"]


def test_bad_sampling_mode_is_rejected():
    with pytest.raises(ValueError, match="g_sampling"):
        get_method("bagan")(g_sampling="balanced")
