"""The ``acgan`` baseline: conditional networks, the AC-GAN losses against hand-computed values, end to end."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import digits_cell, repeatable

import bench.methods.acgan  # noqa: F401  (registers "acgan")
from bench.cell import CellEnv, run_cell
from bench.methods import FitContext, get_method
from bench.methods.acgan import ConditionalGenerator, class_loss, d_loss_fn, g_loss_fn, split_outputs
from bench.methods.dcgan_nets import DCGANDiscriminator

CPU = torch.device("cpu")
SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 64, 64)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("n_classes", [2, 5])
def test_networks_make_images_of_the_data_shape_and_one_source_plus_class_logits(shape, n_classes):
    torch.manual_seed(0)
    g = ConditionalGenerator(shape, n_classes, z_dim=100)
    d = DCGANDiscriminator(shape, 1 + n_classes, dropout=0.5)
    images = g(torch.randn(4, 100), torch.arange(4) % n_classes)
    assert images.shape == (4, *shape)
    assert images.min() >= -1 and images.max() <= 1
    source, classes = split_outputs(d(images))
    assert source.shape == (4,) and classes.shape == (4, n_classes)


def test_the_class_enters_the_generator():
    torch.manual_seed(0)
    g = ConditionalGenerator((1, 28, 28), n_classes=3).eval()
    z = torch.randn(1, 100).repeat(3, 1)
    images = g(z, torch.tensor([0, 1, 2]))
    assert not torch.allclose(images[0], images[1]) and not torch.allclose(images[1], images[2])
    assert g.net.fc.in_features == 100 + 3  # z and the one-hot code, concatenated


def test_dropout_is_an_added_option_that_leaves_the_default_discriminator_unchanged():
    def dropouts(net):
        return [m.p for m in net.modules() if isinstance(m, torch.nn.Dropout)]

    assert dropouts(DCGANDiscriminator((1, 28, 28))) == []
    assert dropouts(DCGANDiscriminator((1, 28, 28), dropout=0.5)) == [0.5, 0.5]  # after both conv layers
    torch.manual_seed(0)
    plain = DCGANDiscriminator((1, 28, 28)).eval()
    torch.manual_seed(0)
    with_dropout = DCGANDiscriminator((1, 28, 28), dropout=0.5).eval()  # same weights; dropout off in eval
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    assert torch.equal(plain(x), with_dropout(x))


def _hand_cross_entropy(logits, labels):
    """-mean log softmax(logits)[label], the log-softmax written out by hand."""
    shift = logits - logits.max(dim=1, keepdim=True).values
    log_softmax = shift - torch.log(torch.exp(shift).sum(dim=1, keepdim=True))
    return -log_softmax[torch.arange(len(labels)), labels].mean()


def _hand_bce(logit, target_real: bool):
    prob = torch.sigmoid(logit)
    return -(torch.log(prob) if target_real else torch.log(1 - prob)).mean()


def test_class_loss_is_cross_entropy_of_the_logits_for_real_and_generated_batches():
    torch.manual_seed(0)
    n_classes, shape = 3, (1, 8, 8)
    g = ConditionalGenerator(shape, n_classes)
    d = DCGANDiscriminator(shape, 1 + n_classes, dropout=0.5).eval()
    with torch.no_grad():
        d.head.weight.mul_(50)  # logits of a few units, so a softmax applied twice would show
    real, y_real = torch.rand(6, *shape) * 2 - 1, torch.tensor([0, 1, 2, 2, 1, 0])
    y_fake = torch.tensor([2, 0, 1, 1, 0])
    out_real, out_fake = d(real), d(g(torch.randn(5, 100), y_fake))
    (s_real, c_real), (s_fake, c_fake) = split_outputs(out_real), split_outputs(out_fake)
    assert c_real.abs().max() > 1

    hand_real, hand_fake = _hand_cross_entropy(c_real, y_real), _hand_cross_entropy(c_fake, y_fake)
    assert torch.allclose(class_loss(c_real, y_real), hand_real, atol=1e-6)
    assert torch.allclose(class_loss(c_fake, y_fake), hand_fake, atol=1e-6)
    buggy = F.cross_entropy(torch.softmax(c_real, dim=1), y_real)  # the softmax-then-cross-entropy bug
    assert not torch.allclose(buggy, hand_real, atol=1e-3)

    d_source, d_class = d_loss_fn(out_real, y_real, out_fake, y_fake)  # -L_S, -L_C
    assert torch.allclose(d_class, hand_real + hand_fake, atol=1e-6)
    assert torch.allclose(d_source, _hand_bce(s_real, True) + _hand_bce(s_fake, False), atol=1e-6)
    g_source, g_class = g_loss_fn(out_fake, y_fake)
    assert torch.allclose(g_class, hand_fake, atol=1e-6)
    assert torch.allclose(g_source, _hand_bce(s_fake, True), atol=1e-6)  # non-saturating: -log D(G(c, z))


def test_class_loss_on_given_logits():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    labels = torch.tensor([2, 1])
    expected = -(np.log(np.exp(0.5) / np.exp([2.0, -1.0, 0.5]).sum())
                 + np.log(np.exp(3.0) / np.exp([0.0, 3.0, -2.0]).sum())) / 2
    assert abs(class_loss(logits, labels).item() - expected) < 1e-6


def test_generated_labels_follow_the_data_or_a_uniform_prior():
    counts = np.array([90, 10, 0])
    assert np.allclose(get_method("acgan")().label_probabilities(counts), [0.9, 0.1, 0.0])
    assert np.allclose(get_method("acgan")(label_prior="uniform").label_probabilities(counts), [0.5, 0.5, 0.0])
    with pytest.raises(ValueError, match="label_prior"):
        get_method("acgan")(label_prior="balanced")


def test_acgan_cell_balances_with_samples_and_stores_its_losses(digits, tmp_path):
    row = run_cell(digits_cell("acgan", epoch_scale=1.5), *digits, CellEnv(CPU, tmp_path))
    assert row["status"] == "done", row["error"]
    assert 0 <= row["metrics"]["g_mean"] <= 1
    folder = tmp_path / row["artifacts"]
    losses = json.loads((folder / "losses.json").read_text())
    for name in ("d_loss", "g_loss", "d_class_loss", "g_class_loss"):
        assert len(losses[name]) == 3  # round(1.5 x 2) generator epochs
    assert all(dc < d for dc, d in zip(losses["d_class_loss"], losses["d_loss"], strict=True))  # + the source loss > 0
    n_major, n_minor = row["counts"]["train"]
    assert losses["generated_counts"] == [0, n_major - n_minor]
    counts = json.loads((folder / "training_counts.json").read_text())
    assert counts["after"] == [n_major, n_major]
    assert len(json.loads((folder / "classifier_losses.json").read_text())["epoch_loss"]) == 2
    assert (folder / "samples.png").stat().st_size > 0


def test_one_generator_for_all_classes_samples_any_class(digits, tmp_path):
    train = digits[0].subset(np.flatnonzero(digits[0].labels < 3))  # classes 3..9 are absent
    keep = np.concatenate([np.flatnonzero(train.labels == 0),
                           np.flatnonzero(train.labels == 1)[:20], np.flatnonzero(train.labels == 2)[:30]])
    train = train.subset(keep)
    method = get_method("acgan")(gan_epochs=1)
    method.fit(train, FitContext(device=CPU, seed=0, epochs=1, artifact_dir=tmp_path))
    counts = train.counts()
    assert method.generated_counts == [int(counts.max() - n) if n else 0 for n in counts]
    for label in (0, 2):
        images = method.sample(5, label)
        assert images.dtype == np.uint8 and images.shape == (5, 1, 8, 8)
    with pytest.raises(ValueError, match="classes 0..9"):
        method.sample(1, 10)
    proba = method.predict_proba(train.images[:4])
    assert proba.shape == (4, 10) and np.allclose(proba.sum(1), 1)


def test_acgan_same_seed_same_numbers_and_another_seed_differs(digits, tmp_path):
    a = run_cell(digits_cell("acgan", seed=1, epochs=1), *digits, CellEnv(CPU, tmp_path))
    b = run_cell(digits_cell("acgan", seed=1, epochs=1), *digits, CellEnv(CPU, tmp_path))
    c = run_cell(digits_cell("acgan", seed=2, epochs=1), *digits, CellEnv(CPU, tmp_path))
    assert a["status"] == b["status"] == c["status"] == "done"
    assert repeatable(a["metrics"]) == repeatable(b["metrics"])
    losses = [json.loads((tmp_path / r["artifacts"] / "losses.json").read_text())["d_loss"] for r in (a, b, c)]
    assert losses[0] == losses[1] != losses[2]


def test_a_diverging_acgan_is_a_failed_cell_naming_the_epoch(digits, tmp_path):
    row = run_cell(digits_cell("acgan", epochs=1, lr=1e30), *digits, CellEnv(CPU, tmp_path))
    assert row["status"] == "failed"
    assert "diverged at epoch" in row["error"]
