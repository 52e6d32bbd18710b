
"""DAGAN: network shapes, the WGAN-GP losses against hand-computed values, within-class pairs, generation
from real images of the class, determinism and an end-to-end cell."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from helpers import digits_cell, repeatable

import bench.methods.dagan  # noqa: F401  (registers the method)
from bench.cell import CellEnv, run_cell
from bench.methods import FitContext, get_method
from bench.methods.dagan import PairSampler, critic_loss_fn, generator_loss_fn, gradient_penalty, rotate_pairs
from bench.methods.dagan_nets import DAGANCritic, DAGANGenerator, level_sizes

CPU = torch.device("cpu")
SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 64, 64)]


@pytest.mark.parametrize("shape", SHAPES)
def test_generator_maps_an_image_and_noise_to_an_image_of_the_same_shape(shape):
    torch.manual_seed(0)
    g = DAGANGenerator(shape, z_dim=100, width=8).eval()
    x = torch.rand(3, *shape) * 2 - 1
    z = torch.randn(3, 100)
    out = g(x, z)
    assert out.shape == x.shape
    assert out.min() >= -1 and out.max() <= 1
    assert not torch.allclose(out, g(x, torch.randn(3, 100)))  # the noise matters
    assert not torch.allclose(out, g(x.flip(0), z))  # and so does the source image


@pytest.mark.parametrize("inner", [0, 2])
def test_generator_builds_with_any_number_of_inner_layers(inner):
    g = DAGANGenerator((1, 28, 28), width=8, inner=inner)
    assert g(torch.zeros(2, 1, 28, 28), torch.randn(2, 100)).shape == (2, 1, 28, 28)


def test_encoder_levels_stop_at_two_pixels_and_four_levels():
    assert level_sizes(8) == [4, 2]
    assert level_sizes(28) == [14, 7, 4, 2]
    assert level_sizes(32) == [16, 8, 4, 2]
    assert level_sizes(64) == [32, 16, 8, 4]


@pytest.mark.parametrize("shape", SHAPES)
def test_critic_scores_pairs_one_number_each_without_batch_statistics(shape):
    torch.manual_seed(0)
    d = DAGANCritic(shape, width=8).eval()
    x, other = torch.rand(4, *shape) * 2 - 1, torch.rand(4, *shape) * 2 - 1
    scores = d(x, other)
    assert scores.shape == (4,)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in d.modules())
    # a pair's score does not depend on the rest of the batch (what the gradient penalty needs)
    assert torch.allclose(d(x[:1], other[:1]), scores[:1], atol=1e-5)
    # the order within the pair matters: the first input is the source image
    assert not torch.allclose(d(other, x), scores)


def _linear_critic(w_source: torch.Tensor, w_second: torch.Tensor):
    """f(x, u) = w . flatten(concat(x, u)): a linear critic whose gradient in u is w_second."""
    w = torch.cat([w_source.flatten(), w_second.flatten()])
    return lambda x, u: torch.cat([x, u], 1).flatten(1) @ w


def test_gradient_penalty_is_zero_for_a_critic_one_lipschitz_in_the_second_image():
    torch.manual_seed(0)
    shape = (5, 1, 4, 4)
    x, real, fake = torch.randn(shape), torch.randn(shape), torch.randn(shape)
    w_second = torch.randn(1, 4, 4)
    w_second /= w_second.norm()  # ||grad_u f|| = 1 everywhere
    w_source = torch.randn(1, 4, 4)  # the source image's weights do not enter the penalty
    gp = gradient_penalty(_linear_critic(w_source, w_second), x, real, fake, torch.rand(5), weight=10.0)
    assert gp.item() == pytest.approx(0.0, abs=1e-6)


def test_gradient_penalty_of_a_two_lipschitz_critic_is_ten():
    torch.manual_seed(1)
    shape = (6, 3, 2, 2)
    x, real, fake = torch.randn(shape), torch.randn(shape), torch.randn(shape)
    w_second = torch.randn(3, 2, 2)
    w_second *= 2.0 / w_second.norm()  # ||grad_u f|| = 2: penalty 10 x (2 - 1)^2
    gp = gradient_penalty(_linear_critic(torch.zeros(3, 2, 2), w_second), x, real, fake, torch.rand(6))
    assert gp.item() == pytest.approx(10.0, rel=1e-5)


def test_gradient_penalty_is_taken_at_the_interpolates_of_the_second_element():
    # f(x, u) = sum(u^2) / 2 has gradient u: the penalty is 10 mean (||real + a (fake - real)|| - 1)^2
    shape = (3, 1, 2, 2)
    x = torch.zeros(shape)
    real, fake = torch.full(shape, 1.0), torch.full(shape, 3.0)
    alpha = torch.tensor([0.0, 0.5, 1.0])
    gp = gradient_penalty(lambda src, u: 0.5 * u.flatten(1).pow(2).sum(1), x, real, fake, alpha)
    norms = torch.tensor([1.0, 2.0, 3.0]) * 2.0  # |u| = 1, 2, 3 in each of 4 pixels -> norm x 2
    assert gp.item() == pytest.approx((10 * (norms - 1) ** 2).mean().item(), rel=1e-5)


def test_wgan_losses_by_hand():
    d_real, d_fake = torch.tensor([1.0, 3.0]), torch.tensor([-2.0, 0.0])
    assert critic_loss_fn(d_real, d_fake, torch.tensor(0.5)).item() == pytest.approx(-1.0 - 2.0 + 0.5)
    assert generator_loss_fn(d_fake).item() == pytest.approx(1.0)


def test_pairs_are_within_class_and_classes_drawn_uniformly():
    labels = torch.tensor([0] * 90 + [2] * 10)  # class 1 is absent
    sampler = PairSampler(labels, 3, torch.Generator().manual_seed(0))
    i, j, classes = sampler(4000)
    assert torch.equal(labels[i], labels[j]) and torch.equal(labels[i], classes)
    assert set(classes.tolist()) == {0, 2}
    assert (classes == 2).float().mean().item() == pytest.approx(0.5, abs=0.03)  # uniform over classes
    assert len(set(i[classes == 2].tolist())) == 10  # every minority image gets used
    again = PairSampler(labels, 3, torch.Generator().manual_seed(0))(4000)
    assert all(torch.equal(u, v) for u, v in zip((i, j, classes), again, strict=True))


def test_rotation_turns_both_images_of_a_pair_alike():
    torch.manual_seed(0)
    a = torch.randn(64, 1, 5, 5)
    ra, rb = rotate_pairs(a, a.clone(), torch.Generator().manual_seed(0))
    assert torch.equal(ra, rb)
    rotated = [k for n in range(64) for k in range(4) if torch.equal(ra[n], torch.rot90(a[n], k, (1, 2)))]
    assert len(rotated) == 64 and 0 < sum(k > 0 for k in rotated) < 64


def test_end_to_end_cell_stores_metrics_samples_and_losses(digits, tmp_path):
    row = run_cell(digits_cell("dagan"), *digits, CellEnv(CPU, tmp_path))
    assert row["status"] == "done", row["error"]
    assert 0 <= row["metrics"]["g_mean"] <= 1
    folder = tmp_path / row["artifacts"]
    losses = json.loads((folder / "losses.json").read_text())
    assert len(losses["d_loss"]) == 2 and len(losses["gp"]) == 2 and len(losses["g_loss"]) == 2
    n_major, n_minor = row["counts"]["train"]
    assert losses["generated_counts"] == [0, n_major - n_minor]
    assert (folder / "samples.png").stat().st_size > 0


def test_generation_maps_real_images_of_the_requested_class(digits, tmp_path):
    train = digits[0].subset(np.flatnonzero(digits[0].labels < 3))  # classes 3..9 are absent
    method = get_method("dagan")(gan_epochs=1, phi=0.0)
    method.fit(train, FitContext(device=CPU, seed=0, epochs=1, artifact_dir=tmp_path))
    images = method.sample(5, 1)
    assert images.dtype == np.uint8 and images.shape == (5, 1, 8, 8)
    assert method.predict_proba(train.images[:7]).shape == (7, 10)

    class Identity(torch.nn.Module):  # G replaced by "return the source image" to see which sources it gets
        def forward(self, x, z):
            return x

    method.G = Identity()
    sources = train.images[train.labels == 2]
    n = 2 * len(sources) + 3
    out = method.generate(n, 2, torch.Generator().manual_seed(0)).numpy()
    expected = torch.as_tensor(sources).float().div(127.5).sub(1.0).numpy()
    keys = {s.tobytes(): k for k, s in enumerate(expected)}
    used = np.bincount([keys[o.tobytes()] for o in out], minlength=len(sources))  # KeyError if not a source
    assert used.min() == 2 and used.max() == 3  # each pass over the class uses every source once
    again = method.generate(n, 2, torch.Generator().manual_seed(0)).numpy()
    assert np.array_equal(out, again)
    with pytest.raises(ValueError):
        method.generate(3, 7)  # no image of class 7 to start from


def test_same_seed_same_numbers_on_the_cpu(digits, tmp_path):
    rows = []
    for run in ("a", "b"):
        cell = dataclasses.replace(digits_cell("dagan", seed=3), epochs=6)
        rows.append(run_cell(cell, *digits, CellEnv(CPU, tmp_path / run)))
    a, b = rows
    assert a["status"] == b["status"] == "done"
    assert repeatable(a["metrics"]) == repeatable(b["metrics"])
    losses = [json.loads((tmp_path / run / row["artifacts"] / "losses.json").read_text())
              for run, row in zip(("a", "b"), rows, strict=True)]
    assert losses[0] == losses[1] and len(losses[0]["d_loss"]) == 6
