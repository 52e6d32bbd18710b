"""DCGAN networks (Radford, Metz and Chintala, "Unsupervised representation learning with deep
convolutional generative adversarial networks", ICLR 2016), sized for any square image from 8x8 up.

Shared by ``gan``, ``acgan`` and ``bagan`` (and DAGAN's critic trunk): the baselines differ in their
losses and conditioning, not in these blocks.

- Generator: input vector -> linear -> (width x 2^(k-1), s0, s0) -> BN -> ReLU -> k transposed 4x4
  stride-2 convolutions (BN + ReLU between them, halving the channels) -> tanh, where k 2x upsamplings
  reach the image size from s0 >= 4 (28x28: 7 -> 14 -> 28; 32x32: 4 -> 8 -> 16 -> 32).
- Trunk (discriminator body, BAGAN's encoder): k 4x4 stride-2 convolutions mirroring the generator
  (width, 2 width, ...), LeakyReLU(0.2), batch normalisation on all but the first (DCGAN), or none or
  layer normalisation (``norm``; a gradient penalty is ill-defined with batch statistics); flattened.
- Weights from N(0, 0.02), batch-norm scales from N(1, 0.02) (DCGAN section 4).
Deviations from DCGAN: 4x4 kernels (the paper's figure shows 5x5; 4x4 stride 2 padding 1 halves sizes
exactly), a linear first layer for every size, and width 64 by default (the paper's 128 at 64x64).
"""

from __future__ import annotations

import torch
from torch import nn

from bench.methods.capsan_nets import upsampling_plan


def dcgan_init(module: nn.Module) -> None:
    """DCGAN's initialisation, applied with ``net.apply(dcgan_init)``."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)) and module.weight is not None:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def _plan(image_shape) -> tuple[int, int]:
    c, h, w = image_shape
    if h != w:
        raise ValueError(f"the DCGAN networks need square images; got {h}x{w}")
    n_up = max(1, upsampling_plan(h, n_conv=5))
    return n_up, h // 2 ** n_up


class DCGANGenerator(nn.Module):
    """A vector of ``in_dim`` values (noise, possibly with a class code) -> an image in [-1, 1]."""

    def __init__(self, image_shape, in_dim: int, width: int = 64):
        super().__init__()
        self.n_up, self.start = _plan(image_shape)
        self.top = width * 2 ** (self.n_up - 1)
        self.fc = nn.Linear(in_dim, self.top * self.start * self.start, bias=False)
        self.bn = nn.BatchNorm2d(self.top)
        layers, ch = [], self.top
        for i in range(self.n_up):
            last = i == self.n_up - 1
            out = image_shape[0] if last else ch // 2
            layers.append(nn.ConvTranspose2d(ch, out, 4, 2, 1, bias=last))
            layers += [nn.Tanh()] if last else [nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            ch = out
        self.body = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).view(len(z), self.top, self.start, self.start)
        return self.body(torch.relu(self.bn(x)))


class DCGANTrunk(nn.Module):
    """An image -> a flat feature vector of ``out_features`` values (``norm``: batch, layer or none).

    ``dropout`` > 0 adds a dropout layer after every LeakyReLU (AC-GAN's and BAGAN's discriminators); 0, the default,
    adds none, so the default network is unchanged."""

    def __init__(self, image_shape, width: int = 64, norm: str = "batch", in_channels: int | None = None,
                 dropout: float = 0.0):
        super().__init__()
        if norm not in ("batch", "layer", "none"):
            raise ValueError(f"norm must be 'batch', 'layer' or 'none'; got {norm!r}")
        n_down, start = _plan(image_shape)
        layers, ch = [], in_channels or image_shape[0]
        for i in range(n_down):
            out = width * 2 ** i
            layers.append(nn.Conv2d(ch, out, 4, 2, 1, bias=i == 0 or norm != "batch"))
            if i > 0 and norm == "batch":
                layers.append(nn.BatchNorm2d(out))
            elif i > 0 and norm == "layer":
                layers.append(nn.GroupNorm(1, out))  # layer normalisation over (C, H, W)
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            ch = out
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.out_features = ch * start * start
        self.apply(dcgan_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class DCGANDiscriminator(nn.Module):
    """Trunk + one linear head of ``n_outputs`` logits (1 for real/fake)."""

    def __init__(self, image_shape, n_outputs: int = 1, width: int = 64, norm: str = "batch",
                 dropout: float = 0.0):
        super().__init__()
        self.trunk = DCGANTrunk(image_shape, width, norm, dropout=dropout)
        self.head = nn.Linear(self.trunk.out_features, n_outputs)
        self.apply(dcgan_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))
