"""DAGAN networks (Antoniou, Storkey and Edwards, "Data augmentation generative adversarial networks",
arXiv:1711.04340, 2017), after the official TensorFlow code (AntreasAntoniou/DAGAN,
``dagan_architectures.py``), scaled down; any square image from 8x8 up, 1 or 3 channels.

Generator (the official ``UResNetGenerator``): an image x and a noise vector z -> an image of x's shape.
- Encoder of L levels (L = 4, fewer for small images: a level is added while its input is at least 4 pixels
  wide, so 8x8 -> 4 -> 2; 28x28 -> 14 -> 7 -> 4 -> 2; 64x64 -> ... -> 4). Level 0 is one 3x3 stride-2
  convolution; every later level is a "MultiLayer": ``inner`` 3x3 stride-1 convolutions, each fed the
  concatenation of the level's input and all earlier inner outputs (densely connected), then a 3x3 stride-2
  convolution fed the same concatenation. Channels ``(w, w, 2w, 2w)`` per level (official: w = 64).
- Noise: z goes through one linear layer per decoder stage for the first three stages, reshaped to 8, 4 and
  2 feature maps at that stage's resolution, and concatenated to the stage's input (official "vector
  expansion": noise injected at the bottleneck and the two next decoder stages).
- Decoder of L + 1 stages mirroring the encoder: each has ``inner`` densely connected 3x3 convolutions, then
  (all but the last stage) an upscaling layer -- nearest-neighbour resize to the next encoder resolution,
  then a 3x3 convolution fed the stage's dense concatenation -- whose output is concatenated with the
  encoder's features of that resolution (U-Net skip). The last stage runs at full resolution on the
  concatenation with the input image x. Then two 3x3 convolutions of w channels, a 3x3 convolution to the
  image channels and tanh.
- Every hidden convolution is followed by LeakyReLU(0.2) then batch normalisation (this order is the
  official one); dropout after every resolution-changing convolution (not level 0's).

Critic (the official ``Discriminator``, DenseNet-style): the PAIR (x, x'), concatenated along channels
(x first), -> the same encoder (level 0 a plain stride-2 convolution, then densely connected MultiLayers),
with layer normalisation (over C, H, W with a per-channel scale and shift, as TF's ``layer_norm``) in place
of batch normalisation -- a gradient penalty is ill-defined with batch statistics -- then two heads on the
last level's features h: dense(1024, LeakyReLU) on h's spatial mean, concatenated with h flattened, ->
linear -> one score (the official head without its optional "wide connections").

Initialisation: Glorot-uniform weights and zero biases (TensorFlow's defaults, which the official code
keeps).

Deviations from the official networks (besides the width, a parameter, 64 there):
- One inner convolution per MultiLayer by default in both networks (the official parser's default; its
  README trains Omniglot with 3 in the generator and 5 in the critic).
- The official MultiLayers also feed their first convolution a resampled copy of the layer two back
  (``current_layers[-2]``: a stride-2 convolution of the previous level's input in the encoder, an upscaled
  convolution in the decoder); that extra cross-level skip is left out (the dense connections inside a
  MultiLayer and the U-Net skips between encoder and decoder are kept).
- Plain batch normalisation with running-statistics momentum 0.1 in the generator (official: batch
  renormalisation, decay 0.99): PyTorch has no batch renormalisation, and decay 0.99 leaves the running
  statistics used at generation time unsettled after the few hundred updates of a short budget.
- The upscaling convolution is a convolution where the official code uses a stride-1 transposed convolution
  after the resize (the same family of maps: a stride-1 transposed convolution is a convolution with a
  flipped kernel).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NOISE_MAPS = (8, 4, 2)  # feature maps of the noise injected at the first three decoder stages (official)


def dagan_init(module: nn.Module) -> None:
    """TensorFlow's default initialisation: Glorot-uniform kernels, zero biases."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def level_sizes(size: int, max_levels: int = 4) -> list[int]:
    """Spatial sizes after each encoder level (3x3 stride-2 'same' convolutions: ceil halving); a level is
    added while its input is at least 4 pixels wide."""
    sizes, s = [], size
    while len(sizes) < max_levels and s >= 4:
        s = (s + 1) // 2
        sizes.append(s)
    return sizes


def level_channels(width: int, n_levels: int) -> list[int]:
    """(w, w, 2w, 2w) as the official [64, 64, 128, 128]; cut to the number of levels."""
    return [width, width, 2 * width, 2 * width][:n_levels]


class _Block(nn.Module):
    """3x3 convolution -> LeakyReLU(0.2) -> normalisation (batch or layer) -> optional dropout."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, norm: str = "batch", dropout: float = 0.0):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, stride, 1)
        self.norm = nn.BatchNorm2d(out_ch, momentum=0.1) if norm == "batch" else nn.GroupNorm(1, out_ch)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        if size is not None:  # upscaling layer: nearest-neighbour resize first
            x = F.interpolate(x, size=size, mode="nearest")
        return self.dropout(self.norm(F.leaky_relu(self.conv(x), 0.2)))


class _MultiLayer(nn.Module):
    """``inner`` densely connected stride-1 blocks, then one block (stride 2, or an upscaling one) that sees
    the level input and every inner output."""

    def __init__(self, in_ch: int, out_ch: int, inner: int, norm: str, dropout: float, last_stride: int | None):
        super().__init__()
        self.inner = nn.ModuleList()
        ch = in_ch
        for _ in range(inner):
            self.inner.append(_Block(ch, out_ch, 1, norm))
            ch += out_ch
        self.last = None if last_stride is None else _Block(ch, out_ch, last_stride, norm, dropout)

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        features = [x]
        for block in self.inner:
            features.append(block(torch.cat(features, 1)))
        if self.last is None:  # the decoder's full-resolution stage: no resolution change
            return features[-1] if self.inner else x
        return self.last(torch.cat(features, 1), size)


class _Encoder(nn.Module):
    def __init__(self, in_ch: int, size: int, width: int, inner: int, norm: str, dropout: float):
        super().__init__()
        self.sizes = level_sizes(size)
        self.channels = level_channels(width, len(self.sizes))
        self.levels = nn.ModuleList([_Block(in_ch, self.channels[0], 2, norm)])
        for i in range(1, len(self.sizes)):
            self.levels.append(_MultiLayer(self.channels[i - 1], self.channels[i], inner, norm, dropout, 2))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for level in self.levels:
            x = level(x)
            features.append(x)
        return features


def _check_square(image_shape) -> tuple[int, int]:
    c, h, w = image_shape
    if h != w or h < 8:
        raise ValueError(f"the DAGAN networks need square images of at least 8x8; got {h}x{w}")
    return c, h


class DAGANGenerator(nn.Module):
    """(x, z) -> an image of x's shape in [-1, 1]; see the module docstring."""

    def __init__(self, image_shape, z_dim: int = 100, width: int = 24, inner: int = 1, dropout: float = 0.5):
        super().__init__()
        channels, size = _check_square(image_shape)
        self.image_shape = tuple(image_shape)
        self.encoder = _Encoder(channels, size, width, inner, "batch", dropout)
        sizes, chans = self.encoder.sizes, self.encoder.channels
        n = len(sizes)
        self.noise_maps = list(NOISE_MAPS[:n])
        # decoder stage i works at the resolution of encoder level n-1-i (the last stage at full resolution)
        self.noise = nn.ModuleList(
            [nn.Linear(z_dim, m * sizes[n - 1 - i] ** 2) for i, m in enumerate(self.noise_maps)])
        self.stages = nn.ModuleList()
        in_ch = chans[-1]
        for i in range(n + 1):
            idx = n - 1 - i
            stage_in = in_ch + (self.noise_maps[i] if i < len(self.noise_maps) else 0)
            if idx < 0:  # full resolution, on the concatenation with the input image
                stage_in += channels
            out = chans[max(idx, 0)]
            self.stages.append(_MultiLayer(stage_in, out, inner, "batch", dropout, None if idx < 0 else 1))
            in_ch = out + (chans[idx - 1] if idx >= 1 else 0)
        final_in = chans[0] if inner else stage_in  # the last stage passes its input on when it has no layers
        self.high_res = nn.Sequential(_Block(final_in, chans[0]), _Block(chans[0], chans[0]))
        self.out = nn.Conv2d(chans[0], channels, 3, 1, 1)
        self.apply(dagan_init)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        encoded = self.encoder(x)
        n = len(encoded)
        h = encoded[-1]
        for i, stage in enumerate(self.stages):
            idx = n - 1 - i
            if i < len(self.noise_maps):
                s = encoded[idx].shape[-1]
                h = torch.cat([self.noise[i](z).view(len(z), self.noise_maps[i], s, s), h], 1)
            if idx < 0:
                h = stage(torch.cat([h, x], 1))
            else:
                target = x.shape[-2:] if idx == 0 else encoded[idx - 1].shape[-2:]
                h = stage(h, tuple(target))
                if idx >= 1:
                    h = torch.cat([h, encoded[idx - 1]], 1)
        return torch.tanh(self.out(self.high_res(h)))


class DAGANCritic(nn.Module):
    """A pair (x, x') -> one unbounded score (the WGAN critic); see the module docstring."""

    def __init__(self, image_shape, width: int = 24, inner: int = 1, dropout: float = 0.5, dense: int = 1024):
        super().__init__()
        channels, size = _check_square(image_shape)
        self.encoder = _Encoder(2 * channels, size, width, inner, "layer", dropout)
        last_ch, last_size = self.encoder.channels[-1], self.encoder.sizes[-1]
        self.feature_dense = nn.Linear(last_ch, dense)
        self.out = nn.Linear(dense + last_ch * last_size * last_size, 1)
        self.apply(dagan_init)

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        h = self.encoder(torch.cat([x, other], 1))[-1]
        pooled = F.leaky_relu(self.feature_dense(h.mean(dim=(2, 3))), 0.2)
        return self.out(torch.cat([pooled, h.flatten(1)], 1)).squeeze(1)
