"""Capsule layers (Sabour, Frosst and Hinton, "Dynamic Routing Between Capsules", NeurIPS 2017) and the
losses CapsAN trains them with.

Everything is batched tensor contractions (``einsum``) over all capsules at once: no Python loop runs over
capsules or examples, and nothing here reads a value back to the host.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.methods.base import one_hot


def squash(s: torch.Tensor, dim: int = -1, eps: float = 1e-8) -> torch.Tensor:
    """``|s|^2 / (1 + |s|^2) * s / |s|``: keeps the direction, maps the length into [0, 1)."""
    squared = (s * s).sum(dim=dim, keepdim=True)
    return s * (squared / (1.0 + squared) / torch.sqrt(squared + eps))


def route(u_hat: torch.Tensor, iterations: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Routing by agreement.

    ``u_hat`` (..., n_in, n_out, d) holds each input capsule's prediction for each output capsule. The
    routing logits start at zero for every example; each iteration couples every input to the outputs by
    a softmax over the outputs, squashes the weighted sums and raises the logits by the agreement
    ``u_hat . v``. Returns the output capsules (..., n_out, d) and the final coupling coefficients
    (..., n_in, n_out). As in common implementations, gradients flow through the last iteration only
    (earlier iterations see ``u_hat`` detached), which keeps the routing from being trained to agree.
    """
    logits = torch.zeros(u_hat.shape[:-1], dtype=u_hat.dtype, device=u_hat.device)
    detached = u_hat.detach()
    for iteration in range(iterations):
        coupling = torch.softmax(logits, dim=-1)
        last = iteration == iterations - 1
        v = squash(torch.einsum("...io,...iod->...od", coupling, u_hat if last else detached))
        if not last:
            logits = logits + torch.einsum("...iod,...od->...io", detached, v)
    return v, coupling


class PrimaryCapsules(nn.Module):
    """A convolution whose output channels are ``types`` capsules of ``dim`` dimensions per position."""

    def __init__(self, in_channels: int, types: int = 32, dim: int = 16, kernel: int = 3, stride: int = 1):
        super().__init__()
        self.types, self.dim = types, dim
        self.conv = nn.Conv2d(in_channels, types * dim, kernel, stride, padding=kernel // 2)

    def poses(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        b, _, h, w = out.shape
        return out.view(b, self.types, self.dim, h, w).permute(0, 3, 4, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> capsules (B, H', W', types, dim)."""
        return squash(self.poses(x))

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> None:
        """Rescale the weights so that the mean pre-squash capsule length on ``x`` is 1 (see
        :func:`calibrate_capsules`)."""
        factor = 1.0 / self.poses(x).norm(dim=-1).mean().clamp(min=1e-12)
        self.conv.weight.mul_(factor)
        self.conv.bias.mul_(factor)


class ConvCapsules(nn.Module):
    """A convolutional capsule layer with routing by agreement inside each receptive field.

    Every input capsule type has its own transformation, applied as a convolution over its
    ``kernel x kernel`` neighbourhood (one grouped convolution for all types), which gives each input type's
    prediction for every output capsule at every output position; routing then runs over the input types
    at each position (the locally constrained routing of Lalonde and Bagci's SegCaps, 2018).
    """

    def __init__(self, in_types: int, in_dim: int, out_types: int, out_dim: int, kernel: int = 5,
                 stride: int = 2, iterations: int = 3):
        super().__init__()
        self.in_types, self.in_dim, self.out_types, self.out_dim = in_types, in_dim, out_types, out_dim
        self.iterations = iterations
        self.transform = nn.Conv2d(in_types * in_dim, in_types * out_types * out_dim, kernel, stride,
                                   padding=kernel // 2, groups=in_types, bias=False)

    def predictions(self, caps: torch.Tensor) -> torch.Tensor:
        """(B, H, W, in_types, in_dim) -> u_hat (B, H', W', in_types, out_types, out_dim)."""
        b, h, w = caps.shape[:3]
        x = caps.permute(0, 3, 4, 1, 2).reshape(b, self.in_types * self.in_dim, h, w)
        u = self.transform(x)
        h2, w2 = u.shape[-2:]
        return u.view(b, self.in_types, self.out_types, self.out_dim, h2, w2).permute(0, 4, 5, 1, 2, 3)

    def forward(self, caps: torch.Tensor) -> torch.Tensor:
        """Capsules (B, H, W, in_types, in_dim) -> (B, H', W', out_types, out_dim)."""
        v, _ = route(self.predictions(caps), self.iterations)
        return v

    @torch.no_grad()
    def calibrate(self, caps: torch.Tensor) -> None:
        self.transform.weight.mul_(1.0 / _uniform_coupling_norm(self.predictions(caps)))


class ClassCapsules(nn.Module):
    """Fully connected capsules: every input capsule predicts every output capsule through its own
    ``out_dim x in_dim`` matrix; routing by agreement over all inputs."""

    def __init__(self, n_in: int, in_dim: int, n_out: int, out_dim: int, iterations: int = 3):
        super().__init__()
        self.iterations = iterations
        self.weight = nn.Parameter(0.05 * torch.randn(n_in, n_out, out_dim, in_dim))

    def predictions(self, caps: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ioed,bid->bioe", self.weight, caps)

    def forward(self, caps: torch.Tensor) -> torch.Tensor:
        """(B, n_in, in_dim) -> (B, n_out, out_dim)."""
        v, _ = route(self.predictions(caps), self.iterations)
        return v

    @torch.no_grad()
    def calibrate(self, caps: torch.Tensor) -> None:
        self.weight.mul_(1.0 / _uniform_coupling_norm(self.predictions(caps)))


def _uniform_coupling_norm(u_hat: torch.Tensor) -> torch.Tensor:
    """Mean length of the first routing iteration's weighted sums (every coupling 1 / n_out)."""
    s = u_hat.sum(dim=-3) / u_hat.shape[-2]
    return s.norm(dim=-1).mean().clamp(min=1e-12)


def calibrate_capsules(layers, x: torch.Tensor) -> torch.Tensor:
    """Data-dependent initialisation (in the spirit of LSUV, Mishkin and Matas 2016): layer by layer, scale
    each capsule layer's transformation so that the capsules' mean length before the squash is 1 on the
    batch ``x``. Squash has a vanishing gradient at 0: with default initialisations the lengths shrink by
    orders of magnitude from layer to layer and the capsules start (and stay) dead. Returns the last
    layer's output."""
    for layer in layers:
        layer.calibrate(x)
        x = layer(x)
    return x


def margin_loss(lengths: torch.Tensor, target: torch.Tensor, alpha: float = 0.5, s_plus: float = 0.9,
                s_minus: float = 0.1) -> torch.Tensor:
    """Capsule margin loss (Sabour et al., eq. 4; CapsAN eq. 5-6), averaged over the batch.

    ``lengths`` (B, K) are capsule lengths, ``target`` (B,) the index of the capsule each example belongs to.
    The one-hot target is ``base.one_hot`` (no host synchronisation, and vmap batches it; ``scatter_`` has no
    batching rule under vmap: ``stacked.py``).
    """
    t = one_hot(target, lengths.shape[1], lengths.dtype)
    present = t * F.relu(s_plus - lengths) ** 2
    absent = alpha * (1.0 - t) * F.relu(lengths - s_minus) ** 2
    return (present + absent).sum(dim=1).mean()


def pull_away(embeddings: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """The pull-away term (Zhao, Mathieu and LeCun, EBGAN, 2017; CapsAN eq. 7): the mean squared cosine
    similarity over distinct pairs of the batch's embeddings (B, E). 1 for parallel, 0 for orthogonal."""
    n = embeddings.shape[0]
    unit = embeddings / (embeddings.norm(dim=1, keepdim=True) + eps)
    cosine = unit @ unit.t()
    off_diagonal = 1.0 - torch.eye(n, device=embeddings.device, dtype=embeddings.dtype)
    return (cosine.pow(2) * off_diagonal).sum() / (n * (n - 1))


def feature_matching(real: torch.Tensor, fake: torch.Tensor, real_labels: torch.Tensor,
                     fake_labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Class-conditional feature matching (Salimans et al. 2016; CapsAN eq. 4): the squared distance
    between the mean intermediate features of real and generated images, per class, summed over classes
    present in both batches. 0 for identical batches."""
    real, fake = real.flatten(1), fake.flatten(1)

    def class_means(features, labels):
        # base.one_hot, not scatter_ into a fresh tensor: vmap batches it (a fused group, ``stacked.py``)
        onehot = one_hot(labels, n_classes, features.dtype)
        counts = onehot.sum(0)
        return onehot.t() @ features / counts.clamp(min=1).unsqueeze(1), counts > 0

    mean_real, has_real = class_means(real, real_labels)
    mean_fake, has_fake = class_means(fake, fake_labels)
    both = (has_real & has_fake).to(real.dtype)
    return (((mean_real - mean_fake) ** 2).sum(dim=1) * both).sum()
