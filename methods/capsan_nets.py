"""CapsAN's networks: the class-conditional generator with its latent Gaussians, the capsule
discriminator DC, and the convolutional twin used by ``capsan-conv``. The method lives in ``capsan.py``."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from bench.methods.capsules import (
    ClassCapsules,
    ConvCapsules,
    PrimaryCapsules,
    calibrate_capsules,
    margin_loss,
)
from bench.methods.gan_blocks import ConditionalBatchNorm2d, EqualizedConv2d, EqualizedLinear, pixel_norm


def upsampling_plan(size: int, n_conv: int, max_up: int = 4) -> int:
    """How many 2x upsamplings reach ``size`` from a start of at least 4 pixels (at most one between
    each two convolutions)."""
    n_up = 0
    while n_up < min(max_up, n_conv - 1) and size % (2 ** (n_up + 1)) == 0 and size // 2 ** (n_up + 1) >= 4:
        n_up += 1
    return n_up


class Generator(nn.Module):
    """latent -> equalised linear -> ``n_conv`` blocks of [2x nearest upsampling (between blocks, as many
    as the size needs)] -> 3x3 equalised conv -> conditional BN (first ``n_cbn`` blocks) -> pixel norm ->
    LeakyReLU(0.2); then a 1x1 equalised conv to the image channels and tanh."""

    def __init__(self, image_shape, n_classes: int, z_dim: int = 128, n_conv: int = 5, n_cbn: int = 5,
                 channels: int = 128, min_channels: int = 32):
        super().__init__()
        c, h, w = image_shape
        if h != w:
            raise ValueError(f"CapsAN's generator needs square images; got {h}x{w}")
        self.n_up = upsampling_plan(h, n_conv)
        self.start = h // 2 ** self.n_up
        self.fc = EqualizedLinear(z_dim, channels * self.start * self.start)
        self.convs, self.norms, widths = nn.ModuleList(), nn.ModuleList(), [channels]
        for i in range(n_conv):
            width = max(min_channels, channels // 2 ** min(i, self.n_up))
            self.convs.append(EqualizedConv2d(widths[-1], width, 3, padding=1))
            self.norms.append(ConditionalBatchNorm2d(width, n_classes) if i < n_cbn else nn.Identity())
            widths.append(width)
        self.to_image = EqualizedConv2d(widths[-1], c, 1)
        self.channels = channels

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).view(len(z), self.channels, self.start, self.start)
        x = F.leaky_relu(pixel_norm(x), 0.2)
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            if 1 <= i <= self.n_up:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = conv(x)
            x = norm(x, labels) if isinstance(norm, ConditionalBatchNorm2d) else x
            x = F.leaky_relu(pixel_norm(x), 0.2)
        return torch.tanh(self.to_image(x))


class ClassLatent(nn.Module):
    """Per-class latent Gaussians T_c = N(mu_c, diag(sigma_c^2)) for every class (CapsAN eq. 2).

    ``mu_c`` starts at a random draw from N(0, I) and ``log sigma_c`` at 0; both are trained with the
    generator through the reparameterisation ``z = mu_c + sigma_c * eps``. A minority class's latents are
    drawn from the mixture ``pi * T_minority + (1 - pi) * p_data``, where ``p_data`` is the mixture of all
    classes' Gaussians weighted by their training frequencies: the minority class borrows the variety of
    the whole data set, while the class label (conditional BN) keeps the class.
    """

    def __init__(self, n_classes: int, z_dim: int, class_counts: torch.Tensor, pi: float):
        super().__init__()
        self.mu = nn.Parameter(torch.randn(n_classes, z_dim))
        self.log_sigma = nn.Parameter(torch.zeros(n_classes, z_dim))
        counts = class_counts.float()
        self.register_buffer("frequencies", counts / counts.sum())
        self.register_buffer("minority", counts < counts.max())
        self.pi = pi

    def forward(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n, device = len(labels), labels.device
        eps = torch.randn(n, self.mu.shape[1], device=device, generator=generator)
        other = torch.multinomial(self.frequencies, n, replacement=True, generator=generator)
        borrow = self.minority[labels] & (torch.rand(n, device=device, generator=generator) >= self.pi)
        component = torch.where(borrow, other, labels)
        return self.mu[component] + torch.exp(self.log_sigma[component]) * eps


class DOut(NamedTuple):
    scores: torch.Tensor  # (B, c + 1): capsule lengths, or logits for the convolutional twin
    embedding: torch.Tensor  # (B, E): output embeddings, for the pull-away term
    features: torch.Tensor  # (B, F): the intermediate layer used for feature matching


def _stem(in_channels: int, width: int, n_pool: int) -> nn.Sequential:
    layers = [spectral_norm(nn.Conv2d(in_channels, width, 5, 2, padding=2)), nn.LeakyReLU(0.2)]
    return nn.Sequential(*layers, *[nn.MaxPool2d(2, ceil_mode=True) for _ in range(n_pool)])


class CapsuleDiscriminator(nn.Module):
    """DC: 5x5 stride-2 spectral-normalised conv + LeakyReLU(0.2) [+ ``n_pool`` 2x2 max-pools, the Figure 6
    ablation] -> primary capsules (``types`` x ``dim``, 3x3 stride 2) -> 5x5 stride-2 convolutional capsules
    (``conv_types`` x ``dim``) -> c + 1 class capsules by routing by agreement. A capsule's length is the
    probability of its class; the last capsule is "fake". Feature matching reads the convolutional capsules."""

    def __init__(self, image_shape, n_classes: int, width: int = 64, types: int = 32, dim: int = 16,
                 conv_types: int = 8, iterations: int = 3, n_pool: int = 0):
        super().__init__()
        c, h, w = image_shape
        self.stem = _stem(c, width, n_pool)
        self.primary = PrimaryCapsules(width, types, dim, kernel=3, stride=2)
        self.conv_caps = ConvCapsules(types, dim, conv_types, dim, kernel=5, stride=2, iterations=iterations)
        with torch.no_grad():
            n_in = self.conv_caps(self.primary(self.stem(torch.zeros(1, c, h, w)))).shape[1:4].numel()
        self.class_caps = ClassCapsules(n_in, dim, n_classes + 1, dim, iterations)
        self.n_classes = n_classes

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> None:
        """Scale the capsule layers so that capsules start alive on real data (``calibrate_capsules``)."""
        calibrate_capsules([self.primary, self.conv_caps, _Flatten(self.class_caps)], self.stem(x))

    def forward(self, x: torch.Tensor) -> DOut:
        caps = self.conv_caps(self.primary(self.stem(x)))
        out = self.class_caps(caps.flatten(1, 3))
        return DOut(out.norm(dim=-1), out.flatten(1), caps.flatten(1))

    def loss(self, scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return margin_loss(scores, target)

    def class_proba(self, scores: torch.Tensor) -> torch.Tensor:
        lengths = scores[:, : self.n_classes]
        return lengths / lengths.sum(dim=1, keepdim=True).clamp(min=1e-12)


class _Flatten(nn.Module):
    """Feeds the class capsules the flattened grid of convolutional capsules (and calibrates them on it)."""

    def __init__(self, layer: ClassCapsules):
        super().__init__()
        self.layer = layer

    def forward(self, caps):
        return self.layer(caps.flatten(1, 3))

    def calibrate(self, caps):
        self.layer.calibrate(caps.flatten(1, 3))


class ConvDiscriminator(nn.Module):
    """The convolutional twin (the paper's Conv-GAN): the same stem, then a 3x3 stride-2 conv with as many
    channels as DC has primary-capsule units, a 5x5 stride-2 conv with as many as its convolutional
    capsules, a linear embedding of (c + 1) x dim units and a c + 1 softmax head (last = fake)."""

    DEAD = 1e-4  # an activation spread (std over the batch) below this on real data: a dead layer

    def __init__(self, image_shape, n_classes: int, width: int = 64, types: int = 32, dim: int = 16,
                 conv_types: int = 8, iterations: int = 3, n_pool: int = 0):
        super().__init__()
        c, h, w = image_shape
        self.stem = _stem(c, width, n_pool)
        self.body = nn.Sequential(
            nn.Conv2d(width, types * dim, 3, 2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(types * dim, conv_types * dim, 5, 2, padding=2), nn.LeakyReLU(0.2),
        )
        with torch.no_grad():
            n_features = self.body(self.stem(torch.zeros(1, c, h, w))).numel()
        self.embed = nn.Linear(n_features, (n_classes + 1) * dim)
        self.head = nn.Linear((n_classes + 1) * dim, n_classes + 1)
        self.n_classes = n_classes

    def forward(self, x: torch.Tensor) -> DOut:
        features = self.body(self.stem(x)).flatten(1)
        embedding = self.embed(features)
        return DOut(self.head(F.leaky_relu(embedding, 0.2)), embedding, features)

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> None:
        """The initialisation check that mirrors DC's calibration: no rescaling is needed, because a
        LeakyReLU has no dead zone like the squash's vanishing gradient at 0 and PyTorch's default
        (Kaiming-uniform) initialisation keeps the activations' scale within a small factor from layer to
        layer; but the check runs on the same first real batch and refuses a network whose layers start
        dead (an activation spread below ``DEAD``, or not finite). ``init_spread`` keeps the spreads."""
        spread, h = [], self.stem(x)
        spread.append(h.std().item())
        for layer in self.body:
            h = layer(h)
            if isinstance(layer, nn.LeakyReLU):
                spread.append(h.std().item())
        embedding = self.embed(h.flatten(1))
        spread += [embedding.std().item(), self.head(F.leaky_relu(embedding, 0.2)).std().item()]
        self.init_spread = spread
        bad = [i for i, s in enumerate(spread) if not math.isfinite(s) or s < self.DEAD]
        if bad:
            raise ValueError(f"capsan-conv: layers {bad} start dead on real data (activation spreads "
                             f"{[round(s, 6) for s in spread]}); check the input scaling or the initialisation")

    def loss(self, scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(scores, target)

    def class_proba(self, scores: torch.Tensor) -> torch.Tensor:
        return torch.softmax(scores[:, : self.n_classes].float(), dim=1)
