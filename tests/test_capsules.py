"""Capsule layers and CapsAN's losses against hand-computed values."""

import math

import pytest
import torch

from bench.methods.capsules import (
    ClassCapsules,
    ConvCapsules,
    PrimaryCapsules,
    feature_matching,
    margin_loss,
    pull_away,
    route,
    squash,
)
from bench.methods.gan_blocks import ConditionalBatchNorm2d, EqualizedConv2d, EqualizedLinear, pixel_norm


def test_squash_keeps_direction_and_maps_lengths_into_the_unit_interval():
    s = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0], [300.0, -400.0]])
    v = squash(s)
    lengths = v.norm(dim=-1)
    # |v| = |s|^2 / (1 + |s|^2): 25/26 for |s| = 5, 0.25/1.25 for |s| = 0.5.
    assert lengths[0].item() == pytest.approx(25 / 26, rel=1e-5)
    assert lengths[1].item() == pytest.approx(0.25 / 1.25, rel=1e-5)
    assert lengths[2].item() == 0.0
    assert ((lengths >= 0) & (lengths < 1)).all()
    cosine = torch.nn.functional.cosine_similarity(v[[0, 1, 3]], s[[0, 1, 3]], dim=-1)
    assert torch.allclose(cosine, torch.ones(3))


def test_routing_couples_each_input_to_outputs_with_coefficients_summing_to_one():
    torch.manual_seed(0)
    u_hat = torch.randn(4, 10, 3, 16)  # batch, inputs, outputs, dim
    v, coupling = route(u_hat, iterations=3)
    assert v.shape == (4, 3, 16) and coupling.shape == (4, 10, 3)
    assert torch.allclose(coupling.sum(dim=-1), torch.ones(4, 10))
    assert (v.norm(dim=-1) < 1).all()


def test_routing_favours_the_output_the_inputs_agree_on():
    agree = torch.tensor([1.0, 0.0])
    u_hat = torch.zeros(1, 4, 2, 2)
    u_hat[0, :, 0] = agree  # every input predicts the same vector for output 0 ...
    u_hat[0, :, 1] = torch.tensor([[0.0, 1.0], [0.0, -1.0], [1.0, 0.0], [-1.0, 0.0]])  # ... and disagrees on 1
    v, coupling = route(u_hat, iterations=3)
    assert v[0, 0].norm() > v[0, 1].norm()
    assert (coupling[0, :, 0] > 0.5).all()
    one_iteration, _ = route(u_hat, iterations=1)  # uniform coupling: s_0 = 4 * 0.5 * agree
    assert torch.allclose(one_iteration[0, 0], squash(2 * agree))


def test_margin_loss_by_hand():
    lengths = torch.tensor([[0.95, 0.05, 0.3], [0.5, 0.2, 0.0]])
    target = torch.tensor([0, 2])
    # Row 1: present 0 (0.95 > 0.9); absent 0.5 * (0.3 - 0.1)^2 = 0.02.
    # Row 2: present (0.9 - 0)^2 = 0.81; absent 0.5 * ((0.5 - 0.1)^2 + (0.2 - 0.1)^2) = 0.085.
    expected = (0.02 + 0.81 + 0.085) / 2
    assert margin_loss(lengths, target).item() == pytest.approx(expected)
    assert margin_loss(torch.tensor([[0.9, 0.1]]), torch.tensor([0])).item() == 0.0


def test_pull_away_is_one_for_parallel_and_zero_for_orthogonal_embeddings():
    parallel = torch.tensor([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0], [-0.5, -1.0, 0.0]])
    orthogonal = torch.eye(3) * torch.tensor([[2.0], [3.0], [0.5]])
    assert pull_away(parallel).item() == pytest.approx(1.0)
    assert pull_away(orthogonal).item() == pytest.approx(0.0)
    # Two vectors at 60 degrees: cos^2 = 1/4, the same for both ordered pairs.
    pair = torch.tensor([[1.0, 0.0], [0.5, math.sqrt(3) / 2]])
    assert pull_away(pair).item() == pytest.approx(0.25)


def test_feature_matching_is_zero_for_identical_batches_and_compares_class_means():
    torch.manual_seed(0)
    features, labels = torch.randn(8, 5), torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    assert feature_matching(features, features.clone(), labels, labels, 2).item() == 0.0
    shuffled = torch.randperm(8)
    # Class means do not depend on the order of the batch.
    assert feature_matching(features, features[shuffled], labels, labels[shuffled], 2).item() == pytest.approx(0.0, abs=1e-10)
    shifted = features + torch.tensor([1.0, 0, 0, 0, 0])
    assert feature_matching(features, shifted, labels, labels, 2).item() == pytest.approx(2.0)  # 1 per class


def test_equalised_layers_scale_unit_normal_weights_by_the_he_constant():
    torch.manual_seed(0)
    conv = EqualizedConv2d(4, 6, 3, padding=1)
    assert conv.scale == pytest.approx(math.sqrt(2 / (4 * 9)))
    assert conv.weight.std().item() == pytest.approx(1.0, abs=0.15)
    x = torch.randn(2, 4, 5, 5)
    reference = torch.nn.functional.conv2d(x, conv.weight * conv.scale, conv.bias, padding=1)
    assert torch.allclose(conv(x), reference)
    linear = EqualizedLinear(50, 7)
    assert linear.scale == pytest.approx(math.sqrt(2 / 50))
    assert torch.allclose(linear(torch.ones(1, 50)), (linear.weight.sum(1) * linear.scale + linear.bias)[None])


def test_pixel_norm_and_conditional_batch_norm():
    x = torch.randn(3, 8, 4, 4) * 5
    assert torch.allclose(pixel_norm(x).pow(2).mean(dim=1), torch.ones(3, 4, 4), atol=1e-4)
    cbn = ConditionalBatchNorm2d(8, n_classes=2)
    with torch.no_grad():
        cbn.gamma.weight[1].fill_(2.0)
        cbn.beta.weight[1].fill_(3.0)
    out = cbn(x, torch.tensor([0, 1, 1]))
    normalised = cbn.norm(x)
    assert torch.allclose(out[0], normalised[0], atol=1e-5)
    assert torch.allclose(out[1:], 2 * normalised[1:] + 3, atol=1e-5)


def test_capsule_layer_shapes():
    x = torch.randn(2, 16, 14, 14)
    primary = PrimaryCapsules(16, types=32, dim=16, kernel=3, stride=2)(x)
    assert primary.shape == (2, 7, 7, 32, 16)
    conv = ConvCapsules(32, 16, 8, 16, kernel=5, stride=2)(primary)
    assert conv.shape == (2, 4, 4, 8, 16)
    out = ClassCapsules(4 * 4 * 8, 16, 3, 16)(conv.flatten(1, 3))
    assert out.shape == (2, 3, 16) and (out.norm(dim=-1) < 1).all()
