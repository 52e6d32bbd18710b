"""Generator building blocks: equalised learning rate (Karras et al., "Progressive Growing of GANs", 2018),
per-pixel feature normalisation (same paper), and conditional batch normalisation (de Vries et al. 2017;
Miyato and Koyama 2018)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class EqualizedConv2d(nn.Module):
    """A convolution whose weights are drawn from N(0, 1) and scaled at run time by the He constant
    ``sqrt(2 / fan_in)``, so every layer learns at the same speed under Adam."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, padding: int = 0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.scale = math.sqrt(2.0 / (in_channels * kernel * kernel))
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class EqualizedLinear(nn.Module):
    """A linear layer with the equalised learning rate of :class:`EqualizedConv2d`."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.scale = math.sqrt(2.0 / in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Normalise the feature vector of every pixel to unit mean square."""
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + eps)


class ConditionalBatchNorm2d(nn.Module):
    """Batch normalisation without its own affine; a per-class scale and shift, from embeddings
    initialised at (1, 0), take its place."""

    def __init__(self, channels: int, n_classes: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.gamma = nn.Embedding(n_classes, channels)
        self.beta = nn.Embedding(n_classes, channels)
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        out = self.norm(x)
        return out * self.gamma(labels)[:, :, None, None] + self.beta(labels)[:, :, None, None]
