"""ResNet-32 for small images: the CIFAR network of He et al. that LDAM-DRW's code trains.

Paper: K. He, X. Zhang, S. Ren and J. Sun, "Deep residual learning for image recognition", CVPR 2016, Sec. 4.2:
6n + 2 layers with n = 5: a 3x3 convolution to 16 channels, three stages of n basic blocks (two 3x3 convolutions
with batch normalisation) at 16, 32 and 64 channels, the second and third starting with stride 2, then global
average pooling and the last layer. Shortcuts are identities; where a stage halves the map and doubles the
channels the shortcut subsamples by 2 and pads the new channels with zeros (the paper's option A, as LDAM-DRW's
ResNet-32 for CIFAR does). Convolutions and the last layer start from Kaiming-normal weights.

Any input of at least 8x8 pixels with 1 or 3 channels works (global pooling); the last layer is ``nn.Linear`` or
``classifier.CosineLinear`` (``head = "cosine"``, for LDAM). ``embed`` gives the 64-d pooled features, so
methods that read penultimate features (``crl`` at instance level) work on either backbone.
"""

from __future__ import annotations

import torch
from torch import nn

BLOCKS_PER_STAGE = 5  # n = 5: 6n + 2 = 32 layers
WIDTHS = (16, 32, 64)


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.stride, self.extra = stride, out_channels - in_channels
        self.members = 1  # a fused group's members side by side on the channel axis (methods/fused.py)

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1 and self.extra == 0:
            return x
        x = x[:, :, ::self.stride, ::self.stride]  # option A: subsample, then zero channels (each member's own)
        batch, channels, height, width = x.shape
        x = x.reshape(batch, self.members, channels // self.members, height, width)
        x = nn.functional.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
        return x.reshape(batch, -1, height, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet32(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], n_classes: int, last: nn.Module):
        super().__init__()
        channels = image_shape[0]
        layers = [nn.Conv2d(channels, WIDTHS[0], 3, 1, 1, bias=False), nn.BatchNorm2d(WIDTHS[0]), nn.ReLU()]
        width = WIDTHS[0]
        for stage, out in enumerate(WIDTHS):
            for block in range(BLOCKS_PER_STAGE):
                layers.append(BasicBlock(width, out, 2 if stage > 0 and block == 0 else 1))
                width = out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(last)
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(module.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The 64-d pooled features; ``classify(embed(x))`` is ``forward(x)``."""
        return self.features(x)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)
